"""Hostile input, round 3 (issue 19, items 11 and 13; issue 20's TCP keepalive):
the daemon's own resources under pressure, over real connections."""

from __future__ import annotations

import errno
import logging
import os
import resource
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trio
import trio.testing
from conftest import WAIT, running, text_response

# ------------------------------------------------------------ item 11: EMFILE on accept


@contextmanager
def no_file_descriptors_left() -> Iterator[None]:
    """Every file descriptor of this process in use, until the block is left.

    The soft RLIMIT_NOFILE is lowered to a little above the highest descriptor
    open now and the holes below it are filled with ``/dev/null``, so the next
    ``accept()`` fails with EMFILE.  The limit is restored and the fillers
    closed on the way out, whatever happens.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    probe = os.open(os.devnull, os.O_RDONLY)
    os.close(probe)
    fillers: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (probe + 64, hard))
    try:
        while True:
            try:
                fillers.append(os.open(os.devnull, os.O_RDONLY))
            except OSError as exc:
                assert exc.errno == errno.EMFILE
                break
        yield
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_accept_out_of_file_descriptors_is_logged_once_per_interval(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture,
) -> None:
    """Out of descriptors, the daemon retries accept() every 0.1 s; over 35 s
    (virtual) that used to be ~350 ERROR records, now one per 10 s with a count."""
    caplog.set_level(logging.ERROR, logger="mhd2")
    async with running(text_response, timeout=None) as daemon:
        client = socket.create_connection(("127.0.0.1", daemon.port))  # waits in the backlog
        try:
            with no_file_descriptors_left():
                await trio.sleep(35.0)  # virtual time: the accept loop spins through it
                records = [r for r in caplog.records if "accept()" in r.getMessage()]
            assert len(records) == 4, [r.getMessage() for r in records]  # t = 0, 10, 20, 30
            assert all(r.levelno == logging.ERROR for r in records)
            assert "failed 1 time(s)" in records[0].getMessage()
            # every later record counts the ~100 retries of its 10 s
            for record in records[1:]:
                count = int(record.getMessage().split("failed ")[1].split(" ")[0])
                assert 90 <= count <= 110, record.getMessage()
            assert "ulimit -n" in records[0].getMessage()
            # Descriptors back: the connection that waited is served.
            autojump_clock.autojump_threshold = float("inf")
            autojump_clock.rate = 1.0
            client.setblocking(False)
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(client))
            with trio.fail_after(WAIT):
                await stream.send_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                reply = b""
                while chunk := await stream.receive_some(65536):
                    reply += chunk
            assert reply.startswith(b"HTTP/1.1 200 ")
        finally:
            client.close()
