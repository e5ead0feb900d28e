"""RFC 8441: WebSocket (and action_upgrade) over HTTP/2 streams, with a raw h2 client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
from conftest import WAIT, running, text_response
from h2.settings import SettingCodes
from h2raw import RawH2
from h2ws import H2WebSocket, extended_connect
from hyperframe.frame import SettingsFrame
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, Pong, TextMessage

import mhd2
from mhd2.enums import RequestEndedCode
from mhd2.websocket import ConnectionClosed, WebSocket, action_websocket


def _app(handler: Callable[[WebSocket], Awaitable[Any]], **kwargs: Any) -> Any:
    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/ws":
            return action_websocket(request, handler, **kwargs)
        return text_response(request)
    return cb


async def echo(ws: WebSocket) -> None:
    while True:
        await ws.send(await ws.receive())


async def test_server_settings_enable_connect_protocol() -> None:
    async with running(_app(echo)) as daemon:
        client = await RawH2.connect(daemon.port)
        await client.until(lambda: any(isinstance(f, SettingsFrame) and "ACK" not in f.flags
                                       for f in client.frames))
        settings = next(f for f in client.frames
                        if isinstance(f, SettingsFrame) and "ACK" not in f.flags)
        # RFC 8441 §3: "SETTINGS_ENABLE_CONNECT_PROTOCOL (0x08)" = 1.
        assert settings.settings.get(SettingCodes.ENABLE_CONNECT_PROTOCOL) == 1
        await client.aclose()


async def test_handshake_is_200_without_accept_and_echoes_text_and_binary() -> None:
    seen: list[tuple[str, str, str | None]] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path != "/ws":
            return text_response(request)
        seen.append((request.method, request.version, request.headers.get("Upgrade")))
        return action_websocket(request, echo, subprotocols=["chat"])

    async with running(cb) as daemon:
        client = await RawH2.connect(daemon.port)
        ws = await H2WebSocket.open(client, headers=[("sec-websocket-version", "13"),
                                                     ("sec-websocket-protocol", "x, chat")])
        headers = dict(ws.reply.headers)
        # RFC 8441 §5: a 2xx, and "The Sec-WebSocket-Accept header field is not used".
        assert headers[b":status"] == b"200"
        assert b"sec-websocket-accept" not in headers
        assert headers[b"sec-websocket-protocol"] == b"chat"
        assert b"content-length" not in headers
        assert seen == [("GET", "HTTP/2", "websocket")]
        await ws.text("héllo")
        assert await ws.message() == "héllo"
        await ws.binary(b"\x00\x01\xff")
        assert await ws.message() == b"\x00\x01\xff"
        # Fragmented message: three frames, one message.
        await ws.send(TextMessage("ab", message_finished=False))
        await ws.send(TextMessage("cd", message_finished=False))
        await ws.send(TextMessage("ef", message_finished=True))
        assert await ws.message() == "abcdef"
        # Ping -> pong.
        await ws.send(Ping(b"p1"))
        event = await ws.event()
        assert isinstance(event, Pong) and event.payload == b"p1"
        # The client closes: the server answers with the same code, then ENDs the stream.
        await ws.send(CloseConnection(4000, "bye"))
        assert await ws.close_code() == 4000
        await client.until(lambda: ws.reply.ended or ws.reply.reset is not None)
        assert ws.reply.ended
        # The connection serves on.
        sid = client.request("/")
        reply = await client.response(sid)
        assert reply.status == 200 and reply.body == b"ok"
        await client.aclose()


async def test_handler_close_code_and_request_end_reported() -> None:
    ended: list[tuple[str, RequestEndedCode]] = []

    async def handler(ws: WebSocket) -> None:
        await ws.send("bye soon")
        await ws.close(4001, "done")

    async with running(_app(handler),
                       notify_request_ended=lambda r, c: ended.append((r.path, c))) as daemon:
        client = await RawH2.connect(daemon.port)
        ws = await H2WebSocket.open(client)
        assert await ws.message() == "bye soon"
        assert await ws.close_code() == 4001
        await ws.send(CloseConnection(4001))
        await ws.send_raw(b"", end=True)
        await client.until(lambda: ws.reply.ended or ws.reply.reset is not None)
        assert ws.reply.ended and ws.reply.reset is None
        assert ended == [("/ws", RequestEndedCode.COMPLETED_OK_UPGRADE)]
        await client.aclose()


async def test_many_websockets_share_one_connection() -> None:
    async with running(_app(echo)) as daemon:
        client = await RawH2.connect(daemon.port)
        sockets = [await H2WebSocket.open(client) for _ in range(30)]
        for i, ws in enumerate(sockets):
            await ws.text(f"m{i}")
        for i, ws in enumerate(sockets):
            assert await ws.message() == f"m{i}"
        assert daemon.connection_count == 1
        await client.aclose()


async def test_client_end_stream_and_reset_end_the_handler() -> None:
    results: list[str] = []
    done = trio.Event()

    async def handler(ws: WebSocket) -> None:
        try:
            await ws.receive()
        except ConnectionClosed as exc:
            results.append(f"closed {exc.reason.code}")
        if len(results) == 2:
            done.set()

    async with running(_app(handler)) as daemon:
        client = await RawH2.connect(daemon.port)
        a = await H2WebSocket.open(client)
        b = await H2WebSocket.open(client)
        # RFC 8441 §7: END_STREAM is the orderly TCP close, RST_STREAM the abortive one.
        await a.send_raw(b"", end=True)
        client.conn.reset_stream(b.sid, 8)
        await client.flush()
        with trio.fail_after(WAIT):
            await done.wait()
        assert sorted(results) == ["closed 1006", "closed 1006"]
        sid = client.request("/")
        assert (await client.response(sid)).status == 200
        await client.aclose()
