"""Benchmark harness: mhd2 hello world against other Python HTTP/1.1 servers.

The peers: hypercorn (trio), uvicorn with h11, uvicorn with httptools on uvloop
(what ``pip install uvicorn[standard]`` runs) and on asyncio, and granian (Rust,
ASGI).  mhd2 runs once per parser backend (``--mhd2-parser h11,httptools``).

Each server runs alone, pinned to one CPU (``taskset -c 0``), and is driven by
``wrk -t1 -cN -dDs --latency`` pinned to the other CPU (``taskset -c 1``), once
with keep-alive and once with ``Connection: close``.  Besides req/s and latency
every row gives the server's CPU time per request (utime + stime of its process
tree over the run, divided by the requests wrk counted), the figure that moves
least when the machine is shared.  Then, on a fresh server process, the harness
opens ``--idle`` keep-alive connections that each completed one request and
reports the growth of the server's resident memory per idle connection (VmRSS
from ``/proc/PID/status``, summed over the server's process tree, because
hypercorn and granian serve from a child process).

Usage::

    python bench/run.py                       # everything, ~6 minutes
    python bench/run.py --only mhd2 --duration 5
    python bench/run.py --mhd2-parser h11 --only mhd2 --only uvicorn
    python bench/run.py --json results.json

Only ever talks to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SERVERS_DIR = HERE / "servers"
BODY = b"Hello, World!"

#: The peers mhd2 is compared with (``--only`` takes these and "mhd2").
PEER_NAMES = (
    "hypercorn",  # hypercorn --worker-class trio (h11)
    "uvicorn",  # uvicorn --loop asyncio --http h11
    "uvicorn-httptools",  # uvicorn --loop uvloop --http httptools (uvicorn[standard])
    "uvicorn-asyncio-httptools",  # uvicorn --loop asyncio --http httptools
    "granian",  # granian --interface asgi --workers 1 --runtime-threads 1
)
SERVER_NAMES = ("mhd2", *PEER_NAMES)
#: mhd2's ASGI bridge (``python -m mhd2 run --interface asgi``) serving the peers'
#: app: a server of bench/asgi.py and bench/pyspy_profile.py, not a row of this file.
ASGI_BRIDGE = "mhd2-asgi"
MODES = ("keepalive", "close")
KEEPALIVE_SECONDS = 300  # server-side idle timeout: long enough for the idle test
#: ``--mhd2-parser`` values: "default" runs mhd2 without a parser option.
PARSER_CHOICES = ("default", "auto", "h11", "httptools")

# Targets: (mhd2 backend, peer, mode, minimum ratio, which issue).  The backend
# "h11" means the row "mhd2-h11", or the row "mhd2" (no parser option) when
# that is the only one; "httptools" means the row "mhd2-httptools".
RATIO_TARGETS: tuple[tuple[str, str, str, float, str], ...] = (
    ("h11", "hypercorn", "keepalive", 6.5, "issue 11"),
    ("h11", "uvicorn", "keepalive", 1.2, "core"),
    ("h11", "hypercorn", "close", 2.5, "core"),
    ("httptools", "uvicorn-httptools", "keepalive", 1.0, "issue 11"),
    ("httptools", "uvicorn-asyncio-httptools", "close", 1.0, "issue 11"),
    ("httptools", "granian", "keepalive", 1.0, "issue 11, stretch"),
)
#: p99 targets: (mhd2 backend, peer, mode): mhd2's p99 no worse than the peer's.
P99_TARGETS: tuple[tuple[str, str, str], ...] = (("httptools", "uvicorn-httptools", "keepalive"),)
IDLE_TARGET_BYTES = 8 * 1024  # <= 8 KB per idle connection (every mhd2 row)


def default_mhd2_parsers() -> list[str]:
    """Both backends when httptools is importable, else h11 only."""
    if importlib.util.find_spec("httptools") is not None:
        return ["h11", "httptools"]
    return ["h11"]


def mhd2_row(parser: str) -> str:
    """The row name of mhd2 run with ``Daemon(parser=parser)``."""
    return "mhd2" if parser == "default" else f"mhd2-{parser}"


def mhd2_parser_of(name: str) -> str | None:
    """The ``--parser`` an mhd2 row passes to its server (None: the Daemon's default)."""
    if name in ("mhd2", "mhd2-baseline") or not name.startswith("mhd2-"):
        return None
    return name.removeprefix("mhd2-")


def is_mhd2(name: str) -> bool:
    return name == "mhd2" or name.startswith("mhd2-")


# --------------------------------------------------------------------------- servers


#: With ``--baseline DIR``: the checkout whose ``mhd2`` the "mhd2-baseline"
#: server imports (e.g. the previous main, in a temporary directory).
BASELINE: Path | None = None


def server_env(name: str) -> dict[str, str] | None:
    """The environment of a server process (``None``: inherit)."""
    if name == "mhd2-baseline" and BASELINE is not None:
        # mhd2_hello.py puts MHD2_BENCH_ROOT first on sys.path (PYTHONPATH alone
        # would lose to the checkout the script itself is in).
        return {**os.environ, "MHD2_BENCH_ROOT": str(BASELINE), "PYTHONPATH": str(BASELINE)}
    return None


def _uvicorn(port: int, loop: str, http: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--loop",
        loop,
        "--http",
        http,
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--timeout-keep-alive",
        str(KEEPALIVE_SECONDS),
        "--backlog",
        "2048",
        "asgi_hello:app",
    ]


def server_command(name: str, port: int) -> tuple[list[str], Path]:
    """The command line (without taskset) and working directory of a server."""
    py = sys.executable
    if name == ASGI_BRIDGE:
        cmd = [py, "-m", "mhd2", "run", "--interface", "asgi", "--host", "127.0.0.1",
               "--port", str(port), "--no-access-log", "--log-level", "warning",
               "--timeout", str(KEEPALIVE_SECONDS), "--limit-concurrency", "20000",
               "--backlog", "2048", "asgi_hello:app"]
        return cmd, SERVERS_DIR
    if is_mhd2(name):
        cmd = [
            py,
            str(SERVERS_DIR / "mhd2_hello.py"),
            "--port",
            str(port),
            "--connection-limit",
            "20000",
            "--timeout",
            str(KEEPALIVE_SECONDS),
        ]
        parser = mhd2_parser_of(name)
        if parser is not None:
            cmd += ["--parser", parser]
        return cmd, ROOT
    if name == "hypercorn":
        cmd = [
            py,
            "-m",
            "hypercorn",
            "--worker-class",
            "trio",
            "--workers",
            "1",
            "--bind",
            f"127.0.0.1:{port}",
            "--keep-alive",
            str(KEEPALIVE_SECONDS),
            "--backlog",
            "2048",
            "--log-level",
            "warning",
            "asgi_hello:app",
        ]
        return cmd, SERVERS_DIR
    if name == "uvicorn":
        # --loop asyncio: with uvloop installed uvicorn's "auto" would take it;
        # this row stays the pure-Python uvicorn + h11 of the earlier tables.
        return _uvicorn(port, "asyncio", "h11"), SERVERS_DIR
    if name == "uvicorn-httptools":
        return _uvicorn(port, "uvloop", "httptools"), SERVERS_DIR
    if name == "uvicorn-asyncio-httptools":
        return _uvicorn(port, "asyncio", "httptools"), SERVERS_DIR
    if name == "granian":
        cmd = [
            py,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--workers",
            "1",
            "--runtime-threads",
            "1",
            "--http",
            "1",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backlog",
            "2048",
            "--log-level",
            "warning",
            "--no-access-log",
            # granian has no keep-alive idle timeout; this one (the maximum,
            # 60 s) bounds the wait for a request head.
            "--http1-header-read-timeout",
            "60000",
            "asgi_hello:app",
        ]
        return cmd, SERVERS_DIR
    raise ValueError(f"unknown server {name!r}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def taskset_prefix(cpu: str | None) -> list[str]:
    if cpu is None or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", cpu]


class BadResponse(Exception):
    """The server answered, but not with the hello-world response."""


#: mhd2_hello.py's exit status for "this mhd2 cannot run that configuration".
EXIT_NOT_APPLICABLE = 3


class NotApplicable(Exception):
    """The server cannot run this configuration (e.g. an mhd2 without ``parser=``)."""


def _recv_response(sock: socket.socket) -> bytes:
    """Read one HTTP/1.1 response framed by Content-Length; return its body."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    if not status_line.startswith(b"HTTP/1.1 200"):
        raise BadResponse(f"unexpected status line {status_line!r}")
    m = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    if m is None:
        raise BadResponse("response without Content-Length")
    length = int(m.group(1))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside the response body")
        rest += chunk
    return rest[:length]


REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def one_request(sock: socket.socket) -> None:
    sock.sendall(REQUEST)
    body = _recv_response(sock)
    if body != BODY:
        raise BadResponse(f"unexpected body {body!r}")


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Poll until the server answers a GET with the hello-world body."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2.0) as s:
                one_request(s)
            return
        except OSError as exc:
            last = exc
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} not ready after {timeout}s: {last!r}")


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
        # the comm field may contain spaces; ppid is the 2nd field after ')'
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def rss_bytes(pid: int) -> int:
    """VmRSS summed over the process tree rooted at pid, in bytes."""
    total = 0
    for p in descendants(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


@dataclasses.dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path


@contextlib.contextmanager
def running_server(
    name: str, cpu: str | None, logdir: Path, ready_timeout: float
) -> Iterator[Server]:
    port = free_port()
    cmd, cwd = server_command(name, port)
    log = logdir / f"{name}-{port}.log"
    with log.open("wb") as logf:
        proc = subprocess.Popen(
            taskset_prefix(cpu) + cmd,
            cwd=cwd,
            env=server_env(name),
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: we signal only that
            # a harness started in the background (nohup, &) ignores SIGINT, and
            # the server would inherit that; give it the default back.
            preexec_fn=_default_sigint,
        )
    try:
        try:
            wait_ready(port, proc, ready_timeout)
        except (RuntimeError, BadResponse) as exc:
            if proc.poll() == EXIT_NOT_APPLICABLE:
                lines = log.read_text(errors="replace").splitlines()
                reasons = [ln[len("n/a: ") :] for ln in lines if ln.startswith("n/a: ")]
                raise NotApplicable(reasons[-1] if reasons else "not applicable") from exc
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"{name}: {exc}; end of {log}:\n    " + "\n    ".join(tail)) from exc
        yield Server(name, proc, port, log)
    finally:
        stop_server(proc)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT the server's process group, then SIGTERM, then SIGKILL."""
    for sig, wait in ((signal.SIGINT, 8.0), (signal.SIGTERM, 4.0), (signal.SIGKILL, 4.0)):
        if proc.poll() is not None:
            break
        if sig != signal.SIGINT:
            print(f"  server {proc.pid} ignored the last signal; sending {sig.name}", flush=True)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)
    # the process group may still hold workers (hypercorn) after the leader exits
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


# --------------------------------------------------------------------------- wrk


@dataclasses.dataclass
class WrkResult:
    requests_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    requests: int
    socket_errors: dict[str, int]
    non_2xx: int
    raw: str
    server_cpu_pct: float | None = None  # CPU used by the server tree during the run
    cpu_busy_pct: float | None = None  # how busy the server's CPU(s) were in total
    cpu_idle_pct: float | None = None  # how long the server's CPU(s) sat idle
    all_requests_per_s: list[float] = dataclasses.field(default_factory=list)
    noisy: bool = False  # other work shared the server's CPU during this run
    requests_per_cpu_s: float | None = None  # requests per second of server CPU time
    cpu_us_per_request: float | None = None  # server CPU (utime + stime) per request, µs
    unsaturated: bool = False  # the server's CPU had idle time: the client may be the limit


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS[unit]


def parse_wrk(out: str) -> WrkResult:
    m = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if m is None:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    rps = float(m.group(1))
    pct: dict[str, float] = {}
    for pm in re.finditer(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M):
        pct[pm.group(1)] = _ms(pm.group(2), pm.group(3))
    rm = re.search(r"(\d+) requests in", out)
    errors: dict[str, int] = {}
    em = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if em is not None:
        errors = dict(
            zip(("connect", "read", "write", "timeout"), map(int, em.groups()), strict=True)
        )
    nm = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return WrkResult(
        requests_per_s=rps,
        p50_ms=pct.get("50"),
        p99_ms=pct.get("99"),
        requests=int(rm.group(1)) if rm else 0,
        socket_errors=errors,
        non_2xx=int(nm.group(1)) if nm else 0,
        raw=out,
    )


def run_wrk(
    port: int, *, mode: str, duration: float, connections: int, cpu: str | None, threads: int = 1
) -> WrkResult:
    cmd = [
        *taskset_prefix(cpu),
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "--timeout",
        "5s",
    ]
    if mode == "close":
        cmd += ["-H", "Connection: close"]
    cmd.append(f"http://127.0.0.1:{port}/")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr}\n{proc.stdout}")
    return parse_wrk(proc.stdout)


CONTENTION_PCT = 10.0  # CPU busy beyond the server's own use that marks a run noisy
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """utime + stime summed over the process tree rooted at pid."""
    ticks = 0
    for p in descendants(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / _CLK_TCK


def parse_cpu_list(cpus: str) -> set[int]:
    out: set[int] = set()
    for part in cpus.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def _cpu_times(cpus: set[int]) -> tuple[float, float]:
    """(busy, idle) seconds of the given CPUs since boot, from /proc/stat."""
    busy = idle = 0
    for line in Path("/proc/stat").read_text().splitlines():
        head, *vals = line.split()
        if head.startswith("cpu") and head[3:].isdigit() and int(head[3:]) in cpus:
            v = [int(x) for x in vals]
            # user nice system idle iowait irq softirq steal (guest is inside user).
            # irq and softirq are left out of "busy": the loopback TCP work the
            # benchmark itself causes lands there, and is not charged to any process.
            busy += v[0] + v[1] + v[2] + v[7]
            idle += v[3] + v[4]
    return busy / _CLK_TCK, idle / _CLK_TCK


def noisy(w: WrkResult) -> bool:
    """Whether something besides the server kept its CPU busy during the run."""
    if w.cpu_busy_pct is None or w.server_cpu_pct is None:
        return False
    # More busy time on the server's CPU than the server used: others ran there
    # (steal time, i.e. the hypervisor running someone else, counts as busy).
    return w.cpu_busy_pct - w.server_cpu_pct > CONTENTION_PCT


def unsaturated(w: WrkResult) -> bool:
    """Whether the server's CPU sat idle part of the run: then wrk set the pace.

    The fast peers (granian, uvicorn on uvloop + httptools) can outrun one wrk
    thread on one CPU; their req/s is then a floor and the CPU time per request
    is the comparable figure.
    """
    return w.cpu_idle_pct is not None and w.cpu_idle_pct > CONTENTION_PCT


def bench_mode(
    name: str,
    mode: str,
    args: argparse.Namespace,
    server_cpu: str | None,
    client_cpu: str | None,
    logdir: Path,
) -> WrkResult:
    """Start a fresh server, warm it up, run wrk ``--repeat`` times; keep the best run."""
    best: WrkResult | None = None
    all_rps: list[float] = []
    with running_server(name, server_cpu, logdir, ready_timeout=30.0) as srv:
        if args.warmup > 0:
            run_wrk(
                srv.port,
                mode=mode,
                duration=args.warmup,
                connections=args.connections,
                cpu=client_cpu,
            )
        runs = 0
        retries = args.noisy_retries
        while runs < max(1, args.repeat) or (best is not None and best.noisy and retries > 0):
            if runs >= max(1, args.repeat):
                retries -= 1
                print(f"[{name}] {mode}: CPU was shared with other work; again", flush=True)
            runs += 1
            cpus = parse_cpu_list(server_cpu) if server_cpu else None
            t0 = time.monotonic()
            proc0 = process_cpu_seconds(srv.proc.pid)
            busy0, idle0 = _cpu_times(cpus) if cpus else (0.0, 0.0)
            w = run_wrk(
                srv.port,
                mode=mode,
                duration=args.duration,
                connections=args.connections,
                cpu=client_cpu,
            )
            elapsed = time.monotonic() - t0
            cpu_used = process_cpu_seconds(srv.proc.pid) - proc0
            w.server_cpu_pct = 100 * cpu_used / elapsed
            if cpu_used > 0 and w.requests > 0:
                # requests per second of server CPU, and its inverse, CPU µs per
                # request: much less sensitive to other work on the machine than
                # requests per second of wall time
                w.requests_per_cpu_s = w.requests / cpu_used
                w.cpu_us_per_request = 1e6 * cpu_used / w.requests
            if cpus:
                busy1, idle1 = _cpu_times(cpus)
                w.cpu_busy_pct = 100 * (busy1 - busy0) / (elapsed * len(cpus))
                w.cpu_idle_pct = 100 * (idle1 - idle0) / (elapsed * len(cpus))
            if srv.proc.poll() is not None:
                raise RuntimeError(f"server died during the run (see {srv.log})")
            w.noisy = noisy(w)
            w.unsaturated = unsaturated(w)
            all_rps.append(w.requests_per_s)
            # a run without interference beats any run with it, then the faster one
            if best is None or (not w.noisy, w.requests_per_s) > (
                not best.noisy,
                best.requests_per_s,
            ):
                best = w
    assert best is not None
    best.all_requests_per_s = all_rps
    return best


# --------------------------------------------------------------------------- idle connections


@dataclasses.dataclass
class IdleResult:
    connections: int
    opened: int
    alive_after: int
    rss_before: int
    rss_after: int
    bytes_per_connection: float


def raise_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def measure_idle(server: Server, n: int, settle: float = 1.0) -> IdleResult:
    # warm the code paths with a few complete request/connection cycles first
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10.0) as s:
            one_request(s)
            one_request(s)
    time.sleep(settle)
    before = rss_bytes(server.proc.pid)
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10.0)
            socks.append(s)
            one_request(s)
        time.sleep(settle)
        after = rss_bytes(server.proc.pid)
        alive = 0
        for s in socks:  # every connection must still be open and served
            try:
                one_request(s)
                alive += 1
            except OSError:
                pass
    finally:
        for s in socks:
            s.close()
    return IdleResult(
        connections=n,
        opened=len(socks),
        alive_after=alive,
        rss_before=before,
        rss_after=after,
        bytes_per_connection=(after - before) / max(1, len(socks)),
    )


# --------------------------------------------------------------------------- report


def machine_info() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) // (1024 * 1024)} GiB"
    versions: dict[str, str] = {}
    for mod in ("trio", "h11", "httptools", "hypercorn", "uvicorn", "uvloop", "granian"):
        try:
            from importlib.metadata import version

            versions[mod] = version(mod)
        except Exception:
            versions[mod] = "missing"
    wrk_version = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10, check=False)
        wrk_version = (out.stdout or out.stderr).splitlines()[0].strip()
    loadavg = "unknown"
    with contextlib.suppress(OSError):
        loadavg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    commit = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        commit = out.stdout.strip() or commit
    return {
        "mhd2_commit": commit,
        "loadavg_at_start": loadavg,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "wrk": wrk_version,
    }


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


W = 26  # width of the server column


def _unclean(w: dict[str, Any]) -> str:
    """Why a run's req/s is not comparable ("" if it is)."""
    return ("noisy" if w.get("noisy") else "") or ("wrk-bound" if w.get("unsaturated") else "")


def _row(servers: dict[str, Any], name: str, mode: str) -> dict[str, Any] | None:
    """The wrk result of a server and mode, or None (not run, failed or n/a)."""
    w = servers.get(name, {}).get(mode)
    if not w or "error" in w:
        return None
    row: dict[str, Any] = w
    return row


def backend_row(servers: dict[str, Any], backend: str) -> str:
    """The row a target's mhd2 backend refers to (see RATIO_TARGETS)."""
    row = mhd2_row(backend)
    if backend == "h11" and row not in servers and "mhd2" in servers:
        return "mhd2"  # a run without --mhd2-parser h11: the default (h11 on old mhd2)
    return row


def print_report(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Print the tables, ratios and targets; return the target checks."""
    servers: dict[str, Any] = results["servers"]
    print()
    print(
        f"{'server':<{W}} {'mode':<10} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}"
        f" {'srv CPU%':>8} {'CPU idle%':>9} {'req/CPU-s':>9} {'CPU us/req':>10}"
    )
    for name, r in servers.items():
        if "na" in r:
            print(f"{name:<{W}} n/a ({r['na']})")
            continue
        for mode in MODES:
            w = r.get(mode)
            if w is None:
                continue
            if "error" in w:
                print(f"{name:<{W}} {mode:<10} failed: {w['error']}")
                continue
            errs = sum(w["socket_errors"].values()) + w["non_2xx"]
            flags = ("  noisy: CPU shared" if w.get("noisy") else "") + (
                "  CPU not saturated: wrk-bound" if w.get("unsaturated") else ""
            )
            print(
                f"{name:<{W}} {mode:<10} {w['requests_per_s']:>8.0f} "
                f"{fmt(w['p50_ms'], '.2f'):>7} {fmt(w['p99_ms'], '.2f'):>7} {errs:>6}"
                f" {fmt(w.get('server_cpu_pct'), '.0f'):>8} {fmt(w.get('cpu_idle_pct'), '.0f'):>9}"
                f" {fmt(w.get('requests_per_cpu_s'), '.0f'):>9}"
                f" {fmt(w.get('cpu_us_per_request'), '.1f'):>10}{flags}"
            )
    print()
    print(
        f"{'server':<{W}} {'idle conns':>10} {'alive':>6} {'RSS before':>12} {'RSS after':>12}"
        f" {'B/conn':>8}"
    )
    for name, r in servers.items():
        i = r.get("idle")
        if i is None:
            continue
        if "error" in i:
            print(f"{name:<{W}} idle failed: {i['error']}")
            continue
        print(
            f"{name:<{W}} {i['connections']:>10} {i['alive_after']:>6} "
            f"{i['rss_before'] / 2**20:>10.1f}Mi {i['rss_after'] / 2**20:>10.1f}Mi "
            f"{i['bytes_per_connection']:>8.0f}"
        )

    # -- ratios: every mhd2 row against every peer (and the baseline, and h11)
    mhd2_rows = [n for n in servers if is_mhd2(n) and n != "mhd2-baseline"]
    print()
    print(
        "ratios mhd2 / peer: req/s; in brackets per server CPU-second (= the peer's CPU us"
        " per request / mhd2's), the steadier one; then p99 mhd2 vs peer"
    )
    for m in mhd2_rows:
        others = [n for n in servers if n != m and (not is_mhd2(n) or n == "mhd2-baseline")]
        if m == "mhd2-httptools" and "mhd2-h11" in servers:
            others.insert(0, "mhd2-h11")
        for mode in MODES:
            a = _row(servers, m, mode)
            if a is None:
                continue
            for other in others:
                b = _row(servers, other, mode)
                if b is None or not b["requests_per_s"]:
                    continue
                pa, pb = a.get("requests_per_cpu_s"), b.get("requests_per_cpu_s")
                cpu_ratio = f"[{pa / pb:5.2f}x]" if pa and pb else " " * 8
                p99 = (
                    f"  p99 {a['p99_ms']:.2f} vs {b['p99_ms']:.2f} ms"
                    if a["p99_ms"] is not None and b["p99_ms"] is not None
                    else ""
                )
                print(
                    f"  {m + ' / ' + other:<45} {mode:<10}"
                    f" {a['requests_per_s'] / b['requests_per_s']:6.2f}x {cpu_ratio}{p99}"
                )

    # -- targets
    checks: list[dict[str, Any]] = []
    modes_run = results.get("settings", {}).get("modes", MODES)
    for backend, peer, mode, minimum, issue in RATIO_TARGETS:
        num = backend_row(servers, backend)
        if num not in servers or peer not in servers or mode not in modes_run:
            continue
        a, b = _row(servers, num, mode), _row(servers, peer, mode)
        ratio = (
            a["requests_per_s"] / b["requests_per_s"] if a and b and b["requests_per_s"] else None
        )
        pa = a.get("requests_per_cpu_s") if a else None
        pb = b.get("requests_per_cpu_s") if b else None
        per_cpu = pa / pb if pa and pb else None
        # req/s decides when both runs had their CPU to themselves and were
        # CPU-bound; otherwise req/s says more about the other work on the
        # machine (or about wrk), and the CPU time per request decides.
        unclean = [f"{r} {_unclean(w)}" for r, w in ((num, a), (peer, b)) if w and _unclean(w)]
        basis = "req/s"
        value = ratio
        if unclean and per_cpu is not None:
            basis = f"per CPU-second ({', '.join(unclean)})"
            value = per_cpu
        checks.append(
            {
                "target": f"{mode}: {num} >= {minimum}x {peer} ({issue})",
                "unit": "x",
                "value": ratio,
                "value_per_cpu_s": per_cpu,
                "judged_on": basis,
                "pass": None if value is None else value >= minimum,
            }
        )
    for backend, peer, mode in P99_TARGETS:
        num = backend_row(servers, backend)
        if num not in servers or peer not in servers or mode not in modes_run:
            continue
        a, b = _row(servers, num, mode), _row(servers, peer, mode)
        pa99 = a["p99_ms"] if a else None
        pb99 = b["p99_ms"] if b else None
        noisy_rows = [r for r, w in ((num, a), (peer, b)) if w and w.get("noisy")]
        checks.append(
            {
                "target": f"{mode}: {num} p99 <= {peer} p99 (issue 11)",
                "unit": "ms",
                "value": pa99,
                "peer_value": pb99,
                # a run that shared its CPU with other work has a meaningless p99
                "judged_on": f"not judged: {', '.join(noisy_rows)} noisy" if noisy_rows else "p99",
                "pass": None if pa99 is None or pb99 is None or noisy_rows else pa99 <= pb99,
            }
        )
    for name in mhd2_rows:
        idle = servers[name].get("idle")
        if not idle or "error" in idle:
            continue
        ok = (
            idle["bytes_per_connection"] <= IDLE_TARGET_BYTES
            and idle["alive_after"] == idle["connections"]
        )
        checks.append(
            {
                "target": f"idle: {name} <= {IDLE_TARGET_BYTES} B per idle connection",
                "unit": "B",
                "value": idle["bytes_per_connection"],
                "pass": ok,
            }
        )
    if checks:
        print()
        for c in checks:
            v = c["value"]
            if v is None:
                shown = "-"
            elif c["unit"] == "x":
                shown = f"{v:.2f}x"
            elif c["unit"] == "ms":
                shown = f"{v:.2f} ms vs {fmt(c.get('peer_value'), '.2f')} ms"
            else:
                shown = f"{v:.0f} B"
            if c.get("value_per_cpu_s"):
                shown += f"  [{c['value_per_cpu_s']:.2f}x per CPU-second]"
            judged = c.get("judged_on")
            if judged and judged.startswith("not judged"):
                shown += f"  ({judged})"
            elif judged not in (None, "req/s", "p99"):
                shown += f"  judged {judged}"
            verdict = {True: "PASS", False: "FAIL", None: "n/a "}[c["pass"]]
            print(f"{verdict}  {c['target']:<62} {shown}")
    return checks


# --------------------------------------------------------------------------- main


def parse_parser_list(text: str) -> list[str]:
    """``--mhd2-parser h11,httptools`` -> ["h11", "httptools"]."""
    items = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in items if x not in PARSER_CHOICES]
    if bad or not items:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {', '.join(PARSER_CHOICES)}; got {text!r}"
        )
    return list(dict.fromkeys(items))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run (default 10)")
    ap.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of wrk warm-up before each run (0: none)"
    )
    ap.add_argument(
        "--repeat", type=int, default=1, help="wrk runs per server and mode; the best one counts"
    )
    ap.add_argument(
        "--noisy-retries",
        type=int,
        default=2,
        help="extra wrk runs when other work shared the server CPU (default 2)",
    )
    ap.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    ap.add_argument(
        "--only",
        action="append",
        choices=SERVER_NAMES,
        metavar="NAME",
        help=f"run only this server (repeatable; one of {', '.join(SERVER_NAMES)})",
    )
    ap.add_argument(
        "--mode",
        action="append",
        choices=MODES,
        help="run only this wrk mode (repeatable: keepalive, close)",
    )
    ap.add_argument(
        "--idle",
        type=int,
        default=1000,
        help="idle keep-alive connections for the RSS test (0: skip)",
    )
    ap.add_argument("--skip-wrk", action="store_true", help="only the idle-connection test")
    ap.add_argument(
        "--baseline",
        type=Path,
        help="also run 'mhd2-baseline': mhd2 imported from this checkout (e.g. the previous "
        "main in a temporary directory), side by side in the same run",
    )
    ap.add_argument(
        "--mhd2-parser",
        type=parse_parser_list,
        metavar="LIST",
        help="comma-separated Daemon(parser=...) backends to run mhd2 with, one row each "
        "('mhd2-h11', 'mhd2-httptools', ...; 'default': no parser option, row 'mhd2'); "
        "default: h11,httptools when httptools is importable, else h11",
    )
    ap.add_argument("--server-cpu", default="0", help="CPU list for the server (taskset -c)")
    ap.add_argument("--client-cpu", default="1", help="CPU list for wrk (taskset -c)")
    ap.add_argument("--no-taskset", action="store_true", help="do not pin processes to CPUs")
    ap.add_argument("--json", type=Path, help="write the results as JSON to this path")
    ap.add_argument(
        "--report",
        type=Path,
        metavar="JSON",
        help="measure nothing: print the tables and checks of a run saved with --json",
    )
    ap.add_argument("--logdir", type=Path, help="where server logs go (default: a temp dir)")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report is not None:
        saved = json.loads(args.report.read_text())
        m = saved["machine"]
        print(f"{m['date']}  nproc={m['nproc']}  {m['cpu_model']}  Python {m['python']}")
        print_report(saved)
        return 0
    if shutil.which("wrk") is None:
        print("wrk not found on PATH", file=sys.stderr)
        return 2
    parsers: list[str] = args.mhd2_parser or default_mhd2_parsers()
    names: list[str] = []
    for name in dict.fromkeys(args.only or SERVER_NAMES):
        names += [mhd2_row(p) for p in parsers] if name == "mhd2" else [name]
    if args.baseline is not None:
        global BASELINE
        BASELINE = args.baseline.resolve()
        if not (BASELINE / "mhd2" / "__init__.py").is_file():
            print(f"--baseline {args.baseline}: no mhd2 package there", file=sys.stderr)
            return 2
        last_mhd2 = max((i for i, n in enumerate(names) if is_mhd2(n)), default=-1)
        names.insert(last_mhd2 + 1, "mhd2-baseline")
    modes: list[str] = [] if args.skip_wrk else list(dict.fromkeys(args.mode or MODES))
    server_cpu = None if args.no_taskset else args.server_cpu
    client_cpu = None if args.no_taskset else args.client_cpu
    if args.idle > 0:
        raise_nofile(args.idle)
    logdir: Path = (
        args.logdir or Path(os.environ.get("TMPDIR", "/tmp")) / f"mhd2-bench-{os.getpid()}"
    )
    logdir.mkdir(parents=True, exist_ok=True)

    results: dict[str, Any] = {
        "machine": machine_info(),
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "repeat": args.repeat,
            "wrk_threads": 1,
            "idle_connections": args.idle,
            "server_cpu": server_cpu,
            "client_cpu": client_cpu,
            "modes": modes,
            "mhd2_parsers": parsers,
            "baseline": str(BASELINE) if BASELINE else None,
        },
        "servers": {},
    }
    m = results["machine"]
    print(
        f"{m['date']}  nproc={m['nproc']}  {m['cpu_model']}  Python {m['python']}"
        f"  load {m['loadavg_at_start']}  logs: {logdir}"
    )

    for name in names:
        entry: dict[str, Any] = {}
        results["servers"][name] = entry
        for mode in modes:
            print(f"[{name}] wrk {mode} ...", flush=True)
            try:
                w = bench_mode(name, mode, args, server_cpu, client_cpu, logdir)
                entry[mode] = dataclasses.asdict(w)
                contended = "  (server CPU shared with other work: noisy)" if w.noisy else ""
                if w.unsaturated:
                    contended += "  (server CPU partly idle: wrk-bound)"
                print(
                    f"[{name}] {mode}: {w.requests_per_s:.0f} req/s, p99 {fmt(w.p99_ms, '.2f')} ms,"
                    f" {fmt(w.cpu_us_per_request, '.1f')} us server CPU per request,"
                    f" errors {w.socket_errors} non-2xx {w.non_2xx},"
                    f" server CPU {fmt(w.server_cpu_pct, '.0f')}%"
                    f" of CPU {server_cpu} busy {fmt(w.cpu_busy_pct, '.0f')}%{contended}",
                    flush=True,
                )
            except NotApplicable as exc:
                entry.clear()
                entry["na"] = str(exc)
                print(f"[{name}] n/a ({exc})", flush=True)
                break
            except Exception as exc:
                entry[mode] = {"error": repr(exc)}
                print(f"[{name}] {mode} failed: {exc!r}", flush=True)
        if "na" in entry:
            continue
        if args.idle > 0:
            print(f"[{name}] {args.idle} idle connections ...", flush=True)
            try:
                with running_server(name, server_cpu, logdir, ready_timeout=30.0) as srv:
                    i = measure_idle(srv, args.idle)
                entry["idle"] = dataclasses.asdict(i)
                print(
                    f"[{name}] idle: {i.bytes_per_connection:.0f} B/conn"
                    f" ({i.alive_after}/{i.connections} still served)",
                    flush=True,
                )
            except NotApplicable as exc:
                entry["na"] = str(exc)
                print(f"[{name}] n/a ({exc})", flush=True)
            except Exception as exc:
                entry["idle"] = {"error": repr(exc)}
                print(f"[{name}] idle failed: {exc!r}", flush=True)

    results["checks"] = print_report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nresults written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
