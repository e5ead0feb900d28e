"""mhd2.supervisor with real processes: a tiny HTTP worker on mhd2.Daemon(listen_socket=...)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import trio
from test_cli import Lines, child_env

from mhd2.supervisor import Supervisor

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")

APP = r'''
import os, signal, socket, sys
import trio
import mhd2
from mhd2.supervisor import WORKER_BOOT_ERROR, Supervisor, drain_and_stop

WORKERS, MAX, GRACE, MODE = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]


def log(text):
    print(text, file=sys.stderr, flush=True)


async def serve(sock, worker):
    served = 0

    async def answer(request):
        if request.path == "/slow":
            log(f"slow request in {os.getpid()}")
            # Held until the test creates the file "release": in flight across the
            # stop for sure.  (Another process's file: nothing to wait on but it.)
            release = os.path.join(os.path.dirname(__file__), "release")
            with trio.fail_after(30):
                while not os.path.exists(release):
                    await trio.sleep(0.01)
        elif request.path == "/recycle":
            worker.recycle()
        elif request.path == "/hang":
            log(f"hanging request in {os.getpid()}")
            await trio.sleep_forever()
        body = f"{os.getpid()}\n".encode()
        return mhd2.action_from_response(request, mhd2.Response.from_buffer_copy(200, body))

    def ended(request, code):
        nonlocal served
        served += 1
        if MAX and served >= MAX:
            worker.recycle()

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with mhd2.Daemon(answer, listen_socket=sock, notify_request_ended=ended) as daemon:
            if MODE != "never-ready":
                worker.ready()
            async for _ in signals:
                break
            log(f"worker {os.getpid()} draining")
            await drain_and_stop(daemon, worker.graceful_timeout)
    return 0


def worker_main(sock, worker):
    if MODE == "boot-fail":
        return WORKER_BOOT_ERROR
    if MODE == "crash" and worker.index == 0:
        return 1
    if os.path.exists(os.path.join(os.path.dirname(__file__), "broken")):
        return 1  # "the new code" cannot start
    return trio.run(serve, sock, worker)


sock = socket.create_server(("127.0.0.1", 0))
port = sock.getsockname()[1]
supervisor = Supervisor(worker_main, sock, workers=WORKERS, graceful_timeout=GRACE,
                        ready_timeout=float(os.environ.get("READY_TIMEOUT", "30")),
                        log=lambda m: log("sup: " + m), on_ready=lambda: log(f"READY {port}"))
sys.exit(supervisor.run())
'''


class App:
    def __init__(self, process: trio.Process, stderr: Lines) -> None:
        self.process = process
        self.stderr = stderr
        self.port = 0


@pytest.fixture
def app_file(tmp_path: Path) -> Path:
    path = tmp_path / "supervised_app.py"
    path.write_text(APP)
    return path


async def start_app(app_file: Path, args: Sequence[str], **env: str) -> App:
    process = await trio.lowlevel.open_process(
        [sys.executable, str(app_file), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**child_env(), **env},
    )
    assert process.stderr is not None
    return App(process, Lines(process.stderr))


@pytest.fixture
async def running(request: pytest.FixtureRequest, app_file: Path) -> AsyncIterator[App]:
    args = getattr(request, "param", ("2", "0", "5", "normal"))
    app = await start_app(app_file, args)
    try:
        line = await app.stderr.until("READY", timeout=20)
        app.port = int(line.split()[1])
        yield app
    finally:
        if app.process.returncode is None:
            app.process.kill()
        with trio.fail_after(10):
            await app.process.wait()


async def get(port: int, path: str = "/") -> tuple[int, int]:
    """One request on a new connection: (status, pid of the worker that answered)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(
            f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), int(body)


async def pids_seen(port: int, want: int, *, exclude: frozenset[int] | set[int] = frozenset(),
                    limit: int = 200) -> set[int]:
    seen: set[int] = set()
    for _ in range(limit):
        status, pid = await get(port)
        assert status == 200
        if pid not in exclude:
            seen.add(pid)
        if len(seen) >= want:
            return seen
    raise AssertionError(f"only saw {seen} in {limit} requests")


async def test_killed_worker_is_replaced(running: App) -> None:
    with trio.fail_after(30):
        pids = await pids_seen(running.port, 2)
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        await running.stderr.until(f"(pid {victim}) was killed by SIGKILL; restarting")
        await running.stderr.until(") ready")  # the replacement accepts now
        fresh = await pids_seen(running.port, 1, exclude=pids)
    assert fresh.isdisjoint(pids)
    assert running.process.returncode is None


async def test_sighup_reload_under_load_only_200s(running: App) -> None:
    statuses: list[int] = []
    after: set[int] = set()
    with trio.fail_after(60):
        before = await pids_seen(running.port, 2)
        reloaded = trio.Event()

        async def load() -> None:
            while not reloaded.is_set():
                status, _pid = await get(running.port)
                statuses.append(status)

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(load)
            running.process.send_signal(signal.SIGHUP)
            await running.stderr.until("reload done")
            for pid in before:  # the old workers finish what they accepted, then exit
                needle = f"(pid {pid}) stopped (replaced)"
                if not any(needle in line for line in running.stderr.seen):
                    await running.stderr.until(needle)
            for _ in range(20):
                after.add((await get(running.port))[1])
            reloaded.set()
    assert len(statuses) > 20
    assert set(statuses) == {200}
    assert after.isdisjoint(before)
    assert "sup: SIGHUP: reloading 2 workers one at a time" in running.stderr.seen


async def test_sigterm_exits_0_after_requests_in_flight(running: App, app_file: Path) -> None:
    result: list[tuple[int, int]] = []

    async def slow() -> None:
        result.append(await get(running.port, "/slow"))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow)
            line = await running.stderr.until("slow request in")
            running.process.send_signal(signal.SIGTERM)
            # The worker holding the request is draining: now let the request end.
            await running.stderr.until(f"worker {line.split()[-1]} draining")
            (app_file.parent / "release").touch()
        assert await running.process.wait() == 0
    assert result[0][0] == 200  # finished during the graceful stop


@pytest.mark.parametrize("running", [("1", "0", "0.3", "normal")], indirect=True)
async def test_sigterm_within_graceful_timeout(running: App) -> None:
    async with trio.open_nursery() as nursery:
        answers: list[bytes] = []

        async def hang() -> None:
            stream = await trio.open_tcp_stream("127.0.0.1", running.port)
            async with stream:
                await stream.send_all(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
                answers.append(await stream.receive_some(65536))

        nursery.start_soon(hang)
        await running.stderr.until("hanging request in")
        start = trio.current_time()
        running.process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            code = await running.process.wait()
        nursery.cancel_scope.cancel()
    assert code == 0
    assert trio.current_time() - start < 0.3 + 2  # graceful timeout 0.3 s, plus slack
    assert answers in ([], [b""])  # the hung request was cut off, not answered


@pytest.mark.parametrize("running", [("1", "5", "5", "normal")], indirect=True)
async def test_max_requests_recycling_loses_no_request(running: App) -> None:
    statuses: list[int] = []
    pids: set[int] = set()
    with trio.fail_after(60):

        async def load() -> None:
            while len(pids) < 4:  # three recycles
                status, pid = await get(running.port)
                statuses.append(status)
                pids.add(pid)

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(load)
    assert len(statuses) >= 15
    assert set(statuses) == {200}
    with trio.fail_after(10):
        await running.stderr.until("asked to be recycled")


def zombie(pid: int) -> bool:
    """Whether process *pid* has exited and waits to be reaped."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc")
@pytest.mark.parametrize("running", [("1", "0", "5", "normal")], indirect=True)
async def test_a_pipe_number_reused_within_one_step_keeps_the_new_worker(
        running: App, app_file: Path) -> None:
    """A worker's pipe ends (it exited) and, in the same step of the supervisor,
    another worker asks to be recycled: its replacement's new pipe gets the
    number just freed.  Reaping the first worker must not close that pipe --
    the replacement's "ready" would be lost and the replacement, serving
    already, killed with its connections after ready_timeout."""
    supervisor = running.process.pid
    answers: list[tuple[int, int]] = []

    async def slow() -> None:
        answers.append(await get(running.port, "/slow"))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow)  # keeps the first worker alive until released
            line = await running.stderr.until("slow request in")
            first = int(line.split()[-1])
            assert (await get(running.port, "/recycle"))[1] == first
            line = await running.stderr.until(") ready")  # the first replacement
            second = int(line.split("(pid ")[1].split(")")[0])
            await running.stderr.until(f"worker {first} draining")
            os.kill(supervisor, signal.SIGSTOP)
            try:
                (app_file.parent / "release").write_text("")
                # The first worker ends while the supervisor cannot look: a
                # bounded poll on another process, nothing to wait on but its state.
                while not zombie(first):
                    await trio.sleep(0.01)
                # Its pipe's end is in first; now the second worker asks.
                assert (await get(running.port, "/recycle"))[1] == second
            finally:
                os.kill(supervisor, signal.SIGCONT)
        assert answers == [(200, first)]
        await running.stderr.until(f"(pid {second}) asked to be recycled")
        line = await running.stderr.until(") ready", timeout=10)  # not killed after 30 s
        third = int(line.split("(pid ")[1].split(")")[0])
        assert third not in (first, second)
        await running.stderr.until(f"worker {second} draining")
        assert await get(running.port) == (200, third)


async def test_boot_error_stops_with_status_1(app_file: Path) -> None:
    app = await start_app(app_file, ["2", "0", "5", "boot-fail"])
    with trio.fail_after(20):
        code = await app.process.wait()
        text = await app.stderr.rest()
    assert code == 1
    assert "could not start; stopping" in text


async def test_crash_loop_backs_off(app_file: Path) -> None:
    app = await start_app(app_file, ["2", "0", "5", "crash"])
    try:
        with trio.fail_after(30):
            await app.stderr.until("restarting in 0.1 s")
            await app.stderr.until("restarting in 0.2 s")
            await app.stderr.until("restarting in 0.4 s")
            app.process.send_signal(signal.SIGTERM)
            assert await app.process.wait() == 0
    finally:
        if app.process.returncode is None:
            app.process.kill()
            with trio.fail_after(10):
                await app.process.wait()


def test_bad_arguments() -> None:
    from mhd2.errors import UsageError

    with pytest.raises(UsageError, match="workers"):
        Supervisor(lambda s, w: 0, None, workers=0)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="graceful_timeout"):
        Supervisor(lambda s, w: 0, None, workers=1, graceful_timeout=-1)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="worker_main"):
        Supervisor(None, None, workers=1)  # type: ignore[arg-type]


async def test_reload_with_a_failing_new_worker_keeps_the_old_ones(
        running: App, app_file: Path) -> None:
    with trio.fail_after(30):
        before = await pids_seen(running.port, 2)
        (app_file.parent / "broken").write_text("")
        running.process.send_signal(signal.SIGHUP)
        await running.stderr.until("reload abandoned, the old workers keep serving")
        for _ in range(10):
            status, pid = await get(running.port)
            assert status == 200 and pid in before
        # once the code is fixed, a reload goes through
        (app_file.parent / "broken").unlink()
        running.process.send_signal(signal.SIGHUP)
        await running.stderr.until("reload done")
        after = await pids_seen(running.port, 2, exclude=before)
    assert after.isdisjoint(before)


async def test_a_worker_that_never_reports_ready_is_replaced(app_file: Path) -> None:
    app = await start_app(app_file, ["1", "0", "5", "never-ready"], READY_TIMEOUT="0.5")
    try:
        with trio.fail_after(30):
            line = await app.stderr.until("not ready after 0.5 s; killing it")
            first = line.split("(pid ")[1].split(")")[0]
            await app.stderr.until(f"(pid {first}) was killed by SIGKILL; restarting")
            line = await app.stderr.until("not ready after 0.5 s; killing it")
            assert f"(pid {first})" not in line  # its replacement, given the same time
            app.process.send_signal(signal.SIGTERM)
            assert await app.process.wait() == 0
    finally:
        if app.process.returncode is None:
            app.process.kill()
            with trio.fail_after(10):
                await app.process.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_workers_stop_when_the_supervisor_is_killed(running: App) -> None:
    """A supervisor killed outright leaves no orphaned worker serving the socket."""
    with trio.fail_after(30):
        pids = await pids_seen(running.port, 2)
    running.process.kill()  # SIGKILL: the supervisor cannot stop its workers itself
    with trio.fail_after(10):
        await running.process.wait()
    with trio.fail_after(15):
        while any(_alive(pid) for pid in pids):
            await trio.sleep(0.05)
