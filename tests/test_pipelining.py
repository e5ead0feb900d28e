"""Pipelined requests: their small responses leave in one write, and a held
response never waits for a later request that waits (suspended, async, upload).

The write count is read off the in-memory stream the daemon serves
(``serve_stream``): each ``send_all`` of the daemon is one call of the hook.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import trio
import trio.testing
from conftest import MEMORY_CLIENT, WAIT, read_response, running, text_response

import mhd2


def echo_path(request: mhd2.Request) -> mhd2.Action:
    return text_response(request, request.path.encode())


def pipelined(*paths: str, last_close: bool = False) -> bytes:
    reqs = [b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % p.encode() for p in paths]
    if last_close:
        reqs[-1] = reqs[-1].replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    return b"".join(reqs)


async def counted_stream(daemon: mhd2.Daemon) -> tuple[trio.abc.Stream, list[int]]:
    """A client stream to *daemon*; the list collects the size of each daemon write."""
    client, server = trio.testing.memory_stream_pair()
    writes: list[int] = []
    send_stream = server.send_stream
    hook = send_stream.send_all_hook

    async def counting_hook() -> None:
        writes.append(len(send_stream._outgoing._data))
        if hook is not None:
            await hook()

    send_stream.send_all_hook = counting_hook
    nursery = daemon._nursery
    assert nursery is not None
    nursery.start_soon(partial(daemon.serve_stream, server, client_address=MEMORY_CLIENT))
    return client, writes


async def test_ten_pipelined_responses_leave_in_one_write() -> None:
    async with running(echo_path) as daemon:
        stream, writes = await counted_stream(daemon)
        paths = [f"/{i}" for i in range(10)]
        await stream.send_all(pipelined(*paths))
        buffer = bytearray()
        replies = [await read_response(stream, buffer) for _ in paths]
        assert [r.rsplit(b"\r\n\r\n", 1)[1] for r in replies] == [p.encode() for p in paths]
        assert len(writes) == 1, writes
        await stream.aclose()


async def test_the_last_pipelined_request_closing_still_gets_every_response() -> None:
    async with running(echo_path) as daemon:
        stream, writes = await counted_stream(daemon)
        await stream.send_all(pipelined("/a", "/b", "/c", last_close=True))
        with trio.fail_after(WAIT):
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
        assert [p.rsplit(b"\r\n\r\n", 1)[-1] for p in data.split(b"HTTP/1.1 ")[1:]] == [
            b"/a", b"/b", b"/c"]
        assert len(writes) == 1


async def test_a_held_response_is_sent_before_a_later_request_suspends() -> None:
    parked: list[mhd2.Request] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/park":
            parked.append(request)
            return mhd2.action_suspend(request)
        return echo_path(request)

    async with running(cb) as daemon:
        stream, _ = await counted_stream(daemon)
        await stream.send_all(pipelined("/first", "/park"))
        buffer = bytearray()
        first = await read_response(stream, buffer)  # while /park is parked
        assert first.endswith(b"/first") and len(parked) == 1
        mhd2.request_resume(parked[0])
        await stream.aclose()


async def test_a_held_response_is_sent_before_an_async_callback_waits() -> None:
    release = trio.Event()

    async def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/slow":
            await release.wait()
        return echo_path(request)

    async with running(cb) as daemon:
        stream, _ = await counted_stream(daemon)
        await stream.send_all(pipelined("/first", "/slow"))
        buffer = bytearray()
        assert (await read_response(stream, buffer)).endswith(b"/first")
        release.set()
        assert (await read_response(stream, buffer)).endswith(b"/slow")
        await stream.aclose()


async def test_a_held_response_is_sent_before_a_later_upload_is_read() -> None:
    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.method == "POST":
            return mhd2.action_process_upload_full(
                request, 1 << 20,
                lambda req, data: mhd2.upload_action_from_response(
                    req, mhd2.Response.from_buffer_copy(200, b"got %d" % len(data))))
        return echo_path(request)

    async with running(cb) as daemon:
        stream, _ = await counted_stream(daemon)
        await stream.send_all(pipelined("/first")
                              + b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab")
        buffer = bytearray()
        assert (await read_response(stream, buffer)).endswith(b"/first")  # body incomplete
        await stream.send_all(b"cde")
        assert (await read_response(stream, buffer)).endswith(b"got 5")
        await stream.aclose()


async def test_pipelined_over_tcp_answers_everything_in_order() -> None:
    async with running(echo_path) as daemon:
        paths = [f"/{i}" for i in range(200)]
        with trio.fail_after(WAIT):
            stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
            await stream.send_all(pipelined(*paths, last_close=True))
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
        bodies = [p.rsplit(b"\r\n\r\n", 1)[-1] for p in data.split(b"HTTP/1.1 ")[1:]]
        assert bodies == [p.encode() for p in paths]


async def test_empty_lines_between_pipelined_requests_are_ignored() -> None:
    # RFC 9112 §2.2: "a server that is expecting to receive and parse a
    # request-line SHOULD ignore at least one empty line (CRLF) received
    # prior to the request-line" -- here already buffered behind a request.
    async with running(echo_path) as daemon:
        with trio.fail_after(WAIT):
            stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
            await stream.send_all(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n\r\n\r\n"
                                  b"POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok\r\n"
                                  b"GET /c HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
        assert [p.split(b"\r\n", 1)[0] for p in data.split(b"HTTP/1.1 ")[1:]] == [b"200 OK"] * 3
        assert [p.rsplit(b"\r\n\r\n", 1)[-1] for p in data.split(b"HTTP/1.1 ")[1:]] == [
            b"/a", b"/b", b"/c"]


# -- a held response leaves before anything of the next request that can wait ----------------
#
# docs/design.rst: "Held bytes go out before anything that could wait ... so an
# answered request never waits for a later one".  Each case below: two
# pipelined requests in one write over TCP; the second one's application code
# waits on an event the test sets only once the first response has arrived.


async def first_answered_before_release(cb: Any, second: bytes, release: trio.Event,
                                        expect_second: bytes) -> None:
    """Send ``GET /first`` and *second* in one write; the first response must
    arrive while *release* is not set; after setting it, the second answers
    *expect_second* (a suffix of its bytes)."""
    async with running(cb) as daemon:
        stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
        async with stream:
            await stream.send_all(pipelined("/first") + second)
            buffer = bytearray()
            with trio.fail_after(WAIT):
                first = await read_response(stream, buffer)
            assert first.endswith(b"/first")
            assert not release.is_set()
            release.set()
            with trio.fail_after(WAIT):
                data = bytes(buffer)
                while not data.endswith(expect_second):
                    chunk = await stream.receive_some(65536)
                    assert chunk, data
                    data += chunk


async def test_a_held_response_is_sent_before_an_async_content_creator_waits() -> None:
    release = trio.Event()

    async def creator(ctx: mhd2.DCCContext, pos: int, buf: memoryview) -> mhd2.DCCAction:
        await release.wait()
        if pos:
            return mhd2.dcc_action_finish(ctx)
        buf[:4] = b"made"
        return mhd2.dcc_action_continue(ctx, 4)

    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/made":
            return mhd2.action_from_response(
                request, mhd2.Response.from_callback(200, None, creator))
        return echo_path(request)

    await first_answered_before_release(cb, pipelined("/made"), release, b"made\r\n0\r\n\r\n")


async def test_a_held_response_is_sent_before_a_sized_content_creator_waits() -> None:
    release = trio.Event()

    async def creator(ctx: mhd2.DCCContext, pos: int, buf: memoryview) -> mhd2.DCCAction:
        await release.wait()
        buf[:4] = b"made"
        return mhd2.dcc_action_continue(ctx, 4)

    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/made":
            return mhd2.action_from_response(
                request, mhd2.Response.from_callback(200, 4, creator))
        return echo_path(request)

    await first_answered_before_release(cb, pipelined("/made"), release, b"\r\n\r\nmade")


def upload_request(body: bytes) -> bytes:
    """A whole POST with *body*, as one pipelined request."""
    return b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


async def test_a_held_response_is_sent_before_an_async_upload_callback_waits() -> None:
    # The whole body is already received with the head: nothing is read from
    # the socket before the upload callback runs.
    release = trio.Event()

    async def got(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        await release.wait()
        return mhd2.upload_action_from_response(
            request, mhd2.Response.from_buffer_copy(200, b"got %d" % len(data)))

    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.method == "POST":
            return mhd2.action_process_upload_full(request, 1 << 20, got)
        return echo_path(request)

    await first_answered_before_release(cb, upload_request(b"abcde"), release, b"got 5")


async def test_a_held_response_is_sent_before_an_incremental_upload_callback_waits() -> None:
    release = trio.Event()
    received = bytearray()

    async def piece(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        if data:
            await release.wait()
            received.extend(data)
            return mhd2.upload_action_continue(request)
        return mhd2.upload_action_from_response(
            request, mhd2.Response.from_buffer_copy(200, b"inc %d" % len(received)))

    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.method == "POST":
            return mhd2.action_process_upload_inc(request, piece)
        return echo_path(request)

    await first_answered_before_release(cb, upload_request(b"abcde"), release, b"inc 5")


async def test_a_held_response_is_sent_before_a_callback_object_returning_an_awaitable_waits(
) -> None:
    # Not an ``async def`` function: an object whose __call__ is a coroutine
    # function; the daemon learns that it waits only from what it returns.
    release = trio.Event()

    class App:
        async def __call__(self, request: mhd2.Request) -> mhd2.Action:
            if request.path == "/slow":
                await release.wait()
            return echo_path(request)

    await first_answered_before_release(App(), pipelined("/slow"), release, b"/slow")
