"""action_websocket end to end: the websockets client library and raw frames over real sockets."""

from __future__ import annotations

import base64
import os
import socket
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing
from conftest import WAIT, exchange, open_stream, running, status_of, text_response
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.sync.client import connect
from websockets.typing import Subprotocol

import mhd2
from mhd2.websocket import (
    CloseReason,
    ConnectionClosed,
    StreamFlags,
    WebSocket,
    WebSocketStatus,
    WebSocketStream,
    action_websocket,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def _app(handler: Callable[[WebSocket], Awaitable[Any]], **kwargs: Any) -> Any:
    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/ws":
            return action_websocket(request, handler, **kwargs)
        return text_response(request)
    return cb


async def echo(ws: WebSocket) -> None:
    while True:
        await ws.send(await ws.receive())


def _handshake(path: str = "/ws", extra: str = "", drop: str = "") -> bytes:
    lines = {"Host": "x", "Connection": "Upgrade", "Upgrade": "websocket",
             "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": KEY}
    if drop:
        del lines[drop]
    head = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in lines.items())
    return (head + extra + "\r\n").encode()


class RawClient:
    """A WebSocket client on a trio socket, framing with WebSocketStream(CLIENT)."""

    def __init__(self, stream: trio.abc.HalfCloseableStream) -> None:
        self.stream = stream
        self.codec = WebSocketStream(flags=StreamFlags.CLIENT)
        self.buffer = b""

    @classmethod
    async def open(cls, port: int | mhd2.Daemon, extra: str = "") -> tuple[RawClient, bytes]:
        """Connect (TCP to a port, in memory to a daemon: see ``conftest.open_stream``)
        and shake hands; returns the client and the response head."""
        stream = await open_stream(port)
        await stream.send_all(_handshake(extra=extra))
        client = cls(stream)
        data = b""
        with trio.fail_after(WAIT):
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(65536)
                assert chunk, data
                data += chunk
        head, client.buffer = data.split(b"\r\n\r\n", 1)
        return client, head

    async def send(self, frame: bytes) -> None:
        await self.stream.send_all(frame)

    async def next(self) -> tuple[WebSocketStatus, bytes | None]:
        """The next frame (OK, None at EOF)."""
        with trio.fail_after(WAIT):
            while True:
                if self.buffer:
                    status, payload, used = self.codec.decode(self.buffer)
                    self.buffer = self.buffer[used:]
                    if status != WebSocketStatus.OK:
                        return status, payload
                try:
                    chunk = await self.stream.receive_some(65536)
                except trio.BrokenResourceError:
                    chunk = b""
                if not chunk:
                    return WebSocketStatus.OK, None
                self.buffer += chunk

    async def close_code(self) -> int:
        while True:
            status, payload = await self.next()
            if status == WebSocketStatus.CLOSE_FRAME:
                return WebSocketStream.split_close_reason(payload)[0]
            assert payload is not None, "EOF without a close frame"


def masked(first: int, payload: bytes) -> bytes:
    """A masked frame with an arbitrary first byte (for invalid frames).

    The mask is RFC 6455 §5.7's example key, not a random one: the frames are
    test parameters, and pytest-xdist's workers must collect the same ids.
    """
    assert len(payload) < 126
    key = b"\x37\xfa\x21\x3d"
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes((first, 0x80 | len(payload))) + key + body


# -- handshake ---------------------------------------------------------------------------


@pytest.mark.parametrize("drop", ["Connection", "Upgrade", "Sec-WebSocket-Version",
                                  "Sec-WebSocket-Key"])
async def test_missing_handshake_header_is_400_with_reason(drop: str) -> None:
    async with running(_app(echo)) as d:
        reply = await exchange(d.port, _handshake(drop=drop), half_close=True)
    assert status_of(reply) == 400
    body = reply.split(b"\r\n\r\n", 1)[1]
    assert body.startswith(b"Bad WebSocket handshake: ")
    assert drop.split("-")[-1].lower().encode() in body.lower()


@pytest.mark.parametrize("key", ["c2hvcnQ=", "dGhlIHNhbXBsZSBub25jZQ", "!!!!!!!!!!!!!!!!!!!!!!==",
                                 base64.b64encode(b"x" * 17).decode()])
async def test_bad_key_is_400(key: str) -> None:
    req = _handshake().replace(KEY.encode(), key.encode())
    async with running(_app(echo)) as d:
        reply = await exchange(d.port, req, half_close=True)
    assert status_of(reply) == 400 and b"Sec-WebSocket-Key" in reply


async def test_bad_version_method_and_http10_are_400() -> None:
    async with running(_app(echo)) as d:
        reply = await exchange(d.port, _handshake().replace(b"Version: 13", b"Version: 8"),
                               half_close=True)
        assert status_of(reply) == 400 and b"\r\nSec-WebSocket-Version: 13\r\n" in reply
        reply = await exchange(d.port, _handshake().replace(b"GET", b"PUT"), half_close=True)
        assert status_of(reply) == 400 and b"GET" in reply
        reply = await exchange(d.port, _handshake().replace(b"HTTP/1.1", b"HTTP/1.0"),
                               half_close=True)
        assert status_of(reply) == 400


# -- with the websockets client library -------------------------------------------------------


async def test_echo_fragments_subprotocol_compression_ping_with_websockets_client() -> None:
    seen: list[Any] = []

    async def handler(ws: WebSocket) -> None:
        seen.append(ws.subprotocol)
        try:
            await echo(ws)
        except ConnectionClosed as exc:
            seen.append(exc.reason)
            seen.append(ws.closed)
            raise

    def client(port: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with connect(f"ws://127.0.0.1:{port}/ws", subprotocols=[Subprotocol("v2.chat"), Subprotocol("chat")],
                     compression="deflate", open_timeout=WAIT) as ws:
            out["protocol"] = ws.subprotocol
            assert ws.response is not None
            out["extensions"] = ws.response.headers.get("Sec-WebSocket-Extensions")
            ws.send("héllo ✓")
            out["text"] = ws.recv(timeout=WAIT)
            ws.send(b"\x00\xff" * 50000)
            out["binary"] = ws.recv(timeout=WAIT)
            ws.send(["frag", "mented ", "ü"])  # one message in three frames
            out["fragmented"] = ws.recv(timeout=WAIT)
            out["pong"] = ws.ping(b"abc").wait(WAIT)
            ws.close(4001, "client done")
        return out

    async with running(_app(handler, subprotocols=("chat", "v2.chat"))) as d:
        out = await trio.to_thread.run_sync(client, d.port)
    assert out == {"protocol": "chat", "extensions": "permessage-deflate",
                   "text": "héllo ✓", "binary": b"\x00\xff" * 50000,
                   "fragmented": "fragmented ü", "pong": True} or (
        out["extensions"].startswith("permessage-deflate") and out["protocol"] == "chat"
        and out["text"] == "héllo ✓" and out["fragmented"] == "fragmented ü" and out["pong"])
    assert seen == ["chat", CloseReason(4001, "client done"), CloseReason(4001, "client done")]


async def test_server_close_with_code_and_reason_then_send_raises() -> None:
    after: list[BaseException] = []

    async def handler(ws: WebSocket) -> None:
        await ws.send("bye soon")
        await ws.close(4000, "server done")
        assert ws.closed == CloseReason(4000, "server done")
        for call in (ws.send("x"), ws.receive()):
            try:
                await call
            except ConnectionClosed as exc:
                after.append(exc)

    def client(port: int) -> tuple[Any, ...]:
        with connect(f"ws://127.0.0.1:{port}/ws", compression=None, open_timeout=WAIT) as ws:
            first = ws.recv(timeout=WAIT)
            with pytest.raises(ClientClosed) as info:
                ws.recv(timeout=WAIT)
            assert info.value.rcvd is not None
            return first, info.value.rcvd.code, info.value.rcvd.reason

    async with running(_app(handler)) as d:
        result = await trio.to_thread.run_sync(client, d.port)
    assert result == ("bye soon", 4000, "server done")
    assert len(after) == 2 and all(e.reason.code == 4000 for e in after)  # type: ignore[attr-defined]


# -- protocol errors with raw frames ---------------------------------------------------------


@pytest.mark.parametrize(("frame", "code"), [
    (b"\x81\x02hi", 1002),                        # unmasked client frame
    (masked(0x81, b"\xc3\x28"), 1007),             # invalid UTF-8
    (masked(0x83, b""), 1002),                     # reserved opcode
    (masked(0x82, b"x" * 100), 1009),              # beyond max_message_size=64
    (masked(0x09, b""), 1002),                     # fragmented control frame
], ids=["unmasked", "bad-utf8", "reserved-opcode", "too-big", "fragmented-control"])
async def test_protocol_errors_close_with_the_right_code(frame: bytes, code: int) -> None:
    closed: list[CloseReason | None] = []

    async def handler(ws: WebSocket) -> None:
        try:
            await ws.receive()
        finally:
            closed.append(ws.closed)

    async with running(_app(handler, max_message_size=64)) as d:
        client, head = await RawClient.open(d.port)
        async with client.stream:
            assert head.startswith(b"HTTP/1.1 101 ")
            await client.send(frame)
            assert await client.close_code() == code
            await client.send(client.codec.encode_close(code))
            assert await client.next() == (WebSocketStatus.OK, None)  # server closed TCP
    assert closed[0] is not None and closed[0].code == code


async def test_application_exception_closes_with_1011() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.receive()
        raise RuntimeError("boom")

    async with running(_app(handler)) as d:
        client, _ = await RawClient.open(d.port)
        async with client.stream:
            await client.send(client.codec.encode_text("hi"))
            assert await client.close_code() == 1011


async def test_client_vanishing_ends_receive_with_connection_closed() -> None:
    results: list[BaseException] = []
    done = trio.Event()

    async def handler(ws: WebSocket) -> None:
        try:
            await ws.receive()
        except ConnectionClosed as exc:
            results.append(exc)
        finally:
            done.set()

    async with running(_app(handler)) as d:
        client, _ = await RawClient.open(d.port)
        await client.stream.aclose()  # no close frame
        with trio.fail_after(WAIT):
            await done.wait()
    assert len(results) == 1
    reason = results[0].reason  # type: ignore[attr-defined]
    assert reason.code == 1006 and "without a close frame" in reason.reason


async def test_decompression_bomb_is_stopped_at_max_message_size() -> None:
    closed: list[CloseReason | None] = []

    async def handler(ws: WebSocket) -> None:
        try:
            await ws.receive()
        finally:
            closed.append(ws.closed)

    # 64 MB of zeros deflate to ~64 KB; the server must stop inflating at 1 MB.
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    payload = compressor.compress(b"\0" * (64 << 20)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    payload = payload[:-4]
    key = os.urandom(4)
    body = (int.from_bytes(payload, "little") ^ int.from_bytes(
        (key * (len(payload) // 4 + 1))[:len(payload)], "little")).to_bytes(len(payload), "little")
    n = len(payload)
    size = bytes((0x80 | 126,)) + n.to_bytes(2, "big") if n < 65536 else (
        bytes((0x80 | 127,)) + n.to_bytes(8, "big"))
    frame = b"\xc2" + size + key + body

    async with running(_app(handler, max_message_size=1 << 20)) as d:
        client, head = await RawClient.open(d.port, "Sec-WebSocket-Extensions: permessage-deflate\r\n")
        async with client.stream:
            assert b"Sec-WebSocket-Extensions: permessage-deflate" in head
            try:
                await client.send(frame)
            except trio.BrokenResourceError:
                pass
            assert await client.close_code() == 1009
    assert closed[0] is not None and closed[0].code == 1009


async def test_slow_reader_blocks_send_and_memory_stays_bounded(
        autojump_clock: trio.testing.MockClock) -> None:
    """A client that never reads blocks the handler's sends: what was sent stays far below
    what an unbounded buffer would take (real sockets on MockClock: the 1 s of sending
    passes in virtual time once the socket is full)."""
    sent = [0]
    blocked = trio.Event()

    async def handler(ws: WebSocket) -> None:
        chunk = b"y" * (1 << 20)
        with trio.move_on_after(1.0):
            while True:  # would be 1 GB without backpressure
                await ws.send(chunk)
                sent[0] += len(chunk)
                assert sent[0] < 1 << 30
        blocked.set()

    async with running(_app(handler)) as d:
        with socket.create_connection(("127.0.0.1", d.port)) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
            sock.sendall(_handshake())  # and never read
            with trio.fail_after(WAIT):
                await blocked.wait()
    assert sent[0] < 16 << 20


async def test_keepalive_pings_and_pong_deadline(
        autojump_clock: trio.testing.MockClock) -> None:
    async with running(_app(echo, ping_interval=0.1)) as d:
        # A client answering pings stays connected across several intervals.
        client, _ = await RawClient.open(d)
        async with client.stream:
            for _ in range(3):
                status, payload = await client.next()
                assert status == WebSocketStatus.PING_FRAME and payload is not None
                await client.send(client.codec.encode_pong(payload))
            await client.send(client.codec.encode_text("alive"))
            while (frame := await client.next())[0] == WebSocketStatus.PING_FRAME:
                await client.send(client.codec.encode_pong(frame[1] or b""))
            assert frame == (WebSocketStatus.TEXT_FRAME, b"alive")
        # One that does not answer is closed with 1011.
        client, _ = await RawClient.open(d)
        async with client.stream:
            assert (await client.next())[0] == WebSocketStatus.PING_FRAME
            assert await client.close_code() == 1011
