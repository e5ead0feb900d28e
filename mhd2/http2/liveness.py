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
connection's engine and written by its writer; the answer comes through the
connection's reader (the engine's :class:`~mhd2.http2.engine.PingAnswered`,
then :meth:`Liveness.answered`).  What this needs of the connection is the
:class:`PingHost` protocol.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

import trio

if TYPE_CHECKING:
    from ..connection_info import ConnectionInfo

__all__ = ["Liveness", "PingHost"]

logger = logging.getLogger("mhd2")


class PingHost(Protocol):
    """What :class:`Liveness` uses of its connection."""

    info: ConnectionInfo

    @property
    def ending(self) -> bool:
        """The connection is being torn down."""
        ...

    @property
    def stream_count(self) -> int:
        """Streams running on the connection (parked or not)."""
        ...

    def send_ping(self, payload: bytes) -> bool:
        """Queue a ``PING`` with *payload* and wake the writer; False if refused."""
        ...

    def give_up(self) -> None:
        """The client did not answer: end its streams, ``GOAWAY``, close."""
        ...


class Liveness:
    """The parked streams of one connection, and the ``PING`` that checks on them.

    Args:
        interval: seconds with every stream parked before a ``PING``.
        timeout: seconds the answer may take.

    The connection calls :meth:`parked` as streams park and wake, and starts
    :meth:`run` in its nursery when :meth:`parked` says so; :meth:`run`
    returns when no stream is parked any more.
    """

    __slots__ = ("_answer", "_sent", "count", "interval", "running", "timeout")

    def __init__(self, interval: float, timeout: float) -> None:
        self.interval = interval
        self.timeout = timeout
        #: Streams parked now.
        self.count = 0
        #: :meth:`run` is running (or started).
        self.running = False
        self._sent = 0
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

    def answered(self) -> None:
        """The client acknowledged the last ``PING`` (the engine matched its payload)."""
        self._answer.set()

    async def run(self, conn: PingHost) -> None:
        """Ping while every stream of *conn* is parked; give up on a silent client.

        Error handling:
            A ``PING`` that ``h2`` refuses (the connection is closing) ends
            the checks; so does the end of the connection (cancelled).
        """
        try:
            while self.count:
                await trio.sleep(self.interval)
                if not self.count or self.count < conn.stream_count or conn.ending:
                    continue  # (some stream is at work: the connection is not idle)
                self._sent += 1
                self._answer = trio.Event()
                if not conn.send_ping(self._sent.to_bytes(8, "big")):
                    return
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
