"""mhd2 hello world for the benchmark.

Replies to every request with status 200, ``Content-Type: text/plain`` and the
13-byte body ``Hello, World!`` from one reusable, static response.

Usage: ``python bench/servers/mhd2_hello.py [--port P] [--connection-limit N]
[--parser auto|h11|httptools]``.  Prints ``ready <port> <mhd2 path> parser=<p>``
once it is listening; SIGINT or SIGTERM stops it gracefully.

``--parser`` (or the environment variable ``MHD2_BENCH_PARSER``) is passed to
``Daemon(parser=...)``; without it the Daemon's default is used.  If this mhd2
does not know that option (or cannot use the backend), the script prints a line
``n/a: <reason>`` and exits with status 3 (:data:`EXIT_NOT_APPLICABLE`), which
``bench/run.py`` reports as "n/a" instead of a failure.

``MHD2_BENCH_ROOT`` names the checkout whose ``mhd2`` is imported (default: the
checkout this script is in); ``bench/run.py --baseline DIR`` sets it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

# Import mhd2 from MHD2_BENCH_ROOT, or from the checkout this script is in,
# without installing: put that directory first on sys.path.
sys.path.insert(
    0,
    os.environ.get("MHD2_BENCH_ROOT")
    or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
)

import trio

import mhd2

#: Exit status meaning "this mhd2 cannot run the requested configuration".
EXIT_NOT_APPLICABLE = 3

BODY = b"Hello, World!"  # 13 bytes
RESP = mhd2.Response.from_buffer_static(200, BODY)
RESP.add_header("Content-Type", "text/plain")
RESP.set_options(reusable=True)


def cb(request: mhd2.Request) -> mhd2.Action:
    return mhd2.action_from_response(request, RESP)


def make_daemon(
    host: str, port: int, connection_limit: int, timeout: float, parser: str | None
) -> mhd2.Daemon:
    """The Daemon; exits with :data:`EXIT_NOT_APPLICABLE` if *parser* is not supported."""
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "connection_limit": connection_limit,
        "timeout": timeout,
    }
    if parser is None:
        return mhd2.Daemon(cb, **options)
    try:
        return mhd2.Daemon(cb, parser=parser, **options)
    except (TypeError, mhd2.UsageError) as exc:
        if "parser" not in str(exc) and "httptools" not in str(exc):
            raise
        if "unknown" in str(exc) or isinstance(exc, TypeError):
            reason = "this mhd2 has no parser option"
        else:
            reason = f"parser={parser!r} not usable here: {exc}"
        print(f"n/a: {reason}", flush=True)
        sys.exit(EXIT_NOT_APPLICABLE)


async def main(
    host: str, port: int, connection_limit: int, timeout: float, parser: str | None
) -> None:
    daemon = make_daemon(host, port, connection_limit, timeout, parser)
    async with daemon as d:
        used = getattr(d.options, "parser", "h11 (no parser option)")
        print("ready", d.port, os.path.dirname(mhd2.__file__), f"parser={used}", flush=True)
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
    ap.add_argument(
        "--parser",
        default=os.environ.get("MHD2_BENCH_PARSER") or None,
        help="Daemon(parser=...): auto, h11 or httptools (default: the Daemon's default)",
    )
    a = ap.parse_args()
    trio.run(main, a.host, a.port, a.connection_limit, a.timeout, a.parser)
