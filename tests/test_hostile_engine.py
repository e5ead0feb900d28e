"""Hostile input against the HTTP/1 engine (issue: hostile input, round 2).

Each test here failed on the engine before the transport / exchange split:
the deadline armed once per write, empty lines re-arming the idle timer,
one-byte chunks handed to the application one by one with no checkpoint, a
body trickled forever, a log line per refused connection, ``Host`` not
validated, error pages that echoed the request, lenient trailers at strict
levels.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import pytest
import trio
import trio.testing
from conftest import (
    WAIT,
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

Code = mhd2.RequestEndedCode


# -- 2. the inactivity timeout is re-armed by every partial write -------------------


@pytest.mark.parametrize("source", ["buffer", "file"])
async def test_slow_steady_reader_is_not_cut_by_the_inactivity_timeout(
        source: str, tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """A body that takes several timeouts to read, read steadily, arrives whole
    (from memory through write, and from a file through sendfile)."""
    # Real sockets (partial writes, sendfile) on MockClock: loopback I/O is
    # ready as soon as it is done, so virtual time only jumps while every task
    # waits on a timer -- the reader's pacing, a read every 0.02 s against a
    # 0.3 s timeout.
    body = b"x" * (3 * 1024 * 1024)
    path = tmp_path / "body.bin"
    path.write_bytes(body)
    ends: list[mhd2.RequestEndedCode] = []

    def app(request: mhd2.Request) -> mhd2.Action:
        if source == "file":
            response = mhd2.Response.from_fd(200, os.open(path, os.O_RDONLY))
        else:
            response = mhd2.Response.from_buffer_static(200, body)
        return mhd2.action_from_response(request, response)

    async with running(app, timeout=0.3, notify_request_ended=lambda r, c: ends.append(c)) as d:
        sock = trio.socket.socket()
        # A small receive buffer keeps the server's writes partial.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        await sock.connect(("127.0.0.1", d.port))
        stream = trio.SocketStream(sock)
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        got = 0
        started = trio.current_time()
        with trio.fail_after(60):
            while True:
                chunk = await stream.receive_some(64 * 1024)
                if not chunk:
                    break
                got += len(chunk)
                await trio.sleep(0.02)  # the workload: a reader of at most ~3 MiB/s
        elapsed = trio.current_time() - started
    assert elapsed > 0.6  # it did take more than two timeouts ...
    assert got > len(body)  # ... and nothing was cut
    assert ends == [Code.COMPLETED_OK]


# -- 3. empty lines before a request line do not re-arm the idle timer -----------------


async def test_empty_lines_do_not_hold_an_idle_connection_open(
        autojump_clock: trio.testing.MockClock) -> None:
    async with running(text_response, timeout=0.5) as d:
        stream = await open_stream(d)
        started = trio.current_time()
        closed_after = None
        with trio.fail_after(WAIT):
            async with stream:
                while True:
                    try:
                        await stream.send_all(b"\r\n")
                    except trio.BrokenResourceError:
                        closed_after = trio.current_time() - started
                        break
                    with trio.move_on_after(0.1):
                        try:
                            end = await stream.receive_some(10) == b""
                        except trio.BrokenResourceError:
                            # The daemon closed with our empty lines unread: an RST.
                            end = True
                        if end:
                            closed_after = trio.current_time() - started
                            break
        # virtual time: closed at the timeout, not re-armed by the empty lines
        assert closed_after is not None and 0.49 < closed_after < 0.6, closed_after


# -- 5. one-byte chunks are merged and do not monopolise the daemon -----------------------


async def test_tiny_chunks_are_merged_and_other_clients_are_served_meanwhile() -> None:
    chunks = 60_000
    calls = 0
    received = 0
    order: list[str] = []

    def upload_cb(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        nonlocal calls, received
        calls += 1
        received += len(data)
        if data:
            return mhd2.upload_action_continue(request)
        order.append("upload done")
        return mhd2.upload_action_from_response(request, mhd2.Response.from_buffer_copy(200, b"up"))

    def app(request: mhd2.Request) -> mhd2.Action:
        if request.method == "POST":
            return mhd2.action_process_upload_inc(request, upload_cb)
        order.append("get served")
        return text_response(request)

    body = b"1\r\nx\r\n" * chunks + b"0\r\n\r\n"
    async with running(app) as d:
        uploader = await open_stream(d)
        async with uploader:
            await uploader.send_all(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                                    b"Connection: close\r\n\r\n" + body)
            # Another client asks while the body is being taken apart.
            reply = await exchange(d, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            assert status_of(reply) == 200
            with trio.fail_after(WAIT * 3):
                assert status_of(await read_until_close(uploader)) == 200
    assert received == chunks
    assert calls <= chunks // 100  # merged: far fewer calls than chunks
    assert order.index("get served") < order.index("upload done")


# -- 7. a body trickled below the minimum rate is cut -----------------------------------


async def test_trickled_body_is_cut_with_408(
        ended: list[tuple[mhd2.Request, Code]], autojump_clock: trio.testing.MockClock) -> None:
    def app(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_process_upload_full(
            request, 1000, lambda r, data: mhd2.upload_action_from_response(
                r, mhd2.Response.from_buffer_copy(200, b"got it")))

    async with running(app, min_body_rate=(100, 0.5), timeout=30,
                       notify_request_ended=lambda r, c: ended.append((r, c))) as d:
        stream = await open_stream(d)
        async with stream:
            await stream.send_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n")
            reply = b""
            with trio.fail_after(WAIT):
                while not reply:
                    try:
                        await stream.send_all(b"a")
                    except trio.BrokenResourceError:
                        break
                    with trio.move_on_after(0.15):
                        reply = bytes(await stream.receive_some(4096))
        assert reply.startswith(b"HTTP/1.1 408 ")
    assert [c for _, c in ended] == [Code.HTTP_PROTOCOL_ERROR]


async def test_min_body_rate_can_be_disabled_and_is_validated() -> None:
    with pytest.raises(mhd2.UsageError, match="min_body_rate"):
        mhd2.Daemon(text_response, min_body_rate=(0, 1.0))
    with pytest.raises(mhd2.UsageError, match="min_body_rate"):
        mhd2.Daemon(text_response, min_body_rate=5)
    assert mhd2.Daemon(text_response, min_body_rate=None).options.min_body_rate is None


# -- 8. refusals over the connection limit are logged at a bounded rate ------------------


async def test_connection_limit_refusals_are_rate_limited_in_the_log(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mhd2")
    async with running(text_response, connection_limit=1) as d:
        holder = await open_stream(d.port)
        await settled()
        assert d.connection_count == 1
        for _ in range(40):
            reply = await exchange(d.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert reply.startswith(b"HTTP/1.1 503 ")
        await holder.aclose()
    lines = [r for r in caplog.records if r.name == "mhd2" and "refused" in r.getMessage()]
    assert 1 <= len(lines) <= 2
    assert "1 connection(s) refused" in lines[0].getMessage()


# -- 9. an invalid Host is 400 at every strict level ------------------------------------------


@pytest.mark.parametrize("level", [-3, -1, 0, 1, 3])
@pytest.mark.parametrize("host", [b"a/b@c d", b"a b", b"[::1", b"x@y", b"a%zz"])
async def test_invalid_host_is_400_at_every_level(level: int, host: bytes) -> None:
    async with running(text_response, strict_level=level) as d:
        reply = await exchange(d, b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
        assert status_of(reply) == 400


async def test_two_host_lines_are_400() -> None:
    async with running(text_response) as d:
        reply = await exchange(d, b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n")
        assert status_of(reply) == 400


async def test_valid_hosts_are_served() -> None:
    async with running(text_response) as d:
        for host in (b"example.com:8080", b"[::1]:80", b"127.0.0.1", b"a%41b"):
            reply = await exchange(d, b"GET / HTTP/1.1\r\nHost: " + host +
                                   b"\r\nConnection: close\r\n\r\n")
            assert status_of(reply) == 200, host


# -- 10. daemon-made error pages never echo the request -----------------------------------------


BAD_REQUESTS = [
    b"GET /<script>alert(1)</script> HTTP/1.1 junk\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n<script>: x\r\nbad header line <b>\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz<script>\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n<script>alert(1)\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: <script>\r\n\r\n",
]


@pytest.mark.parametrize("raw", BAD_REQUESTS)
async def test_error_pages_are_fixed_texts(raw: bytes) -> None:
    def app(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_process_upload_full(
            request, 1000, lambda r, data: mhd2.upload_action_from_response(
                r, mhd2.Response.from_buffer_copy(200, b"ok")))

    async with running(app) as d:
        reply = await exchange(d, raw)
    status = status_of(reply)
    assert 400 <= status < 500
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b"script" not in reply.lower()
    assert body == b"%d %s\n" % (status, mhd2.HTTPStatus(status).phrase.encode())
    assert b"\r\nX-Content-Type-Options: nosniff" in head


# -- 11. strict levels >= 1 check the chunked body's line endings and trailers -------------------


PIPELINED = b"GET /second HTTP/1.1\r\nHost: a\r\n\r\n"


@pytest.mark.parametrize("ending", [
    b"0\r\n\n",  # bare LF ends the trailer section
    b"0\r\nX-T: a\r\n folded\r\n\r\n",  # obs-fold in a trailer
    b"3\nabc\r\n0\r\n\r\n",  # bare LF after a chunk size
])
async def test_strict_refuses_lenient_chunked_framing(ending: bytes) -> None:
    seen: list[str] = []

    def app(request: mhd2.Request) -> mhd2.Action:
        seen.append(request.path)
        if request.method == "POST":
            return mhd2.action_process_upload_full(
                request, 1000, lambda r, data: mhd2.upload_action_from_response(
                    r, mhd2.Response.from_buffer_copy(200, b"ok")))
        return text_response(request)

    head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    async with running(app, strict_level=1) as d:
        reply = await exchange(d, head + ending + PIPELINED)
        assert status_of(reply) == 400
        assert reply.count(b"HTTP/1.1") == 1  # closed: the pipelined request is not served
    assert "/second" not in seen
    if ending.startswith(b"0\r\n"):
        async with running(app, strict_level=0) as d:
            reply = await exchange(d, head + ending + b"GET /second HTTP/1.1\r\nHost: a\r\n"
                                   b"Connection: close\r\n\r\n")
            assert reply.count(b"HTTP/1.1 200 ") == 2  # lenient levels accept them


async def test_strict_refuses_lenient_trailer_even_when_the_body_is_not_read() -> None:
    async with running(text_response, strict_level=1) as d:
        reply = await exchange(d, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                                  b"\r\n0\r\n\n" + PIPELINED)
        assert reply.count(b"HTTP/1.1 ") == 1  # answered, then closed
        assert b"Connection: close" in reply


# -- the engine's other limits -----------------------------------------------------------------


@pytest.mark.parametrize("empty_lines", [b"", b"\r\n"])
@pytest.mark.parametrize("over", ["memory", "tcp"])
async def test_keep_alive_timeout_apart_from_timeout(
        over: str, empty_lines: bytes, autojump_clock: trio.testing.MockClock) -> None:
    """The wait for the next request ends at keep_alive_timeout, also over a
    plain socket, and when empty lines come right after the response (not
    progress)."""
    async with running(text_response, timeout=30, keep_alive_timeout=0.3) as d:
        stream = await open_stream(d if over == "memory" else d.port)
        async with stream:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            buffer = bytearray()
            assert status_of(await read_response(stream, buffer)) == 200
            started = trio.current_time()
            if empty_lines:
                await stream.send_all(empty_lines)
            with trio.fail_after(WAIT):
                assert await read_until_close(stream) == b""
            idle_for = trio.current_time() - started  # virtual time
            assert 0.29 < idle_for < 1, idle_for  # keep_alive_timeout, not timeout
    assert mhd2.Daemon(text_response, timeout=7).options.keep_alive_timeout == 7


async def test_empty_lines_in_before_the_response_end_do_not_get_the_request_timeout(
        autojump_clock: trio.testing.MockClock) -> None:
    """Empty lines already in when the response is written are read without a
    wait: the idle limit still applies to them, keep_alive_timeout, not
    timeout (a loop that changed the limit only before a wait would miss them)."""
    called = trio.Event()
    release = trio.Event()

    async def app(request: mhd2.Request) -> mhd2.Action:
        called.set()
        await release.wait()
        return text_response(request)

    async with running(app, timeout=30, keep_alive_timeout=0.3) as d:
        stream = await open_stream(d.port)
        async with stream:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            with trio.fail_after(WAIT):
                await called.wait()
            await stream.send_all(b"\r\n\r\n")  # in the kernel before the response
            release.set()
            buffer = bytearray()
            assert status_of(await read_response(stream, buffer)) == 200
            started = trio.current_time()
            with trio.fail_after(WAIT):
                assert await read_until_close(stream) == b""
            idle_for = trio.current_time() - started  # virtual time
            assert idle_for < 1, idle_for  # keep_alive_timeout, not timeout


async def test_max_requests_per_connection() -> None:
    async with running(text_response, max_requests_per_connection=2) as d:
        reply = await exchange(d, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" * 3)
    assert reply.count(b"HTTP/1.1 200 ") == 2
    first, second = reply.split(b"HTTP/1.1 200 ")[1:]
    assert b"Connection: close" not in first
    assert b"Connection: close" in second


async def test_per_connection_timeout_override(
        autojump_clock: trio.testing.MockClock) -> None:
    def app(request: mhd2.Request) -> mhd2.Action:
        assert request.connection_timeout == 30
        request.connection_timeout = 0.3
        assert request.connection_timeout == 0.3
        return text_response(request)

    async with running(app, timeout=30) as d:
        stream = await open_stream(d)
        async with stream:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert status_of(await read_response(stream, bytearray())) == 200
            with trio.fail_after(5):  # 0.3 s, not 30
                assert await read_until_close(stream) == b""

    def bad(request: mhd2.Request) -> mhd2.Action:
        with pytest.raises(mhd2.UsageError):
            request.connection_timeout = -1
        return text_response(request)

    async with running(bad) as d:
        assert status_of(await exchange(d, b"GET / HTTP/1.0\r\n\r\n")) == 200
