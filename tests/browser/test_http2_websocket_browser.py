"""Chromium opens WebSockets over HTTP/2 (RFC 8441) when the server offers it: a
page on an ``https`` h2 origin opens 20 WebSockets, and all of them share the
page's one connection.

Runs only when ``MHD2_BROWSER=1`` (the ``browser`` nox session sets it), with
Debian's ``chromium`` (``/usr/bin/chromium`` or ``MHD2_CHROMIUM``) and
Playwright for Python -- never ``playwright install``.  The daemon runs in
this process (a trio run in a thread) with a trustme certificate.
"""

from __future__ import annotations

import importlib
import os
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

import mhd2
from mhd2.enums import ConnectionEvent
from mhd2.tls import server_context
from mhd2.websocket import WebSocket, action_websocket

CHROMIUM = os.environ.get("MHD2_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SOCKETS = 20

pytestmark = pytest.mark.skipif(
    os.environ.get("MHD2_BROWSER") != "1",
    reason="browser test: run with MHD2_BROWSER=1 (nox -s browser)",
)

PAGE = b"""<!doctype html><meta charset="utf-8"><title>ws over h2</title>
<pre id="out">starting</pre>
<script>
async function run(count) {
  const url = "wss://" + location.host + "/ws";
  const opened = [];
  for (let i = 0; i < count; i++) {
    opened.push(new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.onopen = () => resolve(ws);
      ws.onerror = () => reject(new Error("socket " + i + " failed"));
    }));
  }
  const sockets = await Promise.all(opened);
  const echoes = sockets.map((ws, i) => new Promise((resolve) => {
    ws.onmessage = (event) => resolve(event.data);
    ws.send("hello " + i);
  }));
  const got = await Promise.all(echoes);
  window.sockets = sockets;
  return got;
}
</script>
"""


async def echo(ws: WebSocket) -> None:
    while True:
        await ws.send(await ws.receive())


@contextmanager
def served_over_tls() -> Iterator[tuple[int, list[str], list[int], trio.lowlevel.TrioToken]]:
    """A daemon over TLS in a thread: (port, the versions of the /ws requests, the
    connections started, the run's trio token)."""
    cert = trustme.CA().issue_cert("localhost", "127.0.0.1")
    ctx = server_context(cert.cert_chain_pems[0].bytes(), cert.private_key_pem.bytes())
    versions: list[str] = []
    started_connections: list[int] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/ws":
            versions.append(request.version)
            return action_websocket(request, echo)
        response = mhd2.Response.from_buffer_static(200, PAGE)
        response.add_header("Content-Type", "text/html; charset=utf-8")
        return mhd2.action_from_response(request, response)

    def on_connection(info: Any, event: ConnectionEvent) -> None:
        if event is ConnectionEvent.STARTED:
            started_connections.append(1)

    started: queue.Queue[tuple[int, trio.lowlevel.TrioToken, trio.Event]] = queue.Queue()

    async def main() -> None:
        async with mhd2.Daemon(cb, port=0, tls=ctx, notify_connection=on_connection) as daemon:
            stop = trio.Event()
            started.put((daemon.port, trio.lowlevel.current_trio_token(), stop))
            await stop.wait()

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    port, token, stop = started.get(timeout=10)
    try:
        yield port, versions, started_connections, token
    finally:
        token.run_sync_soon(stop.set)
        thread.join(timeout=15)


def test_twenty_websockets_share_the_pages_http2_connection(tmp_path: Path) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} not found: apt-get install chromium (or set MHD2_CHROMIUM)")
    sync_playwright = importlib.import_module("playwright.sync_api").sync_playwright
    with served_over_tls() as (port, versions, connections, _token), sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=ARGS,
            ignore_https_errors=True)
        try:
            page = context.new_page()
            page.goto(f"https://127.0.0.1:{port}/")
            assert page.evaluate(
                "performance.getEntriesByType('navigation')[0].nextHopProtocol") == "h2"
            got = page.evaluate(f"run({SOCKETS})")
            assert got == [f"hello {i}" for i in range(SOCKETS)]
            # Every WebSocket was an extended CONNECT on an HTTP/2 stream...
            assert versions == ["HTTP/2"] * SOCKETS
            # ... of the one connection the page came on.
            assert len(connections) == 1
            closed = page.evaluate(
                "Promise.all(window.sockets.map((ws) => new Promise((resolve) => {"
                " ws.onclose = (e) => resolve(e.code); ws.close(1000); })))")
            assert closed == [1000] * SOCKETS
        finally:
            context.close()
