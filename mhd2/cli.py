"""``python -m mhd2``: command-line entry points.

``python -m mhd2 serve [DIR] [--host H] [--port P] [--tls-cert F --tls-key F]
[--workers N] [--index NAME]... [--no-listing] [--dotfiles allow|deny]
[--cache-control VALUE]`` serves *DIR* (default: the current directory) with
:class:`mhd2.static.StaticFiles` and writes an access log on stderr. It prints
one startup line on stderr, ``mhd2: serving /abs/dir on http://127.0.0.1:8080/
(Ctrl-C to stop)``, with the real port (``--port 0`` picks a free one).
SIGINT (Ctrl-C) and SIGTERM stop it gracefully (exit status 0); a bad
directory or option is exit status 2, a bind failure 1.

``--workers N`` binds the socket once and forks *N* worker processes that
all accept on it (each runs its own trio loop and daemon); the parent forwards
SIGINT/SIGTERM to them and waits.

``python -m mhd2 demo [--host H] [--port P]`` runs the long-polling chat
demo (:mod:`mhd2.demo`, default http://127.0.0.1:8888/); its startup line on
stderr is ``mhd2 demo: chat on http://127.0.0.1:8888/ (Ctrl-C to stop)``.

Subcommands are registered in :data:`SUBCOMMANDS`: each has a function that
adds its arguments to a sub-parser and a runner ``run(parser, args) -> int``
that starts trio itself and returns the exit status.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import ssl
import sys
import traceback
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, NamedTuple

import trio

__all__ = ["SUBCOMMANDS", "Subcommand", "build_parser", "main", "url_for"]


class Subcommand(NamedTuple):
    """A ``python -m mhd2`` subcommand.

    ``run(parser, args)`` gets its own sub-parser (for ``parser.error``) and
    the parsed arguments, starts trio itself (``trio.run``) and returns the
    exit status.
    """

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.ArgumentParser, argparse.Namespace], int]


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
    """``--host`` and ``--port`` (``--port 0`` picks a free port)."""
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=port,
        help="port to listen on, 0 for any free port (default: %(default)s)",
    )


def stop_signals() -> AbstractContextManager[Any]:
    """A trio signal receiver for SIGINT and SIGTERM (where they exist)."""
    wanted = [signal.SIGINT]
    if hasattr(signal, "SIGTERM"):
        wanted.append(signal.SIGTERM)
    return trio.open_signal_receiver(*wanted)


# ---------------------------------------------------------------------- serve


def _directory(text: str) -> str:
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"not a directory: {text!r}")
    return text


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
    add_address_arguments(parser, port=8080)
    parser.add_argument("--tls-cert", metavar="FILE", help="PEM certificate (chain): serve HTTPS")
    parser.add_argument("--tls-key", metavar="FILE", help="PEM private key for --tls-cert")
    parser.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="worker processes sharing one listening socket (default: %(default)s)",
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


def _tls_context(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> ssl.SSLContext | None:
    if args.tls_cert is None and args.tls_key is None:
        return None
    if args.tls_cert is None or args.tls_key is None:
        parser.error("--tls-cert and --tls-key go together")
    from .tls import server_context

    try:
        with open(args.tls_cert, "rb") as f:
            cert = f.read()
        with open(args.tls_key, "rb") as f:
            key = f.read()
        return server_context(cert, key)
    except (OSError, ValueError, ssl.SSLError) as exc:
        parser.error(f"cannot use the TLS certificate/key: {exc}")


def _announce(root: str, scheme: str, host: str, port: int, workers: int) -> None:
    url = url_for(host, port)
    if scheme == "https":
        url = "https" + url[4:]
    extra = f" with {workers} workers" if workers > 1 else ""
    print(f"mhd2: serving {root} on {url}{extra} (Ctrl-C to stop)", file=sys.stderr, flush=True)


async def _serve_one(
    args: argparse.Namespace,
    tls: ssl.SSLContext | None,
    listen_socket: socket.socket | None,
) -> int:
    from . import Daemon, DaemonStartError
    from .static import StaticFiles

    files = StaticFiles(args.directory, access_log=sys.stderr, **_static_options(args))
    options: dict[str, Any] = {"notify_request_ended": files.request_ended}
    if tls is not None:
        options["tls"] = tls
    if listen_socket is not None:
        options["listen_socket"] = listen_socket
    else:
        options["host"] = args.host
        options["port"] = args.port
    with stop_signals() as signals:
        try:
            async with Daemon(files.handle, **options) as daemon:
                if listen_socket is None:
                    _announce(files.root, "https" if tls else "http", args.host, daemon.port, 1)
                async for signum in signals:
                    if listen_socket is None:
                        name = signal.Signals(signum).name
                        print(f"mhd2: {name}, stopping", file=sys.stderr, flush=True)
                    break
        except DaemonStartError as exc:
            cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
            print(
                f"mhd2: cannot listen on {args.host} port {args.port}: {exc}{cause}",
                file=sys.stderr,
            )
            return 1
    return 0


def _serve_workers(args: argparse.Namespace, tls: ssl.SSLContext | None) -> int:
    """Pre-fork: bind once here, then *args.workers* processes accept on the socket."""
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    try:
        sock = socket.create_server((args.host, args.port), family=family, backlog=1024)
    except OSError as exc:
        print(f"mhd2: cannot listen on {args.host} port {args.port}: {exc}", file=sys.stderr)
        return 1
    sys.stderr.flush()
    children: list[int] = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:  # a worker
            code = 1
            try:
                code = trio.run(_serve_one, args, tls, sock)
            except KeyboardInterrupt:  # before its signal receiver was in place
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(code)
        children.append(pid)
    root = os.path.realpath(args.directory)
    _announce(root, "https" if tls else "http", args.host, sock.getsockname()[1], args.workers)
    sock.close()

    def forward(signum: int, frame: object) -> None:
        print(f"mhd2: {signal.Signals(signum).name}, stopping", file=sys.stderr, flush=True)
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    status = 0
    for pid in children:
        _, wait_status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(wait_status) != 0:
            status = 1
    return status


def _serve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    tls = _tls_context(parser, args)
    if args.workers > 1:
        return _serve_workers(args, tls)
    return trio.run(_serve_one, args, tls, None)


# ---------------------------------------------------------------------- demo


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    add_address_arguments(parser, port=8888)


def _demo(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from . import demo

    return trio.run(demo.main, args.host, args.port)


SUBCOMMANDS: dict[str, Subcommand] = {
    "serve": Subcommand("serve the files of a directory over HTTP", _serve_arguments, _serve),
    "demo": Subcommand(
        "the chat demo: one room reached by long polling (GET /poll), server-sent events"
        " (GET /events) and a WebSocket (GET /ws); the page links the three",
        _demo_arguments,
        _demo,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mhd2", description="mhd2: libmicrohttpd 2's action API on trio"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=command.help, description=command.help)
        sub_parser.set_defaults(subparser=sub_parser)
        command.add_arguments(sub_parser)
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
