"""action_upgrade / upload_action_upgrade and the UpgradeHandle, over real sockets."""

from __future__ import annotations

import socket
from typing import Any

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
    status_of,
    text_response,
)

import mhd2

UPGRADE_REQ = (b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
               b"Upgrade: echo/1\r\n\r\n")


async def _head(stream: trio.abc.ReceiveStream, buffer: bytearray) -> bytes:
    """Read a 101 head; bytes after it stay in *buffer*."""
    with trio.fail_after(WAIT):
        while b"\r\n\r\n" not in buffer:
            chunk = await stream.receive_some(65536)
            if not chunk:
                raise EOFError(bytes(buffer))
            buffer += chunk
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end])
    del buffer[:end]
    return head


async def _read_exactly(stream: trio.abc.ReceiveStream, buffer: bytearray, n: int) -> bytes:
    with trio.fail_after(WAIT):
        while len(buffer) < n:
            chunk = await stream.receive_some(65536)
            if not chunk:
                raise EOFError(bytes(buffer))
            buffer += chunk
    data = bytes(buffer[:n])
    del buffer[:n]
    return data


async def _read_to_eof(stream: trio.abc.ReceiveStream, buffer: bytearray) -> bytes:
    with trio.fail_after(WAIT):
        return bytes(buffer) + await read_until_close(stream)


def _upgrader(handler: Any, headers: Any = ()) -> Any:
    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/up":
            return mhd2.action_upgrade(request, "echo/1", handler, headers)
        return text_response(request)
    return cb


async def test_101_head_headers_then_handler_and_extra_in_first() -> None:
    seen: list[bytes] = []

    async def handler(request: mhd2.Request, urh: mhd2.UpgradeHandle) -> None:
        seen.append(await urh.upgraded_recv(100))  # the early bytes
        await urh.upgraded_send(b"hello from the handler")
        seen.append(await urh.upgraded_recv(100))
        await urh.upgraded_close()

    async with running(_upgrader(handler, [("X-Proto", "echo"), ("Sec-Thing", "1")])) as d:
        stream = await trio.open_tcp_stream("127.0.0.1", d.port)
        async with stream:
            await stream.send_all(UPGRADE_REQ + b"early")  # one segment: head + extra_in
            buffer = bytearray()
            head = await _head(stream, buffer)
            lines = head.decode().split("\r\n")
            assert lines[0] == "HTTP/1.1 101 Switching Protocols"
            assert "Connection: Upgrade" in lines and "Upgrade: echo/1" in lines
            assert "X-Proto: echo" in lines and "Sec-Thing: 1" in lines
            assert not any(line.lower().startswith(("content-length", "transfer-encoding"))
                           for line in lines)
            # The handler's bytes come only after the complete 101 head.
            assert await _read_exactly(stream, buffer, 22) == b"hello from the handler"
            await stream.send_all(b"later")
            assert await _read_to_eof(stream, buffer) == b""
    assert seen == [b"early", b"later"]


async def test_upgrade_refused_while_body_unread_and_upload_action_upgrade() -> None:
    errors: list[BaseException] = []

    async def handler(request: mhd2.Request, urh: mhd2.UpgradeHandle) -> None:
        await urh.upgraded_send(b"upgraded after the body")

    def upload_cb(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        assert data == b"abcde"
        return mhd2.upload_action_upgrade(request, "echo/1", handler, [("X-Body", "5")])

    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/direct":
            try:
                mhd2.action_upgrade(request, "echo/1", handler)
            except mhd2.UsageError as exc:
                errors.append(exc)
            return text_response(request, b"refused", 409)
        return mhd2.action_process_upload_full(request, 1024, upload_cb)

    body_req = (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: Upgrade\r\n"
                b"Upgrade: echo/1\r\n\r\nabcde")
    async with running(cb) as d:
        reply = await exchange(d.port, body_req.replace(b"Upgrade\r\n", b"close\r\n", 1)
                               % b"/direct")
        assert status_of(reply) == 409
        assert len(errors) == 1 and "body" in str(errors[0])
        reply = await exchange(d.port, body_req % b"/upload")
        assert reply.startswith(b"HTTP/1.1 101 ")
        assert b"\r\nX-Body: 5\r\n" in reply
        assert reply.endswith(b"\r\n\r\nupgraded after the body")


async def test_disallow_upgrade_is_a_usage_error() -> None:
    errors: list[BaseException] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        try:
            mhd2.action_upgrade(request, "echo/1", lambda r, u: None)
        except mhd2.UsageError as exc:
            errors.append(exc)
        return text_response(request, b"no")

    async with running(cb, disallow_upgrade=True) as d:
        reply = await exchange(d.port, UPGRADE_REQ.replace(b"/up", b"/x"), half_close=True)
    assert status_of(reply) == 200
    assert len(errors) == 1 and "disallow_upgrade" in str(errors[0])


async def test_recv_timeouts_peer_shutdown_and_invalid_after_close() -> None:
    results: dict[str, Any] = {}
    done = trio.Event()

    async def handler(request: mhd2.Request, urh: mhd2.UpgradeHandle) -> None:
        try:
            with pytest.raises(mhd2.UpgradedTimeout):
                await urh.upgraded_recv(10, timeout=0)
            with pytest.raises(mhd2.UpgradedTimeout):
                await urh.upgraded_recv(10, timeout=0.05)
            await urh.upgraded_send(b"ready")
            results["data"] = await urh.upgraded_recv(10, timeout=WAIT)
            results["eof"] = await urh.upgraded_recv(10, timeout=WAIT)  # client shut down
            await urh.upgraded_send(b"still writable after the peer's EOF")
            await urh.upgraded_close()
            for call in (urh.upgraded_recv(1), urh.upgraded_send(b"x"), urh.upgraded_close()):
                with pytest.raises(mhd2.UpgradedHandleInvalid):
                    await call
            with pytest.raises(trio.ClosedResourceError):
                await urh.receive_some(1)
            await urh.aclose()  # idempotent
            results["ok"] = True
        finally:
            done.set()

    async with running(_upgrader(handler)) as d:
        stream = await trio.open_tcp_stream("127.0.0.1", d.port)
        async with stream:
            await stream.send_all(UPGRADE_REQ)
            buffer = bytearray()
            await _head(stream, buffer)
            assert await _read_exactly(stream, buffer, 5) == b"ready"
            await stream.send_all(b"1234")
            await stream.send_eof()
            assert await _read_to_eof(stream, buffer) == b"still writable after the peer's EOF"
        with trio.fail_after(WAIT):
            await done.wait()
    assert results == {"data": b"1234", "eof": b"", "ok": True}


async def test_send_timeout_returns_partial_count_then_times_out(
        autojump_clock: trio.testing.MockClock) -> None:
    """A send to a client that never reads returns what fit once its timeout passes
    (real sockets on MockClock: the timeout passes in virtual time)."""
    results: dict[str, Any] = {}
    filled = trio.Event()

    async def handler(request: mhd2.Request, urh: mhd2.UpgradeHandle) -> None:
        big = b"x" * (64 << 20)
        results["first"] = await urh.upgraded_send(big, timeout=0.2)
        # A timeout of 0 sends what fits now; once nothing fits it raises.  (A
        # few bytes may still fit right after the timeout: the kernel frees
        # send-buffer space in small steps.)
        for _ in range(1000):
            try:
                await urh.upgraded_send(big, timeout=0)
            except mhd2.UpgradedTimeout as exc:
                results["second"] = exc
                break
        filled.set()

    async with running(_upgrader(handler)) as d:
        with socket.create_connection(("127.0.0.1", d.port)) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(UPGRADE_REQ)  # and never read
            with trio.fail_after(WAIT):
                await filled.wait()
    assert 0 < results["first"] < 64 << 20
    assert isinstance(results["second"], mhd2.UpgradedTimeout)
    assert results["second"].code is mhd2.StatusCode.UPGRADED_NET_TIMEOUT


async def _paced_reader(stream: trio.abc.ReceiveStream, total: int, step: int,
                        pause: float) -> tuple[int, float]:
    """Read *total* bytes, at most *step* at a time with *pause* between reads.

    Returns the bytes read and the longest gap between two reads that got data.
    """
    got = 0
    longest = 0.0
    last = trio.current_time()
    with trio.fail_after(WAIT * 3):
        while got < total:
            chunk = await stream.receive_some(step)
            if not chunk:
                break
            now = trio.current_time()
            longest = max(longest, now - last)
            last = now
            got += len(chunk)
            await trio.sleep(pause)  # pacing: a slow but steady client
    return got, longest


async def test_send_timeout_is_an_inactivity_timeout(
        autojump_clock: trio.testing.MockClock) -> None:
    """A send to a slow but steady reader lasts far past *timeout* and is not cut.

    Real sockets on MockClock: loopback I/O is ready as soon as it is done, so
    virtual time only jumps while every task waits on a timer (the reader's
    pacing, or the send's timeout if it were not re-armed)."""
    size = 10 << 20
    results: dict[str, Any] = {}

    async def handler(request: mhd2.Request, urh: mhd2.UpgradeHandle) -> None:
        start = trio.current_time()
        results["sent"] = await urh.upgraded_send(b"s" * size, timeout=0.5)
        results["took"] = trio.current_time() - start
        await urh.upgraded_close()

    async with running(_upgrader(handler)) as d:
        stream = await trio.open_tcp_stream("127.0.0.1", d.port)
        async with stream:
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            await stream.send_all(UPGRADE_REQ)
            buffer = bytearray()
            await _head(stream, buffer)
            got, longest = await _paced_reader(stream, size - len(buffer), 256 << 10, 0.02)
            got += len(buffer)
    assert longest < 0.5  # steady: never a gap as long as the timeout
    assert results["sent"] == size and got == size
    assert results["took"] > 1.0  # the whole send lasted well past the timeout


async def test_graceful_stop_tells_a_plain_upgraded_handler() -> None:
    """begin_stop: urh.stopping / wait_stopping let the handler say goodbye before the grace."""
    seen: list[bool] = []
    ready = trio.Event()

    async def handler(request: mhd2.Request, urh: mhd2.UpgradeHandle) -> None:
        seen.append(urh.stopping)
        ready.set()
        await urh.wait_stopping()
        seen.append(urh.stopping)
        await urh.upgraded_send(b"bye")
        await urh.upgraded_close()

    daemon = mhd2.Daemon(_upgrader(handler), port=0)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.serve)
        stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
        async with stream:
            await stream.send_all(UPGRADE_REQ)
            buffer = bytearray()
            await _head(stream, buffer)
            with trio.fail_after(WAIT):
                await ready.wait()
            start = trio.current_time()
            with trio.fail_after(WAIT):
                await daemon.stop(grace=5)
            elapsed = trio.current_time() - start
            assert await _read_to_eof(stream, buffer) == b"bye"
    assert seen == [False, True]
    assert elapsed < 1.0


async def test_half_closeable_stream_interface() -> None:
    async def handler(request: mhd2.Request, urh: mhd2.UpgradeHandle) -> None:
        assert isinstance(urh, trio.abc.HalfCloseableStream)
        await urh.send_all(b"bye")
        await urh.send_eof()
        assert await urh.receive_some(10) == b"after eof"
        await urh.aclose()

    async with running(_upgrader(handler)) as d:
        stream = await trio.open_tcp_stream("127.0.0.1", d.port)
        async with stream:
            await stream.send_all(UPGRADE_REQ)
            buffer = bytearray()
            await _head(stream, buffer)
            assert await _read_to_eof(stream, buffer) == b"bye"  # EOF from send_eof
            await stream.send_all(b"after eof")
            with trio.fail_after(WAIT):
                assert await stream.receive_some(10) == b""


async def test_handler_returning_without_close_does_not_leak_the_socket() -> None:
    handles: list[mhd2.UpgradeHandle] = []
    returned = trio.Event()

    def handler(request: mhd2.Request, urh: mhd2.UpgradeHandle) -> None:  # plain function
        handles.append(urh)
        returned.set()

    async with running(_upgrader(handler)) as d:
        reply = await exchange(d.port, UPGRADE_REQ)  # ends: the daemon closed the socket
        assert reply.startswith(b"HTTP/1.1 101 ")
        with trio.fail_after(WAIT):
            await returned.wait()
        # The connection is gone from the daemon's books: a limit of 1 admits the next one.
    assert len(handles) == 1


async def test_no_idle_timeout_and_counted_against_limits(
        autojump_clock: trio.testing.MockClock) -> None:
    release = trio.Event()

    async def handler(request: mhd2.Request, urh: mhd2.UpgradeHandle) -> None:
        await urh.upgraded_send(b"up")
        with trio.fail_after(WAIT):
            await release.wait()
        await urh.upgraded_send(b"still here")

    for limit in ({"connection_limit": 1}, {"per_ip_limit": 1}):
        release = trio.Event()
        async with running(_upgrader(handler), timeout=0.2, **limit) as d:
            stream = await open_stream(d)
            async with stream:
                await stream.send_all(UPGRADE_REQ)
                buffer = bytearray()
                await _head(stream, buffer)
                assert await _read_exactly(stream, buffer, 2) == b"up"
                # A second connection is refused while the upgraded one lives (in
                # memory a refused connection is closed unanswered; over TCP it is
                # told 503, see test_daemon).
                assert await exchange(d, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == b""
                await trio.sleep(0.6)  # virtual time: three idle timeouts pass, none applies
                release.set()
                assert await _read_to_eof(stream, buffer) == b"still here"
            # Once the handler is done, the slot is free again.
            await trio.testing.wait_all_tasks_blocked()  # the handler returned
            reply = await exchange(d, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert status_of(reply) == 200


async def test_graceful_stop_closes_upgraded_connections_after_grace(
        autojump_clock: trio.testing.MockClock) -> None:
    """Real sockets on MockClock: the grace passes in virtual time."""
    started = trio.Event()
    cancelled: list[bool] = []

    async def handler(request: mhd2.Request, urh: mhd2.UpgradeHandle) -> None:
        started.set()
        try:
            await urh.upgraded_recv(10)  # never returns on its own
        except trio.Cancelled:
            cancelled.append(True)
            raise

    daemon = mhd2.Daemon(_upgrader(handler), port=0)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.serve)
        stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
        async with stream:
            await stream.send_all(UPGRADE_REQ)
            await _head(stream, bytearray())
            with trio.fail_after(WAIT):
                await started.wait()
            start = trio.current_time()
            with trio.fail_after(WAIT):
                await daemon.stop(grace=0.3)
            elapsed = trio.current_time() - start
            assert await _read_to_eof(stream, bytearray()) == b""
    assert cancelled == [True]
    assert 0.25 <= elapsed < WAIT


async def test_stray_byte_after_upgrade_request_does_not_crash() -> None:
    from mhd2.websocket import action_websocket

    async def echo(ws: Any) -> None:
        await ws.send(await ws.receive())

    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/ws":
            return action_websocket(request, echo)
        return text_response(request)

    req = (b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
           b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    async with running(cb) as d:
        # The stray byte is half a frame header; then the client shuts its side.
        reply = await exchange(d.port, req + b"\x00", half_close=True)
        assert reply.startswith(b"HTTP/1.1 101 ")
        stream = await trio.open_tcp_stream("127.0.0.1", d.port)
        async with stream:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status_of(await read_response(stream, bytearray())) == 200
