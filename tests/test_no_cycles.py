"""A served request leaves no reference cycle behind: its objects are freed by
reference counting when the request ends, not by the garbage collector.

(Issue #22: ``Exchange.request`` <-> ``Request._x`` and ``Slot.value`` ->
action -> request made every request cyclic garbage, and the collector's
passes cost time and pauses.)
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import trio
from conftest import WAIT, read_response, read_until_close, running, text_response

import mhd2
from mhd2.actions import Action, Slot, UploadAction
from mhd2.exchange import Exchange
from mhd2.http1.connection import HTTP1Connection
from mhd2.plain_stream import PlainSocketStream
from mhd2.transport import Transport

#: The per-request (and per-connection) objects that must not be found in cyclic garbage.
PER_REQUEST = (Exchange, mhd2.Request, Action, UploadAction, Slot, mhd2.Response,
               HTTP1Connection, Transport, PlainSocketStream)

REUSED = mhd2.Response.from_buffer_static(200, b"hello")
REUSED.set_options(reusable=True)


@contextmanager
def cyclic_garbage() -> Iterator[list[Any]]:
    """Collect, then keep what the collector finds unreachable during the block."""
    found: list[Any] = []
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield found
        gc.collect()
        found.extend(o for o in gc.garbage if isinstance(o, PER_REQUEST))
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


async def serve(cb: Callable[[mhd2.Request], Any], requests: list[bytes]) -> list[bytes]:
    """Send *requests* one after the other on one keep-alive connection."""
    replies = []
    async with running(cb) as daemon:
        with trio.fail_after(WAIT):
            stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
            async with stream:
                buffer = bytearray()
                for req in requests:
                    await stream.send_all(req)
                    replies.append(await read_response(stream, buffer))
    return replies


GET = b"GET /x?a=1 HTTP/1.1\r\nHost: a\r\nCookie: c=1\r\n\r\n"


async def test_plain_requests_leave_no_cyclic_garbage() -> None:
    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/x" and request.args and request.cookies:  # (lazy values made)
            return mhd2.action_from_response(request, REUSED)
        return text_response(request)

    with cyclic_garbage() as found:
        replies = await serve(cb, [GET] * 20 + [GET.replace(b"/x", b"/y")] * 20)
    assert all(r.startswith(b"HTTP/1.1 200 ") for r in replies)
    assert found == []


async def test_async_suspended_and_upload_requests_leave_no_cyclic_garbage() -> None:
    async def cb(request: mhd2.Request) -> mhd2.Action:
        if request.method == "POST":
            return mhd2.action_process_upload_full(
                request, 1024, lambda req, data: mhd2.upload_action_from_response(
                    req, mhd2.Response.from_buffer_copy(200, data)))
        if request.app_context is None:
            request.app_context = "again"
            action = mhd2.action_suspend(request)
            mhd2.request_resume(request)  # (resumed at once: called again)
            return action
        return text_response(request)

    post = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
    with cyclic_garbage() as found:
        replies = await serve(cb, [GET, post] * 10)
    assert [r.rsplit(b"\r\n\r\n", 1)[1] for r in replies] == [b"ok", b"abc"] * 10
    assert found == []


async def test_connections_closed_after_one_request_leave_no_cyclic_garbage() -> None:
    close = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    with cyclic_garbage() as found:
        async with running(text_response) as daemon:
            for _ in range(10):
                with trio.fail_after(WAIT):
                    stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
                    async with stream:
                        await stream.send_all(close)
                        reply = await read_until_close(stream)
                assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"ok")
    assert found == []
