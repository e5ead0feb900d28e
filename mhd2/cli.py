"""``python -m mhd2``: command-line entry points.

Three sub-commands share one set of options (:func:`add_shared_arguments`):

``python -m mhd2 run MODULE:ATTR [--factory]``
    serves an application the way ``uvicorn module:app`` does: *ATTR* is a
    request callback, or with ``--factory`` a zero-argument callable that
    returns a request callback or a configured :class:`mhd2.Daemon` (its
    options are kept; the command line's binding replaces its host/port, and
    options given on the command line win). Startup line on stderr:
    ``mhd2: running MODULE:ATTR on http://127.0.0.1:8000/ (Ctrl-C to stop)``.
``python -m mhd2 serve [DIR] [--index NAME]... [--no-listing] [--dotfiles allow|deny] [--cache-control VALUE]``
    serves *DIR* (default: the current directory) with
    :class:`mhd2.static.StaticFiles`; startup line ``mhd2: serving /abs/dir on
    http://127.0.0.1:8080/ (Ctrl-C to stop)``.
``python -m mhd2 demo``
    runs the long-polling chat demo (:mod:`mhd2.demo`); startup line ``mhd2
    demo: chat on http://127.0.0.1:8888/ (Ctrl-C to stop)``.

The real port is in the startup line (``--port 0`` picks a free one). The
command line binds the listening socket itself (``--host``/``--port``, a Unix
socket with ``--uds``, or an inherited one with ``--fd``, e.g. from systemd)
and hands it to the daemon. ``--workers N`` (and ``--max-requests``) run a
:class:`mhd2.supervisor.Supervisor`: one process binds, *N* forked workers
serve, a dead one is restarted, SIGHUP replaces them one at a time.

Exit status: 0 after SIGINT (Ctrl-C) or SIGTERM, which stop gracefully within
``--graceful-timeout``; 1 when the socket cannot be bound or the application
cannot be loaded (one line on stderr); 2 for a bad command line, including an
option this mhd2's engine does not support yet.

Subcommands are registered in :data:`SUBCOMMANDS`: each has a function that
adds its own arguments to a sub-parser and a runner ``run(parser, args) ->
int`` that starts trio itself and returns the exit status.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import logging
import os
import random
import signal
import socket
import ssl
import stat
import sys
import traceback
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import trio

if TYPE_CHECKING:
    from .daemon import Daemon
    from .supervisor import Worker

__all__ = [
    "SUBCOMMANDS",
    "Subcommand",
    "add_shared_arguments",
    "address_of",
    "build_parser",
    "main",
    "url_for",
]

#: Where the default host is when ``--host`` is not given.
DEFAULT_HOST = "127.0.0.1"


class Subcommand(NamedTuple):
    """A ``python -m mhd2`` subcommand.

    ``run(parser, args)`` gets its own sub-parser (for ``parser.error``) and
    the parsed arguments, starts trio itself (``trio.run``) and returns the
    exit status. ``port`` is its default port.
    """

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.ArgumentParser, argparse.Namespace], int]
    port: int = 8000


def url_for(host: str, port: int) -> str:
    """``http://host:port/`` with IPv6 literals in brackets."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range (0-65535): {value}")
    return value


def add_address_arguments(parser: argparse.ArgumentParser, *, port: int) -> None:
    """``--host/-b`` and ``--port/-p`` (``--port 0`` picks a free port)."""
    parser.add_argument(
        "--host", "-b", metavar="HOST",
        help=f"address to listen on (default: {DEFAULT_HOST})",
    )
    parser.add_argument(
        "--port", "-p", type=_port, metavar="PORT",
        help=f"port to listen on, 0 for any free port (default: {port})",
    )
    parser.set_defaults(default_port=port)


def address_of(args: argparse.Namespace) -> tuple[str, int]:
    """The ``(host, port)`` to listen on: the command line's, else the defaults."""
    host = args.host or DEFAULT_HOST
    port = args.port if args.port is not None else args.default_port
    return host, int(port)


def stop_signals() -> AbstractContextManager[Any]:
    """A trio signal receiver for SIGINT and SIGTERM (where they exist)."""
    wanted = [signal.SIGINT]
    if hasattr(signal, "SIGTERM"):
        wanted.append(signal.SIGTERM)
    return trio.open_signal_receiver(*wanted)


# ---------------------------------------------------------------------- shared options


def _positive_int(what: str) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {what}: {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{what} must be >= 0: {value}")
        return value

    return convert


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds: {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"seconds must be > 0: {text}")
    return value


def _trusted(text: str) -> tuple[str, ...]:
    from ._proxy.forwarded import TrustedProxies
    from .errors import UsageError

    try:
        return TrustedProxies(text).entries
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def _has(parser: argparse.ArgumentParser, option: str) -> bool:
    return option in parser._option_string_actions


def add_shared_arguments(parser: argparse.ArgumentParser, *, port: int) -> None:
    """The options ``run``, ``serve`` and ``demo`` share (API.md section 10.5).

    Options the sub-command already defined itself are left as they are.
    """

    def add(*names: str, **kwargs: Any) -> None:
        if not any(_has(parser, name) for name in names):
            parser.add_argument(*names, **kwargs)

    if not _has(parser, "--host"):
        add_address_arguments(parser, port=port)
    where = parser.add_argument_group("where to listen (one of)")
    where.add_argument("--uds", metavar="PATH", help="listen on this Unix-domain socket")
    where.add_argument("--fd", type=_positive_int("file descriptor"), metavar="N",
                       help="serve on the listening socket inherited as file descriptor N "
                            "(systemd socket activation: --fd 3)")
    add("--workers", type=_workers, metavar="N",
        help="supervised worker processes sharing the socket (default: one process)")
    add("--tls-cert", metavar="FILE", help="PEM certificate (chain): serve HTTPS")
    add("--tls-key", metavar="FILE", help="PEM private key for --tls-cert")
    add("--tls-key-password", metavar="PASSWORD", help="password of an encrypted --tls-key")
    add("--tls-client-ca", metavar="FILE",
        help="PEM CA certificate(s): require client certificates signed by them")
    add("--proxy-protocol", action="store_true",
        help="every connection starts with a PROXY protocol header (HAProxy send-proxy / "
             "send-proxy-v2) from a trusted peer")
    add("--forwarded-allow-ips", type=_trusted, metavar="LIST",
        help="comma-separated trusted proxies (addresses, networks, 'unix', '*'); "
             "believe Forwarded / X-Forwarded-For / X-Forwarded-Proto from them")
    add("--timeout", type=_seconds, metavar="SECONDS",
        help="idle and trickle limit of a connection (default: 60)")
    add("--keep-alive-timeout", type=_seconds, metavar="SECONDS",
        help="how long a kept-alive connection waits for its next request "
             "(default: --timeout)")
    add("--graceful-timeout", type=_seconds, default=30.0, metavar="SECONDS",
        help="on SIGINT/SIGTERM (and when a worker is replaced), how long requests in "
             "flight may take to finish (default: %(default)s)")
    add("--max-requests", type=_positive_int("number of requests"), metavar="N",
        help="recycle a worker after about N requests (implies --workers 1)")
    add("--max-requests-jitter", type=_positive_int("jitter"), default=0, metavar="N",
        help="add 0..N to --max-requests per worker, so workers do not recycle together")
    add("--log-level", choices=_LOG_LEVELS, default="info", type=str.lower,
        help="level of the 'mhd2' logger on stderr (default: %(default)s)")
    add("--access-log", action=argparse.BooleanOptionalAction, default=None,
        help="one line per request on stderr (default: on, off for demo)")
    add("--parser", choices=("auto", "h11", "httptools"),
        help="HTTP/1.1 parser backend (default: auto)")
    add("--no-http2", action="store_true", help="do not offer HTTP/2")
    add("--version", action="version", version=_version())
    parser.set_defaults(workers=None)


def _version() -> str:
    from . import __version__

    return f"mhd2 {__version__}"


#: Command-line flag -> the Daemon options it needs from the engine.
ENGINE_OPTIONS: dict[str, tuple[str, ...]] = {
    "uds": ("unix_path",),
    "proxy_protocol": ("proxy_protocol", "trusted_proxies"),
    "forwarded_allow_ips": ("trusted_proxies", "forwarded_headers"),
    "keep_alive_timeout": ("keep_alive_timeout",),
    "parser": ("parser",),
    "no_http2": ("http2",),
}


def _unsupported(args: argparse.Namespace) -> str | None:
    """The first option given that the Daemon cannot take yet, as an error message."""
    from .options import DaemonOptions

    known = DaemonOptions.__dataclass_fields__
    for dest, needed in ENGINE_OPTIONS.items():
        if getattr(args, dest, None) in (None, False):
            continue
        missing = [name for name in needed if name not in known]
        if missing:
            flag = "--" + dest.replace("_", "-")
            return (f"{flag} is not supported by this mhd2 yet "
                    f"(its Daemon has no {', '.join(missing)} option)")
    return None


def _engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """Daemon options from the command line (only those given)."""
    options: dict[str, Any] = {}
    if args.timeout is not None:
        options["timeout"] = args.timeout
    if args.keep_alive_timeout is not None:
        options["keep_alive_timeout"] = args.keep_alive_timeout
    if args.proxy_protocol:
        options["proxy_protocol"] = True
    if args.forwarded_allow_ips is not None:
        options["trusted_proxies"] = args.forwarded_allow_ips
        options["forwarded_headers"] = True
    if args.parser is not None:
        options["parser"] = args.parser
    if args.no_http2:
        options["http2"] = False
    return options


def _tls_context(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> ssl.SSLContext | None:
    extras = args.tls_key_password is not None or args.tls_client_ca is not None
    if args.tls_cert is None and args.tls_key is None:
        if extras:
            parser.error("--tls-key-password and --tls-client-ca need --tls-cert and --tls-key")
        return None
    if args.tls_cert is None or args.tls_key is None:
        parser.error("--tls-cert and --tls-key go together")
    from .tls import server_context

    try:
        with open(args.tls_cert, "rb") as f:
            cert = f.read()
        with open(args.tls_key, "rb") as f:
            key = f.read()
        client_ca = None
        if args.tls_client_ca is not None:
            with open(args.tls_client_ca, "rb") as f:
                client_ca = f.read()
        return server_context(cert, key, password=args.tls_key_password,
                              client_ca_pem=client_ca)
    except (OSError, ValueError, ssl.SSLError) as exc:
        parser.error(f"cannot use the TLS certificate/key: {exc}")


# ---------------------------------------------------------------------- binding


class _BindError(Exception):
    pass


class _Unsupported(Exception):
    pass


@dataclass
class _Listener:
    sock: socket.socket
    url: str
    unix_path: str | None = None

    def close(self) -> None:
        self.sock.close()
        if self.unix_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.unix_path)


def _bind(args: argparse.Namespace, scheme: str) -> _Listener:
    """Bind the listening socket the command line asks for.

    Raises:
        _BindError: with the one-line message to print (exit status 1).
    """
    if args.fd is not None:
        try:
            sock = socket.socket(fileno=args.fd)
        except OSError as exc:
            raise _BindError(f"--fd {args.fd} is not an open socket: {exc.strerror}") from None
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            sock.detach()
            raise _BindError(f"--fd {args.fd} is not a listening socket")
        name = sock.getsockname()
        if sock.family == socket.AF_UNIX:
            from .options import DaemonOptions

            if "unix_path" not in DaemonOptions.__dataclass_fields__:
                sock.detach()
                raise _Unsupported(f"--fd {args.fd} is a Unix-domain socket: "
                                   "not supported by this mhd2 yet")
            url = f"unix:{name}"
        else:
            url = url_for(str(name[0]), int(name[1]))
        return _Listener(sock, _scheme(url, scheme))
    if args.uds is not None:
        return _bind_unix(args.uds, scheme)
    host, port = address_of(args)
    try:
        infos = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM,
                                   0, socket.AI_PASSIVE)
        family, type_, proto, _, address = infos[0]
        sock = socket.socket(family, type_, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(1024)
        except BaseException:
            sock.close()
            raise
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise _BindError(f"cannot listen on {host} port {port}: {reason}") from None
    return _Listener(sock, _scheme(url_for(host, int(sock.getsockname()[1])), scheme))


def _bind_unix(path: str, scheme: str) -> _Listener:
    path = os.path.abspath(path)
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            probe = socket.socket(socket.AF_UNIX)
            try:
                probe.connect(path)
            except OSError as exc:  # nobody listens: a stale file from an earlier run
                if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                    raise
                os.unlink(path)
            else:
                raise _BindError(f"cannot listen on {path}: another process listens there")
            finally:
                probe.close()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _BindError(f"cannot listen on {path}: {exc.strerror or exc}") from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o660)
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise _BindError(f"cannot listen on {path}: {exc.strerror or exc}") from None
    return _Listener(sock, f"unix:{path}", unix_path=path)


def _scheme(url: str, scheme: str) -> str:
    if scheme == "https" and url.startswith("http://"):
        return "https://" + url[len("http://"):]
    return url


# ---------------------------------------------------------------------- running


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
    from .errors import DaemonStartError
    from .supervisor import drain_and_stop

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
    problem = _unsupported(args)
    if problem is not None:
        parser.error(problem)
    if args.fd is not None and (args.uds is not None or args.host or args.port is not None):
        parser.error("--fd excludes --uds, --host and --port")
    if args.uds is not None and (args.host or args.port is not None):
        parser.error("--uds excludes --host and --port")
    _configure_logging(args.log_level)
    workers = args.workers
    if workers is None and args.max_requests is not None:
        workers = 1
    if workers is None and plan.load is not None:
        try:
            plan.load()
        except _LoadError as exc:
            print(f"mhd2: {exc}", file=sys.stderr)
            return 1
    try:
        listener = _bind(args, scheme)
    except _Unsupported as exc:
        parser.error(str(exc))
    except _BindError as exc:
        print(f"mhd2: {exc}", file=sys.stderr)
        return 1
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
    from .supervisor import WORKER_BOOT_ERROR, Supervisor

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


# ---------------------------------------------------------------------- run


class _LoadError(Exception):
    pass


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("app", metavar="MODULE:ATTR",
                        help="the request callback (or with --factory, a factory) to serve")
    parser.add_argument("--factory", action="store_true",
                        help="ATTR is a zero-argument callable returning a request callback "
                             "or a configured mhd2.Daemon")
    add_address_arguments(parser, port=8000)


def _import_app(spec: str) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise _LoadError(f"cannot load {spec!r}: write it as MODULE:ATTR, e.g. app:handle")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise _LoadError(f"cannot load {spec!r}: no module named {exc.name!r}") from None
        traceback.print_exc()
        raise _LoadError(f"cannot load {spec!r}: importing {module_name!r} failed") from None
    except Exception:
        traceback.print_exc()
        raise _LoadError(f"cannot load {spec!r}: importing {module_name!r} failed") from None
    value: Any = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise _LoadError(f"cannot load {spec!r}: {module_name!r} has no {attr!r}") from None
    return value


#: Daemon options the command line's binding replaces.
_BINDING = ("host", "port", "family", "listen_socket", "reuse_port", "backlog",
            "unix_path", "unix_mode")


def _rebuild(daemon: Daemon) -> tuple[Callable[..., Any], dict[str, Any]]:
    """A configured Daemon's request callback and non-binding options."""
    from .options import DaemonOptions

    callback = getattr(daemon, "request_cb", None) or daemon.request_cb
    defaults = DaemonOptions()
    options = {
        name: getattr(daemon.options, name)
        for name in DaemonOptions.__dataclass_fields__
        if name not in _BINDING and getattr(daemon.options, name) != getattr(defaults, name)
    }
    return callback, options


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from . import Daemon

    tls = _tls_context(parser, args)
    state: dict[str, Any] = {}

    def load() -> None:
        value = _import_app(args.app)
        if args.factory:
            if not callable(value):
                raise _LoadError(f"cannot load {args.app!r}: --factory needs a callable")
            try:
                value = value()
            except Exception:
                traceback.print_exc()
                raise _LoadError(f"the factory {args.app!r} failed") from None
        if isinstance(value, Daemon):
            state["callback"], state["options"] = _rebuild(value)
        elif callable(value):
            state["callback"], state["options"] = value, {}
        else:
            hint = " (or pass --factory)" if not args.factory else ""
            raise _LoadError(f"{args.app!r} is not a request callback{hint}: "
                             f"{type(value).__name__}")

    @asynccontextmanager
    async def open_app(options: dict[str, Any]) -> AsyncIterator[Daemon]:
        merged = {**state["options"], **options}
        merged["notify_request_ended"] = _chain(state["options"].get("notify_request_ended"),
                                                options.get("notify_request_ended"))
        if merged["notify_request_ended"] is None:
            del merged["notify_request_ended"]
        async with Daemon(state["callback"], **merged) as daemon:
            yield daemon

    options = _engine_options(args)
    if tls is not None:
        options["tls"] = tls
    if args.access_log is not False:
        from ._accesslog import AccessLog

        options["notify_request_ended"] = AccessLog(sys.stderr)
    plan = _Plan(
        open_app, options,
        lambda url, n: f"mhd2: running {args.app} on {url}{_with_workers(n)} (Ctrl-C to stop)",
        args.graceful_timeout, args.max_requests, args.max_requests_jitter, load=load)
    return _execute(parser, args, plan, "https" if tls else "http")


# ---------------------------------------------------------------------- serve


def _directory(text: str) -> str:
    return text  # checked after parsing, so that an unknown option is reported first


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of workers: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("at least one worker is needed")
    return value


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "directory",
        type=_directory,
        nargs="?",
        default=".",
        metavar="DIR",
        help="directory to serve (default: the current directory)",
    )
    parser.add_argument(
        "--index",
        action="append",
        type=_index_name,
        metavar="NAME",
        help="file served for a directory; repeat for several, first match wins "
        "(default: index.html)",
    )
    parser.add_argument(
        "--no-listing",
        dest="listing",
        action="store_false",
        help="no generated listing for a directory without an index file (404 instead)",
    )
    parser.add_argument(
        "--dotfiles",
        choices=("allow", "deny"),
        default="deny",
        help="serve and list names starting with '.' (default: %(default)s: 404, not listed)",
    )
    parser.add_argument(
        "--cache-control",
        type=_cache_control,
        default="no-cache",
        metavar="VALUE",
        help="Cache-Control header for files, e.g. 'public, max-age=3600', '' for none "
        "(default: %(default)s: caches revalidate every time)",
    )


def _index_name(text: str) -> str:
    if not text or "/" in text or text in (".", ".."):
        raise argparse.ArgumentTypeError(f"an index is a plain file name, not {text!r}")
    return text


def _cache_control(text: str) -> str:
    if text == "":
        return text  # no header
    if not text.strip() or not all(c == "\t" or " " <= c <= "~" for c in text):
        raise argparse.ArgumentTypeError(f"not a printable ASCII header value: {text!r}")
    return text


def _static_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`~mhd2.static.StaticFiles` options given by ``_serve_arguments``."""
    return {
        "index": args.index if args.index is not None else "index.html",
        "listing": args.listing,
        "dotfiles": args.dotfiles,
        "cache_control": args.cache_control or None,
    }


def _serve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from . import Daemon
    from .static import StaticFiles

    if not os.path.isdir(args.directory):
        parser.error(f"argument DIR: not a directory: {args.directory!r}")
    tls = _tls_context(parser, args)
    root = os.path.realpath(args.directory)

    @asynccontextmanager
    async def open_app(options: dict[str, Any]) -> AsyncIterator[Daemon]:
        files = StaticFiles(args.directory,
                            access_log=sys.stderr if args.access_log is not False else None,
                            **_static_options(args))
        options = dict(options)
        options["notify_request_ended"] = _chain(files.request_ended,
                                                 options.get("notify_request_ended"))
        async with Daemon(files.handle, **options) as daemon:
            yield daemon

    options = _engine_options(args)
    if tls is not None:
        options["tls"] = tls
    plan = _Plan(
        open_app, options,
        lambda url, n: f"mhd2: serving {root} on {url}{_with_workers(n)} (Ctrl-C to stop)",
        args.graceful_timeout, args.max_requests, args.max_requests_jitter)
    return _execute(parser, args, plan, "https" if tls else "http")


# ---------------------------------------------------------------------- demo


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    add_address_arguments(parser, port=8888)
    parser.add_argument(
        "--redis", metavar="URL",
        help="keep the room in this Redis (redis://HOST:PORT/DB, Redis 7+), so that every "
             "demo process using it serves one room (needs mhd2[redis])")


def _demo(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from . import demo

    tls = _tls_context(parser, args)
    if args.redis is not None:
        from . import demo_redis

        try:  # one line and exit status 1 when Redis cannot be used, like a busy port
            trio.run(demo_redis.check_redis, args.redis)
        except demo_redis.RedisUnavailable as exc:
            print(f"mhd2 demo: {exc}", file=sys.stderr)
            return 1

    @asynccontextmanager
    async def open_app(options: dict[str, Any]) -> AsyncIterator[Daemon]:
        room = None
        if args.redis is not None:
            from .demo_redis import RedisChatRoom

            room = RedisChatRoom(args.redis)
        async with demo.chat_server(room, **options) as (daemon, _):
            yield daemon

    options = _engine_options(args)
    if tls is not None:
        options["tls"] = tls
    if args.access_log:
        from ._accesslog import AccessLog

        options["notify_request_ended"] = AccessLog(sys.stderr)
    plan = _Plan(
        open_app, options,
        lambda url, n: f"mhd2 demo: chat on {url}{_with_workers(n)} (Ctrl-C to stop)",
        args.graceful_timeout, args.max_requests, args.max_requests_jitter,
        stopping_line="mhd2 demo: stopping")
    return _execute(parser, args, plan, "https" if tls else "http")


SUBCOMMANDS: dict[str, Subcommand] = {
    "run": Subcommand("serve an application: a request callback given as MODULE:ATTR",
                      _run_arguments, _run, 8000),
    "serve": Subcommand("serve the files of a directory over HTTP", _serve_arguments, _serve,
                        8080),
    "demo": Subcommand(
        "the chat demo: one room reached by long polling (GET /poll), server-sent events"
        " (GET /events) and a WebSocket (GET /ws); the page links the three",
        _demo_arguments,
        _demo,
        8888,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m mhd2`` parser: one sub-parser per :data:`SUBCOMMANDS` entry."""
    parser = argparse.ArgumentParser(
        prog="python -m mhd2", description="mhd2: libmicrohttpd 2's action API on trio"
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=command.help, description=command.help)
        sub_parser.set_defaults(subparser=sub_parser)
        command.add_arguments(sub_parser)
        add_shared_arguments(sub_parser, port=command.port)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command = SUBCOMMANDS[args.command]
    try:
        return command.run(args.subparser, args)
    except KeyboardInterrupt:  # Ctrl-C before the signal handler was installed
        return 0
