"""HTTPS keep-alive hello world: mhd2 against hypercorn's trio worker, in one run.

Both servers use the same trustme-made certificate (ECDSA P-256), TLS 1.3,
one process pinned to CPU 0; ``wrk`` runs on CPU 1 with keep-alive
connections, so the handshakes are a negligible part of the run and what is
measured is request handling over TLS records.

    python bench/tls.py [--duration 10] [--connections 50] [--threads 1]
    python bench/tls.py --servers mhd2,uvicorn --root /path/to/old/checkout --reps 2

Servers (``--servers``): ``mhd2``, ``hypercorn`` (trio worker) and ``uvicorn``
(uvloop + httptools, the ASGI hello app of ``bench/servers``).  ``--root PATH``
(repeatable) also runs mhd2 from another checkout, named ``mhd2@PATH``, for a
side-by-side comparison of two versions; ``--reps`` repeats the servers in
alternating order.

Needs ``wrk`` (built with OpenSSL), ``taskset``, trustme and the peers.
Prints requests/s and server CPU µs per request (user + system of the server
process and its children over the measured run) of each, and the ratios.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.run import process_cpu_seconds  # noqa: E402  (CPU of a process tree, from /proc)

MHD2_SERVER = r'''
import signal, ssl, sys
import trio
import mhd2
from mhd2.tls import server_context

RESP = mhd2.Response.from_buffer_static(200, b"Hello, World!")
RESP.add_header("Content-Type", "text/plain")
RESP.set_options(reusable=True)

def cb(request):
    return mhd2.action_from_response(request, RESP)

async def main(port, cert, key):
    ctx = server_context(cert, key)
    async with mhd2.Daemon(cb, port=port, tls=ctx, timeout=300, connection_limit=20000) as d:
        print("ready", d.port, flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break

trio.run(main, int(sys.argv[1]), sys.argv[2], sys.argv[3])
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def run_wrk(port: int, args: argparse.Namespace) -> float:
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t", str(args.threads), "-c", str(args.connections),
         "-d", f"{args.duration}s", f"https://127.0.0.1:{port}/"],
        capture_output=True, text=True, check=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match or "Non-2xx" in out or "Socket errors" in out:
        print(out, file=sys.stderr)
    if not match:
        raise RuntimeError("no wrk result")
    return float(match[1])


def bench(name: str, argv: list[str], port: int, args: argparse.Namespace,
          root: Path = ROOT) -> tuple[float, float]:
    """Requests/s and server CPU µs per request of one server."""
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.Popen(["taskset", "-c", "0", *argv], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port, proc)
        subprocess.run(["taskset", "-c", "1", "wrk", "-t", "1", "-c", "4", "-d", "1s",
                        f"https://127.0.0.1:{port}/"], capture_output=True, check=True)  # warm
        before = process_cpu_seconds(proc.pid)
        rps = run_wrk(port, args)
        cpu_us = (process_cpu_seconds(proc.pid) - before) / (rps * args.duration) * 1e6
        print(f"{name:24s} {rps:10.0f} req/s {cpu_us:8.1f} us CPU/req", flush=True)
        return rps, cpu_us
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--servers", default="mhd2,hypercorn",
                    help="comma-separated: mhd2, hypercorn, uvicorn")
    ap.add_argument("--root", action="append", default=[],
                    help="also run mhd2 from this checkout (repeatable)")
    ap.add_argument("--reps", type=int, default=1,
                    help="run the servers this often, in alternating order")
    args = ap.parse_args()
    import trustme

    names = [n for n in args.servers.split(",") if n] + [f"mhd2@{r}" for r in args.root]
    results: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        leaf = trustme.CA().issue_cert("127.0.0.1", "localhost")
        cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
        script = Path(tmp, "mhd2_tls_hello.py")
        script.write_text(MHD2_SERVER)
        for rep in range(args.reps):
            for name in names if rep % 2 == 0 else names[::-1]:
                port = free_port()
                root = ROOT
                if name == "mhd2" or name.startswith("mhd2@"):
                    root = Path(name.partition("@")[2] or ROOT).resolve()
                    argv = [sys.executable, str(script), str(port), str(cert), str(key)]
                elif name == "hypercorn":
                    argv = [sys.executable, "-m", "hypercorn", "--worker-class", "trio",
                            "--workers", "1", "--bind", f"127.0.0.1:{port}", "--certfile",
                            str(cert), "--keyfile", str(key), "--keep-alive", "300",
                            "--log-level", "warning", "bench.servers.asgi_hello:app"]
                elif name == "uvicorn":
                    argv = [sys.executable, "-m", "uvicorn", "--loop", "uvloop", "--http",
                            "httptools", "--host", "127.0.0.1", "--port", str(port),
                            "--ssl-certfile", str(cert), "--ssl-keyfile", str(key),
                            "--timeout-keep-alive", "300", "--log-level", "warning",
                            "--no-access-log", "bench.servers.asgi_hello:app"]
                else:
                    raise SystemExit(f"unknown server {name!r}")
                results.setdefault(name, []).append(bench(name, argv, port, args, root))
    best = {name: min(cpu for _, cpu in runs) for name, runs in results.items()}
    base = best.get("mhd2")
    if base:
        for name, cpu in best.items():
            if name != "mhd2":
                print(f"mhd2 vs {name:17s} {cpu / base:6.2f}x  (their CPU/req over mhd2's; "
                      "> 1: mhd2 cheaper)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
