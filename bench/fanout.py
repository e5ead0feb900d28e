"""Fan-out at scale: one message to N waiting subscribers, mhd2.fanout against its peers.

    python bench/fanout.py                                  # N = 1k,10k,50k,100k SSE + ws/poll at 10k
    python bench/fanout.py --sse 1000 --ws 1000 --poll 1000 --only mhd2 --only uvicorn
    python bench/fanout.py --fit --json bench/results/fanout.json --plot bench/results/fanout.png
    python bench/fanout.py --report bench/results/fanout.json   # tables (and plot) of a saved run
    python bench/fanout.py --sse 0 --ws 0 --poll 0 --workers-redis 1k,10k   # --workers 2 over Redis

For each server, each kind (``sse``, ``ws``, ``poll``) and each N, a fresh
server process is started on CPU 0 (``taskset``) and this client, pinned to
CPU 1 (``os.sched_setaffinity``), measures:

* **memory per subscriber**: the server's RSS (``VmRSS``, summed over its
  process tree) after N subscribers are connected, subscribed (each has
  received one message) and idle, minus its RSS before them, over N; and the
  same minus the bare idle-connection cost (N keep-alive connections that
  made one ``GET /hello`` each, measured the same way on a fresh process of
  the same server): what a subscriber costs beyond its connection;
* **delivery latency**: from the server's ``time.monotonic()`` just before
  ``publish`` (it answers the ``POST /publish`` with it; both processes read
  the same ``CLOCK_MONOTONIC``) to the moment the last of the N subscribers
  has received the message's bytes (also the first, p50 and p99), best and
  median of ``--rounds`` rounds;
* **sustained deliveries per second** (sse, ws): K messages published back
  to back (K picked so the burst lasts about ``--burst-seconds``), messages
  x subscribers / (last subscriber's last message - first publish).

The client is not asyncio or trio: one ``epoll`` over non-blocking sockets,
``os.readv`` into one buffer and ``bytearray.count`` of a marker byte (``~``:
every message's data holds exactly one, and nothing else on the wire does).
Its CPU time over each phase is reported (``client busy``); above ~70 % it
may be setting the pace, and the row is marked.  Connections come from
several loopback source addresses (127.0.0.2, .3, ...; at most 20,000 each,
``IP_BIND_ADDRESS_NO_PORT``) so that more than the ~28k ephemeral ports of
one address can be used.

Peers (same harness, same routes, see ``servers/fanout_asgi.py``):
uvicorn with uvloop + httptools (what ``uvicorn[standard]`` runs) +
Starlette + sse-starlette + encode's ``broadcaster`` (in-memory backend; and
its Redis backend when ``redis-server`` is on PATH), and hypercorn's trio
worker with the same app (broadcaster needs asyncio, so there its design
runs on anyio memory streams).  mhd2 runs ``servers/fanout_mhd2.py``
(``mhd2.fanout``; ``Hub(redis=...)`` as ``mhd2-redis``).

**Open files.**  Each side needs one descriptor per subscriber: the script
raises its soft ``RLIMIT_NOFILE`` to the hard limit (servers inherit it) and
skips an N that does not fit, saying what to raise.  100k needs a hard limit
of about 101,000 (``ulimit -Hn``; raising it takes CAP_SYS_RESOURCE, e.g.
``prlimit --nofile=110000:110000 --pid $$`` as root, docker ``--ulimit
nofile=110000:110000``, systemd ``LimitNOFILE=110000``), under
``/proc/sys/fs/nr_open``.  ``--fit`` adds the largest N that fits here.

**Across processes** (``--workers-redis N``): the mhd2 app under mhd2's
supervisor with ``--workers`` (2) processes, each with its own
``Hub(redis=...)`` on the private redis-server; N SSE subscribers spread by
the kernel over the workers (counted per worker); one worker publishes
``--series-messages`` messages at ``--series-rate`` per second, each stamped
with its ``time.monotonic()`` just before ``publish``; the client reads every
stamp: end-to-end latency per delivery (p50, p99, max), and every subscriber
must get every message once, in order (lost / duplicated).  With
``--client-procs K`` the subscribers are opened by K client processes (one
loopback source address each) and ``--workers`` W share them, so N may exceed
one process's open-files limit (100k: ``--workers 6 --client-procs 6``); the
latencies are merged as a 0.1 ms histogram, and RSS and subscribers are given
per worker.

This is a benchmark, not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import errno
import json
import math
import os
import platform
import re
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SERVERS_DIR = Path(__file__).resolve().parent / "servers"
EXIT_NOT_APPLICABLE = 3
_CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Linux's IP_BIND_ADDRESS_NO_PORT (socket module constant only from 3.12 on).
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
#: Connections per loopback source address (the ephemeral range here is ~28k).
PER_SOURCE = 20_000
#: Descriptors a process needs beyond one per connection.
FD_MARGIN = 256
MARKER = b"~"
#: A delivery that sees no byte for this long is over (the rest is counted lost).
STALL_S = 10.0

# The goals of issue 20 ("Performance").
GOAL_BEYOND_CONN_B = 4096
GOAL_TOTAL_B = 12 * 1024
GOAL_LATENCY_100K_S = 1.0
GOAL_DELIVERY_RATIO = 3.0
GOAL_MEMORY_RATIO = 1 / 3

#: ``--tracemalloc``: mhd2's server traces its Python allocations (RSS is then
#: inflated by the tracing: take the memory figures from a run without it).
TRACEMALLOC = False
#: The private redis-server's pid (its CPU time is reported apart), once started.
REDIS_PID: int | None = None
#: ``--py-spy-raw``: where py-spy's raw stacks are kept (None: not kept).
PY_SPY_RAW: Path | None = None
#: The CPUs the servers are pinned to (None: not pinned).
SERVER_CPUS: set[int] | None = None

SERVER_NAMES = ("mhd2", "mhd2-redis", "uvicorn", "uvicorn-redis", "hypercorn-trio")
SERVER_HELP = {
    "mhd2": "mhd2.fanout.Hub() (servers/fanout_mhd2.py)",
    "mhd2-redis": "mhd2.fanout.Hub(redis=...) on a private redis-server",
    "uvicorn": "uvicorn (uvloop, httptools) + Starlette + sse-starlette + broadcaster memory://",
    "uvicorn-redis": "the same with broadcaster's Redis backend",
    "hypercorn-trio": "hypercorn --worker-class trio + the same app (broadcaster's design on anyio)",
}


# ----------------------------------------------------------------------- processes


def descendants(pid: int) -> list[int]:
    """pid and all its descendant pids (from /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def rss_bytes(pid: int) -> int:
    """VmRSS summed over the process tree rooted at pid."""
    total = 0
    for p in descendants(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def cpu_seconds(pid: int) -> float:
    """utime + stime summed over the process tree rooted at pid."""
    ticks = 0
    for p in descendants(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / _CLK_TCK


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_busy(cpus: set[int]) -> float:
    """Busy seconds (user, nice, system, steal; not irq/softirq) of *cpus* since boot."""
    busy = 0
    for line in Path("/proc/stat").read_text().splitlines():
        head, *vals = line.split()
        if head.startswith("cpu") and head[3:].isdigit() and int(head[3:]) in cpus:
            v = [int(x) for x in vals]
            busy += v[0] + v[1] + v[2] + v[7]
    return busy / _CLK_TCK


@contextlib.contextmanager
def others_on_server_cpu(pid: int, into: dict[str, Any]) -> Iterator[None]:
    """Record in *into* the share of the server's CPU that other processes used.

    The machine is shared: ``taskset`` pins the server, not everyone else.
    ``others_on_server_cpu`` above ~0.1 means the figures of that phase are
    slower than the server alone would be.
    """
    if SERVER_CPUS is None:
        yield
        return
    t0, b0, s0 = time.monotonic(), cpu_busy(SERVER_CPUS), cpu_seconds(pid)
    yield
    wall = time.monotonic() - t0
    if wall > 0:
        others = (cpu_busy(SERVER_CPUS) - b0) - (cpu_seconds(pid) - s0)
        into["others_on_server_cpu"] = round(max(0.0, others) / wall, 3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settle(pid: int, quiet: float = 0.01, step: float = 0.3, limit: float = 60.0) -> float:
    """Wait until the server used less than *quiet* CPU-s over *step* s; the wait."""
    start = time.monotonic()
    before = cpu_seconds(pid)
    while time.monotonic() - start < limit:
        time.sleep(step)
        now = cpu_seconds(pid)
        if now - before < quiet:
            break
        before = now
    return time.monotonic() - start


class NotApplicable(Exception):
    """The server cannot run here (no mhd2.fanout, no redis-server, ...)."""


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path


def workers_of(name: str) -> int:
    """``mhd2-redis-w2`` -> 2: the server runs under mhd2's supervisor with 2 workers."""
    m = re.fullmatch(r"mhd2-redis-w(\d+)", name)
    return int(m.group(1)) if m else 0


def worker_pids(log: Path) -> list[int]:
    """The worker pids a ``--workers`` server printed (``worker I pid P``)."""
    pids = []
    for line in log.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "worker" and parts[2] == "pid":
            pids.append(int(parts[3]))
    return pids


def socket_fds(pid: int) -> int:
    """How many sockets process *pid* holds (``/proc/PID/fd``)."""
    n = 0
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                    n += 1
    return n


def server_command(
    name: str, port: int, redis_url: str | None
) -> tuple[list[str], dict[str, str], Path]:
    env = dict(os.environ)
    if name.startswith("mhd2"):
        cmd = [sys.executable, str(SERVERS_DIR / "fanout_mhd2.py"), "--port", str(port)]
        if name.startswith("mhd2-redis"):
            cmd += ["--redis", f"{redis_url}/0"]
        if workers := workers_of(name):
            cmd += ["--workers", str(workers)]
        if TRACEMALLOC:
            cmd += ["--tracemalloc", "1"]
        return cmd, env, REPO
    if name.startswith("uvicorn"):
        env["FANOUT_BACKEND"] = (redis_url or "") if name == "uvicorn-redis" else "memory://"
        cmd = [
            sys.executable, "-m", "uvicorn", "--app-dir", str(SERVERS_DIR),
            "--host", "127.0.0.1", "--port", str(port),
            "--loop", "uvloop", "--http", "httptools", "--ws", "websockets",
            # the client never answers a ping: none while a run lasts
            "--ws-ping-interval", "3600", "--ws-ping-timeout", "3600",
            "--backlog", "4096", "--timeout-keep-alive", "3600",
            "--no-access-log", "--log-level", "warning", "fanout_asgi:app",
        ]  # fmt: skip
        return cmd, env, SERVERS_DIR
    if name == "hypercorn-trio":
        env["FANOUT_BACKEND"] = "anyio"
        cmd = [
            sys.executable, "-m", "hypercorn", "--worker-class", "trio",
            "--bind", f"127.0.0.1:{port}", "--backlog", "4096", "--keep-alive", "3600",
            "--log-level", "warning", "fanout_asgi:app",
        ]  # fmt: skip
        return cmd, env, SERVERS_DIR
    raise ValueError(name)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT the process group, then SIGTERM, then SIGKILL."""
    for sig, wait in ((signal.SIGINT, 5.0), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """One blocking ``GET`` with ``Connection: close``: (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@contextlib.contextmanager
def running_server(
    name: str, cpu: str | None, logdir: Path, redis_url: str | None
) -> Iterator[Server]:
    port = free_port()
    cmd, env, cwd = server_command(name, port, redis_url)
    prefix = ["taskset", "-c", cpu] if cpu is not None else []
    log = logdir / f"{name}-{port}.log"
    with log.open("wb") as logf:
        proc = subprocess.Popen(
            prefix + cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=logf,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_default_sigint,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                lines = log.read_text(errors="replace").splitlines()
                na = [ln[5:] for ln in lines if ln.startswith("n/a: ")]
                if proc.returncode == EXIT_NOT_APPLICABLE and na:
                    raise NotApplicable(na[-1])
                raise RuntimeError(f"{name} exited {proc.returncode}: " + " | ".join(lines[-5:]))
            with contextlib.suppress(OSError):
                # --workers: the supervisor prints "ready" once every worker is
                if http_get(port, "/hello", 1.0)[0] == 200 and (
                    not workers_of(name)
                    or any(ln.startswith("ready ") for ln in log.read_text().splitlines())
                ):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not answer GET /hello within 30 s")
            time.sleep(0.1)
        yield Server(name, proc, port, log)
    finally:
        stop_process(proc)


@contextlib.contextmanager
def redis_server(cpu: str | None, logdir: Path) -> Iterator[str | None]:
    """A private redis-server (no persistence) on a free port, or None if absent."""
    exe = shutil.which("redis-server")
    if exe is None:
        yield None
        return
    port = free_port()
    prefix = ["taskset", "-c", cpu] if cpu is not None else []
    with (logdir / "redis.log").open("wb") as logf:
        proc = subprocess.Popen(
            [*prefix, exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(logdir)],
            stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        global REDIS_PID
        REDIS_PID = proc.pid
        yield f"redis://127.0.0.1:{port}"
    finally:
        REDIS_PID = None
        stop_process(proc)


# ------------------------------------------------------------------------- limits


def nofile_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE (and the hard one, if allowed) toward *wanted*."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(wanted, soft)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def nr_open() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(Path("/proc/sys/fs/nr_open").read_text())
    return None


def fd_note(n: int, limit: int) -> str:
    need = n + FD_MARGIN
    return (
        f"N={n:,} needs RLIMIT_NOFILE >= {need:,} in the server and in this client; "
        f"the hard limit here is {limit:,} (nr_open {nr_open()}). Raise it with "
        f"CAP_SYS_RESOURCE: `prlimit --nofile={need}:{need} --pid $$` as root, "
        f"docker `--ulimit nofile={need}:{need}`, or systemd `LimitNOFILE={need}`"
    )


# ------------------------------------------------------------------------- client


def request_bytes(kind: str) -> bytes:
    if kind == "ws":
        return (
            b"GET /ws HTTP/1.1\r\nHost: bench\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
    path = {"sse": "/sse", "poll": "/poll", "idle": "/hello"}[kind]
    accept = b"Accept: text/event-stream\r\n" if kind == "sse" else b""
    return b"GET %s HTTP/1.1\r\nHost: bench\r\n%s\r\n" % (path.encode(), accept)


#: Status line each kind must start with (poll: checked when it answers).
STATUS = {
    "sse": b"HTTP/1.1 200",
    "poll": b"HTTP/1.1 200",
    "idle": b"HTTP/1.1 200",
    "ws": b"HTTP/1.1 101",
}

CONNECTING, HEAD, OPEN, DEAD = 0, 1, 2, 3


@dataclass
class Delivery:
    """One publish (or burst) and when the subscribers received it."""

    n_messages: int
    t_sent: float  # client: just before the POST /publish was written
    t_publish: float = math.nan  # server: just before its first publish
    t_publish_done: float = math.nan  # server: after its last publish
    reached: list[float] = field(default_factory=list)  # client time each subscriber got them all
    lost: int = 0  # subscribers that closed or never got everything
    received: int = 0  # markers received in this phase, all subscribers
    elapsed: float = 0.0
    client_cpu: float = 0.0

    def summary(self, n: int) -> dict[str, Any]:
        t0 = self.t_publish
        rel = sorted(t - t0 for t in self.reached)

        def q(p: float) -> float | None:
            return round(rel[min(len(rel) - 1, int(p * len(rel)))] * 1000, 2) if rel else None

        last = rel[-1] if rel and len(rel) == n else None
        return {
            "messages": self.n_messages,
            "complete": len(rel),
            "lost": self.lost,
            "first_ms": q(0.0),
            "p50_ms": q(0.5),
            "p99_ms": q(0.99),
            "last_ms": round(last * 1000, 2) if last is not None else None,
            "from_post_last_ms": round((rel[-1] + t0 - self.t_sent) * 1000, 2) if rel else None,
            "publish_call_ms": round((self.t_publish_done - self.t_publish) * 1000, 2),
            "received": self.received,
            "client_busy": round(self.client_cpu / self.elapsed, 3) if self.elapsed else None,
        }


class Fleet:
    """N subscriber connections of one kind in one epoll, plus a publisher connection."""

    def __init__(self, port: int, kind: str, sources: list[str]) -> None:
        self.port = port
        self.kind = kind
        self.sources = sources
        self.request = request_bytes(kind)
        self.ep = select.epoll()
        self.socks: list[socket.socket] = []
        self.fds: list[int] = []
        self.state: list[int] = []
        self.count: list[int] = []
        self.index: dict[int, int] = {}
        self.heads: dict[int, bytes] = {}
        self.failures: list[str] = []
        self.buf = bytearray(1 << 18)
        self.pub = socket.create_connection(("127.0.0.1", port))
        self.pub.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pub.setblocking(False)
        self.ep.register(self.pub.fileno(), select.EPOLLIN)
        self._pub_buf = b""
        self._pub_answer: dict[str, Any] | None = None

    # -- connecting ------------------------------------------------------------

    def _start(self, i: int) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        s.bind((self.sources[i % len(self.sources)], 0))
        err = s.connect_ex(("127.0.0.1", self.port))
        fd = s.fileno()
        self.socks.append(s)
        self.fds.append(fd)
        self.state.append(CONNECTING)
        self.count.append(0)
        self.index[fd] = i
        if err not in (0, errno.EINPROGRESS):
            self._fail(i, f"connect: {os.strerror(err)}")
            return
        self.ep.register(fd, select.EPOLLOUT)

    def _fail(self, i: int, why: str) -> None:
        if self.state[i] == DEAD:
            return
        if len(self.failures) < 1000:
            self.failures.append(why)
        else:
            self.failures.append("")
        self.state[i] = DEAD
        with contextlib.suppress(OSError, KeyError):
            self.ep.unregister(self.fds[i])

    def open(self, n: int, window: int, timeout: float) -> float:
        """Open *n* connections, at most *window* not yet answered; seconds taken."""
        start = time.monotonic()
        deadline = start + timeout
        base = len(self.socks)
        nxt, inflight, done = base, 0, 0
        status = STATUS[self.kind]
        buf = self.buf
        while done < n:
            while inflight < window and nxt < base + n:
                self._start(nxt)
                nxt += 1
                inflight += 1
                if self.state[nxt - 1] == DEAD:
                    inflight -= 1
                    done += 1
            if time.monotonic() > deadline:
                for i in range(base, nxt):
                    if self.state[i] in (CONNECTING, HEAD):
                        self._fail(i, "timed out opening")
                break
            for fd, _ in self.ep.poll(0.2):
                found = self.index.get(fd)
                if found is None:
                    continue  # the publisher: nothing to read yet
                i = found
                st = self.state[i]
                if st == CONNECTING:
                    err = self.socks[i].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        self._fail(i, f"connect: {os.strerror(err)}")
                        inflight -= 1
                        done += 1
                        continue
                    os.write(fd, self.request)
                    self.ep.modify(fd, select.EPOLLIN)
                    if self.kind == "poll":  # answered only when a message comes
                        self.state[i] = OPEN
                        inflight -= 1
                        done += 1
                    else:
                        self.state[i] = HEAD
                    continue
                try:
                    k = os.readv(fd, [buf])
                except BlockingIOError:
                    continue
                except OSError as exc:
                    k, why = 0, repr(exc)
                else:
                    why = "closed"
                if k == 0:
                    if st == HEAD:
                        inflight -= 1
                        done += 1
                    self._fail(i, why)
                    continue
                if st == HEAD:
                    head = self.heads.pop(i, b"") + bytes(buf[:k])
                    if b"\r\n\r\n" not in head:
                        self.heads[i] = head
                        continue
                    inflight -= 1
                    done += 1
                    if not head.startswith(status):
                        self._fail(i, "answer: " + head.split(b"\r\n", 1)[0].decode("latin-1"))
                        continue
                    self.state[i] = OPEN
                    self.count[i] += head.count(MARKER)
                else:
                    self.count[i] += buf.count(MARKER, 0, k)
        return time.monotonic() - start

    # -- publishing and receiving --------------------------------------------------

    def _send_publish(self, n: int, size: int) -> None:
        self._pub_buf = b""
        self._pub_answer = None
        self.pub.sendall(
            b"POST /publish?n=%d&size=%d HTTP/1.1\r\nHost: bench\r\nContent-Length: 0\r\n\r\n"
            % (n, size)
        )

    def _read_publisher(self) -> None:
        with contextlib.suppress(BlockingIOError):
            chunk = self.pub.recv(65536)
            if not chunk:
                raise RuntimeError("the server closed the publisher's connection")
            self._pub_buf += chunk
        head, sep, body = self._pub_buf.partition(b"\r\n\r\n")
        if not sep:
            return
        if not head.startswith(b"HTTP/1.1 200"):
            status_line = head.split(b"\r\n", 1)[0]
            raise RuntimeError(f"POST /publish: {status_line!r}")
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise RuntimeError("POST /publish answered without Content-Length")
        if len(body) >= length:
            self._pub_answer = json.loads(body[:length])
            self._pub_buf = body[length:]

    def deliver(self, n_messages: int, size: int, timeout: float) -> Delivery:
        """Publish *n_messages* and read until every open subscriber has them all."""
        live = [i for i, st in enumerate(self.state) if st == OPEN]
        targets = {i: self.count[i] + n_messages for i in live}
        pending = len(live)
        d = Delivery(n_messages, time.monotonic())
        cpu0 = own_cpu()
        self._send_publish(n_messages, size)
        pub_fd = self.pub.fileno()
        deadline = d.t_sent + timeout
        buf, count, index, state, reached = self.buf, self.count, self.index, self.state, d.reached
        received = 0
        readv, poll = os.readv, self.ep.poll
        progress = d.t_sent
        while (pending or self._pub_answer is None) and time.monotonic() < deadline:
            events = poll(0.2)
            now = time.monotonic()
            if events:
                progress = now
            elif now - progress > STALL_S:
                break  # nothing for a while: the rest will not come
            for fd, _ in events:
                i = index.get(fd)
                if i is None:
                    if fd == pub_fd:
                        self._read_publisher()
                    continue
                try:
                    k = readv(fd, [buf])
                except BlockingIOError:
                    continue
                except OSError as exc:
                    k, why = 0, repr(exc)
                else:
                    why = "closed"
                if k == 0:
                    if state[i] == OPEN and count[i] < targets.get(i, 0):
                        pending -= 1
                        d.lost += 1
                    self._fail(i, why)
                    continue
                c = count[i]
                got = buf.count(MARKER, 0, k)
                received += got
                count[i] = c + got
                t = targets.get(i)
                if t is not None and c < t <= c + got:
                    pending -= 1
                    reached.append(now)
        d.elapsed = time.monotonic() - d.t_sent
        d.client_cpu = own_cpu() - cpu0
        d.received = received
        d.lost += pending
        if self._pub_answer is None:
            raise RuntimeError("POST /publish was not answered in time")
        d.t_publish = float(self._pub_answer["t_publish"])
        d.t_publish_done = float(self._pub_answer["t_done"])
        return d

    def repoll(self) -> None:
        """Long poll: every open connection asks again."""
        for i, st in enumerate(self.state):
            if st == OPEN:
                try:
                    os.write(self.fds[i], self.request)
                except OSError as exc:
                    self._fail(i, repr(exc))

    def get(self, path: str) -> bytes:
        """A GET on the publisher's connection (blocking): the body."""
        self.pub.setblocking(True)
        try:
            self.pub.sendall(b"GET %s HTTP/1.1\r\nHost: bench\r\n\r\n" % path.encode())
            self._pub_answer = None
            while self._pub_answer is None:
                self._pub_buf += self.pub.recv(65536)
                head, sep, body = self._pub_buf.partition(b"\r\n\r\n")
                if sep:
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    if len(body) >= length:
                        self._pub_buf = body[length:]
                        return body[:length]
        finally:
            self.pub.setblocking(False)
        return b""

    @property
    def open_count(self) -> int:
        return sum(1 for st in self.state if st == OPEN)

    def close(self) -> None:
        """Close everything with RST (SO_LINGER 0): no TIME_WAIT left behind."""
        linger = (1).to_bytes(4, "little") + (0).to_bytes(4, "little")
        for s in [*self.socks, self.pub]:
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            s.close()
        self.ep.close()


#: A stamped message of ``POST /series``: ``~<k> <server time.monotonic()>;``.
STAMP = re.compile(rb"~(\d+) (\d+\.\d+);")


@dataclass
class Series:
    """A steady series of stamped messages and what every subscriber received."""

    n_messages: int
    interval: float
    latencies: array[float] = field(default_factory=lambda: array("d"))
    lost: int = 0  # (subscriber, message) pairs never received
    duplicated: int = 0  # received again, or out of order
    complete: int = 0  # subscribers that got every message
    closed: int = 0  # subscribers whose connection ended during the series
    elapsed: float = 0.0
    client_cpu: float = 0.0
    answer: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def q(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else None

        return {
            "messages": self.n_messages,
            "rate_per_s": round(1 / self.interval, 2),
            "deliveries": len(lat),
            "complete": self.complete,
            "closed": self.closed,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "p50_ms": q(0.5),
            "p90_ms": q(0.9),
            "p99_ms": q(0.99),
            "p999_ms": q(0.999),
            "max_ms": round(lat[-1] * 1000, 2) if lat else None,
            "min_ms": round(lat[0] * 1000, 2) if lat else None,
            "publish_late": self.answer.get("late"),
            "publisher_pid": self.answer.get("pid"),
            "publish_span_s": round(self.answer["t_last"] - self.answer["t_first"], 3)
            if self.answer
            else None,
            "client_busy": round(self.client_cpu / self.elapsed, 3) if self.elapsed else None,
        }


def run_series(fleet: Fleet, n_messages: int, interval: float, size: int, timeout: float) -> Series:
    """``POST /series``: read every subscriber's stamps; latency per delivery at the client.

    Each delivery's latency is the client's ``time.monotonic()`` after the
    ``epoll_wait`` that returned its bytes minus the stamp the publishing worker
    read just before ``publish`` (one ``CLOCK_MONOTONIC`` for all processes).
    Every subscriber must see 0, 1, ..., K-1 once each, in order.
    """
    return read_series(fleet, n_messages, interval, size, timeout, post=True)


def read_series(fleet: Fleet, n_messages: int, interval: float, size: int, timeout: float,
                post: bool) -> Series:
    """:func:`run_series`'s reading; *post*: this fleet also posts the series (else
    another process does: ``--client-procs``)."""
    live = [i for i, st in enumerate(fleet.state) if st == OPEN]
    nxt = {i: 0 for i in live}
    carry: dict[int, bytes] = {}
    pending = len(live)
    res = Series(n_messages, interval)
    lat = res.latencies
    t0 = time.monotonic()
    cpu0 = own_cpu()
    fleet._pub_buf = b""
    fleet._pub_answer = None
    if post:
        fleet.pub.sendall(
            b"POST /series?n=%d&interval=%r&size=%d HTTP/1.1\r\nHost: bench\r\n"
            b"Content-Length: 0\r\n\r\n" % (n_messages, interval, size)
        )
    else:
        fleet._pub_answer = {}  # (nothing to wait for on the publisher's connection)
    pub_fd = fleet.pub.fileno()
    deadline = t0 + n_messages * interval + timeout
    buf, index, state = fleet.buf, fleet.index, fleet.state
    readv, poll, finditer = os.readv, fleet.ep.poll, STAMP.finditer
    progress = t0
    while (pending or fleet._pub_answer is None) and time.monotonic() < deadline:
        events = poll(0.2)
        now = time.monotonic()
        if events:
            progress = now
        elif now - progress > STALL_S + interval:
            break
        for fd, _ in events:
            i = index.get(fd)
            if i is None:
                if fd == pub_fd:
                    fleet._read_publisher()
                continue
            try:
                k = readv(fd, [buf])
            except BlockingIOError:
                continue
            except OSError as exc:
                k, why = 0, repr(exc)
            else:
                why = "closed"
            if k == 0:
                if state[i] == OPEN and nxt.get(i, n_messages) < n_messages:
                    pending -= 1
                    res.closed += 1
                fleet._fail(i, why)
                continue
            data = bytes(buf[:k])
            if i in carry:
                data = carry.pop(i) + data
            expect = nxt[i]
            end = 0
            for m in finditer(data):
                seq = int(m.group(1))
                lat.append(now - float(m.group(2)))
                if seq == expect:
                    expect += 1
                elif seq < expect:
                    res.duplicated += 1
                else:
                    res.lost += seq - expect
                    expect = seq + 1
                end = m.end()
            tail = data.rfind(MARKER, end)
            if tail >= 0:
                carry[i] = data[tail:]  # a stamp split across reads
            if nxt[i] < n_messages <= expect:
                pending -= 1
            nxt[i] = expect
    res.elapsed = time.monotonic() - t0
    res.client_cpu = own_cpu() - cpu0
    res.lost += sum(max(0, n_messages - v) for v in nxt.values())
    res.complete = sum(1 for v in nxt.values() if v >= n_messages)
    if fleet._pub_answer is None:
        raise RuntimeError("POST /series was not answered in time")
    res.answer = fleet._pub_answer
    return res


#: ``--client-procs``: latencies are merged as a histogram of this resolution (s).
HIST_STEP = 1e-4


def shard_main(args: argparse.Namespace) -> int:
    """One client process of ``--client-procs`` (``--shard``): open the subscribers,
    say ``ready``, wait for ``go`` on stdin, read the series, print one JSON line."""
    sources = args.shard_sources.split(",")
    fleet = Fleet(args.shard_port, "sse", sources)
    try:
        fleet.open(args.shard_n, args.window, args.open_timeout)
        print(json.dumps({"ready": fleet.open_count, "failures": len(fleet.failures),
                          "first_failures": sorted(set(fleet.failures))[:3]}), flush=True)
        if sys.stdin.readline().strip() != "go":
            return 1
        series = read_series(fleet, args.series_messages, 1.0 / args.series_rate, args.size,
                             args.deliver_timeout, post=False)
        hist: dict[int, int] = {}
        for x in series.latencies:
            b = int(x / HIST_STEP)
            hist[b] = hist.get(b, 0) + 1
        print(json.dumps({"deliveries": len(series.latencies), "lost": series.lost,
                          "duplicated": series.duplicated, "complete": series.complete,
                          "closed": series.closed, "client_cpu": series.client_cpu,
                          "elapsed": series.elapsed, "hist": hist}), flush=True)
    finally:
        fleet.close()
    return 0


def _merged_quantiles(hists: list[dict[str, int]]) -> dict[str, float | None]:
    total: dict[int, int] = {}
    for h in hists:
        for k, v in h.items():
            total[int(k)] = total.get(int(k), 0) + v
    count = sum(total.values())
    out: dict[str, float | None] = {}
    for name, p in (("p50_ms", 0.5), ("p90_ms", 0.9), ("p99_ms", 0.99), ("p999_ms", 0.999)):
        if not count:
            out[name] = None
            continue
        want, seen = p * count, 0
        for k in sorted(total):
            seen += total[k]
            if seen >= want:
                out[name] = round((k + 1) * HIST_STEP * 1000, 2)
                break
    out["max_ms"] = round((max(total) + 1) * HIST_STEP * 1000, 2) if total else None
    return out


def measure_series_sharded(server: Server, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """``--workers-redis N --client-procs K``: N SSE subscribers opened by K client
    processes (one loopback source address each; each process under the open-files
    limit), spread by the kernel over the workers; one steady series; latency per
    delivery merged from the K processes; RSS and subscribers per worker."""
    pid = server.proc.pid
    pids = worker_pids(server.log)
    k = args.client_procs
    warm_up(server, "sse", args.size)
    settle(pid)
    rss0 = {p: rss_bytes(p) for p in pids}
    out: dict[str, Any] = {"server": server.name, "kind": "series", "n": n,
                           "workers": len(pids), "client_procs": k}  # fmt: skip
    shards: list[subprocess.Popen[str]] = []
    t_open = time.monotonic()
    try:
        for j in range(k):
            count = n // k + (1 if j < n % k else 0)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--shard",
                   "--shard-port", str(server.port), "--shard-n", str(count),
                   "--shard-sources", f"127.0.0.{2 + j}", "--window", str(args.window),
                   "--open-timeout", str(args.open_timeout),
                   "--series-messages", str(args.series_messages),
                   "--series-rate", str(args.series_rate), "--size", str(args.size),
                   "--deliver-timeout", str(args.deliver_timeout)]  # fmt: skip
            shards.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           text=True))
        ready = [json.loads(sh.stdout.readline() or "{}") for sh in shards if sh.stdout]
        out["open_s"] = round(time.monotonic() - t_open, 2)
        out["open"] = sum(r.get("ready", 0) for r in ready)
        out["open_failures"] = sum(r.get("failures", 0) for r in ready)
        settle(pid)
        stats = worker_stats(server.port, pids)
        per_worker = {p: s.get("subscribers", {}).get("sse") for p, s in stats.items()}
        out["sse_subscribers_per_worker"] = per_worker
        rss = {str(p): rss_bytes(p) - rss0[p] for p in pids}
        out["rss_growth_per_worker"] = rss
        out["bytes_per_subscriber_per_worker"] = {
            p: round(rss[p] / c) for p, c in per_worker.items() if c and p in rss}
        out["bytes_per_subscriber"] = round(sum(rss.values()) / max(1, out["open"]))
        noise: dict[str, Any] = {}
        cpu0 = cpu_seconds(pid)
        redis0 = cpu_seconds(REDIS_PID) if REDIS_PID else 0.0
        t0 = time.monotonic()
        with others_on_server_cpu(pid, noise):
            for sh in shards:
                assert sh.stdin is not None
                sh.stdin.write("go\n")
                sh.stdin.flush()
            time.sleep(0.5)  # every shard reads before the first message
            with socket.create_connection(("127.0.0.1", server.port)) as pub:
                pub.sendall(b"POST /series?n=%d&interval=%r&size=%d HTTP/1.1\r\nHost: bench\r\n"
                            b"Content-Length: 0\r\nConnection: close\r\n\r\n"
                            % (args.series_messages, 1.0 / args.series_rate, args.size))
                answer = b""
                while chunk := pub.recv(65536):
                    answer += chunk
            results = [json.loads(sh.stdout.readline() or "{}") for sh in shards if sh.stdout]
        elapsed = time.monotonic() - t0
        server_cpu = cpu_seconds(pid) - cpu0
        redis_cpu = (cpu_seconds(REDIS_PID) - redis0) if REDIS_PID else 0.0
        deliveries = sum(r.get("deliveries", 0) for r in results)
        series = {key: sum(r.get(key, 0) for r in results)
                  for key in ("deliveries", "lost", "duplicated", "complete", "closed")}
        series |= _merged_quantiles([r.get("hist", {}) for r in results])
        series["messages"] = args.series_messages
        series["rate_per_s"] = args.series_rate
        series["publish_answer"] = answer.partition(b"\r\n\r\n")[2].decode("latin-1")
        series["client_busy"] = max(
            (r["client_cpu"] / r["elapsed"] for r in results if r.get("elapsed")), default=None)
        series["server_cpu_us_per_delivery"] = (
            round(server_cpu / deliveries * 1e6, 2) if deliveries else None)
        series["server_busy"] = round(server_cpu / elapsed, 3)
        series["redis_busy"] = round(redis_cpu / elapsed, 3)
        out["series"] = series | noise
        out["hub_stats_per_worker"] = worker_stats(server.port, pids)
    finally:
        for sh in shards:
            with contextlib.suppress(Exception):
                sh.kill()
                sh.wait(timeout=10)
        out["failures"] = out.get("open_failures", 0)
    return out


def worker_stats(port: int, pids: list[int], tries: int = 40) -> dict[str, Any]:
    """``GET /stats`` on fresh connections until every worker has answered once."""
    seen: dict[str, Any] = {}
    for _ in range(tries):
        with contextlib.suppress(OSError, ValueError):
            stats = json.loads(http_get(port, "/stats", 5.0)[1])
            seen[str(stats.get("pid"))] = stats
        if all(str(p) in seen for p in pids):
            break
    return seen


def measure_series(server: Server, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """N SSE subscribers spread over the workers; a steady series; latency per delivery."""
    pid = server.proc.pid
    pids = worker_pids(server.log)
    warm_up(server, "sse", args.size)
    settle(pid)
    fds0 = {p: socket_fds(p) for p in pids}
    fleet = Fleet(server.port, "sse", sources_for(n, args.per_source))
    out: dict[str, Any] = {"server": server.name, "kind": "series", "n": n,
                           "workers": len(pids)}  # fmt: skip
    try:
        out["open_s"] = round(fleet.open(n, args.window, args.open_timeout), 2)
        out["open"] = fleet.open_count
        first = fleet.deliver(1, args.size, args.deliver_timeout)
        out["first"] = first.summary(n)
        settle(pid)
        # each worker's sockets now minus before (the publisher's connection is
        # in one of them): how the kernel spread the subscribers
        out["connections_per_worker"] = {str(p): socket_fds(p) - fds0[p] for p in pids}
        stats = worker_stats(server.port, pids)
        out["sse_subscribers_per_worker"] = {
            p: s.get("subscribers", {}).get("sse") for p, s in stats.items()
        }
        interval = 1.0 / args.series_rate
        noise: dict[str, Any] = {}
        cpu0 = cpu_seconds(pid)
        redis0 = cpu_seconds(REDIS_PID) if REDIS_PID else 0.0
        with others_on_server_cpu(pid, noise):
            series = run_series(fleet, args.series_messages, interval, args.size,
                                args.deliver_timeout)  # fmt: skip
        server_cpu = cpu_seconds(pid) - cpu0
        redis_cpu = (cpu_seconds(REDIS_PID) - redis0) if REDIS_PID else 0.0
        out["series"] = series.summary() | noise
        # redis-server is pinned to the server's CPU too: its share, counted
        # in "others" above, is given apart
        out["series"]["redis_busy"] = (
            round(redis_cpu / series.elapsed, 3) if series.elapsed else None
        )
        out["series"]["server_cpu_us_per_delivery"] = (
            round(server_cpu / len(series.latencies) * 1e6, 2) if series.latencies else None
        )
        out["series"]["server_busy"] = (
            round(server_cpu / series.elapsed, 3) if series.elapsed else None
        )
        out["hub_stats_per_worker"] = worker_stats(server.port, pids)
    finally:
        out["failures"] = len(fleet.failures)
        out["first_failures"] = sorted(set(fleet.failures))[:5]
        fleet.close()
    return out


# -------------------------------------------------------------------- one measurement


def sources_for(n: int, per_source: int = PER_SOURCE) -> list[str]:
    """Loopback source addresses for *n* connections, *per_source* each at most."""
    return [f"127.0.0.{2 + k}" for k in range(max(1, math.ceil(n / per_source)))]


def warm_up(server: Server, kind: str, size: int) -> None:
    """A few connections of *kind* through the whole path, so first-use costs are paid."""
    fleet = Fleet(server.port, kind, ["127.0.0.1"])
    try:
        fleet.open(20, 20, 30)
        if kind != "idle":
            fleet.deliver(1, size, 30)
    finally:
        fleet.close()


def start_py_spy(server: Server, kind: str, n: int) -> tuple[subprocess.Popen[bytes], Path] | None:
    """``py-spy record`` of an mhd2 server during the burst (on the client's CPU)."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not server.name.startswith("mhd2") or not os.path.exists(exe):
        return None
    out = server.log.with_name(f"py-spy-{server.name}-{kind}-{n}.txt")
    cmd = [exe, "record", "--pid", str(server.proc.pid), "--format", "raw", "--rate", "250",
           "--nonblocking", "--output", str(out)]  # fmt: skip
    spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the burst starts
    return spy, out


def stop_py_spy(spy: tuple[subprocess.Popen[bytes], Path], us_per_delivery: float | None) -> str:
    """Stop py-spy; its samples summed by function (bench/pyspy_profile.py's tables)."""
    proc, out = spy
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return "py-spy did not stop"
    if not out.exists():
        return f"py-spy wrote nothing (exit {proc.returncode}; it needs ptrace rights)"
    if PY_SPY_RAW is not None:
        PY_SPY_RAW.mkdir(parents=True, exist_ok=True)
        shutil.copy(out, PY_SPY_RAW / out.name)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from bench.pyspy_profile import read_raw, summarize

    return summarize(read_raw(out.read_text()), "mhd2", 15, us_per_delivery, markdown=True).replace(
        "µs / request", "µs / delivery"
    )


def measure(server: Server, kind: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """Memory, latency and (sse, ws) sustained rate of *n* subscribers of *kind*."""
    pid = server.proc.pid
    warm_up(server, kind, args.size)
    settle(pid)
    rss0 = rss_bytes(pid)
    traced = TRACEMALLOC and server.name.startswith("mhd2") and kind != "idle"
    if traced:
        http_get(server.port, "/tracemalloc/mark", 60)
    fleet = Fleet(server.port, kind, sources_for(n, args.per_source))
    out: dict[str, Any] = {"server": server.name, "kind": kind, "n": n}
    try:
        out["open_s"] = round(fleet.open(n, args.window, args.open_timeout), 2)
        settle(pid)
        out["open"] = fleet.open_count
        out["rss_before"] = rss0
        if kind == "idle":
            rss1 = rss_bytes(pid)
            out["rss_after"] = rss1
            out["bytes_per_conn"] = round((rss1 - rss0) / max(1, fleet.open_count))
            return out
        # Every subscriber has its first message: all are subscribed (no race with
        # the subscription), and the first-message costs are paid.
        first = fleet.deliver(1, args.size, args.deliver_timeout)
        out["first"] = first.summary(n)
        if not first.reached:
            raise RuntimeError(f"no subscriber received the first message: {out['first']}")
        if kind == "poll":
            fleet.repoll()
        settle(pid)
        rss1 = rss_bytes(pid)
        out["rss_after"] = rss1
        out["bytes_per_subscriber"] = round((rss1 - rss0) / max(1, fleet.open_count))
        if traced:
            body = http_get(server.port, f"/tracemalloc/diff?n={fleet.open_count}", 120)[1]
            out["tracemalloc"] = json.loads(body)
            out["rss_inflated_by_tracemalloc"] = True
        rounds = []
        # Long polls have no burst: their profile covers the rounds.
        spy = start_py_spy(server, kind, n) if args.py_spy and kind == "poll" else None
        for _ in range(args.rounds):
            noise: dict[str, Any] = {}
            cpu0 = cpu_seconds(pid)
            with others_on_server_cpu(pid, noise):
                d = fleet.deliver(1, args.size, args.deliver_timeout)
            summary = d.summary(n) | noise
            if d.received:
                # (the whole delivery: for long polls each answer is a response)
                summary["server_cpu_us_per_delivery"] = round(
                    (cpu_seconds(pid) - cpu0) / d.received * 1e6, 2)
            rounds.append(summary)
            if kind == "poll":
                fleet.repoll()
            settle(pid, step=0.2)
        if spy is not None:
            cpus = [r.get("server_cpu_us_per_delivery") for r in rounds]
            known = [c for c in cpus if c is not None]
            out["profile"] = stop_py_spy(spy, statistics.median(known) if known else None)
        per_delivery = [r["server_cpu_us_per_delivery"] for r in rounds
                        if r.get("server_cpu_us_per_delivery") is not None]
        if kind == "poll" and per_delivery:
            out["cpu_us_per_delivery"] = statistics.median(per_delivery)
        out["rounds"] = rounds
        lasts = [r["last_ms"] for r in rounds if r["last_ms"] is not None]
        out["last_ms_best"] = min(lasts) if lasts else None
        out["last_ms_median"] = statistics.median(lasts) if lasts else None
        if kind in ("sse", "ws") and lasts:
            # burst: K back-to-back messages, K from the single-message rate
            per_s = n / (statistics.median(lasts) / 1000)
            k = max(3, min(args.max_burst, math.ceil(per_s * args.burst_seconds / n)))
            spy = start_py_spy(server, kind, n) if args.py_spy else None
            cpu0 = cpu_seconds(pid)
            noise = {}
            with others_on_server_cpu(pid, noise):
                burst = fleet.deliver(k, args.size, args.deliver_timeout + args.burst_seconds * 10)
            server_cpu = cpu_seconds(pid) - cpu0
            s = burst.summary(n) | noise
            span = (max(burst.reached) - burst.t_publish) if burst.reached else burst.elapsed
            s["deliveries_per_s"] = round(burst.received / span) if span > 0 else None
            s["server_busy"] = round(server_cpu / burst.elapsed, 3) if burst.elapsed else None
            # the figure other processes on the server's CPU do not move much
            s["server_cpu_us_per_delivery"] = (
                round(server_cpu / burst.received * 1e6, 2) if burst.received else None
            )
            out["burst"] = s
            out["deliveries_per_s"] = s["deliveries_per_s"]
            out["cpu_us_per_delivery"] = s["server_cpu_us_per_delivery"]
            if spy is not None:
                out["profile"] = stop_py_spy(spy, s["server_cpu_us_per_delivery"])
        if server.name.startswith("mhd2"):
            with contextlib.suppress(Exception):
                out["hub_stats"] = json.loads(fleet.get("/stats"))
    finally:
        out["failures"] = len(fleet.failures)
        out["first_failures"] = sorted(set(fleet.failures))[:5]
        fleet.close()
    return out


# --------------------------------------------------------------------------- report


def machine_info() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for mod in (
        "trio",
        "uvicorn",
        "uvloop",
        "httptools",
        "hypercorn",
        "starlette",
        "sse-starlette",
        "broadcaster",
        "anyio",
        "redis",
        "websockets",
        "wsproto",
    ):
        try:
            versions[mod] = version(mod)
        except PackageNotFoundError:
            versions[mod] = "missing"
    commit = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout.strip() or commit  # fmt: skip
    redis_version = None
    if exe := shutil.which("redis-server"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            redis_version = subprocess.run(
                [exe, "--version"], capture_output=True, text=True, timeout=10, check=False
            ).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "mhd2_commit": commit,
        "loadavg_at_start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "redis_server": redis_version,
        "rlimit_nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
        "nr_open": nr_open(),
    }


def _kb(b: float | None) -> str:
    return "—" if b is None else f"{b / 1024:,.1f}"


def _num(v: float | None, spec: str = ",.0f") -> str:
    return "—" if v is None else format(v, spec)


def rows_of(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (server, kind, N): the measurement plus the baseline subtracted."""
    base: dict[tuple[str, int], float] = {}
    for r in results["runs"]:
        if r.get("kind") == "idle" and "bytes_per_conn" in r:
            base[(r["server"], r["n"])] = r["bytes_per_conn"]
    rows = []
    for r in results["runs"]:
        if r.get("kind") in ("idle", "series") or "error" in r or "n/a" in r:
            continue
        b = base.get((r["server"], r["n"]))
        if b is None:  # the nearest N measured for this server
            cands = [(abs(n - r["n"]), v) for (s, n), v in base.items() if s == r["server"]]
            b = min(cands)[1] if cands else None
        row = dict(r)
        row["idle_conn_bytes"] = b
        per = r.get("bytes_per_subscriber")
        row["beyond_conn_bytes"] = per - b if per is not None and b is not None else None
        rows.append(row)
    return rows


def best_peer(
    rows: list[dict[str, Any]], kind: str, n: int, key: str, low: bool
) -> tuple[str, float] | None:
    cands = [
        (r["server"], r[key])
        for r in rows
        if r["kind"] == kind and r["n"] == n and not r["server"].startswith("mhd2") and r.get(key)
    ]
    if not cands:
        return None
    return min(cands, key=lambda c: c[1]) if low else max(cands, key=lambda c: c[1])


def print_report(results: dict[str, Any]) -> str:
    rows = rows_of(results)
    lines = [
        "| server | kind | N | open | B / subscriber | B beyond idle conn | "
        "publish → last ms (best / median) | p50 ms | p99 ms | deliveries/s | server CPU µs / delivery | client busy | others on server CPU | failures |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        rounds = r.get("rounds") or [{}]
        best = min(rounds, key=lambda x: x.get("last_ms") or math.inf)
        busy = max((x.get("client_busy") or 0) for x in [*rounds, r.get("burst") or {}])
        flag = " (client-bound?)" if busy > 0.7 else ""
        phases = [*rounds, r.get("burst") or {}]
        others = max((x.get("others_on_server_cpu") or 0) for x in phases)
        lines.append(
            f"| {r['server']} | {r['kind']} | {r['n']:,} | {r.get('open', 0):,} | "
            f"{_num(r.get('bytes_per_subscriber'))} | {_num(r.get('beyond_conn_bytes'))} | "
            f"{_num(r.get('last_ms_best'), ',.1f')} / {_num(r.get('last_ms_median'), ',.1f')} | "
            f"{_num(best.get('p50_ms'), ',.1f')} | {_num(best.get('p99_ms'), ',.1f')} | "
            f"{_num(r.get('deliveries_per_s'))} | {_num(r.get('cpu_us_per_delivery'), ',.1f')} | "
            f"{busy:.0%}{flag} | {others:.0%} | {r.get('failures', 0)} |"
        )
    for r in results["runs"]:
        if "error" in r or "n/a" in r:
            lines.append(
                f"| {r['server']} | {r['kind']} | {r['n']:,} | {r.get('n/a') or r.get('error')} |||||||||"
            )
    if not rows and not any("error" in r or "n/a" in r for r in results["runs"]):
        lines = []  # only --workers-redis rows: their own table below
    idle = [r for r in results["runs"] if r.get("kind") == "idle" and "bytes_per_conn" in r]
    if idle:
        lines += [
            "",
            "| server | bare idle keep-alive connections | B / connection |",
            "| --- | ---: | ---: |",
        ]
        lines += [f"| {r['server']} | {r['open']:,} | {r['bytes_per_conn']:,} |" for r in idle]
    series = [r for r in results["runs"] if r.get("kind") == "series" and r.get("series")]
    if series:
        lines += [
            "",
            "| server | workers | N | open | subscribers per worker | messages × rate | "
            "deliveries | p50 ms | p99 ms | max ms | lost | duplicated | server busy | "
            "server CPU µs / delivery | redis busy | client busy | others on server CPU |",
            "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
            "| ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in series:
            x = r["series"]
            per = r.get("sse_subscribers_per_worker") or r.get("connections_per_worker") or {}
            lines.append(
                f"| {r['server']} | {r.get('workers')} | {r['n']:,} | {r.get('open', 0):,} | "
                f"{' + '.join(f'{v:,}' for v in per.values() if v is not None)} | "
                f"{x['messages']} × {x['rate_per_s']:g}/s | {x['deliveries']:,} | "
                f"{_num(x.get('p50_ms'), ',.1f')} | {_num(x.get('p99_ms'), ',.1f')} | "
                f"{_num(x.get('max_ms'), ',.1f')} | {x['lost']:,} | {x['duplicated']:,} | "
                f"{x.get('server_busy') or 0:.0%} | "
                f"{_num(x.get('server_cpu_us_per_delivery'), ',.1f')} | "
                f"{x.get('redis_busy') or 0:.0%} | {x.get('client_busy') or 0:.0%} | "
                f"{max(0.0, (x.get('others_on_server_cpu') or 0) - (x.get('redis_busy') or 0)):.0%} |"
            )
    ratio_lines = []
    for r in rows:
        if r["server"] != "mhd2":
            continue
        parts = []
        d = best_peer(rows, r["kind"], r["n"], "deliveries_per_s", low=False)
        if d and r.get("deliveries_per_s"):
            ratio = r["deliveries_per_s"] / d[1]
            verdict = "met" if ratio >= GOAL_DELIVERY_RATIO else "missed"
            parts.append(f"deliveries/s {ratio:.2f}× {d[0]} (goal ≥ 3×: {verdict})")
        c = best_peer(rows, r["kind"], r["n"], "cpu_us_per_delivery", low=True)
        if c and r.get("cpu_us_per_delivery"):
            ratio = c[1] / r["cpu_us_per_delivery"]
            parts.append(f"per server CPU-second {ratio:.2f}× {c[0]}")
        m = best_peer(rows, r["kind"], r["n"], "bytes_per_subscriber", low=True)
        if m and r.get("bytes_per_subscriber"):
            ratio = r["bytes_per_subscriber"] / m[1]
            verdict = "met" if ratio <= GOAL_MEMORY_RATIO else "missed"
            parts.append(f"memory {ratio:.2f}× {m[0]} (goal ≤ 1/3: {verdict})")
        lat = best_peer(rows, r["kind"], r["n"], "last_ms_median", low=True)
        if lat and r.get("last_ms_median"):
            parts.append(f"latency {r['last_ms_median'] / lat[1]:.2f}× {lat[0]}")
        if parts:
            ratio_lines.append(f"* {r['kind']} N={r['n']:,}: " + "; ".join(parts))
    goal_lines = []
    for r in rows:
        if r["server"] == "mhd2" and r["kind"] == "sse":
            per, beyond = r.get("bytes_per_subscriber"), r.get("beyond_conn_bytes")
            goal_lines.append(
                f"* sse N={r['n']:,}: {_num(per)} B per subscriber (goal ≤ {GOAL_TOTAL_B:,}: "
                f"{'met' if per is not None and per <= GOAL_TOTAL_B else 'missed'}), "
                f"{_num(beyond)} B beyond the connection (goal ≤ {GOAL_BEYOND_CONN_B:,}: "
                f"{'met' if beyond is not None and beyond <= GOAL_BEYOND_CONN_B else 'missed'})"
                + (
                    f"; publish → last {_num(r.get('last_ms_median'), ',.0f')} ms "
                    f"(goal ≤ {GOAL_LATENCY_100K_S * 1000:,.0f} ms at 100k)"
                    if r["n"] >= 100_000
                    else ""
                )
            )
    traced = []
    for r in rows:
        tm = r.get("tracemalloc")
        if not tm:
            continue
        traced += [
            "",
            f"{r['server']} {r['kind']} N={r['n']:,}: Python allocations since before the "
            f"subscribers, {tm['traced_per_subscriber']:,} B per subscriber (tracemalloc):",
            "",
            "| where | B per subscriber | blocks |",
            "| --- | ---: | ---: |",
            *(
                f"| {t['where']} | {t['bytes_per_subscriber']:,} | {t['blocks']:,} |"
                for t in tm["top"][:12]
            ),
            "",
            "| file | B per subscriber | blocks |",
            "| --- | ---: | ---: |",
            *(
                f"| {t['where']} | {t['bytes_per_subscriber']:,} | {t['blocks']:,} |"
                for t in tm.get("files", [])[:12]
            ),
        ]
    for r in rows:
        if r.get("profile"):
            traced += [
                "",
                f"{r['server']} {r['kind']} N={r['n']:,}, the burst under py-spy:",
                r["profile"],
            ]
    skipped = [f"* {s}" for s in results.get("skipped", [])]
    text = "\n".join(
        lines
        + (
            ["", "mhd2 against the best peer of the same kind and N:", *ratio_lines]
            if ratio_lines
            else []
        )
        + (["", "Goals of issue 20:", *goal_lines] if goal_lines else [])
        + traced
        + (["", "Skipped:", *skipped] if skipped else [])
    )
    print(text, flush=True)
    return text


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = rows_of(results)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    markers = {"sse": "o-", "ws": "s", "poll": "^"}
    for si, server in enumerate(dict.fromkeys(r["server"] for r in rows)):
        for kind in ("sse", "ws", "poll"):
            pts = sorted(
                (r["n"], r["last_ms_median"])
                for r in rows
                if r["server"] == server and r["kind"] == kind and r.get("last_ms_median")
            )
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, markers[kind], color=f"C{si}", label=f"{server} {kind}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("subscribers N (one server process)")
    ax.set_ylabel("publish → last subscriber received (ms, median of rounds)")
    ax.set_title(f"Fan-out delivery latency, {results['machine']['date'][:10]}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ----------------------------------------------------------------------------- main


def parse_ns(text: str) -> list[int]:
    ns = [int(x.replace("_", "").replace("k", "000")) for x in text.split(",") if x]
    return [n for n in ns if n > 0]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--sse", default="1k,10k,50k,100k", help="N for SSE (default: %(default)s)")
    p.add_argument("--ws", default="10k", help="N for WebSocket (default: %(default)s)")
    p.add_argument("--poll", default="10k", help="N for long poll (default: %(default)s)")
    p.add_argument(
        "--workers-redis",
        default="",
        metavar="N[,N...]",
        help="N SSE subscribers of the mhd2 app under mhd2's supervisor with --workers "
        "processes, Hub(redis=...) on the private redis-server; a steady --series-messages "
        "series through one worker; end-to-end latency per delivery (default: none)",
    )
    p.add_argument("--workers", type=int, default=2, help="workers for --workers-redis")
    p.add_argument(
        "--client-procs", type=int, default=1,
        help="--workers-redis: open the subscribers from this many client processes "
        "(one loopback source address each), so that N may exceed one process's open-files "
        "limit; with --workers W each worker holds about N/W (default: %(default)s)")
    p.add_argument("--shard", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--shard-port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--shard-n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--shard-sources", help=argparse.SUPPRESS)
    p.add_argument(
        "--series-messages", type=int, default=200, help="messages in the --workers-redis series"
    )
    p.add_argument(
        "--series-rate",
        type=float,
        default=20.0,
        help="messages per second in the --workers-redis series (default: %(default)s)",
    )
    p.add_argument(
        "--only",
        action="append",
        choices=SERVER_NAMES,
        help="servers to run (repeatable; default: all that can run here)",
    )
    p.add_argument(
        "--fit",
        action="store_true",
        help="also run the largest N (multiple of 1,000) that the open-files limit allows",
    )
    p.add_argument(
        "--size", type=int, default=32, help="bytes of data per message (default: %(default)s)"
    )
    p.add_argument(
        "--rounds", type=int, default=3, help="single-message rounds (default: %(default)s)"
    )
    p.add_argument(
        "--burst-seconds",
        type=float,
        default=3.0,
        help="length aimed at for the sustained burst (default: %(default)s)",
    )
    p.add_argument("--max-burst", type=int, default=2000, help="most messages in a burst")
    p.add_argument(
        "--per-source",
        type=int,
        default=PER_SOURCE,
        help="connections per loopback source address 127.0.0.2, .3, ... "
        "(default: %(default)s; ~28k ephemeral ports each here)",
    )
    p.add_argument("--window", type=int, default=500, help="connections being opened at once")
    p.add_argument("--open-timeout", type=float, default=300.0)
    p.add_argument("--deliver-timeout", type=float, default=60.0)
    p.add_argument(
        "--baseline-n",
        default="10k",
        help="N for the bare idle-connection runs, one per server; 'all': at every N "
        "measured (default: %(default)s, or the largest N measured if smaller)",
    )
    p.add_argument("--no-baseline", action="store_true", help="skip the bare idle-connection runs")
    p.add_argument("--server-cpu", default="0")
    p.add_argument("--client-cpu", default="1")
    p.add_argument("--no-pin", action="store_true", help="pin neither side to a CPU")
    p.add_argument(
        "--tracemalloc",
        action="store_true",
        help="mhd2: report the source lines that allocate per subscriber "
        "(Python's tracemalloc; it inflates RSS, so run it apart)",
    )
    p.add_argument(
        "--py-spy",
        action="store_true",
        help="mhd2: profile the burst with py-spy (on the client's CPU) and print "
        "where the server's µs per delivery go (run apart from the real measurement)",
    )
    p.add_argument("--py-spy-raw", metavar="DIR",
                   help="with --py-spy: keep py-spy's raw stacks (collapsed format) in DIR")
    p.add_argument("--json", metavar="PATH", help="write all results here")
    p.add_argument("--plot", metavar="PNG", help="plot delivery latency against N here")
    p.add_argument("--report", metavar="JSON", help="measure nothing: report a saved --json run")
    return p.parse_args(argv)


def plan(args: argparse.Namespace, limit: int) -> tuple[list[tuple[str, int]], list[str]]:
    """The (kind, N) pairs to run, and why any were left out."""
    todo: list[tuple[str, int]] = []
    skipped: list[str] = []
    fit = (limit - FD_MARGIN) // 1000 * 1000
    for kind in ("sse", "ws", "poll"):
        ns = parse_ns(getattr(args, kind))
        for n in ns:
            if n + FD_MARGIN > limit:
                skipped.append(f"{kind} {fd_note(n, limit)}")
            else:
                todo.append((kind, n))
        too_many = any(n + FD_MARGIN > limit for n in ns)
        if args.fit and kind == "sse" and too_many and fit > 0 and (kind, fit) not in todo:
            todo.append((kind, fit))
    return todo, skipped


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    sys.exit(128 + signum)  # unwinds: every server started is stopped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.shard:
        nofile_limit(args.shard_n + FD_MARGIN)
        return shard_main(args)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    global TRACEMALLOC, SERVER_CPUS, PY_SPY_RAW
    TRACEMALLOC = args.tracemalloc
    PY_SPY_RAW = Path(args.py_spy_raw) if args.py_spy_raw else None
    if args.report:
        saved: dict[str, Any] = json.loads(Path(args.report).read_text())
        print_report(saved)
        if args.plot:
            plot(saved, Path(args.plot))
        return 0
    series_ns = parse_ns(args.workers_redis)

    def per_process(n: int) -> int:
        """Descriptors one process needs for a --workers-redis N (client or worker)."""
        if args.client_procs <= 1:
            return n
        return math.ceil(n / min(args.client_procs, args.workers))

    wanted = max([1, *parse_ns(args.sse), *parse_ns(args.ws), *parse_ns(args.poll),
                  *map(per_process, series_ns)])
    wanted += FD_MARGIN
    limit = nofile_limit(wanted)
    todo, skipped = plan(args, limit)
    for n in series_ns:
        if per_process(n) + FD_MARGIN > limit:
            skipped.append(f"--workers-redis {fd_note(per_process(n), limit)} "
                           "(or raise --client-procs and --workers)")
        elif args.client_procs > 1 and math.ceil(n / args.client_procs) > args.per_source:
            skipped.append(f"--workers-redis N={n:,}: more than --per-source "
                           f"{args.per_source:,} connections per client process")
    series_ns = [n for n in series_ns if per_process(n) + FD_MARGIN <= limit and (
        args.client_procs <= 1 or math.ceil(n / args.client_procs) <= args.per_source)]
    servers = args.only or list(SERVER_NAMES)
    if not args.no_pin and hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {int(args.client_cpu)})
    server_cpu = None if args.no_pin else args.server_cpu
    if server_cpu is not None:
        SERVER_CPUS = {int(c) for c in server_cpu.split(",")}
    results: dict[str, Any] = {"machine": machine_info(), "args": vars(args), "runs": [],
                               "skipped": skipped}  # fmt: skip
    for note in skipped:
        print(f"skipped: {note}", file=sys.stderr, flush=True)
    measured = sorted({n for _, n in todo})
    if args.no_baseline or not measured:
        baseline_ns = []
    elif args.baseline_n == "all":
        baseline_ns = measured
    else:
        baseline_ns = [min(parse_ns(args.baseline_n)[0], measured[-1])]
    with tempfile.TemporaryDirectory(prefix="fanout-") as tmp, contextlib.ExitStack() as stack:
        logdir = Path(tmp)
        redis_url = None
        if series_ns or any(s.endswith("-redis") for s in servers):
            redis_url = stack.enter_context(redis_server(server_cpu, logdir))
            if redis_url is None:
                results["skipped"].append("*-redis rows: no redis-server on PATH")
                servers = [s for s in servers if not s.endswith("-redis")]
                series_ns = []
        jobs = [(s, "idle", n) for s in servers for n in baseline_ns]
        jobs += [(s, kind, n) for kind, n in todo for s in servers]
        jobs.sort(key=lambda j: (j[2], j[1] != "idle", j[1], servers.index(j[0])))
        jobs += [(f"mhd2-redis-w{args.workers}", "series", n) for n in series_ns]
        not_applicable: set[str] = set()
        for name, kind, n in jobs:
            if name in not_applicable:
                continue
            print(f"{name:15s} {kind:5s} N={n:>7,} ...", end=" ", file=sys.stderr, flush=True)
            try:
                with running_server(name, server_cpu, logdir, redis_url) as server:
                    if kind == "series" and args.client_procs > 1:
                        r = measure_series_sharded(server, n, args)
                    elif kind == "series":
                        r = measure_series(server, n, args)
                    else:
                        r = measure(server, kind, n, args)
            except NotApplicable as exc:
                not_applicable.add(name)
                r = {"server": name, "kind": kind, "n": n, "n/a": f"n/a: {exc}"}
            except Exception as exc:  # one broken run must not lose the others
                r = {"server": name, "kind": kind, "n": n, "error": f"{type(exc).__name__}: {exc}"}
            results["runs"].append(r)
            brief = {k: r.get(k) for k in ("open", "bytes_per_conn", "bytes_per_subscriber",
                                           "last_ms_median", "deliveries_per_s", "failures",
                                           "n/a", "error", "connections_per_worker")
                     if r.get(k) is not None}  # fmt: skip
            if r.get("series"):
                brief["series"] = {
                    k: r["series"].get(k)
                    for k in ("p50_ms", "p99_ms", "max_ms", "lost", "duplicated", "complete")
                }
            print(json.dumps(brief), file=sys.stderr, flush=True)
            if args.json:  # after every run: a crash keeps what was measured
                Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    print_report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    if args.plot:
        plot(results, Path(args.plot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
