"""mhd2 hello world for the benchmark.

Replies to every request with status 200, ``Content-Type: text/plain`` and the
13-byte body ``Hello, World!`` from one reusable, static response.

Usage: ``python bench/servers/mhd2_hello.py [--port P] [--connection-limit N]``.
Prints ``ready <port>`` once it is listening; SIGINT or SIGTERM stops it
gracefully.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

# Allow running from a checkout without installing: put the repository root first.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import trio

import mhd2

BODY = b"Hello, World!"  # 13 bytes
RESP = mhd2.Response.from_buffer_static(200, BODY)
RESP.add_header("Content-Type", "text/plain")
RESP.set_options(reusable=True)


def cb(request: mhd2.Request) -> mhd2.Action:
    return mhd2.action_from_response(request, RESP)


async def main(host: str, port: int, connection_limit: int, timeout: float) -> None:
    async with mhd2.Daemon(
        cb, host=host, port=port, connection_limit=connection_limit, timeout=timeout
    ) as d:
        print("ready", d.port, flush=True)
        # SIGINT or SIGTERM: leave the block, i.e. stop the daemon gracefully.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--connection-limit", type=int, default=20000)
    ap.add_argument("--timeout", type=float, default=120.0)
    a = ap.parse_args()
    trio.run(main, a.host, a.port, a.connection_limit, a.timeout)
