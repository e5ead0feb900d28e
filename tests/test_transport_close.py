"""Closing a connection's socket: waiters are woken, and nobody waiting costs nothing.

``trio.lowlevel.notify_closing`` wakes the tasks that wait on a descriptor
before it is closed; with none waiting it only costs a failing
``epoll_ctl(EPOLL_CTL_DEL)`` and a caught exception, so a plain socket calls it
only when a task waits on it (``PlainSocketStream.waiting``).
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
import trio
import trio.testing
from conftest import WAIT, read_until_close, running, text_response

import mhd2
from mhd2 import plain_stream


@pytest.fixture
def notify_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The local ports of the sockets ``notify_closing`` is called for."""
    calls: list[int] = []
    real = trio.lowlevel.notify_closing

    def counting(obj: Any) -> None:
        if isinstance(obj, socket.socket):
            try:
                calls.append(obj.getsockname()[1])
            except OSError:
                pass
        real(obj)

    monkeypatch.setattr(trio.lowlevel, "notify_closing", counting)
    return calls


async def test_connection_close_requests_skip_notify_closing(notify_calls: list[int]) -> None:
    async with running(text_response) as daemon:
        for _ in range(5):
            with trio.fail_after(WAIT):
                stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
                await stream.send_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                reply = await read_until_close(stream)
                await stream.aclose()
            assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"ok")
        # (read_until_close saw the daemon close: its side is closed already)
        assert daemon.port not in notify_calls


async def test_a_task_waiting_on_an_upgraded_socket_is_woken_by_its_close() -> None:
    # The handler's reader waits in upgraded_recv while another task closes
    # the handle: the reader must be woken (not hang), the client sees EOF.
    woken: list[str] = []
    reading = trio.Event()
    reader_done = trio.Event()

    async def handler(request: mhd2.Request, urh: mhd2.UpgradeHandle) -> None:
        async def reader() -> None:
            reading.set()
            try:
                await urh.upgraded_recv(100)
                woken.append("data")
            except Exception as exc:
                woken.append(type(exc).__name__)
            finally:
                reader_done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await reading.wait()
            await trio.testing.wait_all_tasks_blocked()
            await urh.upgraded_close()

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_upgrade(request, "echo/1", handler)

    async with running(cb) as daemon:
        with trio.fail_after(WAIT):
            stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
            await stream.send_all(b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                                  b"Upgrade: echo/1\r\n\r\n")
            reply = await read_until_close(stream)
            await stream.aclose()
            await reader_done.wait()
    assert reply.startswith(b"HTTP/1.1 101 ")
    assert woken and woken[0] != "data", woken


async def test_a_task_waiting_to_write_is_counted_while_it_waits() -> None:
    # A full socket buffer: send_all waits for writability and is counted,
    # then uncounted when woken by the close.
    a, b = socket.socketpair()
    stream = plain_stream.PlainSocketStream(a)
    errors: list[str] = []

    async def writer() -> None:
        try:
            await stream.send_all(b"x" * (8 << 20))
        except trio.ClosedResourceError:
            errors.append("closed")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        await trio.testing.wait_all_tasks_blocked()
        assert stream.waiting == 1
        with trio.fail_after(WAIT):
            stream.close()
    assert errors == ["closed"] and stream.waiting == 0
    b.close()
