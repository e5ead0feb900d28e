"""ASGI servers side by side: mhd2's bridge against hypercorn-trio, uvicorn[standard], granian.

The same ASGI hello app (``servers/asgi_hello.py``) under

* ``mhd2``: ``python -m mhd2 run --interface asgi`` (the bridge, :mod:`mhd2.asgi`);
* ``hypercorn``: hypercorn's trio worker;
* ``uvicorn-httptools``: uvicorn on uvloop + httptools (``pip install uvicorn[standard]``);
* ``granian``: granian's ASGI interface (Rust),

each run alone on CPU 0 (``taskset -c 0``), its load generator on CPU 1, as
``bench/run.py`` does.  Four measures:

1. **keep-alive**: ``wrk -t1 -c50 -dDs`` (every server);
2. **HTTP/2**: ``h2load -c10 -m10 -nN`` over h2c (mhd2 and hypercorn-trio);
3. **upload**: one 100 MB body (``Content-Length``, sent in 1 MB writes) to
   an app that reads and discards it; the server's RSS (summed over its
   process tree) is sampled every 20 ms: before, peak, growth (flat means
   the upload is streamed, not buffered);
4. **WebSocket echo**: ``bench/websocket.py``'s load (50 clients, 32-byte
   binary messages, one in flight each) on an ASGI echo app (mhd2 and
   hypercorn-trio).

Every row has the rate and the **server's CPU µs per request** (utime + stime
of its process tree over the run, divided by the requests done): on a shared
machine the CPU time per request moves far less than the rate, so the ratios
are given for both.

Usage::

    python bench/asgi.py                         # everything, ~3 minutes
    python bench/asgi.py --duration 3 --h2-requests 20000 --only mhd2 --only hypercorn
    python bench/asgi.py --json bench/results/asgi.json

Needs wrk, h2load and taskset; the peers come from the ``bench`` extra.
Only ever talks to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# bench/ holds files named like packages (so bench.* imports work): run from the repository root.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.http2 import run_h2load  # noqa: E402 -- after the path set-up above
from bench.run import (  # noqa: E402
    ASGI_BRIDGE,
    SERVERS_DIR,
    _cpu_times,
    _default_sigint,
    free_port,
    machine_info,
    process_cpu_seconds,
    rss_bytes,
    run_wrk,
    server_command,
    stop_server,
    taskset_prefix,
    wait_ready,
)
from bench.websocket import echo_rate  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ("mhd2", "hypercorn", "uvicorn-httptools", "granian")
H2_SERVERS = ("mhd2", "hypercorn")
WS_SERVERS = ("mhd2", "hypercorn")
UPLOAD_SIZE = 100 * 1024 * 1024
BLOCK = 1024 * 1024
#: The goals of issue 23.
GOALS = {"keep-alive vs hypercorn": 5.0, "keep-alive vs uvicorn-httptools": 0.8,
         "HTTP/2 vs hypercorn": 3.0}

#: The upload and WebSocket app: reads a body and answers its size; echoes WebSocket messages.
BENCH_APP = textwrap.dedent('''
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("bytes") is not None:
                    await send({"type": "websocket.send", "bytes": message["bytes"]})
                else:
                    await send({"type": "websocket.send", "text": message["text"]})
        if scope["type"] != "http":
            return
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"%d" % size
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"),
                                (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})
''')


def command(name: str, port: int, module: str, tmp: Path) -> tuple[list[str], Path]:
    """The command line (without taskset) and working directory of a server of *module*."""
    cmd, cwd = server_command(ASGI_BRIDGE if name == "mhd2" else name, port)
    cmd[-1] = module
    if name == "hypercorn":
        # hypercorn ends a connection after 1000 requests by default (see bench/http2.py).
        cmd[3:3] = ["--config", str(tmp / "hypercorn.toml")]
    return cmd, cwd


@contextlib.contextmanager
def serving(name: str, tmp: Path, module: str = "asgi_hello:app") -> Iterator[tuple[int, Any]]:
    """Start *name* on CPU 0 with *module*; yield (port, process) once it answers."""
    port = free_port()
    cmd, cwd = command(name, port, module, tmp)
    log = tmp / f"{name}-{port}.log"
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{tmp}{os.pathsep}{SERVERS_DIR}")
    with log.open("wb") as logf:
        proc = subprocess.Popen(taskset_prefix("0") + cmd, cwd=cwd, env=env,
                                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_default_sigint)
    try:
        if module == "asgi_hello:app":
            wait_ready(port, proc, 30.0)
        else:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError(f"{name} did not start:\n{log.read_text()}") from None
                    time.sleep(0.1)
        yield port, proc
    finally:
        stop_server(proc)


def per_cpu(rate: float | None, cpu_s: float, done: int, elapsed: float) -> dict[str, Any]:
    """The rate, the server's CPU µs per request and how busy CPU 0 was."""
    return {"rate": rate if rate is not None else done / elapsed,
            "cpu_us": 1e6 * cpu_s / done if done else None,
            "server_cpu_pct": 100 * cpu_s / elapsed}


def keepalive(name: str, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """wrk -c50 keep-alive; the best of ``--repeat`` runs, a clean run before a noisy one."""
    best: dict[str, Any] | None = None
    with serving(name, tmp) as (port, proc):
        run_wrk(port, mode="keepalive", duration=2, connections=50, cpu="1")  # warm up
        for _ in range(args.repeat):
            t0, cpu0, (busy0, _) = time.monotonic(), process_cpu_seconds(proc.pid), _cpu_times({0})
            w = run_wrk(port, mode="keepalive", duration=args.duration, connections=50, cpu="1")
            elapsed = time.monotonic() - t0
            cpu = process_cpu_seconds(proc.pid) - cpu0
            busy = 100 * (_cpu_times({0})[0] - busy0) / elapsed
            row = per_cpu(w.requests_per_s, cpu, w.requests, elapsed)
            row.update(p99_ms=w.p99_ms, errors=sum(w.socket_errors.values()) + w.non_2xx,
                       noisy=busy - row["server_cpu_pct"] > 10.0)
            if best is None or (not row["noisy"], row["rate"]) > (not best["noisy"], best["rate"]):
                best = row
    assert best is not None
    return best


def http2(name: str, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """h2load -c10 -m10 over h2c (prior knowledge)."""
    n = args.h2_requests if name == "mhd2" else max(2000, args.h2_requests // 4)
    with serving(name, tmp) as (port, proc):
        run_h2load(port, False, ["-c10", "-m10"], 2000, tmp)  # warm up
        t0 = time.monotonic()
        r = run_h2load(port, False, ["-c10", "-m10"], n, tmp, proc.pid)
        row = per_cpu(r["requests_per_s"], r["server_cpu_s"] or 0.0, r["succeeded"],
                      time.monotonic() - t0)
        row.update(p99_ms=r["p99_ms"], errors=r["failed"], protocol=r["protocol"])
    return row


def upload(name: str, tmp: Path) -> dict[str, Any]:
    """One 100 MB body to an app that reads and discards it; the server's RSS sampled."""
    with serving(name, tmp, "asgi_bench_app:app") as (port, proc):
        before = rss_bytes(proc.pid)
        peak = [before]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_bytes(proc.pid))
                done.wait(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        block = os.urandom(BLOCK)
        t0, cpu0 = time.monotonic(), process_cpu_seconds(proc.pid)
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: application/octet-stream\r\n"
                         b"Content-Length: %d\r\n\r\n" % UPLOAD_SIZE)
            for _ in range(UPLOAD_SIZE // BLOCK):
                sock.sendall(block)
            reply = b""
            while not reply.endswith(b"%d" % UPLOAD_SIZE):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
        elapsed = time.monotonic() - t0
        cpu = process_cpu_seconds(proc.pid) - cpu0
        done.set()
        sampler.join()
        after = rss_bytes(proc.pid)
    ok = reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"%d" % UPLOAD_SIZE)
    return {"ok": ok, "mb_per_s": UPLOAD_SIZE / 1e6 / elapsed, "rss_before_mb": before / 2**20,
            "rss_peak_growth_mb": (peak[0] - before) / 2**20,
            "rss_after_growth_mb": (after - before) / 2**20,
            "cpu_ms_per_mb": 1e3 * cpu / (UPLOAD_SIZE / 2**20)}


def websocket(name: str, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """bench/websocket.py's echo load on the ASGI echo app."""
    with serving(name, tmp, "asgi_bench_app:app") as (port, proc):
        echo_rate(port, 50, 32, 1.0)  # warm up
        t0, cpu0 = time.monotonic(), process_cpu_seconds(proc.pid)
        rate = echo_rate(port, 50, 32, args.duration)
        elapsed = time.monotonic() - t0
        cpu = process_cpu_seconds(proc.pid) - cpu0
    return per_cpu(rate, cpu, int(rate * args.duration), elapsed)


def report(results: dict[str, Any]) -> None:
    """Print the rows and the ratios mhd2 / peer (rate, and CPU per request)."""
    print(f"\n{results['date']}  {results['machine']['cpu_model']}, "
          f"load at start {results['machine']['loadavg_at_start']}")
    for measure in ("keepalive", "http2", "websocket"):
        rows = results.get(measure, {})
        if not rows:
            continue
        print(f"\n{measure}")
        mine = rows.get("mhd2")
        for name, row in rows.items():
            line = (f"  {name:18s} {row['rate']:9,.0f}/s  {row['cpu_us'] or 0:7.1f} CPU µs/req"
                    + ("  NOISY" if row.get("noisy") else ""))
            if mine and name != "mhd2" and row["cpu_us"] and mine["cpu_us"]:
                line += (f"   mhd2: {mine['rate'] / row['rate']:.2f}x rate, "
                         f"{row['cpu_us'] / mine['cpu_us']:.2f}x per CPU-s")
            print(line)
    if results.get("upload"):
        print("\nupload (100 MB)")
        for name, row in results["upload"].items():
            print(f"  {name:18s} {'ok' if row['ok'] else 'FAILED'} {row['mb_per_s']:6.0f} MB/s  "
                  f"RSS {row['rss_before_mb']:.1f} MB, peak {row['rss_peak_growth_mb']:+.1f} MB, "
                  f"after {row['rss_after_growth_mb']:+.1f} MB  "
                  f"{row['cpu_ms_per_mb']:.2f} CPU ms/MB")


def markdown(results: dict[str, Any]) -> str:
    """The rows as Markdown tables: rate, CPU µs per request, mhd2's ratios (rate / per CPU-s)."""
    out = []
    names = {"keepalive": "keep-alive, wrk -t1 -c50", "http2": "HTTP/2 h2c, h2load -c10 -m10",
             "websocket": "WebSocket echo, 50 clients x 32 B"}
    for measure, title in names.items():
        rows = results.get(measure) or {}
        if not rows:
            continue
        mine = rows.get("mhd2")
        out += [f"\n**{title}**\n", "| server | rate /s | server CPU µs per request | "
                "mhd2 / server: rate | mhd2 / server: per CPU-s | note |",
                "| --- | ---: | ---: | ---: | ---: | --- |"]
        for name, row in rows.items():
            ratio = cpu_ratio = ""
            if mine and name != "mhd2" and row["cpu_us"] and mine["cpu_us"]:
                ratio = f"{mine['rate'] / row['rate']:.2f}x"
                cpu_ratio = f"{row['cpu_us'] / mine['cpu_us']:.2f}x"
            label = "mhd2 (ASGI bridge)" if name == "mhd2" else name
            note = "noisy" if row.get("noisy") else ""
            out.append(f"| {label} | {row['rate']:,.0f} | {row['cpu_us'] or 0:.1f} | {ratio} | "
                       f"{cpu_ratio} | {note} |")
    if results.get("upload"):
        out += ["\n**100 MB upload (one POST, Content-Length, 1 MB writes)**\n",
                "| server | MB/s | RSS before | peak growth | growth after | CPU ms per MB |",
                "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for name, row in results["upload"].items():
            label = "mhd2 (ASGI bridge)" if name == "mhd2" else name
            out.append(f"| {label} | {row['mb_per_s']:.0f} | {row['rss_before_mb']:.1f} MB | "
                       f"{row['rss_peak_growth_mb']:+.1f} MB | {row['rss_after_growth_mb']:+.1f} MB"
                       f" | {row['cpu_ms_per_mb']:.2f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per wrk / echo run")
    ap.add_argument("--repeat", type=int, default=1, help="wrk runs per server; the best counts")
    ap.add_argument("--h2-requests", type=int, default=100_000,
                    help="h2load -n for mhd2 (hypercorn: a quarter)")
    ap.add_argument("--only", action="append", choices=SERVERS)
    ap.add_argument("--skip", action="append", default=[],
                    choices=("keepalive", "http2", "upload", "websocket"))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", action="store_true", help="also print Markdown tables")
    ap.add_argument("--report", type=Path, help="measure nothing: report a --json file")
    args = ap.parse_args(argv)
    if args.report:
        saved = json.loads(args.report.read_text())
        report(saved)
        print(markdown(saved))
        return 0
    servers = args.only or list(SERVERS)
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(), "conditions": "server on CPU 0, load on CPU 1",
    }
    with tempfile.TemporaryDirectory() as tmpname:
        tmp = Path(tmpname)
        (tmp / "asgi_bench_app.py").write_text(BENCH_APP)
        (tmp / "hypercorn.toml").write_text("keep_alive_max_requests = 1000000000\n")
        measures: list[tuple[str, list[str], Callable[[str], dict[str, Any]]]] = [
            ("keepalive", servers, lambda n: keepalive(n, tmp, args)),
            ("http2", [n for n in servers if n in H2_SERVERS], lambda n: http2(n, tmp, args)),
            ("upload", servers, lambda n: upload(n, tmp)),
            ("websocket", [n for n in servers if n in WS_SERVERS],
             lambda n: websocket(n, tmp, args)),
        ]
        for measure, names, run in measures:
            if measure in args.skip:
                continue
            results[measure] = {}
            for name in names:
                results[measure][name] = run(name)
                print(f"{measure} {name}: {results[measure][name]}", flush=True)
    report(results)
    if args.markdown:
        print(markdown(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the echo and upload clients run here, on CPU 1
    sys.exit(main())
