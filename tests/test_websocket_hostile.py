"""Hostile WebSocket clients (issue 9): each attack over a real connection, each bounded.

* after a protocol error nothing the client sends is buffered (RSS of a server process);
* empty continuation frames count: too many fragments close with 1009, and the other
  clients stay responsive meanwhile;
* a graceful stop says 1001 at once and ends within the grace period;
* permessage-deflate offers with unknown, duplicated or invalid parameters are declined;
* close reasons are fixed texts, never parser or codec detail.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from conftest import WAIT, exchange, open_stream, read_until_close, running, status_of
from test_websocket import RawClient, _app, _handshake, echo, masked

import mhd2
from mhd2.websocket import (
    FRAGMENT_OVERHEAD,
    CloseReason,
    ConnectionClosed,
    WebSocket,
    WebSocketStatus,
    WebSocketStream,
    action_websocket,
)

ROOT = Path(__file__).resolve().parents[1]
STARTED = re.compile(r"^(\w+): listening on http://127\.0\.0\.1:(\d+)/")
MiB = 1 << 20


def _kib(pid: int, field: str) -> int:
    """A ``/proc/PID/status`` figure (``VmRSS``, ``VmHWM``) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def _recv_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data


# -- 1. after a protocol error, input is dropped, never buffered ------------------------------


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_protocol_error_then_a_flood_does_not_grow_server_memory() -> None:
    """Reserved opcode 3, then 200 MB of zeros: the echo server's peak RSS grows < 10 MiB."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    server = subprocess.Popen(
        [sys.executable, "-u", str(ROOT / "examples" / "ws_echo.py"), "--port", "0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env=env)
    try:
        assert server.stdout is not None
        match = STARTED.match(server.stdout.readline())
        assert match is not None
        port = int(match[2])
        # Warm up: one echo over a WebSocket, so that imports and buffers are paid for.
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            sock.sendall(_handshake())
            rest = _recv_head(sock).split(b"\r\n\r\n", 1)[1]
            sock.sendall(masked(0x82, b"warm"))
            while len(rest) < 6:
                rest += sock.recv(65536)
            assert rest[:6] == b"\x82\x04warm"
        before = _kib(server.pid, "VmHWM")

        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            sock.sendall(_handshake())
            _recv_head(sock)
            sock.sendall(b"\x83\x81\x00\x00\x00\x00x")  # a frame with reserved opcode 3
            zeros = bytes(MiB)
            sent = 0
            try:
                while sent < 200 * MiB:
                    sock.sendall(zeros)
                    sent += len(zeros)
            except OSError:
                pass  # the server closed the connection: fine, nothing is kept either way
            sock.shutdown(socket.SHUT_WR)
            try:
                while sock.recv(65536):  # the close frame, then the server's end
                    pass
            except OSError:
                pass
        after = _kib(server.pid, "VmHWM")
        assert server.poll() is None
    finally:
        if server.poll() is None:
            server.communicate("\n", timeout=WAIT)
    assert sent >= 16 * MiB  # the flood did reach the server
    assert after - before < 10 * 1024, f"peak RSS grew by {(after - before) / 1024:.1f} MiB"


async def test_failed_connection_parses_nothing_more_and_answers_with_a_fixed_reason() -> None:
    """After a protocol error the client's close frame is not processed: the server ends."""
    seen: list[CloseReason | None] = []

    async def handler(ws: WebSocket) -> None:
        try:
            await ws.receive()
        finally:
            seen.append(ws.closed)

    async with running(_app(handler)) as d:
        client, _ = await RawClient.open(d.port)
        async with client.stream:
            await client.send(b"\x83\x81\x00\x00\x00\x00x")
            status, payload = await client.next()
            assert status == WebSocketStatus.CLOSE_FRAME
            assert WebSocketStream.split_close_reason(payload) == (1002, "protocol error")
            # The server signalled its end right after its close frame.
            assert await client.next() == (WebSocketStatus.OK, None)
    assert seen == [CloseReason(1002, "protocol error")]


async def _close_after(client: RawClient, frame: bytes) -> tuple[int, str]:
    """Send *frame*; the ``(code, reason)`` of the close frame the server answers with."""
    await client.send(frame)
    status, payload = await client.next()
    assert status == WebSocketStatus.CLOSE_FRAME
    return WebSocketStream.split_close_reason(payload)


@pytest.mark.parametrize(("frame", "code"), [
    (b"\x83\x81\x00\x00\x00\x00x", 1002),  # a reserved opcode
    (masked(0x81, b"\xc3\x28"), 1007),  # text that is not UTF-8
], ids=["reserved-opcode", "bad-utf8"])
async def test_a_protocol_error_ends_the_receive_at_once_and_drains_after_the_handler(
        frame: bytes, code: int) -> None:
    """The handler's receive() raises as soon as the close frame is out -- not
    after draining the client for up to CLOSE_TIMEOUT (5 s) -- while the
    client, which has not closed, still gets the server's end afterwards."""
    told = trio.Event()
    release = trio.Event()
    seen: list[CloseReason | None] = []

    async def handler(ws: WebSocket) -> None:
        try:
            await ws.receive()
        except ConnectionClosed:
            seen.append(ws.closed)
            told.set()
        await release.wait()  # the handler goes on for a while

    async with running(_app(handler)) as d:
        client, _ = await RawClient.open(d.port)
        async with client.stream:
            assert (await _close_after(client, frame))[0] == code
            with trio.fail_after(1):  # (CLOSE_TIMEOUT is 5 s)
                await told.wait()
            assert seen[0] is not None and seen[0].code == code
            assert await client.next() == (WebSocketStatus.OK, None)  # the server's FIN
            release.set()
            # The client closes (leaving the block); the server, draining
            # since the handler returned, sees it and ends.


# -- 6. close reasons are fixed texts --------------------------------------------------------


@pytest.mark.parametrize(("frame", "code", "text"), [
    (masked(0x81, b"\xc3\x28"), 1007, "invalid UTF-8"),
    (masked(0x81, b"ok \xff\xfe"), 1007, "invalid UTF-8"),
    (b"\x81\x02hi", 1002, "protocol error"),
    (masked(0x88, b"\x03\xe8\xc3\x28"), 1007, "invalid UTF-8"),  # close reason not UTF-8
    (masked(0xC1, b"x"), 1002, "protocol error"),  # RSV1 without an extension
])
async def test_close_reasons_are_fixed_texts(frame: bytes, code: int, text: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="mhd2")
    async with running(_app(echo)) as d:
        client, _ = await RawClient.open(d.port)
        async with client.stream:
            assert await _close_after(client, frame) == (code, text)
    # The detail went to the log, at debug level.
    assert any(r.levelname == "DEBUG" and "WebSocket protocol error" in r.getMessage()
               for r in caplog.records)


async def test_bad_handshake_bodies_do_not_echo_the_request() -> None:
    """The 400 for a bad key or method is a fixed text with nosniff, not the client's bytes."""
    key = "<script>alert(1)</script>=="
    async with running(_app(echo)) as d:
        reply = await exchange(d.port, _handshake().replace(
            b"dGhlIHNhbXBsZSBub25jZQ==", key.encode()), half_close=True)
        assert status_of(reply) == 400
        assert b"<script>" not in reply
        assert b"\r\nX-Content-Type-Options: nosniff\r\n" in reply
        reply = await exchange(d.port, _handshake().replace(b"GET /ws", b"X-MY-METHOD /ws"),
                               half_close=True)
        assert status_of(reply) == 400
        assert b"X-MY-METHOD" not in reply.split(b"\r\n\r\n", 1)[1]


# -- 3. many (empty) fragments ----------------------------------------------------------------


def _empty_fragments(n: int) -> bytes:
    """A text message opened with an empty frame, then *n* empty continuations (no FIN)."""
    key = b"\x00\x00\x00\x00"
    return b"\x01\x80" + key + (b"\x00\x80" + key) * n


async def _flood_and_close_code(port: int, frames: bytes) -> int:
    client, _ = await RawClient.open(port)
    async with client.stream:
        try:
            with trio.fail_after(WAIT):
                await client.send(frames)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        return await client.close_code()


async def test_empty_fragments_count_and_other_clients_stay_responsive() -> None:
    """200,000 empty fragments: 1009 within WAIT; a second client's echo answers meanwhile."""
    latencies: list[float] = []
    flood_done = trio.Event()
    codes: list[int] = []

    async with running(_app(echo)) as d:
        other, _ = await RawClient.open(d.port)
        async with other.stream:

            async def flood() -> None:
                codes.append(await _flood_and_close_code(d.port, _empty_fragments(200_000)))
                flood_done.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood)
                with trio.fail_after(WAIT):
                    while not flood_done.is_set():
                        start = trio.current_time()
                        await other.send(other.codec.encode_text("ping"))
                        assert await other.next() == (WebSocketStatus.TEXT_FRAME, b"ping")
                        latencies.append(trio.current_time() - start)
    assert codes == [1009]
    # Without a checkpoint every few frames the other client waited ~0.7 s here.
    assert latencies and max(latencies) < 0.4, max(latencies)


async def test_max_fragments_caps_frames_per_message() -> None:
    """With a large max_message_size the frame count still ends the message."""
    closed: list[CloseReason | None] = []

    async def handler(ws: WebSocket) -> None:
        try:
            await ws.send(await ws.receive())  # a message in 100 fragments is fine
            await ws.receive()
        finally:
            closed.append(ws.closed)

    async with running(_app(handler, max_message_size=16 * MiB, max_fragments=100)) as d:
        client, _ = await RawClient.open(d.port)
        async with client.stream:
            key = b"\x00\x00\x00\x00"
            ok = b"\x01\x81" + key + b"a" + (b"\x00\x81" + key + b"b") * 98 + b"\x80\x81" + key + b"c"
            await client.send(ok)
            assert await client.next() == (WebSocketStatus.TEXT_FRAME, b"a" + b"b" * 98 + b"c")
            await client.send(_empty_fragments(100))  # 101 frames and counting
            assert await client.close_code() == 1009
    assert closed == [CloseReason(1009, "message too big")]


async def test_fragment_overhead_counts_against_max_message_size() -> None:
    """Empty continuations are not free: max_message_size / FRAGMENT_OVERHEAD of them end it."""
    limit = 64 * FRAGMENT_OVERHEAD
    async with running(_app(echo, max_message_size=limit)) as d:
        assert await _flood_and_close_code(d.port, _empty_fragments(70)) == 1009


def test_bad_limits_are_usage_errors() -> None:
    request: Any = object()
    bad: list[dict[str, Any]] = [{"max_fragments": 0}, {"max_message_size": -1},
                                 {"ping_interval": 0}]
    for kwargs in bad:
        with pytest.raises(mhd2.UsageError):
            action_websocket(request, echo, **kwargs)


# -- 4. graceful stop: 1001 at once, done within grace ---------------------------------------


def _frames_in(data: bytes) -> list[tuple[WebSocketStatus, bytes | None]]:
    """The whole server frames in *data*, decoded as a client."""
    codec = WebSocketStream(flags=1)  # CLIENT
    frames: list[tuple[WebSocketStatus, bytes | None]] = []
    while data:
        status, payload, used = codec.decode(data)
        data = data[used:]
        if status == WebSocketStatus.OK:
            break
        frames.append((status, payload))
    return frames


async def test_stop_sends_1001_at_once_and_ends_within_grace(
        autojump_clock: trio.testing.MockClock) -> None:
    """3 silent clients (never answer the close, never read), in memory on
    virtual time: stop(grace=2) takes the grace, not more (not < 2: the
    clients do not answer, so the grace is waited out)."""
    started = 0
    all_in = trio.Event()
    seen: list[bool] = []

    async def handler(ws: WebSocket) -> None:
        nonlocal started
        started += 1
        if started == 3:
            all_in.set()
        try:
            await ws.receive()
        finally:
            seen.append(ws.stopping)

    daemon = mhd2.Daemon(_app(handler), port=0)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.serve)
        clients = [await open_stream(daemon) for _ in range(3)]
        for client in clients:
            await client.send_all(_handshake())
        with trio.fail_after(WAIT):
            await all_in.wait()
        start = trio.current_time()
        with trio.fail_after(WAIT):
            await daemon.stop(grace=2)
        elapsed = trio.current_time() - start
        for client in clients:
            with trio.fail_after(WAIT):
                head, _, rest = (await read_until_close(client)).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 ")
            frames = _frames_in(rest)
            assert frames and frames[0][0] == WebSocketStatus.CLOSE_FRAME
            assert WebSocketStream.split_close_reason(frames[0][1]) == (1001, "going away")
            await client.aclose()
    assert 2 <= elapsed < 2.5, elapsed
    assert seen == [True, True, True]


async def test_stop_while_a_send_blocks_on_a_non_reader_ends_within_grace(
        autojump_clock: trio.testing.MockClock) -> None:
    """The handler's send holds the socket (the client never reads): stop is still bounded
    (real sockets on MockClock: the 0.5 s fill and the 1 s grace pass in virtual time)."""
    blocked = trio.Event()

    async def handler(ws: WebSocket) -> None:
        chunk = b"z" * MiB
        with trio.move_on_after(0.5):
            while True:
                await ws.send(chunk)
        blocked.set()
        while True:  # blocks at once: the socket is full
            await ws.send(chunk)

    daemon = mhd2.Daemon(_app(handler), port=0)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.serve)
        with socket.create_connection(("127.0.0.1", daemon.port)) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
            sock.sendall(_handshake())
            with trio.fail_after(WAIT):
                await blocked.wait()
            start = trio.current_time()
            with trio.fail_after(WAIT):
                await daemon.stop(grace=1)
            elapsed = trio.current_time() - start
    assert elapsed < 1.5, elapsed


async def test_client_answering_the_stop_close_ends_before_grace() -> None:
    """A well-behaved client answers the 1001 close: stop does not wait for the grace."""
    reasons: list[CloseReason] = []
    ready = trio.Event()

    async def handler(ws: WebSocket) -> None:
        ready.set()
        try:
            await ws.receive()
        except ConnectionClosed as exc:
            reasons.append(exc.reason)

    daemon = mhd2.Daemon(_app(handler), port=0)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.serve)
        client, _ = await RawClient.open(daemon.port)
        async with client.stream:
            with trio.fail_after(WAIT):
                await ready.wait()

            async def answer() -> None:
                assert await client.close_code() == 1001
                await client.send(client.codec.encode_close(1001))

            nursery.start_soon(answer)
            start = trio.current_time()
            with trio.fail_after(WAIT):
                await daemon.stop(grace=5)
            elapsed = trio.current_time() - start
    assert elapsed < 2.0, elapsed
    assert reasons == [CloseReason(1001, "")]


# -- 5. permessage-deflate offers (RFC 7692 §7) -----------------------------------------------


def _extensions_header(reply: bytes) -> str | None:
    head = reply.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "sec-websocket-extensions":
            return value.strip()
    return None


@pytest.mark.parametrize(("offer", "answer"), [
    ("permessage-deflate", "permessage-deflate"),
    ("permessage-deflate; client_max_window_bits", "permessage-deflate; client_max_window_bits=15"),
    ('permessage-deflate; server_max_window_bits="10"',
     "permessage-deflate; server_max_window_bits=10"),
    # declined: an unknown parameter, a duplicate, invalid values
    ("permessage-deflate; foo=1", None),
    ("permessage-deflate; mystery", None),
    ("permessage-deflate; client_no_context_takeover; client_no_context_takeover", None),
    ("permessage-deflate; server_max_window_bits=10; server_max_window_bits=11", None),
    ("permessage-deflate; server_max_window_bits", None),
    ("permessage-deflate; server_max_window_bits=16", None),
    ("permessage-deflate; client_max_window_bits=abc", None),
    ("permessage-deflate; client_max_window_bits=08", None),
    ("permessage-deflate; server_no_context_takeover=1", None),
    # the next acceptable offer is picked
    ("permessage-deflate; foo, permessage-deflate; server_no_context_takeover",
     "permessage-deflate; server_no_context_takeover"),
])
async def test_deflate_offers_with_bad_parameters_are_declined(offer: str, answer: str | None) -> None:
    async with running(_app(echo)) as d:
        reply = await exchange(
            d.port, _handshake(extra=f"Sec-WebSocket-Extensions: {offer}\r\n"), half_close=True)
    assert status_of(reply) == 101
    assert _extensions_header(reply) == answer


# -- 2. deadlines are inactivity limits: a slow but steady reader is alive -------------------


async def test_keepalive_counts_a_slow_steady_reader_as_alive(
        autojump_clock: trio.testing.MockClock) -> None:
    """ping_interval=0.4 while 3 MiB go to a client reading steadily for ~1 s: no 1011.

    The ping waits behind the big message and the client reaches it only after
    draining the kernel's buffers, long after ``ping_interval``; the send queue
    shrinking meanwhile is progress.
    """
    # Real sockets (the kernel's buffers are the point) on MockClock: loopback
    # I/O is ready as soon as it is done, so virtual time only jumps while every
    # task waits on a timer.  The size keeps the drain at ~2.5 ping intervals,
    # each read 0.02 s apart.
    size = 3 * MiB
    closed: list[CloseReason | None] = []

    async def handler(ws: WebSocket) -> None:
        try:
            await ws.send(b"b" * size)
            await ws.send("done")
            await ws.receive()  # pongs are noted here; ends with the client's close
        finally:
            closed.append(ws.closed)

    async with running(_app(handler, ping_interval=0.4)) as d:
        client, _ = await RawClient.open(d.port)
        async with client.stream:
            client.codec.max_payload_size = 0
            got = 0
            longest = 0.0
            last = trio.current_time()
            with trio.fail_after(WAIT * 2):
                while True:
                    if not client.buffer:
                        chunk = await client.stream.receive_some(64 << 10)
                        assert chunk, "the server closed the connection"
                        now = trio.current_time()
                        longest, last = max(longest, now - last), now
                        client.buffer += chunk
                        await trio.sleep(0.02)  # pacing: a slow but steady client
                    status, payload, used = client.codec.decode(client.buffer)
                    client.buffer = client.buffer[used:]
                    if status == WebSocketStatus.BINARY_FRAME:
                        got = len(payload or b"")
                    elif status == WebSocketStatus.PING_FRAME:
                        await client.send(client.codec.encode_pong(payload or b""))
                    elif status == WebSocketStatus.TEXT_FRAME:
                        assert payload == b"done"
                        break
                    else:
                        assert status == WebSocketStatus.OK, (status, payload)
            await client.send(client.codec.encode_close(1000))
            assert await client.close_code() == 1000
    assert got == size
    assert longest < 0.4  # steady: never a gap as long as the interval
    assert closed == [CloseReason(1000, "")]


async def test_upgrade_during_a_stop_is_told_at_once() -> None:
    """A handshake in flight when the stop begins: the new WebSocket gets 1001 right away."""
    arrived = trio.Event()
    go_on = trio.Event()

    async def answer(request: mhd2.Request) -> mhd2.Action:
        arrived.set()
        await go_on.wait()
        return action_websocket(request, echo)

    daemon = mhd2.Daemon(answer, port=0)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.serve)
        stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
        async with stream:
            await stream.send_all(_handshake())
            with trio.fail_after(WAIT):
                await arrived.wait()
            start = trio.current_time()

            async def stop() -> None:
                await daemon.stop(grace=5)

            nursery.start_soon(stop)
            with trio.fail_after(WAIT):
                await trio.testing.wait_all_tasks_blocked()  # the stop is under way
            go_on.set()
            client = RawClient(stream)
            data = b""
            with trio.fail_after(WAIT):
                while b"\r\n\r\n" not in data:
                    chunk = await stream.receive_some(65536)
                    assert chunk, data
                    data += chunk
            head, client.buffer = data.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 101 ")
            assert await client.close_code() == 1001
            await client.send(client.codec.encode_close(1001))
            with trio.fail_after(WAIT):
                await daemon.stop()
    assert trio.current_time() - start < 2.0
