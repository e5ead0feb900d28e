"""Benchmark harness: mhd2 hello world against hypercorn (trio) and uvicorn (h11).

Each server runs alone, pinned to one CPU (``taskset -c 0``), and is driven by
``wrk -t1 -cN -dDs --latency`` pinned to the other CPU (``taskset -c 1``), once
with keep-alive and once with ``Connection: close``.  Then, on a fresh server
process, the harness opens ``--idle`` keep-alive connections that each completed
one request and reports the growth of the server's resident memory per idle
connection (VmRSS from ``/proc/PID/status``, summed over the server's process
tree, because hypercorn serves from a child process).

Usage::

    python bench/run.py                       # everything, ~2-3 minutes
    python bench/run.py --only mhd2 --duration 5
    python bench/run.py --json results.json

Only ever talks to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
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

SERVER_NAMES = ("mhd2", "hypercorn", "uvicorn")
MODES = ("keepalive", "close")
KEEPALIVE_SECONDS = 300  # server-side idle timeout: long enough for the idle test

# Targets from the issue: (numerator, denominator, mode, minimum ratio).
RATIO_TARGETS: tuple[tuple[str, str, str, float], ...] = (
    ("mhd2", "hypercorn", "keepalive", 5.0),
    ("mhd2", "uvicorn", "keepalive", 1.2),
    ("mhd2", "hypercorn", "close", 2.5),
)
IDLE_TARGET_BYTES = 8 * 1024  # <= 8 KB per idle connection (mhd2)


# --------------------------------------------------------------------------- servers


#: With ``--baseline DIR``: the checkout whose ``mhd2`` the "mhd2-baseline"
#: server imports (e.g. the previous main, in a temporary directory).
BASELINE: Path | None = None


def server_env(name: str) -> dict[str, str] | None:
    """The environment of a server process (``None``: inherit)."""
    if name == "mhd2-baseline" and BASELINE is not None:
        return {**os.environ, "PYTHONPATH": str(BASELINE)}
    return None


def server_command(name: str, port: int) -> tuple[list[str], Path]:
    """The command line (without taskset) and working directory of a server."""
    py = sys.executable
    if name in ("mhd2", "mhd2-baseline"):
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
        cmd = [
            py,
            "-m",
            "uvicorn",
            "--http",
            "h11",
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
    all_requests_per_s: list[float] = dataclasses.field(default_factory=list)
    noisy: bool = False  # other work shared the server's CPU during this run
    requests_per_cpu_s: float | None = None  # requests per second of server CPU time


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


def cpus_busy_seconds(cpus: set[int]) -> float:
    """Time the given CPUs spent running tasks (user, nice, system, steal), in seconds."""
    busy = 0
    for line in Path("/proc/stat").read_text().splitlines():
        head, *vals = line.split()
        if head.startswith("cpu") and head[3:].isdigit() and int(head[3:]) in cpus:
            v = [int(x) for x in vals]
            # user nice system idle iowait irq softirq steal (guest is inside user).
            # irq and softirq are left out: the loopback TCP work the benchmark
            # itself causes lands there, and is not charged to any process.
            busy += v[0] + v[1] + v[2] + v[7]
    return busy / _CLK_TCK


def noisy(w: WrkResult) -> bool:
    """Whether something besides the server kept its CPU busy during the run."""
    if w.cpu_busy_pct is None or w.server_cpu_pct is None:
        return False
    # Every server here is CPU-bound under wrk, so it should get ~100 % of its
    # CPU; less means it was preempted, more busy time means others ran there.
    return (
        w.cpu_busy_pct - w.server_cpu_pct > CONTENTION_PCT
        or w.server_cpu_pct < 100 - CONTENTION_PCT
    )


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
            busy0 = cpus_busy_seconds(cpus) if cpus else 0.0
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
            if cpu_used > 0:
                # requests per second of server CPU: much less sensitive to other
                # work on the machine than requests per second of wall time
                w.requests_per_cpu_s = w.requests / cpu_used
            if cpus:
                busy = cpus_busy_seconds(cpus) - busy0
                w.cpu_busy_pct = 100 * busy / (elapsed * len(cpus))
            if srv.proc.poll() is not None:
                raise RuntimeError(f"server died during the run (see {srv.log})")
            w.noisy = noisy(w)
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
    for mod in ("trio", "h11", "hypercorn", "uvicorn"):
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
    return {
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


def print_report(results: dict[str, Any]) -> list[dict[str, Any]]:
    servers: dict[str, Any] = results["servers"]
    print()
    print(
        f"{'server':<10} {'mode':<10} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>8}"
        f" {'srv CPU%':>8} {'CPU busy%':>9} {'req/CPU-s':>9}"
    )
    for name, r in servers.items():
        for mode in MODES:
            w = r.get(mode)
            if w is None:
                continue
            if "error" in w:
                print(f"{name:<10} {mode:<10} failed: {w['error']}")
                continue
            errs = sum(w["socket_errors"].values()) + w["non_2xx"]
            print(
                f"{name:<10} {mode:<10} {w['requests_per_s']:>10.0f} "
                f"{fmt(w['p50_ms'], '.2f'):>8} {fmt(w['p99_ms'], '.2f'):>8} {errs:>8}"
                f" {fmt(w.get('server_cpu_pct'), '.0f'):>8} {fmt(w.get('cpu_busy_pct'), '.0f'):>9}"
                f" {fmt(w.get('requests_per_cpu_s'), '.0f'):>9}"
                f"{'  noisy: CPU shared' if w.get('noisy') else ''}"
            )
    print()
    print(
        f"{'server':<10} {'idle conns':>10} {'alive':>6} {'RSS before':>12} {'RSS after':>12} {'B/conn':>8}"
    )
    for name, r in servers.items():
        i = r.get("idle")
        if i is None:
            continue
        if "error" in i:
            print(f"{name:<10} idle failed: {i['error']}")
            continue
        print(
            f"{name:<10} {i['connections']:>10} {i['alive_after']:>6} "
            f"{i['rss_before'] / 2**20:>10.1f}Mi {i['rss_after'] / 2**20:>10.1f}Mi "
            f"{i['bytes_per_connection']:>8.0f}"
        )
    print()
    checks: list[dict[str, Any]] = []

    def rps(name: str, mode: str) -> float | None:
        w = servers.get(name, {}).get(mode)
        if not w or "error" in w:
            return None
        v: float = w["requests_per_s"]
        return v

    def per_cpu(name: str, mode: str) -> float | None:
        w = servers.get(name, {}).get(mode)
        if not w or "error" in w or not w.get("requests_per_cpu_s"):
            return None
        v: float = w["requests_per_cpu_s"]
        return v

    print("ratios (req/s; in brackets req per server CPU-second, robust to other load)")
    for mode in MODES:
        for other in ("mhd2-baseline", "hypercorn", "uvicorn"):
            a, b = rps("mhd2", mode), rps(other, mode)
            if a is not None and b:
                pa, pb = per_cpu("mhd2", mode), per_cpu(other, mode)
                cpu_ratio = f"  [{pa / pb:5.2f}x]" if pa and pb else ""
                print(f"ratio mhd2/{other:<9} {mode:<10} {a / b:6.2f}x{cpu_ratio}")
    for num, den, mode, minimum in RATIO_TARGETS:
        a, b = rps(num, mode), rps(den, mode)
        ratio = a / b if a is not None and b else None
        pa, pb = per_cpu(num, mode), per_cpu(den, mode)
        checks.append(
            {
                "target": f"{mode}: {num} >= {minimum}x {den}",
                "unit": "x",
                "value": ratio,
                "value_per_cpu_s": pa / pb if pa and pb else None,
                "pass": None if ratio is None else ratio >= minimum,
            }
        )
    idle = servers.get("mhd2", {}).get("idle")
    if idle and "error" not in idle:
        ok = (
            idle["bytes_per_connection"] <= IDLE_TARGET_BYTES
            and idle["alive_after"] == idle["connections"]
        )
        checks.append(
            {
                "target": f"idle: mhd2 <= {IDLE_TARGET_BYTES} B per idle connection",
                "unit": "B",
                "value": idle["bytes_per_connection"],
                "pass": ok,
            }
        )
    if checks:
        print()
        for c in checks:
            v = c["value"]
            shown = "-" if v is None else (f"{v:.2f}x" if c["unit"] == "x" else f"{v:.0f} B")
            if c.get("value_per_cpu_s"):
                shown += f"  [{c['value_per_cpu_s']:.2f}x per CPU-second]"
            verdict = {True: "PASS", False: "FAIL", None: "n/a "}[c["pass"]]
            print(f"{verdict}  {c['target']:<45} {shown}")
    return checks


# --------------------------------------------------------------------------- main


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
    ap.add_argument("--server-cpu", default="0", help="CPU list for the server (taskset -c)")
    ap.add_argument("--client-cpu", default="1", help="CPU list for wrk (taskset -c)")
    ap.add_argument("--no-taskset", action="store_true", help="do not pin processes to CPUs")
    ap.add_argument("--json", type=Path, help="write the results as JSON to this path")
    ap.add_argument("--logdir", type=Path, help="where server logs go (default: a temp dir)")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk not found on PATH", file=sys.stderr)
        return 2
    names: list[str] = list(dict.fromkeys(args.only or SERVER_NAMES))
    if args.baseline is not None:
        global BASELINE
        BASELINE = args.baseline.resolve()
        if not (BASELINE / "mhd2" / "__init__.py").is_file():
            print(f"--baseline {args.baseline}: no mhd2 package there", file=sys.stderr)
            return 2
        names.insert(names.index("mhd2") + 1 if "mhd2" in names else 0, "mhd2-baseline")
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
                print(
                    f"[{name}] {mode}: {w.requests_per_s:.0f} req/s, p99 {fmt(w.p99_ms, '.2f')} ms,"
                    f" errors {w.socket_errors} non-2xx {w.non_2xx},"
                    f" server CPU {fmt(w.server_cpu_pct, '.0f')}%"
                    f" of CPU {server_cpu} busy {fmt(w.cpu_busy_pct, '.0f')}%{contended}",
                    flush=True,
                )
            except Exception as exc:
                entry[mode] = {"error": repr(exc)}
                print(f"[{name}] {mode} failed: {exc!r}", flush=True)
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
