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
