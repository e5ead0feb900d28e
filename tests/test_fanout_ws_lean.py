"""mhd2.fanout's lean WebSocket subscriber: on a plain HTTP/1.1 socket a silent
subscriber holds no WebSocket session (no wsproto connection, no stop-watcher
task) and its task waits only for the socket; the client's first byte, or the
server's goodbye, makes the full session."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio.testing
from conftest import WAIT
from test_fanout import until
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Message,
    Ping,
    Pong,
    Request,
    TextMessage,
)

import mhd2
from mhd2.fanout import Hub, Topic, action_websocket_subscribe
from mhd2.fanout.websocket import WebSocketSubscriber


class Client:
    """A WebSocket client over a trio stream (wsproto), reading whole events."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = WSConnection(ConnectionType.CLIENT)
        self.events: list[Any] = []

    @classmethod
    async def open(cls, port: int, extra: bytes = b"") -> Client:
        client = cls(await trio.open_tcp_stream("127.0.0.1", port))
        await client.stream.send_all(client.conn.send(Request(host="x", target="/ws")) + extra)
        await client.until(lambda e: isinstance(e, AcceptConnection))
        return client

    async def send(self, event: Any) -> None:
        await self.stream.send_all(self.conn.send(event))

    async def until(self, match: Any) -> Any:
        """The first event (not yet taken) for which *match* is true."""
        with trio.fail_after(WAIT):
            while True:
                for index, event in enumerate(self.events):
                    if match(event):
                        return self.events.pop(index)
                data = await self.stream.receive_some(65536)
                assert data, f"the server closed; events: {self.events}"
                self.conn.receive_data(data)
                self.events.extend(self.conn.events())

    async def text(self) -> str:
        event = await self.until(lambda e: isinstance(e, Message))
        assert event.message_finished
        return str(event.data)


@asynccontextmanager
async def serving(on_message: Any = None) -> AsyncIterator[tuple[Hub, Topic, mhd2.Daemon]]:
    async with Hub() as hub:
        topic = hub.topic("news")

        def callback(request: mhd2.Request) -> mhd2.Action:
            return action_websocket_subscribe(request, topic, on_message=on_message)

        async with mhd2.Daemon(callback, port=0) as daemon:
            yield hub, topic, daemon


def subscribers(topic: Topic) -> list[WebSocketSubscriber]:
    return [s for s in topic._subs if isinstance(s, WebSocketSubscriber)]


async def test_a_silent_subscriber_has_no_session_until_the_client_speaks() -> None:
    seen: list[tuple[Any, str | bytes]] = []

    async def on_message(ws: mhd2.websocket.WebSocket, message: str | bytes) -> None:
        seen.append((ws, message))
        await ws.send(f"echo {message!s}")

    async with serving(on_message) as (hub, topic, daemon):
        client = await Client.open(daemon.port)
        await until(lambda: hub.stats().subscribers["websocket"] == 1)
        [sub] = subscribers(topic)
        first = await topic.publish("one")
        assert json.loads(await client.text())["id"] == first
        assert sub.ws is None  # still lean: the message was written directly
        assert hub.stats().direct_deliveries == 1
        # A ping: the session is made for it, and answers.
        await client.send(Ping(payload=b"p1"))
        pong = await client.until(lambda e: isinstance(e, Pong))
        assert pong.payload == b"p1"
        assert sub.ws is not None
        await client.send(TextMessage(data="hello"))
        assert await client.text() == "echo hello"
        assert [(type(ws).__name__, m) for ws, m in seen] == [("WebSocket", "hello")]
        second = await topic.publish("two")
        assert json.loads(await client.text())["id"] == second
        await client.send(CloseConnection(code=1000))
        close = await client.until(lambda e: isinstance(e, CloseConnection))
        assert close.code == 1000
        await until(lambda: hub.stats().subscribers["websocket"] == 0)
        await client.stream.aclose()


async def test_a_lean_subscriber_is_closed_1012_at_once_when_the_daemon_stops() -> None:
    # Its task waits only for the socket: the upgrade handle's stop hook wakes it
    # (else it would sit until the grace period ends).
    async with Hub() as hub:
        topic = hub.topic("news")
        daemon = mhd2.Daemon(lambda r: action_websocket_subscribe(r, topic), port=0)
        async with trio.open_nursery() as nursery:
            await nursery.start(daemon.serve)
            client = await Client.open(daemon.port)
            await until(lambda: hub.stats().subscribers["websocket"] == 1)
            assert subscribers(topic)[0].ws is None
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(daemon.stop, WAIT * 6)
            with trio.fail_after(WAIT / 2):
                close = await client.until(lambda e: isinstance(e, CloseConnection))
            assert (close.code, close.reason) == (1012, "service restart")
            await client.send(close.response())
            with trio.fail_after(WAIT / 2):
                while await client.stream.receive_some(65536):
                    pass  # the server closes its end after the close handshake
            await client.stream.aclose()


def masked_text(text: str) -> bytes:
    """One masked client text frame (RFC 6455 §5.3: a client masks every frame)."""
    payload = text.encode()
    assert len(payload) < 126
    key = b"\x01\x02\x03\x04"
    return bytes((0x81, 0x80 | len(payload))) + key + bytes(
        b ^ key[i % 4] for i, b in enumerate(payload))


async def test_bytes_sent_with_the_handshake_reach_on_message() -> None:
    # A frame right behind the handshake, in the same write: the subscriber
    # starts with the full session, fed with those bytes first.
    seen: list[str | bytes] = []
    async with serving(lambda ws, m: seen.append(m)) as (_hub, topic, daemon):
        client = await Client.open(daemon.port, extra=masked_text("early"))
        await until(lambda: seen == ["early"])
        [sub] = subscribers(topic)
        assert sub.ws is not None
        mid = await topic.publish("news")
        assert json.loads(await client.text())["id"] == mid
        await client.stream.aclose()


async def test_on_message_raising_closes_1011_and_releases_the_subscriber() -> None:
    def on_message(ws: Any, message: str | bytes) -> None:
        raise RuntimeError("the application failed")

    async with serving(on_message) as (hub, _topic, daemon):
        client = await Client.open(daemon.port)
        await until(lambda: hub.stats().subscribers["websocket"] == 1)
        await client.send(TextMessage(data="boom"))
        close = await client.until(lambda e: isinstance(e, CloseConnection))
        assert close.code == 1011
        # The server failed the connection (close frame, then FIN) and drops what
        # comes until the client's end; a client closes on the FIN (else the
        # server would wait out its 5 s CLOSE_TIMEOUT).
        await client.stream.aclose()
        await until(lambda: hub.stats().subscribers["websocket"] == 0)


async def test_a_client_gone_without_a_close_frame_is_released() -> None:
    async with serving() as (hub, topic, daemon):
        client = await Client.open(daemon.port)
        await until(lambda: hub.stats().subscribers["websocket"] == 1)
        await client.stream.aclose()
        await until(lambda: hub.stats().subscribers["websocket"] == 0)
        await topic.publish("after")  # nobody left to write to: no error
        assert hub.stats().deliveries == 0


HANDSHAKE = (b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
             b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")


async def test_a_parked_lean_subscriber_holds_little_memory() -> None:
    # What a silent subscriber keeps, connection included (tracemalloc, Python
    # objects only).  With a WebSocket session, its wsproto connection, a
    # nursery and a stop-watcher task each it was ~23 KB; lean ~13 KB.
    import socket

    count = 100
    async with serving() as (hub, topic, daemon):
        warm = await Client.open(daemon.port)  # first-use allocations go here
        await topic.publish("warm")
        await warm.text()
        await trio.testing.wait_all_tasks_blocked()
        socks: list[socket.socket] = []
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(count):
                sock = socket.create_connection(("127.0.0.1", daemon.port))
                sock.sendall(HANDSHAKE)
                socks.append(sock)
            await until(lambda: hub.stats().subscribers["websocket"] == count + 1)
            await topic.publish("one")
            await until(lambda: hub.stats().direct_deliveries == count + 2)
            await trio.testing.wait_all_tasks_blocked()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        lean = all(sub.ws is None for sub in subscribers(topic))
        for sock in socks:
            sock.close()
        await warm.stream.aclose()
    assert grown / count < 16_000, grown / count
    assert lean
