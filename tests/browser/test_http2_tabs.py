"""Ten tabs of the chat demo in headless Chromium over TLS: HTTP/2 keeps every
long poll parked at once; HTTP/1.1 stalls at Chromium's six connections per host.

Runs only when ``MHD2_BROWSER=1`` (the ``browser`` nox session sets it), with
Debian's ``chromium`` (``/usr/bin/chromium`` or ``MHD2_CHROMIUM``) and
Playwright for Python -- never ``playwright install``.  The demo's chat runs
in this process (a trio run in a thread) with a trustme certificate.
"""

from __future__ import annotations

import importlib
import os
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

from mhd2.demo import Chat, chat_server
from mhd2.tls import server_context

CHROMIUM = os.environ.get("MHD2_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TABS = 10

pytestmark = pytest.mark.skipif(
    os.environ.get("MHD2_BROWSER") != "1",
    reason="browser test: run with MHD2_BROWSER=1 (nox -s browser)",
)


@contextmanager
def chat_over_tls(**options: Any) -> Iterator[tuple[int, Chat, trio.lowlevel.TrioToken]]:
    """The demo's chat over TLS in a thread: (port, room, the run's trio token)."""
    cert = trustme.CA().issue_cert("localhost", "127.0.0.1")
    ctx = server_context(cert.cert_chain_pems[0].bytes(), cert.private_key_pem.bytes())
    started: queue.Queue[tuple[int, Chat, trio.lowlevel.TrioToken, trio.Event]] = queue.Queue()

    async def main() -> None:
        async with chat_server(tls=ctx, port=0, **options) as (daemon, room):
            stop = trio.Event()
            started.put((daemon.port, room, trio.lowlevel.current_trio_token(), stop))
            await stop.wait()

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    port, room, token, stop = started.get(timeout=10)
    try:
        yield port, room, token
    finally:
        token.run_sync_soon(stop.set)
        thread.join(timeout=15)


def waiting(room: Chat) -> int:
    """The clients waiting in the room (read from another thread: a snapshot)."""
    return sum(room.hub.stats().subscribers.values())


def _wait(predicate: Any, timeout: float) -> bool:
    """Poll *predicate* (a value another thread changes) until true or *timeout*."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def _browser(tmp_path: Path) -> Any:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} not found: apt-get install chromium (or set MHD2_CHROMIUM)")
    return importlib.import_module("playwright.sync_api").sync_playwright


def test_ten_tabs_park_at_once_over_http2_and_one_message_reaches_all(tmp_path: Path) -> None:
    sync_playwright = _browser(tmp_path)
    with chat_over_tls() as (port, room, token), sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=ARGS,
            ignore_https_errors=True)
        try:
            url = f"https://127.0.0.1:{port}/"
            pages = [context.new_page() for _ in range(TABS)]
            for page in pages:
                page.goto(url)
            for page in pages:
                page.wait_for_function(
                    "document.getElementById('status').textContent.startsWith('long polling')",
                    timeout=10_000)
            protocols = {page.evaluate(
                "performance.getEntriesByType('navigation')[0].nextHopProtocol")
                for page in pages}
            assert protocols == {"h2"}
            # Every tab's long poll is parked at the same time, on one connection.
            assert _wait(lambda: waiting(room) >= TABS, 10), waiting(room)
            trio.from_thread.run(room.post, "test", "one message for ten tabs",
                                 trio_token=token)
            for page in pages:
                page.locator("#messages li .text", has_text="one message for ten tabs").first \
                    .wait_for(state="visible", timeout=5_000)
        finally:
            context.close()


def test_over_http11_the_same_tabs_stall_at_six(tmp_path: Path) -> None:
    sync_playwright = _browser(tmp_path)
    with chat_over_tls(http2=False) as (port, room, _), sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=ARGS,
            ignore_https_errors=True)
        try:
            url = f"https://127.0.0.1:{port}/"
            pages = [context.new_page() for _ in range(TABS)]
            for page in pages:
                try:
                    page.goto(url, wait_until="commit", timeout=3_000)
                except Exception:  # playwright's TimeoutError: the tab waits for a connection
                    pass
            _wait(lambda: waiting(room) >= 6, 10)
            # Chromium keeps at most six HTTP/1.1 connections per host: six
            # polls park, and nothing else gets through.
            assert not _wait(lambda: waiting(room) > 6, 3)
            assert waiting(room) == 6
        finally:
            context.close()
