"""mhd2.fanout over real sockets: long poll, SSE and WebSocket subscribers on
HTTP/1.1, HTTP/2 and TLS; cursors, encode-once, drops, limits, stop, stats."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
import trustme
from conftest import WAIT
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.sync.client import connect

import mhd2
from mhd2.fanout import Hub, Topic, action_long_poll, action_sse, action_websocket_subscribe
from mhd2.tls import server_context

PROTOCOLS = ["h1", "h2", "h1-tls", "h2-tls"]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def app(topic: Topic, *, on_message: Any = None) -> Callable[[mhd2.Request], mhd2.Action]:
    """/poll, /events and /ws on *topic*; ?cursor=, ?timeout=, ?heartbeat=."""

    def callback(request: mhd2.Request) -> mhd2.Action:
        args = request.args
        cursor = args.get("cursor")
        if request.path == "/poll":
            return action_long_poll(request, topic, cursor=cursor,
                                    timeout=float(args.get("timeout", "30")))
        if request.path == "/events":
            return action_sse(request, topic, cursor=cursor,
                              heartbeat=float(args.get("heartbeat", "15")), retry_ms=1500)
        return action_websocket_subscribe(request, topic, cursor=cursor, on_message=on_message)

    return callback


class Served:
    def __init__(self, hub: Hub, topic: Topic, daemon: mhd2.Daemon, client: httpx.AsyncClient,
                 scheme: str) -> None:
        self.hub = hub
        self.topic = topic
        self.daemon = daemon
        self.client = client
        self.scheme = scheme


@asynccontextmanager
async def serving(ca: trustme.CA, protocol: str = "h1", *, hub_options: Any = None,
                  history: int = 100, on_message: Any = None,
                  **daemon_options: Any) -> AsyncIterator[Served]:
    client_options: dict[str, Any] = {}
    if protocol.endswith("tls"):
        cert = ca.issue_cert("127.0.0.1")
        daemon_options["tls"] = server_context(cert.cert_chain_pems[0].bytes(),
                                               cert.private_key_pem.bytes())
        client_ctx = ssl.create_default_context()
        ca.configure_trust(client_ctx)
        client_options["verify"] = client_ctx
    scheme = "https" if protocol.endswith("tls") else "http"
    if protocol.startswith("h2"):
        client_options.update(http1=protocol.endswith("tls"), http2=True)
    async with Hub(**(hub_options or {})) as hub:
        topic = hub.topic("news", history=history)
        async with mhd2.Daemon(app(topic, on_message=on_message), port=0,
                               **daemon_options) as daemon:
            async with httpx.AsyncClient(base_url=f"{scheme}://127.0.0.1:{daemon.port}",
                                         timeout=WAIT, **client_options) as client:
                yield Served(hub, topic, daemon, client, scheme)


async def until(condition: Callable[[], bool]) -> None:
    """Wait (bounded) until *condition* holds, checking between scheduler ticks."""
    with trio.fail_after(WAIT):
        while not condition():
            await trio.sleep(0.005)


def parked(served: Served, kind: str, count: int = 1) -> Callable[[], bool]:
    return lambda: served.hub.stats().subscribers[kind] == count


def events_of(text: str) -> list[dict[str, str]]:
    """The server-sent events in *text* (fields joined per event; comments kept as ":")."""
    out: list[dict[str, str]] = []
    for block in text.split("\n\n"):
        if not block:
            continue
        event: dict[str, str] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(": " if ": " in line else ":")
            event[name] = event[name] + "\n" + value if name in event else value
        out.append(event)
    return out


class SSEReader:
    """Reads an httpx event-stream response until a number of blank-line blocks."""

    def __init__(self, response: httpx.Response) -> None:
        self.chunks = response.aiter_text()
        self.text = ""

    async def until_blocks(self, count: int) -> list[dict[str, str]]:
        with trio.fail_after(WAIT):
            while self.text.count("\n\n") < count:
                self.text += await self.chunks.__anext__()
        return events_of(self.text)

    async def until_end(self) -> list[dict[str, str]]:
        with trio.fail_after(WAIT):
            async for chunk in self.chunks:
                self.text += chunk
        return events_of(self.text)


# -- long poll ----------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_long_poll_answers_waits_and_times_out(ca: trustme.CA, protocol: str) -> None:
    async with serving(ca, protocol) as s:
        first = await s.topic.publish(b"one", event="e")
        r = await s.client.get("/poll", params={"timeout": "0.1"})
        assert r.status_code == 204 and r.headers["x-cursor"] == first
        assert r.headers["cache-control"] == "no-store"
        assert r.http_version == ("HTTP/2" if protocol.startswith("h2") else "HTTP/1.1")

        async with trio.open_nursery() as nursery:
            answers: list[httpx.Response] = []

            async def poll() -> None:
                answers.append(await s.client.get("/poll", params={"cursor": first}))

            nursery.start_soon(poll)
            await until(parked(s, "long_poll"))
            second = await s.topic.publish("zwei ✓\nlines")
        [r] = answers
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert r.json() == {"messages": [{"id": second, "event": None, "data": "zwei ✓\nlines"}],
                            "cursor": second}
        assert r.headers["x-cursor"] == second
        third = await s.topic.publish(b"\xff\xfe")
        r = await s.client.get("/poll", params={"cursor": first})
        assert r.json()["messages"][1] == {"id": third, "event": None, "data": "//4=",
                                           "encoding": "base64"}
        assert s.hub.stats().subscribers["long_poll"] == 0


async def test_long_poll_timeout_says_where_to_resume_and_cursor_errors(ca: trustme.CA) -> None:
    async with serving(ca, history=2) as s:
        ids = [await s.topic.publish(f"m{i}") for i in range(4)]
        r = await s.client.get("/poll", params={"cursor": ids[3], "timeout": "0.05"})
        assert r.status_code == 204 and r.headers["x-cursor"] == ids[3]
        r = await s.client.get("/poll", params={"cursor": ids[0]})
        body = r.json()
        assert body["truncated"] is True and [m["id"] for m in body["messages"]] == ids[2:]
        for bad in ("x", "1-2", ids[0] + "0", ids[0].upper().replace("-", "_")):
            r = await s.client.get("/poll", params={"cursor": bad})
            assert r.status_code == 400, bad
            assert r.text.startswith("Bad cursor: the cursor must be a message id")
            assert bad not in r.text


async def test_polls_waiting_on_one_message_share_one_answer(ca: trustme.CA) -> None:
    async with serving(ca) as s:
        start = await s.topic.publish(b"0")
        bodies: list[bytes] = []
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(lambda: _poll_into(s, start, bodies))
            await until(parked(s, "long_poll", 5))
            await s.topic.publish(b"1")
        assert len(set(bodies)) == 1 and len(bodies) == 5
        # one reusable response for all five (plus nothing else) in the topic's cache
        assert len(s.topic._cache) == 1
        stats = s.hub.stats()
        assert stats.deliveries == 5 and stats.subscribers["long_poll"] == 0


async def _poll_into(s: Served, cursor: str, bodies: list[bytes]) -> None:
    r = await s.client.get("/poll", params={"cursor": cursor})
    assert r.status_code == 200
    bodies.append(r.content)


# -- server-sent events ---------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_sse_resumes_after_cursor_and_streams_new_messages(ca: trustme.CA,
                                                                 protocol: str) -> None:
    async with serving(ca, protocol) as s:
        ids = [await s.topic.publish(f"m{i}", event="tick") for i in range(3)]
        async with s.client.stream("GET", "/events", params={"cursor": ids[0]}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"] == "text/event-stream"
            assert r.headers["cache-control"] == "no-store"
            reader = SSEReader(r)
            events = await reader.until_blocks(3)
            assert events[0] == {"retry": "1500"}
            assert events[1:] == [{"id": ids[1], "event": "tick", "data": "m1"},
                                  {"id": ids[2], "event": "tick", "data": "m2"}]
            await until(parked(s, "sse"))
            new = await s.topic.publish("two\r\nlines")
            events = await reader.until_blocks(4)
            assert events[3] == {"id": new, "data": "two\nlines"}
        # httpx does not reset an HTTP/2 stream it stops reading: close the connection.
        await s.client.aclose()
        await until(parked(s, "sse", 0))  # the client went: the subscriber is gone


async def test_sse_last_event_id_heartbeat_and_bad_cursor(ca: trustme.CA) -> None:
    async with serving(ca) as s:
        ids = [await s.topic.publish(f"m{i}") for i in range(3)]
        headers = {"Last-Event-ID": ids[1]}
        async with s.client.stream("GET", "/events", params={"heartbeat": "0.05"},
                                   headers=headers) as r:
            reader = SSEReader(r)
            events = await reader.until_blocks(2)
            assert events[1] == {"id": ids[2], "data": "m2"}
            with trio.fail_after(WAIT):
                while ":\n" not in reader.text:
                    reader.text += await reader.chunks.__anext__()
        r = await s.client.get("/events", headers={"Last-Event-ID": "nope"})
        assert r.status_code == 400 and "cursor" in r.text


# -- WebSocket --------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["h1", "h1-tls"])
async def test_websocket_subscriber_backlog_new_messages_and_on_message(
        ca: trustme.CA, protocol: str) -> None:
    received: list[Any] = []

    async def on_message(ws: Any, message: str | bytes) -> None:
        received.append(message)
        await ws.send("ack")

    async with serving(ca, protocol, on_message=on_message) as s:
        ids = [await s.topic.publish(f"m{i}") for i in range(2)]
        ssl_ctx = None
        if protocol.endswith("tls"):
            ssl_ctx = ssl.create_default_context()
            ca.configure_trust(ssl_ctx)
        url = f"{'wss' if ssl_ctx else 'ws'}://127.0.0.1:{s.daemon.port}/ws?cursor={ids[0]}"
        topic = s.topic

        def client() -> list[Any]:
            got: list[Any] = []
            with connect(url, ssl=ssl_ctx, open_timeout=WAIT) as ws:
                got.append(json.loads(ws.recv(timeout=WAIT)))
                new = trio.from_thread.run(topic.publish, "héllo")
                got.append(new)
                got.append(json.loads(ws.recv(timeout=WAIT)))
                trio.from_thread.run(lambda: topic.publish(b"\x00\xff", event="bin"))
                raw = ws.recv(timeout=WAIT)
                got.append(raw)
                ws.send("from client")
                got.append(ws.recv(timeout=WAIT))
            return got

        got = await trio.to_thread.run_sync(client)
        assert got[0] == {"id": ids[1], "event": None, "data": "m1"}
        assert got[2] == {"id": got[1], "event": None, "data": "héllo"}
        assert isinstance(got[3], bytes)  # binary frame for non-UTF-8 data
        assert json.loads(got[3])["encoding"] == "base64" and json.loads(got[3])["event"] == "bin"
        assert got[4] == "ack" and received == ["from client"]
        await until(parked(s, "websocket", 0))


async def test_websocket_subscribe_refuses_bad_cursor_before_the_handshake(ca: trustme.CA) -> None:
    async with serving(ca) as s:
        r = await s.client.get("/ws", params={"cursor": "zz"}, headers={
            "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        assert r.status_code == 400 and r.text.startswith("Bad cursor")


# -- encode once ---------------------------------------------------------------------------------


async def test_every_subscriber_is_handed_the_same_bytes_object(ca: trustme.CA) -> None:
    async with serving(ca) as s:
        port = s.daemon.port
        done = threading.Event()

        async def sse_client() -> None:
            async with s.client.stream("GET", "/events") as r:
                await SSEReader(r).until_blocks(2)  # retry:, then the message

        def ws_client() -> None:
            with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=WAIT) as ws:
                ws.recv(timeout=WAIT)
                done.wait(WAIT)

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(sse_client)
            for _ in range(2):
                nursery.start_soon(trio.to_thread.run_sync, ws_client)
            await until(lambda: s.hub.stats().subscribers == {
                "long_poll": 0, "sse": 3, "websocket": 2})
            subs = list(s.topic._subs)
            await s.topic.publish(b"shared")
            message = s.topic._messages[-1]
            await until(lambda: all(sub.last is not None for sub in subs))
            sse_sent = [sub.last for sub in subs if sub.kind == "sse"]
            ws_sent = [sub.last for sub in subs if sub.kind == "websocket"]
            done.set()
        assert len(sse_sent) == 3 and all(b is message.sse() for b in sse_sent)
        assert len(ws_sent) == 2 and all(b is message.ws() for b in ws_sent)
