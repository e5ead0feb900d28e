"""The tutorial ports in ``examples/``, run as the user would run them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
LISTENING = re.compile(r"^(?P<name>\w+): listening on https?://127\.0\.0\.1:(?P<port>\d+)/ ")


class Example:
    def __init__(self, process: trio.Process) -> None:
        assert process.stdout is not None and process.stdin is not None
        self.process = process
        self.stdout = process.stdout
        self.stdin = process.stdin
        self.buffer = b""
        self.port = 0

    async def line(self) -> str:
        while b"\n" not in self.buffer:
            chunk = await self.stdout.receive_some(65536)
            if not chunk:
                raise EOFError(self.buffer.decode(errors="replace"))
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode("utf-8", "backslashreplace")

    async def lines_until(self, last: str, timeout: float = 10) -> list[str]:
        """Output lines up to and including the first one equal to *last*
        (ignoring case)."""
        out = []
        with trio.fail_after(timeout):
            while True:
                out.append(await self.line())
                if out[-1].lower() == last.lower():
                    return out

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def example(script: str, *args: str, cwd: Path | None = None) -> AsyncIterator[Example]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    process = await trio.lowlevel.open_process(
        [sys.executable, str(EXAMPLES / script), "--port", "0", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
    )
    ex = Example(process)
    try:
        with trio.fail_after(20):
            first = await ex.line()
        match = LISTENING.match(first)
        assert match is not None, first
        ex.port = int(match["port"])
        yield ex
    finally:
        if process.returncode is None:
            process.kill()
        with trio.fail_after(10):
            await process.wait()


async def fetch(url: str, headers: Sequence[tuple[str, str]] = ()) -> httpx.Response:
    with trio.fail_after(10):
        async with httpx.AsyncClient() as client:
            return await client.get(url, headers=list(headers))


async def test_hellobrowser() -> None:
    async with example("hellobrowser.py") as ex:
        for path in ("/", "/anything/else?x=1"):
            r = await fetch(ex.url + path)
            assert r.status_code == 200
            assert r.content == b"<html><body>Hello, browser!</body></html>"
        # Enter stops it, like the C program's getchar()
        await ex.stdin.send_all(b"\n")
        with trio.fail_after(15):
            assert await ex.process.wait() == 0


async def test_hellobrowser_stops_on_sigint() -> None:
    async with example("hellobrowser.py") as ex:
        assert (await fetch(ex.url)).status_code == 200
        ex.process.send_signal(signal.SIGINT)
        with trio.fail_after(15):
            assert await ex.process.wait() == 0


async def test_logging_prints_request_and_headers() -> None:
    async with example("logging_example.py") as ex:
        # The C callback returns MHD_NO: the request is aborted, no reply comes.
        with pytest.raises(httpx.TransportError):
            await fetch(ex.url + "/some/path?q=1", [("X-First", "1"), ("X-Custom", "Value 1")])
        lines = await ex.lines_until("X-Custom: Value 1")
        assert "New GET request for /some/path using version HTTP/1.1" in lines
        start = lines.index("New GET request for /some/path using version HTTP/1.1")
        header_lines = [line.lower() for line in lines[start + 1 :]]
        assert f"host: 127.0.0.1:{ex.port}" in header_lines
        assert "user-agent: python-httpx/" + httpx.__version__ in header_lines
        assert header_lines[-2:] == ["x-first: 1", "x-custom: value 1"]  # arrival order
        await ex.stdin.send_all(b"\n")
        with trio.fail_after(15):
            assert await ex.process.wait() == 0


async def test_logging_raw_request_gets_no_answer() -> None:
    async with example("logging_example.py") as ex:
        with trio.fail_after(10):
            stream = await trio.open_tcp_stream("127.0.0.1", ex.port)
            async with stream:
                await stream.send_all(b"HEAD /x HTTP/1.0\r\nFoo: bar\r\n\r\n")
                answer = b""
                try:
                    while chunk := await stream.receive_some(65536):
                        answer += chunk
                except trio.BrokenResourceError:
                    pass  # a reset is a fine way to say nothing
        assert answer == b""
        lines = await ex.lines_until("Foo: bar")
        assert "New HEAD request for /x using version HTTP/1.0" in lines


async def test_responseheaders_serves_file_with_content_type(tmp_path: Path) -> None:
    picture = tmp_path / "picture.png"
    payload = b"\x89PNG\r\n\x1a\n" + os.urandom(200_000)
    picture.write_bytes(payload)
    # no FILE argument: picture.png in the current directory, as in the C program
    async with example("responseheaders.py", cwd=tmp_path) as ex:
        for _ in range(2):  # each request opens the file again
            r = await fetch(ex.url + "/")
            assert r.status_code == 200
            assert r.headers["content-type"] == "image/png"
            assert r.headers["content-length"] == str(len(payload))
            assert r.content == payload


async def test_responseheaders_missing_file_is_500(tmp_path: Path) -> None:
    async with example("responseheaders.py", str(tmp_path / "nope.png")) as ex:
        r = await fetch(ex.url + "/")
        assert r.status_code == 500
        assert b"An internal server error has occurred!" in r.content
        # the file appears: the next request is served from it
        (tmp_path / "nope.png").write_bytes(b"now here")
        r = await fetch(ex.url + "/")
        assert (r.status_code, r.content) == (200, b"now here")


async def test_responseheaders_other_file_and_mime(tmp_path: Path) -> None:
    doc = tmp_path / "notes.txt"
    doc.write_bytes(b"some notes\n")
    async with example("responseheaders.py", str(doc), "--mime", "text/plain") as ex:
        r = await fetch(ex.url + "/")
        assert (r.status_code, r.content) == (200, b"some notes\n")
        assert r.headers["content-type"] == "text/plain"
        with trio.fail_after(10):
            async with httpx.AsyncClient() as client:
                with pytest.raises(httpx.TransportError):
                    await client.post(ex.url + "/", content=b"x")  # only GET is answered
