"""``python -m mhd2``: command-line entry points.

Three sub-commands share one set of options (:func:`add_shared_arguments`):

``python -m mhd2 run MODULE:ATTR [--factory] [--interface auto|asgi|mhd2]``
    serves an application the way ``uvicorn module:app`` does: *ATTR* is a
    request callback or an ASGI 3 app (served through :mod:`mhd2.asgi`;
    ``--interface`` says which when it cannot be told), or with ``--factory`` a zero-argument callable that
    returns a request callback or a configured :class:`mhd2.Daemon` (its
    options are kept; the command line's binding replaces its host/port, and
    options given on the command line win) -- or an async context manager
    yielding one of those, entered in each process's (each worker's) own trio
    run before its daemon serves and left after it stopped: the place to start
    what the application needs per process, e.g. a :class:`mhd2.fanout.Hub`
    (docs/deploying.rst, "Per-worker startup"). Startup line on stderr:
    ``mhd2: running MODULE:ATTR on http://127.0.0.1:8000/ (Ctrl-C to stop)``.
``python -m mhd2 serve [DIR] [--index NAME]... [--no-listing] [--dotfiles allow|deny] [--cache-control VALUE] [--listing-page-size N]``
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
option this mhd2's engine does not support yet, and for a ``run`` target that
is neither an ASGI app nor a request callback; 3 when an ASGI app's lifespan
startup fails (with the app's message).

Subcommands are registered in :data:`SUBCOMMANDS`: each has a function that
adds its own arguments to a sub-parser and a runner ``run(parser, args) ->
int`` that starts trio itself and returns the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
import traceback
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .daemon import Daemon

from ._cli.demo_command import demo_arguments, run_demo
from ._cli.environ import add_environment_help, environment_arguments
from ._cli.options import (
    Subcommand,
    _tls_context,
    _version,
    add_address_arguments,
    add_interface_arguments,
    add_shared_arguments,
    address_of,
    daemon_options,
    url_for,
)
from ._cli.running import (
    _chain,
    _execute,
    _LoadError,
    _Plan,
    _with_workers,
)
from ._cli.serve_files import serve_arguments, serve_files

__all__ = [
    "SUBCOMMANDS",
    "Subcommand",
    "add_shared_arguments",
    "address_of",
    "build_parser",
    "main",
    "url_for",
]

# ---------------------------------------------------------------------- run




def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("app", metavar="MODULE:ATTR",
                        help="the request callback or ASGI app (or with --factory, a "
                             "factory) to serve")
    add_interface_arguments(parser)
    parser.add_argument("--factory", action="store_true",
                        help="ATTR is a zero-argument callable returning a request callback, "
                             "a configured mhd2.Daemon, or an async context manager yielding "
                             "one of those (entered in each worker around its daemon)")
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


def _choose_interface(spec: str, value: Any, interface: str) -> bool:
    """Whether ``run`` serves *value* as an ASGI app (``--interface``).

    Raises:
        _LoadError: (exit status 2) ``auto`` and *value* is neither an ASGI 3
            app nor a request callback.
    """
    from .asgi import is_asgi_app

    if interface != "auto":
        return interface == "asgi"
    if is_asgi_app(value):
        return True
    if _takes_one(value):
        return False
    error = _LoadError(
        f"{spec!r} is neither an ASGI 3 app (async def app(scope, receive, send), or an "
        f"object with such a __call__) nor an mhd2 request callback (def cb(request)); "
        f"pass --interface asgi or --interface mhd2 to say which it is")
    error.status = 2
    raise error


def _takes_one(fn: Any) -> bool:
    """Whether *fn* can be called with one positional argument (a request callback)."""
    try:
        inspect.signature(fn).bind(None)
    except TypeError:
        return False
    except ValueError:
        return True  # no signature (a builtin): let it be tried
    return True


def _is_async_context_manager(value: Any) -> bool:
    """Whether a factory's result is an async context manager (``__aenter__``/``__aexit__``)."""
    return callable(getattr(value, "__aenter__", None)) and callable(
        getattr(value, "__aexit__", None))


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
            if _is_async_context_manager(value):
                # Entered in this process's trio run, around the daemon (open_app).
                state["lifespan"] = value
                return
        adopt(value)

    def adopt(value: Any) -> None:
        if isinstance(value, Daemon):
            state["callback"], state["options"] = _rebuild(value)
            app = getattr(value, "app", None)  # an mhd2.asgi.Daemon: serve its app
            if app is not None and args.interface != "mhd2":
                state["callback"], state["asgi"] = app, True
        elif callable(value):
            state["callback"], state["options"] = value, {}
            state["asgi"] = _choose_interface(args.app, value, args.interface)
        else:
            hint = " (or pass --factory)" if not args.factory else ""
            raise _LoadError(f"{args.app!r} is not a request callback{hint}: "
                             f"{type(value).__name__}")

    @asynccontextmanager
    async def open_app(options: dict[str, Any]) -> AsyncIterator[Daemon]:
        lifespan = state.pop("lifespan", None)
        if lifespan is None:
            async with open_daemon(options) as daemon:
                yield daemon
            return
        from .asgi import LifespanFailed

        async with AsyncExitStack() as stack:
            # The factory's async context manager (docs/deploying.rst, "Per-worker
            # startup"): entered before the daemon serves, left after it stopped.
            try:
                adopt(await stack.enter_async_context(lifespan))
            except _LoadError as exc:
                raise LifespanFailed(str(exc)) from None
            except Exception as exc:
                traceback.print_exc()
                raise LifespanFailed(f"{args.app} raised {type(exc).__name__}: {exc}") from None
            async with open_daemon(options) as daemon:
                yield daemon

    @asynccontextmanager
    async def open_daemon(options: dict[str, Any]) -> AsyncIterator[Daemon]:
        merged = {**state["options"], **options}
        merged["notify_request_ended"] = _chain(state["options"].get("notify_request_ended"),
                                                options.get("notify_request_ended"))
        if merged["notify_request_ended"] is None:
            del merged["notify_request_ended"]
        if state.get("asgi"):
            from .asgi import Daemon as ASGIDaemon

            merged.update(root_path=args.root_path, lifespan=args.lifespan)
            async with ASGIDaemon(state["callback"], **merged) as daemon:
                yield daemon
            return
        async with Daemon(state["callback"], **merged) as daemon:
            yield daemon

    options = daemon_options(args, tls)
    plan = _Plan(
        open_app, options,
        lambda url, n: f"mhd2: running {args.app} on {url}{_with_workers(n)} (Ctrl-C to stop)",
        args.graceful_timeout, args.max_requests, args.max_requests_jitter, load=load)
    return _execute(parser, args, plan, "https" if tls else "http")


SUBCOMMANDS: dict[str, Subcommand] = {
    "run": Subcommand("serve an application: a request callback given as MODULE:ATTR",
                      _run_arguments, _run, 8000),
    "serve": Subcommand("serve the files of a directory over HTTP", serve_arguments, serve_files,
                        8080),
    "demo": Subcommand(
        "the chat demo: one room reached by long polling (GET /poll), server-sent events"
        " (GET /events) and a WebSocket (GET /ws); the page links the three",
        demo_arguments,
        run_demo,
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
        add_environment_help(sub_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    tokens = list(sys.argv[1:] if argv is None else argv)
    for action in parser._actions:  # MHD2_* variables, after the sub-command's name
        if isinstance(action, argparse._SubParsersAction):
            for i, token in enumerate(tokens):
                if token in action.choices:
                    tokens[i + 1:i + 1] = environment_arguments(action.choices[token],
                                                                tokens[i + 1:])
                    break
    args = parser.parse_args(tokens)
    command = SUBCOMMANDS[args.command]
    try:
        return command.run(args.subparser, args)
    except KeyboardInterrupt:  # Ctrl-C before the signal handler was installed
        return 0

