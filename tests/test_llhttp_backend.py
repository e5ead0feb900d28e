"""The httptools backend's own contract, without sockets: which requests take
llhttp's fast path, which are handed to h11, and that both give the same Head.

The behaviour over real connections is tested by the whole suite (run once per
backend) and by test_parser_parity.py; these tests pin the division of work,
so a change that quietly sends every request to h11 (correct, but slow) fails.
"""

from __future__ import annotations

import pytest

pytest.importorskip("httptools")

from mhd2._http1.llhttp import LlhttpParser
from mhd2._http1.parser import (
    CLOSED,
    NEED_DATA,
    BodyEnd,
    H11Parser,
    Head,
    ParseError,
)

MAX_HEAD = 8192


def parse_head(data: bytes) -> tuple[LlhttpParser, object]:
    parser = LlhttpParser(MAX_HEAD)
    parser.feed(data)
    return parser, parser.next_head()


def h11_head(data: bytes) -> object:
    parser = H11Parser(MAX_HEAD)
    parser.feed(data)
    return parser.next_head()


def fast(parser: LlhttpParser) -> bool:
    return parser._referee is None


def test_a_plain_get_is_parsed_by_llhttp_like_h11() -> None:
    data = (b"GET /a%20b?x=1+2 HTTP/1.1\r\nHost: example.com\r\nX-Dup: 1\r\n"
            b"x-dup:  2  \r\nCookie: a=b\r\n\r\n")
    parser, head = parse_head(data)
    assert fast(parser)
    reference = h11_head(data)
    assert isinstance(head, Head) and isinstance(reference, Head)
    assert (head.method, head.target, head.version) == (
        reference.method, reference.target, reference.version)
    assert list(head.lower_fields) == list(reference.lower_fields)
    assert head.scan == reference.scan
    assert parser.head_length() == len(data)
    assert parser.raw_head_bytes() == data


@pytest.mark.parametrize("method", [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS",
                                    b"PATCH", b"PURGE", b"PROPFIND"])
def test_registered_methods_take_the_fast_path(method: bytes) -> None:
    parser, head = parse_head(method + b" /x HTTP/1.0\r\n\r\n")
    assert isinstance(head, Head) and fast(parser)
    assert (head.method, head.target, head.version) == (method, b"/x", b"1.0")


def test_a_content_length_body_is_framed_by_the_fast_path() -> None:
    parser, head = parse_head(b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123")
    assert isinstance(head, Head) and fast(parser)
    assert parser.next_body() == b"0123"
    assert parser.next_body() is NEED_DATA
    parser.feed(b"456789GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
    assert parser.next_body() == b"456789"
    assert isinstance(parser.next_body(), BodyEnd)
    parser.next_request()
    assert parser.has_next
    second = parser.next_head()
    assert isinstance(second, Head) and second.target == b"/next" and fast(parser)


def test_a_body_cut_short_by_the_client_is_closed() -> None:
    parser, head = parse_head(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n01")
    assert isinstance(head, Head)
    assert parser.next_body() == b"01"
    parser.feed(b"")
    assert parser.next_body() is CLOSED


def test_a_head_in_pieces_waits_for_its_end() -> None:
    parser = LlhttpParser(MAX_HEAD)
    data = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    for i in range(len(data) - 1):
        parser.feed(data[i:i + 1])
        assert parser.next_head() is NEED_DATA
    parser.feed(data[-1:])
    assert isinstance(parser.next_head(), Head) and fast(parser)


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\nHost: a\n\n",                                    # bare LF
    b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n",                 # obs-fold
    b"FROB / HTTP/1.1\r\nHost: a\r\n\r\n",                             # unregistered method
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",                                          # no Host on 1.1
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\nx",
    b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
])
def test_what_the_fast_path_does_not_take_h11_decides(data: bytes) -> None:
    parser, head = parse_head(data)
    assert not fast(parser)
    reference = h11_head(data)
    assert type(head) is type(reference)
    if isinstance(head, Head) and isinstance(reference, Head):
        assert (head.method, head.target, list(head.lower_fields)) == (
            reference.method, reference.target, list(reference.lower_fields))
    if isinstance(head, ParseError) and isinstance(reference, ParseError):
        assert head.status == reference.status


def test_the_chunked_body_and_trailers_come_from_h11_then_llhttp_resumes() -> None:
    parser, head = parse_head(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                              b"3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"
                              b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n")
    assert isinstance(head, Head) and not fast(parser)
    assert parser.next_body() == b"abc"
    end = parser.next_body()
    assert isinstance(end, BodyEnd) and end.trailers == [("X-T", "1")]
    parser.next_request()
    after = parser.next_head()
    assert isinstance(after, Head) and after.target == b"/after" and fast(parser)


def test_an_oversized_head_gets_h11s_answer() -> None:
    parser = LlhttpParser(1024)
    parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"x" * 2000)
    result = parser.next_head()
    assert isinstance(result, ParseError) and result.status == 431


# -- the property: on any bytes, the backend's answer is h11's ---------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_PIECES = [b" ", b"  ", b"\t", b"\r\n", b"\n", b"\r", b":", b": ", b",", b";", b"/", b"?",
           b"%", b"%2", b"+", b"*", b"#", b"\x00", b"\x7f", b"\xff", b"\x80", b"\"",
           b"GET", b"POST", b"get", b"FROB", b"CONNECT", b"OPTIONS", b"HTTP/1.1", b"HTTP/1.0",
           b"HTTP/2.0", b"HTTP/0.9", b"http/1.1", b"Host", b"host", b"Content-Length",
           b"Transfer-Encoding", b"chunked", b"Expect", b"100-continue", b"Connection",
           b"Upgrade", b"websocket", b"close", b"a", b"0", b"5", b"-1", b"x.y:80"]


def _compare(data: bytes) -> None:
    fast_parser = LlhttpParser(MAX_HEAD)
    reference = H11Parser(MAX_HEAD)
    fast_parser.feed(data)
    reference.feed(data)
    got, want = fast_parser.next_head(), reference.next_head()
    assert type(got) is type(want), (data, got, want)
    if isinstance(got, Head) and isinstance(want, Head):
        assert (got.method, got.target, got.version, list(got.lower_fields), got.scan) == (
            want.method, want.target, want.version, list(want.lower_fields), want.scan), data
        assert fast_parser.unparsed() == reference.unparsed(), data
    elif isinstance(got, ParseError) and isinstance(want, ParseError):
        assert got.status == want.status, (data, got, want)
    else:
        assert got is want, (data, got, want)


@settings(max_examples=1500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_PIECES), max_size=40))
def test_any_mutated_head_gets_the_same_answer_as_from_h11(pieces: list[bytes]) -> None:
    # A valid head with pieces spliced into its lines, so most examples are
    # near-misses of a well-formed request rather than noise.
    lines = [b"GET /p?q=1 HTTP/1.1", b"Host: example.com", b"X-A: 1"]
    for i, piece in enumerate(pieces):
        line = i % len(lines)
        cut = (i * 7) % (len(lines[line]) + 1)
        lines[line] = lines[line][:cut] + piece + lines[line][cut:]
    _compare(b"\r\n".join(lines) + b"\r\n\r\n" + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")


_LINES = [b"Host: a", b"Host: b:80", b"host: a", b"Host:", b"Host: a b", b"Content-Length: 5",
          b"Content-Length: 0", b"Content-Length: 5, 5", b"Content-Length: +5",
          b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip, chunked",
          b"Expect: 100-continue", b"Connection: close", b"Connection: upgrade",
          b"Upgrade: websocket", b"X: 1", b" folded", b"\tfolded", b"X : 1", b": no name",
          b"Cookie: a=b", b"X-Empty:", b"X-Space:   "]


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(st.sampled_from([b"GET / HTTP/1.1", b"GET / HTTP/1.0", b"POST /u HTTP/1.1",
                        b"CONNECT a:1 HTTP/1.1", b"OPTIONS * HTTP/1.1"]),
       st.lists(st.sampled_from(_LINES), max_size=6))
def test_any_set_of_field_lines_gets_the_same_answer_as_from_h11(
        line: bytes, fields: list[bytes]) -> None:
    _compare(b"\r\n".join([line, *fields]) + b"\r\n\r\nhello")


@settings(max_examples=800, deadline=None, derandomize=True)
@given(st.binary(max_size=120))
def test_random_bytes_before_a_head_end_get_the_same_answer(noise: bytes) -> None:
    _compare(b"GET /" + noise + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    _compare(b"GET / HTTP/1.1\r\nHost: a\r\nX: " + noise + b"\r\n\r\n")


@pytest.mark.parametrize("byte", [bytes([b]) for b in range(0x21, 0x7f) if bytes([b]) != b":"])
def test_every_printable_byte_in_a_field_name_gets_h11s_answer(byte: bytes) -> None:
    _compare(b"GET / HTTP/1.1\r\nHost: a\r\nX" + byte + b"Y: 1\r\n\r\n")


@pytest.mark.parametrize("first", [bytes([b]) for b in range(0x21)])
@pytest.mark.parametrize("complete", [False, True])
def test_a_head_starting_below_0x21_gets_h11s_early_answer(first: bytes, complete: bool) -> None:
    # h11 refuses such a head at once, before its end has arrived.
    _compare(first + b"GET / HTTP/1.1\r\nHost: h" + (b"\r\n\r\n" if complete else b""))


# -- one llhttp parser per connection ------------------------------------------------


def test_one_llhttp_parser_serves_the_keep_alive_requests_of_a_connection() -> None:
    """Bodiless kept-alive heads reuse the connection's llhttp parser (issue 22)."""
    parser = LlhttpParser(MAX_HEAD)
    parser.feed(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n")
    first = parser.next_head()
    assert isinstance(first, Head) and first.target == b"/1" and fast(parser)
    llhttp = parser._llhttp
    assert llhttp is not None
    assert isinstance(parser.next_body(), BodyEnd)
    parser.next_request()
    second = parser.next_head()
    assert isinstance(second, Head) and second.target == b"/2" and fast(parser)
    assert list(second.lower_fields) == [(b"host", b"a"), (b"x", b"y")]
    assert parser._llhttp is llhttp
    parser.next_request()
    parser.feed(b"HEAD /3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    third = parser.next_head()
    assert isinstance(third, Head) and third.method == b"HEAD" and parser._llhttp is llhttp
    parser.next_request()
    parser.feed(b"OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
    fourth = parser.next_head()
    assert isinstance(fourth, Head) and fourth.target == b"*" and fast(parser)
    assert parser._llhttp is llhttp and fourth.scan.wants_keep_alive


@pytest.mark.parametrize("first", [
    b"POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",   # a body: llhttp mid-message
    b"GET /c HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",       # llhttp closed
    b"GET /d HTTP/1.0\r\n\r\n",                                         # 1.0: closed too
    b"GET /e HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",  # h11's
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n",     # upgrade
    b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",                               # llhttp took it, h11 decides
])
def test_after_any_other_request_the_next_head_gets_a_fresh_llhttp_parser(first: bytes) -> None:
    """A parser left mid-body, closed or failed is never fed the next head."""
    parser = LlhttpParser(MAX_HEAD)
    parser.feed(b"GET /0 HTTP/1.1\r\nHost: a\r\n\r\n" + first)
    assert isinstance(parser.next_head(), Head)
    parser.next_request()
    head = parser.next_head()
    assert parser._llhttp is None  # dropped: the next head gets a fresh one
    if isinstance(head, Head):
        while not isinstance(parser.next_body(), BodyEnd):
            pass
    parser.next_request()
    parser.feed(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
    after = parser.next_head()
    assert isinstance(after, Head) and after.target == b"/next" and fast(parser)
    reference = h11_head(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
    assert isinstance(reference, Head) and after.scan == reference.scan


def test_a_clean_pipelined_chunk_is_checked_once() -> None:
    parser = LlhttpParser(MAX_HEAD)
    parser.feed(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\nGET /3")
    assert isinstance(parser.next_head(), Head) and parser._clean is True
    parser.next_request()
    assert isinstance(parser.next_head(), Head) and fast(parser)
    parser.next_request()
    assert parser.next_head() is NEED_DATA
    parser.feed(b" HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n")  # fed bytes are checked again
    assert parser._clean is None
    result = parser.next_head()  # a control byte: h11 decides
    assert not fast(parser)
    assert type(result) is type(h11_head(b"GET /3 HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n"))


def test_a_pipelined_chunk_is_checked_once_and_a_body_in_it_does_not_refer_the_heads() -> None:
    body = b"\x00\xff\n\r"  # bytes a head may not hold
    parser = LlhttpParser(MAX_HEAD)
    parser.feed(b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n" + body
                + b"GET /n HTTP/1.1\r\nHost: a\r\n\r\n")
    head = parser.next_head()
    assert isinstance(head, Head) and fast(parser)
    # The chunk failed the whole-chunk check once: later heads in it are
    # checked alone, never by scanning the rest of the chunk again.
    assert parser._clean is False
    assert parser.next_body() == body
    assert isinstance(parser.next_body(), BodyEnd)
    parser.next_request()
    after = parser.next_head()
    assert isinstance(after, Head) and after.target == b"/n" and fast(parser)


def test_a_resting_parser_lets_go_of_llhttp_and_the_last_head() -> None:
    """An idle or parked connection keeps neither llhttp's parser (~0.7 KB) nor
    the last head's fields; the next head gets a fresh parser and parses the same."""
    parser = LlhttpParser(MAX_HEAD)
    parser.feed(b"GET /1 HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n")
    first = parser.next_head()
    assert isinstance(first, Head) and parser._llhttp is not None
    assert isinstance(parser.next_body(), BodyEnd)
    parser.next_request()
    parser.rest()
    assert parser._llhttp is None
    assert parser._collector.fields == [] and parser._collector.target == b""
    parser.feed(b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
    second = parser.next_head()
    assert isinstance(second, Head) and second.target == b"/2" and fast(parser)
    assert list(second.lower_fields) == [(b"host", b"a")]


async def test_an_idle_keep_alive_connection_rests_its_parser() -> None:
    """Over a real socket: once the daemon waits for the next request, the
    connection's llhttp parser is gone (PlainSocketStream.before_wait)."""
    import trio
    from conftest import open_stream, running, settled, text_response

    from mhd2.http1.connection import HTTP1Connection

    async with running(text_response, parser="httptools") as daemon:
        stream = await open_stream(daemon.port)
        async with stream:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            with trio.fail_after(5):
                got = b""
                while b"\r\n\r\n" not in got:
                    got += await stream.receive_some(4096)
            (connection,) = daemon._connections
            assert isinstance(connection, HTTP1Connection)
            parser = connection._parser
            assert isinstance(parser, LlhttpParser)
            await settled()  # the daemon reaches its idle wait
            assert parser._llhttp is None
            assert parser._collector.fields == []
