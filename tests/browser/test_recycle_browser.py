"""The demo as issue 20 asks a new user to try it: three browser tabs over HTTP/2
(long polling, server-sent events, WebSocket), then a worker recycle, and no
message lost.

``python -m mhd2 demo --redis URL --workers 2`` over TLS (ALPN ``h2``) with a
trustme certificate; Debian's Chromium through Playwright. SIGHUP makes the
supervisor replace every worker, one at a time; the tabs' connections to the
old workers are ended (long polls 204 with ``X-Cursor``, SSE a last
``retry:``, WebSocket 1012) and each tab comes back with its cursor to a new
worker. Messages sent before, during and after the recycle must be shown by
every tab exactly once, in order, with no "some messages were missed" note.

Runs only when ``MHD2_BROWSER=1`` (``nox -s browser``); needs ``redis-server``
(``nox -s deploy`` installs it and .ci/run runs that session first).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme
from _harness import free_port
from test_redis_chat_browser import ARGS, CHROMIUM, REPO, redis, send, shown, wait_text

pytestmark = pytest.mark.skipif(
    os.environ.get("MHD2_BROWSER") != "1",
    reason="browser test: run with MHD2_BROWSER=1 (nox -s browser)",
)

MODES = (("", "long polling"), ("?mode=sse", "server-sent events"), ("?mode=ws", "WebSocket"))


class Lines:
    """The supervisor's stderr, read by a thread; ``wait_for`` blocks for a line."""

    def __init__(self, stream: Any) -> None:
        self._seen: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            with self._cond:
                self._seen.append(line)
                self._cond.notify_all()
        with self._cond:
            self._seen.append("")  # EOF
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float, start: int = 0) -> int:
        """Index of the first line from *start* matching *pattern* (fails after *timeout*)."""
        regex = re.compile(pattern)

        def found() -> int | None:
            for index in range(start, len(self._seen)):
                if regex.search(self._seen[index]):
                    return index
            return None

        with self._cond:
            assert self._cond.wait_for(lambda: found() is not None, timeout=timeout), (
                f"no line matching {pattern!r}; stderr so far: {self._seen!r}")
            index = found()
            assert index is not None
            return index

    def __len__(self) -> int:
        with self._cond:
            return len(self._seen)


@contextmanager
def demo_with_workers(redis_url: str, port: int, cert: Path, key: Path) -> Iterator[
        tuple[subprocess.Popen[str], Lines]]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, "-m", "mhd2", "demo", "--redis", redis_url, "--port", str(port),
         "--workers", "2", "--tls-cert", str(cert), "--tls-key", str(key),
         "--graceful-timeout", "10"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=env, text=True)
    try:
        assert process.stderr is not None
        lines = Lines(process.stderr)
        lines.wait_for(r"^mhd2 demo: chat on https://", timeout=30)
        yield process, lines
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def post(url: str, ca: trustme.CA, name: str, text: str) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    body = json.dumps({"name": name, "text": text}).encode()
    request = urllib.request.Request(url + "send", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10, context=context) as answer:
        assert answer.status == 200


def test_three_tabs_over_http2_lose_no_message_across_a_worker_recycle(tmp_path: Path) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} not found: apt-get install chromium (or set MHD2_CHROMIUM)")
    sync_playwright = importlib.import_module("playwright.sync_api").sync_playwright
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued.private_key_pem.write_to_path(str(key))
    issued.cert_chain_pems[0].write_to_path(str(cert))
    port = free_port()
    url = f"https://127.0.0.1:{port}/"
    with redis(tmp_path) as redis_url, sync_playwright() as p, \
            demo_with_workers(redis_url, port, cert, key) as (process, lines):
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=ARGS,
            ignore_https_errors=True)
        try:
            pages = []
            for query, how in MODES:
                page = context.new_page()
                page.goto(url + query)
                page.wait_for_function(
                    f"document.getElementById('status').textContent.startsWith({how!r})",
                    timeout=20_000)
                protocol = page.evaluate(
                    "performance.getEntriesByType('navigation')[0].nextHopProtocol")
                assert protocol == "h2", f"{how}: the page came over {protocol!r}, not HTTP/2"
                pages.append(page)
            expected: list[str] = []
            for number, page in enumerate(pages):
                text = f"before the recycle {number}"
                send(page, f"tab{number}", text)
                expected.append(text)
            for page in pages:
                wait_text(page, expected[-1])

            mark = len(lines)
            process.send_signal(signal.SIGHUP)  # replace every worker, one at a time
            for number in range(6):  # messages while workers come and go
                text = f"during the recycle {number}"
                post(url, ca, "poster", text)
                expected.append(text)
            lines.wait_for(r"reload done", timeout=60, start=mark)
            for number, page in enumerate(pages):
                text = f"after the recycle {number}"
                send(page, f"tab{number}", text)
                expected.append(text)

            for page, (_, how) in zip(pages, MODES, strict=True):
                wait_text(page, expected[-1], timeout_ms=30_000)
                assert shown(page) == expected, f"{how} tab"
                assert page.locator("#messages li.note").count() == 0, f"{how} tab"
        finally:
            context.close()
