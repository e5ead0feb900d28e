"""The chat demo in a real browser: two headless Chromium pages see each other's messages.

Runs only when ``MHD2_BROWSER=1`` (the ``browser`` nox session sets it); it
needs Debian's ``chromium`` (``/usr/bin/chromium``, or ``MHD2_CHROMIUM``) and
Playwright for Python -- never ``playwright install``: the browser is the
system's.  The demo runs as the user runs it, ``python -m mhd2 demo --port 0``.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("MHD2_CHROMIUM", "/usr/bin/chromium")
STARTED = re.compile(r"^mhd2 demo: chat on (http://127\.0\.0\.1:\d+/) ")

pytestmark = pytest.mark.skipif(
    os.environ.get("MHD2_BROWSER") != "1",
    reason="browser test: run with MHD2_BROWSER=1 (nox -s browser)",
)


@pytest.fixture
def demo_url() -> Iterator[str]:
    """Start ``python -m mhd2 demo --port 0``; yield its URL; stop it with SIGINT."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, "-m", "mhd2", "demo", "--port", "0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=env, text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()  # the startup line (or an error and EOF)
        match = STARTED.match(line)
        assert match is not None, f"unexpected demo output: {line!r}"
        yield match[1]
    finally:
        process.send_signal(2)  # SIGINT: the demo stops gracefully
        try:
            assert process.wait(timeout=15) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def _playwright() -> Any:
    """``playwright.sync_api.sync_playwright`` (imported here: only this session installs it)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} not found: apt-get install chromium (or set MHD2_CHROMIUM)")
    return importlib.import_module("playwright.sync_api").sync_playwright


def _wait_for_text(page: Any, text: str, timeout: float) -> float:
    """Seconds until a message with *text* is listed on *page* (fails after *timeout*)."""
    start = time.monotonic()
    page.locator("#messages li .text", has_text=text).first.wait_for(
        state="visible", timeout=timeout * 1000)
    return time.monotonic() - start


def _send(page: Any, name: str, text: str) -> None:
    page.fill("#name", name)
    page.fill("#text", text)
    page.click("#send button")


def test_two_pages_see_each_others_messages(demo_url: str, tmp_path: Path) -> None:
    sync_playwright = _playwright()
    profile = tmp_path / "profile"
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )
        try:
            alice = context.new_page()
            bob = context.new_page()
            carol = context.new_page()
            alice.goto(demo_url)  # long polling
            bob.goto(demo_url + "?mode=sse")  # server-sent events
            carol.goto(demo_url + "?mode=ws")  # the WebSocket variant
            for page, how in ((alice, "long polling"), (bob, "server-sent events"),
                              (carol, "WebSocket")):
                page.wait_for_function(
                    f"document.getElementById('status').textContent.startsWith({how!r})",
                    timeout=10_000)
            # Both clients are waiting now (a parked poll, a suspended stream).
            _send(alice, "alice", "hello from the long-polling page")
            took = _wait_for_text(bob, "hello from the long-polling page", timeout=2.0)
            assert took < 2.0
            _send(bob, "bob", "hello from the event-stream page")
            took = _wait_for_text(alice, "hello from the event-stream page", timeout=2.0)
            assert took < 2.0
            _send(carol, "carol", "hello from the websocket page")
            for page in (alice, bob):
                took = _wait_for_text(page, "hello from the websocket page", timeout=2.0)
                assert took < 2.0
            _wait_for_text(carol, "hello from the event-stream page", timeout=2.0)
            # Each page lists the messages sent while it was open, in order.
            for page in (alice, bob):
                _wait_for_text(page, "hello from the event-stream page", timeout=2.0)
                _wait_for_text(page, "hello from the websocket page", timeout=2.0)
                texts = page.locator("#messages li .text").all_text_contents()
                assert texts == ["hello from the long-polling page",
                                 "hello from the event-stream page",
                                 "hello from the websocket page"]
                names = page.locator("#messages li .name").all_text_contents()
                assert names == ["alice", "bob", "carol"]
            shot = tmp_path / "chat.png"
            alice.screenshot(path=str(shot), full_page=True)
            bob.screenshot(path=str(tmp_path / "chat-sse.png"), full_page=True)
            carol.screenshot(path=str(tmp_path / "chat-ws.png"), full_page=True)
            assert shot.stat().st_size > 1000
            print(f"screenshots: {shot} {tmp_path / 'chat-sse.png'}")
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)
