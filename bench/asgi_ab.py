"""Two mhd2 checkouts' ASGI bridges side by side: server CPU µs per request.

Each checkout serves the same ASGI app with ``python -m mhd2 run --interface
asgi`` (``PYTHONPATH`` = the checkout), pinned to CPU 0; the load runs on
CPU 1: ``wrk -t1 -c50`` (HTTP/1.1 keep-alive) and ``h2load -c10 -m10``
(h2c).  Runs are interleaved (A B, then B A ...) so that other load on a
shared machine falls on both; the median of ``--reps`` is printed.  The
number to compare is the server's CPU time (user + system) per request,
which moves far less than the rate on a busy machine.

Usage (from the repository root)::

    python bench/asgi_ab.py --a /work/main --b . --app asgi_hello:app
    python bench/asgi_ab.py --a /work/main --b . --app star_hello:app --apps-dir /tmp/apps

``--app`` is ``module:attribute`` in ``--apps-dir`` (default ``bench/servers``).
Needs wrk, h2load and taskset.  Only ever talks to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

SERVERS = Path(__file__).resolve().parent / "servers"


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(root: str, app: str, apps_dir: str, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=f"{Path(root).resolve()}{os.pathsep}{apps_dir}")
    argv = ["taskset", "-c", "0", sys.executable, "-m", "mhd2", "run", "--interface", "asgi",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
            # --timeout, as the mhd2 hello server: a --keep-alive-timeout that
            # differs from --timeout re-arms the connection's deadline twice
            # per request (bench/README.md, ASGI rows).
            "--log-level", "warning", "--timeout", "300", app]
    proc = subprocess.Popen(argv, cwd=apps_dir, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"the server of {root} exited") from None
            time.sleep(0.05)
    raise RuntimeError(f"the server of {root} did not listen")


def _load(kind: str, port: int, seconds: int, requests: int) -> int:
    """Run the load; return the requests done."""
    url = f"http://127.0.0.1:{port}/"
    if kind == "http1":
        out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c50", f"-d{seconds}s", url],
                             capture_output=True, text=True).stdout
        found = re.search(r"(\d+) requests in", out)
    else:
        out = subprocess.run(["taskset", "-c", "1", "h2load", "-c10", "-m10", f"-n{requests}",
                              url], capture_output=True, text=True).stdout
        found = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    return int(found.group(1)) if found else 0


def measure(root: str, app: str, apps_dir: str, kind: str, seconds: int,
            requests: int) -> tuple[float, float]:
    """One run: (server CPU µs per request, requests per second)."""
    port = _free_port()
    proc = _serve(root, app, apps_dir, port)
    try:
        _load(kind, port, 1, requests // 10)  # warm-up
        cpu0, t0 = _cpu_seconds(proc.pid), time.monotonic()
        done = _load(kind, port, seconds, requests)
        cpu1, t1 = _cpu_seconds(proc.pid), time.monotonic()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    done = max(done, 1)
    return (cpu1 - cpu0) / done * 1e6, done / (t1 - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", required=True, help="the first checkout (the baseline)")
    parser.add_argument("--b", required=True, help="the second checkout")
    parser.add_argument("--app", default="asgi_hello:app")
    parser.add_argument("--apps-dir", default=str(SERVERS))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="wrk -d")
    parser.add_argument("--h2-requests", type=int, default=30000, help="h2load -n")
    parser.add_argument("--only", choices=("http1", "http2"), action="append")
    args = parser.parse_args()
    kinds = args.only or ["http1", "http2"]
    results: dict[tuple[str, str], list[float]] = {}
    for kind in kinds:
        for rep in range(args.reps):
            order = [("a", args.a), ("b", args.b)]
            for name, root in order if rep % 2 == 0 else order[::-1]:
                us, rate = measure(root, args.app, args.apps_dir, kind, args.seconds,
                                   args.h2_requests)
                results.setdefault((kind, name), []).append(us)
                print(f"{kind} {name} rep{rep}: {us:7.1f} µs/request, {rate:9,.0f} requests/s",
                      flush=True)
    print(f"\n{args.app}: server CPU µs per request, median of {args.reps}")
    for kind in kinds:
        a = statistics.median(results[kind, "a"])
        b = statistics.median(results[kind, "b"])
        print(f"  {kind}: a {a:7.1f}  b {b:7.1f}  b/a {b / a:5.2f}")


if __name__ == "__main__":
    main()
