"""``python -m mhd2 run / serve / demo`` as real subprocesses on real ports."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from mhd2._http1.backend import httptools_available
from mhd2.cli import address_of, build_parser, url_for

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


async def start(args: Sequence[str], **popen: Any) -> tuple[trio.Process, Lines]:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "mhd2", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=child_env(),
        **popen,
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
    assert (args.command, args.directory, address_of(args)) == ("serve", ".", ("127.0.0.1", 8080))
    args = parser.parse_args(["serve", "/", "--host", "::1", "--port", "0"])
    assert (args.directory, address_of(args)) == ("/", ("::1", 0))
    # the short forms, for every sub-command, with its own default port
    args = parser.parse_args(["serve", "-p", "8082", "-b", "0.0.0.0"])
    assert (args.directory, address_of(args)) == (".", ("0.0.0.0", 8082))
    assert address_of(parser.parse_args(["demo"])) == ("127.0.0.1", 8888)
    assert address_of(parser.parse_args(["run", "app:handle"])) == ("127.0.0.1", 8000)
    # one option set for all three
    shared = ["--workers", "3", "--graceful-timeout", "2.5", "--max-requests", "100",
              "--max-requests-jitter", "10", "--timeout", "5", "--log-level", "DEBUG",
              "--no-access-log", "--tls-key-password", "pw", "--fd", "3"]
    for argv in (["run", "m:a", *shared], ["serve", *shared], ["demo", *shared]):
        args = parser.parse_args(argv)
        assert (args.workers, args.graceful_timeout, args.max_requests, args.fd) == (
            3, 2.5, 100, 3), argv
        assert (args.log_level, args.access_log, args.timeout) == ("debug", False, 5.0)
    assert parser.parse_args(["serve"]).workers is None
    assert parser.parse_args(
        ["run", "m:a", "--forwarded-allow-ips", "127.0.0.1,10.0.0.0/8"]
    ).forwarded_allow_ips == ("127.0.0.1", "10.0.0.0/8")
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["serve", "--port", "70000"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        parser.parse_args([])
    assert info.value.code == 2


def test_url_for() -> None:
    assert url_for("127.0.0.1", 80) == "http://127.0.0.1:80/"
    assert url_for("::1", 8080) == "http://[::1]:8080/"


# ---------------------------------------------------------------------- the shared options


def run_quick(args: Sequence[str], **popen: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mhd2", *args], capture_output=True, text=True,
                          env=child_env(), timeout=60, **popen)


def test_unknown_option_is_unrecognized() -> None:
    result = run_quick(["serve", "--bogus", "8082"])
    assert result.returncode == 2
    assert "unrecognized arguments: --bogus" in result.stderr
    assert "not a directory" not in result.stderr


def test_version() -> None:
    from mhd2 import __version__

    for argv in (["--version"], ["run", "--version"], ["serve", "--version"]):
        result = run_quick(argv)
        assert (result.returncode, result.stdout.strip()) == (0, f"mhd2 {__version__}")


def test_parser_flag_without_httptools_says_what_to_install(tmp_path: Path) -> None:
    if httptools_available():
        pytest.skip("httptools is installed here (tests(parser='h11') runs this)")
    result = run_quick(["serve", str(tmp_path), "--parser", "httptools"])
    assert result.returncode == 2
    assert 'pip install "mhd2[speedups]"' in result.stderr


@pytest.mark.parametrize("choice", ["auto", "h11", "httptools"])
async def test_parser_flag_serves_with_the_backend_it_names(choice: str, site: Path) -> None:
    if choice == "httptools" and not httptools_available():
        pytest.skip("needs httptools (mhd2[speedups])")
    process, stderr = await start(["serve", str(site), "--port", "0", "--parser", choice,
                                     "--log-level", "debug"])
    try:
        backend = "httptools" if choice == "auto" and httptools_available() else choice
        backend = "h11" if backend == "auto" else backend
        await stderr.until(f"HTTP/1 parser: {backend}")
        match = STARTUP.match(await stderr.until("mhd2: serving"))
        assert match is not None
        with trio.fail_after(10):
            async with httpx.AsyncClient() as client:
                r = await client.get(f"http://127.0.0.1:{match['port']}/hello.txt")
        assert (r.status_code, r.content) == (200, b"Hello from the CLI!\n")
    finally:
        process.kill()
        with trio.fail_after(10):
            await process.wait()


@pytest.mark.parametrize(
    "argv",
    [["serve", "."], ["demo"], ["run", "cli_app:handle"],
     ["serve", ".", "--workers", "2"], ["run", "cli_app:handle", "--workers", "2"]],
)
async def test_busy_port_is_one_line_and_exit_1(argv: list[str], tmp_path: Path) -> None:
    (tmp_path / "cli_app.py").write_text(APP)
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        process, stderr = await start([*argv, "--port", str(port)], cwd=tmp_path)
        with trio.fail_after(30):
            code = await process.wait()
            text = await stderr.rest()
    assert code == 1
    assert text.splitlines() == [
        f"mhd2: cannot listen on 127.0.0.1 port {port}: Address already in use"]


APP = """
import os
import mhd2

def handle(request):
    body = f"hello from {os.getpid()} {request.path}".encode()
    return mhd2.action_from_response(request, mhd2.Response.from_buffer_copy(200, body))

def make_daemon():
    return mhd2.Daemon(handle, suppress_date_header=True, port=1)

def make_callback():
    return handle

def boom(request):
    raise RuntimeError("boom in the app")

async def slow(request):
    import sys, trio
    print("slow request started", file=sys.stderr, flush=True)
    await trio.sleep(1)
    return handle(request)

not_callable = 42
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "cli_app.py").write_text(APP)
    return tmp_path


RUNNING = re.compile(r"^mhd2: running (?P<app>\S+) on http://127\.0\.0\.1:(?P<port>\d+)/")


@asynccontextmanager
async def running(argv: Sequence[str], cwd: Path, **popen: Any) -> AsyncIterator[
        tuple[trio.Process, Lines, int]]:
    process, stderr = await start(argv, cwd=cwd, **popen)
    try:
        line = await stderr.until("mhd2: running", timeout=30)
        match = RUNNING.match(line)
        assert match is not None, line
        yield process, stderr, int(match["port"])
    finally:
        if process.returncode is None:
            process.kill()
        with trio.fail_after(10):
            await process.wait()


async def get(port: int, path: str = "/") -> httpx.Response:
    with trio.fail_after(20):
        async with httpx.AsyncClient() as client:
            return await client.get(f"http://127.0.0.1:{port}{path}")


async def test_run_module_attr(app_dir: Path) -> None:
    async with running(["run", "cli_app:handle", "-p", "0"], app_dir) as (process, stderr, port):
        r = await get(port, "/x")
        assert r.status_code == 200 and r.text.startswith("hello from ")
        assert r.text.endswith(" /x")
        assert "date" in r.headers
        line = await stderr.until('"GET /x HTTP/1.1"')  # the access log, on by default
        assert line.startswith("127.0.0.1 - - [")
        process.send_signal(signal.SIGINT)
        with trio.fail_after(20):
            assert await process.wait() == 0


async def test_run_factory_returning_a_configured_daemon(app_dir: Path) -> None:
    argv = ["run", "cli_app:make_daemon", "--factory", "--port", "0", "--no-access-log"]
    async with running(argv, app_dir) as (process, stderr, port):
        r = await get(port)
        assert r.status_code == 200
        assert "date" not in r.headers  # the factory's option is kept; its port=1 is not
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            assert await process.wait() == 0
        assert '"GET / HTTP/1.1"' not in await stderr.rest()


async def test_run_factory_returning_a_callback(app_dir: Path) -> None:
    argv = ["run", "cli_app:make_callback", "--factory", "--port", "0"]
    async with running(argv, app_dir) as (_, _, port):
        assert (await get(port)).status_code == 200


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module:handle", "no module named 'no_such_module'"),
        ("cli_app:missing", "'cli_app' has no 'missing'"),
        ("cli_app", "write it as MODULE:ATTR"),
        ("cli_app:not_callable", "is not a request callback (or pass --factory)"),
    ],
)
def test_run_bad_app_exits_1(app_dir: Path, spec: str, message: str) -> None:
    result = run_quick(["run", spec, "--port", "0"], cwd=app_dir)
    assert result.returncode == 1
    assert message in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_run_bad_app_with_workers_exits_1(app_dir: Path) -> None:
    result = run_quick(["run", "cli_app:missing", "--port", "0", "--workers", "2"], cwd=app_dir)
    assert result.returncode == 1
    assert "'cli_app' has no 'missing'" in result.stderr
    assert "could not start; stopping" in result.stderr


async def test_run_workers_max_requests_recycles_without_failures(app_dir: Path) -> None:
    argv = ["run", "cli_app:handle", "--port", "0", "--workers", "2", "--max-requests", "4",
            "--no-access-log"]
    pids: set[str] = set()
    statuses: list[int] = []
    async with running(argv, app_dir) as (process, stderr, port):
        assert "with 2 workers" in stderr.seen[-1]
        with trio.fail_after(60):
            while len(pids) < 4:
                async with httpx.AsyncClient() as client:  # a new connection each time
                    r = await client.get(f"http://127.0.0.1:{port}/")
                statuses.append(r.status_code)
                pids.add(r.text.split()[2])
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(40):
            assert await process.wait() == 0
    assert set(statuses) == {200}


async def test_serve_on_an_inherited_fd(site: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    with listener:
        port = listener.getsockname()[1]
        process, stderr = await start(["serve", str(site), "--fd", str(listener.fileno())],
                                      pass_fds=[listener.fileno()])
        try:
            line = await stderr.until("mhd2: serving")
            assert f"on http://127.0.0.1:{port}/ " in line
            r = await get(port, "/hello.txt")
            assert r.content == b"Hello from the CLI!\n"
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(20):
                assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                with trio.fail_after(10):
                    await process.wait()


def test_fd_that_is_not_a_listening_socket(tmp_path: Path) -> None:
    with open(tmp_path / "f", "w") as f:
        fd = f.fileno()
        result = run_quick(["serve", str(tmp_path), "--fd", str(fd)], pass_fds=[fd])
    assert result.returncode == 1
    assert f"--fd {fd} is not" in result.stderr
    with socket.socket() as unbound:  # a socket, but not listening
        fd = unbound.fileno()
        result = run_quick(["serve", str(tmp_path), "--fd", str(fd)], pass_fds=[fd])
    assert result.returncode == 1
    assert f"--fd {fd} is not a listening socket" in result.stderr


async def test_ctrl_c_during_a_download_with_workers_exits_0(tmp_path: Path) -> None:
    root = tmp_path / "big"
    root.mkdir()
    (root / "huge.bin").write_bytes(b"\0" * (64 * 1024 * 1024))
    process, stderr = await start(
        ["serve", str(root), "--port", "0", "--workers", "2", "--graceful-timeout", "1"],
        start_new_session=True)
    try:
        line = await stderr.until("mhd2: serving", timeout=30)
        match = STARTUP.match(line)
        assert match is not None, line
        with trio.fail_after(30):
            stream = await trio.open_tcp_stream("127.0.0.1", int(match["port"]))
            async with stream:
                await stream.send_all(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
                first = await stream.receive_some(65536)
                assert first.startswith(b"HTTP/1.1 200")
                # the download is under way and stalls: the client reads no more.
                # Ctrl-C in a terminal signals the whole process group.
                os.killpg(process.pid, signal.SIGINT)
                code = await process.wait()
        assert code == 0
        assert "Traceback" not in await stderr.rest()
    finally:
        if process.returncode is None:
            process.kill()
            with trio.fail_after(10):
                await process.wait()


@pytest.mark.parametrize(("level", "logged"), [("info", True), ("critical", False)])
async def test_log_level(app_dir: Path, level: str, logged: bool) -> None:
    argv = ["run", "cli_app:boom", "--port", "0", "--log-level", level, "--no-access-log"]
    async with running(argv, app_dir) as (process, stderr, port):
        assert (await get(port)).status_code == 500
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            assert await process.wait() == 0
        text = await stderr.rest()
    assert ("RuntimeError: boom in the app" in text) is logged


async def test_tls_client_ca_requires_a_client_certificate(app_dir: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    client = ca.issue_cert("client@example.com")
    files = {name: app_dir / f"{name}.pem" for name in ("cert", "key", "ca")}
    files["cert"].write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    server.private_key_pem.write_to_path(str(files["key"]))
    ca.cert_pem.write_to_path(str(files["ca"]))
    argv = ["run", "cli_app:handle", "--port", "0", "--tls-cert", str(files["cert"]),
            "--tls-key", str(files["key"]), "--tls-client-ca", str(files["ca"])]
    process, stderr = await start(argv, cwd=app_dir)
    try:
        line = await stderr.until("mhd2: running", timeout=30)
        assert " on https://127.0.0.1:" in line
        port = int(line.split(":")[-1].split("/")[0])
        context = ssl.create_default_context()
        ca.configure_trust(context)
        with trio.fail_after(20):
            async with httpx.AsyncClient(verify=context) as anonymous:
                with pytest.raises(httpx.HTTPError):
                    await anonymous.get(f"https://127.0.0.1:{port}/")
            client.configure_cert(context)
            async with httpx.AsyncClient(verify=context) as known:
                r = await known.get(f"https://127.0.0.1:{port}/")
        assert r.status_code == 200
    finally:
        if process.returncode is None:
            process.kill()
        with trio.fail_after(10):
            await process.wait()


async def test_sighup_reload_runs_new_code_without_failed_requests(tmp_path: Path) -> None:
    module = tmp_path / "reload_app.py"
    source = """
import mhd2
VERSION = {version!r}

def handle(request):
    return mhd2.action_from_response(
        request, mhd2.Response.from_buffer_copy(200, VERSION.encode()))
"""
    module.write_text(source.format(version="one"))
    argv = ["run", "reload_app:handle", "--port", "0", "--workers", "2", "--no-access-log"]
    statuses: list[int] = []
    bodies: list[bytes] = []
    async with running(argv, tmp_path) as (process, stderr, port):
        done = trio.Event()
        # wake the test once this many answers came, the last 10 of them in accept
        wanted, accept, reached = 10, {b"one"}, trio.Event()

        async def load() -> None:
            # A new connection per request: a kept-alive connection to a
            # stopping worker can be closed just as the next request is sent
            # (a race every server has; clients retry idempotent requests).
            async with httpx.AsyncClient(headers={"Connection": "close"}) as client:
                while not done.is_set():
                    r = await client.get(f"http://127.0.0.1:{port}/")
                    statuses.append(r.status_code)
                    bodies.append(r.content)
                    if len(bodies) >= wanted and set(bodies[-10:]) <= accept:
                        reached.set()

        async def answers(n: int, body: bytes) -> None:
            nonlocal wanted, accept, reached
            wanted, accept, reached = len(bodies) + n, {body}, trio.Event()
            await reached.wait()

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(load)
                await answers(10, b"one")  # under load, from the old code
                module.write_text(source.format(version="second"))
                process.send_signal(signal.SIGHUP)
                await stderr.until("reload done")
                # the old workers finish what they accepted; then every answer
                # comes from the new code
                await answers(10, b"second")
                done.set()
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(40):
            assert await process.wait() == 0
    assert set(statuses) == {200}
    assert bodies[0] == b"one" and bodies[-1] == b"second"


async def test_second_ctrl_c_does_not_wait_for_the_grace_period(tmp_path: Path) -> None:
    root = tmp_path / "big"
    root.mkdir()
    (root / "huge.bin").write_bytes(b"\0" * (64 * 1024 * 1024))
    process, stderr = await start(["serve", str(root), "--port", "0"])  # grace: 30 s
    try:
        line = await stderr.until("mhd2: serving", timeout=30)
        match = STARTUP.match(line)
        assert match is not None, line
        with trio.fail_after(15):
            stream = await trio.open_tcp_stream("127.0.0.1", int(match["port"]))
            async with stream:
                await stream.send_all(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
                assert (await stream.receive_some(65536)).startswith(b"HTTP/1.1 200")
                process.send_signal(signal.SIGINT)
                await stderr.until("mhd2: SIGINT, stopping")
                process.send_signal(signal.SIGINT)
                await stderr.until("mhd2: SIGINT again, stopping now")
                assert await process.wait() == 0
        assert "Traceback" not in await stderr.rest()
    finally:
        if process.returncode is None:
            process.kill()
            with trio.fail_after(10):
                await process.wait()


async def test_ctrl_c_with_workers_lets_requests_in_flight_finish(app_dir: Path) -> None:
    argv = ["run", "cli_app:slow", "--port", "0", "--workers", "2", "--no-access-log"]
    async with running(argv, app_dir, start_new_session=True) as (process, stderr, port):
        answers: list[httpx.Response] = []

        async def ask() -> None:
            answers.append(await get(port))

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ask)
                await stderr.until("slow request started")
                # the terminal's Ctrl-C: SIGINT to the supervisor and every worker,
                # then the supervisor's SIGTERM to the workers
                os.killpg(process.pid, signal.SIGINT)
            assert await process.wait() == 0
    assert answers[0].status_code == 200


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_serve_on_a_unix_socket_with_curl(site: Path, tmp_path: Path) -> None:
    path = tmp_path / "serve.sock"
    process, stderr = await start(["serve", str(site), "--uds", str(path)])
    try:
        line = await stderr.until("mhd2: serving")
        assert str(path) in line
        with trio.fail_after(20):
            result = await trio.run_process(
                ["curl", "--silent", "--show-error", "--unix-socket", str(path),
                 "http://localhost/hello.txt"], capture_stdout=True)
        assert result.stdout == b"Hello from the CLI!\n"
        log = await stderr.until('"GET /hello.txt HTTP/1.1"')
        assert log.startswith("unix - - [")
    finally:
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert await process.wait() == 0
    assert not path.exists()


async def test_proxy_protocol_flag_logs_the_real_client(site: Path) -> None:
    process, stderr = await start(["serve", str(site), "--port", "0", "--proxy-protocol"])
    try:
        match = STARTUP.match(await stderr.until("mhd2: serving"))
        assert match is not None
        with trio.fail_after(10):
            stream = await trio.open_tcp_stream("127.0.0.1", int(match["port"]))
            async with stream:
                await stream.send_all(b"PROXY TCP4 203.0.113.9 10.0.0.1 4711 80\r\n"
                                      b"GET /hello.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                while await stream.receive_some(65536):
                    pass
        log = await stderr.until('"GET /hello.txt HTTP/1.1"')
        assert log.startswith("203.0.113.9 - - [")
    finally:
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            await process.wait()
