"""The demo's page in headless Chromium: how it looks at desktop and phone widths,
what it remembers, and how its three modes live through a restart of the demo.

Runs only when ``MHD2_BROWSER=1`` (the ``browser`` nox session sets it), with
Debian's ``chromium`` (``/usr/bin/chromium`` or ``MHD2_CHROMIUM``) and
Playwright for Python -- never ``playwright install``.  Screenshots go to
``MHD2_SCREENSHOTS`` (a directory) if set, else to the test's tmp directory.
"""

from __future__ import annotations

import importlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("MHD2_CHROMIUM", "/usr/bin/chromium")
STARTED = re.compile(r"^mhd2 demo: chat on (http://127\.0\.0\.1:(\d+)/) ")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT_MS = 10_000
#: (name, width, height) in CSS pixels: a laptop and a phone (iPhone 12-14 size).
VIEWPORTS = [("desktop", 1280, 800), ("phone", 390, 844)]
MODES = [("poll", "", "long polling"), ("sse", "?mode=sse", "server-sent events"),
         ("ws", "?mode=ws", "WebSocket")]

pytestmark = pytest.mark.skipif(
    os.environ.get("MHD2_BROWSER") != "1",
    reason="browser test: run with MHD2_BROWSER=1 (nox -s browser)",
)


@contextmanager
def demo(port: int = 0) -> Iterator[tuple[str, int]]:
    """``python -m mhd2 demo --port PORT`` (this checkout's mhd2): (url, port); SIGINT stops it."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, "-m", "mhd2", "demo", "--port", str(port)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=env, text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        match = STARTED.match(line)
        assert match is not None, f"unexpected demo output: {line!r}"
        yield match[1], int(match[2])
    finally:
        process.send_signal(signal.SIGINT)
        try:
            assert process.wait(timeout=15) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A persistent Chromium context (its own profile, so localStorage persists)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} not found: apt-get install chromium (or set MHD2_CHROMIUM)")
    sync_playwright = importlib.import_module("playwright.sync_api").sync_playwright
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield context
        finally:
            context.close()


class Problems:
    """Console errors and failed or 4xx/5xx responses seen by a page."""

    def __init__(self, page: Any) -> None:
        self.seen: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.seen.append(f"page error: {e}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.seen.append(f"console: {message.text}")

    def _failed(self, request: Any) -> None:
        # A poll or stream cut by navigating to the next mode is aborted: fine.
        if request.failure != "net::ERR_ABORTED":
            self.seen.append(f"failed ({request.failure}): {request.url}")

    def _response(self, response: Any) -> None:
        if response.status >= 400:
            self.seen.append(f"{response.status}: {response.url}")


def screenshot_dir(tmp_path: Path) -> Path:
    where = Path(os.environ.get("MHD2_SCREENSHOTS") or tmp_path / "screenshots")
    where.mkdir(parents=True, exist_ok=True)
    return where


def wait_status(page: Any, prefix: str) -> None:
    page.wait_for_function(
        f"document.getElementById('status').textContent.startsWith({prefix!r})",
        timeout=WAIT_MS)


def send(page: Any, text: str, name: str | None = None) -> None:
    if name is not None:
        page.fill("#name", name)
    page.fill("#text", text)
    page.click("#send button")


def message(page: Any, text: str) -> Any:
    return page.locator("#messages li", has=page.locator(".text", has_text=text)).first


def test_page_at_desktop_and_phone_widths(browser: Any, tmp_path: Path) -> None:
    shots = screenshot_dir(tmp_path)
    with demo() as (url, _):
        sender = browser.new_page()
        sender.goto(url)
        wait_status(sender, "long polling")
        long_text = ("A longer message, to see how the page wraps text on a narrow screen: "
                     "pneumonoultramicroscopicsilicovolcanoconiosis_without_any_spaces_at_all")
        for i, (who, text) in enumerate([("alice", "Hello from the long-polling page!"),
                                         ("bob", "Hi alice, this is bob."),
                                         ("carol", long_text)]):
            send(sender, text, name=who)
            message(sender, text).wait_for(state="visible", timeout=WAIT_MS)
            assert sender.locator("#messages li[data-id]").count() == i + 1
        sender.close()
        for view, width, height in VIEWPORTS:
            page = browser.new_page()
            page.set_viewport_size({"width": width, "height": height})
            problems = Problems(page)
            for mode, query, status in MODES:
                page.goto(url + query)
                wait_status(page, status)
                message(page, long_text).wait_for(state="visible", timeout=WAIT_MS)
                # The three modes link to each other; this one is marked current.
                for other, _, _ in MODES:
                    link = page.locator(f"#mode-{other}")
                    assert link.is_visible()
                    assert link.bounding_box()["width"] > 30
                    current = link.get_attribute("aria-current")
                    assert (current == "page") == (other == mode), (view, mode, other)
                # Every message shows its time (HH:MM, local) and its full date as a title.
                times = page.locator("#messages li[data-id] time")
                assert times.count() == 3
                for t in times.all_text_contents():
                    assert re.fullmatch(r"\d{1,2}:\d{2}(\s?[AP]M)?", t), t
                assert times.first.get_attribute("title")
                # The things a user needs are visible and inside the viewport.
                for selector in ("h1", "#status", "#messages", "#name", "#text",
                                 "#send button"):
                    box = page.locator(selector).bounding_box()
                    assert box is not None and page.locator(selector).is_visible(), selector
                    assert box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, selector
                    assert box["y"] + box["height"] <= height + 0.5, (view, mode, selector)
                # No horizontal scrolling at this width (the long word wraps).
                overflow = page.evaluate(
                    "[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
                assert overflow[0] <= overflow[1], (view, mode, overflow)
                text_box = page.locator("#text").bounding_box()
                assert text_box["width"] >= min(150, width / 3), (view, text_box)
                shot = shots / f"demo-{view}-{mode}.png"
                page.screenshot(path=str(shot))
                assert shot.stat().st_size > 5000
            # The icon is there, and nothing failed (no favicon 404, no script error).
            icon = page.evaluate("document.querySelector('link[rel=icon]').href")
            assert icon.startswith("data:image/svg+xml")
            assert page.evaluate("fetch('/favicon.ico').then(r => r.status)") == 200
            assert problems.seen == [], problems.seen
            page.close()
    print(f"screenshots in {shots}")


def test_name_is_remembered_across_visits(browser: Any) -> None:
    with demo() as (url, _):
        page = browser.new_page()
        page.goto(url + "?mode=ws")
        wait_status(page, "WebSocket")
        assert page.input_value("#name") == ""
        send(page, "first visit", name="dora")
        message(page, "first visit").wait_for(state="visible", timeout=WAIT_MS)
        page.close()
        again = browser.new_page()
        again.goto(url + "?mode=sse")
        wait_status(again, "server-sent events")
        assert again.input_value("#name") == "dora"
        line = message(again, "first visit")
        line.wait_for(state="visible", timeout=WAIT_MS)
        assert line.locator(".name").text_content() == "dora"


def test_messages_typed_while_a_send_is_answered_are_not_lost(browser: Any) -> None:
    """The text box is emptied when a message is sent, not when the POST answers:
    the next message, typed while the answer is on its way, is sent as typed."""
    with demo() as (url, _):
        page = browser.new_page()
        page.goto(url)
        wait_status(page, "long polling")
        held: list[Any] = []
        page.route("**/send", lambda route: held.append(route))  # each POST /send waits for continue_()
        page.fill("#name", "fred")
        for n in range(3):
            page.fill("#text", f"typed quickly {n}")
            if held:  # the previous message's answer arrives after this one was typed
                with page.expect_response("**/send"):
                    held.pop().continue_()
                page.evaluate("new Promise((resolve) => setTimeout(resolve, 0))")
            # Old pages emptied the box on the answer, and the click sent nothing.
            with page.expect_request("**/send", timeout=WAIT_MS):
                page.click("#send button")
            while not held:  # the route handler runs in the next dispatch
                page.wait_for_timeout(10)
        held.pop().continue_()
        for n in range(3):
            message(page, f"typed quickly {n}").wait_for(state="visible", timeout=WAIT_MS)


def test_open_pages_follow_a_restart_of_the_demo(browser: Any, tmp_path: Path) -> None:
    """Ids never repeat, not even after a restart (in-process ids start with the
    start time): every mode shows the new messages after the old ones."""
    with demo() as (url, port):
        pages = {}
        for mode, query, status in MODES:
            pages[mode] = browser.new_page()
            pages[mode].goto(url + query)
            wait_status(pages[mode], status)
        for n in range(3):
            send(pages["poll"], f"before the restart {n}", name="eve")
        for page in pages.values():
            message(page, "before the restart 2").wait_for(state="visible", timeout=WAIT_MS)
    _wait_port_free(port)
    with demo(port) as (url, _):
        send_over_http(port, "after the restart")
        before = [f"before the restart {n}" for n in range(3)]
        for mode, page in pages.items():
            # Long polling and the WebSocket back off, SSE retries after 2 s.
            message(page, "after the restart").wait_for(state="visible", timeout=20_000)
            texts = page.locator("#messages li[data-id] .text").all_text_contents()
            assert texts == [*before, "after the restart"], (mode, texts)
        # the poll's cursor is from before what the new run holds: it says so
        assert pages["poll"].locator("#messages li.note").first.text_content().startswith(
            "The server restarted")
        wait_status(pages["ws"], "WebSocket (GET /ws)")  # reconnected, not "reload"
        # And they keep working: one sent from the reconnected WebSocket page.
        send(pages["ws"], "over the new socket")
        shots = screenshot_dir(tmp_path)
        for mode, page in pages.items():
            message(page, "over the new socket").wait_for(state="visible", timeout=WAIT_MS)
            page.screenshot(path=str(shots / f"demo-restarted-{mode}.png"))


def send_over_http(port: int, text: str) -> None:
    import json
    import urllib.request

    body = json.dumps({"name": "server", "text": text}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/send", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


def _wait_port_free(port: int) -> None:
    """The demo has exited (its process was waited for); check the port can be bound."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
