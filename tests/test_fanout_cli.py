"""``python -m mhd2 run MODULE:ATTR --factory`` with a factory that returns an async
context manager: each process (each ``--workers`` worker) enters it in its own
trio run around its daemon -- where an application starts its ``mhd2.fanout.Hub``."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
import trio
from test_cli import run_quick, running

FANOUT_APP = '''
import os
from contextlib import asynccontextmanager

import mhd2
from mhd2.fanout import Hub, action_sse


@asynccontextmanager
async def app():
    async with Hub() as hub:
        topic = hub.topic("news", history=10)
        os.write(2, f"hub open in {os.getpid()}\\n".encode())  # one write: workers interleave

        async def callback(request):
            if request.path == "/events":
                return action_sse(request, topic, heartbeat=None)
            if request.path == "/publish":
                mid = await topic.publish(request.args.get("text", "hi"))
                body = f"{os.getpid()} {mid}".encode()
                return mhd2.action_from_response(
                    request, mhd2.Response.from_buffer_copy(200, body))
            return mhd2.action_from_response(
                request, mhd2.Response.from_buffer_copy(200, str(os.getpid()).encode()))

        try:
            yield callback
        finally:
            os.write(2, f"hub closing in {os.getpid()}\\n".encode())


@asynccontextmanager
async def broken():
    raise RuntimeError("no database")
    yield


@asynccontextmanager
async def yields_nothing():
    yield 42
'''


@pytest.fixture
def fanout_dir(tmp_path: Path) -> Path:
    (tmp_path / "fanout_app.py").write_text(FANOUT_APP)
    return tmp_path


@pytest.mark.parametrize("workers", [None, 2])
async def test_a_factory_async_context_manager_runs_a_hub_in_every_worker(
        fanout_dir: Path, workers: int | None) -> None:
    argv = ["run", "fanout_app:app", "--factory", "--port", "0", "--no-access-log"]
    if workers:
        argv += ["--workers", str(workers)]
    count = workers or 1
    async with running(argv, fanout_dir) as (process, stderr, port):
        opened = [line for line in stderr.seen if line.startswith("hub open in ")]
        assert len(opened) == count, stderr.seen
        pids: set[str] = set()
        with trio.fail_after(30):
            # Every worker answers a publish: its hub runs (a hub that is not
            # running makes publish raise UsageError, a 500).
            while len(pids) < count:
                async with httpx.AsyncClient() as client:  # a new connection each time
                    r = await client.get(f"http://127.0.0.1:{port}/publish?text=x")
                assert r.status_code == 200, r.text
                pids.add(r.text.split()[0])
        assert pids == {line.split()[-1] for line in opened}
        # A subscriber of the worker it reached gets that worker's messages.
        async with httpx.AsyncClient(timeout=20) as client, client.stream(
                "GET", f"http://127.0.0.1:{port}/events") as events:
            assert events.status_code == 200
            lines = events.aiter_lines()
            assert (await lines.__anext__()).startswith("retry:")
            got = trio.Event()

            async def publish_until_got() -> None:
                # (with workers, a publish may reach the other worker: again,
                # on a new connection each time)
                while not got.is_set():
                    async with httpx.AsyncClient() as publisher:
                        await publisher.get(f"http://127.0.0.1:{port}/publish?text=for%20you")
                    with trio.move_on_after(0.2):
                        await got.wait()

            with trio.fail_after(30):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(publish_until_got)
                    while (await lines.__anext__()) != "data: for you":
                        pass
                    got.set()
        process.send_signal(signal.SIGINT)
        with trio.fail_after(30):
            assert await process.wait() == 0
        rest = await stderr.rest()
        closing = [line for line in [*stderr.seen, *rest.splitlines()]
                   if line.startswith("hub closing in ")]
        assert len(closing) == count


@pytest.mark.parametrize("workers", [None, 2])
def test_a_factory_context_manager_that_fails_to_start_exits_3(
        fanout_dir: Path, workers: int | None) -> None:
    argv = ["run", "fanout_app:broken", "--factory", "--port", "0"]
    if workers:
        argv += ["--workers", str(workers)]
    result = run_quick(argv, cwd=fanout_dir)
    assert result.returncode == 3, result.stderr
    assert "the application's startup failed: fanout_app:broken raised RuntimeError: " \
        "no database" in result.stderr


def test_a_factory_context_manager_yielding_no_app_exits_3(fanout_dir: Path) -> None:
    result = run_quick(["run", "fanout_app:yields_nothing", "--factory", "--port", "0"],
                       cwd=fanout_dir)
    assert result.returncode == 3, result.stderr
    assert "is not a request callback: int" in result.stderr
