"""Long-polling scale: many parked ``GET /poll`` requests, then one message.

    python bench/longpoll.py                    # 10,000 clients (the target)
    python bench/longpoll.py --clients 2000 --json out.json

The chat demo's :class:`mhd2.demo.Chat` (a :mod:`mhd2.fanout` topic) runs in a child process (this
script with ``--serve``, pinned to CPU 0 when ``taskset`` is not needed: the
client is pinned to the other CPU with ``os.sched_setaffinity`` where there
are two).  The client is one trio program: it opens ``--clients``
connections to 127.0.0.1, each sending ``GET /poll`` (the empty room's history), waits until the
daemon holds them all parked, then reports

* the daemon's RSS (``VmRSS`` from ``/proc``) with every poll parked
  (target: < 200 MB for 10,000),
* the time from sending ``POST /send`` until every client has read its
  ``200`` answer (target: < 1 s for 10,000).

Both processes raise ``RLIMIT_NOFILE`` to their hard limit first.  This is a
benchmark, not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio

REPO = Path(__file__).resolve().parents[1]
RSS_TARGET_MB = 200.0
ANSWER_TARGET_S = 1.0


def raise_nofile(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(wanted, soft)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the daemon (child process) -------------------------------------------------------


async def serve(poll_timeout: float) -> None:
    from mhd2.demo import Chat, chat_server

    room = Chat(poll_timeout=poll_timeout)
    async with chat_server(room, port=0, backlog=4096) as (daemon, _):
        print(daemon.port, flush=True)
        await trio.sleep_forever()


# -- the client ------------------------------------------------------------------------


async def one_poll(
    port: int,
    limiter: trio.CapacityLimiter,
    connected: list[int],
    answered: list[float],
    failures: list[str],
) -> None:
    try:
        async with limiter:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(b"GET /poll HTTP/1.1\r\nHost: bench\r\n\r\n")
        connected[0] += 1
        async with stream:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    raise EOFError("closed before the answer")
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(body) < length:
                body += await stream.receive_some(4096)
            if not head.startswith(b"HTTP/1.1 200 "):
                raise RuntimeError(head.split(b"\r\n")[0].decode())
            answered.append(time.perf_counter())
    except Exception as exc:
        failures.append(repr(exc))


async def post(port: int, text: str) -> None:
    body = json.dumps({"name": "bench", "text": text}).encode()
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(
            b"POST /send HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        while await stream.receive_some(4096):
            pass


async def client(args: argparse.Namespace, pid: int, port: int) -> dict[str, Any]:
    connected = [0]
    answered: list[float] = []
    failures: list[str] = []
    base_fds = open_fds(pid)
    rss_idle = rss_mb(pid)
    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        limiter = trio.CapacityLimiter(args.concurrency)
        for _ in range(args.clients):
            nursery.start_soon(one_poll, port, limiter, connected, answered, failures)
        # All connected and accepted (one fd each in the daemon) ...
        with trio.fail_after(args.clients / 100 + 60):
            while connected[0] + len(failures) < args.clients or open_fds(
                pid
            ) < base_fds + args.clients - len(failures):
                await trio.sleep(0.05)
        # ... and parsed and parked: the daemon goes idle.
        cpu = cpu_seconds(pid)
        while True:
            await trio.sleep(0.5)
            now = cpu_seconds(pid)
            if now - cpu < 0.02:
                break
            cpu = now
        connect_s = time.perf_counter() - start
        rss_parked = rss_mb(pid)
        published = time.perf_counter()
        await post(port, "hello, everyone")
        with trio.fail_after(120):
            while len(answered) + len(failures) < args.clients:
                await trio.sleep(0.001)
        all_answered = max(answered) if answered else float("nan")
    return {
        "clients": args.clients,
        "failures": len(failures),
        "first_failures": failures[:3],
        "park_all_s": round(connect_s, 2),
        "rss_idle_mb": round(rss_idle, 1),
        "rss_parked_mb": round(rss_parked, 1),
        "rss_per_poll_kb": round((rss_parked - rss_idle) * 1024 / args.clients, 2),
        "publish_to_all_answered_s": round(all_answered - published, 3),
        "targets": {"rss_parked_mb": RSS_TARGET_MB, "publish_to_all_answered_s": ANSWER_TARGET_S},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=500,
        help="connections being opened at once (default: %(default)s)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--poll-timeout", type=float, default=600.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    limit = raise_nofile(args.clients + 1000)
    if args.serve:
        if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2:
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        trio.run(serve, args.poll_timeout)
        return 0
    if limit < args.clients + 100:
        print(f"RLIMIT_NOFILE is {limit}: too low for {args.clients} clients", file=sys.stderr)
        return 1
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    server = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            "--clients",
            str(args.clients),
            "--poll-timeout",
            str(args.poll_timeout),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
        if len(cpus) >= 2:
            os.sched_setaffinity(0, set(sorted(cpus)[1:]))
        results = trio.run(client, args, server.pid, port)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    ok = (
        results["failures"] == 0
        and results["rss_parked_mb"] < RSS_TARGET_MB
        and results["publish_to_all_answered_s"] < ANSWER_TARGET_S
    )
    print("targets met" if ok else "targets NOT met", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
