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
from h2raw import RawH2
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


@pytest.mark.parametrize("protocol", ["h1", "h2"])
async def test_polls_waiting_on_one_message_share_one_answer(ca: trustme.CA, protocol: str) -> None:
    async with serving(ca, protocol) as s:
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
            message = s.topic._retained.messages[-1]
            await until(lambda: all(sub.last is not None for sub in subs))
            sse_sent = [sub.last for sub in subs if sub.kind == "sse"]
            ws_sent = [sub.last for sub in subs if sub.kind == "websocket"]
            done.set()
        assert len(sse_sent) == 3 and all(b is message.sse() for b in sse_sent)
        assert len(ws_sent) == 2 and all(b is message.ws() for b in ws_sent)


# -- slow subscribers ----------------------------------------------------------------------------


def _stalled_client(port: int, target: str) -> socket.socket:
    """A client that sends *target* and then reads nothing (a tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


async def _publish_until_dropped(s: Served, size: int, limit: int = 4000) -> list[str]:
    ids: list[str] = []
    with trio.fail_after(WAIT * 3):
        while s.hub.stats().drops == 0:
            assert len(ids) < limit, "never dropped"
            ids.append(await s.topic.publish(b"%06d" % len(ids) + b"x" * size))
            await trio.sleep(0)  # let the subscriber write until its socket is full
    return ids


def _read_all(sock: socket.socket) -> bytes:
    sock.settimeout(WAIT)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    sock.close()
    return data


def _sse_body(raw: bytes) -> str:
    """The event-stream text of a raw chunked HTTP/1.1 response (cut anywhere)."""
    import h11

    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(raw)
    body = b""
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            break
        if event in (h11.NEED_DATA, h11.PAUSED) or isinstance(event, h11.EndOfMessage):
            break
        if isinstance(event, h11.Data):
            body += event.data
    return body.decode("utf-8", "replace")


async def test_a_stalled_sse_client_is_dropped_and_resumes_losing_nothing(ca: trustme.CA) -> None:
    async with serving(ca, hub_options={"max_pending_bytes": 64 * 1024}, history=4000) as s:
        start = await s.topic.publish(b"start")
        sock = _stalled_client(s.daemon.port, f"/events?cursor={start}")
        await until(parked(s, "sse"))
        ids = await _publish_until_dropped(s, 8 * 1024)
        stats = s.hub.stats()
        assert stats.drops == 1 and stats.subscribers["sse"] == 0
        raw = await trio.to_thread.run_sync(_read_all, sock)  # the server closed it
        complete = _sse_body(raw).rsplit("\n\n", 1)[0] + "\n\n"
        got = [e["id"] for e in events_of(complete) if "id" in e]
        assert got == ids[:len(got)]  # in order, nothing skipped
        assert len(got) < len(ids)  # it was behind
        # Back with the last id it has: everything after it, still in the history.
        async with s.client.stream("GET", "/events", headers={"Last-Event-ID": got[-1]}) as r:
            rest = await SSEReader(r).until_blocks(1 + len(ids) - len(got))
        assert [e["id"] for e in rest[1:]] == ids[len(got):]


async def test_a_stalled_websocket_is_closed_1008_too_slow(ca: trustme.CA) -> None:
    async with serving(ca, hub_options={"max_pending_bytes": 64 * 1024}, history=4000) as s:
        port = s.daemon.port
        connected = threading.Event()
        resume = threading.Event()

        def client() -> tuple[list[str], Any]:
            seen: list[str] = []
            with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=WAIT, max_queue=2) as ws:
                connected.set()
                resume.wait(WAIT * 3)  # reads nothing meanwhile
                try:
                    while True:
                        seen.append(json.loads(ws.recv(timeout=WAIT))["id"])
                except ClientClosed as exc:
                    return seen, exc.rcvd

        async with trio.open_nursery() as nursery:
            result: list[Any] = []

            async def run_client() -> None:
                result.append(await trio.to_thread.run_sync(client))

            nursery.start_soon(run_client)
            await trio.to_thread.run_sync(connected.wait, WAIT)
            await until(parked(s, "websocket"))
            ids = await _publish_until_dropped(s, 8 * 1024)
            resume.set()
        seen, rcvd = result[0]
        assert rcvd is not None and (rcvd.code, rcvd.reason) == (1008, "too slow"), (len(seen), len(ids), result)
        assert seen == ids[:len(seen)] and len(seen) < len(ids)
        assert s.hub.stats().drops == 1
        await until(parked(s, "websocket", 0))


async def test_a_stalled_http2_event_stream_is_reset_and_resumes(ca: trustme.CA) -> None:
    async with serving(ca, "h2", hub_options={"max_pending_bytes": 64 * 1024},
                       history=4000) as s:
        start = await s.topic.publish(b"start")
        text = ""
        async with s.client.stream("GET", "/events", params={"cursor": start}) as r:
            await until(parked(s, "sse"))
            ids = await _publish_until_dropped(s, 8 * 1024)
            assert s.hub.stats().subscribers["sse"] == 0
            with pytest.raises(httpx.HTTPError):  # the stream is reset after what was sent
                with trio.fail_after(WAIT):
                    async for chunk in r.aiter_text():
                        text += chunk
        got = [e["id"] for e in events_of(text.rsplit("\n\n", 1)[0] + "\n\n") if "id" in e]
        assert got == ids[:len(got)] and len(got) < len(ids)
        async with s.client.stream("GET", "/events", headers={"Last-Event-ID": got[-1]}) as r:
            rest = await SSEReader(r).until_blocks(1 + len(ids) - len(got))
        assert [e["id"] for e in rest[1:]] == ids[len(got):]


# -- limits ---------------------------------------------------------------------------------------


async def test_subscriber_limits_answer_503_with_retry_after(ca: trustme.CA) -> None:
    async with serving(ca, hub_options={"max_subscribers": 2, "max_subscribers_per_topic": 1,
                                        "retry_after": 7}) as s:
        other = s.hub.topic("other", max_subscribers=5)
        async with s.client.stream("GET", "/events") as first:
            assert first.status_code == 200
            await until(parked(s, "sse"))
            for path in ("/events", "/poll"):
                r = await s.client.get(path)
                assert r.status_code == 503 and r.headers["retry-after"] == "7"
                assert "try again later" in r.text
            r = await s.client.get("/ws", headers={
                "Connection": "Upgrade", "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
            assert r.status_code == 503
            assert s.hub.stats().refused == 3
            # The hub's limit: one more on another topic fits, then none.
            assert other._add(_Dummy(other)) and not other._add(_Dummy(other))
            assert s.hub.stats().refused == 4


class _Dummy(mhd2.fanout.topic.Subscriber):
    kind = "long_poll"

    def __init__(self, topic: Topic) -> None:
        super().__init__(topic, None, topic.last_id, topic._retained.tip_key, 0)  # type: ignore[arg-type]


# -- liveness, stop and reload ------------------------------------------------------------------


async def test_a_client_that_goes_away_is_released(ca: trustme.CA) -> None:
    async with serving(ca) as s:
        sock = _stalled_client(s.daemon.port, "/poll")
        sock2 = _stalled_client(s.daemon.port, "/events")
        sock3 = socket.create_connection(("127.0.0.1", s.daemon.port))
        sock3.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                      b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        await until(lambda: s.hub.stats().subscribers == {"long_poll": 1, "sse": 1,
                                                           "websocket": 1})
        for each in (sock, sock2, sock3):
            each.close()  # FIN, no goodbye of any protocol
        await until(lambda: s.hub.stats().subscribers == {"long_poll": 0, "sse": 0,
                                                           "websocket": 0})
        assert not s.topic._waiting


@pytest.mark.parametrize("protocol", ["h1", "h1-tls"])
async def test_graceful_stop_says_goodbye_to_every_kind(ca: trustme.CA, protocol: str) -> None:
    async with serving(ca, protocol) as s:
        tip = await s.topic.publish(b"last before the stop")
        port = s.daemon.port
        results: dict[str, Any] = {}

        async def poll() -> None:
            results["poll"] = await s.client.get("/poll", params={"cursor": tip})

        async def sse() -> None:
            async with s.client.stream("GET", "/events", params={"cursor": tip}) as r:
                results["sse"] = await SSEReader(r).until_end()

        def ws() -> None:
            with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=WAIT) as client:
                try:
                    client.recv(timeout=WAIT)
                except ClientClosed as exc:
                    results["ws"] = exc.rcvd

        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll)
            nursery.start_soon(sse)
            if protocol == "h1":
                nursery.start_soon(trio.to_thread.run_sync, ws)
            want = {"long_poll": 1, "sse": 1, "websocket": 1 if protocol == "h1" else 0}
            await until(lambda: s.hub.stats().subscribers == want)
            with trio.fail_after(WAIT):
                await s.daemon.stop(grace=WAIT)
        r = results["poll"]
        assert r.status_code == 204 and r.headers["x-cursor"] == tip
        assert results["sse"] == [{"retry": "1500"}, {"retry": "1500"}]
        if "ws" in results:
            assert (results["ws"].code, results["ws"].reason) == (1012, "service restart")
        assert s.hub.stats().subscribers == {"long_poll": 0, "sse": 0, "websocket": 0}


@pytest.mark.parametrize("protocol", ["h2", "h2-tls"])
async def test_graceful_stop_over_http2(ca: trustme.CA, protocol: str) -> None:
    # httpx fails every stream still being read once GOAWAY has arrived (even
    # those the server finishes, RFC 9113 §6.8): a frame-level client instead.
    async with serving(ca, protocol) as s:
        tip = await s.topic.publish(b"tip")
        tcp = await trio.open_tcp_stream("127.0.0.1", s.daemon.port)
        stream: trio.abc.Stream = tcp
        if protocol.endswith("tls"):
            ctx = ssl.create_default_context()
            ca.configure_trust(ctx)
            ctx.set_alpn_protocols(["h2"])
            stream = trio.SSLStream(tcp, ctx, server_hostname="127.0.0.1")
            await stream.do_handshake()
            assert stream.selected_alpn_protocol() == "h2"
        client = RawH2(stream)
        poll = client.request(f"/poll?cursor={tip}")
        events = client.request(f"/events?cursor={tip}")
        await client.flush()
        await client.until(lambda: client.replies[events].body)  # retry: of the start
        async with trio.open_nursery() as nursery:
            await until(lambda: s.hub.stats().subscribers["long_poll"] == 1 and
                        s.hub.stats().subscribers["sse"] == 1)
            nursery.start_soon(s.daemon.stop, WAIT)
            replies = [await client.response(sid) for sid in (poll, events)]
            await client.until_closed()
            await client.aclose()  # else the stop waits out the server's linger
        assert replies[0].status == 204 and replies[0].header(b"x-cursor") == tip.encode()
        assert replies[1].status == 200 and replies[1].ended
        assert replies[1].body == b"retry: 1500\n\nretry: 1500\n\n"
        assert client.goaway is not None and client.goaway.error_code == 0


async def test_closing_the_hub_says_goodbye_too(ca: trustme.CA) -> None:
    hub = Hub()
    topic = hub.topic("t")
    hub_scope = trio.CancelScope()

    async def run_hub(task_status: trio.TaskStatus[Hub] = trio.TASK_STATUS_IGNORED) -> None:
        with hub_scope:
            await hub.run(task_status=task_status)

    async with trio.open_nursery() as outer:
        await outer.start(run_hub)
        async with mhd2.Daemon(app(topic), port=0) as daemon, httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{daemon.port}", timeout=WAIT) as client:
            results: list[Any] = []

            async def poll() -> None:
                results.append(await client.get("/poll"))

            async def sse() -> None:
                async with client.stream("GET", "/events") as r:
                    results.append(await SSEReader(r).until_end())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(poll)
                nursery.start_soon(sse)
                await until(lambda: hub._count == 2)
                hub_scope.cancel()
    statuses = sorted(str(getattr(r, "status_code", r)) for r in results)
    assert "204" in statuses and "[{'retry': '1500'}, {'retry': '1500'}]" in statuses
    with pytest.raises(mhd2.UsageError, match="running hub"):
        await topic.publish(b"x")


async def test_stats_count_subscribers_deliveries_and_drops(ca: trustme.CA) -> None:
    async with serving(ca) as s:
        async with s.client.stream("GET", "/events") as r:
            reader = SSEReader(r)
            await until(parked(s, "sse"))
            assert s.hub.stats().subscribers == {"long_poll": 0, "sse": 1, "websocket": 0}
            for i in range(3):
                await s.topic.publish(b"%d" % i)
            await reader.until_blocks(4)
        stats = s.hub.stats()
        assert (stats.published, stats.deliveries, stats.drops) == (3, 3, 0)


async def test_parked_event_streams_hold_no_content_creator_buffer(ca: trustme.CA) -> None:
    import tracemalloc

    buffer_size = 32 * 1024  # mhd2.dcc.DCC_BUFFER_SIZE
    count = 50
    async with serving(ca) as s:
        socks = [_stalled_client(s.daemon.port, "/events") for _ in range(5)]
        await until(parked(s, "sse", 5))  # pools and caches warmed up
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            socks += [_stalled_client(s.daemon.port, "/events") for _ in range(count)]
            await until(parked(s, "sse", 5 + count))
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        for sock in socks:
            sock.close()
    # Each stream used to keep a 32 KiB buffer while parked.
    assert grown < count * buffer_size // 2, grown / count


@pytest.mark.parametrize("protocol", ["h1", "h1-tls"])
async def test_websocket_wakes_lose_no_byte_the_client_sends(ca: trustme.CA, protocol: str) -> None:
    # Every publish interrupts the subscriber's wait to read; what the client
    # sent meanwhile must all arrive (nothing read and then dropped by the wake).
    received: list[str] = []

    async with serving(ca, protocol, on_message=lambda ws, m: received.append(m)) as s:
        ssl_ctx = None
        if protocol.endswith("tls"):
            ssl_ctx = ssl.create_default_context()
            ca.configure_trust(ssl_ctx)
        url = f"{'wss' if ssl_ctx else 'ws'}://127.0.0.1:{s.daemon.port}/ws"
        count = 500
        go = threading.Event()
        finished = threading.Event()

        def client() -> int:
            with connect(url, ssl=ssl_ctx, open_timeout=WAIT, max_queue=None) as ws:
                go.wait(WAIT)
                for i in range(count):
                    ws.send(f"c{i}")
                finished.wait(WAIT)
                # Every publish, up to the "end" published last (in order:
                # one lost or repeated before it would show in the count).
                got = 0
                while json.loads(ws.recv(timeout=WAIT))["data"] != "end":
                    got += 1
                return got

        results: list[int] = []

        async def run_client() -> None:
            results.append(await trio.to_thread.run_sync(client))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_client)
            await until(parked(s, "websocket"))
            go.set()
            published = 0
            with trio.fail_after(WAIT * 2):
                while len(received) < count:
                    await s.topic.publish(b"p")
                    published += 1
                    await trio.sleep(0)
            await s.topic.publish(b"end")
            finished.set()
        assert received == [f"c{i}" for i in range(count)]
        assert results == [published]
