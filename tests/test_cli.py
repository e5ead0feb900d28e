"""``python -m mhd2 serve`` as a real subprocess."""

from __future__ import annotations

import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
import pytest
import trio

from mhd2.cli import build_parser, url_for

REPO = Path(__file__).resolve().parents[1]
STARTUP = re.compile(r"^mhd2: serving (?P<dir>.+) on https?://127\.0\.0\.1:(?P<port>\d+)/ ")


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Lines:
    """Lines of a child's output stream, read as they come."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = b""
        self.seen: list[str] = []

    async def next(self) -> str:
        while b"\n" not in self.buffer:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise EOFError(f"stream ended; lines so far: {self.seen}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        text = line.decode("utf-8", "backslashreplace")
        self.seen.append(text)
        return text

    async def until(self, needle: str, timeout: float = 10) -> str:
        with trio.fail_after(timeout):
            while True:
                line = await self.next()
                if needle in line:
                    return line

    async def rest(self) -> str:
        with trio.fail_after(10):
            while chunk := await self.stream.receive_some(65536):
                self.buffer += chunk
        return self.buffer.decode("utf-8", "backslashreplace")


class Serve:
    def __init__(self, process: trio.Process, stderr: Lines, port: int, directory: str) -> None:
        self.process = process
        self.stderr = stderr
        self.port = port
        self.directory = directory

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def start(args: Sequence[str]) -> tuple[trio.Process, Lines]:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "mhd2", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=child_env(),
    )
    assert process.stderr is not None
    return process, Lines(process.stderr)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    (root / "hello.txt").write_bytes(b"Hello from the CLI!\n")
    (root / "big.bin").write_bytes(os.urandom(300_000))
    return root


@pytest.fixture
async def served(site: Path) -> AsyncIterator[Serve]:
    process, stderr = await start(["serve", str(site), "--port", "0"])
    try:
        line = await stderr.until("mhd2: serving")
        match = STARTUP.match(line)
        assert match is not None, line
        yield Serve(process, stderr, int(match["port"]), match["dir"])
    finally:
        if process.returncode is None:
            process.kill()
        with trio.fail_after(10):
            await process.wait()


async def test_startup_line(served: Serve, site: Path) -> None:
    assert served.directory == str(site.resolve())
    assert served.port > 0
    assert "(Ctrl-C to stop)" in served.stderr.seen[-1]


async def test_fetch_with_httpx_and_access_log(served: Serve, site: Path) -> None:
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=served.url) as client:
            r = await client.get("/hello.txt")
            big = await client.get("/big.bin", headers={"Range": "bytes=1000-1999"})
    assert r.status_code == 200
    assert r.content == b"Hello from the CLI!\n"
    assert big.status_code == 206
    assert big.content == (site / "big.bin").read_bytes()[1000:2000]
    line = await served.stderr.until('"GET /hello.txt HTTP/1.1"')
    assert re.match(r'^127\.0\.0\.1 - - \[[^]]+\] "GET /hello\.txt HTTP/1\.1" 200 20 ', line)
    line = await served.stderr.until('"GET /big.bin HTTP/1.1"')
    assert '" 206 1000 ' in line


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_fetch_with_curl(served: Serve) -> None:
    with trio.fail_after(20):
        result = await trio.run_process(
            ["curl", "--silent", "--show-error", "--include", f"{served.url}/hello.txt"],
            capture_stdout=True,
        )
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"content-type: text/plain; charset=utf-8" in head.lower()
    assert body == b"Hello from the CLI!\n"
    line = await served.stderr.until('"GET /hello.txt HTTP/1.1"')
    assert '"curl/' in line


async def test_access_log_escapes_control_characters(served: Serve) -> None:
    request = (
        b"GET /hello.txt?%1b[2J HTTP/1.1\r\nHost: x\r\n"
        b"User-Agent: evil\x1b]0;pwned\x07\x1b[31m\r\nConnection: close\r\n\r\n"
    )
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", served.port)
        async with stream:
            await stream.send_all(request)
            answer = b""
            while chunk := await stream.receive_some(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 200")
    line = await served.stderr.until("/hello.txt?%1b[2J")
    assert "\x1b" not in line and "\x07" not in line
    assert '"evil\\x1b]0;pwned\\x07\\x1b[31m"' in line


async def test_sigint_stops_with_status_0(served: Serve) -> None:
    # one request first, so that the daemon has served something
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=served.url) as client:
            assert (await client.get("/hello.txt")).status_code == 200
    served.process.send_signal(signal.SIGINT)
    with trio.fail_after(15):
        code = await served.process.wait()
    assert code == 0
    rest = await served.stderr.rest()
    assert "Traceback" not in rest


async def test_sigterm_stops_with_status_0(served: Serve) -> None:
    served.process.send_signal(signal.SIGTERM)
    with trio.fail_after(15):
        assert await served.process.wait() == 0


async def test_bad_directory_exits_2(tmp_path: Path) -> None:
    process, stderr = await start(["serve", str(tmp_path / "missing"), "--port", "0"])
    with trio.fail_after(20):
        code = await process.wait()
        text = await stderr.rest()
    assert code == 2
    assert "not a directory" in text


async def test_bind_failure_exits_1(site: Path) -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        process, stderr = await start(["serve", str(site), "--port", str(port)])
        with trio.fail_after(20):
            code = await process.wait()
            text = await stderr.rest()
    assert code == 1
    assert "cannot listen" in text


async def test_workers(site: Path) -> None:
    process, stderr = await start(["serve", str(site), "--port", "0", "--workers", "2"])
    try:
        line = await stderr.until("mhd2: serving")
        match = STARTUP.match(line)
        assert match is not None, line
        assert "with 2 workers" in line
        url = f"http://127.0.0.1:{match['port']}/hello.txt"
        with trio.fail_after(20):
            for _ in range(6):  # a new connection each time: any worker may take it
                async with httpx.AsyncClient() as client:
                    r = await client.get(url)
                assert (r.status_code, r.content) == (200, b"Hello from the CLI!\n")
        for _ in range(6):
            await stderr.until('"GET /hello.txt HTTP/1.1" 200 20')
        process.send_signal(signal.SIGINT)
        with trio.fail_after(20):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            with trio.fail_after(10):
                await process.wait()


async def test_tls(site: Path, tmp_path: Path) -> None:
    pytest.importorskip("mhd2.tls")
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key_file))
    process, stderr = await start(
        [
            "serve",
            str(site),
            "--port",
            "0",
            "--tls-cert",
            str(cert_file),
            "--tls-key",
            str(key_file),
        ]
    )
    try:
        line = await stderr.until("mhd2: serving")
        match = STARTUP.match(line)
        assert match is not None and " on https://" in line, line
        context = ssl.create_default_context()
        ca.configure_trust(context)
        with trio.fail_after(20):
            async with httpx.AsyncClient(verify=context) as client:
                r = await client.get(f"https://127.0.0.1:{match['port']}/hello.txt")
        assert (r.status_code, r.content) == (200, b"Hello from the CLI!\n")
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            with trio.fail_after(10):
                await process.wait()


async def test_tls_needs_cert_and_key(site: Path) -> None:
    process, stderr = await start(["serve", str(site), "--tls-cert", "x.pem"])
    with trio.fail_after(20):
        code = await process.wait()
        text = await stderr.rest()
    assert code == 2
    assert "--tls-cert and --tls-key go together" in text


def test_parser() -> None:
    parser = build_parser()
    args = parser.parse_args(["serve"])
    assert (args.command, args.directory, args.host, args.port) == ("serve", ".", "127.0.0.1", 8080)
    args = parser.parse_args(["serve", "/", "--host", "::1", "--port", "0"])
    assert (args.directory, args.host, args.port) == ("/", "::1", 0)
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["serve", "--port", "70000"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        parser.parse_args([])
    assert info.value.code == 2


def test_url_for() -> None:
    assert url_for("127.0.0.1", 80) == "http://127.0.0.1:80/"
    assert url_for("::1", 8080) == "http://[::1]:8080/"
