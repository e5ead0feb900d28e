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
from pathlib import Path

import pytest
import trio
import trio.testing
from conftest import WAIT, open_stream, running, text_response

import mhd2
from mhd2.pool import LargePool

REPO = Path(__file__).resolve().parents[1]

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


# ------------------------------------------------------ issue 20: tcp_keepalive liveness


def server_side_of(client: socket.socket) -> socket.socket:
    """The daemon's accepted socket (in this process) whose peer is *client*.

    Found among this process's descriptors by its peer address; returned as a
    duplicate, so its options are the real socket's (close it after use).
    """
    wanted = client.getsockname()
    for name in os.listdir("/proc/self/fd"):
        try:
            candidate = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue  # not a socket (or gone meanwhile)
        try:
            if candidate.type == socket.SOCK_STREAM and candidate.getpeername() == wanted:
                return candidate
        except OSError:
            pass
        candidate.close()
    raise AssertionError(f"no accepted socket with peer {wanted}")


async def served_once(sock: socket.socket) -> bytes:
    """Send one keep-alive GET on *sock* (blocking socket) and read its reply head."""
    sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    reply = b""
    with trio.fail_after(WAIT):
        while b"\r\n\r\n" not in reply:
            await trio.lowlevel.wait_readable(sock)
            reply += sock.recv(65536)
    return reply


async def test_tcp_keepalive_is_set_on_every_accepted_tcp_socket() -> None:
    tcp = socket.IPPROTO_TCP
    async with running(text_response, tcp_keepalive=(7, 3, 4)) as daemon:
        with socket.create_connection(("127.0.0.1", daemon.port)) as client:
            assert (await served_once(client)).startswith(b"HTTP/1.1 200 ")
            with server_side_of(client) as accepted:
                assert accepted.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                assert accepted.getsockopt(tcp, socket.TCP_KEEPIDLE) == 7
                assert accepted.getsockopt(tcp, socket.TCP_KEEPINTVL) == 3
                assert accepted.getsockopt(tcp, socket.TCP_KEEPCNT) == 4
                if hasattr(socket, "TCP_USER_TIMEOUT"):  # idle + interval * count, in ms
                    assert accepted.getsockopt(tcp, socket.TCP_USER_TIMEOUT) == 19_000
    # The default leaves the kernel's settings alone: keepalive off.
    async with running(text_response) as daemon:
        with socket.create_connection(("127.0.0.1", daemon.port)) as client:
            assert (await served_once(client)).startswith(b"HTTP/1.1 200 ")
            with server_side_of(client) as accepted:
                assert accepted.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0


async def test_tcp_keepalive_leaves_unix_sockets_alone(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    async with running(text_response, unix_path=path, tcp_keepalive=(1, 1, 1)):
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)
            assert (await served_once(client)).startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("rule", [
    (30, 10), (30, 10, 3, 1), [30, 10, 3], (0, 10, 3), (30, 0, 3), (30, 10, 0),
    (30.5, 10, 3), (True, 10, 3), (32768, 10, 3), (30, 10, 128), "30,10,3",
])
def test_tcp_keepalive_bad_values_say_what_is_expected(rule: object) -> None:
    with pytest.raises(mhd2.UsageError, match=r"tcp_keepalive=.*expected \(idle seconds, "
                                              r"interval seconds, probe count\)"):
        mhd2.Daemon(text_response, tcp_keepalive=rule)


def test_tcp_keepalive_command_line_flag() -> None:
    from mhd2._cli.options import _engine_options
    from mhd2.cli import build_parser

    parser = build_parser()
    for argv in (["run", "m:a"], ["serve"], ["demo"]):
        args = parser.parse_args([*argv, "--tcp-keepalive", "30,10,3"])
        assert _engine_options(args)["tcp_keepalive"] == (30, 10, 3)
        assert "tcp_keepalive" not in _engine_options(parser.parse_args(argv))
    for bad in ("30,10", "a,b,c", "0,10,3", "30,10,200"):
        with pytest.raises(SystemExit):
            parser.parse_args(["serve", "--tcp-keepalive", bad])


#: Run inside a fresh network namespace (``unshare -n``): two daemons, one with
#: tcp_keepalive=(1, 1, 2) and one without, each with one parked request; then
#: the namespace's loopback goes down, so the peers vanish without FIN or RST
#: (nothing more gets through).  Prints what became of both requests.
VANISHING_PEER = r"""
import json, socket, subprocess, sys, time
import trio
import mhd2

subprocess.run(["ip", "link", "set", "lo", "up"], check=True)

async def main():
    parked = {"keepalive": trio.Event(), "plain": trio.Event()}
    ended = {"keepalive": trio.Event(), "plain": trio.Event()}
    codes = {}

    def handler(kind):
        def cb(request):
            parked[kind].set()
            return mhd2.action_suspend(request)
        def done(request, code):
            codes[kind] = str(int(code))
            ended[kind].set()
        return cb, done

    kcb, kdone = handler("keepalive")
    pcb, pdone = handler("plain")
    async with mhd2.Daemon(kcb, port=0, tcp_keepalive=(1, 1, 2), notify_request_ended=kdone) as k, \
               mhd2.Daemon(pcb, port=0, notify_request_ended=pdone) as p:
        clients = []
        for daemon in (k, p):
            client = socket.create_connection(("127.0.0.1", daemon.port))
            client.sendall(b"GET /park HTTP/1.1\r\nHost: a\r\n\r\n")
            clients.append(client)
        with trio.fail_after(10):
            await parked["keepalive"].wait()
            await parked["plain"].wait()
        await trio.run_process(["ip", "link", "set", "lo", "down"])
        start = time.monotonic()
        with trio.move_on_after(15):
            await ended["keepalive"].wait()
        released = time.monotonic() - start if ended["keepalive"].is_set() else None
        print(json.dumps({"released_after": released, "code": codes.get("keepalive"),
                          "plain_still_parked": not ended["plain"].is_set()}), flush=True)
        await k.stop(grace=0)
        await p.stop(grace=0)

trio.run(main)
"""


def test_a_parked_request_whose_peer_vanished_is_released_by_tcp_keepalive() -> None:
    """The liveness bullet of issue 20, over real TCP: the peer goes silent
    without FIN or RST, and keepalive (1 s idle, 1 s interval, 2 probes; user
    timeout 3 s) releases its parked request within seconds, while a daemon
    without tcp_keepalive still holds its request."""
    import json
    import shutil
    import subprocess
    import sys

    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if unshare is None or ip is None:
        pytest.skip("needs unshare(1) and ip(8) to make a network namespace")
    probe = subprocess.run([unshare, "-n", ip, "link", "set", "lo", "up"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a network namespace here: {probe.stderr.strip()}")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([unshare, "-n", sys.executable, "-c", VANISHING_PEER],
                          capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["released_after"] is not None, result
    assert result["released_after"] < 8.0, result
    assert result["code"] == str(int(mhd2.RequestEndedCode.CLIENT_ABORT)), result
    assert result["plain_still_parked"], result


# ------------------------------------------------ item 13: the shared upload pool


POOL = 64 * 1024
SHARE = 16 * 1024


async def read_reply(stream: trio.abc.ReceiveStream) -> bytes:
    """Everything until the server closes (a reset counts as a close)."""
    reply = b""
    try:
        while chunk := await stream.receive_some(65536):
            reply += chunk
    except trio.BrokenResourceError:
        pass
    return reply


async def test_slow_full_uploads_cannot_hold_the_shared_pool(
        autojump_clock: trio.testing.MockClock) -> None:
    """Four uploads trickling just over ``min_body_rate`` reserve the whole
    ``large_pool_size`` (three declared, one chunked that grew to its share).
    Meanwhile another full upload gets 413 -- but only until the holders run
    out of ``large_pool_fill_time``: then they get 408, the pool is free, and
    the next full upload is served.  Before, they held it for hours."""
    called = 0
    all_reserving = trio.Event()

    def full(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        response = mhd2.Response.from_buffer_copy(200, b"got %d" % len(data))
        return mhd2.upload_action_from_response(request, response)

    def cb(request: mhd2.Request) -> mhd2.Action:
        nonlocal called
        if request.path == "/slow":
            called += 1
            if called == 4:
                all_reserving.set()
        return mhd2.action_process_upload_full(request, SHARE, full)

    async def fast_upload(target: mhd2.Daemon) -> bytes:
        stream = await open_stream(target)
        async with stream:
            await stream.send_all(b"POST /fast HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                                  b"Content-Length: %d\r\n\r\n" % SHARE + b"x" * SHARE)
            return await read_reply(stream)

    replies: list[tuple[bytes, float]] = []

    async def slow_upload(target: mhd2.Daemon, chunked: bool, nursery_started: trio.Event) -> None:
        stream = await open_stream(target)
        async with stream:
            if chunked:  # grows to (almost) its share at once, then trickles
                head = (b"POST /slow HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"%x\r\n" % (SHARE - 200) + b"y" * (SHARE - 200) + b"\r\n")
                piece = b"a\r\n" + b"z" * 10 + b"\r\n"
            else:
                head = b"POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % SHARE
                piece = b"z" * 10
            await stream.send_all(head)
            nursery_started.set()
            started = trio.current_time()
            async with trio.open_nursery() as nursery:

                async def trickle() -> None:
                    # 10 bytes every 0.1 s: over min_body_rate (1024 bytes per
                    # 20 s), so only the pool's fill time can end it.
                    try:
                        while True:
                            await trio.sleep(0.1)
                            await stream.send_all(piece)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass

                nursery.start_soon(trickle)
                reply = await read_reply(stream)
                replies.append((reply, trio.current_time() - started))
                nursery.cancel_scope.cancel()

    async with running(cb, large_pool_size=POOL, large_pool_fill_time=2.0) as daemon:
        with trio.fail_after(WAIT):
            async with trio.open_nursery() as nursery:
                for chunked in (False, False, False, True):
                    sent = trio.Event()
                    nursery.start_soon(slow_upload, daemon, chunked, sent)
                    await sent.wait()
                await all_reserving.wait()
                # The pool is held: a full upload that does not fit is refused.
                assert (await fast_upload(daemon)).startswith(b"HTTP/1.1 413 ")
        # ... until the holders were cut off, each ~2 s after its reservation.
        assert len(replies) == 4
        for reply, took in replies:
            assert reply.startswith(b"HTTP/1.1 408 "), reply
            assert 1.9 <= took < 2.5, took  # virtual time: the fill time, 2 s
        with trio.fail_after(WAIT):
            assert (await fast_upload(daemon)).endswith(b"got %d" % SHARE)


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), "60", True])
def test_large_pool_fill_time_bad_values(value: object) -> None:
    with pytest.raises(mhd2.UsageError, match="large_pool_fill_time"):
        mhd2.Daemon(text_response, large_pool_fill_time=value)


async def test_slow_full_uploads_cannot_hold_the_shared_pool_over_http2(
        autojump_clock: trio.testing.MockClock) -> None:
    """The same over HTTP/2: four streams of one connection trickle; a fifth
    full upload gets 413 while they hold the pool, the four get 408 after the
    fill time, and then a full upload is served."""
    from h2.exceptions import StreamClosedError
    from h2raw import RawH2

    reserving = 0
    all_reserving = trio.Event()

    def full(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        response = mhd2.Response.from_buffer_copy(200, b"got %d" % len(data))
        return mhd2.upload_action_from_response(request, response)

    def cb(request: mhd2.Request) -> mhd2.Action:
        nonlocal reserving
        if request.path == "/slow":
            reserving += 1
            if reserving == 4:
                all_reserving.set()
        return mhd2.action_process_upload_full(request, SHARE, full)

    def upload(client: RawH2, path: str, body: bytes, *, end: bool) -> int:
        sid = client.request(path, "POST", [("content-length", str(SHARE))], end=False)
        client.conn.send_data(sid, body, end_stream=end)
        return sid

    async with running(cb, large_pool_size=POOL, large_pool_fill_time=2.0) as daemon:
        client = await RawH2.over(await open_stream(daemon))
        slow = [upload(client, "/slow", b"z" * 10, end=False) for _ in range(4)]
        await client.flush()
        started = trio.current_time()
        with trio.fail_after(WAIT):
            await all_reserving.wait()
            fast = upload(client, "/fast", b"x" * SHARE, end=True)
            assert (await client.response(fast)).status == 413

            async def trickle() -> None:
                while True:
                    await trio.sleep(0.1)
                    for sid in slow:
                        try:
                            client.conn.send_data(sid, b"z" * 10)
                        except StreamClosedError:
                            pass
                    await client.flush()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(trickle)
                await client.until(lambda: all(
                    client.replies[sid].ended or client.replies[sid].reset is not None
                    for sid in slow))
                took = trio.current_time() - started
                nursery.cancel_scope.cancel()
            assert [client.replies[sid].status for sid in slow] == [408] * 4
            assert 1.9 <= took < 2.5, took  # virtual time: the fill time, 2 s
            again = upload(client, "/fast", b"x" * SHARE, end=True)
            assert (await client.response(again)).body == b"got %d" % SHARE
        await client.aclose()


class WatchedPool(LargePool):
    """The daemon's pool, telling when *target* bytes are reserved at once."""

    __slots__ = ("reached", "target")

    def __init__(self, size: int, target: int) -> None:
        super().__init__(size)
        self.target = target
        self.reached = trio.Event()

    def try_reserve(self, nbytes: int) -> bool:
        done = super().try_reserve(nbytes)
        if self.in_use >= self.target:
            self.reached.set()
        return done


async def test_slow_form_posts_cannot_hold_the_shared_pool(
        autojump_clock: trio.testing.MockClock) -> None:
    """The form parser's collected values draw from the same pool: four form
    posts send most of a collected value at once, then trickle the rest.  A
    fifth form finds the pool short -- until the holders' fill time is over:
    their done_cb gets FAILED_NO_LARGE_BUF_MEM, the pool is given back and the
    next form is parsed."""
    value = 15_000

    def done(request: mhd2.Request, result: mhd2.PostParseResult) -> mhd2.UploadAction:
        response = mhd2.Response.from_buffer_copy(200, result.name.encode())
        return mhd2.upload_action_from_response(request, response)

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_parse_post(request, SHARE, SHARE, mhd2.PostEncoding.OTHER, None, done)

    def form(value_bytes: bytes, declared: int | None = None) -> bytes:
        body = b"a=" + value_bytes
        return (b"POST /form HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: %d\r\n\r\n" % (declared or len(body)) + body)

    async def fast_form(target: mhd2.Daemon) -> bytes:
        stream = await open_stream(target)
        async with stream:
            await stream.send_all(form(b"x" * SHARE))
            return await read_reply(stream)

    replies: list[tuple[bytes, float]] = []

    async def slow_form(target: mhd2.Daemon, sent: trio.Event) -> None:
        stream = await open_stream(target)
        async with stream:
            await stream.send_all(form(b"x" * value, declared=SHARE + 2))
            sent.set()
            started = trio.current_time()
            async with trio.open_nursery() as nursery:

                async def trickle() -> None:
                    try:
                        while True:
                            await trio.sleep(0.1)
                            await stream.send_all(b"y" * 10)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass

                nursery.start_soon(trickle)
                reply = await read_reply(stream)
                replies.append((reply, trio.current_time() - started))
                nursery.cancel_scope.cancel()

    async with running(cb, large_pool_size=POOL, large_pool_fill_time=2.0) as daemon:
        pool = WatchedPool(POOL, 4 * value)
        daemon._shared.large_pool = pool  # before any request reserves from it
        with trio.fail_after(WAIT):
            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    sent = trio.Event()
                    nursery.start_soon(slow_form, daemon, sent)
                    await sent.wait()
                await pool.reached.wait()  # the values are collected as they come
                assert (await fast_form(daemon)).endswith(b"FAILED_NO_LARGE_BUF_MEM")
        assert len(replies) == 4
        for reply, took in replies:
            assert reply.endswith(b"FAILED_NO_LARGE_BUF_MEM"), reply
            assert 1.9 <= took < 2.5, took  # virtual time: the fill time, 2 s
        assert pool.in_use == 0
        with trio.fail_after(WAIT):
            last = await fast_form(daemon)
            assert last.endswith(b"\r\n\r\nOK"), last
