"""What the daemon's accept loop needs below it: refusing, logging, naming the peer.

* A connection over ``connection_limit`` / ``per_ip_limit`` is told
  :data:`REFUSAL_REPLY` (503) if that can be written without blocking, and
  closed (:func:`refuse`).
* Refusals, and ``accept()`` failing for lack of resources, are logged at
  most once per :data:`REFUSAL_LOG_INTERVAL`, with a count
  (:class:`RefusalLog`, :class:`AcceptErrorLog`): a flood costs one record
  per interval.
* :class:`ConnectionCount` counts the open connections (in all, per client
  IP), says when a new one is over ``connection_limit`` / ``per_ip_limit``,
  and lets a stop wait until none is open (:meth:`ConnectionCount.drained`).
* :func:`allowed_by` asks the application's ``accept_policy``.
* :func:`accepted_address` is the ``(host, port)`` of a peer as ``accept()``
  gives it (:data:`UNIX_CLIENT` for a Unix-domain peer).
"""

from __future__ import annotations

import errno
import logging
import math
import socket as stdlib_socket
from collections import Counter
from collections.abc import Callable
from inspect import isawaitable
from typing import Any

import trio

from .transport import send_last_words

__all__ = ["ACCEPT_CAPACITY_ERRORS", "ACCEPT_PAUSE", "REFUSAL_LOG_INTERVAL", "REFUSAL_REPLY",
           "UNIX_CLIENT", "AcceptErrorLog", "ConnectionCount", "RefusalLog", "ThrottledLog",
           "accepted_address", "allowed_by", "refuse"]

logger = logging.getLogger("mhd2")

#: accept() errors that mean "out of resources for now": log, pause, go on
#: (as ``trio.serve_listeners`` does).
ACCEPT_CAPACITY_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
ACCEPT_PAUSE = 0.1
#: Refusals over the connection limits, and ``accept()`` failing for lack of
#: resources, are each logged at most once per this many seconds, with a count.
REFUSAL_LOG_INTERVAL = 10.0
#: What a connection refused over the limits is told, if it can be written
#: without blocking (docs/daemon.rst: over a limit, close or 503).
REFUSAL_REPLY = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n"
    b"Content-Length: 24\r\nConnection: close\r\n\r\n503 Service Unavailable\n"
)
#: The client address of a Unix-domain peer (docs/deploying.rst, ``--uds``).
UNIX_CLIENT = ("unix", 0)


class ThrottledLog:
    """Logs a recurring event at most once per :data:`REFUSAL_LOG_INTERVAL`, with a count.

    The first event is logged at once; the ones after it within the interval
    are only counted, and the next record (at the first event after the
    interval) says how many there were.  A flood therefore costs one record
    per interval, whatever its rate.
    """

    __slots__ = ("_count", "_last")

    def __init__(self) -> None:
        self._count = 0
        self._last = -math.inf

    def note(self, level: int, message: str, *args: object) -> None:
        """Count one event; when a record is due, log *message* at *level* with the
        count, the seconds it covers, then *args*."""
        self._count += 1
        now = trio.current_time()
        if now - self._last < REFUSAL_LOG_INTERVAL:
            return
        covered = min(now - self._last, REFUSAL_LOG_INTERVAL)
        logger.log(level, message, self._count, covered, *args)
        self._count = 0
        self._last = now


class RefusalLog(ThrottledLog):
    """Refusals over the connection limits (WARNING)."""

    __slots__ = ()

    def refused(self, ip: str) -> None:
        self.note(logging.WARNING, "mhd2: %d connection(s) refused in the last %.0f s: "
                  "connection limit reached (latest from %s)", ip)


class AcceptErrorLog(ThrottledLog):
    """``accept()`` failing for lack of resources: EMFILE, ENFILE, ENOBUFS, ENOMEM (ERROR)."""

    __slots__ = ()

    def failed(self, exc: OSError) -> None:
        self.note(logging.ERROR, "mhd2: accept() failed %d time(s) in the last %.0f s "
                  "(latest: %s); new connections wait in the backlog, retried every %.1f s: "
                  "raise the open-file limit (ulimit -n) or lower connection_limit",
                  exc.strerror or exc, ACCEPT_PAUSE)


class ConnectionCount:
    """The daemon's open client connections: how many, from which IP, within the limits.

    Args:
        connection_limit: ``connection_limit`` (``None``: no limit).
        per_ip_limit: ``per_ip_limit`` (``None``: no limit).
        metrics: the daemon's :class:`mhd2.metrics.DaemonMetrics`, or ``None``.

    Every :meth:`add` is matched by one :meth:`remove` when the connection
    has ended; a connection behind a PROXY header is added without an IP and
    given one later (:meth:`add_ip`).
    """

    __slots__ = ("_drained", "_metrics", "_per_ip", "_refusals", "connection_limit", "count",
                 "per_ip_limit")

    def __init__(self, connection_limit: int | None, per_ip_limit: int | None,
                 metrics: Any = None) -> None:
        self.connection_limit = connection_limit
        self.per_ip_limit = per_ip_limit
        self._metrics = metrics
        #: How many client connections are open now.
        self.count = 0
        self._per_ip: Counter[str] = Counter()
        self._refusals = RefusalLog()
        self._drained = trio.Event()

    def over_limit(self, ip: str | None, seen: str) -> bool:
        """Whether a new connection (from client *ip*, if known yet) is over a limit;
        a refusal is logged (naming *seen*) and counted in the metrics."""
        limit = self.connection_limit
        if limit is not None and self.count >= limit:
            self._refused(seen, "connection_limit")
            return True
        return ip is not None and not self._ip_allowed(ip)

    def _ip_allowed(self, ip: str) -> bool:
        if self.per_ip_limit is not None and self._per_ip[ip] >= self.per_ip_limit:
            self._refused(ip, "per_ip_limit")
            return False
        return True

    def _refused(self, seen: str, limit: str) -> None:
        self._refusals.refused(seen)
        if self._metrics is not None:
            self._metrics.refused(limit)

    def add(self, ip: str | None) -> None:
        """A connection is let in (from *ip*; ``None`` until a PROXY header says it)."""
        self.count += 1
        if ip is not None:
            self._per_ip[ip] += 1

    def add_ip(self, ip: str) -> bool:
        """The PROXY header named the client *ip*: count it, unless over ``per_ip_limit``
        (then the caller refuses the connection and still calls ``remove(None)``)."""
        if not self._ip_allowed(ip):
            return False
        self._per_ip[ip] += 1
        return True

    def remove(self, ip: str | None) -> None:
        """A connection added with (or later given) *ip* has ended."""
        self.count -= 1
        if ip is not None:
            self._per_ip[ip] -= 1
            if not self._per_ip[ip]:
                del self._per_ip[ip]
        if not self.count:
            self._drained.set()

    async def drained(self) -> None:
        """Return once no connection is open (at once if none is)."""
        while self.count:
            if self._drained.is_set():
                self._drained = trio.Event()
            await self._drained.wait()


def accepted_address(peer: Any) -> tuple[str, int]:
    """``(host, port)`` of a peer as ``accept()`` gives it; Unix peers are ``("unix", 0)``."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        return (str(peer[0]), int(peer[1]))
    return UNIX_CLIENT


def refuse(sock: stdlib_socket.socket) -> None:
    """Answer 503 if that can be written without blocking, then close."""
    send_last_words(sock, REFUSAL_REPLY)
    sock.close()


async def allowed_by(policy: Callable[[tuple[str, int]], Any], address: tuple[str, int]) -> bool:
    """Whether ``accept_policy`` (sync or async) lets the client at *address* in.

    Error handling:
        A policy that raises refuses the connection (and is logged).
    """
    try:
        allowed = policy(address)
        if isawaitable(allowed):
            allowed = await allowed
    except Exception:
        logger.exception("mhd2: accept_policy failed; refusing %s", address[0])
        return False
    return bool(allowed)
