"""The deadline of an HTTP/2 connection: none while streams run, else the idle limit.

With no stream running, a connection waits for one for ``keep_alive_timeout``
(before the first one: ``timeout``), counted from the end of the last stream;
then the connection sends ``GOAWAY`` and closes.  While streams run, the
connection has no deadline of its own (each stream has its inactivity limit)
except during a write, which must move a byte within ``timeout``.

Control frames are not activity: a ``PING`` or ``SETTINGS`` (and the write of
its ack) leaves the idle deadline where it is, so they cannot keep an idle
connection open past ``keep_alive_timeout`` (the HTTP/2 twin of a client that
trickles bytes between HTTP/1 requests).

:class:`IdleDeadline` only sets the transport's deadline; the connection
says when streams run, and when the last one ended.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..options import DaemonOptions
    from ..transport import Transport

__all__ = ["IDLE_SLACK", "IdleDeadline"]

#: The idle deadline may be off by this many seconds at most (an eighth of
#: the idle limit when that is shorter).
IDLE_SLACK = 1.0


class IdleDeadline:
    """The deadline of one connection's transport (see the module docstring).

    Args:
        transport: the connection's transport (its ``scope`` holds the deadline).
        options: the daemon's options (``timeout``, ``keep_alive_timeout``).

    Attributes:
        since: when the last stream ended (or the connection began), on the
            trio clock: the idle limit counts from there.
    """

    __slots__ = ("_options", "_transport", "since")

    def __init__(self, transport: Transport, options: DaemonOptions) -> None:
        self._transport = transport
        self._options = options
        self.since = 0.0

    def settle(self, *, streams: bool, writing: bool, served: bool) -> None:
        """Set the deadline for where the connection is now.

        Args:
            streams: streams are running (no idle deadline).
            writing: a write is under way (its own limit stays armed).
            served: a stream was served on the connection (the idle limit is
                ``keep_alive_timeout``, else ``timeout``).
        """
        transport = self._transport
        options = self._options
        if streams:
            transport.timeout = options.timeout
            if not writing and transport.scope.deadline != math.inf:
                # (Moving a deadline is not free: only when one is set.)
                transport.disarm()
            return
        idle = options.keep_alive_timeout if served else options.timeout
        if transport.timeout != idle:
            transport.set_timeout(idle)  # (the limit of a write meanwhile)
        if idle is None:
            if transport.scope.deadline != math.inf:
                transport.disarm()
            return
        deadline = self.since + idle
        # (Moved only when off by more than the transport's slack: a write
        # re-arms it to its own limit, and moving a deadline is not free.)
        if abs(transport.scope.deadline - deadline) > min(IDLE_SLACK, idle / 8):
            transport.scope.deadline = deadline
