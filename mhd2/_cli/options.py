"""The command line's shared option set (docs/deploying.rst) and what it turns into."""

from __future__ import annotations

import argparse
import signal
import ssl
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, NamedTuple

import trio

if TYPE_CHECKING:
    pass


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


def stop_signals(*, hangup: bool = False) -> AbstractContextManager[Any]:
    """A trio signal receiver for SIGINT and SIGTERM (where they exist), and SIGHUP."""
    wanted = [signal.SIGINT]
    if hasattr(signal, "SIGTERM"):
        wanted.append(signal.SIGTERM)
    if hangup and hasattr(signal, "SIGHUP"):
        wanted.append(signal.SIGHUP)
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


def _at_least(low: int, what: str) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid number of {what}: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{what} must be >= {low}: {value}")
        return value

    return convert


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, e.g. 127.0.0.1:9100, not {text!r}")
    return host.strip("[]"), _port(port)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds: {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"seconds must be > 0: {text}")
    return value


def _trusted(text: str) -> tuple[str, ...]:
    from .._proxy.trusted import TrustedProxies
    from ..errors import UsageError

    try:
        return TrustedProxies(text).entries
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _keepalive(text: str) -> tuple[int, int, int]:
    """``--tcp-keepalive IDLE,INTERVAL,COUNT`` as the Daemon option's tuple."""
    from ..options import MAX_KEEPALIVE_PROBES, MAX_KEEPALIVE_SECONDS

    try:
        idle, interval, count = (int(p.strip()) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected IDLE,INTERVAL,COUNT (three whole numbers, e.g. 30,10,3), not {text!r}"
        ) from None
    if not (0 < idle <= MAX_KEEPALIVE_SECONDS and 0 < interval <= MAX_KEEPALIVE_SECONDS
            and 0 < count <= MAX_KEEPALIVE_PROBES):
        raise argparse.ArgumentTypeError(
            f"IDLE and INTERVAL must be 1..{MAX_KEEPALIVE_SECONDS} seconds and COUNT "
            f"1..{MAX_KEEPALIVE_PROBES} probes, not {text!r}")
    return idle, interval, count


_LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def _has(parser: argparse.ArgumentParser, option: str) -> bool:
    return option in parser._option_string_actions


def add_shared_arguments(parser: argparse.ArgumentParser, *, port: int) -> None:
    """The options ``run``, ``serve`` and ``demo`` share (docs/deploying.rst lists them).

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
    add("--tls-key-password", metavar="PASSWORD",
        help="password of an encrypted --tls-key (visible in ps: prefer "
             "--tls-key-password-file or MHD2_TLS_KEY_PASSWORD)")
    add("--tls-key-password-file", metavar="FILE",
        help="file whose first line is the password of an encrypted --tls-key")
    add("--tls-client-ca", metavar="FILE",
        help="PEM CA certificate(s): require client certificates signed by them")
    add("--proxy-protocol", action="store_true",
        help="every connection starts with a PROXY protocol header (HAProxy send-proxy / "
             "send-proxy-v2) from a trusted peer")
    add("--forwarded-headers", choices=("x-forwarded", "forwarded"), type=str.lower,
        metavar="x-forwarded|forwarded",
        help="believe the client address and scheme a trusted proxy sets in "
             "X-Forwarded-For / X-Forwarded-Proto (x-forwarded: HAProxy option forwardfor, "
             "nginx) or in RFC 7239 Forwarded (forwarded); the other family is ignored")
    add("--forwarded-allow-ips", type=_trusted, metavar="LIST",
        help="comma-separated trusted proxies (addresses, networks, 'unix', '*') whose "
             "PROXY and forwarded headers are believed (default: 127.0.0.1,::1,unix); "
             "needs --forwarded-headers or --proxy-protocol")
    add("--limit-concurrency", "--connection-limit", dest="connection_limit",
        type=_at_least(1, "connections"), metavar="N",
        help="at most N connections at once; more wait in the listen backlog "
             "(default: no limit)")
    add("--per-ip-limit", type=_at_least(1, "connections"), metavar="N",
        help="at most N connections at once from one client address (default: no limit)")
    add("--backlog", type=_at_least(1, "backlog"), default=1024, metavar="N",
        help="listen backlog: connections the kernel queues before accepting "
             "(default: %(default)s)")
    add("--max-header-size", type=_at_least(256, "bytes"), metavar="BYTES",
        help="largest request head (request line and header fields); more is 431, "
             "a longer request line 414 (default: 16384)")
    add("--timeout", type=_seconds, metavar="SECONDS",
        help="idle and trickle limit of a connection (default: 60)")
    add("--keep-alive-timeout", type=_seconds, metavar="SECONDS",
        help="how long a kept-alive connection waits for its next request "
             "(default: --timeout)")
    add("--tcp-keepalive", type=_keepalive, metavar="IDLE,INTERVAL,COUNT",
        help="find clients that vanished without closing: TCP keepalive probes after IDLE "
             "seconds of silence, every INTERVAL seconds, COUNT unanswered ones end the "
             "connection (e.g. 30,10,3; default: off)")
    add("--graceful-timeout", type=_seconds, default=30.0, metavar="SECONDS",
        help="on SIGINT/SIGTERM (and when a worker is replaced), how long requests in "
             "flight may take to finish (default: %(default)s)")
    add("--reload", action="store_true",
        help="development: restart when a .py file changes (needs mhd2[dev]; not with "
             "--workers)")
    add("--reload-dir", action="append", metavar="DIR",
        help="directory to watch for --reload (repeatable; implies --reload; default: the "
             "current directory)")
    add("--max-requests", type=_positive_int("number of requests"), metavar="N",
        help="recycle a worker after about N requests (implies --workers 1)")
    add("--max-requests-jitter", type=_positive_int("jitter"), default=0, metavar="N",
        help="add 0..N to --max-requests per worker, so workers do not recycle together")
    add("--log-level", choices=_LOG_LEVELS, default="info", type=str.lower,
        help="level of the 'mhd2' logger on stderr (default: %(default)s)")
    add("--access-log", action=argparse.BooleanOptionalAction, default=None,
        help="one line per request on the 'mhd2.access' logger, stderr unless "
             "--log-config says otherwise (default: on, off for demo)")
    add("--access-log-format", choices=("common", "combined", "json"), default="combined",
        type=str.lower, help="access log lines: Common or Combined Log Format, or one JSON "
                             "object a line (default: %(default)s)")
    add("--log-config", metavar="FILE",
        help="configure logging from this file (logging.config.dictConfig as JSON, or YAML "
             "with PyYAML installed) instead of --log-level's stderr handlers")
    add("--metrics", type=_host_port, metavar="HOST:PORT",
        help="serve Prometheus metrics on their own listener, e.g. 127.0.0.1:9100 "
             "(needs mhd2[metrics]); with --workers one scrape sums every worker")
    add("--metrics-path", metavar="PATH",
        help="serve Prometheus metrics at this path of the main listener, e.g. /metrics "
             "(needs mhd2[metrics])")
    add("--parser", choices=("auto", "h11", "httptools"),
        help="HTTP/1.1 parser backend (default: auto)")
    add("--no-http2", action="store_true", help="do not offer HTTP/2")
    add("--version", action="version", version=_version())
    parser.set_defaults(workers=None)


def access_logger(args: argparse.Namespace, *, default: bool = True) -> Any:
    """The ``notify_request_ended`` access logger the command line asks for, or ``None``."""
    wanted = default if args.access_log is None else args.access_log
    if not wanted:
        return None
    from .._accesslog import AccessLogger

    return AccessLogger(args.access_log_format)


def _version() -> str:
    from .. import __version__

    return f"mhd2 {__version__}"


def daemon_options(args: argparse.Namespace, tls: Any, *,
                   access_log: bool = True) -> dict[str, Any]:
    """A sub-command's Daemon options: the engine's, *tls* (an SSL context or
    ``None``) and the access log (on by default when *access_log*)."""
    options = _engine_options(args)
    if tls is not None:
        options["tls"] = tls
    if (log := access_logger(args, default=access_log)) is not None:
        options["notify_request_ended"] = log
    return options


#: ``(command-line flag's dest, Daemon option)``: passed on when given.
_VALUE_OPTIONS = (
    ("connection_limit", "connection_limit"),
    ("per_ip_limit", "per_ip_limit"),
    ("max_header_size", "max_header_size"),
    ("timeout", "timeout"),
    ("keep_alive_timeout", "keep_alive_timeout"),
    ("tcp_keepalive", "tcp_keepalive"),
    ("forwarded_allow_ips", "trusted_proxies"),
    ("forwarded_headers", "forwarded_headers"),
    ("parser", "parser"),
)


def _engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """Daemon options from the command line (only those given)."""
    options: dict[str, Any] = {}
    for flag, option in _VALUE_OPTIONS:
        value = getattr(args, flag)
        if value is not None:
            options[option] = value
    if args.proxy_protocol:
        options["proxy_protocol"] = True
    if args.no_http2:
        options["http2"] = False
    return options


def check_forwarded_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--forwarded-allow-ips`` alone is an error (exit status 2).

    It used to turn on "``Forwarded``, else ``X-Forwarded-*``", which let a
    client behind a proxy that sets only one family choose its own address and
    scheme with the other. Which family to believe cannot be guessed, so the
    command line says it: ``--forwarded-headers x-forwarded|forwarded``. With
    ``--proxy-protocol``, the list alone is fine: it says whose PROXY headers
    are believed.
    """
    if (args.forwarded_allow_ips is not None and args.forwarded_headers is None
            and not args.proxy_protocol):
        parser.error("--forwarded-allow-ips needs --forwarded-headers x-forwarded (the proxy "
                     "sets X-Forwarded-For / X-Forwarded-Proto: HAProxy option forwardfor, "
                     "nginx) or --forwarded-headers forwarded (it sets RFC 7239 Forwarded); "
                     "or --proxy-protocol")


def tls_loader(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> Callable[[], ssl.SSLContext] | None:
    """What reads the TLS files the command line names (again on every call), or ``None``.

    Bad combinations of the ``--tls-*`` options are a usage error (exit 2).
    The loader raises :class:`mhd2.tls.TLSFileError` (one sentence naming
    the file) for files that cannot be used.
    """
    extras = (args.tls_key_password is not None or args.tls_client_ca is not None
              or args.tls_key_password_file is not None)
    if args.tls_cert is None and args.tls_key is None:
        if extras:
            parser.error("--tls-key-password(-file) and --tls-client-ca need --tls-cert "
                         "and --tls-key")
        return None
    if args.tls_cert is None or args.tls_key is None:
        parser.error("--tls-cert and --tls-key go together")
    if args.tls_key_password is not None and args.tls_key_password_file is not None:
        parser.error("--tls-key-password and --tls-key-password-file exclude each other")
    from ..tls import TLSFileError, load_files

    def load() -> ssl.SSLContext:
        password = args.tls_key_password
        if args.tls_key_password_file is not None:
            try:
                with open(args.tls_key_password_file, "rb") as f:
                    lines = f.read().splitlines()
                password = lines[0] if lines else b""
            except OSError as exc:
                raise TLSFileError(f"cannot read the TLS key password file "
                                   f"{args.tls_key_password_file}: {exc.strerror or exc}"
                                   ) from None
        return load_files(args.tls_cert, args.tls_key, password=password,
                          client_ca_file=args.tls_client_ca)

    return load


def _tls_context(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> ssl.SSLContext | None:
    """The TLS context the command line asks for; bad files exit 2 with one sentence.

    The loader is kept as ``args.tls_loader`` so that a reload reads the files again.
    """
    from ..tls import TLSFileError

    load = tls_loader(parser, args)
    args.tls_loader = load
    if load is None:
        return None
    try:
        return load()
    except TLSFileError as exc:
        print(f"mhd2: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of workers: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("at least one worker is needed")
    return value


# ---------------------------------------------------------------- ASGI (run only)


def add_interface_arguments(parser: argparse.ArgumentParser) -> None:
    """``--interface``, ``--root-path``, ``--lifespan``: how ``run`` serves MODULE:ATTR."""
    parser.add_argument(
        "--interface", choices=("auto", "asgi", "mhd2"), default="auto",
        help="auto (default): an ASGI 3 app goes through mhd2.asgi, a request callback "
             "is served directly; asgi / mhd2 force one")
    parser.add_argument(
        "--root-path", default="", metavar="PATH",
        help="ASGI: the prefix a proxy strips before the app (scope['root_path'])")
    parser.add_argument(
        "--lifespan", choices=("auto", "on", "off"), default="auto",
        help="ASGI: run the app's lifespan startup/shutdown (auto: if it speaks it)")
