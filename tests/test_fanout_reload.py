"""mhd2.fanout across a worker recycle (mhd2.supervisor with real processes).

The old worker's subscribers are told to reconnect (a long poll 204 with
X-Cursor, an event stream a last retry:, a WebSocket 1012) and the new
worker takes their cursors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from test_cli import Lines, child_env
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.sync.client import connect

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")

WAIT = 15.0

APP = r'''
import json, os, signal, socket, sys
import trio
import mhd2
from mhd2.supervisor import Supervisor, drain_and_stop


def log(text):
    print(text, file=sys.stderr, flush=True)


async def serve(sock, worker):
    async with mhd2.fanout.Hub() as hub:
        topic = hub.topic("t")

        async def answer(request):
            path, args = request.path, request.args
            if path == "/poll":
                return mhd2.fanout.action_long_poll(request, topic, cursor=args.get("cursor"))
            if path == "/events":
                return mhd2.fanout.action_sse(request, topic, retry_ms=100)
            if path == "/ws":
                return mhd2.fanout.action_websocket_subscribe(request, topic)
            if path == "/publish":
                body = await topic.publish(args["m"])
            elif path == "/stats":
                body = json.dumps(hub.stats().subscribers)
            elif path == "/recycle":
                worker.recycle()
                body = "ok"
            else:
                body = str(os.getpid())
            return mhd2.action_from_response(
                request, mhd2.Response.from_buffer_copy(200, body.encode()))

        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with mhd2.Daemon(answer, listen_socket=sock) as daemon:
                worker.ready()
                async for _ in signals:
                    break
                log(f"stopping {os.getpid()}")
                await drain_and_stop(daemon, worker.graceful_timeout)
    return 0


def worker_main(sock, worker):
    return trio.run(serve, sock, worker)


sock = socket.create_server(("127.0.0.1", 0))
port = sock.getsockname()[1]
supervisor = Supervisor(worker_main, sock, workers=1, graceful_timeout=10.0,
                        log=lambda m: log("sup: " + m), on_ready=lambda: log(f"READY {port}"))
sys.exit(supervisor.run())
'''


@pytest.fixture
async def port(tmp_path: Path) -> AsyncIterator[int]:
    path = tmp_path / "fanout_app.py"
    path.write_text(APP)
    process = await trio.lowlevel.open_process(
        [sys.executable, str(path)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, env=child_env())
    assert process.stderr is not None
    lines = Lines(process.stderr)
    try:
        line = await lines.until("READY", timeout=20)
        async with trio.open_nursery() as nursery:
            async def drain() -> None:
                while True:
                    await lines.next()

            nursery.start_soon(drain)  # the pipe never fills
            yield int(line.split()[1])
            nursery.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.terminate()
        with trio.fail_after(20):
            await process.wait()


async def test_worker_recycle_tells_every_subscriber_to_reconnect(port: int) -> None:
    base = f"http://127.0.0.1:{port}"
    results: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=base, timeout=WAIT) as client:
        first = (await client.get("/publish", params={"m": "one"})).text
        old_pid = (await client.get("/pid")).text

        async def poll() -> None:
            async with httpx.AsyncClient(base_url=base, timeout=WAIT) as own:
                results["poll"] = await own.get("/poll", params={"cursor": first})

        async def sse() -> None:
            async with httpx.AsyncClient(base_url=base, timeout=WAIT) as own:
                async with own.stream("GET", "/events", headers={"Last-Event-ID": first}) as r:
                    results["sse"] = "".join([chunk async for chunk in r.aiter_text()])

        def ws() -> None:
            with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=WAIT) as conn:
                try:
                    conn.recv(timeout=WAIT)
                except ClientClosed as exc:
                    results["ws"] = exc.rcvd

        with trio.fail_after(WAIT * 2):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(poll)
                nursery.start_soon(sse)
                nursery.start_soon(trio.to_thread.run_sync, ws)
                want = {"long_poll": 1, "sse": 1, "websocket": 1}
                while json.loads((await client.get("/stats")).text) != want:
                    await trio.sleep(0.02)  # the workers' state is only seen through HTTP
                await client.get("/recycle")

    poll_answer = results["poll"]
    assert poll_answer.status_code == 204 and poll_answer.headers["x-cursor"] == first
    assert results["sse"] == "retry: 100\n\nretry: 100\n\n"
    assert (results["ws"].code, results["ws"].reason) == (1012, "service restart")

    # The new worker takes the old cursor: its history starts after a restart,
    # so the answer says that messages may be missing (Redis keeps them).
    with trio.fail_after(WAIT):
        while True:
            async with httpx.AsyncClient(base_url=base, timeout=WAIT) as client:
                if (await client.get("/pid")).text != old_pid:
                    r = await client.get("/poll", params={"cursor": first})
                    break
    body = r.json()
    assert r.status_code == 200 and body["truncated"] is True and body["messages"] == []
    assert body["cursor"] != first and body["cursor"] == r.headers["x-cursor"]
