"""Unit tests of the sans-IO form parsers in mhd2._post (no sockets)."""

from __future__ import annotations

import tracemalloc
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mhd2 import PostEncoding, PostParseResult
from mhd2._post import (
    Event,
    FieldData,
    FieldEnd,
    FieldStart,
    FormParser,
    MultipartParser,
    TextPlainParser,
    UrlencodedParser,
    detect_encoding,
    parse_content_type,
)
from mhd2._post.multipart import parse_part_headers

Field = tuple[FieldStart, bytes]


def run(parser: FormParser, pieces: list[bytes]) -> tuple[list[Event], PostParseResult | None]:
    events: list[Event] = []
    for piece in pieces:
        events += parser.feed(piece)
    events += parser.close()
    return events, parser.result


def fields(events: list[Event]) -> list[Field]:
    """Join the events into (start, value) pairs, checking their order."""
    out: list[Field] = []
    current: FieldStart | None = None
    value = b""
    for event in events:
        if isinstance(event, FieldStart):
            assert current is None
            current, value = event, b""
        elif isinstance(event, FieldData):
            assert current is not None and event.data
            value += event.data
        else:
            assert isinstance(event, FieldEnd) and current is not None
            out.append((current, value))
            current = None
    assert current is None
    return out


def simple(events: list[Event]) -> list[tuple[str, bytes]]:
    return [(start.name, value) for start, value in fields(events)]


def split_at(body: bytes, *cuts: int) -> list[bytes]:
    points = [0, *sorted(cuts), len(body)]
    return [body[a:b] for a, b in pairwise(points)]


# -- urlencoded ---------------------------------------------------------------------------


def test_urlencoded_basic() -> None:
    events, result = run(UrlencodedParser(), [b"name=J%C3%BCrgen+M&x=1%2B1&empty=&flag&&=v"])
    assert result is PostParseResult.OK
    assert simple(events) == [
        ("name", "Jürgen M".encode()), ("x", b"1+1"), ("empty", b""), ("flag", b""), ("", b"v"),
    ]


def test_urlencoded_name_is_decoded() -> None:
    events, _ = run(UrlencodedParser(), [b"a+b%3D=1"])
    assert simple(events) == [("a b=", b"1")]


def test_urlencoded_invalid_percent_escapes_are_literal() -> None:
    # WHATWG percent-decode: an invalid escape is kept as is; the result stays OK.
    events, result = run(UrlencodedParser(), [b"a=%zz&b=%4&c=100%&d=%%41&e=%g1"])
    assert result is PostParseResult.OK
    assert simple(events) == [
        ("a", b"%zz"), ("b", b"%4"), ("c", b"100%"), ("d", b"%A"), ("e", b"%g1"),
    ]


@pytest.mark.parametrize("body", [b"a=%41%42&b=c%2", b"k=%zz+%4", b"x%41y=%C3%A9&&z"])
def test_urlencoded_every_split(body: bytes) -> None:
    ref = simple(run(UrlencodedParser(), [body])[0])
    for i in range(len(body) + 1):
        for j in range(i, len(body) + 1):
            assert simple(run(UrlencodedParser(), split_at(body, i, j))[0]) == ref


def test_urlencoded_value_streams_and_name_limit() -> None:
    parser = UrlencodedParser(max_name_size=8)
    events = parser.feed(b"v=" + b"x" * 1000)
    assert [type(e) for e in events] == [FieldStart, FieldData]
    assert parser.feed(b"y" * 1000) == [FieldData(b"y" * 1000)]
    events, result = run(UrlencodedParser(max_name_size=8), [b"a=1&", b"n" * 9])
    assert result is PostParseResult.FAILED_NO_LARGE_BUF_MEM
    assert simple(events) == [("a", b"1")]


def test_urlencoded_field_limit() -> None:
    events, result = run(UrlencodedParser(max_fields=3), [b"a=1&b=2&c=3&d=4&e=5"])
    assert result is PostParseResult.FAILED_NO_POOL_MEM
    assert len(fields(events)) == 3


# -- text/plain ---------------------------------------------------------------------------


def test_text_plain() -> None:
    events, result = run(TextPlainParser(), [b"a=1 + %41\r\nb=x=y\r\n\r\nflag\r\n"])
    assert result is PostParseResult.OK
    assert simple(events) == [("a", b"1 + %41"), ("b", b"x=y"), ("flag", b"")]


def test_text_plain_bad_termination_and_bare_lf() -> None:
    events, result = run(TextPlainParser(), [b"a=1\nb=2"])
    assert result is PostParseResult.OK_BAD_TERMINATION
    assert simple(events) == [("a", b"1"), ("b", b"2")]


def test_text_plain_every_split() -> None:
    body = b"a=1\r\nbb=x\ry\r\n=z\r\n"
    ref = run(TextPlainParser(), [body])
    assert simple(ref[0]) == [("a", b"1"), ("bb", b"x\ry"), ("", b"z")]
    for i in range(len(body) + 1):
        for j in range(i, len(body) + 1):
            got = run(TextPlainParser(), split_at(body, i, j))
            assert simple(got[0]) == simple(ref[0]) and got[1] is PostParseResult.OK


# -- multipart ------------------------------------------------------------------------------

BOUNDARY = b"----b0undary'()+_,-./:=?"


def part(name: str, value: bytes, extra: str = "", boundary: bytes = BOUNDARY) -> bytes:
    head = f'Content-Disposition: form-data; name="{name}"{extra}\r\n'.encode()
    return b"--" + boundary + b"\r\n" + head + b"\r\n" + value + b"\r\n"


MULTIPART = (
    b"This is the preamble.\r\n"
    + part("text", b"hello\r\n--not-the-boundary\r")
    + part("file", b"\x00\x01binary\r\n", '; filename="a b.txt"\r\nContent-Type: application/x-b\r\n'
           "Content-Transfer-Encoding: binary")
    + part("empty", b"")
    + b"--" + BOUNDARY + b"--  \r\nthe epilogue"
)


def test_multipart_fields_and_headers() -> None:
    events, result = run(MultipartParser(BOUNDARY), [MULTIPART])
    assert result is PostParseResult.OK
    got = fields(events)
    assert [(s.name, v) for s, v in got] == [
        ("text", b"hello\r\n--not-the-boundary\r"), ("file", b"\x00\x01binary\r\n"), ("empty", b""),
    ]
    assert got[1][0] == FieldStart("file", "a b.txt", "application/x-b", "binary")
    assert got[0][0] == FieldStart("text")


def test_multipart_split_at_every_position() -> None:
    ref = fields(run(MultipartParser(BOUNDARY), [MULTIPART])[0])
    for i in range(len(MULTIPART) + 1):
        events, result = run(MultipartParser(BOUNDARY), split_at(MULTIPART, i))
        assert result is PostParseResult.OK and fields(events) == ref, i


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(MULTIPART)), max_size=12))
def test_multipart_split_anywhere(cuts: list[int]) -> None:
    ref = fields(run(MultipartParser(BOUNDARY), [MULTIPART])[0])
    events, result = run(MultipartParser(BOUNDARY), split_at(MULTIPART, *cuts))
    assert result is PostParseResult.OK and fields(events) == ref


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_multipart_any_value_round_trips(value: bytes, cuts: list[int]) -> None:
    boundary = b"XyZ"
    body = part("v", value, boundary=boundary) + b"--XyZ--\r\n"
    if b"\r\n--XyZ" in b"\r\n" + value + b"\r\n":
        return  # a boundary inside the data is the sender's error
    events, result = run(MultipartParser(boundary), split_at(body, *[c % (len(body) + 1) for c in cuts]))
    assert result is PostParseResult.OK
    assert simple(events) == [("v", value)]


def test_multipart_body_opening_without_preamble_and_padding() -> None:
    body = b"--B \t\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--B--"
    events, result = run(MultipartParser(b"B"), [body])
    assert result is PostParseResult.OK and simple(events) == [("a", b"1")]


def test_multipart_filename_star_and_escapes() -> None:
    start = parse_part_headers(
        b'Content-Disposition: form-data; name="f\\"q"; filename="C:\\dir\\x.txt"; '
        b"filename*=UTF-8''%E2%82%AC%20rates.txt"
    )
    assert start == FieldStart('f"q', "€ rates.txt")
    start = parse_part_headers(b'Content-Disposition: form-data; name="f"; filename="C:\\dir\\x.txt"')
    assert start is not None and start.filename == "C:\\dir\\x.txt"
    folded = parse_part_headers(b"Content-Disposition: form-data;\r\n name=\"a\"")
    assert folded == FieldStart("a")


def test_multipart_streams_a_large_part_in_bounded_pieces() -> None:
    parser = MultipartParser(b"B")
    assert [type(e) for e in parser.feed(b"--B\r\nContent-Disposition: form-data; name=f\r\n\r\n")] == [
        FieldStart
    ]
    total = 0
    for _ in range(64):
        events = parser.feed(b"z" * 16384)
        total += sum(len(e.data) for e in events if isinstance(e, FieldData))
        assert len(parser._buf) < 8  # only a possible delimiter start is held back
    assert total == 64 * 16384
    assert parser.feed(b"\r\n--B--") == [FieldEnd()]


@pytest.mark.parametrize("boundary", [b"", b"a\rb", b"a\nb", b"a\0b", b"x" * 71])
def test_multipart_bad_boundary_refused(boundary: bytes) -> None:
    with pytest.raises(ValueError):
        MultipartParser(boundary)


def test_multipart_unterminated_part() -> None:
    events, result = run(MultipartParser(b"B"), [part("a", b"1", boundary=b"B") + b"--B\r\n"
                                                 b"Content-Disposition: form-data; name=b\r\n\r\nunfinished\r"])
    assert result is PostParseResult.OK_BAD_TERMINATION
    assert simple(events) == [("a", b"1"), ("b", b"unfinished\r")]
    # ends inside the headers of a part
    events, result = run(MultipartParser(b"B"), [b"--B\r\nContent-Disposition: form"])
    assert result is PostParseResult.OK_BAD_TERMINATION and events == []
    # no delimiter at all: not multipart
    assert run(MultipartParser(b"B"), [b"name=value"])[1] is PostParseResult.FAILED_INVALID_POST_FORMAT


@pytest.mark.parametrize(
    "head",
    [
        b"Content-Disposition: form-data\r\n",  # no name parameter
        b": no-name\r\nContent-Disposition: form-data; name=a\r\n",  # header with no name
        b"garbage line\r\nContent-Disposition: form-data; name=a\r\n",  # no colon
        b"Content-Disposition: attachment; name=a\r\n",  # not form-data
        b"Content-Type: text/plain\r\n",  # no Content-Disposition
        b"",  # no header at all
    ],
)
def test_multipart_bad_part_headers(head: bytes) -> None:
    body = part("ok", b"1", boundary=b"B") + b"--B\r\n" + head + b"\r\nvalue\r\n--B--\r\n"
    events, result = run(MultipartParser(b"B"), [body])
    assert result is PostParseResult.PARTIAL_INVALID_POST_FORMAT
    assert simple(events) == [("ok", b"1")]
    first = b"--B\r\n" + head + b"\r\nvalue\r\n--B--\r\n"
    assert run(MultipartParser(b"B"), [first])[1] is PostParseResult.FAILED_INVALID_POST_FORMAT


def test_multipart_boundary_followed_by_text_is_invalid() -> None:
    body = part("a", b"1", boundary=b"B") + b"--Bextra\r\n"
    assert run(MultipartParser(b"B"), [body])[1] is PostParseResult.PARTIAL_INVALID_POST_FORMAT


def test_multipart_header_over_the_limit() -> None:
    head = b"--B\r\nContent-Disposition: form-data; name=a\r\nX-Pad: " + b"p" * 200 + b"\r\n\r\nv\r\n--B--"
    for pieces in ([head], [head[:20], head[20:120], head[120:]]):
        events, result = run(MultipartParser(b"B", max_header_size=128), pieces)
        assert result is PostParseResult.FAILED_NO_LARGE_BUF_MEM and events == []
    # without a header end the buffer does not grow past the limit
    parser = MultipartParser(b"B", max_header_size=128)
    parser.feed(b"--B\r\nX: " + b"p" * 10_000)
    assert parser.result is PostParseResult.FAILED_NO_LARGE_BUF_MEM and len(parser._buf) == 0
    assert parser.feed(b"more") == []


def test_multipart_ten_thousand_parts_hit_the_limit_in_bounded_memory() -> None:
    one = part("f", b"v", boundary=b"B")
    parser = MultipartParser(b"B", max_fields=1000)
    tracemalloc.start()
    try:
        n_fields = 0
        for _ in range(100):
            events = parser.feed(one * 100)
            n_fields += sum(isinstance(e, FieldStart) for e in events)
            if parser.result is not None:
                break
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert parser.result is PostParseResult.FAILED_NO_POOL_MEM
    assert not parser.result.is_ok
    assert n_fields == 1000
    assert peak < 2_000_000
    assert parser.close() == [] and parser.result is PostParseResult.FAILED_NO_POOL_MEM


# -- Content-Type detection -----------------------------------------------------------------


def test_parse_content_type() -> None:
    assert parse_content_type('Multipart/Form-Data; Boundary="a\\"b"; x=1') == (
        "multipart/form-data", {"boundary": 'a"b', "x": "1"},
    )
    assert parse_content_type("text/plain;") == ("text/plain", {})
    assert parse_content_type("nonsense") is None
    assert parse_content_type("a/b; c") is None


@pytest.mark.parametrize(
    ("content_type", "requested", "expected"),
    [
        (None, PostEncoding.OTHER, PostParseResult.FAILED_NO_CNTN_TYPE),
        ("application/json", PostEncoding.OTHER, PostParseResult.FAILED_UNKNOWN_CNTN_TYPE),
        ("application/x-www-form-urlencoded", PostEncoding.OTHER, (PostEncoding.FORM_URLENCODED, None)),
        ("application/x-www-form-urlencoded; charset=UTF-8", PostEncoding.OTHER,
         (PostEncoding.FORM_URLENCODED, None)),
        ("text/plain; charset=utf-8", PostEncoding.OTHER, (PostEncoding.TEXT_PLAIN, None)),
        ("multipart/form-data; boundary=abc", PostEncoding.OTHER,
         (PostEncoding.MULTIPART_FORMDATA, b"abc")),
        ('multipart/form-data; boundary="a b c"', PostEncoding.OTHER,
         (PostEncoding.MULTIPART_FORMDATA, b"a b c")),
        ("multipart/form-data", PostEncoding.OTHER, PostParseResult.FAILED_HEADER_NO_BOUNDARY),
        ('multipart/form-data; boundary=""', PostEncoding.OTHER, PostParseResult.FAILED_HEADER_NO_BOUNDARY),
        ("multipart/form-data; boundary=" + "x" * 71, PostEncoding.OTHER,
         PostParseResult.FAILED_HEADER_MISFORMED),
        ('multipart/form-data; boundary="a\x00b"', PostEncoding.OTHER,
         PostParseResult.FAILED_HEADER_MISFORMED),
        ('multipart/form-data; boundary="a\rb"', PostEncoding.OTHER, PostParseResult.FAILED_HEADER_MISFORMED),
        ("multipart/form-data; boundary=a; junk", PostEncoding.OTHER,
         PostParseResult.FAILED_HEADER_MISFORMED),
        ("text/plain", PostEncoding.MULTIPART_FORMDATA, PostParseResult.FAILED_HEADER_NOT_MPART),
        (None, PostEncoding.MULTIPART_FORMDATA, PostParseResult.FAILED_NO_CNTN_TYPE),
        (None, PostEncoding.FORM_URLENCODED, (PostEncoding.FORM_URLENCODED, None)),
        ("application/json", PostEncoding.TEXT_PLAIN, (PostEncoding.TEXT_PLAIN, None)),
    ],
)
def test_detect_encoding(
    content_type: str | None, requested: PostEncoding,
    expected: PostParseResult | tuple[PostEncoding, bytes | None],
) -> None:
    assert detect_encoding(content_type, requested) == expected
