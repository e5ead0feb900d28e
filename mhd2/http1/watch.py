"""What the connection of a suspended request does: watch for the client leaving.

While a request is parked (``action_suspend`` and the other suspend actions)
its connection is read, so that a client that goes away ends the request at
once (``CLIENT_ABORT``) instead of when it is resumed.  What a pipelining
client sends meanwhile is kept for the parser, up to a limit; beyond it
reading stops (the kernel's buffers then push back on the client).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

import trio

from ..parking import ResumableWait
from ..transport import TransportError

if TYPE_CHECKING:
    from ..transport import Transport

__all__ = ["Watch", "watch_client", "watch_until_gone"]

#: Bytes asked for per read while watching.
WATCH_RECV_SIZE = 16 * 1024


def watch_client(transport: Transport, kept: list[bytes], limit: int
                 ) -> Awaitable[None] | Watch:
    """The watch of a parked request's connection, the deadline disarmed meanwhile.

    On a plain socket a :class:`Watch`, which a resume ends without a cancel
    scope; on other transports the :func:`watch_until_gone` coroutine
    (arguments as there).
    """
    transport.disarm()
    if transport.is_plain:
        return Watch(transport, kept, limit)
    return watch_until_gone(transport, kept, limit)


async def watch_until_gone(transport: Transport, kept: list[bytes], limit: int) -> None:
    """Return when the peer closes its side (or the connection breaks).

    Args:
        transport: the parked request's connection.
        kept: where bytes received meanwhile are appended.
        limit: keep at most about this many bytes; then wait without reading.
    """
    total = sum(len(k) for k in kept)
    if transport.holding:
        try:
            await transport.flush()
        except TransportError:
            return
    # On a plain socket the wait is trio's own, with no stream coroutines in
    # between: a parked request (100,000 event streams) keeps two frames fewer.
    fd = transport.fd if transport.is_plain else -1
    while total <= limit:
        try:
            if fd >= 0:
                await trio.lowlevel.wait_readable(fd)
                got = transport.receive_now(WATCH_RECV_SIZE)
                if got is None:
                    continue
                data = got
            else:
                data = await transport.receive(WATCH_RECV_SIZE)
        except TransportError:
            return
        if not data:
            return
        kept.append(data)
        total += len(data)
    await trio.sleep_forever()


class Watch(ResumableWait):
    """:func:`watch_until_gone` on a plain socket, ended by :meth:`cancel` (a resume)
    without a cancel scope.

    The task waits in trio's ``wait_readable`` itself; :meth:`cancel` ends
    that wait with ``trio.lowlevel.notify_closing(fd)``, which wakes the
    waiter with ``ClosedResourceError`` and closes nothing (the socket stays
    open; nothing else waits on it while the request is parked -- except a
    task writing an interim (1xx) head into a full send buffer at that very
    moment, whose write then fails).  Bytes that arrive are read and kept as
    before; a resume never loses any: it ends only the wait, never a read.
    """

    __slots__ = ("_event", "_kept", "_limit", "_resumed", "_transport", "_waiting")

    def __init__(self, transport: Transport, kept: list[bytes], limit: int) -> None:
        self._transport = transport
        self._kept = kept
        self._limit = limit
        self._resumed = False
        self._waiting = False
        self._event: trio.Event | None = None  # past the limit: what cancel() sets

    def cancel(self) -> None:
        if self._resumed:
            return
        self._resumed = True
        if self._waiting:
            self._waiting = False
            trio.lowlevel.notify_closing(self._transport.fd)
        elif self._event is not None:
            self._event.set()

    async def wait(self) -> bool:
        transport = self._transport
        kept = self._kept
        total = sum(len(k) for k in kept)
        if transport.holding:
            try:
                await transport.flush()
            except TransportError:
                return self._resumed
        fd = transport.fd
        while not self._resumed:
            if total > self._limit:
                # Keep no more: wait without reading (the kernel's buffers
                # push back on the client) until resumed.
                event = self._event = trio.Event()
                await event.wait()
                break
            self._waiting = True
            try:
                await trio.lowlevel.wait_readable(fd)
            except trio.ClosedResourceError:
                return self._resumed  # (not resumed: the socket was closed)
            finally:
                self._waiting = False
            if self._resumed:
                break  # what arrived stays in the socket, for the parser
            try:
                data = transport.receive_now(WATCH_RECV_SIZE)
            except TransportError:
                return False
            if data is None:
                continue
            if not data:
                return False
            kept.append(data)
            total += len(data)
        return True
