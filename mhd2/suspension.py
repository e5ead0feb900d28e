"""Where a suspended request waits: ``action_suspend``, DCC and upload suspend.

A suspended request parks in a cancel scope; :func:`~mhd2.request_resume`
cancels it (from any task or thread).  While it waits, the connection is
watched, so a client that goes away ends the request at once instead of when
it is resumed, and what a pipelining client sends meanwhile is kept for later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from .request import Request

__all__ = ["ClientGone", "Parking", "StoppedWhileParked"]

#: Bytes asked for per read while watching a parked request's connection.
WATCH_RECV_SIZE = 16 * 1024


class ClientGone(trio.BrokenResourceError):
    """The client closed the connection while its request was suspended."""


class StoppedWhileParked(Exception):
    """The daemon is stopping while the request is suspended."""


class Parking:
    """The one place a connection's suspended request waits.

    Args:
        stream: the connection's stream, read while a request is parked.
        max_kept: at most this many bytes a client may send while parked are
            kept (a pipelined request); beyond that the watch stops reading.

    Resource handling:
        Bytes kept while parked are returned by :meth:`wait`; the caller feeds
        them to its parser.
    """

    __slots__ = ("_max_kept", "_request", "_stopping", "_stream")

    def __init__(self, stream: trio.abc.Stream, max_kept: int) -> None:
        self._stream = stream
        self._max_kept = max_kept
        self._request: Request | None = None
        self._stopping = False

    def wake_for_stop(self) -> bool:
        """Graceful stop: wake the parked request, if any; :meth:`wait` then raises.

        Returns:
            True if a request was parked.
        """
        request = self._request
        if request is None or request._resume_scope is None:
            return False
        self._stopping = True
        request._resume_scope.cancel()
        return True

    async def wait(self, request: Request, *, stopping: bool) -> bytes:
        """Park *request* until it is resumed.

        Args:
            request: the suspended request.
            stopping: the daemon is already stopping (do not park).

        Returns:
            What the client sent while the request was parked (usually ``b""``).

        Raises:
            ClientGone: the client closed the connection meanwhile.
            StoppedWhileParked: the daemon is stopping.
        """
        request._suspended = True
        kept: list[bytes] = []
        try:
            if request._resume_pending:
                # Resumed already, before the daemon got here (from the callback).
                request._resume_pending = False
                await trio.lowlevel.checkpoint()
                return b""
            if stopping:
                raise StoppedWhileParked
            self._request = request
            with trio.CancelScope() as scope:
                request._resume_scope = scope
                await self._watch(kept)
                raise ClientGone("the client closed the connection while suspended")
            if self._stopping:
                raise StoppedWhileParked
            return b"".join(kept)
        finally:
            request._resume_scope = None
            request._suspended = False
            self._request = None

    async def _watch(self, kept: list[bytes]) -> None:
        """Return when the peer closes its side (or the connection breaks)."""
        total = 0
        while total <= self._max_kept:
            try:
                data = await self._stream.receive_some(WATCH_RECV_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            kept.append(bytes(data))
            total += len(data)
        await trio.sleep_forever()
