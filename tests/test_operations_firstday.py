"""What a new user meets on the first day (issue 24 item 10), tried as one would."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio
from test_cli import REPO, child_env, running, start

APP = """
import mhd2

def handle(request):
    return mhd2.action_from_response(request, mhd2.Response.from_buffer_copy(200, b"hi"))
"""


def test_readme_installs_from_the_checkout_and_splits_the_blocking_command() -> None:
    readme = (REPO / "README.md").read_text()
    assert 'pip install "mhd2[' not in readme and "pip install 'mhd2[" not in readme
    for block in re.findall(r"```sh\n(.*?)```", readme, flags=re.S):
        serving = "mhd2 serve" in block or "mhd2 run" in block
        assert not (serving and "nox" in block), block


def test_getting_started_shows_python_m_mhd2_run() -> None:
    text = (REPO / "docs" / "getting-started.rst").read_text()
    assert "python3 -m mhd2 run hello:answer" in text


async def test_static_404_has_the_listing_style(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    process, stderr = await start(["serve", str(tmp_path), "--port", "0"])
    try:
        line = await stderr.until("mhd2: serving", timeout=30)
        port = int(line.split(":")[-1].split("/")[0])
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            listing = (await client.get("/")).text
            missing = await client.get("/nope")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "text/html; charset=utf-8"
        style = re.search(r"<style>(.*?)</style>", listing, flags=re.S)
        assert style is not None and style.group(1) in missing.text
        assert "<h1>404 Not Found</h1>" in missing.text
    finally:
        process.kill()
        with trio.fail_after(10):
            await process.wait()


async def test_plain_http_to_the_https_port_gets_400_with_a_hint(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    (tmp_path / "day_app.py").write_text(APP)
    cert = trustme.CA().issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    process, stderr = await start(["run", "day_app:handle", "-p", "0", "--tls-cert",
                                   str(tmp_path / "cert.pem"), "--tls-key",
                                   str(tmp_path / "key.pem")], cwd=tmp_path)
    try:
        line = await stderr.until("mhd2: running", timeout=30)
        port = int(line.split(":")[-1].split("/")[0])
        with trio.fail_after(20):
            async with httpx.AsyncClient() as client:  # http:// where https:// was meant
                reply = await client.get(f"http://127.0.0.1:{port}/")
        assert reply.status_code == 400
        assert "use an https:// URL" in reply.text
    finally:
        process.kill()
        with trio.fail_after(10):
            await process.wait()


def test_uds_on_a_regular_file_says_so(tmp_path: Path) -> None:
    regular = tmp_path / "not-a-socket"
    regular.write_text("data")
    result = subprocess.run([sys.executable, "-m", "mhd2", "serve", str(tmp_path), "--uds",
                             str(regular)], capture_output=True, text=True, timeout=30,
                            env=child_env())
    assert result.returncode == 1
    assert "exists and is not a socket" in result.stderr
    assert regular.read_text() == "data"  # left alone


def test_demo_says_where_its_room_is() -> None:
    from mhd2._cli.demo_command import room_of as _room_of

    assert _room_of(None) == "room in this process"
    assert _room_of("redis://:secret@10.0.0.5:6380/2") == "room in Redis at redis://10.0.0.5:6380/2"


async def test_worker_lines_give_pids_and_limits_from_the_cli(tmp_path: Path) -> None:
    (tmp_path / "day_app.py").write_text(APP)
    argv = ["run", "day_app:handle", "-p", "0", "--workers", "2", "--per-ip-limit", "1",
            "--backlog", "16", "--no-access-log"]
    async with running(argv, tmp_path) as (_process, stderr, port):
        ready = [line for line in stderr.seen if " ready" in line]
        assert len(ready) == 2 and all(re.search(r"\(pid \d+\) ready", line) for line in ready)
        # --per-ip-limit 1 in each worker: hold one connection per worker open
        holders = []
        refused = 0
        for _ in range(6):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await trio.to_thread.run_sync(sock.recv, 100)
            refused += head.startswith(b"HTTP/1.1 503")
            holders.append(sock)
        for sock in holders:
            sock.close()
    assert refused >= 4  # two workers, one connection each
