"""``python -m mhd2 demo --redis``: what needs no Redis server (the room itself is
tested against a real redis-server in tests/deploy)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_the_redis_room_takes_messages_only_through_redis() -> None:
    from mhd2.demo_redis import RedisChatRoom

    room = RedisChatRoom("redis://127.0.0.1:1/0")
    with pytest.raises(UsageError, match=r"await room\.post"):
        room.publish("n", "t")
    assert room.messages.maxlen == 200 and room.last_id == 0
