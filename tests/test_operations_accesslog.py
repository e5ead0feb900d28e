"""The access log an operator reads: the ``mhd2.access`` logger, three formats, real statuses."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import trio
from test_cli import running

APP = """
import mhd2

def handle(request):
    if request.path == "/boom":
        raise RuntimeError("boom in the app")
    if request.path == "/upload":
        return mhd2.action_process_upload_full(request, 100, lambda r, data: None)
    body = b"hello"
    return mhd2.action_from_response(request, mhd2.Response.from_buffer_copy(200, body))
"""


def exchange(port: int, data: bytes) -> bytes:
    """Send *data* on a fresh connection; what came back until the server closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(data)
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
        return got


BAD = [
    (b"GET /boom HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 500, "/boom"),
    (b"GET /ok HTTP/1.1\r\nHost: x\r\nUser-Agent: t\x01ool\r\nConnection: close\r\n\r\n",
     200, "/ok"),
    (b"BAD\x00LINE\r\n\r\n", 400, "-"),
    (b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "-"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 3000 + b"\r\n\r\n", 431, "-"),
    (b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", 413, "/upload"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n", 408, "-"),  # never finished: --timeout 1
]


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "log_app.py").write_text(APP)
    return tmp_path


async def test_json_lines_carry_the_real_status_of_every_reply(app_dir: Path) -> None:
    argv = ["run", "log_app:handle", "-p", "0", "--timeout", "1", "--max-header-size", "2048",
            "--access-log-format", "json", "--log-level", "critical"]
    async with running(argv, app_dir) as (process, stderr, port):
        for data, status, _ in BAD:
            reply = await trio.to_thread.run_sync(exchange, port, data)
            assert reply.startswith(f"HTTP/1.1 {status} ".encode()), (status, reply[:80])
        process.terminate()
        text = await stderr.rest()
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert [(r["status"], r["target"]) for r in records] == [(s, t) for _, s, t in BAD]
    ok = records[1]
    assert set(ok) == {"time", "client", "method", "target", "protocol", "status", "bytes",
                       "duration_ms", "user_agent", "referer", "request_id"}
    assert ok["client"] == "127.0.0.1" and ok["method"] == "GET" and ok["bytes"] == 5
    assert ok["user_agent"] == "t\x01ool" and ok["protocol"] == "HTTP/1.1"
    assert records[2]["method"] == "-"


@pytest.mark.parametrize("fmt", ["common", "combined"])
async def test_common_and_combined(app_dir: Path, fmt: str) -> None:
    argv = ["run", "log_app:handle", "-p", "0", "--access-log-format", fmt]
    request = (b"GET /x HTTP/1.1\r\nHost: x\r\nReferer: http://r/\r\nUser-Agent: agent\r\n"
               b"Connection: close\r\n\r\n")
    async with running(argv, app_dir) as (_process, stderr, port):
        await trio.to_thread.run_sync(exchange, port, request)
        line = await stderr.until('"GET /x HTTP/1.1"')
    assert line.startswith("127.0.0.1 - - [")
    assert '"GET /x HTTP/1.1" 200 5' in line
    assert ('"http://r/" "agent"' in line) is (fmt == "combined")


async def test_log_config_routes_the_access_log(app_dir: Path) -> None:
    target = app_dir / "access.log"
    config = {
        "version": 1,
        "formatters": {"bare": {"format": "ACCESS %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(target),
                              "formatter": "bare"}},
        "loggers": {"mhd2.access": {"handlers": ["file"], "level": "INFO",
                                    "propagate": False}},
    }
    (app_dir / "logging.json").write_text(json.dumps(config))
    argv = ["run", "log_app:handle", "-p", "0", "--log-config", str(app_dir / "logging.json")]
    async with running(argv, app_dir) as (process, stderr, port):
        await trio.to_thread.run_sync(
            exchange, port, b"GET /cfg HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        process.terminate()
        text = await stderr.rest()
    assert "/cfg" not in text
    assert target.read_text().startswith("ACCESS 127.0.0.1 - - [")


async def test_log_config_in_yaml(app_dir: Path) -> None:
    pytest.importorskip("yaml")
    target = app_dir / "access.log"
    (app_dir / "logging.yaml").write_text(f"""
version: 1
handlers:
  file: {{class: logging.FileHandler, filename: "{target}"}}
loggers:
  mhd2.access: {{handlers: [file], level: INFO, propagate: false}}
""")
    argv = ["run", "log_app:handle", "-p", "0", "--log-config", str(app_dir / "logging.yaml"),
            "--access-log-format", "json"]
    async with running(argv, app_dir) as (process, stderr, port):
        await trio.to_thread.run_sync(
            exchange, port, b"GET /yaml HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        process.terminate()
        await stderr.rest()
    assert json.loads(target.read_text().splitlines()[0])["target"] == "/yaml"


def test_bad_log_config_exits_2(app_dir: Path) -> None:
    import subprocess
    import sys

    from test_cli import child_env

    (app_dir / "bad.json").write_text("{not json")
    result = subprocess.run([sys.executable, "-m", "mhd2", "run", "log_app:handle", "-p", "0",
                             "--log-config", str(app_dir / "bad.json")], cwd=app_dir,
                            capture_output=True, text=True, timeout=30, env=child_env())
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "bad.json" in result.stderr
