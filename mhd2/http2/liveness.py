"""Is the peer still there?  ``PING`` an HTTP/2 connection whose streams are all parked.

A suspended request has no timeout (the application resumes it when it
likes), so a connection carrying only parked streams reads nothing and
writes nothing for as long as they wait.  If the client vanished without a
FIN or a reset (a laptop closed, a NAT mapping dropped), nothing would ever
tell.  :class:`Liveness` asks: every ``http2_ping_interval`` seconds during
which all the connection's streams are parked it sends a ``PING`` (RFC 9113
§6.7: "a mechanism for ... determining whether an idle connection is still
functional"), and when the answer has not come within ``http2_ping_timeout``
the connection gives up on the client: its parked requests end with
``TIMEOUT_REACHED``, and the connection sends ``GOAWAY`` and closes.

Nothing here reads or writes the socket: the ``PING`` is queued in the
connection's ``h2`` state machine and written by its writer; the answer
comes through the connection's reader (:meth:`Liveness.answered`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio
from h2.exceptions import ProtocolError

if TYPE_CHECKING:
    from .connection import HTTP2Connection

__all__ = ["Liveness"]

logger = logging.getLogger("mhd2")


class Liveness:
    """The parked streams of one connection, and the ``PING`` that checks on them.

    Args:
        interval: seconds with every stream parked before a ``PING``.
        timeout: seconds the answer may take.

    The connection calls :meth:`parked` as streams park and wake, and starts
    :meth:`run` in its nursery when :meth:`parked` says so; :meth:`run`
    returns when no stream is parked any more.
    """

    __slots__ = ("_answer", "_payload", "_sent", "count", "interval", "running", "timeout")

    def __init__(self, interval: float, timeout: float) -> None:
        self.interval = interval
        self.timeout = timeout
        #: Streams parked now.
        self.count = 0
        #: :meth:`run` is running (or started).
        self.running = False
        self._sent = 0
        self._payload = b""
        self._answer = trio.Event()

    def parked(self, delta: int) -> bool:
        """*delta* streams parked (+1) or woke (-1).

        Returns:
            Whether the caller is to start :meth:`run` now.
        """
        self.count += delta
        if delta > 0 and not self.running:
            self.running = True
            return True
        return False

    def answered(self, data: bytes) -> bool:
        """A ``PING`` ack with *data* arrived; whether it answers this one's ``PING``."""
        if data and data == self._payload:
            self._answer.set()
            return True
        return False

    async def run(self, conn: HTTP2Connection) -> None:
        """Ping while every stream of *conn* is parked; give up on a silent client.

        Error handling:
            A ``PING`` that ``h2`` refuses (the connection is closing) ends
            the checks; so does the end of the connection (cancelled).
        """
        try:
            while self.count:
                await trio.sleep(self.interval)
                if not self.count or self.count < len(conn.streams) or conn.ending:
                    continue  # (some stream is at work: the connection is not idle)
                self._sent += 1
                self._payload = self._sent.to_bytes(8, "big")
                self._answer = trio.Event()
                try:
                    conn.h2.ping(self._payload)
                except ProtocolError:
                    return
                conn.wake_writer()
                with trio.move_on_after(self.timeout):
                    await self._answer.wait()
                if not self._answer.is_set():
                    logger.info("mhd2: HTTP/2 client %s did not answer a PING within %g s: "
                                "closing its connection (%d parked requests)",
                                conn.info.client_address, self.timeout, self.count)
                    conn.give_up()
                    return
        finally:
            self.running = False
