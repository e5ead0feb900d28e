"""The part every example shares: ``--host``/``--port``, start the daemon, print
the address, and run until Enter (end of file) on stdin, SIGINT or SIGTERM —
the tutorial programs' ``(void) getchar (); MHD_stop_daemon (daemon);``.

The startup line, on stdout, is ``NAME: listening on http[s]://HOST:PORT/ ...``
with the real port, so ``--port 0`` works.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import trio

import mhd2

PORT = 8888  # the tutorial's port


def parse_args(
    description: str,
    *,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
    argv: Sequence[str] | None = None,
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1", help="default: %(default)s")
    parser.add_argument(
        "--port", type=int, default=PORT, help="default: %(default)s; 0 picks a free port"
    )
    if extra is not None:
        extra(parser)
    return parser.parse_args(argv)


def _read_line() -> None:
    """Block until a newline or end of file on stdin (fd 0, unbuffered).

    ``os.read`` rather than ``sys.stdin.readline``: this runs in a thread that
    may be abandoned, and a thread blocked inside the buffered stdin object
    would upset the interpreter's shutdown.
    """
    try:
        while True:
            data = os.read(0, 4096)
            if not data or b"\n" in data:
                return
    except OSError:  # no usable stdin: only a signal stops the example
        threading.Event().wait()


async def _until_stopped(signals: Any) -> None:
    async with trio.open_nursery() as nursery:

        async def on_enter() -> None:
            await trio.to_thread.run_sync(_read_line, abandon_on_cancel=True)
            nursery.cancel_scope.cancel()

        async def on_signal() -> None:
            async for _ in signals:
                nursery.cancel_scope.cancel()

        nursery.start_soon(on_enter)
        nursery.start_soon(on_signal)


async def serve(
    name: str, callback: Callable[..., Any], host: str, port: int, **options: Any
) -> int:
    """Run a daemon with *callback* until Enter, SIGINT or SIGTERM; the exit status."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            async with mhd2.Daemon(callback, host=host, port=port, **options) as daemon:
                scheme = "https" if options.get("tls") is not None else "http"
                print(
                    f"{name}: listening on {scheme}://{host}:{daemon.port}/"
                    " (press Enter or Ctrl-C to stop)",
                    flush=True,
                )
                await _until_stopped(signals)
        except mhd2.DaemonStartError as exc:
            print(f"{name}: cannot start the daemon: {exc}", file=sys.stderr)
            return 1
    return 0


def run(name: str, callback: Callable[..., Any], args: argparse.Namespace, **options: Any) -> int:
    return trio.run(lambda: serve(name, callback, args.host, args.port, **options))
