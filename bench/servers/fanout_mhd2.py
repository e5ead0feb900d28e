"""mhd2's fan-out app for ``bench/fanout.py``: one ``mhd2.fanout`` topic, three kinds.

The same routes as the peers' ``fanout_asgi.py``:

| route | what |
| --- | --- |
| ``GET /sse`` | ``mhd2.fanout.action_sse`` on topic ``bench`` |
| ``GET /poll[?cursor=ID]`` | ``mhd2.fanout.action_long_poll``: parks until the next message |
| ``GET /ws`` | ``mhd2.fanout.action_websocket_subscribe`` |
| ``POST /publish?n=K&size=S`` | ``await topic.publish(...)`` K times with S bytes of data; answers JSON with the ``time.monotonic()`` just before the first publish and just after the last |
| ``GET /hello`` | a 2-byte ``ok`` (the bare idle-connection baseline) |
| ``GET /stats`` | ``hub.stats()`` as JSON |
| ``GET /tracemalloc/mark``, ``GET /tracemalloc/diff?n=N`` | with ``--tracemalloc``: a snapshot, then the lines that allocated most since it (bytes, and bytes per each of N subscribers) |

Usage: ``python bench/servers/fanout_mhd2.py [--port P] [--redis URL] [--tracemalloc FRAMES]``.
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
        if path.startswith("/tracemalloc/") and tracemalloc.is_tracing():
            return mhd2.action_from_response(request, _json(200, _tracemalloc(path, request)))
        if path == "/stats":
            stats = hub.stats()
            if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
                stats = dataclasses.asdict(stats)
            return mhd2.action_from_response(request, _json(200, stats))
        return mhd2.action_from_response(request, OK)

    return callback


async def main(port: int, redis: str | None) -> None:
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
        daemon = mhd2.Daemon(
            make_app(hub, topic),
            host="127.0.0.1",
            port=port,
            backlog=4096,
            connection_limit=None,
            timeout=QUIET_S,
        )
        async with daemon as d:
            print("ready", d.port, os.path.dirname(mhd2.__file__), flush=True)
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    break


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--redis", default=None, help="Hub(redis=URL) instead of in-process")
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
    trio.run(main, a.port, a.redis)
