"""HTTP/2 hello world: mhd2 against hypercorn's trio worker, with ``h2load``.

Each server runs alone, pinned to CPU 0 (``taskset -c 0``); ``h2load`` runs on
CPU 1.  Per server and transport (h2c with prior knowledge on ``http://``, and
TLS with a trustme certificate, where ``h2load`` negotiates ``h2`` by ALPN) it
runs ``h2load -c10 -m10 -nN`` and ``h2load -c50 -m1 -nN`` and reports
requests/s and the p99 of the request times (from ``h2load --log-file``,
which has one line per request).  Then, on a fresh h2c server, it opens
``--rss-connections`` connections that each park ``--rss-streams`` streams
(mhd2: ``action_suspend``; hypercorn: an ASGI app awaiting an event that is
never set) and reports the growth of the server's resident memory per
connection (VmRSS summed over the server's process tree, as ``bench/run.py``).

Usage::

    python bench/http2.py                         # -n 200000 per run: long for hypercorn
    python bench/http2.py --requests 20000        # quick
    python bench/http2.py --only mhd2 --transport h2c --json out.json

Needs ``h2load`` (Debian's ``nghttp2-client``), ``taskset``, hypercorn, h2 and
trustme.  Only ever talks to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# This file is named like the ``h2`` package: take its directory off the path
# (Python put it first), and put the repository root there instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import (  # noqa: E402 -- after the path set-up above
    _default_sigint,
    free_port,
    machine_info,
    process_cpu_seconds,
    rss_bytes,
    stop_server,
    taskset_prefix,
)

ROOT = Path(__file__).resolve().parent.parent
BODY = b"Hello, World!"
SERVERS = ("mhd2", "hypercorn")
TRANSPORTS = ("h2c", "tls")
#: (name, h2load options): the two loads of the issue.
LOADS = (("c10 m10", ["-c10", "-m10"]), ("c50 m1", ["-c50", "-m1"]))
TARGET_RATIO = 3.0

MHD2_SERVER = r'''
import signal, sys
import trio
import mhd2
from mhd2.tls import server_context

RESP = mhd2.Response.from_buffer_static(200, b"Hello, World!")
RESP.add_header("Content-Type", "text/plain")
RESP.set_options(reusable=True)
parked = []

def cb(request):
    if request.path == "/park":
        parked.append(request)
        return mhd2.action_suspend(request)
    if request.path == "/count":
        return mhd2.action_from_response(
            request, mhd2.Response.from_buffer_copy(200, b"%d" % len(parked)))
    return mhd2.action_from_response(request, RESP)

async def main(port, cert, key):
    tls = server_context(cert, key) if cert else None
    async with mhd2.Daemon(cb, host="127.0.0.1", port=port, tls=tls, timeout=300,
                           connection_limit=20000, http2_max_concurrent_streams=128) as d:
        print("ready", d.port, flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break

trio.run(main, int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None,
         sys.argv[3] if len(sys.argv) > 3 else None)
'''

ASGI_APP = r'''
import trio

START = {"type": "http.response.start", "status": 200,
         "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")]}
BODY = {"type": "http.response.body", "body": b"Hello, World!", "more_body": False}
parked = 0
never = None

async def app(scope, receive, send):
    global parked, never
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["path"] == "/park":
        parked += 1
        if never is None:
            never = trio.Event()
        await never.wait()
    if scope["path"] == "/count":
        body = b"%d" % parked
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})
        return
    await send(dict(START))
    await send(dict(BODY))
'''


def server_argv(name: str, port: int, tmp: Path, tls: bool) -> list[str]:
    """The command line (without taskset) of a server."""
    cert, key = str(tmp / "cert.pem"), str(tmp / "key.pem")
    if name == "mhd2":
        return [sys.executable, str(tmp / "mhd2_h2_hello.py"), str(port),
                *([cert, key] if tls else [])]
    # hypercorn ends a connection after keep_alive_max_requests (default
    # 1000; no command-line flag, hence the TOML file): under h2load, which
    # does not reconnect, every request still queued on it then fails.  mhd2
    # has no such limit by default (max_requests_per_connection=None).
    return [sys.executable, "-m", "hypercorn", "--config", str(tmp / "hypercorn.toml"),
            "--worker-class", "trio", "--workers", "1",
            "--bind", f"127.0.0.1:{port}", "--keep-alive", "300", "--backlog", "2048",
            "--log-level", "warning", *(["--certfile", cert, "--keyfile", key] if tls else []),
            "h2_asgi_hello:app"]


def h2_get(port: int, path: str, tls: bool, timeout: float = 5.0) -> tuple[int, bytes]:
    """One HTTP/2 GET on a new connection (h2c prior knowledge or TLS ALPN h2)."""
    import h2.config
    import h2.connection
    import h2.events

    sock: Any = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        sock = ctx.wrap_socket(sock, server_hostname="127.0.0.1")
    with sock:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.send_headers(1, [(":method", "GET"), (":scheme", "https" if tls else "http"),
                              (":authority", "127.0.0.1"), (":path", path)], end_stream=True)
        sock.sendall(conn.data_to_send())
        status, body = 0, b""
        while True:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed before the response ended")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    return status, body
            sock.sendall(conn.data_to_send())


@contextlib.contextmanager
def running(name: str, tmp: Path, tls: bool, logdir: Path) -> Iterator[tuple[int, Any]]:
    """Start a server on CPU 0; yield (port, process) once it answers over HTTP/2."""
    port = free_port()
    log = logdir / f"{name}-{'tls' if tls else 'h2c'}-{port}.log"
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{tmp}")
    with log.open("wb") as logf:
        proc = subprocess.Popen(taskset_prefix("0") + server_argv(name, port, tmp, tls),
                                cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_default_sigint)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode} at start-up:\n"
                                   + log.read_text(errors="replace"))
            try:
                if h2_get(port, "/", tls, 2.0) == (200, BODY):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready:\n" + log.read_text(errors="replace"))
            time.sleep(0.1)
        yield port, proc
    finally:
        stop_server(proc)


# --------------------------------------------------------------------------- h2load


def run_h2load(port: int, tls: bool, load: list[str], requests: int, tmp: Path,
               pid: int | None = None) -> dict[str, Any]:
    """One h2load run on CPU 1: requests/s, failures and latency percentiles (ms);
    with *pid*, also the server's CPU seconds and requests per CPU-second."""
    logfile = tmp / "h2load.log"
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/"
    cmd = [*taskset_prefix("1"), "h2load", *load, f"-n{requests}", "--log-file", str(logfile), url]
    cpu_before = process_cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False).stdout
    cpu = process_cpu_seconds(pid) - cpu_before if pid else None
    m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
    done = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                     r"(\d+) failed, (\d+) errored", out)
    if m is None or done is None:
        raise RuntimeError(f"cannot parse h2load output:\n{out}")
    proto = re.search(r"Application protocol: (\S+)", out)
    # --log-file: "start time (us since epoch)\tstatus\telapsed (us)" per request.
    times = sorted(int(line.split("\t")[2]) for line in logfile.read_text().splitlines() if line)
    pct = {p: times[min(len(times) - 1, int(len(times) * p / 100))] / 1000 for p in (50, 99)} \
        if times else {}
    return {
        "command": " ".join(cmd[3:] if cmd[0] == "taskset" else cmd).replace(
            f"--log-file {logfile} ", ""),
        "requests_per_s": float(m.group(3)),
        "succeeded": int(done.group(4)),
        "failed": int(done.group(5)) + int(done.group(6)),
        "protocol": proto.group(1) if proto else None,
        "p50_ms": pct.get(50),
        "p99_ms": pct.get(99),
        "server_cpu_s": cpu,
        "requests_per_cpu_s": int(done.group(4)) / cpu if cpu else None,
    }


# --------------------------------------------------------------------------- memory


def park_streams(port: int, streams: int) -> socket.socket:
    """Open one h2c connection with *streams* requests that the server parks."""
    import h2.config
    import h2.connection

    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    for i in range(streams):
        conn.send_headers(1 + 2 * i, [(":method", "GET"), (":scheme", "http"),
                                      (":authority", "127.0.0.1"), (":path", "/park")],
                          end_stream=True)
    sock.sendall(conn.data_to_send())
    return sock


def measure_rss(name: str, tmp: Path, logdir: Path, connections: int,
                streams: int) -> dict[str, Any]:
    """RSS growth per connection with *streams* parked streams each (h2c)."""
    with running(name, tmp, False, logdir) as (port, proc):
        for _ in range(3):  # warm up: the code paths of a request and of a park
            h2_get(port, "/", False)
        warm = park_streams(port, 1)
        wait_parked(port, 1)
        time.sleep(0.5)
        before = rss_bytes(proc.pid)
        socks = [park_streams(port, streams) for _ in range(connections)]
        total = wait_parked(port, 1 + connections * streams)
        time.sleep(1.0)
        after = rss_bytes(proc.pid)
        for s in [warm, *socks]:
            s.close()
    growth = after - before
    return {"connections": connections, "streams_per_connection": streams, "parked": total,
            "rss_before": before, "rss_after": after,
            "bytes_per_connection": growth / connections,
            "bytes_per_stream": growth / (connections * streams)}


def wait_parked(port: int, n: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        status, body = h2_get(port, "/count", False)
        count = int(body) if status == 200 else -1
        if count >= n:
            return count
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {count} of {n} streams parked")
        time.sleep(0.2)


# --------------------------------------------------------------------------- report


def report(results: dict[str, Any]) -> None:
    rows = results["runs"]
    print("\n| server | transport | load | req/s | req per CPU-s | p50 ms | p99 ms | failed |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['server']} | {r['transport']} | {r['load']} | {r['requests_per_s']:,.0f} "
              f"| {r['requests_per_cpu_s'] or 0:,.0f} "
              f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['failed']} |")
    by = {(r["server"], r["transport"], r["load"]): r["requests_per_s"] for r in rows}
    per_cpu = {(r["server"], r["transport"], r["load"]): r["requests_per_cpu_s"] for r in rows}
    failed = {(r["server"], r["transport"], r["load"]) for r in rows if r["failed"]}
    for transport in TRANSPORTS:
        for load, _ in LOADS:
            a, b = by.get(("mhd2", transport, load)), by.get(("hypercorn", transport, load))
            if a and b:
                verdict = "PASS" if a / b >= TARGET_RATIO else "MISS"
                if {("mhd2", transport, load), ("hypercorn", transport, load)} & failed:
                    verdict = "INVALID (failed requests)"
                ca = per_cpu.get(("mhd2", transport, load))
                cb = per_cpu.get(("hypercorn", transport, load))
                cpu_ratio = f"; per CPU-second {ca / cb:.2f}x" if ca and cb else ""
                print(f"ratio mhd2/hypercorn {transport} {load}: {a / b:.2f}x{cpu_ratio} "
                      f"(target >= {TARGET_RATIO}x) {verdict}")
    for name, mem in results.get("rss", {}).items():
        print(f"RSS {name}: {mem['bytes_per_connection']:,.0f} B per connection with "
              f"{mem['streams_per_connection']} parked streams "
              f"({mem['bytes_per_stream']:,.0f} B per stream; {mem['connections']} connections)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", "-n", type=int, default=200_000, help="h2load -n per run")
    ap.add_argument("--hypercorn-requests", type=int, default=None,
                    help="h2load -n for hypercorn (default: --requests)")
    ap.add_argument("--only", action="append", choices=SERVERS)
    ap.add_argument("--transport", action="append", choices=TRANSPORTS)
    ap.add_argument("--rss-connections", type=int, default=20)
    ap.add_argument("--rss-streams", type=int, default=100)
    ap.add_argument("--no-rss", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    import trustme

    servers = args.only or list(SERVERS)
    transports = args.transport or list(TRANSPORTS)
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "python": platform.python_version(),
        "h2load": subprocess.run(["h2load", "--version"], capture_output=True,
                                 text=True, check=False).stdout.strip(),
        "runs": [], "rss": {},
    }
    with tempfile.TemporaryDirectory() as tmpname:
        tmp = Path(tmpname)
        leaf = trustme.CA().issue_cert("127.0.0.1", "localhost")
        leaf.cert_chain_pems[0].write_to_path(str(tmp / "cert.pem"))
        leaf.private_key_pem.write_to_path(str(tmp / "key.pem"))
        (tmp / "mhd2_h2_hello.py").write_text(MHD2_SERVER)
        (tmp / "h2_asgi_hello.py").write_text(ASGI_APP)
        (tmp / "hypercorn.toml").write_text("keep_alive_max_requests = 1000000000\n")
        logdir = tmp / "logs"
        logdir.mkdir()
        for name in servers:
            n = args.requests if name == "mhd2" else (args.hypercorn_requests or args.requests)
            for transport in transports:
                tls = transport == "tls"
                with running(name, tmp, tls, logdir) as (port, proc):
                    run_h2load(port, tls, ["-c10", "-m10"], min(n, 2000), tmp)  # warm up
                    for load, opts in LOADS:
                        r = run_h2load(port, tls, opts, n, tmp, proc.pid)
                        r.update(server=name, transport=transport, load=load)
                        print(f"{name:9s} {transport:3s} {load:7s} {r['requests_per_s']:9,.0f} "
                              f"req/s  {r['requests_per_cpu_s'] or 0:9,.0f} req/CPU-s  "
                              f"p99 {r['p99_ms']:.2f} ms  failed {r['failed']}  "
                              f"({r['protocol']})", flush=True)
                        results["runs"].append(r)
            if not args.no_rss:
                results["rss"][name] = measure_rss(name, tmp, logdir, args.rss_connections,
                                                   args.rss_streams)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
