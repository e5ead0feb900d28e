"""mhd2.fanout's direct delivery: an event stream parked on HTTP/1 over plain TCP is
written to by the fan-out itself, its task not woken; partial writes, full socket
buffers, broken connections and TLS fall back to the task, in order."""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
import trustme
from conftest import WAIT
from test_fanout import _read_all, _sse_body, events_of, until

import mhd2
from mhd2.fanout import Hub, Topic, action_sse
from mhd2.tls import server_context


class Served:
    def __init__(self, hub: Hub, topic: Topic, daemon: mhd2.Daemon, tasks: list[Any]) -> None:
        self.hub = hub
        self.topic = topic
        self.daemon = daemon
        #: The connection task of each /events request, in arrival order.
        self.tasks = tasks


@asynccontextmanager
async def serving(*, tls: trustme.CA | None = None, max_pending_bytes: int = 1 << 20,
                  history: int = 4000) -> AsyncIterator[Served]:
    tasks: list[Any] = []
    options: dict[str, Any] = {}
    if tls is not None:
        cert = tls.issue_cert("127.0.0.1")
        options["tls"] = server_context(cert.cert_chain_pems[0].bytes(),
                                        cert.private_key_pem.bytes())
    async with Hub(max_pending_bytes=max_pending_bytes) as hub:
        topic = hub.topic("news", history=history)

        def callback(request: mhd2.Request) -> mhd2.Action:
            tasks.append(trio.lowlevel.current_task())
            return action_sse(request, topic, heartbeat=60.0)

        async with mhd2.Daemon(callback, port=0, **options) as daemon:
            yield Served(hub, topic, daemon, tasks)


class Scheduled(trio.abc.Instrument):
    """Counts how often the watched tasks are scheduled, and what they saw first."""

    def __init__(self, watched: list[Any], hub: Hub | None = None) -> None:
        self.watched = watched
        self.count = 0
        self.hub = hub
        #: hub.stats().subscribers["sse"] when a watched task first ran.
        self.sse_at_first_step: int | None = None

    def task_scheduled(self, task: Any) -> None:
        if task in self.watched:
            self.count += 1

    def before_task_step(self, task: Any) -> None:
        if task in self.watched and self.hub is not None and self.sse_at_first_step is None:
            self.sse_at_first_step = self.hub.stats().subscribers["sse"]


async def _open_stream(port: int, ca: trustme.CA | None = None) -> tuple[trio.abc.Stream, bytes]:
    """GET /events; returns the stream and what came up to the ``retry:`` line."""
    stream: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", port)
    if ca is not None:
        import ssl

        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        stream = trio.SSLStream(stream, ctx, server_hostname="127.0.0.1")
    await stream.send_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    with trio.fail_after(WAIT):
        while b"retry: " not in got or not got.endswith(b"\n\n\r\n"):
            got += await stream.receive_some(65536)
    return stream, got


async def _read_event(stream: trio.abc.Stream, got: bytes, count: int) -> bytes:
    with trio.fail_after(WAIT):
        while _sse_body(got).count("\n\n") < count:
            got += await stream.receive_some(65536)
    return got


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_a_parked_event_stream_is_written_without_waking_its_task(
        tls: bool, request: pytest.FixtureRequest) -> None:
    ca = trustme.CA() if tls else None
    async with serving(tls=ca) as s:
        stream, got = await _open_stream(s.daemon.port, ca)
        await until(lambda: s.hub.stats().subscribers["sse"] == 1)
        await trio.testing.wait_all_tasks_blocked()
        counter = Scheduled(s.tasks)
        trio.lowlevel.add_instrument(counter)
        try:
            ids = []
            for n in range(3):
                ids.append(await s.topic.publish(f"message {n}"))
                got = await _read_event(stream, got, 2 + n)  # retry: block + n + 1 events
                await trio.testing.wait_all_tasks_blocked()
        finally:
            trio.lowlevel.remove_instrument(counter)
        events = [e for e in events_of(_sse_body(got)) if "id" in e]
        assert [e["id"] for e in events] == ids
        assert [e["data"] for e in events] == ["message 0", "message 1", "message 2"]
        stats = s.hub.stats()
        assert stats.deliveries == 3
        if tls:
            # TLS frames per connection: the task is woken and writes itself.
            assert stats.direct_deliveries == 0
            assert counter.count >= 3
        else:
            assert stats.direct_deliveries == 3
            assert counter.count == 0  # the subscriber's task never ran
        await stream.aclose()


def _stalled(port: int) -> socket.socket:
    """A client that asks for /events and then reads nothing (tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
    return sock


async def test_a_client_that_stops_reading_goes_from_direct_to_pending_to_dropped() -> None:
    async with serving(max_pending_bytes=64 * 1024) as s:
        sock = await trio.to_thread.run_sync(_stalled, s.daemon.port)
        await until(lambda: s.hub.stats().subscribers["sse"] == 1)
        await trio.testing.wait_all_tasks_blocked()
        ids: list[str] = []
        with trio.fail_after(WAIT * 3):
            while s.hub.stats().drops == 0:
                assert len(ids) < 4000, "never dropped"
                ids.append(await s.topic.publish(b"%06d" % len(ids) + b"x" * 2000))
                await trio.testing.wait_all_tasks_blocked()
        stats = s.hub.stats()
        # Direct while the socket took whole events; then a partial write
        # whose rest is owed (the task, woken, waits to write it); the
        # messages after it wait in the history until the subscriber is more
        # than max_pending_bytes behind: dropped.
        assert 0 < stats.direct_deliveries <= stats.deliveries < len(ids)
        assert (len(ids) - stats.deliveries) * 2006 > 64 * 1024
        assert stats.subscribers["sse"] == 0
        raw = await trio.to_thread.run_sync(_read_all, sock)
        complete = _sse_body(raw).rsplit("\n\n", 1)[0] + "\n\n"
        got = [e["id"] for e in events_of(complete) if "id" in e]
        assert got == ids[:len(got)]  # in order, nothing skipped or torn
        # Every event handed over arrived whole, but the one whose rest was
        # still owed when the drop closed the connection.
        assert len(got) >= stats.deliveries - 1


async def test_order_holds_when_a_subscriber_flips_between_direct_and_its_task() -> None:
    async with serving() as s:
        sock = await trio.to_thread.run_sync(_stalled, s.daemon.port)
        await until(lambda: s.hub.stats().subscribers["sse"] == 1)
        await trio.testing.wait_all_tasks_blocked()
        ids: list[str] = []
        # Fill the socket: direct writes, then a partial one, then the task.
        with trio.fail_after(WAIT):
            while True:
                before = s.hub.stats().direct_deliveries
                ids.append(await s.topic.publish(b"%06d" % len(ids) + b"y" * 3000))
                await trio.testing.wait_all_tasks_blocked()
                if s.hub.stats().direct_deliveries == before:
                    break  # the socket is full: the rest waits for the task
            for _ in range(3):
                ids.append(await s.topic.publish(b"%06d" % len(ids) + b"y" * 3000))
        assert s.hub.stats().direct_deliveries > 0
        assert s.hub.stats().deliveries < len(ids)
        received = bytearray()

        def read_some() -> None:
            sock.settimeout(WAIT)
            received.extend(sock.recv(1 << 20))

        # The client reads again: the task drains, parks, and direct writes resume.
        async def reader() -> None:
            # Events end with a blank line, and nothing else here has one.
            while received.count(b"\n\n") < len(ids) + 1:
                await trio.to_thread.run_sync(read_some)

        with trio.fail_after(WAIT):
            await reader()
            await trio.testing.wait_all_tasks_blocked()
            direct_before = s.hub.stats().direct_deliveries
            for _ in range(3):
                ids.append(await s.topic.publish(b"%06d" % len(ids) + b"z"))
                await trio.testing.wait_all_tasks_blocked()
            await reader()
        # The task sent what the socket had no room for; then direct again.
        assert s.hub.stats().deliveries == len(ids)
        assert s.hub.stats().direct_deliveries == direct_before + 3
        got = [e["id"] for e in events_of(_sse_body(bytes(received))) if "id" in e]
        assert got == ids
        assert s.hub.stats().drops == 0
        sock.close()


async def test_a_reset_connection_is_released_by_the_publisher() -> None:
    async with serving() as s:
        sock = await trio.to_thread.run_sync(_stalled, s.daemon.port)
        await until(lambda: s.hub.stats().subscribers["sse"] == 1)
        await trio.testing.wait_all_tasks_blocked()
        counter = Scheduled(s.tasks, s.hub)
        trio.lowlevel.add_instrument(counter)
        try:
            # RST: SO_LINGER with a zero timeout.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            # No checkpoint between the reset and the publish: the fan-out's
            # write meets ECONNRESET / EPIPE before the connection's watcher runs.
            await s.topic.publish(b"to nobody")
            with trio.fail_after(WAIT):
                while s.hub.stats().subscribers["sse"] or counter.sse_at_first_step is None:
                    await trio.testing.wait_all_tasks_blocked()
        finally:
            trio.lowlevel.remove_instrument(counter)
        # The publisher had released it before its task ran again.
        assert counter.sse_at_first_step == 0
        stats = s.hub.stats()
        assert stats.direct_deliveries == 0 and stats.drops == 0


async def test_a_directly_written_stream_gets_its_heartbeat_after_its_last_event(
        autojump_clock: trio.testing.MockClock) -> None:
    """Real sockets on MockClock: the time between events, and the silence until the
    heartbeat, pass in virtual time."""
    tasks: list[Any] = []
    async with Hub() as hub:
        topic = hub.topic("news")

        def callback(request: mhd2.Request) -> mhd2.Action:
            tasks.append(trio.lowlevel.current_task())
            return action_sse(request, topic, heartbeat=0.4)

        async with mhd2.Daemon(callback, port=0) as daemon:
            stream, got = await _open_stream(daemon.port)
            await trio.testing.wait_all_tasks_blocked()
            # Messages more often than the heartbeat: no comment line among them.
            for n in range(4):
                await topic.publish(f"m{n}")
                got = await _read_event(stream, got, 2 + n)
                await trio.sleep(0.15)  # the time that passes is what is tested
            last = trio.current_time()
            assert hub.stats().direct_deliveries == 4
            assert ":\n" not in _sse_body(got)
            # Then silence: the heartbeat comes once heartbeat seconds passed since the last event.
            with trio.fail_after(WAIT):
                while ":\n" not in _sse_body(got):
                    got += await stream.receive_some(65536)
            assert trio.current_time() - last >= 0.4 - 0.15 - 0.02
            await stream.aclose()


# -- WebSocket subscribers -------------------------------------------------------------------


async def test_a_waiting_websocket_subscriber_is_written_without_waking_its_task() -> None:
    import json

    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Request, TextMessage

    from mhd2.fanout import action_websocket_subscribe

    tasks: list[Any] = []
    async with Hub() as hub:
        topic = hub.topic("news")

        def callback(request: mhd2.Request) -> mhd2.Action:
            tasks.append(trio.lowlevel.current_task())  # the upgrade handler runs here too
            return action_websocket_subscribe(request, topic)

        async with mhd2.Daemon(callback, port=0) as daemon:
            stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
            client = WSConnection(ConnectionType.CLIENT)
            await stream.send_all(client.send(Request(host="x", target="/ws")))
            texts: list[str] = []

            async def read_until(count: int, accepted: bool = True) -> None:
                with trio.fail_after(WAIT):
                    while len(texts) < count or not accepted:
                        client.receive_data(await stream.receive_some(65536))
                        for event in client.events():
                            if isinstance(event, AcceptConnection):
                                accepted = True
                            elif isinstance(event, TextMessage):
                                assert event.message_finished  # small frames
                                texts.append(event.data)

            await read_until(0, accepted=False)
            await until(lambda: hub.stats().subscribers["websocket"] == 1)
            await trio.testing.wait_all_tasks_blocked()
            counter = Scheduled(tasks)
            trio.lowlevel.add_instrument(counter)
            try:
                ids = []
                for n in range(3):
                    ids.append(await topic.publish(f"message {n}"))
                    await read_until(n + 1)
                    await trio.testing.wait_all_tasks_blocked()
            finally:
                trio.lowlevel.remove_instrument(counter)
            assert [json.loads(t)["id"] for t in texts] == ids
            assert counter.count == 0
            assert hub.stats().direct_deliveries == hub.stats().deliveries == 3
            await stream.aclose()


async def test_a_stalled_websocket_goes_direct_then_owed_then_1008() -> None:
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

    from mhd2.fanout import action_websocket_subscribe

    async with Hub(max_pending_bytes=64 * 1024) as hub:
        topic = hub.topic("news", history=4000)
        async with mhd2.Daemon(lambda r: action_websocket_subscribe(r, topic),
                               port=0) as daemon:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", daemon.port))
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
            client = WSConnection(ConnectionType.CLIENT)
            await stream.send_all(client.send(Request(host="x", target="/ws")))
            with trio.fail_after(WAIT):
                accepted = False
                while not accepted:
                    client.receive_data(await stream.receive_some(4096))
                    accepted = any(isinstance(e, AcceptConnection) for e in client.events())
            await until(lambda: hub.stats().subscribers["websocket"] == 1)
            await trio.testing.wait_all_tasks_blocked()
            ids: list[str] = []
            with trio.fail_after(WAIT * 3):
                while hub.stats().drops == 0:
                    assert len(ids) < 4000, "never dropped"
                    ids.append(await topic.publish(b"%06d" % len(ids) + b"w" * 2000))
                    await trio.testing.wait_all_tasks_blocked()
            stats = hub.stats()
            assert 0 < stats.direct_deliveries <= stats.deliveries < len(ids)
            # The client reads: whole frames in order, then the close frame 1008.
            import json

            seen: list[str] = []
            code = None
            part = ""
            with trio.fail_after(WAIT):
                while code is None:
                    data = await stream.receive_some(65536)
                    if not data:
                        break
                    client.receive_data(data)
                    for event in client.events():
                        if isinstance(event, TextMessage):
                            part += event.data
                            if event.message_finished:
                                seen.append(json.loads(part)["id"])
                                part = ""
                        elif isinstance(event, CloseConnection):
                            code = event.code
            assert code == 1008
            assert seen == ids[:len(seen)] and len(seen) == stats.deliveries
            await stream.aclose()


# -- large fan-outs go in batches ------------------------------------------------------------


async def test_a_large_fan_out_goes_in_batches_and_keeps_every_order(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import mhd2.fanout.topic as topic_module

    monkeypatch.setattr(topic_module, "FANOUT_BATCH", 2)
    async with serving() as s:
        streams = []
        gots = []
        for _ in range(7):
            stream, got = await _open_stream(s.daemon.port)
            streams.append(stream)
            gots.append(got)
        await until(lambda: s.hub.stats().subscribers["sse"] == 7)
        await trio.testing.wait_all_tasks_blocked()
        ids = [await s.topic.publish(b"first")]
        # Publishing visited one batch; the hub's fan-out task goes on with a
        # batch per turn of the scheduler, so other tasks (this one) run meanwhile.
        assert s.hub.stats().direct_deliveries < 7
        # More messages while that walk is under way: every subscriber gets
        # all of them, in order (those already visited at the next walk).
        ids.append(await s.topic.publish(b"second"))
        ids.append(await s.topic.publish(b"third"))
        for index, stream in enumerate(streams):
            got = await _read_event(stream, gots[index], 1 + len(ids))
            events = [e for e in events_of(_sse_body(got)) if "id" in e]
            assert [e["id"] for e in events] == ids
            await stream.aclose()
        stats = s.hub.stats()
        assert stats.deliveries == stats.direct_deliveries == 21


async def test_an_http10_event_stream_is_written_directly_without_chunk_framing() -> None:
    async with serving() as s:
        stream = await trio.open_tcp_stream("127.0.0.1", s.daemon.port)
        await stream.send_all(b"GET /events HTTP/1.0\r\nHost: x\r\n\r\n")
        got = b""
        with trio.fail_after(WAIT):
            while b"retry: " not in got or not got.endswith(b"\n\n"):
                got += await stream.receive_some(65536)
        await until(lambda: s.hub.stats().subscribers["sse"] == 1)
        await trio.testing.wait_all_tasks_blocked()
        message_id = await s.topic.publish("plain")
        with trio.fail_after(WAIT):
            while not got.endswith(b"data: plain\n\n"):
                got += await stream.receive_some(65536)
        head, _, body = got.partition(b"\r\n\r\n")
        assert b"Transfer-Encoding" not in head  # close-delimited: the events as they are
        assert body.endswith(f"id: {message_id}\ndata: plain\n\n".encode())
        assert s.hub.stats().direct_deliveries == 1
        await stream.aclose()
