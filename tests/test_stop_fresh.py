"""A graceful stop and connections that have not sent their first request yet.

A connection accepted a moment before the stop may still have its first
request on the way: the stop gives it that request (answered with
``Connection: close``), for up to ``STOP_FIRST_REQUEST_SECONDS`` for its first
byte and then up to the grace. A keep-alive connection that was already served
and sends nothing is closed at once, as before. ``Daemon.drained()`` is the
awaitable "no connection is open any more" that a worker's drain waits on.
"""

from __future__ import annotations

import trio
import trio.testing
from conftest import (
    WAIT,
    open_stream,
    read_response,
    read_until_close,
    running,
    status_of,
    text_response,
)

import mhd2
from mhd2.http1.stop import STOP_FIRST_REQUEST_SECONDS
from mhd2.supervisor import drain_and_stop

REQUEST = b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n"


def hello(request: mhd2.Request) -> mhd2.Action:
    return text_response(request, b"first " + request.path.encode())


async def _started_connection(port: int, started: trio.Event) -> trio.SocketStream:
    """A raw TCP connection that the daemon has accepted (its task is running)."""
    with trio.fail_after(WAIT):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await started.wait()
    return stream


async def test_fresh_connection_gets_its_first_request_answered_during_stop() -> None:
    """Connect, the stop begins, then the request: a full response with Connection: close."""
    started = trio.Event()
    stopped = trio.Event()

    def connection_event(info: mhd2.ConnectionInfo, event: mhd2.ConnectionEvent) -> None:
        if event is mhd2.ConnectionEvent.STARTED:
            started.set()

    async def stop(daemon: mhd2.Daemon) -> None:
        await daemon.stop(grace=WAIT)
        stopped.set()

    async with running(hello, notify_connection=connection_event) as daemon:
        stream = await _started_connection(daemon.port, started)
        async with stream, trio.open_nursery() as nursery:
            nursery.start_soon(stop, daemon)
            await trio.testing.wait_all_tasks_blocked()  # the stop has begun and waits
            assert not stopped.is_set()
            await stream.send_all(REQUEST)
            with trio.fail_after(WAIT):
                response = await read_response(stream, bytearray())
                rest = await read_until_close(stream)
            assert status_of(response) == 200
            assert response.endswith(b"first /first")
            assert b"connection: close" in response.lower()
            assert rest == b""
            with trio.fail_after(WAIT):
                await stopped.wait()


async def test_partial_first_head_at_stop_is_completed_and_answered() -> None:
    started = trio.Event()

    def connection_event(info: mhd2.ConnectionInfo, event: mhd2.ConnectionEvent) -> None:
        if event is mhd2.ConnectionEvent.STARTED:
            started.set()

    async with running(hello, notify_connection=connection_event) as daemon:
        stream = await _started_connection(daemon.port, started)
        async with stream, trio.open_nursery() as nursery:
            await stream.send_all(REQUEST[:10])
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(daemon.stop, WAIT)
            await trio.testing.wait_all_tasks_blocked()
            await stream.send_all(REQUEST[10:])
            response = await read_response(stream, bytearray())
            assert status_of(response) == 200
            assert b"connection: close" in response.lower()


async def test_silent_fresh_connection_delays_the_stop_only_briefly(
        autojump_clock: trio.testing.MockClock) -> None:
    """A connection that never sends is closed STOP_FIRST_REQUEST_SECONDS into the stop,
    long before the grace (in memory, virtual time)."""
    async with running(hello) as daemon:
        stream = await open_stream(daemon)
        await trio.testing.wait_all_tasks_blocked()
        assert daemon.connection_count == 1
        start = trio.current_time()
        with trio.fail_after(WAIT):
            await daemon.stop(grace=60.0)
        took = trio.current_time() - start
        assert STOP_FIRST_REQUEST_SECONDS <= took < STOP_FIRST_REQUEST_SECONDS + 0.5, took
        assert daemon.connection_count == 0
        assert await read_until_close(stream) == b""


async def test_silent_fresh_connection_is_bounded_by_a_shorter_grace(
        autojump_clock: trio.testing.MockClock) -> None:
    async with running(hello) as daemon:
        stream = await open_stream(daemon)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        await daemon.stop(grace=0.25)
        assert 0.25 <= trio.current_time() - start < 0.3
        assert await read_until_close(stream) == b""


async def test_served_idle_keepalive_connection_is_closed_at_once(
        autojump_clock: trio.testing.MockClock) -> None:
    async with running(hello) as daemon:
        stream = await open_stream(daemon)
        await stream.send_all(REQUEST)
        assert status_of(await read_response(stream, bytearray())) == 200
        start = trio.current_time()
        await daemon.stop(grace=60.0)
        assert trio.current_time() - start < 0.1
        assert await read_until_close(stream) == b""


async def test_drained_returns_when_the_last_connection_ends() -> None:
    async with running(hello) as daemon:
        await daemon.drained()  # none open: at once
        stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
        daemon.quiesce()
        done = trio.Event()

        async def wait() -> None:
            await daemon.drained()
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            assert not done.is_set()
            await stream.send_all(REQUEST)  # answered with Connection: close
            response = await read_response(stream, bytearray())
            assert b"connection: close" in response.lower()
            with trio.fail_after(WAIT):
                await done.wait()
            assert daemon.connection_count == 0
        await stream.aclose()


async def test_worker_drain_serves_a_fresh_connection_and_ends_with_it(
        autojump_clock: trio.testing.MockClock) -> None:
    """drain_and_stop returns as soon as the last connection has ended, not after a poll."""
    async with running(hello) as daemon:
        stream = await open_stream(daemon)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain_and_stop, daemon, 30.0)
            await trio.testing.wait_all_tasks_blocked()
            await stream.send_all(REQUEST)
            response = await read_response(stream, bytearray())
            assert status_of(response) == 200
            assert b"connection: close" in response.lower()
        assert trio.current_time() - start < 0.1


async def test_connection_still_in_set_up_is_waited_for_and_answered() -> None:
    """Accepted, but its PROXY header not in yet when the stop begins: the stop waits
    for it (it counts), and its first request is answered."""
    seen: list[tuple[str, int]] = []

    def policy(address: tuple[str, int]) -> bool:
        seen.append(address)
        return True

    async with running(hello, proxy_protocol=True, accept_policy=policy) as daemon:
        with trio.fail_after(WAIT):
            stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
        async with stream, trio.open_nursery() as nursery:
            await trio.testing.wait_all_tasks_blocked()
            assert daemon.connection_count == 1
            nursery.start_soon(daemon.stop, WAIT)
            await trio.testing.wait_all_tasks_blocked()
            await stream.send_all(b"PROXY TCP4 203.0.113.9 10.0.0.1 4711 80\r\n" + REQUEST)
            response = await read_response(stream, bytearray())
            assert status_of(response) == 200
            assert b"connection: close" in response.lower()
        assert seen == [("203.0.113.9", 4711)]
