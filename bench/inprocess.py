"""Per-request CPU of a callback or an ASGI app, in process, without the kernel.

A real :class:`mhd2.Daemon` serves one ``trio.testing`` memory stream;
the client sends GETs 50 at a time (pipelined) and reads the replies.
``time.process_time()`` per request, over 20,000 requests, *reps* times.
There is no socket and no load generator, so the runs agree to about
±0.05 µs where ``wrk`` runs spread by ±1.5 µs: use it to compare two
versions of the bridge or of the engine (the difference, not the level:
the memory stream costs more than a socket).

``--count-calls`` counts instead the Python and C function calls per
request (``sys.setprofile``; a coroutine resumed counts as a call).

    python bench/inprocess.py bench.servers.mhd2_hello:cb
    python bench/inprocess.py --asgi bench.servers.asgi_hello:app
    python bench/inprocess.py --asgi bench.servers.asgi_hello:app --count-calls
    PYTHONPATH=../other-checkout python bench/inprocess.py --asgi ...   # another mhd2
"""

from __future__ import annotations

import argparse
import collections
import importlib
import sys
import time
from pathlib import Path
from typing import Any

import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mhd2
from mhd2.asgi.bridge import Bridge

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\n\r\n"
BATCH = 50


def load(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


async def exchange(client: trio.abc.Stream, size: int, count: int) -> None:
    """Send *count* requests at once and read their *size*-byte replies."""
    await client.send_all(REQUEST * count)
    need = size * count
    while need > 0:
        need -= len(await client.receive_some(1 << 20))


async def count(client: trio.abc.Stream, size: int, requests: int = 2000) -> None:
    calls: collections.Counter[str] = collections.Counter()

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            code = frame.f_code
            calls["/".join(code.co_filename.rsplit("/", 2)[-2:]) + ":" + code.co_name] += 1
        elif event == "c_call":
            calls["C " + getattr(arg, "__qualname__", repr(arg))] += 1

    sys.setprofile(profile)
    for _ in range(requests):
        await exchange(client, size, 1)
    sys.setprofile(None)
    python = sum(v for k, v in calls.items() if not k.startswith("C "))
    c_calls = sum(v for k, v in calls.items() if k.startswith("C "))
    print(f"per request: {python / requests:.1f} Python calls, {c_calls / requests:.1f} C calls "
          "(the memory stream's and trio's included)")
    for name, n in calls.most_common(60):
        print(f"{n / requests:7.2f}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help="module:callback (or module:app with --asgi)")
    parser.add_argument("--asgi", action="store_true", help="the target is an ASGI app")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--batches", type=int, default=400, help="of 50 requests per rep")
    parser.add_argument("--count-calls", action="store_true")
    args = parser.parse_args()
    target = load(args.target)

    async def run() -> None:
        if args.asgi:
            async with trio.open_nursery() as nursery:
                bridge = Bridge(target, spawn=nursery.start_soon)
                await serve(bridge)
                nursery.cancel_scope.cancel()
        else:
            await serve(target)

    async def serve(callback: Any) -> None:
        async with trio.open_nursery() as nursery, \
                mhd2.Daemon(callback, port=0, host="127.0.0.1") as daemon:
            client, server = trio.testing.memory_stream_pair()
            nursery.start_soon(daemon.serve_stream, server)
            await client.send_all(REQUEST)
            size = len(await client.receive_some(1 << 16))
            for _ in range(200):  # warm up
                await exchange(client, size, 1)
            if args.count_calls:
                await count(client, size)
            else:
                results = []
                for _ in range(args.reps):
                    start = time.process_time()
                    for _ in range(args.batches):
                        await exchange(client, size, BATCH)
                    results.append((time.process_time() - start)
                                   / (args.batches * BATCH) * 1e6)
                results.sort()
                print(f"min {results[0]:.2f}  median {results[len(results) // 2]:.2f} "
                      f"µs per request  (all: {', '.join(f'{r:.2f}' for r in results)})")
            await client.aclose()
            nursery.cancel_scope.cancel()

    trio.run(run)


if __name__ == "__main__":
    main()
