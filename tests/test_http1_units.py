"""Unit tests of the sans-IO HTTP/1 core (no sockets)."""

from __future__ import annotations

import re

import pytest

from mhd2._date import date_header_line
from mhd2._http1.framing import Framing, plan_reply
from mhd2._http1.parser import BodyEnd, H11Parser, Head
from mhd2._http1.request_checks import check_head, check_host, check_raw_head, has_length_conflict
from mhd2._http1.unread_body import DRAIN_LIMIT, consume_buffered_body
from mhd2._http1.values import parse_cookies, parse_query, split_target
from mhd2._http1.writer import (
    BODY_WRITERS,
    daemon_reply,
    framing_header_line,
    status_line,
    switching_protocols_head,
)

BASE = {"http11": True, "is_head": False, "wants_close": False, "wants_keep_alive": False,
        "must_close": False}


def test_known_size_uses_content_length_and_keeps_alive() -> None:
    plan = plan_reply(**BASE, status=200, size_known=True)
    assert plan.framing is Framing.CONTENT_LENGTH
    assert plan.keep_alive and plan.send_body
    assert plan.version == b"HTTP/1.1"


def test_unknown_size_is_chunked_for_http11_and_close_delimited_for_http10() -> None:
    assert plan_reply(**BASE, status=200, size_known=False).framing is Framing.CHUNKED
    old = plan_reply(**{**BASE, "http11": False, "wants_keep_alive": True}, status=200,
                     size_known=False)
    assert old.framing is Framing.CLOSE_DELIMITED
    assert not old.keep_alive


@pytest.mark.parametrize("status", [100, 101, 204, 304])
def test_statuses_without_body(status: int) -> None:
    plan = plan_reply(**BASE, status=status, size_known=True)
    assert plan.framing is Framing.NONE
    assert not plan.send_body


def test_head_has_framing_but_no_body() -> None:
    plan = plan_reply(**{**BASE, "is_head": True}, status=200, size_known=True)
    assert plan.framing is Framing.CONTENT_LENGTH
    assert not plan.send_body and plan.keep_alive


def test_http10_keep_alive_only_when_asked() -> None:
    no = plan_reply(**{**BASE, "http11": False}, status=200, size_known=True)
    yes = plan_reply(**{**BASE, "http11": False, "wants_keep_alive": True}, status=200,
                     size_known=True)
    assert not no.keep_alive
    assert yes.keep_alive and yes.announce_keep_alive


@pytest.mark.parametrize("option", ["conn_close", "http10_compatible_strict", "daemon_stopping"])
def test_options_that_close(option: str) -> None:
    plan = plan_reply(**BASE, status=200, size_known=True, **{option: True})
    assert not plan.keep_alive


def test_forced_chunked_and_http10_server() -> None:
    assert plan_reply(**BASE, status=200, size_known=True, chunked=True).framing is Framing.CHUNKED
    server10 = plan_reply(**BASE, status=200, size_known=False, http10_server=True)
    assert server10.version == b"HTTP/1.0"
    assert server10.framing is Framing.CLOSE_DELIMITED
    strict = plan_reply(**BASE, status=200, size_known=True, chunked=True,
                        http10_compatible_strict=True)
    assert strict.framing is Framing.CONTENT_LENGTH


def test_writer_chunks_with_extension_and_trailers() -> None:
    writer = BODY_WRITERS[Framing.CHUNKED]
    assert b"".join(writer.frame(b"hello", "a=b")) == b"5;a=b\r\nhello\r\n"
    assert writer.end([("X-Sum", "1")]) == b"0\r\nX-Sum: 1\r\n\r\n"
    assert BODY_WRITERS[Framing.CONTENT_LENGTH].frame(b"x") == [b"x"]
    assert framing_header_line(Framing.CONTENT_LENGTH, 13) == b"Content-Length: 13\r\n"
    assert framing_header_line(Framing.NONE, 13) == b""
    assert status_line(b"HTTP/1.1", 404, "Not Found") == b"HTTP/1.1 404 Not Found\r\n"


def test_date_header_is_imf_fixdate() -> None:
    line = date_header_line()
    assert re.fullmatch(rb"Date: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\r\n", line)


@pytest.mark.parametrize(
    ("method", "target", "version", "status"),
    [
        (b"GET", b"/", b"2.0", 505),
        (b"GET", b"foo", b"1.1", 400),
        (b"GET", b"*", b"1.1", 400),
        (b"OPTIONS", b"*", b"1.1", None),
        (b"GET", b"http://example.com/a", b"1.1", None),
        (b"CONNECT", b"example.com:443", b"1.1", None),
    ],
)
def test_check_head(method: bytes, target: bytes, version: bytes, status: int | None) -> None:
    problem = check_head(method, target, version, [(b"host", b"a")], 0)
    assert (problem[0] if problem else None) == status


def test_length_conflict_rejected_by_default_and_flagged_when_lenient() -> None:
    headers = [(b"host", b"a"), (b"content-length", b"5"), (b"transfer-encoding", b"chunked")]
    assert has_length_conflict(headers)
    assert check_head(b"POST", b"/", b"1.1", headers, 0) == (
        400, "both Content-Length and Transfer-Encoding")
    assert check_head(b"POST", b"/", b"1.1", headers, -1) is None


def test_strict_checks() -> None:
    assert check_raw_head(b"GET / HTTP/1.1\nHost: a\n\n") == (400, "bare LF line ending")
    assert check_raw_head(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n") == (
        400, "obsolete line folding")
    assert check_raw_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") is None


@pytest.mark.parametrize("value", [
    b"a", b"example.com:8080", b"[::1]:80", b"[v7.fe80::1]", b"127.0.0.1", b"xn--bcher-kva.example",
    b"a%20b", b"", b"h:",
])
def test_valid_hosts(value: bytes) -> None:
    assert check_host([value]) is None


@pytest.mark.parametrize("value", [
    b"a/b@c d", b"a b", b"a@b", b"a/b", b"[::1", b"::1", b"a:b", b"%zz", b"a%2", b"h:80:90",
    b"a\\b", b"a?b", b"a#b",
])
def test_invalid_hosts_are_400_at_every_level(value: bytes) -> None:
    # RFC 9112 §3.2: "... or a Host header field with an invalid field value."
    assert check_host([value]) == (400, "malformed Host field value")


def test_more_than_one_host_is_400() -> None:
    assert check_host([b"a", b"a"]) == (400, "more than one Host field line")


def test_values() -> None:
    assert split_target("/a%20b/c?x=1&y") == ("/a b/c", "x=1&y")
    assert split_target("http://h:1/p%2Fq?z") == ("/p/q", "z")
    assert split_target("/%ff")[0].encode("utf-8", "surrogateescape") == b"/\xff"
    assert parse_query("a=1&b=&c&d=x+y%2B", plus_as_space=True) == [
        ("a", "1"), ("b", ""), ("c", ""), ("d", "x y+")]
    assert parse_query("d=x+y", plus_as_space=False) == [("d", "x+y")]
    assert parse_cookies(['a=1; b="two"; bad; c=3', "d=4"]) == [
        ("a", "1"), ("b", "two"), ("c", "3"), ("d", "4")]


def test_daemon_made_replies() -> None:
    reply = daemon_reply(400, "Bad Request", add_date=False)
    assert reply == (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     b"X-Content-Type-Options: nosniff\r\n"
                     b"Content-Length: 16\r\nConnection: close\r\n\r\n400 Bad Request\n")
    assert b"\r\nDate: " in daemon_reply(408, "Request Timeout", add_date=True)
    head = switching_protocols_head("websocket", [("Sec-WebSocket-Accept", "x")], add_date=False)
    assert head == (b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                    b"Upgrade: websocket\r\nSec-WebSocket-Accept: x\r\n\r\n")


def _parsed(raw: bytes) -> H11Parser:
    parser = H11Parser(16384)
    parser.feed(raw)
    assert isinstance(parser.next_head(), Head)
    return parser


def test_unread_body_done_drainable_or_not() -> None:
    head = b"POST / HTTP/1.1\r\nHost: a\r\n"
    assert consume_buffered_body(_parsed(head + b"Content-Length: 3\r\n\r\nabc"), 3) == (True, True)
    assert consume_buffered_body(_parsed(head + b"Content-Length: 10\r\n\r\nabc"), 10) == (
        False, True)
    big = DRAIN_LIMIT + 10
    assert consume_buffered_body(_parsed(head + b"Content-Length: %d\r\n\r\nabc" % big), big) == (
        False, False)
    chunked = _parsed(head + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    assert consume_buffered_body(chunked, None) == (False, False)
    assert consume_buffered_body(_parsed(head + b"\r\n"), 0) == (True, True)


def test_parser_keeps_no_copy_of_the_body_and_moves_to_the_next_request() -> None:
    parser = H11Parser(16384)
    parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 300000\r\n\r\n")
    assert isinstance(parser.next_head(), Head)
    parser.stop_recording()
    got = 0
    for _ in range(3):
        parser.feed(b"x" * 100_000)
        piece = parser.next_body()
        assert isinstance(piece, bytes)
        got += len(piece)
        assert parser._fed == []  # the body is handed over, not kept
    parser.feed(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
    assert got == 300_000
    assert parser.next_body() == BodyEnd([])
    parser.next_request()
    assert parser.has_next and not parser.at_eof
    head = parser.next_head()
    assert isinstance(head, Head) and head.target == b"/next"
