"""The graceful stop of an HTTP/2 connection: announce it, take the streams in flight, ``GOAWAY``.

RFC 9113 §6.8: "A server that is attempting to gracefully shut down a
connection SHOULD send an initial GOAWAY frame with the last stream
identifier set to 2^31-1 and a NO_ERROR code. ... After allowing time for
any in-flight stream creation (at least one round-trip time), the server MAY
send another GOAWAY frame with an updated last stream identifier."

The engine builds both frames (:meth:`H2Engine.announce_goaway
<mhd2.http2.engine.H2Engine.announce_goaway>`, which also sends a ``PING``
whose ack marks the round trip, and :meth:`H2Engine.goaway
<mhd2.http2.engine.H2Engine.goaway>`); :class:`GracefulStop` does the
timing: the second ``GOAWAY`` goes out when the ``PING`` is answered, or
after :data:`ANNOUNCE_SECONDS` at most, and the streams are told to stop.
What it needs of the connection is the :class:`StopHost` protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import trio

from .engine import ConnState

if TYPE_CHECKING:
    from .engine import H2Engine
    from .stream import H2Stream

__all__ = ["ANNOUNCE_SECONDS", "GracefulStop", "StopHost"]

#: A graceful stop announces itself (``GOAWAY`` with the highest stream id and
#: a ``PING``) and takes the streams the client had in flight until the
#: ``PING`` is answered, or for this long at most, before the final ``GOAWAY``
#: (as the HTTP/1 loop waits for a fresh connection's first request).
ANNOUNCE_SECONDS = 1.0


class StopHost(Protocol):
    """What :class:`GracefulStop` uses of its connection."""

    #: The connection's sans-IO engine.
    engine: H2Engine
    #: Its streams running, by id.
    streams: dict[int, H2Stream]

    def wake_writer(self) -> None:
        """Frames were queued: have the writer send them."""
        ...

    def send_goaway(self) -> None:
        """Queue the final ``GOAWAY`` (the engine's, once) and wake the writer."""
        ...

    def close_if_no_stream(self) -> bool:
        """After the final ``GOAWAY``: close now if no stream runs (else the last
        stream to end closes it); return whether it closes now."""
        ...


class GracefulStop:
    """The graceful stop of one connection (see the module docstring)."""

    __slots__ = ("_answered",)

    def __init__(self) -> None:
        # Set when the client answers the PING of the announcement.
        self._answered: trio.Event | None = None

    def begin(self, host: StopHost, nursery: trio.Nursery | None) -> bool:
        """Announce the stop (or, without a *nursery* to wait in, send the final
        ``GOAWAY`` at once) and tell every stream running to stop: parked
        requests are woken (they end with ``DAEMON_SHUTDOWN``, answered 503),
        running ones finish within the grace period.

        Returns:
            True if no stream was running and the connection closes at once.
        """
        engine = host.engine
        if not engine.announced:
            if nursery is not None and engine.announce_goaway():
                self._answered = trio.Event()
                host.wake_writer()
                nursery.start_soon(self._end_announcement, host)
            else:
                host.send_goaway()
        for stream in list(host.streams.values()):
            stream.begin_stop()
        if engine.state is ConnState.OPEN:
            return False  # announced: the final GOAWAY is still to come
        return host.close_if_no_stream()

    def answered(self) -> None:
        """The client answered the announcement's ``PING`` (``ShutdownAnswered``)."""
        if self._answered is not None:
            self._answered.set()

    async def _end_announcement(self, host: StopHost) -> None:
        """Once the client has answered the announcement (or after
        :data:`ANNOUNCE_SECONDS`): the final ``GOAWAY``, the streams taken
        meanwhile told to stop, and close if no stream runs."""
        answered = self._answered
        assert answered is not None
        told = max(host.streams, default=0)  # streams already told of the stop
        with trio.move_on_after(ANNOUNCE_SECONDS):
            await answered.wait()
        host.send_goaway()
        for stream_id, stream in list(host.streams.items()):
            if stream_id > told:  # (the streams taken meanwhile)
                stream.begin_stop()
        host.close_if_no_stream()
