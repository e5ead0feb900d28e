"""Malformed and hostile input over raw sockets against a real daemon.

Every case checks three things: the bad request gets the status it deserves
(or a close), the application never sees what it must not see (smuggled or
pipelined requests), and the daemon keeps serving -- a new connection, and a
connection opened before the bad one, still get ``200``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from conftest import (
    exchange,
    open_stream,
    read_response,
    read_until_close,
    running,
    settled,
    status_of,
    text_response,
)

import mhd2

GOOD = b"GET /good HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
#: Bound for one bad-input exchange (the daemon must answer and close by then).
BOUND = 5.0


# -- helpers -----------------------------------------------------------------------


class App:
    """A request callback that records the paths it was asked for."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.methods: list[str] = []

    def __call__(self, request: mhd2.Request) -> mhd2.Action:
        self.paths.append(request.path)
        self.methods.append(request.method)
        return text_response(request, f"{request.method} {request.path}".encode())


def split_responses(raw: bytes) -> list[tuple[int, bytes, bytes]]:
    """Split a raw byte stream into ``(status, lower-cased head, body)`` responses.

    Every response mhd2 sends in these tests carries a Content-Length (or has no
    body), so framing by it is exact; trailing bytes that are not a complete
    response make the test fail.
    """
    out: list[tuple[int, bytes, bytes]] = []
    rest = raw
    while rest:
        assert rest.startswith(b"HTTP/1.1 "), rest[:200]
        end = rest.index(b"\r\n\r\n") + 4
        head = rest[:end].lower()
        length = 0
        for line in head.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = rest[end : end + length]
        assert len(body) == length, rest
        out.append((status_of(rest), head, body))
        rest = rest[end + length :]
    return out


async def bad_exchange(port: int | mhd2.Daemon, data: bytes) -> bytes:
    """Send *data* and read until the daemon closes, within :data:`BOUND` seconds
    (*port* a daemon: in memory, see ``conftest.open_stream``)."""
    with trio.fail_after(BOUND):
        return await exchange(port, data)


async def assert_serves(port: int | mhd2.Daemon) -> None:
    """A fresh connection still gets a normal answer."""
    responses = split_responses(await bad_exchange(port, GOOD))
    assert [(status, body) for status, _, body in responses] == [(200, b"GET /good")]


@asynccontextmanager
async def open_keepalive(port: int) -> AsyncIterator[tuple[trio.SocketStream, bytearray]]:
    """A keep-alive connection that has already been served once."""
    with trio.fail_after(BOUND):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        buffer = bytearray()
        await keepalive_request(stream, buffer, b"/before")
        yield stream, buffer


async def keepalive_request(stream: trio.abc.Stream, buffer: bytearray, path: bytes) -> None:
    with trio.fail_after(BOUND):
        await stream.send_all(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path)
        response = await read_response(stream, buffer)
    assert status_of(response) == 200
    assert response.endswith(b"GET " + path)


def no_internal_errors(caplog: pytest.LogCaptureFixture) -> None:
    bad = [
        r
        for r in caplog.records
        if r.name.startswith("mhd2")
        and r.levelno >= logging.ERROR
        and "internal error" in r.getMessage()
    ]
    assert not bad, [r.getMessage() for r in bad]


# -- requests refused by their head -------------------------------------------------------


def _post(headers: bytes, body: bytes = b"") -> bytes:
    return b"POST / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n" + body


REFUSED: list[Any] = [
    # malformed request lines
    pytest.param(b"GET /\r\nHost: x\r\n\r\n", 400, id="line-two-parts"),
    pytest.param(b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400, id="line-four-parts"),
    pytest.param(b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="line-space-in-target"),
    pytest.param(b" GET / HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="line-leading-space"),
    pytest.param(b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="line-double-space"),
    pytest.param(b"GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="line-tab"),
    pytest.param(b"GET / http/1.1\r\nHost: x\r\n\r\n", 400, id="line-lowercase-version"),
    pytest.param(b"GET / HTTP/1\r\nHost: x\r\n\r\n", 400, id="line-short-version"),
    pytest.param(b"GET / HTTP/1.1x\r\nHost: x\r\n\r\n", 400, id="line-version-suffix"),
    pytest.param(b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="line-nul"),
    # invalid header names / lines
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", 400, id="name-space"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nBad(: v\r\n\r\n", 400, id="name-paren"),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A : v\r\n\r\n", 400, id="name-space-before-colon"
    ),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n", 400, id="name-empty"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX\x7f: v\r\n\r\n", 400, id="name-del"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX\x00: v\r\n\r\n", 400, id="name-nul"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400, id="line-no-colon"),
    pytest.param(b"GET / HTTP/1.1\r\n Host: x\r\n\r\n", 400, id="fold-first-line"),
    # header values
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400, id="value-bare-cr"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400, id="value-nul"),
    # Content-Length
    pytest.param(
        _post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"),
        400,
        id="cl-conflicting-duplicate",
    ),
    pytest.param(_post(b"Content-Length: 5, 6\r\n", b"hello!"), 400, id="cl-conflicting-list"),
    pytest.param(_post(b"Content-Length: -1\r\n"), 400, id="cl-negative"),
    pytest.param(_post(b"Content-Length: +5\r\n", b"hello"), 400, id="cl-plus"),
    pytest.param(_post(b"Content-Length: 0x5\r\n", b"hello"), 400, id="cl-hex"),
    pytest.param(_post(b"Content-Length: " + b"9" * 10_000 + b"\r\n"), 400, id="cl-10000-digits"),
    # Transfer-Encoding the daemon cannot decode
    pytest.param(_post(b"Transfer-Encoding: gzip\r\n"), 501, id="te-gzip"),
    pytest.param(
        _post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"), 501, id="te-gzip-chunked"
    ),
    # versions
    pytest.param(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, id="http-2.0"),
    pytest.param(b"GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505, id="http-3.0"),
    # Host
    pytest.param(b"GET / HTTP/1.1\r\n\r\n", 400, id="host-missing"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, id="host-twice"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400, id="host-twice-same"),
    # request targets
    pytest.param(b"GET foo HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="target-no-slash"),
    pytest.param(b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="target-asterisk-get"),
]


@pytest.mark.parametrize(("data", "status"), REFUSED)
async def test_refused_head(data: bytes, status: int, caplog: pytest.LogCaptureFixture) -> None:
    app = App()
    async with running(app) as daemon:
        async with open_keepalive(daemon.port) as (before, buffer):
            # a request pipelined behind the bad one is never answered
            raw = await bad_exchange(daemon.port, data + SMUGGLED)
            assert b"smuggled" not in raw
            responses = split_responses(raw)
            assert len(responses) == 1
            got, head, _ = responses[0]
            assert got == status
            assert b"\r\nconnection: close\r\n" in head
            # the bad request never reached the application
            assert app.paths == ["/before"]
            # a connection opened before the bad one is unaffected ...
            await keepalive_request(before, buffer, b"/after")
        # ... and a new one is served
        await assert_serves(daemon.port)
    no_internal_errors(caplog)


async def test_empty_lines_before_request_line_are_ignored() -> None:
    # RFC 9112 §2.2: "a server that is expecting to receive and parse a
    # request-line SHOULD ignore at least one empty line (CRLF) received prior
    # to the request-line."
    app = App()
    async with running(app) as daemon:
        raw = await bad_exchange(
            daemon.port, b"\r\n\r\nGET /blank HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert [s for s, _, _ in split_responses(raw)] == [200]
        assert app.paths == ["/blank"]


async def test_chunked_not_final_coding_is_400() -> None:
    # RFC 9112 §6.3: "If a Transfer-Encoding header field is present in a
    # request and the chunked transfer coding is not the final encoding, the
    # message body length cannot be determined reliably; the server MUST
    # respond with the 400 (Bad Request) status code and then close the
    # connection."
    async with running(App()) as daemon:
        raw = await bad_exchange(
            daemon.port, _post(b"Transfer-Encoding: chunked, gzip\r\n", b"0\r\n\r\n")
        )
        assert [s for s, _, _ in split_responses(raw)] == [400]
        await assert_serves(daemon.port)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", id="505"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", id="bare-cr"),
        pytest.param(b"GET / HTTP/1.1\r\n\r\n", id="no-host"),
    ],
)
async def test_bad_request_after_good_ones_on_one_connection(bad: bytes) -> None:
    """Pipelined: good, good, bad, good -- two answers, one refusal, then the close."""
    app = App()
    good = b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n"
    data = good % 1 + good % 2 + bad + good % 3
    async with running(app) as daemon:
        raw = await bad_exchange(daemon.port, data)
        responses = split_responses(raw)
        assert [s for s, _, _ in responses[:2]] == [200, 200]
        assert [b for _, _, b in responses[:2]] == [b"GET /1", b"GET /2"]
        assert len(responses) == 3 and responses[2][0] in (400, 505)
        assert b"connection: close" in responses[2][1]
        assert app.paths == ["/1", "/2"]
        await assert_serves(daemon.port)


@pytest.mark.parametrize(
    ("second", "status"),
    [
        pytest.param(b"GET /v HTTP/2.0\r\nHost: x\r\n\r\n", 505, id="505"),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n",
            400,
            id="bad-name",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 3000 + b"\r\n\r\n",
            431,
            id="431",
        ),
        pytest.param(b"GET / HTTP/1.1\r\nHo", 408, id="408"),
    ],
)
async def test_second_request_on_keepalive_is_refused_with_a_response(
        second: bytes, status: int, autojump_clock: trio.testing.MockClock) -> None:
    """The same refusals as on a fresh connection, for the 2nd request of a keep-alive one
    (in memory on MockClock: the 408 waits out the timeout in virtual time)."""
    app = App()
    async with running(app, max_header_size=LIMIT, timeout=TIMEOUT) as daemon:
        with trio.fail_after(BOUND):
            stream = await open_stream(daemon)
            async with stream:
                buffer = bytearray()
                await keepalive_request(stream, buffer, b"/first")
                await stream.send_all(second)
                rest = bytes(buffer) + await read_until_close(stream)
        assert [s for s, _, _ in split_responses(rest)] == [status]
        assert app.paths == ["/first"]
        await assert_serves(daemon)


# -- request smuggling ------------------------------------------------------------------

CL_TE = (
    b"POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED
)


async def test_content_length_and_transfer_encoding_is_400_and_closed() -> None:
    app = App()
    async with running(app) as daemon:
        async with open_keepalive(daemon.port) as (before, buffer):
            # bad_exchange only returns once the daemon closed the connection
            raw = await bad_exchange(daemon.port, CL_TE)
            responses = split_responses(raw)
            assert [s for s, _, _ in responses] == [400]
            assert b"connection: close" in responses[0][1]
            assert b"smuggled" not in raw
            assert app.paths == ["/before"]
            await keepalive_request(before, buffer, b"/after")
        await assert_serves(daemon.port)


@pytest.mark.parametrize("level", [-1, -3])
async def test_lenient_levels_frame_by_te_then_close(level: int) -> None:
    # RFC 9112 §6.1: "... or process such a request in accordance with the
    # Transfer-Encoding alone.  Regardless, the server MUST close the connection".
    app = App()
    async with running(app, strict_level=level) as daemon:
        raw = await bad_exchange(daemon.port, CL_TE)
        responses = split_responses(raw)
        assert len(responses) == 1
        status, head, _ = responses[0]
        assert status in (200, 400)
        assert b"connection: close" in head
        assert "/smuggled" not in app.paths
        assert b"smuggled" not in raw
        await assert_serves(daemon.port)


async def test_http10_with_transfer_encoding_closes() -> None:
    # RFC 9112 §6.1: "A server or client that receives an HTTP/1.0 message
    # containing a Transfer-Encoding header field MUST treat the message as if
    # the framing is faulty, even if a Content-Length is present, and close the
    # connection after processing the message."
    app = App()
    data = (
        b"POST /first HTTP/1.0\r\nConnection: keep-alive\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED
    )
    async with running(app) as daemon:
        with trio.fail_after(BOUND):
            # half-close so that a daemon wrongly keeping the connection fails fast
            raw = await exchange(daemon.port, data, half_close=True)
        responses = split_responses(raw)
        assert len(responses) == 1
        assert b"keep-alive" not in responses[0][1]
        assert "/smuggled" not in app.paths
        assert b"smuggled" not in raw
        await assert_serves(daemon.port)


BAD_CHUNKS: list[Any] = [
    pytest.param(b"zz\r\nhello\r\n0\r\n\r\n", id="size-not-hex"),
    pytest.param(b"-5\r\nhello\r\n0\r\n\r\n", id="size-negative"),
    pytest.param(b"5\r\nhelloXX0\r\n\r\n", id="missing-crlf-after-data"),
    pytest.param(b"5\r\nhello\n0\r\n\r\n", id="bare-lf-after-data"),
    pytest.param(b"5;a=\nb\r\nhello\r\n0\r\n\r\n", id="ext-bare-lf"),
    pytest.param(b"5\r\nhello\r\n0\r\nX-T: 1\r\r\n\r\n", id="trailer-bare-cr"),
    pytest.param(b"1" * 40 + b"\r\nhello\r\n0\r\n\r\n", id="size-huge"),
]


@pytest.mark.parametrize("body", BAD_CHUNKS)
async def test_bad_chunked_body_never_smuggles(body: bytes) -> None:
    """The app answers without reading the body (no upload action yet).

    mhd2 consumes the buffered body when deciding whether to keep the
    connection; an invalid chunk must close it so that the request hidden
    after it is never parsed.
    """
    app = App()
    data = (
        b"POST /first HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body + SMUGGLED
    )
    async with running(app) as daemon:
        raw = await bad_exchange(daemon.port, data)
        responses = split_responses(raw)
        assert len(responses) == 1
        status, head, _ = responses[0]
        assert status in (200, 400)
        assert b"connection: close" in head
        assert "/smuggled" not in app.paths
        assert b"smuggled" not in raw
        await assert_serves(daemon.port)


async def test_pipelined_after_connection_close_is_never_answered() -> None:
    app = App()
    data = (
        b"GET /1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    async with running(app) as daemon:
        raw = await bad_exchange(daemon.port, data)
        assert [(s, b) for s, _, b in split_responses(raw)] == [(200, b"GET /1")]
        assert app.paths == ["/1"]
        await assert_serves(daemon.port)


async def test_good_pipelined_requests_are_all_answered() -> None:
    # the control for the test above: without "close" both are served
    app = App()
    data = (
        b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    async with running(app) as daemon:
        raw = await bad_exchange(daemon.port, data)
        assert [(s, b) for s, _, b in split_responses(raw)] == [(200, b"GET /1"), (200, b"GET /2")]


# -- size limits ---------------------------------------------------------------------

LIMIT = 1024


async def _trickle(stream: trio.SocketStream, data: bytes, piece: int) -> None:
    try:
        for i in range(0, len(data), piece):
            await stream.send_all(data[i : i + piece])
            await trio.sleep(0.005)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the daemon answered and closed early: that is the point


async def _send_in_pieces(port: int, data: bytes, piece: int) -> bytes:
    with trio.fail_after(BOUND):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream, trio.open_nursery() as nursery:
            nursery.start_soon(_trickle, stream, data, piece)
            chunks = []
            while True:
                try:
                    chunk = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            nursery.cancel_scope.cancel()
            return b"".join(chunks)


BIG_HEAD = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 3000 + b"\r\n\r\n"
LONG_LINE = b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("piece", [None, 100], ids=["one-write", "trickled"])
async def test_head_over_max_header_size_is_431(piece: int | None) -> None:
    app = App()
    async with running(app, max_header_size=LIMIT) as daemon:
        if piece is None:
            raw = await bad_exchange(daemon.port, BIG_HEAD)
        else:
            raw = await _send_in_pieces(daemon.port, BIG_HEAD, piece)
        assert [s for s, _, _ in split_responses(raw)] == [431]
        assert app.paths == []
        # a head comfortably under the limit is fine
        ok = (
            b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Pad: "
            + b"a" * 600
            + b"\r\nConnection: close\r\n\r\n"
        )
        assert [s for s, _, _ in split_responses(await bad_exchange(daemon.port, ok))] == [200]
        await assert_serves(daemon.port)


@pytest.mark.parametrize("piece", [None, 100], ids=["one-write", "trickled"])
async def test_overlong_request_line_is_414_or_431(piece: int | None) -> None:
    app = App()
    async with running(app, max_header_size=LIMIT) as daemon:
        if piece is None:
            raw = await bad_exchange(daemon.port, LONG_LINE)
        else:
            raw = await _send_in_pieces(daemon.port, LONG_LINE, piece)
        statuses = [s for s, _, _ in split_responses(raw)]
        assert len(statuses) == 1 and statuses[0] in (414, 431)
        assert app.paths == []
        await assert_serves(daemon.port)


# -- timeouts ----------------------------------------------------------------------------

TIMEOUT = 0.5


async def test_slow_header_trickle_is_cut_off_after_timeout(
        autojump_clock: trio.testing.MockClock) -> None:
    app = App()
    async with running(app, timeout=TIMEOUT) as daemon:
        with trio.fail_after(BOUND):
            stream = await open_stream(daemon)
            start = trio.current_time()

            async def slowloris() -> None:
                try:
                    await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
                    for i in range(1000):
                        await trio.sleep(0.1)
                        await stream.send_all(b"X-%d: y\r\n" % i)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass

            async with stream, trio.open_nursery() as nursery:
                nursery.start_soon(slowloris)
                raw = await read_until_close(stream)
                elapsed = trio.current_time() - start
                nursery.cancel_scope.cancel()
        assert raw == b"" or [s for s, _, _ in split_responses(raw)] == [408]
        assert TIMEOUT * 0.99 <= elapsed < TIMEOUT + 0.2, elapsed  # virtual time
        assert app.paths == []
        await assert_serves(daemon)


async def test_partial_head_then_silence_gets_408(
        autojump_clock: trio.testing.MockClock) -> None:
    async with running(App(), timeout=TIMEOUT) as daemon:
        with trio.fail_after(BOUND):
            stream = await open_stream(daemon)
            async with stream:
                start = trio.current_time()
                await stream.send_all(b"GET / HTTP/1.1\r\nHo")
                raw = await read_until_close(stream)
                elapsed = trio.current_time() - start
        assert raw == b"" or [s for s, _, _ in split_responses(raw)] == [408]
        assert TIMEOUT * 0.99 <= elapsed < TIMEOUT + 0.2, elapsed  # virtual time
        await assert_serves(daemon)


async def test_idle_keepalive_connection_is_closed_after_timeout(
        autojump_clock: trio.testing.MockClock) -> None:
    async with running(App(), timeout=TIMEOUT) as daemon:
        with trio.fail_after(BOUND):
            stream = await open_stream(daemon)
            async with stream:
                buffer = bytearray()
                await keepalive_request(stream, buffer, b"/one")
                start = trio.current_time()
                rest = await read_until_close(stream)
                elapsed = trio.current_time() - start
        assert rest == b"" and not buffer  # idle: closed without a 408
        assert TIMEOUT * 0.99 <= elapsed < TIMEOUT + 0.2, elapsed  # virtual time
        await assert_serves(daemon)


async def test_silent_new_connection_is_closed_after_timeout(
        autojump_clock: trio.testing.MockClock) -> None:
    async with running(App(), timeout=TIMEOUT) as daemon:
        with trio.fail_after(BOUND):
            stream = await open_stream(daemon)
            async with stream:
                start = trio.current_time()
                rest = await read_until_close(stream)
                elapsed = trio.current_time() - start
        assert rest == b""
        assert TIMEOUT * 0.99 <= elapsed < TIMEOUT + 0.2, elapsed  # virtual time
        await assert_serves(daemon)


async def test_active_keepalive_connection_is_not_cut_off(
        autojump_clock: trio.testing.MockClock) -> None:
    # `timeout` is how long a connection may sit *idle*; this client is never
    # idle for more than 0.25 s, yet it is well past `timeout` in total.
    async with running(App(), timeout=TIMEOUT) as daemon:
        with trio.fail_after(BOUND):
            stream = await open_stream(daemon)
            async with stream:
                buffer = bytearray()
                for i in range(6):
                    await keepalive_request(stream, buffer, b"/%d" % i)
                    await trio.sleep(TIMEOUT / 2)


# -- response header injection ---------------------------------------------------------


async def test_response_header_with_crlf_is_refused_and_never_sent() -> None:
    errors: list[mhd2.ResponseHeaderError] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        response = mhd2.Response.from_buffer_copy(200, b"fine")
        for name, value in (
            ("X", "a\r\nInjected: 1"),
            ("X", "a\nInjected: 2"),
            ("X", "a\rInjected: 3"),
            ("X\r\nInjected", "4"),
        ):
            try:
                response.add_header(name, value)
            except mhd2.ResponseHeaderError as exc:
                errors.append(exc)
        response.add_header("X-Safe", "yes")
        return mhd2.action_from_response(request, response)

    async with running(cb) as daemon:
        raw = await bad_exchange(daemon.port, GOOD)
    assert len(errors) == 4
    assert all(isinstance(e, mhd2.UsageError) for e in errors)
    assert b"Injected" not in raw
    responses = split_responses(raw)
    assert [(s, b) for s, _, b in responses] == [(200, b"fine")]
    assert b"\r\nx-safe: yes\r\n" in responses[0][1]


# -- strictness ---------------------------------------------------------------------------

BARE_LF = b"GET /lf HTTP/1.1\nHost: x\nConnection: close\n\n"
OBS_FOLD = b"GET /fold HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\nConnection: close\r\n\r\n"


@pytest.mark.parametrize("data", [BARE_LF, OBS_FOLD], ids=["bare-lf", "obs-fold"])
async def test_strict_level_1_rejects_lenient_syntax(data: bytes) -> None:
    app = App()
    async with running(app, strict_level=1) as daemon:
        raw = await bad_exchange(daemon.port, data)
        assert [s for s, _, _ in split_responses(raw)] == [400]
        assert app.paths == []
        await assert_serves(daemon.port)


async def test_default_level_accepts_bare_lf() -> None:
    app = App()
    async with running(app) as daemon:
        raw = await bad_exchange(daemon.port, BARE_LF)
        assert [(s, b) for s, _, b in split_responses(raw)] == [(200, b"GET /lf")]


async def test_options_asterisk_reaches_the_app() -> None:
    seen: list[tuple[str, str]] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        seen.append((request.method, request.path))
        return text_response(request)

    async with running(cb) as daemon:
        raw = await bad_exchange(
            daemon.port, b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
    assert [s for s, _, _ in split_responses(raw)] == [200]
    assert seen == [("OPTIONS", "*")]


# -- notifications and disconnects ------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GET /v HTTP/2.0\r\nHost: x\r\n\r\n", id="505"),
        pytest.param(b"GET foo HTTP/1.1\r\nHost: x\r\n\r\n", id="bad-target"),
        pytest.param(b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", id="asterisk"),
    ],
)
async def test_refused_after_head_reports_protocol_error(
    data: bytes, ended: list[tuple[mhd2.Request, mhd2.RequestEndedCode]]
) -> None:
    app = App()

    def notify(request: mhd2.Request, code: mhd2.RequestEndedCode) -> None:
        ended.append((request, code))

    async with running(app, notify_request_ended=notify) as daemon:
        raw = await bad_exchange(daemon.port, data)
        assert len(split_responses(raw)) == 1
        assert [code for _, code in ended] == [mhd2.RequestEndedCode.HTTP_PROTOCOL_ERROR]
        assert app.paths == []
        ended.clear()
        await assert_serves(daemon.port)
        assert [code for _, code in ended] == [mhd2.RequestEndedCode.COMPLETED_OK]


async def test_disconnect_mid_response_does_not_hurt_the_daemon(
    ended: list[tuple[mhd2.Request, mhd2.RequestEndedCode]], caplog: pytest.LogCaptureFixture
) -> None:
    """An endless chunked response: the client reads a little and leaves."""

    def endless(ctx: Any, pos: int, buf: memoryview) -> Any:
        buf[:] = b"x" * len(buf)
        return mhd2.dcc_action_continue(ctx, len(buf))

    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/endless":
            response = mhd2.Response.from_callback(200, None, endless)
            return mhd2.action_from_response(request, response)
        return text_response(request, b"GET " + request.path.encode())

    def notify(request: mhd2.Request, code: mhd2.RequestEndedCode) -> None:
        ended.append((request, code))

    async with running(cb, notify_request_ended=notify) as daemon:
        for _ in range(3):
            with trio.fail_after(BOUND):
                stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
                await stream.send_all(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
                got = await stream.receive_some(1000)
                assert got.startswith(b"HTTP/1.1 200 ")
                await stream.aclose()
        await settled(BOUND)  # the daemon noticed each leave (loopback: at once)
        assert [code for _, code in ended] == [mhd2.RequestEndedCode.CLIENT_ABORT] * 3
        await assert_serves(daemon.port)
    no_internal_errors(caplog)


@pytest.mark.parametrize(
    "partial",
    [
        b"GET / HTTP/1.1\r\nHo",
        b"GET / HT",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    ],
)
@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
async def test_disconnect_mid_request_does_not_hurt_the_daemon(
    partial: bytes, reset: bool, caplog: pytest.LogCaptureFixture
) -> None:
    import socket
    import struct

    app = App()
    async with running(app) as daemon:
        async with open_keepalive(daemon.port) as (before, buffer):
            with trio.fail_after(BOUND):
                stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
                await stream.send_all(partial)
                if reset:  # abortive close: RST instead of FIN
                    stream.socket.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                await stream.aclose()
            await keepalive_request(before, buffer, b"/after")
        await assert_serves(daemon.port)
    no_internal_errors(caplog)


@pytest.mark.parametrize(
    ("bad", "status", "method"),
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", 400, "-",
                     id="bad-name"),
        pytest.param(b"\x01\x02 garbage\r\n\r\n", 400, "-", id="garbage"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 3000 + b"\r\n\r\n", 431,
                     "-", id="431"),
        # parsed, then refused: reported under its method
        pytest.param(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, "GET", id="505"),
    ],
)
@pytest.mark.parametrize("together", [True, False], ids=["one-write", "after-the-answer"])
async def test_pipelined_head_that_fails_to_parse_is_reported(
        bad: bytes, status: int, method: str, together: bool) -> None:
    """The 2nd request of a connection fails to parse: notify_request_ended (so the access
    log) hears of it as of a first request's failure -- method '-', the status sent,
    HTTP_PROTOCOL_ERROR -- whether it came in one write with the 1st or after its answer."""
    ended: list[tuple[str, int | None, mhd2.RequestEndedCode]] = []

    def notify(request: mhd2.Request, code: mhd2.RequestEndedCode) -> None:
        ended.append((request.method, request.response_status, code))

    first = b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n"
    async with running(App(), max_header_size=LIMIT, notify_request_ended=notify) as daemon:
        with trio.fail_after(BOUND):
            stream = await open_stream(daemon)
            async with stream:
                buffer = bytearray()
                if together:
                    await stream.send_all(first + bad)
                else:
                    await stream.send_all(first)
                    assert status_of(await read_response(stream, buffer)) == 200
                    await stream.send_all(bad)
                await stream.send_eof()
                rest = bytes(buffer) + await read_until_close(stream)
    assert [s for s, _, _ in split_responses(rest)][-1] == status
    assert ended == [("GET", 200, mhd2.RequestEndedCode.COMPLETED_OK),
                     (method, status, mhd2.RequestEndedCode.HTTP_PROTOCOL_ERROR)]
