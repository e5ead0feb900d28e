"""mhd2's fan-out app for ``bench/fanout.py``: one ``mhd2.fanout`` topic, three kinds.

The same routes as the peers' ``fanout_asgi.py``:

| route | what |
| --- | --- |
| ``GET /sse`` | ``mhd2.fanout.action_sse`` on topic ``bench`` |
| ``GET /poll[?cursor=ID]`` | ``mhd2.fanout.action_long_poll``: parks until the next message |
| ``GET /ws`` | ``mhd2.fanout.action_websocket_subscribe`` |
| ``POST /publish?n=K&size=S`` | ``await topic.publish(...)`` K times with S bytes of data; answers JSON with the ``time.monotonic()`` just before the first publish and just after the last |
| ``GET /hello`` | a 2-byte ``ok`` (the bare idle-connection baseline) |
| ``POST /series?n=K&interval=S&size=B`` | ``topic.publish`` K times on a steady schedule (message k at start + k*S), each message's data ``~<k> <time.monotonic()>`` read just before its publish (padded to B bytes); answers JSON ``{"n", "t_first", "t_last", "late"}`` once all are published |
| ``GET /stats`` | ``hub.stats()`` as JSON, with this process's ``pid`` |
| ``GET /tracemalloc/mark``, ``GET /tracemalloc/diff?n=N`` | with ``--tracemalloc``: a snapshot, then the lines that allocated most since it (bytes, and bytes per each of N subscribers) |

Usage: ``python bench/servers/fanout_mhd2.py [--port P] [--redis URL] [--workers N] [--tracemalloc FRAMES]``.
With ``--workers N`` the port is bound once and ``mhd2.supervisor.Supervisor``
forks N workers sharing it (what ``python -m mhd2 run --workers N`` does);
each worker makes its own ``Hub`` (and so, with ``--redis``, its own Redis
reader) inside its own trio run.
Prints ``ready <port> <mhd2 path>`` once listening; SIGINT or SIGTERM stops
it.  If this mhd2 has no ``mhd2.fanout`` (or no ``Hub(redis=...)``), it
prints ``n/a: <reason>`` and exits with status 3, which the harness reports
as "n/a".

``MHD2_BENCH_ROOT`` names the checkout whose ``mhd2`` is imported (default:
the checkout this script is in).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import signal
import socket
import sys
import time
import tracemalloc
from collections.abc import Awaitable
from typing import Any

sys.path.insert(
    0,
    os.environ.get("MHD2_BENCH_ROOT")
    or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
)

import trio

import mhd2

#: The checkout whose mhd2 runs (paths in the tracemalloc report are relative to it).
REPO_ROOT = sys.path[0]

#: Exit status meaning "this mhd2 cannot run the requested configuration".
EXIT_NOT_APPLICABLE = 3

try:
    import mhd2.fanout as fanout
except ImportError as exc:  # pragma: no cover - depends on the checkout
    print(f"n/a: this mhd2 has no mhd2.fanout ({exc})", flush=True)
    sys.exit(EXIT_NOT_APPLICABLE)

#: No heartbeat comments while the benchmark counts messages (the peers'
#: sse-starlette gets ping=3600 too); no long-poll timeout inside a run.
QUIET_S = 3600.0
HISTORY = 100
#: Every subscriber limit the hub has is raised past what the harness opens.
SUBSCRIBER_LIMIT = 1_000_000

OK = mhd2.Response.from_buffer_static(200, b"ok")
OK.add_header("Content-Type", "text/plain")
OK.set_options(reusable=True)


def _json(status: int, obj: Any) -> mhd2.Response:
    response = mhd2.Response.from_buffer_copy(status, json.dumps(obj).encode())
    response.add_header("Content-Type", "application/json")
    return response


def _accepted(callable_: Any, wanted: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of *wanted* that *callable_* takes (the limits' names
    are not part of API.md's contract, so only those that exist are passed)."""
    try:
        params = inspect.signature(callable_).parameters
    except (TypeError, ValueError):
        return {}
    return {k: v for k, v in wanted.items() if k in params}


LIMITS = {
    "max_subscribers": SUBSCRIBER_LIMIT,
    "max_subscribers_per_topic": SUBSCRIBER_LIMIT,
    "subscriber_limit": SUBSCRIBER_LIMIT,
    "topic_subscriber_limit": SUBSCRIBER_LIMIT,
}


_marked: list[tracemalloc.Snapshot] = []


def _tracemalloc(path: str, request: mhd2.Request) -> dict[str, Any]:
    """``/tracemalloc/mark`` keeps a snapshot; ``/tracemalloc/diff`` compares with it."""
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen*")]
    )
    if path == "/tracemalloc/mark" or not _marked:
        _marked[:] = [snapshot]
        return {"marked": True}
    n = max(1, int(request.args.get("n", "1")))
    top = []
    for stat in snapshot.compare_to(_marked[0], "lineno")[:25]:
        frame = stat.traceback[0]
        where = f"{os.path.relpath(frame.filename, REPO_ROOT)}:{frame.lineno}"
        top.append({"where": where, "bytes": stat.size_diff, "blocks": stat.count_diff,
                    "bytes_per_subscriber": round(stat.size_diff / n, 1)})  # fmt: skip
    by_file = snapshot.compare_to(_marked[0], "filename")
    total = sum(s.size_diff for s in by_file)
    files = [
        {"where": os.path.relpath(s.traceback[0].filename, REPO_ROOT), "bytes": s.size_diff,
         "blocks": s.count_diff, "bytes_per_subscriber": round(s.size_diff / n, 1)}
        for s in by_file[:15]
    ]  # fmt: skip
    return {"n": n, "traced_bytes": total, "traced_per_subscriber": round(total / n),
            "top": top, "files": files}  # fmt: skip


def make_app(hub: Any, topic: Any) -> Any:
    async def publish(request: mhd2.Request) -> mhd2.Action:
        n = int(request.args.get("n", "1"))
        size = int(request.args.get("size", "32"))
        data = b"~" + b"a" * (size - 1)  # "~": the client counts one per message
        t_publish = time.monotonic()
        for _ in range(n):
            await topic.publish(data, event="message")
        t_done = time.monotonic()
        body = {"n": n, "t_publish": t_publish, "t_done": t_done}
        return mhd2.action_from_response(request, _json(200, body))

    async def series(request: mhd2.Request) -> mhd2.Action:
        # A steady stream of stamped messages: the client reads each stamp
        # (same CLOCK_MONOTONIC) to get publish -> received per delivery.
        n = int(request.args.get("n", "200"))
        interval = float(request.args.get("interval", "0.05"))
        size = int(request.args.get("size", "32"))
        start = trio.current_time()
        late = 0
        t_first = t_last = 0.0
        for k in range(n):
            due = start + k * interval
            if trio.current_time() > due + interval:
                late += 1
            await trio.sleep_until(due)
            t_last = time.monotonic()
            if k == 0:
                t_first = t_last
            stamp = b"~%d %.6f;" % (k, t_last)
            await topic.publish(stamp + b"a" * max(0, size - len(stamp)), event="message")
        body = {"n": n, "t_first": t_first, "t_last": t_last, "late": late, "pid": os.getpid()}
        return mhd2.action_from_response(request, _json(200, body))

    def callback(request: mhd2.Request) -> mhd2.Action | Awaitable[mhd2.Action]:
        path = request.path
        if path == "/sse":
            return fanout.action_sse(request, topic, heartbeat=QUIET_S)
        if path == "/poll":
            cursor = request.args.get("cursor")
            return fanout.action_long_poll(request, topic, cursor=cursor, timeout=QUIET_S)
        if path == "/ws":
            return fanout.action_websocket_subscribe(request, topic)
        if path == "/publish":
            return publish(request)
        if path == "/series":
            return series(request)
        if path.startswith("/tracemalloc/") and tracemalloc.is_tracing():
            return mhd2.action_from_response(request, _json(200, _tracemalloc(path, request)))
        if path == "/stats":
            stats = hub.stats()
            if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
                stats = dataclasses.asdict(stats)
            stats = {**stats, "pid": os.getpid()}
            return mhd2.action_from_response(request, _json(200, stats))
        return mhd2.action_from_response(request, OK)

    return callback


async def main(
    port: int, redis: str | None, sock: socket.socket | None = None, worker: Any = None
) -> None:
    hub_kwargs = _accepted(fanout.Hub, LIMITS)
    if redis:
        hub_kwargs["redis"] = redis
    try:
        hub = fanout.Hub(**hub_kwargs)
    except (TypeError, mhd2.UsageError) as exc:
        print(f"n/a: Hub({', '.join(sorted(hub_kwargs))}=...): {exc}", flush=True)
        sys.exit(EXIT_NOT_APPLICABLE)
    async with hub:
        topic = hub.topic("bench", history=HISTORY, **_accepted(hub.topic, LIMITS))
        where: dict[str, Any] = (
            {"listen_socket": sock}
            if sock is not None
            else {"host": "127.0.0.1", "port": port, "backlog": 4096}
        )
        daemon = mhd2.Daemon(
            make_app(hub, topic),
            **where,
            connection_limit=None,
            timeout=QUIET_S,
        )
        async with daemon as d:
            if worker is None:
                print("ready", d.port, os.path.dirname(mhd2.__file__), flush=True)
            else:
                print("worker", worker.index, "pid", os.getpid(), flush=True)
                worker.ready()
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    break


def supervise(port: int, redis: str | None, workers: int) -> int:
    """Bind once, fork *workers* under mhd2's supervisor; each runs :func:`main`."""
    from mhd2.supervisor import Supervisor

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(4096)

    def worker_main(listen: socket.socket, worker: Any) -> int:
        trio.run(main, port, redis, listen, worker)
        return 0

    def ready() -> None:
        print("ready", sock.getsockname()[1], os.path.dirname(mhd2.__file__), flush=True)

    supervisor = Supervisor(
        worker_main, sock, workers=workers, graceful_timeout=5.0, on_ready=ready
    )
    return supervisor.run()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--redis", default=None, help="Hub(redis=URL) instead of in-process")
    ap.add_argument(
        "--workers",
        type=int,
        default=0,
        help="N worker processes under mhd2.supervisor (0: one process)",
    )
    ap.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="FRAMES",
        help="trace Python allocations (FRAMES deep) for /tracemalloc/*",
    )
    a = ap.parse_args()
    if a.tracemalloc:
        tracemalloc.start(a.tracemalloc)
    if a.workers:
        sys.exit(supervise(a.port, a.redis, a.workers))
    trio.run(main, a.port, a.redis)
