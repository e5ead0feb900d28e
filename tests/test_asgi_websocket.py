"""ASGI WebSocket scopes (spec 2.4) through the bridge, with the websockets client over TCP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from conftest import WAIT, exchange, status_of
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Subprotocol

import mhd2.asgi

Scope = dict[str, Any]


@asynccontextmanager
async def serve(app: Any, **options: Any) -> AsyncIterator[mhd2.asgi.Daemon]:
    with trio.fail_after(WAIT * 3):
        async with mhd2.asgi.Daemon(app, port=0, lifespan="off", **options) as daemon:
            yield daemon


async def in_thread(fn: Any, *args: Any) -> Any:
    with trio.fail_after(WAIT * 2):
        return await trio.to_thread.run_sync(fn, *args)


def echo_app(log: list[Any]) -> Any:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
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
            if message.get("text") == "close please":
                await send({"type": "websocket.close", "code": 4001, "reason": "asked to"})
                continue
            await send({"type": "websocket.send", **{k: v for k, v in message.items()
                                                     if k in ("text", "bytes")}})

    return app


async def test_websocket_scope_accept_echo_and_client_close() -> None:
    log: list[Any] = []
    async with serve(echo_app(log), root_path="/r") as d:
        port = d.port

        def client() -> tuple[Any, ...]:
            with connect(f"ws://127.0.0.1:{port}/ws/room?id=7",
                         subprotocols=[Subprotocol("chat"), Subprotocol("other")],
                         open_timeout=WAIT) as ws:
                ws.send("hello")
                text = ws.recv(WAIT)
                ws.send(b"\x00\x01")
                data = ws.recv(WAIT)
                assert ws.response is not None
                header = ws.response.headers.get("x-session")
                sub = ws.subprotocol
                ws.close(4321, "bye now")
            return text, data, header, sub

        text, data, header, sub = await in_thread(client)
        with trio.fail_after(WAIT):
            while log[-1].get("type") != "websocket.disconnect":
                await trio.testing.wait_all_tasks_blocked()
    assert (text, data, header, sub) == ("hello", b"\x00\x01", "s1", "chat")
    scope = log[0]
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["scheme"] == "ws" and scope["http_version"] == "1.1"
    assert scope["path"] == "/r/ws/room" and scope["raw_path"] == b"/r/ws/room"
    assert scope["root_path"] == "/r" and scope["query_string"] == b"id=7"
    assert scope["subprotocols"] == ["chat", "other"]
    assert tuple(scope["server"]) == ("127.0.0.1", port)
    assert scope["client"][0] == "127.0.0.1"
    assert (b"upgrade", b"websocket") in scope["headers"]
    assert "websocket.http.response" in scope["extensions"]
    assert "method" not in scope
    assert log[1] == {"type": "websocket.receive", "text": "hello"}
    assert log[2] == {"type": "websocket.receive", "bytes": b"\x00\x01"}
    assert log[-1] == {"type": "websocket.disconnect", "code": 4321, "reason": "bye now"}


async def test_app_closes_with_code_and_reason() -> None:
    log: list[Any] = []
    async with serve(echo_app(log)) as d:
        port = d.port

        def client() -> tuple[int, str]:
            with connect(f"ws://127.0.0.1:{port}/", open_timeout=WAIT) as ws:
                ws.send("close please")
                with pytest.raises(ClientClosed) as info:
                    ws.recv(WAIT)
            assert info.value.rcvd is not None
            return info.value.rcvd.code, info.value.rcvd.reason

        assert await in_thread(client) == (4001, "asked to")


async def test_close_before_accept_is_403() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.close"})

    async with serve(app) as d:
        port = d.port

        def client() -> int:
            with pytest.raises(InvalidStatus) as info:
                connect(f"ws://127.0.0.1:{port}/", open_timeout=WAIT)
            return info.value.response.status_code

        assert await in_thread(client) == 403


async def test_denial_response_extension() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        assert "websocket.http.response" in scope["extensions"]
        await receive()
        await send({"type": "websocket.http.response.start", "status": 401,
                    "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")]})
        await send({"type": "websocket.http.response.body", "body": b"log in ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"first"})

    async with serve(app) as d:
        response = await exchange(
            d.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    b"Connection: close\r\n\r\n")
    assert status_of(response) == 401
    assert b"www-authenticate: Bearer" in response
    assert response.endswith(b"\r\n\r\nlog in first")


async def test_app_raising_before_accept_is_500_and_after_closes_1011() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        if scope["path"] == "/after":
            await send({"type": "websocket.accept"})
        raise ValueError("boom")

    async with serve(app) as d:
        port = d.port

        def client() -> tuple[int, int | None]:
            with pytest.raises(InvalidStatus) as info:
                connect(f"ws://127.0.0.1:{port}/before", open_timeout=WAIT)
            with connect(f"ws://127.0.0.1:{port}/after", open_timeout=WAIT) as ws:
                with pytest.raises(ClientClosed) as closed:
                    ws.recv(WAIT)
            code = closed.value.rcvd.code if closed.value.rcvd else None
            return info.value.response.status_code, code

        status, code = await in_thread(client)
    assert status == 500
    assert code == 1011  # "an unexpected condition"


async def test_graceful_stop_closes_with_1001_and_the_app_sees_it() -> None:
    log: list[Any] = []
    opened = trio.Event()
    closed: list[int] = []

    async with trio.open_nursery() as nursery:
        daemon = mhd2.asgi.Daemon(echo_app(log), port=0, lifespan="off")
        await nursery.start(daemon.serve)
        port = daemon.port

        def client() -> None:
            with connect(f"ws://127.0.0.1:{port}/", open_timeout=WAIT) as ws:
                ws.send("hi")
                ws.recv(WAIT)
                trio.from_thread.run_sync(opened.set)
                try:
                    ws.recv(WAIT)
                except ClientClosed as exc:
                    closed.append(exc.rcvd.code if exc.rcvd else -1)

        async with trio.open_nursery() as clients:
            clients.start_soon(in_thread, client)
            with trio.fail_after(WAIT):
                await opened.wait()
                await daemon.stop(grace=WAIT)
    assert closed == [1001]
    assert log[-1]["type"] == "websocket.disconnect" and log[-1]["code"] == 1001


async def test_a_protocol_error_is_a_prompt_disconnect_with_its_code() -> None:
    """A client that sends an invalid frame and then neither answers the close
    frame nor closes: the app hears ``websocket.disconnect`` with 1002 at once,
    not after the server has drained the client for up to 5 s."""
    from test_websocket import RawClient

    from mhd2.websocket import WebSocketStatus, WebSocketStream

    heard: list[dict[str, Any]] = []
    told = trio.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        assert await receive() == {"type": "websocket.connect"}
        await send({"type": "websocket.accept"})
        heard.append(await receive())
        told.set()

    async with serve(app) as d:
        client, head = await RawClient.open(d.port)
        assert head.startswith(b"HTTP/1.1 101")
        async with client.stream:
            await client.send(b"\x83\x81\x00\x00\x00\x00x")  # a reserved opcode
            status, payload = await client.next()
            assert status == WebSocketStatus.CLOSE_FRAME
            assert WebSocketStream.split_close_reason(payload)[0] == 1002
            with trio.fail_after(1):  # (the drain would take 5 s)
                await told.wait()
    assert heard[0]["type"] == "websocket.disconnect" and heard[0]["code"] == 1002
