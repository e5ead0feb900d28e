"""bench/ladder.py still builds on mhd2's internals, and every rung answers as mhd2 does.

The ladder copies the connection loop's use of internal modules (the parser,
``read_head``, ``Exchange``, ``call_app_now``, ``reply_plan``); when they move,
this test says so before the next benchmark run does.  Each rung is started
as ``python bench/ladder.py serve 0 LEVEL`` and asked over a real socket for
one request and then two pipelined ones; its bytes must equal the real
Daemon's (the rung "mhd2"), ``Date`` aside.
"""

from __future__ import annotations

import importlib.util
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LADDER = ROOT / "bench" / "ladder.py"
HAS_HTTPTOOLS = importlib.util.find_spec("httptools") is not None
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
START_SECONDS = 30.0


@contextmanager
def rung(level: str, parser: str) -> Iterator[int]:
    """Run one rung; yield its port; stop it with SIGINT and check it exits 0.

    Unbuffered stdout: a buffered reader could hold the "ready" line while
    select() waits on the descriptor.
    """
    proc = subprocess.Popen([sys.executable, str(LADDER), "serve", "0", level, "--parser", parser],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    lines: list[bytes] = []
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            port = None
            while port is None:
                assert sel.select(START_SECONDS), f"{level}: no 'ready' line: {lines}"
                line = proc.stdout.readline()
                assert line, f"{level} exited {proc.wait()}: {b''.join(lines).decode()}"
                lines.append(line)
                if line.startswith(b"ready "):
                    port = int(line.split()[1])
        yield port
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=START_SECONDS)
    assert proc.returncode == 0, (b"".join(lines) + rest).decode(errors="replace")


def exchange(port: int) -> tuple[bytes, bytes]:
    """One request, then two pipelined; the bytes of each answer, Date masked."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(REQUEST)
        one = receive(sock, 1)
        sock.sendall(REQUEST * 2)
        two = receive(sock, 2)
    return mask_date(one), mask_date(two)


def receive(sock: socket.socket, replies: int) -> bytes:
    """Exactly *replies* responses framed by Content-Length (nothing more may come)."""
    data = b""
    end = 0
    for _ in range(replies):
        while (head_end := data.find(b"\r\n\r\n", end)) < 0:
            data += recv(sock, data)
        length = re.search(rb"Content-Length: (\d+)\r\n", data[end:head_end + 2])
        assert length is not None, data
        end = head_end + 4 + int(length.group(1))
        while len(data) < end:
            data += recv(sock, data)
    assert len(data) == end, data
    return data


def recv(sock: socket.socket, so_far: bytes) -> bytes:
    more = sock.recv(65536)
    assert more, f"closed after {so_far!r}"
    return more


def mask_date(data: bytes) -> bytes:
    return re.sub(rb"Date: [^\r]*\r\n", b"Date: X\r\n", data)


PARSERS = ["h11", *(["httptools"] if HAS_HTTPTOOLS else [])]


@pytest.mark.parametrize("parser", PARSERS)
def test_every_rung_answers_as_mhd2(parser: str) -> None:
    with rung("mhd2", parser) as port:
        expected = exchange(port)
    assert expected[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert expected[0].endswith(b"\r\n\r\nHello, World!")
    assert expected[1] == expected[0] * 2
    # L0 and L1 parse with a bare httptools parser whatever --parser says.
    levels = ["L0", "L1"] if HAS_HTTPTOOLS else []
    for level in [*levels, "L2", "L3", "L4", "L5"]:
        with rung(level, parser) as port:
            assert exchange(port) == expected, level
