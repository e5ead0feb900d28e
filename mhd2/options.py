"""The daemon's options: one validated, immutable record.

Every limit is explicit and configurable (as in libmicrohttpd); a bad value is
refused when the :class:`~mhd2.Daemon` is constructed, with a
:class:`~mhd2.UsageError` that says what would be accepted.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import trio

from ._http1.backend import PARSER_CHOICES, httptools_available
from ._proxy.forwarded import ForwardedFamily, check_forwarded_headers
from ._proxy.trusted import DEFAULT_TRUSTED_PROXIES, TrustedProxies
from .enums import AddressFamily, StatusCode, StrictLevel
from .errors import UsageError

__all__ = ["DaemonOptions"]

#: Default bytes for the request line plus all header lines (MHD's default
#: connection memory limit is 32 KiB).
DEFAULT_MAX_HEADER_SIZE = 32 * 1024
#: Default bytes shared by all full-upload and POST buffers at once.
DEFAULT_LARGE_POOL_SIZE = 8 * 1024 * 1024
#: Default seconds within which a full upload must fill what it reserved of
#: that pool (1 MiB: ~17 KiB/s; holding all 8 MiB costs ~140 KiB/s of upload).
DEFAULT_LARGE_POOL_FILL_TIME = 60.0
#: Default minimum rate of a request body: at least this many bytes ...
DEFAULT_MIN_BODY_BYTES = 1024
#: ... per this many seconds spent waiting for the client.
DEFAULT_MIN_BODY_WINDOW = 20.0
#: ``tcp_keepalive``: the largest idle time and probe interval Linux takes
#: (``TCP_KEEPIDLE`` / ``TCP_KEEPINTVL``, tcp(7): MAX_TCP_KEEPIDLE) ...
MAX_KEEPALIVE_SECONDS = 32767
#: ... and the most probes (``TCP_KEEPCNT``: MAX_TCP_KEEPCNT).
MAX_KEEPALIVE_PROBES = 127
#: The largest HTTP/2 flow-control window (RFC 9113 §6.9.1: 2^31-1 octets).
MAX_WINDOW = 2**31 - 1


class _SameAsTimeout(float):
    """The default of ``keep_alive_timeout``: whatever ``timeout`` is."""

    def __repr__(self) -> str:
        return "<same as timeout>"


SAME_AS_TIMEOUT = _SameAsTimeout("nan")


def _bad(option: str, value: object, expected: str) -> UsageError:
    return UsageError(
        f"Daemon option {option}={value!r} is invalid: expected {expected}",
        StatusCode.CONFIGURATION_WRONG_OPTION_VALUE,
    )


def _check_int(option: str, value: object, minimum: int, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        extra = " or None" if allow_none else ""
        raise _bad(option, value, f"an int >= {minimum}{extra}")


def _check_seconds(option: str, value: object) -> None:
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not value > 0
        or math.isnan(value)
    ):
        raise _bad(option, value, "seconds > 0, or None to disable (unsafe)")


def _check_callable(option: str, value: object) -> None:
    if value is not None and not callable(value):
        raise _bad(option, value, "a callable or None")


def _check_keepalive(rule: object) -> None:
    """``tcp_keepalive=(idle, interval, count)``: whole seconds and probes, in the
    ranges Linux accepts (tcp(7)), so that no accepted socket refuses them later."""
    if rule is None:
        return
    if (not isinstance(rule, tuple) or len(rule) != 3
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in rule)
            or rule[0] > MAX_KEEPALIVE_SECONDS or rule[1] > MAX_KEEPALIVE_SECONDS
            or rule[2] > MAX_KEEPALIVE_PROBES):
        raise _bad("tcp_keepalive", rule,
                   f"(idle seconds, interval seconds, probe count) as whole numbers, "
                   f"e.g. (30, 10, 3): idle and interval 1..{MAX_KEEPALIVE_SECONDS}, "
                   f"count 1..{MAX_KEEPALIVE_PROBES}; or None to leave keepalive off")


@dataclass(frozen=True, slots=True, weakref_slot=True)
class DaemonOptions:
    """All options of a :class:`~mhd2.Daemon`, validated (see its docstring)."""

    host: str | None = "127.0.0.1"
    port: int = 0
    family: AddressFamily = AddressFamily.AUTO
    listen_socket: Any = None
    reuse_port: bool = False
    backlog: int = 1024
    tls: Any = None
    connection_limit: int | None = None
    per_ip_limit: int | None = None
    timeout: float | None = 60.0
    keep_alive_timeout: float | None = SAME_AS_TIMEOUT
    max_requests_per_connection: int | None = None
    min_body_rate: tuple[int, float] | None = (DEFAULT_MIN_BODY_BYTES, DEFAULT_MIN_BODY_WINDOW)
    tcp_keepalive: tuple[int, int, int] | None = None
    unix_path: str | None = None
    unix_mode: int | None = None
    proxy_protocol: bool = False
    trusted_proxies: Any = DEFAULT_TRUSTED_PROXIES
    forwarded_headers: ForwardedFamily | Literal[False] = False
    max_header_size: int = DEFAULT_MAX_HEADER_SIZE
    large_pool_size: int = DEFAULT_LARGE_POOL_SIZE
    large_pool_fill_time: float | None = DEFAULT_LARGE_POOL_FILL_TIME
    accept_policy: Callable[..., Any] | None = None
    early_uri_logger: Callable[..., Any] | None = None
    notify_connection: Callable[..., Any] | None = None
    notify_request_ended: Callable[..., Any] | None = None
    #: A prometheus_client CollectorRegistry: see :mod:`mhd2.metrics`.
    metrics: Any = None
    #: Serve the metrics' text exposition at this path (``GET``), before the app.
    metrics_path: str | None = None
    strict_level: int = 0
    disallow_upgrade: bool = False
    disallow_suspend_resume: bool = False
    suppress_date_header: bool = False
    disable_cookies: bool = False
    uri_query_plus_as_space: bool = True
    digest_auth_random: bytes | None = None
    digest_auth_nonce_timeout: float = 300.0
    digest_auth_max_nc: int = 1000
    digest_auth_map_size: int = 1000
    parser: str = "auto"
    http2: bool = True
    http2_max_concurrent_streams: int = 100
    http2_initial_window_size: int = 65535
    http2_min_send_rate: tuple[int, float] | None = (DEFAULT_MIN_BODY_BYTES,
                                                     DEFAULT_MIN_BODY_WINDOW)
    http2_ping_interval: float | None = 60.0
    http2_ping_timeout: float = 20.0

    def __post_init__(self) -> None:
        if self.listen_socket is not None:
            if not isinstance(self.listen_socket, int | socket.socket | trio.socket.SocketType):
                raise _bad("listen_socket", self.listen_socket,
                           "a listening socket's fd (int), a socket.socket or a trio socket")
            if isinstance(self.listen_socket, int) and self.listen_socket < 0:
                raise _bad("listen_socket", self.listen_socket, "a non-negative file descriptor")
        if self.host is not None and (not isinstance(self.host, str) or not self.host):
            raise _bad("host", self.host, "a host name or address string, or None for all")
        _check_int("port", self.port, 0)
        if self.port > 65535:
            raise _bad("port", self.port, "0..65535 (0 picks a free port)")
        if not isinstance(self.family, AddressFamily):
            raise _bad("family", self.family, "an mhd2.AddressFamily")
        _check_int("backlog", self.backlog, 1)
        _check_int("connection_limit", self.connection_limit, 1, allow_none=True)
        _check_int("per_ip_limit", self.per_ip_limit, 1, allow_none=True)
        _check_seconds("timeout", self.timeout)
        if self.keep_alive_timeout is SAME_AS_TIMEOUT:
            object.__setattr__(self, "keep_alive_timeout", self.timeout)
        _check_seconds("keep_alive_timeout", self.keep_alive_timeout)
        _check_int("max_requests_per_connection", self.max_requests_per_connection, 1,
                   allow_none=True)
        for option in ("min_body_rate", "http2_min_send_rate"):
            rule = getattr(self, option)
            if rule is not None and (
                    not isinstance(rule, tuple) or len(rule) != 2
                    or isinstance(rule[0], bool) or not isinstance(rule[0], int) or rule[0] < 1
                    or isinstance(rule[1], bool) or not isinstance(rule[1], int | float)
                    or not rule[1] > 0):
                raise _bad(option, rule,
                           "(bytes >= 1, seconds > 0), e.g. (1024, 20.0), or None to disable")
        _check_keepalive(self.tcp_keepalive)
        if self.unix_path is not None:
            if not isinstance(self.unix_path, str) or not self.unix_path:
                raise _bad("unix_path", self.unix_path, "a file system path (str)")
            if self.listen_socket is not None:
                raise _bad("unix_path", self.unix_path, "no listen_socket with it (pass one)")
        _check_int("unix_mode", self.unix_mode, 0, allow_none=True)
        if not isinstance(self.proxy_protocol, bool):
            raise _bad("proxy_protocol", self.proxy_protocol, "True or False")
        try:  # False, "x-forwarded" or "forwarded"; True is refused (it let clients choose)
            object.__setattr__(self, "forwarded_headers",
                               check_forwarded_headers(self.forwarded_headers))
        except UsageError as exc:
            raise UsageError(f"Daemon option {exc}",
                             StatusCode.CONFIGURATION_WRONG_OPTION_VALUE) from None
        if isinstance(self.trusted_proxies, str):
            object.__setattr__(self, "trusted_proxies", tuple(
                p.strip() for p in self.trusted_proxies.split(",") if p.strip()))
        if not isinstance(self.trusted_proxies, tuple | list) or not all(
                isinstance(p, str) for p in self.trusted_proxies):
            raise _bad("trusted_proxies", self.trusted_proxies,
                       'addresses, networks or "unix", e.g. ("127.0.0.1", "10.0.0.0/8", "unix")')
        object.__setattr__(self, "trusted_proxies", tuple(self.trusted_proxies))
        try:
            TrustedProxies(self.trusted_proxies)
        except UsageError as exc:
            raise _bad("trusted_proxies", self.trusted_proxies, str(exc)) from None
        _check_int("max_header_size", self.max_header_size, 256)
        _check_int("large_pool_size", self.large_pool_size, 0)
        _check_seconds("large_pool_fill_time", self.large_pool_fill_time)
        for name in ("accept_policy", "early_uri_logger", "notify_connection",
                     "notify_request_ended"):
            _check_callable(name, getattr(self, name))
        if isinstance(self.strict_level, bool) or self.strict_level not in range(-3, 4):
            raise _bad("strict_level", self.strict_level, "a StrictLevel or an int from -3 to 3")
        object.__setattr__(self, "strict_level", StrictLevel(self.strict_level))
        if self.tls is not None:
            import ssl

            if not isinstance(self.tls, ssl.SSLContext):
                raise _bad("tls", self.tls, "an ssl.SSLContext (see mhd2.tls.server_context)")
        if self.digest_auth_random is not None and not isinstance(self.digest_auth_random, bytes):
            raise _bad("digest_auth_random", self.digest_auth_random, "bytes or None")
        if not self.digest_auth_nonce_timeout > 0:
            raise _bad("digest_auth_nonce_timeout", self.digest_auth_nonce_timeout, "seconds > 0")
        _check_int("digest_auth_max_nc", self.digest_auth_max_nc, 1)
        _check_int("digest_auth_map_size", self.digest_auth_map_size, 1)
        if self.parser not in PARSER_CHOICES:
            raise _bad("parser", self.parser, '"auto", "h11" or "httptools"')
        if self.parser == "httptools" and not httptools_available():
            raise UsageError('parser="httptools" needs httptools: pip install "mhd2[speedups]"'
                             ' (or use parser="auto", which falls back to h11)')
        if not isinstance(self.http2, bool):
            raise _bad("http2", self.http2, "True or False")
        _check_int("http2_max_concurrent_streams", self.http2_max_concurrent_streams, 1)
        _check_int("http2_initial_window_size", self.http2_initial_window_size, 1)
        _check_seconds("http2_ping_interval", self.http2_ping_interval)
        if self.http2_ping_timeout is None:
            raise _bad("http2_ping_timeout", None, "seconds > 0 (turn the PING off with "
                       "http2_ping_interval=None)")
        _check_seconds("http2_ping_timeout", self.http2_ping_timeout)
        if self.http2_initial_window_size > MAX_WINDOW:
            # RFC 9113 §6.5.2: "Values above the maximum flow-control window
            # size of 2^31-1 MUST be treated as a connection error".
            raise _bad("http2_initial_window_size", self.http2_initial_window_size,
                       f"1 .. {MAX_WINDOW} (2**31 - 1)")
