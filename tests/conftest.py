"""Shared helpers for mhd2's tests: real daemons on 127.0.0.1, raw-socket clients."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

import mhd2
from mhd2._http1.backend import resolve_parser

#: The HTTP/1 parser ``parser="auto"`` picks here (what nearly every test runs on).
PARSER = resolve_parser("auto")


def pytest_report_header() -> str:
    return f"mhd2 HTTP/1 parser backend: {PARSER}"


def pytest_configure(config: pytest.Config) -> None:
    # nox's tests(parser=...) sessions say which backend they installed for:
    # running the suite on the other one by mistake must fail, not pass.
    expected = os.environ.get("MHD2_EXPECT_PARSER")
    if expected and expected != PARSER:
        raise pytest.UsageError(f"MHD2_EXPECT_PARSER={expected} but parser='auto' is {PARSER} "
                                "here (is httptools installed as it should be?)")

#: Upper bound for any single network wait in a test.
WAIT = 10.0


async def settled(timeout: float = WAIT) -> None:
    """Wait (bounded) until every task is blocked: an in-process daemon has then
    done all it can with what its clients sent.

    Loopback TCP and memory streams are ready as soon as the peer's call returns,
    and trio handles ready I/O before it declares every task blocked, so a check
    made after this sees the daemon's settled state -- no polling, no sleep.
    (Not for changes made by threads or other processes.)
    """
    with trio.fail_after(timeout):
        await trio.testing.wait_all_tasks_blocked()


@asynccontextmanager
async def running(cb: Callable[[mhd2.Request], Any], **options: Any) -> AsyncIterator[mhd2.Daemon]:
    """Run a daemon on 127.0.0.1 with a free port for the duration of the block."""
    if "listen_socket" not in options:
        options.setdefault("port", 0)
    async with mhd2.Daemon(cb, **options) as daemon:
        yield daemon


def text_response(request: mhd2.Request, body: bytes = b"ok", status: int = 200) -> mhd2.Action:
    """A request callback answering *body* as text/plain."""
    response = mhd2.Response.from_buffer_copy(status, body)
    response.add_header("Content-Type", "text/plain")
    return mhd2.action_from_response(request, response)


async def read_until_close(stream: trio.abc.ReceiveStream) -> bytes:
    """Everything *stream* yields until the peer closes (a reset counts as a close)."""
    chunks = []
    while True:
        try:
            chunk = await stream.receive_some(65536)
        except trio.BrokenResourceError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


#: The client address of in-memory connections (see :func:`open_stream`).
MEMORY_CLIENT = ("127.0.0.1", 50000)


async def open_stream(target: int | mhd2.Daemon) -> trio.abc.HalfCloseableStream:
    """A client connection to a daemon: TCP to a port, or in memory to a Daemon.

    With a :class:`mhd2.Daemon`, the server end is handed to
    ``daemon.serve_stream`` (in the daemon's nursery), so the engine is tested
    without sockets; with a port, a real TCP connection is opened.
    """
    if isinstance(target, int):
        return await trio.open_tcp_stream("127.0.0.1", target)
    client, server = trio.testing.memory_stream_pair()
    nursery = target._nursery
    assert nursery is not None, "the daemon is not running"
    nursery.start_soon(partial(target.serve_stream, server, client_address=MEMORY_CLIENT))
    return client  # type: ignore[return-value, unused-ignore]


async def exchange(target: int | mhd2.Daemon, data: bytes, *, half_close: bool = False) -> bytes:
    """Send raw *data*, then read until the server closes (bounded by WAIT).

    *target* is a port (TCP) or a running daemon (in memory, see :func:`open_stream`).
    """
    with trio.fail_after(WAIT):
        stream = await open_stream(target)
        async with stream:
            await stream.send_all(data)
            if half_close:
                await stream.send_eof()
            return await read_until_close(stream)


async def read_response(stream: trio.abc.ReceiveStream, buffer: bytearray) -> bytes:
    """Read one complete response (Content-Length or no body) from *stream*.

    *buffer* carries bytes read past the response between calls.
    """
    with trio.fail_after(WAIT):
        while b"\r\n\r\n" not in buffer:
            chunk = await stream.receive_some(65536)
            if not chunk:
                raise EOFError(bytes(buffer))
            buffer += chunk
        head_end = buffer.index(b"\r\n\r\n") + 4
        head = bytes(buffer[:head_end]).lower()
        length = 0
        for line in head.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        while len(buffer) < head_end + length:
            chunk = await stream.receive_some(65536)
            if not chunk:
                raise EOFError(bytes(buffer))
            buffer += chunk
        response = bytes(buffer[: head_end + length])
        del buffer[: head_end + length]
        return response


def status_of(response: bytes) -> int:
    """The status code of a raw response."""
    return int(response.split(b" ", 2)[1])


@pytest.fixture
def ended() -> list[tuple[mhd2.Request, mhd2.RequestEndedCode]]:
    """A list that a ``notify_request_ended`` callback can append to."""
    return []
