"""The WebSocket chat example in a real browser: two headless Chromium pages chat.

Runs only when ``MHD2_BROWSER=1`` (the ``browser`` nox session sets it), with
Debian's ``chromium`` (``/usr/bin/chromium`` or ``MHD2_CHROMIUM``) and
Playwright for Python -- never ``playwright install``.  The example runs as
users run it: ``python examples/websocket_chat.py --port 0``.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("MHD2_CHROMIUM", "/usr/bin/chromium")
STARTED = re.compile(r"^websocket_chat: listening on (http://127\.0\.0\.1:\d+/) ")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT = 10.0

pytestmark = pytest.mark.skipif(
    os.environ.get("MHD2_BROWSER") != "1",
    reason="browser test: run with MHD2_BROWSER=1 (nox -s browser)",
)


@pytest.fixture
def chat_url() -> Iterator[str]:
    env = dict(os.environ)  # this checkout's mhd2, whatever the interpreter has installed
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, "-u", str(REPO / "examples" / "websocket_chat.py"), "--port", "0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = STARTED.match(line)
        assert match is not None, f"unexpected output: {line!r}"
        yield match[1]
    finally:
        try:
            process.communicate("\n", timeout=15)  # Enter stops the example
            assert process.returncode == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def _send(page: Any, name: str, text: str) -> None:
    page.fill("#name", name)
    page.fill("#text", text)
    page.click("#send button")


def test_two_browsers_chat_over_websockets(chat_url: str) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} not found: apt-get install chromium (or set MHD2_CHROMIUM)")
    sync_playwright = importlib.import_module("playwright.sync_api").sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            alice, bob = browser.new_page(), browser.new_page()
            for page in (alice, bob):
                page.goto(chat_url, timeout=WAIT * 1000)
                page.locator("#send button:enabled").wait_for(timeout=WAIT * 1000)
            alice.locator("#status", has_text="2 online").wait_for(timeout=WAIT * 1000)
            _send(alice, "alice", "hello from alice")
            _send(bob, "bob", "hi alice, ünïcödé ✓")
            for page in (alice, bob):
                for text in ("hello from alice", "hi alice, ünïcödé ✓"):
                    page.locator("#messages li .text", has_text=text).first.wait_for(
                        state="visible", timeout=WAIT * 1000)
            names = alice.locator("#messages li .name").all_text_contents()
            assert names == ["alice", "bob"]
            bob.close()
            alice.locator("#status", has_text="1 online").wait_for(timeout=WAIT * 1000)
        finally:
            browser.close()
