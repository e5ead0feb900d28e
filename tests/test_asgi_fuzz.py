"""Property-based: whatever an ASGI app sends, in whatever order, no request hangs.

An app runs a random script of ``send`` / ``receive`` calls (valid messages,
out-of-order ones, refused headers, unknown types), swallowing the errors
or not, then returns or raises.  One daemon in a background thread serves
all examples (as ``test_fuzz.py`` does).  Properties, per example:

* the client gets a complete answer or a closed connection within a bound;
* an answer starts with an HTTP/1.1 status line;
* a good request on a fresh connection right after is served;
* nothing escapes into the daemon (no ``internal error`` on ``mhd2``).
"""

from __future__ import annotations

import re
from typing import Any

import trio
from _harness import BOUND, Harness, daemon_thread
from conftest import read_until_close
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mhd2
import mhd2.asgi

_STATUS_LINE = re.compile(rb"HTTP/1\.1 \d{3} [^\r\n]*\r\n")
GOOD = b"GET /good HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

MESSAGES: list[dict[str, Any]] = [
    {"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1")]},
    {"type": "http.response.start", "status": 201, "trailers": True, "headers": []},
    {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"3")]},
    {"type": "http.response.start", "status": 200, "headers": [(b"x-bad", b"a\r\nb")]},
    {"type": "http.response.start", "status": 42, "headers": []},
    {"type": "http.response.body", "body": b"abc"},
    {"type": "http.response.body", "body": b"abc", "more_body": True},
    {"type": "http.response.body", "body": b"", "more_body": True},
    {"type": "http.response.body", "body": b""},
    {"type": "http.response.trailers", "headers": [(b"x-t", b"1")]},
    {"type": "http.response.trailers", "headers": [], "more_trailers": True},
    {"type": "http.response.early_hint", "links": []},
    {"type": "http.response.pathsend", "path": "/nonexistent/file"},
    {"type": "websocket.accept"},
    {"type": "no.such.message"},
    {"type": "receive"},  # not a message: the app calls receive() here
]

REQUESTS = [
    b"GET /app HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"HEAD /app HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"POST /app HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    b"POST /app HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    b"3\r\nabc\r\n0\r\n\r\n",
    b"GET /app HTTP/1.0\r\n\r\n",
]

#: The script of the example being run (examples run one at a time).
SCRIPT: list[Any] = [None]


async def scripted_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    steps, swallow, raise_at_end = SCRIPT[0]
    for index in steps:
        message = MESSAGES[index]
        try:
            if message["type"] == "receive":
                with trio.move_on_after(0.05):  # the body, or the end of the request
                    await receive()
            else:
                await send(dict(message))
        except Exception:
            if not swallow:
                raise
    if raise_at_end:
        raise ValueError("the script says so")


def request_cb(request: mhd2.Request) -> mhd2.Action:
    if request.path == "/good":
        return mhd2.action_from_response(request, mhd2.Response.from_buffer_static(200, b"good"))
    return mhd2.asgi.action_asgi(request, scripted_app)


async def one_example(port: int, data: bytes) -> tuple[bytes, bytes]:
    async def exchange(raw: bytes) -> bytes:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(raw)
            return await read_until_close(stream)

    with trio.fail_after(BOUND):
        answer = await exchange(data)
    with trio.fail_after(BOUND):
        good = await exchange(GOOD)
    return answer, good


def check(harness: Harness, data: bytes) -> None:
    harness.check_alive()
    answer, good = trio.run(one_example, harness.port, data)
    if answer:
        assert _STATUS_LINE.match(answer), answer[:300]
    assert good.startswith(b"HTTP/1.1 200 ") and good.endswith(b"good"), good[:300]
    errors = harness.collector.internal_errors()
    assert not errors, errors


FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def test_no_script_hangs_a_request() -> None:
    with daemon_thread(request_cb, name="mhd2-asgi-fuzz") as harness:

        @FUZZ
        @given(steps=st.lists(st.integers(0, len(MESSAGES) - 1), max_size=6),
               swallow=st.booleans(), raise_at_end=st.booleans(),
               request=st.sampled_from(REQUESTS))
        def example(steps: list[int], swallow: bool, raise_at_end: bool, request: bytes) -> None:
            SCRIPT[0] = (steps, swallow, raise_at_end)
            check(harness, request)

        example()


WS_MESSAGES: list[dict[str, Any]] = [
    {"type": "websocket.accept"},
    {"type": "websocket.accept", "subprotocol": "chat", "headers": [(b"x-a", b"1")]},
    {"type": "websocket.accept", "headers": [(b"x-bad", b"a\r\nb")]},
    {"type": "websocket.send", "text": "hi"},
    {"type": "websocket.send", "bytes": b"\x00"},
    {"type": "websocket.close", "code": 4000, "reason": "bye"},
    {"type": "websocket.http.response.start", "status": 401, "headers": []},
    {"type": "websocket.http.response.body", "body": b"no", "more_body": True},
    {"type": "websocket.http.response.body", "body": b"!"},
    {"type": "http.response.start", "status": 200},
    {"type": "receive"},
]

#: A handshake, then one masked text frame "hi" and a masked close frame (1000).
WS_REQUEST = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Protocol: chat\r\n\r\n"
    + bytes([0x81, 0x82, 1, 2, 3, 4, ord("h") ^ 1, ord("i") ^ 2])
    + bytes([0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xE8 ^ 2])
)


async def scripted_ws_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    steps, swallow, raise_at_end = SCRIPT[0]
    for index in steps:
        message = WS_MESSAGES[index]
        try:
            if message["type"] == "receive":
                with trio.move_on_after(0.05):
                    await receive()
            else:
                await send(dict(message))
        except Exception:
            if not swallow:
                raise
    if raise_at_end:
        raise ValueError("the script says so")


def ws_request_cb(request: mhd2.Request) -> mhd2.Action:
    if request.path == "/good":
        return mhd2.action_from_response(request, mhd2.Response.from_buffer_static(200, b"good"))
    return mhd2.asgi.action_asgi(request, scripted_ws_app)


def test_no_websocket_script_hangs_a_connection() -> None:
    with daemon_thread(ws_request_cb, name="mhd2-asgi-ws-fuzz") as harness:

        @FUZZ
        @given(steps=st.lists(st.integers(0, len(WS_MESSAGES) - 1), max_size=6),
               swallow=st.booleans(), raise_at_end=st.booleans())
        def example(steps: list[int], swallow: bool, raise_at_end: bool) -> None:
            SCRIPT[0] = (steps, swallow, raise_at_end)
            check(harness, WS_REQUEST)

        example()
