"""A callback that forgets ``return``: the request is aborted, one WARNING per callback."""

from __future__ import annotations

import socket
from pathlib import Path

import trio
from test_cli import running

APP = """
import mhd2

def forgot(request):
    mhd2.action_from_response(request, mhd2.Response.from_buffer_copy(200, b"lost"))

def also_forgot(request):
    pass

def dispatch(request):
    if request.path == "/other":
        return also_forgot(request)
    return forgot(request)

def aborts_on_purpose(request):
    return mhd2.action_abort_request(request)
"""


def raw_get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        return data


async def test_none_return_aborts_and_warns_once_per_callback(tmp_path: Path) -> None:
    (tmp_path / "none_app.py").write_text(APP)
    argv = ["run", "none_app:forgot", "-p", "0", "--no-access-log"]
    async with running(argv, tmp_path) as (process, stderr, port):
        for _ in range(3):
            assert await trio.to_thread.run_sync(raw_get, port, "/") == b""  # no reply
        process.terminate()
        text = await stderr.rest()
    warnings = [line for line in text.splitlines() if "returned None" in line]
    assert len(warnings) == 1, text
    assert "WARNING" in warnings[0] and "none_app.forgot" in warnings[0]
    assert "action_abort_request" in warnings[0]


async def test_abort_on_purpose_is_not_warned(tmp_path: Path) -> None:
    (tmp_path / "none_app.py").write_text(APP)
    argv = ["run", "none_app:aborts_on_purpose", "-p", "0", "--no-access-log"]
    async with running(argv, tmp_path) as (process, stderr, port):
        assert await trio.to_thread.run_sync(raw_get, port, "/") == b""
        process.terminate()
        text = await stderr.rest()
    assert "returned None" not in text
