"""Listening sockets: bound from options, on a Unix-domain path, or adopted.

Name resolution happens once, synchronously, at start-up (mhd2 starts no
threads).  Errors are ``OSError``; the daemon turns them into
:class:`~mhd2.DaemonStartError`.
"""

from __future__ import annotations

import errno
import os
import socket as stdlib_socket
import stat
from typing import Any, cast

import trio

from .enums import AddressFamily, StatusCode
from .errors import UsageError
from .options import DaemonOptions

__all__ = ["adopt", "bind_sockets", "bind_unix", "set_tcp_keepalive"]


def bind_unix(path: str, mode: int | None, backlog: int) -> stdlib_socket.socket:
    """Listen on a Unix-domain socket at *path*, replacing a stale socket file."""
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    sock = stdlib_socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
    try:
        sock.bind(path)
        if mode is not None:
            os.chmod(path, mode)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def adopt(listen_socket: Any) -> stdlib_socket.socket:
    """Take over a pre-bound listening socket (fd, stdlib socket or trio socket)."""
    if isinstance(listen_socket, int):
        listen_socket = stdlib_socket.socket(fileno=listen_socket)
    elif isinstance(listen_socket, trio.socket.SocketType):
        listen_socket = stdlib_socket.socket(fileno=listen_socket.detach())
    if not listen_socket.getsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_ACCEPTCONN):
        raise UsageError("listen_socket must already be bound and listening (call listen() first)",
                         StatusCode.CONFIGURATION_WRONG_OPTION_VALUE)
    return cast(stdlib_socket.socket, listen_socket)


_FAMILIES = {
    AddressFamily.AUTO: stdlib_socket.AF_UNSPEC,
    AddressFamily.INET4: stdlib_socket.AF_INET,
    AddressFamily.INET6: stdlib_socket.AF_INET6,
    AddressFamily.DUAL: stdlib_socket.AF_INET6,
    AddressFamily.DUAL_V4_OPTIONAL: stdlib_socket.AF_INET6,
    AddressFamily.DUAL_V6_OPTIONAL: stdlib_socket.AF_INET6,
}


def bind_sockets(opts: DaemonOptions) -> list[stdlib_socket.socket]:
    if opts.family is AddressFamily.NONE:
        raise UsageError("family=AddressFamily.NONE needs a listen_socket",
                         StatusCode.CONFIGURATION_WRONG_OPTION_VALUE)
    dual = opts.family in (AddressFamily.DUAL, AddressFamily.DUAL_V4_OPTIONAL,
                           AddressFamily.DUAL_V6_OPTIONAL)
    host = opts.host
    if dual and host in (None, "0.0.0.0"):
        host = "::"
    # Resolved synchronously, once, at start-up: mhd2 starts no threads.
    infos = stdlib_socket.getaddrinfo(host, opts.port, _FAMILIES[opts.family],
                                      stdlib_socket.SOCK_STREAM, 0, stdlib_socket.AI_PASSIVE)
    if not infos:
        raise OSError(errno.EADDRNOTAVAIL, "no address to bind")
    sockets: list[stdlib_socket.socket] = []
    seen: set[tuple[int, Any]] = set()
    try:
        for family, type_, proto, _, addr in infos:
            if (family, addr[:2]) in seen:
                continue
            seen.add((family, addr[:2]))
            sock = stdlib_socket.socket(family, type_, proto)
            sockets.append(sock)
            sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR, 1)
            if opts.reuse_port:
                sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEPORT, 1)
            if family == stdlib_socket.AF_INET6:
                sock.setsockopt(stdlib_socket.IPPROTO_IPV6, stdlib_socket.IPV6_V6ONLY,
                                0 if dual else 1)
            if opts.port == 0 and len(sockets) > 1:
                # port 0 with several addresses: all listen on the first one's port
                addr = (addr[0], sockets[0].getsockname()[1], *addr[2:])
            sock.bind(addr)
            sock.listen(opts.backlog)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


#: The option that sets the idle time before the first keepalive probe:
#: ``TCP_KEEPIDLE`` (Linux, the BSDs), ``TCP_KEEPALIVE`` on macOS.
_KEEPIDLE = getattr(stdlib_socket, "TCP_KEEPIDLE", getattr(stdlib_socket, "TCP_KEEPALIVE", None))
_TCP_FAMILIES = (stdlib_socket.AF_INET, stdlib_socket.AF_INET6)


def set_tcp_keepalive(sock: stdlib_socket.socket, rule: tuple[int, int, int]) -> bool:
    """Turn on TCP keepalive on an accepted socket, so a peer that vanished
    without FIN or RST is found: ``tcp_keepalive=(idle, interval, count)``.

    Sets ``SO_KEEPALIVE``, ``TCP_KEEPIDLE`` (first probe after *idle* seconds
    of silence), ``TCP_KEEPINTVL`` (then one every *interval* seconds) and
    ``TCP_KEEPCNT`` (the connection fails after *count* unanswered probes),
    each where the platform has it, and ``TCP_USER_TIMEOUT`` (Linux) to
    ``idle + interval * count`` seconds: tcp(7) "when used with the TCP
    keepalive (SO_KEEPALIVE) option, TCP_USER_TIMEOUT will override keepalive
    to determine when to close a connection due to keepalive failure", and it
    also bounds how long data sent to a vanished peer stays unacknowledged
    (otherwise some 15 minutes of retransmissions).  The failed socket then
    reports ``ETIMEDOUT``, which ends the connection and its requests.

    Args:
        sock: an accepted socket.
        rule: ``(idle seconds, interval seconds, probe count)``, validated by
            :class:`~mhd2.options.DaemonOptions`.

    Returns:
        ``False`` (and nothing set) for a socket that is not TCP (Unix-domain).

    Error handling:
        ``OSError`` from ``setsockopt`` propagates (the caller closes the socket).
    """
    if sock.family not in _TCP_FAMILIES:
        return False
    idle, interval, count = rule
    tcp = stdlib_socket.IPPROTO_TCP
    sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_KEEPALIVE, 1)
    if _KEEPIDLE is not None:
        sock.setsockopt(tcp, _KEEPIDLE, idle)
    if hasattr(stdlib_socket, "TCP_KEEPINTVL"):
        sock.setsockopt(tcp, stdlib_socket.TCP_KEEPINTVL, interval)
    if hasattr(stdlib_socket, "TCP_KEEPCNT"):
        sock.setsockopt(tcp, stdlib_socket.TCP_KEEPCNT, count)
    if hasattr(stdlib_socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(tcp, stdlib_socket.TCP_USER_TIMEOUT, (idle + interval * count) * 1000)
    return True
