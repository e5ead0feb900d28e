"""The part every example shares: ``--host``/``--port``, start the daemon, print
the address, and run until SIGINT (Ctrl-C), SIGTERM or Enter — the tutorial
programs' ``(void) getchar (); MHD_stop_daemon (daemon);``.

Enter counts only where it can be typed without harm: stdin is read when it
is the terminal and this process is in the terminal's foreground (a program
started with ``&`` is not, and reading would stop it with "Stopped (tty
input)"), or when it is a pipe (a script or a test can send a line).  A
``/dev/null`` or a file as stdin (``nohup``, a non-interactive shell's ``&``)
is not read: only a signal stops the example then.

The startup line, on stdout, is ``NAME: listening on http[s]://HOST:PORT/ ...``
with the real port, so ``--port 0`` works.
"""

from __future__ import annotations

import argparse
import os
import signal
import stat
import sys
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


def stdin_mode() -> str:
    """How Enter on stdin is watched: ``"tty"``, ``"pipe"`` or ``"none"``.

    ``"tty"``: stdin is the controlling terminal and this process group is in
    its foreground.  ``"pipe"``: stdin is a pipe or socket.  ``"none"``:
    anything else (``/dev/null``, a file, a terminal we are in the background
    of) -- reading it would end the example at once (end of file) or stop it
    (SIGTTIN).
    """
    try:
        mode = os.fstat(0).st_mode
    except OSError:
        return "none"
    if os.isatty(0):
        try:
            return "tty" if os.tcgetpgrp(0) == os.getpgrp() else "none"
        except OSError:  # a terminal that is not ours
            return "none"
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return "pipe"
    return "none"


def _read_line() -> bool:
    """Block until a newline or end of file on stdin (fd 0, unbuffered).

    Returns ``True`` for Enter (or end of file on a pipe), ``False`` when
    stdin cannot be read (e.g. the terminal's foreground moved to another job
    after ``Ctrl-Z``/``bg``: with SIGTTIN ignored, the read fails with EIO
    instead of stopping the process).

    ``os.read`` rather than ``sys.stdin.readline``: this runs in a thread that
    may be abandoned, and a thread blocked inside the buffered stdin object
    would upset the interpreter's shutdown.
    """
    try:
        while True:
            data = os.read(0, 4096)
            if not data or b"\n" in data:
                return True
    except OSError:
        return False


async def _until_stopped(signals: Any) -> None:
    async with trio.open_nursery() as nursery:

        async def on_enter() -> None:
            if stdin_mode() == "none":
                return
            if await trio.to_thread.run_sync(_read_line, abandon_on_cancel=True):
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
    if hasattr(signal, "SIGTTIN"):
        # A read from the terminal after the job went to the background fails
        # (EIO) instead of stopping the whole process.
        signal.signal(signal.SIGTTIN, signal.SIG_IGN)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            async with mhd2.Daemon(callback, host=host, port=port, **options) as daemon:
                scheme = "https" if options.get("tls") is not None else "http"
                print(
                    f"{name}: listening on {scheme}://{host}:{daemon.port}/"
                    f" ({_how_to_stop()})",
                    flush=True,
                )
                await _until_stopped(signals)
        except mhd2.DaemonStartError as exc:
            print(f"{name}: cannot start the daemon: {exc}", file=sys.stderr)
            return 1
    return 0


def _how_to_stop() -> str:
    return "press Enter or Ctrl-C to stop" if stdin_mode() == "tty" else "Ctrl-C or SIGTERM stops it"


def run(name: str, callback: Callable[..., Any], args: argparse.Namespace, **options: Any) -> int:
    return trio.run(lambda: serve(name, callback, args.host, args.port, **options))
