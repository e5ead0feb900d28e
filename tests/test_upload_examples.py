"""The tutorial's POST examples (``simplepost.py``, ``largepost.py``) run as a user would.

Each example is started as a subprocess with ``--port 0``; forms are posted
with httpx and with ``curl -F`` / ``curl -d``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
LISTENING = re.compile(r"^(?P<name>\w+): listening on https?://127\.0\.0\.1:(?P<port>\d+)/ ")
WAIT = 10.0

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


class Example:
    def __init__(self, process: trio.Process, port: int) -> None:
        self.process = process
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> int:
        """Enter stops the example, like the C programs' getchar()."""
        assert self.process.stdin is not None
        await self.process.stdin.send_all(b"\n")
        with trio.fail_after(WAIT):
            return await self.process.wait()


@asynccontextmanager
async def example(script: str, *args: str, cwd: Path | None = None) -> AsyncIterator[Example]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    process = await trio.lowlevel.open_process(
        [sys.executable, str(EXAMPLES / script), "--port", "0", *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=cwd,
    )
    try:
        assert process.stdout is not None
        out = b""
        with trio.fail_after(20):
            while b"\n" not in out:
                chunk = await process.stdout.receive_some(4096)
                assert chunk, f"{script} exited: {out!r}"
                out += chunk
        match = LISTENING.match(out.decode())
        assert match is not None, out
        yield Example(process, int(match["port"]))
    finally:
        if process.returncode is None:
            process.kill()
        with trio.fail_after(WAIT):
            await process.wait()


async def curl(*args: str) -> tuple[int, bytes]:
    """Run curl; return (HTTP status, body)."""
    with trio.fail_after(WAIT):
        done = await trio.run_process(
            ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", *args],
            capture_stdout=True, capture_stderr=True, check=False,
        )
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.rpartition(b"\n")
    return int(status), body


# -- simplepost ---------------------------------------------------------------------


async def test_simplepost_form_and_greeting_with_httpx() -> None:
    async with example("simplepost.py") as ex:
        with trio.fail_after(WAIT):
            async with httpx.AsyncClient() as client:
                form = await client.get(ex.url + "/")
                urlencoded = await client.post(ex.url + "/namepost", data={"name": "Ada <3"})
                multipart = await client.post(
                    ex.url + "/namepost", data={"name": "Grace"}, files={"x": ("f", b"")}
                )
                too_long = await client.post(ex.url + "/namepost", data={"name": "x" * 21})
                missing = await client.post(ex.url + "/namepost", data={"other": "y"})
                other = await client.put(ex.url + "/", content=b"z")
        assert await ex.stop() == 0
    assert form.status_code == 200
    assert b'<form action="/namepost" method="post">' in form.content
    assert b'<input name="name" type="text">' in form.content
    assert urlencoded.status_code == 200
    assert urlencoded.content == b"<html><body><h1>Welcome, Ada &lt;3!</center></h1></body></html>"
    assert b"Welcome, Grace!" in multipart.content
    error = b"<html><body>This doesn't seem to be right.</body></html>"
    assert (too_long.content, missing.content, other.content) == (error, error, error)


@needs_curl
async def test_simplepost_with_curl() -> None:
    async with example("simplepost.py") as ex:
        assert await curl("-F", "name=Linus", ex.url + "/namepost") == (
            200, b"<html><body><h1>Welcome, Linus!</center></h1></body></html>")
        status, body = await curl("-d", "name=Ada+Lovelace", ex.url + "/namepost")
        assert (status, body) == (200, b"<html><body><h1>Welcome, Ada Lovelace!</center></h1></body></html>")


# -- largepost ----------------------------------------------------------------------


def multipart(boundary: str, filename: str, data: bytes, name: str = "file") -> bytes:
    return (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()


async def test_largepost_stores_the_file_and_refuses_an_existing_one(tmp_path: Path) -> None:
    store = tmp_path / "store"
    data = os.urandom(3 * 1024 * 1024 + 17)
    async with example("largepost.py", str(store)) as ex:
        with trio.fail_after(WAIT):
            async with httpx.AsyncClient() as client:
                form = await client.get(ex.url + "/")
                first = await client.post(ex.url + "/filepost", files={"file": ("big.bin", data)})
                again = await client.post(ex.url + "/filepost",
                                          files={"file": ("big.bin", b"other bytes")})
                sneaky = await client.post(ex.url + "/filepost",
                                           files={"file": ("../../escape.txt", b"nope")})
                wrong_field = await client.post(ex.url + "/filepost",
                                                files={"upload": ("w.txt", b"abc")})
                other = await client.put(ex.url + "/", content=b"z")
        assert await ex.stop() == 0
    assert form.status_code == 200
    assert b"There are 0 clients uploading at the moment." in form.content
    assert b'enctype="multipart/form-data"' in form.content
    assert (first.status_code, first.content) == (
        200, b"<html><body>The upload has been completed.</body></html>")
    assert (store / "big.bin").read_bytes() == data
    assert (again.status_code, again.content) == (
        403, b"<html><body>This file already exists.</body></html>")
    # the path is reduced to its last component: no escape from the directory
    assert sneaky.status_code == 200
    assert (store / "escape.txt").read_bytes() == b"nope"
    assert not (tmp_path / "escape.txt").exists()
    assert wrong_field.status_code == 400
    assert not (store / "w.txt").exists()
    assert other.status_code == 400
    assert sorted(p.name for p in store.iterdir()) == ["big.bin", "escape.txt"]


@needs_curl
async def test_largepost_with_curl(tmp_path: Path) -> None:
    store = tmp_path / "store"
    source = tmp_path / "photo.jpg"
    data = os.urandom(1_500_000)
    source.write_bytes(data)
    async with example("largepost.py", str(store)) as ex:
        status, body = await curl("-F", f"file=@{source}", ex.url + "/filepost")
        assert (status, body) == (200, b"<html><body>The upload has been completed.</body></html>")
        assert (store / "photo.jpg").read_bytes() == data
        status, body = await curl("-F", f"file=@{source}", ex.url + "/filepost")
        assert (status, body) == (403, b"<html><body>This file already exists.</body></html>")
        assert (store / "photo.jpg").read_bytes() == data  # untouched


async def test_largepost_busy_page_while_max_clients_upload(tmp_path: Path) -> None:
    store = tmp_path / "store"
    body = multipart("XyZ", "slow.bin", b"s" * 100_000)
    head = (
        "POST /filepost HTTP/1.1\r\nHost: h\r\n"
        "Content-Type: multipart/form-data; boundary=XyZ\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    async with example("largepost.py", str(store), "--max-clients", "1") as ex:
        with trio.fail_after(WAIT):
            async with httpx.AsyncClient() as client:
                slow = await trio.open_tcp_stream("127.0.0.1", ex.port)
                async with slow:
                    # one upload in flight, its body sent slowly
                    await slow.send_all(head + body[:1000])
                    busy = await client.get(ex.url + "/")
                    while busy.status_code != 503:  # bounded by fail_after
                        await trio.sleep(0.01)
                        busy = await client.get(ex.url + "/")
                    refused = await client.post(ex.url + "/filepost",
                                                files={"file": ("other.bin", b"o")})
                    await slow.send_all(body[1000:50_000])
                    await slow.send_all(body[50_000:])
                    answer = b""
                    while b"</html>" not in answer:
                        chunk = await slow.receive_some(65536)
                        assert chunk, answer
                        answer += chunk
                after = await client.get(ex.url + "/")
                # an upload abandoned half-way leaves no file and frees its slot
                gone = await trio.open_tcp_stream("127.0.0.1", ex.port)
                async with gone:
                    await gone.send_all(head + multipart("XyZ", "gone.bin", b"g" * 100_000)[:5000])
                    while (await client.get(ex.url + "/")).status_code != 503:
                        await trio.sleep(0.01)
                while (page := await client.get(ex.url + "/")).status_code != 200:
                    await trio.sleep(0.01)
        assert await ex.stop() == 0
    assert busy.content == b"<html><body>This server is busy, please try again later.</body></html>"
    assert refused.status_code == 503
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b"<html><body>The upload has been completed.</body></html>")
    assert after.status_code == 200
    assert b"There are 0 clients uploading" in page.content
    assert (store / "slow.bin").read_bytes() == b"s" * 100_000
    assert not (store / "other.bin").exists()
    assert not (store / "gone.bin").exists()


def test_examples_parse_their_arguments() -> None:
    # --help works without starting a daemon
    for script in ("simplepost.py", "largepost.py"):
        done = subprocess.run([sys.executable, str(EXAMPLES / script), "--help"],
                              capture_output=True, timeout=WAIT, check=False,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        assert done.returncode == 0, done.stderr
        assert b"--port" in done.stdout
    done = subprocess.run([sys.executable, str(EXAMPLES / "largepost.py"), "--help"],
                          capture_output=True, timeout=WAIT, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert b"--max-clients" in done.stdout
