"""``demo --redis`` in a real browser: pages on two demo processes share one room,
and a page on a process that restarts carries on without reloading.

Runs only when ``MHD2_BROWSER=1`` (``nox -s browser``) with Debian's
``chromium``; needs ``redis-server`` too (``nox -s deploy`` installs it; .ci/run
runs that session first), else it is skipped.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from _harness import free_port

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("MHD2_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT_MS = 10_000
REDIS_SERVER = shutil.which("redis-server")

pytestmark = pytest.mark.skipif(
    os.environ.get("MHD2_BROWSER") != "1",
    reason="browser test: run with MHD2_BROWSER=1 (nox -s browser)",
)


@contextmanager
def redis(tmp: Path) -> Iterator[str]:
    if REDIS_SERVER is None:
        pytest.skip("needs redis-server (apt-get install redis-server; nox -s deploy does)")
    port = free_port()
    process = subprocess.Popen(
        [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(tmp),
         "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:  # an external program: its port is all there is to wait on
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=15)


@contextmanager
def demo(url: str, port: int) -> Iterator[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, "-m", "mhd2", "demo", "--redis", url, "--port", str(port)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=env, text=True)
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert re.match(r"^mhd2 demo: chat on http://", line), line
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            assert process.wait(timeout=15) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def send(page: Any, name: str, text: str) -> None:
    page.fill("#name", name)
    page.fill("#text", text)
    page.click("#send button")


def shown(page: Any) -> list[str]:
    return list(page.locator("#messages li[data-id] .text").all_text_contents())


def wait_text(page: Any, text: str, timeout_ms: int = WAIT_MS) -> None:
    page.locator("#messages li .text", has_text=text).first.wait_for(
        state="visible", timeout=timeout_ms)


def test_pages_on_two_demo_processes_share_a_room_and_survive_a_restart(tmp_path: Path) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} not found: apt-get install chromium (or set MHD2_CHROMIUM)")
    sync_playwright = importlib.import_module("playwright.sync_api").sync_playwright
    port_a, port_b = free_port(), free_port()
    with redis(tmp_path) as url, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            with demo(url, port_a) as a:
                with demo(url, port_b) as b:
                    poll_a = context.new_page()
                    poll_a.goto(a)
                    sse_b = context.new_page()
                    sse_b.goto(b + "?mode=sse")
                    ws_b = context.new_page()
                    ws_b.goto(b + "?mode=ws")
                    for page, how in ((poll_a, "long polling"), (sse_b, "server-sent events"),
                                      (ws_b, "WebSocket")):
                        page.wait_for_function(
                            f"document.getElementById('status').textContent.startsWith({how!r})",
                            timeout=WAIT_MS)
                    send(poll_a, "ann", "from a, long polling")
                    wait_text(sse_b, "from a, long polling")
                    send(sse_b, "bo", "from b, event stream")
                    send(ws_b, "cy", "from b, websocket")
                    for page in (poll_a, sse_b, ws_b):
                        wait_text(page, "from b, websocket")
                        assert shown(page) == ["from a, long polling", "from b, event stream",
                                               "from b, websocket"]
                # b is stopped; its pages reconnect to the restarted b: same room, and
                # their cursors are the stream's ids, so they carry on without a note
                with demo(url, port_b):
                    body = json.dumps({"name": "ann", "text": "while b was away"}).encode()
                    request = urllib.request.Request(
                        a + "send", data=body, headers={"Content-Type": "application/json"})
                    with urllib.request.urlopen(request, timeout=10) as answer:
                        assert answer.status == 200
                    for page in (poll_a, sse_b, ws_b):
                        wait_text(page, "while b was away", timeout_ms=20_000)
                        assert shown(page) == ["from a, long polling", "from b, event stream",
                                               "from b, websocket", "while b was away"]
                        assert page.locator("#messages li.note").count() == 0
        finally:
            context.close()
