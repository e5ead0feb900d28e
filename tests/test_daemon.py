"""Daemon life cycle, options, binding, limits and graceful stop (real sockets)."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from conftest import (
    WAIT,
    exchange,
    open_stream,
    read_response,
    running,
    settled,
    status_of,
    text_response,
)

import mhd2


def assert_refused_503(reply: bytes) -> None:
    """Over the connection limits the daemon answers 503 with Retry-After, then closes."""
    assert reply.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"\r\nRetry-After: " in reply


def all_tasks() -> int:
    """How many tasks the current trio run has (walking the task tree)."""
    count = 0
    root = trio.lowlevel.current_root_task()
    assert root is not None
    stack = [root]
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


async def get(port: int, path: str = "/", host: str = "127.0.0.1") -> httpx.Response:
    with trio.fail_after(WAIT):
        async with httpx.AsyncClient() as client:
            return await client.get(f"http://{host}:{port}{path}")


async def test_async_with_serves_and_leaves_nothing_running() -> None:
    before = all_tasks()
    async with running(text_response) as daemon:
        assert daemon.port > 0
        assert (await get(daemon.port)).text == "ok"
        assert all_tasks() > before
    assert all_tasks() == before
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", daemon.port), timeout=1).close()


async def test_nursery_start_serve_and_stop() -> None:
    daemon = mhd2.Daemon(text_response, port=0)
    async with trio.open_nursery() as nursery:
        started = await nursery.start(daemon.serve)
        assert started is daemon
        assert (await get(daemon.port)).status_code == 200
        await daemon.stop(grace=1)
    assert daemon.connection_count == 0


async def test_daemon_runs_once() -> None:
    daemon = mhd2.Daemon(text_response, port=0)
    async with daemon:
        pass
    with pytest.raises(mhd2.UsageError, match="runs once"):
        async with daemon:
            pass


@pytest.mark.parametrize(
    "options",
    [
        {"port": -1}, {"port": 70000}, {"port": "80"}, {"timeout": 0}, {"timeout": -1},
        {"backlog": 0}, {"connection_limit": 0}, {"per_ip_limit": -5},
        {"max_header_size": 10}, {"strict_level": 7}, {"strict_level": True},
        {"family": "inet"}, {"accept_policy": 5}, {"notify_request_ended": "x"},
        {"tls": object()}, {"no_such_option": 1}, {"listen_socket": -3},
    ],
)
def test_bad_options_raise_usage_error(options: dict[str, Any]) -> None:
    with pytest.raises(mhd2.UsageError) as info:
        mhd2.Daemon(text_response, **options)
    assert info.value.code == mhd2.StatusCode.CONFIGURATION_WRONG_OPTION_VALUE
    assert "expected" in str(info.value) or "known options" in str(info.value)


def test_request_cb_must_be_callable() -> None:
    with pytest.raises(mhd2.UsageError):
        mhd2.Daemon("not callable")  # type: ignore[arg-type]


async def test_bind_failure_raises_daemon_start_error() -> None:
    async with running(text_response) as daemon:
        with pytest.raises(mhd2.DaemonStartError) as info:
            async with mhd2.Daemon(text_response, port=daemon.port):
                pass
        assert isinstance(info.value.__cause__, OSError)
        # The plain exception, also through nursery.start:
        other = mhd2.Daemon(text_response, port=daemon.port)
        async with trio.open_nursery() as nursery:
            with pytest.raises(mhd2.DaemonStartError):
                await nursery.start(other.serve)


async def test_ipv6_and_dual_stack() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        async with running(text_response, host="::1", family=mhd2.AddressFamily.INET6) as d6:
            assert (await get(d6.port, host="[::1]")).status_code == 200
        async with running(text_response, host=None, family=mhd2.AddressFamily.DUAL) as dual:
            assert (await get(dual.port, host="[::1]")).status_code == 200
            assert (await get(dual.port, host="127.0.0.1")).status_code == 200
    except mhd2.DaemonStartError as exc:  # pragma: no cover - host without ::1
        pytest.skip(f"IPv6 loopback unavailable: {exc}")


async def test_ipv4_family() -> None:
    async with running(text_response, family=mhd2.AddressFamily.INET4) as daemon:
        assert daemon.addresses[0][0] == "127.0.0.1"


async def test_listen_socket_and_reuse_port() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    async with running(text_response, listen_socket=sock.fileno()) as daemon:
        assert daemon.port == sock.getsockname()[1]
        assert (await get(daemon.port)).status_code == 200
    unbound = socket.socket()
    try:
        with pytest.raises(mhd2.UsageError, match="listening"):
            async with mhd2.Daemon(text_response, listen_socket=unbound):
                pass
    finally:
        unbound.close()
    with pytest.raises(mhd2.UsageError, match="excludes"):
        mhd2.Daemon(text_response, listen_socket=3, port=80)
    async with running(text_response, reuse_port=True) as first:
        async with running(text_response, port=first.port, reuse_port=True) as second:
            assert second.port == first.port
            assert (await get(first.port)).status_code == 200


async def test_connection_limit_refuses_extra_connections_and_keeps_accepting() -> None:
    async with running(text_response, connection_limit=2) as daemon:
        a = await trio.open_tcp_stream("127.0.0.1", daemon.port)
        b = await trio.open_tcp_stream("127.0.0.1", daemon.port)
        await settled()
        assert daemon.connection_count == 2
        assert_refused_503(await exchange(daemon.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
        await a.aclose()
        await settled()
        assert daemon.connection_count == 1
        reply = await exchange(daemon.port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert status_of(reply) == 200
        await b.aclose()


async def test_per_ip_limit() -> None:
    async with running(text_response, per_ip_limit=1) as daemon:
        held = await trio.open_tcp_stream("127.0.0.1", daemon.port)
        await settled()
        assert daemon.connection_count == 1
        assert_refused_503(await exchange(daemon.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
        await held.aclose()


async def test_accept_policy_sync_and_async() -> None:
    seen: list[tuple[str, int]] = []

    def deny(address: tuple[str, int]) -> bool:
        seen.append(address)
        return False

    async def allow(address: tuple[str, int]) -> bool:
        await trio.lowlevel.checkpoint()
        return True

    async with running(text_response, accept_policy=deny) as daemon:
        assert await exchange(daemon.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") == b""
        assert seen and seen[0][0] == "127.0.0.1"
    async with running(text_response, accept_policy=allow) as daemon:
        assert (await get(daemon.port)).status_code == 200


async def test_notify_connection_started_and_closed() -> None:
    events: list[tuple[mhd2.ConnectionInfo, mhd2.ConnectionEvent]] = []
    async with running(text_response, notify_connection=lambda i, e: events.append((i, e))) as d:
        await exchange(d.port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert [e for _, e in events] == [mhd2.ConnectionEvent.STARTED, mhd2.ConnectionEvent.CLOSED]
    assert events[0][0].client_address[0] == "127.0.0.1"
    assert events[0][0].tls_version is None


async def test_graceful_stop_lets_in_flight_response_finish() -> None:
    release = trio.Event()
    entered = trio.Event()

    async def slow(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/slow":
            entered.set()
            await release.wait()
        return text_response(request, b"finished")

    daemon = mhd2.Daemon(slow, port=0)
    result: list[bytes] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.serve)

        async def client() -> None:
            result.append(await exchange(daemon.port, b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n"))

        # A kept-alive connection, served once, idle when the stop begins.
        idle = await trio.open_tcp_stream("127.0.0.1", daemon.port)
        await idle.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert status_of(await read_response(idle, bytearray())) == 200
        nursery.start_soon(client)
        with trio.fail_after(WAIT):
            await entered.wait()
        nursery.start_soon(daemon.stop, 5.0)
        with trio.fail_after(WAIT):
            # the idle keep-alive connection is closed at once
            assert await idle.receive_some(100) == b""
        release.set()
    assert result[0].endswith(b"finished")
    assert b"Connection: close" in result[0]


async def test_graceful_stop_cancels_after_grace(
        ended: list[Any], autojump_clock: trio.testing.MockClock) -> None:
    async def never(request: mhd2.Request) -> mhd2.Action:
        await trio.sleep_forever()
        raise AssertionError

    daemon = mhd2.Daemon(never, port=0, notify_request_ended=lambda r, c: ended.append(c))
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.serve)
        stream = await open_stream(daemon)
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        await trio.testing.wait_all_tasks_blocked()  # in memory: the callback waits
        assert daemon.connection_count == 1
        start = trio.current_time()
        with trio.fail_after(WAIT):
            await daemon.stop(grace=0.3)
        took = trio.current_time() - start  # virtual time
        assert 0.3 <= took < 0.35, took  # the grace, then the cancel
    assert ended == [mhd2.RequestEndedCode.DAEMON_SHUTDOWN]
    await stream.aclose()


async def test_quiesce_stops_accepting_but_serves_open_connections() -> None:
    async with running(text_response) as daemon:
        stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
        daemon.quiesce()
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", daemon.port)
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert status_of(await read_response(stream, bytearray())) == 200
        await stream.aclose()
