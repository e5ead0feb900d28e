"""Running a sub-command's daemon: one process, or supervised workers."""

from __future__ import annotations

import argparse
import logging
import os
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
    LISTEN_FD_ENV,
    LISTEN_UNIX_ENV,
    LISTEN_URL_ENV,
    _bind,
    _BindError,
    _Listener,
)
from .logs import configure_logging, load_log_config
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
    #: Reads the TLS files again (``--tls-cert`` ...), for a reload.
    reload_tls: Callable[[], Any] | None = None
    #: ``--metrics`` / ``--metrics-path``: each process gets a registry.
    metrics: bool = False
    metrics_path: str | None = None


#: ``_serve_process``'s result asking :func:`_execute` to re-execute in place.
_REEXEC = -1


def _check_reload(plan: _Plan) -> bool:
    """Before a reload: read the TLS files again; ``False`` (one line logged) if bad.

    The new context replaces the plan's, so that workers forked from now on
    serve the new certificate.
    """
    if plan.reload_tls is None:
        return True
    from ..tls import TLSFileError

    try:
        plan.options["tls"] = plan.reload_tls()
    except TLSFileError as exc:
        print(f"mhd2: SIGHUP: reload refused, still serving with the files read before: "
              f"{exc}", file=sys.stderr, flush=True)
        return False
    return True


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
    if plan.metrics:
        from prometheus_client import CollectorRegistry

        options["metrics"] = plan.options.get("metrics") or CollectorRegistry()
        if plan.metrics_path is not None:
            options["metrics_path"] = plan.metrics_path
    if worker is not None and plan.max_requests is not None:
        limit = max(1, plan.max_requests + random.randint(0, plan.jitter))
        served = 0

        def count(request: Any, code: Any) -> None:
            nonlocal served
            served += 1
            if served >= limit:
                worker.recycle()

        options["notify_request_ended"] = _chain(options.get("notify_request_ended"), count)
    from .._notify import Notifier

    notifier = Notifier.from_environ() if worker is None else None
    requests_served = 0
    if notifier is not None:

        def count_served(request: Any, code: Any) -> None:
            nonlocal requests_served
            requests_served += 1

        options["notify_request_ended"] = _chain(options.get("notify_request_ended"),
                                                 count_served)
    reexec = False
    if worker is None:
        # The daemon closes the socket it was given when it stops; a re-exec
        # (SIGHUP) hands the original on to the new program.
        options["listen_socket"] = listener.sock.dup()
    with stop_signals(hangup=worker is None) as signals, trio.CancelScope() as everything:
        try:
            async with plan.open_app(options) as daemon:
                if worker is None:
                    print(plan.announce(listener.url, 1), file=sys.stderr, flush=True)
                else:
                    worker.ready()

                def status() -> str:
                    return (f"serving on {listener.url}: {daemon.connection_count} "
                            f"connections open, {requests_served} requests served")

                async with trio.open_nursery() as ticking:
                    if notifier is not None:
                        notifier.ready(status())
                        ticking.start_soon(_tick, notifier, status)
                    reexec = await _wait_for_signal(plan, signals, worker, notifier)
                    ticking.cancel_scope.cancel()

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
                    if worker is None and not reexec:
                        await daemon.stop(grace=plan.graceful_timeout)
                    else:
                        await drain_and_stop(daemon, plan.graceful_timeout)
                    nursery.cancel_scope.cancel()
        except DaemonStartError as exc:
            print(f"mhd2: cannot serve on {listener.url}: {exc}", file=sys.stderr)
            return 1
        except LifespanFailed as exc:  # an ASGI app's startup (docs/asgi.rst)
            print(f"mhd2: the application's startup failed: {exc}", file=sys.stderr, flush=True)
            # Under --workers the supervisor stops with this status too.
            return 3 if worker is None else worker.start_failed(3)
        except BaseExceptionGroup as group:  # a Daemon inside the app's own nursery
            match, rest = group.split(DaemonStartError)
            if match is None or rest is not None:
                raise
            print(f"mhd2: cannot serve on {listener.url}: {match.exceptions[0]}",
                  file=sys.stderr)
            return 1
    return _REEXEC if reexec and not everything.cancelled_caught else 0


async def _tick(notifier: Any, status: Callable[[], str]) -> None:
    """``WATCHDOG=1`` every half of ``WATCHDOG_USEC`` (the trio loop is alive), else
    a fresh ``STATUS=`` line every 5 s."""
    interval = notifier.watchdog_interval
    while True:
        await trio.sleep(interval or 5.0)
        if interval is not None:
            notifier.watchdog(status())
        else:
            notifier.status(status())


async def _wait_for_signal(plan: _Plan, signals: Any, worker: Worker | None,
                           notifier: Any) -> bool:
    """Wait for SIGINT/SIGTERM (``False``) or a SIGHUP that re-executes (``True``)."""
    async for signum in signals:
        if signum == signal.SIGHUP:
            # Without workers, a reload is this program run again on the same
            # listening socket: connections wait in its backlog meanwhile, none
            # is refused.
            if not _check_reload(plan):
                continue
            if notifier is not None:
                notifier.reloading("reloading: requests in flight finish, then a re-exec")
            print("mhd2: SIGHUP, reloading: requests in flight finish, then the program "
                  "starts again on the same socket", file=sys.stderr, flush=True)
            return True
        if notifier is not None:
            notifier.stopping("stopping: requests in flight finish")
        if worker is None:
            name = signal.Signals(signum).name
            print(plan.stopping_line.format(signal=name), file=sys.stderr, flush=True)
        return False
    return False


def _reload_dirs(parser: argparse.ArgumentParser, args: argparse.Namespace,
                 workers: int | None) -> list[str] | None:
    """``--reload`` / ``--reload-dir``: the directories to watch, or ``None``.

    ``None`` too in the child the reloader runs (it serves). With ``--workers``
    it is a usage error (exit 2).
    """
    from .._reload import CHILD_ENV

    in_child = os.environ.pop(CHILD_ENV, "") != ""
    if in_child or not (args.reload or args.reload_dir):
        return None
    if workers is not None:
        parser.error("--reload is for development and runs one process: it cannot be "
                     "combined with --workers or --max-requests")
    import importlib.util

    if importlib.util.find_spec("watchfiles") is None:
        parser.error("--reload needs watchfiles: pip install 'mhd2[dev]'")
    for directory in args.reload_dir or ():
        if not os.path.isdir(directory):
            parser.error(f"--reload-dir: not a directory: {directory!r}")
    return list(args.reload_dir or [os.getcwd()])


def _listen_env(listener: _Listener) -> dict[str, str]:
    """The environment that hands *listener* to a program started from here."""
    return {LISTEN_FD_ENV: str(listener.sock.fileno()), LISTEN_URL_ENV: listener.url,
            LISTEN_UNIX_ENV: ""}


def _reexec(listener: _Listener) -> None:
    """Run this program again in this process, on the same listening socket.

    The socket's descriptor is inherited through ``exec`` and named in the
    environment (``_MHD2_LISTEN_FD``), so the new program serves it instead
    of binding; the process id stays the same (what systemd watches).
    """
    fd = listener.sock.fileno()
    os.set_inheritable(fd, True)
    env = dict(os.environ)
    env[LISTEN_FD_ENV] = str(fd)
    env[LISTEN_URL_ENV] = listener.url
    env[LISTEN_UNIX_ENV] = listener.unix_path or ""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


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
    plan.reload_tls = getattr(args, "tls_loader", None)
    if args.log_config is not None:
        load_log_config(args.log_config)
    else:
        configure_logging(args.log_level)
    workers = args.workers
    if workers is None and args.max_requests is not None:
        workers = 1
    reload_dirs = _reload_dirs(parser, args, workers)
    if reload_dirs is not None:
        try:
            listener = _bind(args, scheme)
        except _BindError as exc:
            print(f"mhd2: {exc}", file=sys.stderr)
            return 1
        from .._reload import run_reloader

        print(plan.announce(listener.url, 1).replace("(Ctrl-C", "with --reload (Ctrl-C"),
              file=sys.stderr, flush=True)
        try:
            return run_reloader(listener.sock.fileno(), reload_dirs, plan.graceful_timeout,
                                _listen_env(listener))
        finally:
            listener.close()
    if workers is None and plan.load is not None:
        try:
            plan.load()
        except _LoadError as exc:
            print(f"mhd2: {exc}", file=sys.stderr)
            return exc.status
    metrics_dir = None
    if args.metrics is not None or args.metrics_path is not None:
        metrics_dir = _prepare_metrics(parser, args, plan, workers)
    try:
        listener = _bind(args, scheme)
    except _BindError as exc:
        print(f"mhd2: {exc}", file=sys.stderr)
        return 1
    logging.getLogger("mhd2").debug(
        "HTTP/1 parser: %s%s", resolve_parser(args.parser or "auto"),
        "" if args.parser not in (None, "auto") else " (auto)")
    try:
        if args.metrics is not None:
            _metrics_listener(args.metrics, plan)
        if workers is None:
            status = trio.run(_serve_process, plan, listener, None)
            if status == _REEXEC:
                _reexec(listener)  # does not return
            return status
        return _supervise(plan, listener, workers)
    except KeyboardInterrupt:  # Ctrl-C before a signal receiver was in place
        return 0
    except _BindError as exc:
        print(f"mhd2: {exc}", file=sys.stderr)
        return 1
    finally:
        listener.close()
        if metrics_dir is not None:
            import shutil

            shutil.rmtree(metrics_dir, ignore_errors=True)


def _prepare_metrics(parser: argparse.ArgumentParser, args: argparse.Namespace, plan: _Plan,
                     workers: int | None) -> str | None:
    """``--metrics`` / ``--metrics-path``: check prometheus-client, set up multiprocess mode.

    Returns:
        The multiprocess directory made here (removed at the end), if any.
    """
    import importlib.util

    if importlib.util.find_spec("prometheus_client") is None:
        parser.error("--metrics and --metrics-path need prometheus-client: "
                     "pip install 'mhd2[metrics]'")
    if args.metrics_path is not None and not args.metrics_path.startswith("/"):
        parser.error(f"--metrics-path must start with '/', not {args.metrics_path!r}")
    plan.metrics = True
    plan.metrics_path = args.metrics_path
    made = None
    if workers is not None and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Every worker writes its values to files here; a scrape sums them.
        # Set before prometheus_client is imported (it reads it then).
        import tempfile

        made = tempfile.mkdtemp(prefix="mhd2-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = made
    return made


def _metrics_listener(where: tuple[str, int], plan: _Plan) -> None:
    """``--metrics HOST:PORT``: prometheus-client's HTTP server thread in this process.

    Without workers it serves this process's registry (given to the daemon);
    with workers (here in the supervisor) the sum of every worker's files.
    """
    import prometheus_client

    from ..metrics import multiprocess

    if multiprocess():
        from prometheus_client import multiprocess as mp

        registry = prometheus_client.CollectorRegistry()
        mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = prometheus_client.CollectorRegistry()
        plan.options["metrics"] = registry  # the daemon's metrics go here
    host, port = where
    try:
        prometheus_client.start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise _BindError(f"cannot listen on {host} port {port} for --metrics: "
                         f"{exc.strerror or exc}") from None


def _supervise(plan: _Plan, listener: _Listener, workers: int) -> int:
    from .._notify import Notifier
    from ..supervisor import Supervisor

    def worker_main(sock: socket.socket, worker: Worker) -> int:
        if plan.load is not None:
            try:
                plan.load()
            except _LoadError as exc:
                print(f"mhd2: worker {worker.index}: {exc}", file=sys.stderr, flush=True)
                return worker.start_failed(exc.status)
        return trio.run(_serve_process, plan, listener, worker)

    def ready() -> None:
        print(plan.announce(listener.url, workers), file=sys.stderr, flush=True)

    supervisor = Supervisor(worker_main, listener.sock, workers=workers,
                            graceful_timeout=plan.graceful_timeout, on_ready=ready,
                            on_reload=lambda: _check_reload(plan),
                            notifier=Notifier.from_environ(),
                            on_worker_exit=_mark_dead if plan.metrics else None)
    return supervisor.run()


def _mark_dead(pid: int) -> None:
    """A worker exited: its live gauges leave the multiprocess sum."""
    from ..metrics import multiprocess

    if multiprocess():
        from prometheus_client import multiprocess as mp

        mp.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def _with_workers(workers: int) -> str:
    return f" with {workers} workers" if workers > 1 else ""


