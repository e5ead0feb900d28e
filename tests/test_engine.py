"""The HTTP/1.1 engine: keep-alive, pipelining, HTTP/1.0, HEAD, bodies left unread."""

from __future__ import annotations

from typing import Any

import trio
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


def echo_path(request: mhd2.Request) -> mhd2.Action:
    return text_response(request, request.path.encode())


async def test_keep_alive_serves_many_requests_on_one_connection() -> None:
    async with running(echo_path) as daemon:
        stream = await open_stream(daemon)
        buffer = bytearray()
        for i in range(5):
            await stream.send_all(b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % i)
            reply = await read_response(stream, buffer)
            assert reply.endswith(b"/%d" % i)
            assert b"Connection: close" not in reply
        await stream.aclose()


async def test_pipelined_requests_answered_in_order_one_at_a_time() -> None:
    in_app: list[str] = []
    release = trio.Event()

    async def cb(request: mhd2.Request) -> mhd2.Action:
        in_app.append(request.path)
        if request.path == "/slow":
            await release.wait()
        return text_response(request, request.path.encode())

    async with running(cb) as daemon:
        stream = await open_stream(daemon)
        await stream.send_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n"
                              b"GET /two HTTP/1.1\r\nHost: a\r\n\r\n"
                              b"GET /three HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        await settled()
        assert in_app == ["/slow"]  # the next request is not read while one is pending
        release.set()
        with trio.fail_after(WAIT):
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
        bodies = [part.rsplit(b"\r\n\r\n", 1)[-1] for part in data.split(b"HTTP/1.1 ")[1:]]
        assert bodies == [b"/slow", b"/two", b"/three"]
        assert in_app == ["/slow", "/two", "/three"]


async def test_http10_closes_unless_keep_alive_requested() -> None:
    async with running(echo_path) as daemon:
        reply = await exchange(daemon, b"GET /x HTTP/1.0\r\n\r\nGET /y HTTP/1.0\r\n\r\n")
        assert reply.count(b"HTTP/1.1 200") == 1 and reply.endswith(b"/x")
        assert b"Content-Length: 2" in reply and b"Connection: close" in reply
        stream = await open_stream(daemon)
        buffer = bytearray()
        await stream.send_all(b"GET /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        first = await read_response(stream, buffer)
        assert b"Connection: keep-alive" in first
        await stream.send_all(b"GET /k2 HTTP/1.0\r\n\r\n")
        assert (await read_response(stream, buffer)).endswith(b"/k2")
        await stream.aclose()


async def test_http10_unknown_size_is_close_delimited() -> None:
    def cb(request: mhd2.Request) -> mhd2.Action:
        def dyn(ctx: mhd2.DCCContext, pos: int, buf: memoryview) -> mhd2.DCCAction:
            if pos:
                return mhd2.dcc_action_finish(ctx)
            buf[:5] = b"hello"
            return mhd2.dcc_action_continue(ctx, 5)
        return mhd2.action_from_response(request, mhd2.Response.from_callback(200, None, dyn))

    async with running(cb) as daemon:
        reply = await exchange(daemon, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        head, body = reply.split(b"\r\n\r\n", 1)
        assert b"Content-Length" not in head and b"Transfer-Encoding" not in head
        assert body == b"hello"
        reply11 = await exchange(daemon, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert b"Transfer-Encoding: chunked" in reply11
        assert reply11.endswith(b"5\r\nhello\r\n0\r\n\r\n")


async def test_head_sends_same_headers_without_body() -> None:
    async with running(lambda r: text_response(r, b"0123456789")) as daemon:
        stream = await open_stream(daemon)
        await stream.send_all(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
        buffer = bytearray()
        with trio.fail_after(WAIT):
            while buffer.count(b"\r\n\r\n") < 2 or not buffer.endswith(b"0123456789"):
                buffer += await stream.receive_some(65536)
        head_reply, get_reply = bytes(buffer).split(b"\r\n\r\n", 1)
        assert b"Content-Length: 10" in head_reply
        assert get_reply.startswith(b"HTTP/1.1 200 OK") and get_reply.endswith(b"0123456789")
        await stream.aclose()


async def test_daemon_sets_date_and_framing_headers() -> None:
    async with running(text_response) as daemon:
        reply = await exchange(daemon, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert b"\r\nDate: " in reply and b"\r\nContent-Length: 2\r\n" in reply
        assert b"\r\nConnection: close\r\n" in reply
    async with running(text_response, suppress_date_header=True) as daemon:
        reply = await exchange(daemon, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert b"Date:" not in reply


async def test_options_asterisk_reaches_app() -> None:
    seen: list[tuple[str, str]] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        seen.append((request.method, request.path))
        response = mhd2.Response.from_empty(204)
        response.add_header("Allow", "GET, HEAD, OPTIONS")
        return mhd2.action_from_response(request, response)

    async with running(cb) as daemon:
        reply = await exchange(daemon, b"OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert status_of(reply) == 204 and b"Allow: GET, HEAD, OPTIONS" in reply
        assert b"Content-Length" not in reply
    assert seen == [("OPTIONS", "*")]


async def test_small_unread_body_is_discarded_and_connection_kept(ended: list[Any]) -> None:
    async with running(echo_path, notify_request_ended=lambda r, c: ended.append(c)) as daemon:
        stream = await open_stream(daemon)
        buffer = bytearray()
        smuggled = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
        await stream.send_all(b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n"
                              % len(smuggled))
        first = await read_response(stream, buffer)
        assert first.endswith(b"/p")
        await stream.send_all(smuggled)  # the body, arriving late: discarded
        await stream.send_all(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
        second = await read_response(stream, buffer)
        assert second.endswith(b"/next")
        await stream.aclose()
    assert ended[:2] == [mhd2.RequestEndedCode.COMPLETED_OK] * 2


async def test_large_or_chunked_unread_body_closes_the_connection() -> None:
    async with running(echo_path) as daemon:
        body = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n" * 20000
        reply = await exchange(
            daemon.port,
            b"POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        assert reply.count(b"HTTP/1.1") == 1 and reply.endswith(b"/big")
        assert b"Connection: close" in reply
        chunked = (b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"25\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n\r\n")
        reply = await exchange(daemon, chunked)
        assert reply.count(b"HTTP/1.1") == 1 and reply.endswith(b"/c")
        assert b"/smuggled" not in reply


async def test_expect_100_continue_not_sent_when_app_answers_directly() -> None:
    async with running(text_response) as daemon:
        reply = await exchange(
            daemon.port,
            b"PUT /u HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n")
        assert b"100 Continue" not in reply
        assert status_of(reply) == 200 and b"Connection: close" in reply


async def test_client_closing_after_request_still_gets_reply() -> None:
    async with running(text_response) as daemon:
        reply = await exchange(daemon, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", half_close=True)
        assert status_of(reply) == 200
