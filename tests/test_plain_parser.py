"""The h11 backend's pure-Python fast path (mhd2._http1.plain), without sockets.

Which heads it splits itself, which it hands to h11, and that on any bytes
its answer is h11's: a table of well-formed and near-miss heads, and
generated ones.  The behaviour over real connections is tested by the whole
suite and by test_parser_parity.py (h11 alone against this fast path); these
tests pin the division of work, so a change that quietly sends every request
to h11 (correct, but slow) fails.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mhd2._http1.backend import httptools_available, parser_factory
from mhd2._http1.parser import BodyEnd, H11Parser, Head, ParseError
from mhd2._http1.plain import PlainParser

MAX_HEAD = 8192

# The pure-Python fast path does not depend on what is installed: its
# Hypothesis runs are made once, in the session without httptools (the h11
# session of ``nox -s tests``), unless ``MHD2_PARITY_ALL=1``.
if httptools_available() and os.environ.get("MHD2_PARITY_ALL") != "1":
    pytest.skip("runs in the h11 session (no httptools), or with MHD2_PARITY_ALL=1",
                allow_module_level=True)


def fast(parser: PlainParser) -> bool:
    return parser._referee is None


def compare(data: bytes) -> PlainParser:
    """Parse *data* with both; assert they agree on the head, body and what follows."""
    plain, reference = PlainParser(MAX_HEAD), H11Parser(MAX_HEAD)
    plain.feed(data)
    reference.feed(data)
    got, want = plain.next_head(), reference.next_head()
    assert type(got) is type(want), (data, got, want)
    if isinstance(got, Head) and isinstance(want, Head):
        assert (got.method, got.target, got.version, list(got.lower_fields), got.scan) == (
            want.method, want.target, want.version, list(want.lower_fields), want.scan), data
        assert plain.head_length() == reference.head_length(), data
        assert plain.next_body() == reference.next_body(), data
        assert plain.unparsed() == reference.unparsed(), data
    elif isinstance(got, ParseError) and isinstance(want, ParseError):
        assert got.status == want.status, (data, got, want)
    else:
        assert got is want, (data, got, want)
    return plain


def test_the_h11_backend_is_the_plain_fast_path() -> None:
    assert parser_factory("h11") is PlainParser


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /a%20b?x=1+2 HTTP/1.1\r\nHost: example.com\r\nX-Dup: 1\r\nx-dup:  2  \r\n\r\n",
    b"HEAD /x HTTP/1.0\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
    b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"PUT /u HTTP/1.1\r\nHost: a\r\nContent-Length: 000\r\n\r\n",
    b"FROB /x HTTP/1.1\r\nHost: a\r\n\r\n",                   # any token method
    b"GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Tab:\t1\t\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Close, foo\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost:\r\n\r\n",                       # empty Host: mhd2 rules on it
])
def test_plainly_well_formed_heads_take_the_fast_path_with_h11s_result(data: bytes) -> None:
    assert fast(compare(data))


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\nHost: a\n\n",                                    # bare LF
    b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n",                 # obs-fold
    b"GET / HTTP/1.1\r\nHost: a\rX: 1\r\n\r\n",                         # bare CR
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n",
    b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
    b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",                      # absolute-form
    b"GET / HTTP/1.1\r\n\r\n",                                          # no Host on 1.1
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\nx",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456789\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
    b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n",
    b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /\t HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
    b"GET / http/1.1\r\nHost: a\r\n\r\n",
    b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",                              # method not a token
    b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX : 1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
    b" GET / HTTP/1.1\r\nHost: a\r\n\r\n",
])
def test_what_the_fast_path_does_not_take_h11_decides(data: bytes) -> None:
    assert not fast(compare(data))


def test_after_a_request_h11_decided_the_next_takes_the_fast_path_again() -> None:
    parser = PlainParser(MAX_HEAD)
    parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\n\r\n")
    head = parser.next_head()
    assert isinstance(head, Head) and not fast(parser)
    assert parser.next_body() == b"abc"
    end = parser.next_body()
    assert isinstance(end, BodyEnd) and end.trailers == [("X-T", "1")]
    parser.next_request()
    after = parser.next_head()
    assert isinstance(after, Head) and after.target == b"/after" and fast(parser)


# -- generated heads: well-formed ones, and near misses --------------------------------

_TOKEN = st.text("!#$%&'*+-.^_`|~09AZaz", min_size=1, max_size=8).map(str.encode)
_VALUE = st.text(" \t!\"(),/:;<=>?@[\\]{}09AZaz", max_size=12).map(str.encode)
_TARGET = st.text("/?%+=&.-_~:@!$'()*,;09AZaz#[]", min_size=0, max_size=12).map(
    lambda t: ("/" + t).encode())


@st.composite
def well_formed_heads(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from([b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH"])
                  | _TOKEN)
    target = draw(_TARGET | st.just(b"*"))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]))
    lines = [b" ".join([method, target, version])]
    fields = draw(st.lists(st.tuples(_TOKEN, _VALUE), max_size=5))
    if version == b"HTTP/1.1" or draw(st.booleans()):
        fields.insert(draw(st.integers(0, len(fields))), (b"Host", b"example.com"))
    if draw(st.booleans()):
        fields.append((b"Content-Length", str(draw(st.integers(0, 20))).encode()))
    if draw(st.booleans()):
        fields.append((b"Connection", draw(st.sampled_from([b"close", b"keep-alive", b"x"]))))
    lines += [name + b":" + draw(st.sampled_from([b"", b" ", b"  ", b"\t"])) + value
              for name, value in fields]
    return b"\r\n".join(lines) + b"\r\n\r\n" + b"x" * 20 + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


@settings(max_examples=1500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(well_formed_heads())
def test_generated_well_formed_heads_get_h11s_answer(data: bytes) -> None:
    compare(data)


@settings(max_examples=2500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(well_formed_heads(), st.lists(st.tuples(
    st.integers(0, 200), st.sampled_from(["replace", "insert", "delete"]),
    st.sampled_from(list(b"\x00\t\n\r \"(),/:;<>?@[\\]{}\x7f\x80\xffAa0")),
), min_size=1, max_size=3))
def test_slightly_malformed_heads_get_h11s_answer(
        data: bytes, edits: list[tuple[int, str, int]]) -> None:
    mutated = bytearray(data)
    for at, op, byte in edits:
        at %= len(mutated)
        if op == "replace":
            mutated[at] = byte
        elif op == "insert":
            mutated.insert(at, byte)
        else:
            del mutated[at]
    compare(bytes(mutated))


@pytest.mark.parametrize("byte", [bytes([b]) for b in range(0x21, 0x7f) if bytes([b]) != b":"])
def test_every_printable_byte_in_a_field_name_or_method_gets_h11s_answer(byte: bytes) -> None:
    compare(b"GET / HTTP/1.1\r\nHost: a\r\nX" + byte + b"Y: 1\r\n\r\n")
    compare(b"G" + byte + b"T / HTTP/1.1\r\nHost: a\r\n\r\n")
    compare(b"GET /" + byte + b" HTTP/1.1\r\nHost: a\r\n\r\n")
