"""A malformed HTTP/2 request ends as an HTTP/1 one does: reported, then answered.

HTTP/1 reports a request it refuses (``notify_request_ended``, and so the
access log) before its ``400`` leaves.  Over HTTP/2 a malformed request is a
stream error (RFC 9113 §8.1.1, ``RST_STREAM(PROTOCOL_ERROR)``): its end is
reported -- method and target ``-`` for a malformed head, status ``400`` --
before the reset reaches the client.  "Before" is checked at the moment of
the report: the client's socket (read without consuming) must not hold the
reset yet.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import pytest
import trio
from conftest import WAIT, running, text_response
from h2.errors import ErrorCodes
from h2raw import RawH2
from hyperframe.frame import Frame, HeadersFrame, RstStreamFrame

import mhd2
from mhd2 import RequestEndedCode
from mhd2._accesslog import AccessLogger

#: (method, target, version, status, code, whether the client had the reset then)
Seen = tuple[str, str, str, int | None, RequestEndedCode, bool]

GOOD = [(":method", "GET"), (":scheme", "http"), (":authority", "localhost"), (":path", "/x")]


def reset_arrived(client: RawH2, sid: int) -> bool:
    """Whether ``RST_STREAM`` for *sid* has reached *client*: handled already, or
    waiting in its socket (peeked at, not consumed)."""
    reply = client.replies.get(sid)
    if reply is not None and reply.reset is not None:
        return True
    fd = client.stream.socket.fileno()  # type: ignore[attr-defined]
    with socket.socket(fileno=os.dup(fd)) as sock:
        try:
            waiting = sock.recv(1 << 20, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            waiting = b""
    data = bytes(client._unparsed) + waiting
    while len(data) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        if isinstance(frame, RstStreamFrame) and frame.stream_id == sid:
            return True
        data = data[9 + length:]
    return False


class Watch:
    """A ``notify_request_ended`` callback recording each end and whether the
    client had the stream's reset at that moment."""

    def __init__(self) -> None:
        self.client: RawH2 | None = None
        self.sid = 0
        self.seen: list[Seen] = []

    def __call__(self, request: mhd2.Request, code: RequestEndedCode) -> None:
        assert self.client is not None
        self.seen.append((request.method, request.uri, request.version,
                          request.response_status, code, reset_arrived(self.client, self.sid)))


def head(fields: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in fields]


#: Malformed heads of different kinds (RFC 9113 §8.1.1, §8.2, §8.3; RFC 8441 §4).
MALFORMED_HEADS: dict[str, list[tuple[str, str]]] = {
    "no :path": GOOD[:3],
    "connection-specific field": [*GOOD, ("connection", "close")],
    "upper-case name": [*GOOD, ("X-Up", "1")],
    "pseudo-header after a field": [*GOOD[:3], ("x-a", "1"), (":path", "/x")],
    "Host differs from :authority": [*GOOD, ("host", "elsewhere")],
    ":protocol without CONNECT": [*GOOD, (":protocol", "websocket")],
    "Content-Length without a body": [*GOOD, ("content-length", "5")],
}


@pytest.mark.parametrize("fields", list(MALFORMED_HEADS.values()), ids=list(MALFORMED_HEADS))
async def test_malformed_head_is_reported_before_its_reset(
        fields: list[tuple[str, str]]) -> None:
    watch = Watch()
    calls: list[str] = []

    def app(request: mhd2.Request) -> mhd2.Action:
        calls.append(request.path)
        return text_response(request)

    async with running(app, notify_request_ended=watch) as daemon:
        with trio.fail_after(WAIT):
            client = watch.client = await RawH2.connect(daemon.port)
            sid = watch.sid = client.conn.get_next_available_stream_id()
            client.conn.send_headers(sid, head(fields), end_stream=True)
            reply = await client.response(sid)
            watch.sid = 0
            after = await client.response(client.request("/after"))
            await client.aclose()
    assert reply.reset == ErrorCodes.PROTOCOL_ERROR and reply.status is None
    assert after.status == 200 and calls == ["/after"]
    assert watch.seen == [
        ("-", "-", "HTTP/2", 400, RequestEndedCode.HTTP_PROTOCOL_ERROR, False),
        ("GET", "/after", "HTTP/2", 200, RequestEndedCode.COMPLETED_OK, False)]


@pytest.mark.parametrize("trailer", [
    [(b":path", b"/x")],  # a pseudo-header in a trailer section
    [(b"connection", b"close")],  # a connection-specific field
    [(b"X-Up", b"1")],  # an upper-case field name
], ids=["pseudo-header", "connection-specific", "upper-case"])
async def test_malformed_trailers_are_reported_before_their_reset(
        trailer: list[tuple[bytes, bytes]]) -> None:
    watch = Watch()
    release = trio.Event()

    async def app(request: mhd2.Request) -> mhd2.Action:
        # Still running when the trailers come: the reset must wait for the
        # application to unwind and the end to be reported.
        await release.wait()
        return text_response(request)

    async with running(app, notify_request_ended=watch) as daemon:
        with trio.fail_after(WAIT):
            client = watch.client = await RawH2.connect(daemon.port)
            sid = watch.sid = client.request("/t", "POST", end=False)
            client.conn.send_data(sid, b"body")
            await client.flush()
            block = client.conn.encoder.encode(trailer)
            await client.send_raw(HeadersFrame(sid, data=block,
                                               flags=["END_HEADERS", "END_STREAM"]).serialize())
            reply = await client.response(sid)
            watch.sid = 0
            release.set()
            after = await client.response(client.request("/after"))
            await client.aclose()
    assert reply.reset == ErrorCodes.PROTOCOL_ERROR and reply.status is None
    assert after.status == 200
    assert watch.seen == [
        ("POST", "/t", "HTTP/2", 400, RequestEndedCode.HTTP_PROTOCOL_ERROR, False),
        ("GET", "/after", "HTTP/2", 200, RequestEndedCode.COMPLETED_OK, False)]


class Lines(logging.Handler):
    """Keeps the access log's records."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def access_logger(fmt: str) -> tuple[AccessLogger, Lines]:
    logger = logging.getLogger(f"mhd2.access.test-{fmt}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    lines = Lines()
    logger.handlers[:] = [lines]
    return AccessLogger(fmt, logger), lines


async def served(log: Callable[..., Any], send: Callable[[RawH2], int]) -> None:
    """Run a daemon logging with *log*; *send* one request; wait for its reset."""
    async with running(text_response, notify_request_ended=log) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)
            reply = await client.response(send(client))
            await client.aclose()
    assert reply.reset == ErrorCodes.PROTOCOL_ERROR


def malformed_head(client: RawH2) -> int:
    return client.request("/x", headers=[("connection", "close")])


@pytest.mark.parametrize("fmt", ["common", "combined"])
async def test_malformed_head_is_access_logged(fmt: str) -> None:
    log, lines = access_logger(fmt)
    await served(log, malformed_head)
    (record,) = lines.records
    line = record.getMessage()
    assert '"- - HTTP/2" 400 -' in line, line
    assert line.startswith("127.0.0.1 - - [")
    assert line.endswith('"-" "-"', 0, line.rindex(" ")) == (fmt == "combined")


async def test_malformed_head_is_access_logged_as_json() -> None:
    log, lines = access_logger("json")
    await served(log, malformed_head)
    (record,) = lines.records
    fields = json.loads(record.getMessage())
    assert {k: fields[k] for k in ("client", "method", "target", "protocol", "status", "bytes")} \
        == {"client": "127.0.0.1", "method": "-", "target": "-", "protocol": "HTTP/2",
            "status": 400, "bytes": 0}
    assert record.access == fields  # type: ignore[attr-defined]


async def test_malformed_trailers_are_access_logged_with_their_request() -> None:
    log, lines = access_logger("json")

    def send(client: RawH2) -> int:
        sid = client.request("/t", "POST", end=False)
        client.conn.send_data(sid, b"body")
        client.conn.send_headers(sid, [(b":path", b"/x")], end_stream=True)
        return sid

    await served(log, send)
    (record,) = lines.records
    fields = json.loads(record.getMessage())
    assert (fields["method"], fields["target"], fields["status"]) == ("POST", "/t", 400)
