"""RFC 8441 for the libraries built on action_websocket: mhd2.fanout's WebSocket
subscriber and the ASGI WebSocket, over HTTP/2 streams (raw h2 client)."""

from __future__ import annotations

import json
from typing import Any

import trio
import trio.testing
from conftest import WAIT
from h2raw import RawH2
from h2ws import H2WebSocket
from wsproto.events import CloseConnection

import mhd2
import mhd2.asgi
from mhd2.fanout import Hub, action_websocket_subscribe


async def test_fanout_websocket_subscriber_over_http2_and_1012_at_stop() -> None:
    received: list[Any] = []

    async def on_message(ws: Any, message: str | bytes) -> None:
        received.append(message)
        await ws.send("ack")

    async with Hub() as hub, trio.open_nursery() as nursery:
        topic = hub.topic("news", history=100)
        first = await topic.publish("m0")
        await topic.publish("m1")

        def cb(request: mhd2.Request) -> mhd2.Action:
            return action_websocket_subscribe(request, topic, cursor=request.args.get("cursor"),
                                              on_message=on_message)

        daemon = mhd2.Daemon(cb, port=0)
        await nursery.start(daemon.serve)
        client = await RawH2.connect(daemon.port)
        # Two subscribers on one connection, one resuming after m0.
        a = await H2WebSocket.open(client, f"/ws?cursor={first}")
        b = await H2WebSocket.open(client, f"/ws?cursor={first}")
        for ws in (a, b):
            message = await ws.message()
            assert isinstance(message, str)
            assert json.loads(message)["data"] == "m1"
        new = await topic.publish("héllo")
        for ws in (a, b):
            message = await ws.message()
            assert isinstance(message, str)
            assert json.loads(message) == {"id": new, "event": None, "data": "héllo"}
        await a.text("from client")
        assert await a.message() == "ack"
        assert received == ["from client"]
        assert hub.stats().subscribers["websocket"] == 2
        assert daemon.connection_count == 1
        async with trio.open_nursery() as stopping:
            stopping.start_soon(daemon.stop, WAIT)
            # A graceful stop: "service restart", so that the client reconnects.
            for ws in (a, b):
                assert await ws.close_code() == 1012
                await ws.send(CloseConnection(1012))
                await ws.send_raw(b"", end=True)
            await client.until_closed()
            await client.aclose()  # else the stop waits out the server's linger


def echo_app(log: list[Any]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        log.append(scope)
        assert await receive() == {"type": "websocket.connect"}
        await send({"type": "websocket.accept", "subprotocol": "chat",
                    "headers": [(b"x-session", b"s1")]})
        while True:
            message = await receive()
            log.append(message)
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", **{k: v for k, v in message.items()
                                                     if k in ("text", "bytes")}})

    return app


async def test_asgi_websocket_over_http2() -> None:
    log: list[Any] = []
    with trio.fail_after(WAIT * 3):
        async with mhd2.asgi.Daemon(echo_app(log), port=0, lifespan="off") as daemon:
            client = await RawH2.connect(daemon.port)
            ws = await H2WebSocket.open(client, "/room?id=7", headers=[
                ("sec-websocket-version", "13"), ("sec-websocket-protocol", "chat, other")])
            assert ws.reply.header(b"sec-websocket-protocol") == b"chat"
            assert ws.reply.header(b"x-session") == b"s1"
            assert ws.reply.header(b"sec-websocket-accept") is None
            await ws.text("hello")
            assert await ws.message() == "hello"
            await ws.binary(b"\x00\x01")
            assert await ws.message() == b"\x00\x01"
            await ws.send(CloseConnection(4321, "bye now"))
            assert await ws.close_code() == 4321
            await ws.send_raw(b"", end=True)
            with trio.fail_after(WAIT):
                while log[-1].get("type") != "websocket.disconnect":
                    await trio.testing.wait_all_tasks_blocked()
            await client.aclose()
    scope = log[0]
    assert scope["http_version"] == "2" and scope["scheme"] == "ws"
    assert scope["path"] == "/room" and scope["query_string"] == b"id=7"
    assert scope["subprotocols"] == ["chat", "other"]
    assert log[1] == {"type": "websocket.receive", "text": "hello"}
    assert log[-1] == {"type": "websocket.disconnect", "code": 4321, "reason": "bye now"}
