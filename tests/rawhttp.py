"""A small raw HTTP/1.x client and daemon helpers for byte-exact response tests.

Shared by ``test_responses.py`` and ``test_dcc.py``: it reads responses
byte by byte as they are framed (Content-Length, chunked with extensions and
trailers, close-delimited), so framing bugs cannot hide behind a forgiving
client library.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio
from conftest import open_stream

import mhd2

WAIT = 10.0
Code = mhd2.RequestEndedCode


# -- the client -------------------------------------------------------


@dataclass
class Head:
    version: str
    status: int
    headers: list[tuple[str, str]]
    raw: bytes

    def get(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name.lower():
                return value
        return None

    def count(self, name: str) -> int:
        return sum(1 for key, _ in self.headers if key == name.lower())


@dataclass
class Message:
    head: Head
    body: bytes
    trailers: list[tuple[str, str]] = field(default_factory=list)
    size_lines: list[bytes] = field(default_factory=list)
    raw_body: bytes = b""


class Client:
    """One TCP connection; reads responses byte-exactly."""

    def __init__(self, stream: trio.abc.HalfCloseableStream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def _fill(self) -> bool:
        try:
            chunk = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:
            return False
        if not chunk:
            return False
        self.buf += chunk
        return True

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def head(self) -> Head:
        with trio.fail_after(WAIT):
            while b"\r\n\r\n" not in self.buf:
                if not await self._fill():
                    raise EOFError(bytes(self.buf))
        end = self.buf.index(b"\r\n\r\n") + 4
        raw = bytes(self.buf[:end])
        del self.buf[:end]
        lines = raw[:-4].decode("latin-1").split("\r\n")
        version, status, _ = (lines[0] + " ").split(" ", 2)
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.lower(), value.strip()))
        return Head(version, int(status), headers, raw)

    async def exact(self, n: int) -> bytes:
        with trio.fail_after(WAIT):
            while len(self.buf) < n:
                if not await self._fill():
                    raise EOFError(bytes(self.buf))
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    async def line(self) -> bytes:
        with trio.fail_after(WAIT):
            while b"\r\n" not in self.buf:
                if not await self._fill():
                    raise EOFError(bytes(self.buf))
        end = self.buf.index(b"\r\n") + 2
        data = bytes(self.buf[:end])
        del self.buf[:end]
        return data

    async def until_eof(self) -> bytes:
        with trio.fail_after(WAIT):
            while await self._fill():
                pass
        data = bytes(self.buf)
        self.buf.clear()
        return data

    async def at_eof(self) -> bool:
        """True if the server closed the connection with nothing more to read."""
        return await self.until_eof() == b""

    async def chunked(self) -> tuple[bytes, list[tuple[str, str]], list[bytes], bytes]:
        body, lines, raw = [], [], []
        while True:
            size_line = await self.line()
            raw.append(size_line)
            lines.append(size_line)
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            data = await self.exact(size + 2)
            raw.append(data)
            assert data.endswith(b"\r\n")
            body.append(data[:-2])
        trailers = []
        while True:
            line = await self.line()
            raw.append(line)
            if line == b"\r\n":
                break
            name, _, value = line.decode("latin-1").partition(":")
            trailers.append((name, value.strip()))
        return b"".join(body), trailers, lines, b"".join(raw)

    async def response(self, method: str = "GET") -> Message:
        head = await self.head()
        if method == "HEAD" or head.status < 200 or head.status in (204, 304):
            return Message(head, b"")
        if (head.get("transfer-encoding") or "").lower() == "chunked":
            body, trailers, lines, raw = await self.chunked()
            return Message(head, body, trailers, lines, raw)
        length = head.get("content-length")
        if length is not None:
            body = await self.exact(int(length))
            return Message(head, body, raw_body=body)
        body = await self.until_eof()
        return Message(head, body, raw_body=body)

    async def request(self, target: str = "/", method: str = "GET", version: str = "1.1",
                      headers: tuple[tuple[str, str], ...] = ()) -> Message:
        lines = [f"{method} {target} HTTP/{version}", "Host: t"]
        lines += [f"{k}: {v}" for k, v in headers]
        await self.send(("\r\n".join(lines) + "\r\n\r\n").encode())
        return await self.response(method)

    async def aclose(self) -> None:
        await self.stream.aclose()


@asynccontextmanager
async def connect(port: int | mhd2.Daemon) -> AsyncIterator[Client]:
    with trio.fail_after(WAIT):
        stream = await open_stream(port)
    client = Client(stream)
    try:
        yield client
    finally:
        await client.aclose()


async def fetch(port: int | mhd2.Daemon, target: str = "/", method: str = "GET", version: str = "1.1",
                headers: tuple[tuple[str, str], ...] = ()) -> Message:
    async with connect(port) as client:
        return await client.request(target, method, version, headers)


class Ends:
    """``notify_request_ended`` recorder whose progress can be awaited."""

    def __init__(self) -> None:
        self.codes: list[mhd2.RequestEndedCode] = []
        self._changed = trio.Event()

    def __call__(self, request: mhd2.Request, code: mhd2.RequestEndedCode) -> None:
        self.codes.append(code)
        self._changed.set()
        self._changed = trio.Event()

    async def wait(self, n: int = 1) -> list[mhd2.RequestEndedCode]:
        with trio.fail_after(WAIT):
            while len(self.codes) < n:
                await self._changed.wait()
        return self.codes


class Counter:
    """A ``free_cb`` that counts its calls and can be awaited."""

    def __init__(self) -> None:
        self.calls = 0
        self._changed = trio.Event()

    def __call__(self) -> None:
        self.calls += 1
        self._changed.set()
        self._changed = trio.Event()

    async def wait(self, n: int = 1) -> None:
        with trio.fail_after(WAIT):
            while self.calls < n:
                await self._changed.wait()


def serve(make: Callable[[mhd2.Request], mhd2.Response]) -> Callable[[mhd2.Request], mhd2.Action]:
    """A request callback that answers every request with ``make(request)``."""

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_from_response(request, make(request))

    return cb


@asynccontextmanager
async def daemon(cb: Callable[[mhd2.Request], Any], **options: Any) -> AsyncIterator[mhd2.Daemon]:
    """A running daemon; :func:`connect` and :func:`fetch` reach it in memory
    (``serve_stream``), so these engine tests need no socket."""
    async with mhd2.Daemon(cb, port=0, **options) as d:
        yield d
