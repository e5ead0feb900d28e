"""``python -m mhd2 demo --redis``: what needs no Redis server (the room itself is
tested against a real redis-server in tests/deploy)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from _harness import free_port
from conftest import WAIT

from mhd2 import UsageError

REPO = Path(__file__).resolve().parents[1]


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mhd2", "demo", "--port", "0", *args],
                          capture_output=True, text=True, timeout=30, cwd=REPO)


def test_unreachable_redis_is_one_line_and_exit_status_1() -> None:
    pytest.importorskip("coredis")
    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        done = demo("--redis", f"redis://127.0.0.1:{port}/0")
    assert done.returncode == 1
    assert done.stderr.startswith(f"mhd2 demo: cannot use Redis at redis://127.0.0.1:{port}/0: ")
    assert done.stderr.count("\n") == 1, done.stderr


def test_a_redis_url_that_is_not_one_is_refused() -> None:
    pytest.importorskip("coredis")
    done = demo("--redis", "http://127.0.0.1:6379/0")
    assert done.returncode == 1
    assert done.stderr == ("mhd2 demo: --redis wants a redis://HOST:PORT/DB URL, "
                           "not 'http://127.0.0.1:6379/0'\n")


def test_the_redis_room_is_a_fanout_topic_in_a_stream() -> None:
    pytest.importorskip("coredis")
    from mhd2.demo import TOPIC
    from mhd2.demo_redis import RedisUnavailable, redis_chat
    from mhd2.fanout.redis import RedisBackend

    chat = redis_chat("redis://127.0.0.1:1/0")
    assert isinstance(chat.hub._backend, RedisBackend)
    assert chat.topic.name == TOPIC and chat.topic.history == 200
    assert chat.origin == "0-0"
    with pytest.raises(RedisUnavailable, match="redis://HOST:PORT/DB URL"):
        redis_chat("http://127.0.0.1:1/0")
    with pytest.raises(UsageError, match="publish needs a running hub"):
        trio.run(chat.post, "n", "t")


# -------------------------------------------- with a real redis-server that goes away

REDIS_SERVER = shutil.which("redis-server")
# MHD2_DEPLOY=1 (nox -s deploy) or MHD2_REQUIRE_REDIS=1: a missing part fails instead.
needs_redis = pytest.mark.skipif(
    (REDIS_SERVER is None or find_spec("coredis") is None)
    and os.environ.get("MHD2_DEPLOY") != "1" and os.environ.get("MHD2_REQUIRE_REDIS") != "1",
    reason="needs redis-server (apt-get install redis-server) and coredis (mhd2[redis])")


@asynccontextmanager
async def redis_server(tmp_path: Path) -> AsyncIterator[tuple[str, trio.Process]]:
    """A redis-server without persistence on a free port: its URL and process
    (killed, if still running, when the block is left)."""
    assert REDIS_SERVER is not None
    port = free_port()
    process = await trio.lowlevel.open_process(
        [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(tmp_path),
         "--save", "", "--appendonly", "no", "--logfile", ""],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert process.stdout is not None
        seen = b""
        with trio.fail_after(WAIT):
            while b"Ready to accept connections" not in seen:
                chunk = await process.stdout.receive_some(65536)
                assert chunk, seen.decode(errors="replace")
                seen += chunk
        yield f"redis://127.0.0.1:{port}/0", process
    finally:
        if process.returncode is None:
            process.kill()  # also when stopped (SIGSTOP)
        with trio.fail_after(WAIT):
            await process.wait()


def ws_send_messages(port: int, count: int) -> tuple[list[Any], float, bool]:
    """In a thread: a demo WebSocket sends *count* messages, each answered
    before the next; then a ping.  Returns the answers, the seconds they took,
    and whether the pong came (the socket is still open)."""
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=WAIT, close_timeout=5) as ws:
        json.loads(ws.recv(timeout=WAIT))  # the history: the one message sent while Redis was up
        answers = []
        started = time.monotonic()
        for number in range(count):
            ws.send(json.dumps({"name": "ws", "text": f"message {number}"}))
            answers.append(json.loads(ws.recv(timeout=WAIT)))
        took = time.monotonic() - started
        return answers, took, ws.ping().wait(WAIT)


async def post_send(port: int, text: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=WAIT) as http:
        return await http.post(f"http://127.0.0.1:{port}/send", json={"name": "t", "text": text})


def problems(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Records at ERROR or above, and any of mhd2's with a traceback."""
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.ERROR
            or (r.name.startswith("mhd2") and r.exc_info and r.exc_info[0] is not None)]


@needs_redis
async def test_redis_down_answers_a_fixed_503_and_keeps_websockets_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 19 item 12: Redis stops.  ``POST /send`` is a fixed 503 sentence
    (never Redis' address), a WebSocket message is answered with an error
    message and the socket stays open, and the log has one WARNING sentence
    per outage and operation -- no ERROR, no traceback."""
    from mhd2.demo import UNAVAILABLE, Chat, chat_server

    caplog.set_level(logging.INFO)
    async with redis_server(tmp_path) as (url, redis):
        async with chat_server(Chat(redis=url, post_timeout=2.0), port=0) as (daemon, _):
            assert (await post_send(daemon.port, "up")).json()["id"].endswith("-0")
            redis.kill()
            await redis.wait()
            redis_port = url.rsplit(":", 1)[1].split("/")[0]
            for number in range(4):
                response = await post_send(daemon.port, f"lost {number}")
                assert response.status_code == 503
                assert response.text == f"503 Service Unavailable: {UNAVAILABLE}\n"
                assert redis_port not in response.text and "127.0.0.1" not in response.text
                assert response.headers["retry-after"] == "5"
            answers, _, open_after = await trio.to_thread.run_sync(ws_send_messages,
                                                                   daemon.port, 3)
            assert answers == [{"error": UNAVAILABLE}] * 3
            assert open_after, "the WebSocket was closed after the failed message"
    assert problems(caplog) == []
    stored = [r for r in caplog.records if "storing a message failed" in r.getMessage()]
    assert len(stored) == 1, [r.getMessage() for r in stored]  # 7 failures, one sentence
    assert stored[0].levelno == logging.WARNING
    assert len([r for r in caplog.records if "cannot be read" in r.getMessage()]) <= 1


@needs_redis
async def test_a_hung_redis_is_waited_for_a_bounded_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis stops answering (SIGSTOP: connections stay open, nothing comes
    back): a WebSocket message and a ``POST /send`` each get their answer
    after ``post_timeout``, not never."""
    from mhd2.demo import UNAVAILABLE, Chat, chat_server

    caplog.set_level(logging.INFO)
    async with redis_server(tmp_path) as (url, redis):
        async with chat_server(Chat(redis=url, post_timeout=0.5), port=0) as (daemon, _):
            assert (await post_send(daemon.port, "up")).json()["id"].endswith("-0")
            redis.send_signal(signal.SIGSTOP)
            answers, took, open_after = await trio.to_thread.run_sync(ws_send_messages,
                                                                      daemon.port, 1)
            assert answers == [{"error": UNAVAILABLE}] and open_after
            assert 0.45 <= took < 3.5, took
            started = trio.current_time()
            response = await post_send(daemon.port, "hung")
            assert response.status_code == 503
            assert 0.45 <= trio.current_time() - started < 3.5
    assert problems(caplog) == []
