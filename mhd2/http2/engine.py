"""The HTTP/2 engine: bytes in, events and bytes out -- no I/O, no tasks.

:class:`H2Engine` is to an HTTP/2 connection what ``h11.Connection`` is to an
HTTP/1.1 one.  It wraps mhd2's ``h2`` state machine
(:func:`~mhd2.http2.machine.new_h2`) and owns everything about the
connection that is decided, not done:

* **Frames in, events out.**  :meth:`H2Engine.receive` parses at most
  ``FRAMES_PER_TURN`` frames of what was read (:attr:`H2Engine.more` says
  frames are left for another turn) and returns mhd2's own events
  (:class:`RequestReceived`, :class:`DataReceived`, :class:`BodyEnded`,
  :class:`TrailersReceived`, :class:`WindowOpened`, :class:`StreamCancelled`,
  :class:`PingAnswered`, :class:`GoawayReceived`), in order.  Streams beyond
  ``http2_max_concurrent_streams`` are refused (``REFUSED_STREAM``): they never
  become events.  A malformed request is reset (``PROTOCOL_ERROR``) and
  becomes a :class:`RequestMalformed` (its end is reported before the reset
  is written); malformed trailers become a :class:`StreamCancelled` whose
  reset the caller sends after the request's end is reported.
* **Flood accounting** (:class:`~mhd2.http2.guard.FloodGuard`): the frames of
  each turn are counted against the rates; a flood queues ``GOAWAY``
  ENHANCE_YOUR_CALM and the engine is :attr:`ConnState.FAILED`.
* **Window arithmetic**: the connection's receive window is widened once the
  client's preface is in; received DATA is acknowledged when consumed, and
  what a stream may send is measured, by the output half (below).
* **GOAWAY**: :meth:`H2Engine.goaway` (graceful, once), the client's own
  (the server answers with one), and ``max_requests_per_connection``.
* **The connection's state** is one :class:`ConnState`, not a set of flags.

The output half -- the frames queued for the client, taken with
:meth:`~mhd2.http2.outbox.H2Outbox.data_to_send` for the caller to write,
and the window arithmetic of sending -- is the base class
:class:`~mhd2.http2.outbox.H2Outbox`.  The clock is the caller's (the flood
rates), so the engine runs without an event loop
(``tests/test_http2_engine.py``).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from h2 import events as h2e
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes
from hyperframe.frame import GoAwayFrame, PingFrame

from ..enums import RequestEndedCode
from .checks import Malformed, check_request_head, check_trailers
from .events import (
    BodyEnded,
    DataReceived,
    Event,
    GoawayReceived,
    PingAnswered,
    RequestMalformed,
    RequestReceived,
    ShutdownAnswered,
    StreamCancelled,
    TrailersReceived,
    WindowOpened,
)
from .guard import FloodGuard
from .machine import FRAMES_PER_TURN, connection_window, new_h2
from .outbox import H2Outbox

if TYPE_CHECKING:
    from ..options import DaemonOptions

__all__ = ["ConnState", "H2Engine"]

logger = logging.getLogger("mhd2")


#: The last stream id of the ``GOAWAY`` that announces a shutdown (RFC 9113 §6.8).
MAX_STREAM_ID = 2**31 - 1
#: The payload of the ``PING`` sent with that ``GOAWAY``.
SHUTDOWN_PING = b"mhd2-bye"


class ConnState(enum.Enum):
    """Where an HTTP/2 connection is (one value; it only moves down this list)."""

    #: Serving: new streams are taken.
    OPEN = "open"
    #: The server's graceful ``GOAWAY`` is queued (the client's GOAWAY, a
    #: graceful stop, ``max_requests_per_connection``): the streams running
    #: finish, new ones are refused.
    GOING_AWAY = "going away"
    #: A connection error (the client's protocol error, a flood): ``GOAWAY``
    #: with its code is queued; nothing more is received or acknowledged.
    FAILED = "failed"
    #: The transport broke: nothing more can be written.
    LOST = "lost"


# -- the engine ----------------------------------------------------------------------------


class H2Engine(H2Outbox):
    """The sans-IO HTTP/2 server side of one connection (see the module docstring).

    Args:
        options: the daemon's options (stream limit, windows, header size,
            ``max_requests_per_connection``).
        clock: the current time in seconds, for the flood rates.
        peer: the client, for log messages.

    The caller tells the engine when a stream it was given
    (:class:`RequestReceived`) has ended (:meth:`stream_closed`): until then
    the stream counts against ``http2_max_concurrent_streams``.  What it
    queues for the client, and the window arithmetic, are :class:`H2Outbox`'s.
    """

    __slots__ = ("_guard", "_last_stream_id", "_options", "_window_opened", "active",
                 "announced", "more", "peer", "served", "state")

    def __init__(self, options: DaemonOptions, clock: Callable[[], float],
                 peer: object = None) -> None:
        super().__init__(new_h2(options))
        self._options = options
        self.peer = peer
        self.state = ConnState.OPEN
        #: The ids of the streams given to the caller and not yet closed.
        self.active: set[int] = set()
        #: Streams opened on this connection.
        self.served = 0
        #: The last :meth:`receive` stopped at its frame budget: call it again
        #: (with ``b""``) for the rest, after letting other work run.
        self.more = False
        self._guard = FloodGuard(options.http2_max_concurrent_streams, clock)
        self._last_stream_id = 0
        self._window_opened = False
        #: The shutdown was announced (:meth:`announce_goaway`): streams are
        #: still taken, even while the daemon stops, until :meth:`goaway`.
        self.announced = False

    # -- state --------------------------------------------------------------------------

    def lost(self) -> None:
        """The transport broke: nothing more is written."""
        self.state = ConnState.LOST
        self.ending = True

    def goaway(self) -> bool:
        """Queue a graceful ``GOAWAY`` (NO_ERROR, the last stream id processed), once.

        Built by hand: ``h2`` moves to its closed state on any GOAWAY it
        sends and would then refuse the frames of the streams still running.

        Returns:
            Whether it was queued now (not before, and the connection is open).
        """
        if self.state is not ConnState.OPEN:
            return False
        self.state = ConnState.GOING_AWAY
        frame = GoAwayFrame(0, last_stream_id=self._last_stream_id, error_code=ErrorCodes.NO_ERROR)
        self._extra.append(frame.serialize())
        return True

    def announce_goaway(self) -> bool:
        """Announce a graceful shutdown, once, leaving room for streams in flight.

        RFC 9113 §6.8: "A server that is attempting to gracefully shut down a
        connection SHOULD send an initial GOAWAY frame with the last stream
        identifier set to 2^31-1 and a NO_ERROR code.  This signals to the
        client that a shutdown is imminent and that initiating further
        requests is prohibited.  After allowing time for any in-flight stream
        creation (at least one round-trip time), the server MAY send another
        GOAWAY frame with an updated last stream identifier."  So: that first
        ``GOAWAY``, then a ``PING`` whose ack (:class:`ShutdownAnswered`)
        marks the round trip -- every stream the client began before it saw
        the ``GOAWAY`` has arrived by then.  Streams are taken until
        :meth:`goaway` sends the second one.

        Returns:
            Whether it was queued now (not before, and the connection is open).
        """
        if self.state is not ConnState.OPEN or self.announced:
            return False
        self.announced = True
        self._extra.append(GoAwayFrame(0, last_stream_id=MAX_STREAM_ID,
                                       error_code=ErrorCodes.NO_ERROR).serialize())
        self._extra.append(PingFrame(0, opaque_data=SHUTDOWN_PING).serialize())
        return True

    def stream_closed(self, stream_id: int) -> None:
        """The caller is done with *stream_id*: it no longer counts against the limit."""
        self.active.discard(stream_id)

    # -- bytes in ----------------------------------------------------------------------

    def receive(self, data: bytes, *, stopping: bool = False) -> list[Event]:
        """Handle what was read (at most ``FRAMES_PER_TURN`` frames of it; see :attr:`more`).

        Args:
            data: bytes read (``b""`` to go on with the frames left).
            stopping: the daemon is stopping: new streams are refused.

        Returns:
            The events of the turn, in order.  After a connection error (a
            protocol error, a flood) :attr:`state` is :attr:`ConnState.FAILED`,
            ``GOAWAY`` with its code is queued, and the events before it are
            returned (the caller ends the streams they opened).
        """
        if self.ending:
            self.more = False
            return []
        h2 = self.h2
        frames = h2.incoming_buffer
        frames.budget = FRAMES_PER_TURN
        frames.more = False
        try:
            received = h2.receive_data(data)
        except ProtocolError as exc:
            # h2 queued GOAWAY with the error code.
            logger.debug("mhd2: HTTP/2 protocol error from %s: %s", self.peer, exc)
            self.state = ConnState.FAILED
            self.ending = True
            self.more = False
            return []
        self.more = frames.more
        if not self._window_opened:
            self._window_opened = True
            self._open_connection_window()
        out: list[Event] = []
        opened = 0
        if received:
            opened = self._translate(received, out, stopping)
        if self.state is not ConnState.FAILED:
            self._count_floods(opened)
        return out

    def _open_connection_window(self) -> None:
        """Widen the connection's receive window (once the client's preface is in)."""
        increment = connection_window(self._options)
        if increment:
            try:
                self.h2.increment_flow_control_window(increment)
            except ProtocolError:  # the connection is closing already
                pass

    def _translate(self, received: list[h2e.Event], out: list[Event], stopping: bool) -> int:
        """``h2``'s events into mhd2's (appended to *out*); stop at a flood.

        Returns:
            How many streams were opened.
        """
        active = self.active
        opened = 0
        # The END_STREAM of a request's own HEADERS is in its RequestReceived (ended).
        folded: h2e.StreamEnded | None = None
        for event in received:
            if isinstance(event, h2e.DataReceived):
                sid = event.stream_id
                flow = event.flow_controlled_length or 0
                if sid in active:
                    out.append(DataReceived(sid, event.data or b"", flow))
                elif sid is not None:
                    self.acknowledge(sid, flow)
            elif isinstance(event, h2e.RequestReceived):
                new = self._on_request(event, stopping)
                if new is not None:
                    out.append(new)
                    if type(new) is RequestReceived:
                        opened += 1
                        folded = event.stream_ended
            elif isinstance(event, h2e.StreamEnded):
                if event is not folded and event.stream_id in active:
                    out.append(BodyEnded(event.stream_id))
            elif isinstance(event, h2e.WindowUpdated):
                sid = event.stream_id or 0
                if sid == 0 or sid in active:
                    out.append(WindowOpened(sid))
                    self._guard.useful_update()
            elif isinstance(event, h2e.StreamReset):
                if not event.remote_reset:
                    # h2 reset the stream for a stream error of the client's.
                    self._guard.provoked()
                if event.stream_id in active:
                    out.append(StreamCancelled(event.stream_id, RequestEndedCode.CLIENT_ABORT,
                                               by_client=True))
            elif isinstance(event, h2e.TrailersReceived):
                self._on_trailers(event, out)
            elif isinstance(event, h2e.PingReceived):
                if self._flood(self._guard.ping()):
                    return opened
            elif isinstance(event, h2e.PingAckReceived):
                if self._ping_payload and event.ping_data == self._ping_payload:
                    frames = self.h2.incoming_buffer
                    frames.idle = max(0, frames.idle - 1)  # (an ack asked for)
                    out.append(PingAnswered())
                elif self.announced and event.ping_data == SHUTDOWN_PING:
                    frames = self.h2.incoming_buffer
                    frames.idle = max(0, frames.idle - 1)
                    out.append(ShutdownAnswered())
            elif isinstance(event, h2e.RemoteSettingsChanged):
                if self._flood(self._guard.settings()):
                    return opened
                if SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                    out.append(WindowOpened(0))
            elif isinstance(event, h2e.ConnectionTerminated):
                # The client's GOAWAY (RFC 9113 §6.8): its streams are still
                # answered, frames for them accepted (see ServerH2), no new
                # ones; the server's GOAWAY in return ("Endpoints SHOULD
                # always send a GOAWAY frame before closing a connection"),
                # and the connection ends when the last stream has.
                self.goaway()
                out.append(GoawayReceived())
        return opened

    def _on_request(self, event: h2e.RequestReceived,
                    stopping: bool) -> RequestReceived | RequestMalformed | None:
        """Open a stream for a request, or refuse it (``None``), or reset it as
        malformed (:class:`RequestMalformed`)."""
        stream_id = event.stream_id
        if stream_id is None:
            return None
        options = self._options
        if self.state is not ConnState.OPEN or (stopping and not self.announced):
            self._refuse(stream_id, ErrorCodes.REFUSED_STREAM)
            return None
        if len(self.active) >= options.http2_max_concurrent_streams:
            # RFC 9113 §5.1.2: "An endpoint that receives a HEADERS frame that
            # causes its advertised concurrent stream limit to be exceeded MUST
            # treat this as a stream error of type PROTOCOL_ERROR or REFUSED_STREAM."
            self._refuse(stream_id, ErrorCodes.REFUSED_STREAM)
            return None
        ended = event.stream_ended is not None
        try:
            head = check_request_head(event.headers or [])
            if ended and head.content_length:
                raise Malformed("Content-Length without a body")
        except Malformed as exc:
            self._malformed(stream_id, str(exc))
            self._refuse(stream_id, ErrorCodes.PROTOCOL_ERROR)
            return RequestMalformed(stream_id)
        self.active.add(stream_id)
        self._last_stream_id = stream_id
        self.served += 1
        limit = options.max_requests_per_connection
        if limit is not None and self.served >= limit:
            # As HTTP/1's "Connection: close" after the last request: GOAWAY.
            self.goaway()
        return RequestReceived(stream_id, head, ended)

    def _on_trailers(self, event: h2e.TrailersReceived, out: list[Event]) -> None:
        stream_id = event.stream_id
        if stream_id is None or stream_id not in self.active:
            return
        try:
            if event.stream_ended is None:
                # RFC 9113 §8.1: a trailer section is "a HEADERS frame ... with
                # the END_STREAM flag set".
                raise Malformed("a second HEADERS frame without END_STREAM")
            fields = check_trailers(event.headers or [])
        except Malformed as exc:
            # (Reset by the caller once the request's end is reported; counted now.)
            self._malformed(stream_id, str(exc))
            self._count_provoked()
            out.append(StreamCancelled(stream_id, RequestEndedCode.HTTP_PROTOCOL_ERROR,
                                       by_client=False))
            return
        out.append(TrailersReceived(stream_id, fields))

    def _malformed(self, stream_id: int, detail: str) -> None:
        # RFC 9113 §8.1.1: "Malformed requests or responses that are detected
        # MUST be treated as a stream error of type PROTOCOL_ERROR."
        logger.debug("mhd2: malformed HTTP/2 request on stream %d from %s: %s", stream_id,
                     self.peer, detail)

    def _refuse(self, stream_id: int, code: ErrorCodes) -> None:
        """Reset a stream the client opened (refused, or malformed); the reset counts
        against the reset rate (CVE-2025-8671, "MadeYouReset")."""
        self._count_provoked()
        self.reset(stream_id, code)

    def _count_provoked(self) -> None:
        """One stream reset the client's frames provoked (see :meth:`_count_floods`)."""
        self._guard.provoked()
        self.h2.resets_sent += 1  # (sent for the client's frames, as h2's own)

    # -- flood accounting -------------------------------------------------------------------

    def _count_floods(self, opened: int) -> bool:
        """Count the frames of the last turn against the flood rates
        (:meth:`FloodGuard.turn <mhd2.http2.guard.FloodGuard.turn>`; *opened*
        streams were opened), from ``h2``'s counters, which start again at zero.

        Returns:
            Whether the connection is to end (``GOAWAY`` ENHANCE_YOUR_CALM queued).
        """
        h2 = self.h2
        frames = h2.incoming_buffer
        why = self._guard.turn(resets=frames.resets, idle=frames.idle,
                               window_updates=frames.window_updates,
                               resets_sent=h2.resets_sent, opened=opened)
        frames.resets = frames.idle = frames.window_updates = h2.resets_sent = 0
        return self._flood(why)

    def _flood(self, why: str | None) -> bool:
        """Abuse (*why*): ``GOAWAY`` ENHANCE_YOUR_CALM, and the engine is FAILED.

        Returns:
            Whether the connection is to end (*why* was not ``None``).
        """
        if why is None:
            return False
        logger.warning("mhd2: HTTP/2 connection from %s ended: %s", self.peer, why)
        self.h2.close_connection(ErrorCodes.ENHANCE_YOUR_CALM,
                                 last_stream_id=self._last_stream_id)
        self.state = ConnState.FAILED
        self.ending = True
        return True
