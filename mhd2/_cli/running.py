"""Running a sub-command's daemon: one process, or supervised workers."""

from __future__ import annotations

import argparse
import logging
import random
import signal
import socket
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from ..daemon import Daemon
    from ..supervisor import Worker

from .._http1.backend import httptools_available, resolve_parser
from .binding import (
    _bind,
    _BindError,
    _Listener,
)
from .options import (
    check_forwarded_arguments,
    stop_signals,
)

# ---------------------------------------------------------------------- running


class _LoadError(Exception):
    """The application could not be imported or made (one line on stderr, exit ``status``)."""

    status = 1


#: ``open_app(options)``: an async context manager running a Daemon made
#: with *options* (listen_socket, tls, notify_request_ended ... included).
OpenApp = Callable[[dict[str, Any]], AbstractAsyncContextManager["Daemon"]]


@dataclass
class _Plan:
    """Everything a (worker) process needs to serve."""

    open_app: OpenApp
    options: dict[str, Any]
    announce: Callable[[str, int], str]
    graceful_timeout: float
    max_requests: int | None = None
    jitter: int = 0
    stopping_line: str = "mhd2: {signal}, stopping"
    access_log: bool = False
    load: Callable[[], None] | None = field(default=None)


def _chain(first: Callable[..., Any] | None,
           second: Callable[..., Any] | None) -> Callable[..., Any] | None:
    if first is None or second is None:
        return first or second

    def both(request: Any, code: Any) -> Any:
        first(request, code)
        return second(request, code)

    return both


async def _serve_process(plan: _Plan, listener: _Listener, worker: Worker | None) -> int:
    """Serve until SIGINT/SIGTERM in this process (the only one, or a worker)."""
    from ..asgi import LifespanFailed
    from ..errors import DaemonStartError
    from ..supervisor import drain_and_stop

    options = dict(plan.options)
    options["listen_socket"] = listener.sock
    if worker is not None and plan.max_requests is not None:
        limit = max(1, plan.max_requests + random.randint(0, plan.jitter))
        served = 0

        def count(request: Any, code: Any) -> None:
            nonlocal served
            served += 1
            if served >= limit:
                worker.recycle()

        options["notify_request_ended"] = _chain(options.get("notify_request_ended"), count)
    with stop_signals() as signals, trio.CancelScope() as everything:
        try:
            async with plan.open_app(options) as daemon:
                if worker is None:
                    print(plan.announce(listener.url, 1), file=sys.stderr, flush=True)
                else:
                    worker.ready()
                async for signum in signals:
                    if worker is None:
                        name = signal.Signals(signum).name
                        print(plan.stopping_line.format(signal=name), file=sys.stderr, flush=True)
                    break

                async def second_signal() -> None:
                    # Ctrl-C again: do not wait for the grace period. (Not in a
                    # worker: Ctrl-C reaches it and then the supervisor's SIGTERM;
                    # the supervisor kills its workers on a second signal itself.)
                    if worker is not None:
                        return
                    async for signum in signals:
                        name = signal.Signals(signum).name
                        print(f"mhd2: {name} again, stopping now", file=sys.stderr, flush=True)
                        everything.cancel()
                        return

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(second_signal)
                    if worker is None:
                        await daemon.stop(grace=plan.graceful_timeout)
                    else:
                        await drain_and_stop(daemon, plan.graceful_timeout)
                    nursery.cancel_scope.cancel()
        except DaemonStartError as exc:
            print(f"mhd2: cannot serve on {listener.url}: {exc}", file=sys.stderr)
            return 1
        except LifespanFailed as exc:  # an ASGI app's startup (API.md §11.2)
            print(f"mhd2: the application's startup failed: {exc}", file=sys.stderr, flush=True)
            return 3
        except BaseExceptionGroup as group:  # a Daemon inside the app's own nursery
            match, rest = group.split(DaemonStartError)
            if match is None or rest is not None:
                raise
            print(f"mhd2: cannot serve on {listener.url}: {match.exceptions[0]}",
                  file=sys.stderr)
            return 1
    return 0


def _execute(parser: argparse.ArgumentParser, args: argparse.Namespace, plan: _Plan,
             scheme: str) -> int:
    """Bind, then serve in this process or under a supervisor; the exit status."""
    if args.parser == "httptools" and not httptools_available():
        parser.error('--parser httptools needs httptools: pip install "mhd2[speedups]"')
    if args.fd is not None and (args.uds is not None or args.host or args.port is not None):
        parser.error("--fd excludes --uds, --host and --port")
    if args.uds is not None and (args.host or args.port is not None):
        parser.error("--uds excludes --host and --port")
    check_forwarded_arguments(parser, args)
    _configure_logging(args.log_level)
    workers = args.workers
    if workers is None and args.max_requests is not None:
        workers = 1
    if workers is None and plan.load is not None:
        try:
            plan.load()
        except _LoadError as exc:
            print(f"mhd2: {exc}", file=sys.stderr)
            return exc.status
    try:
        listener = _bind(args, scheme)
    except _BindError as exc:
        print(f"mhd2: {exc}", file=sys.stderr)
        return 1
    logging.getLogger("mhd2").debug(
        "HTTP/1 parser: %s%s", resolve_parser(args.parser or "auto"),
        "" if args.parser not in (None, "auto") else " (auto)")
    try:
        if workers is None:
            return trio.run(_serve_process, plan, listener, None)
        return _supervise(plan, listener, workers)
    except KeyboardInterrupt:  # Ctrl-C before a signal receiver was in place
        return 0
    finally:
        listener.close()


def _configure_logging(level: str) -> None:
    """``--log-level``: the ``mhd2`` logger writes to stderr from *level* up.

    Only mhd2's own logger is configured; the application's logging stays as
    the application sets it up.
    """
    logger = logging.getLogger("mhd2")
    logger.setLevel(level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


def _supervise(plan: _Plan, listener: _Listener, workers: int) -> int:
    from ..supervisor import WORKER_BOOT_ERROR, Supervisor

    def worker_main(sock: socket.socket, worker: Worker) -> int:
        if plan.load is not None:
            try:
                plan.load()
            except _LoadError as exc:
                print(f"mhd2: worker {worker.index}: {exc}", file=sys.stderr, flush=True)
                return WORKER_BOOT_ERROR
        return trio.run(_serve_process, plan, listener, worker)

    def ready() -> None:
        print(plan.announce(listener.url, workers), file=sys.stderr, flush=True)

    supervisor = Supervisor(worker_main, listener.sock, workers=workers,
                            graceful_timeout=plan.graceful_timeout, on_ready=ready)
    return supervisor.run()


def _with_workers(workers: int) -> str:
    return f" with {workers} workers" if workers > 1 else ""


