"""The HTTP/2 connection loop: one ``h2`` state machine over one transport.

One task per connection owns a nursery; in it run the connection's reader
(this task), its writer, and one task per stream that needs one
(:class:`~mhd2.http2.stream.H2Stream`), so every stream ends before its
connection does.  A request answered at once from memory needs none: the
reader serves it (:meth:`H2Stream.serve_now
<mhd2.http2.stream.H2Stream.serve_now>`).  All ``h2`` calls happen in trio
tasks of one thread without an ``await`` in the middle, so the state machine
needs no lock.

* **One write at a time.**  Everyone queues frames into the ``h2`` object.
  The reader writes what is queued after each read it handled, unless a
  write is under way; streams wake the writer task instead (a stream's task
  may be cancelled, and a write cut mid-frame would break the connection).
  Streams and the reader wait until their frames are written
  (:meth:`flushed`) before they queue more, so what waits for the socket is
  bounded: a window's worth per stream, and the reader reads nothing while
  its answers (responses, ``PING`` and ``SETTINGS`` acks) cannot be written.
* **Flow control is the backpressure.**  Received DATA is acknowledged only
  when the application has consumed it (:meth:`acknowledge`).
* **Limits.**  The received frames are handled by
  :class:`~mhd2.http2.frames_in.FramesIn` (streams beyond
  ``http2_max_concurrent_streams`` refused, malformed ones reset, floods
  ended with ``GOAWAY`` ENHANCE_YOUR_CALM); the ``h2`` state machine and the
  flood rates are made in :mod:`mhd2.http2.machine` and :mod:`mhd2.http2.guard`.
  The reader handles at most ``FRAMES_PER_TURN`` frames of a read per turn
  and yields between turns (the answers to one read are written together).
* **Timeouts.**  With no stream running the connection waits for one for
  ``keep_alive_timeout`` (the first one: ``timeout``), counted from the end
  of the last stream -- control frames are not activity -- then sends
  ``GOAWAY`` and closes; a write that moves no byte for ``timeout`` ends the
  connection; each stream has its own inactivity limit (see the stream
  module).  A connection whose streams are all parked is pinged
  (:mod:`mhd2.http2.liveness`).
* **Graceful stop.**  ``GOAWAY`` with the last stream id processed; the
  streams running finish (within the daemon's grace period), then the
  connection closes.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import trio
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError
from hyperframe.frame import GoAwayFrame

from ..callbacks import report
from ..enums import ConnectionEvent, RequestEndedCode
from ..transport import TransportError
from .frames_in import FramesIn
from .guard import FloodGuard
from .liveness import Liveness
from .machine import FRAMES_PER_TURN, connection_window, new_h2

if TYPE_CHECKING:
    from ..connection_info import ConnectionInfo
    from ..shared import Shared
    from ..transport import Transport
    from .stream import H2Stream

__all__ = ["HTTP2Connection"]

logger = logging.getLogger("mhd2")

#: Bytes asked for per read.
RECV_SIZE = 64 * 1024
#: Bound on the last writes (GOAWAY) when a connection ends.
FINAL_WRITE_SECONDS = 2.0
#: When the connection ends (the client left, a protocol error), upgrade
#: handlers (RFC 8441 tunnels) get this long to see the broken stream and
#: return before they are cancelled.
TUNNEL_END_SECONDS = 2.0
#: The idle deadline may be off by this many seconds at most (an eighth of
#: the idle limit when that is shorter).
IDLE_SLACK = 1.0


class HTTP2Connection(FramesIn):
    """Serve HTTP/2 streams on one transport until the connection ends.

    Args:
        transport: the connection's transport (closed at the end).
        info: what is known about the peer.
        shared: the daemon's shared record.
        initial: bytes already read (the preface, when the HTTP/1 loop saw it).
        notified: ``ConnectionEvent.STARTED`` was already reported.

    Resource handling:
        :meth:`run` always closes the transport and reports
        ``ConnectionEvent.CLOSED`` once; every stream's request has ended
        (``notify_request_ended`` once each) when it returns.
    """

    __slots__ = (
        "_batch",
        "_broken",
        "_closing",
        "_drained",
        "_extra",
        "_flush_asked",
        "_guard",
        "_idle_from",
        "_in_turn",
        "_initial",
        "_liveness",
        "_notified",
        "_nursery",
        "_read_scope",
        "_stop_reading",
        "_wake",
        "_writing",
        "h2",
        "info",
        "shared",
        "streams",
        "transport",
    )

    def __init__(self, transport: Transport, info: ConnectionInfo, shared: Shared,
                 initial: bytes = b"", *, notified: bool = False) -> None:
        self.transport = transport
        # A connection handed over by the HTTP/1 loop has run in the
        # transport's scope already; a scope serves one `with` block.
        transport.scope = trio.CancelScope()
        self.info = info
        self.shared = shared
        self._initial = initial
        self._notified = notified
        options = shared.options
        # Inbound fields are checked by mhd2.http2.checks; outbound ones are
        # made by mhd2 already lower-case and valid (Response.add_header and
        # the DCC footers check them; checks.strip_response_fields lowers
        # them): h2's own passes over every header list cost ~5 % per request.
        self.h2 = new_h2(options)
        self.streams: dict[int, H2Stream] = {}
        self._wake = trio.Event()
        self._batch = trio.Event()
        self._extra: list[bytes] = []
        self._writing = False
        self._flush_asked = False
        self._goaway_sent = False
        self._closing = False
        #: Set when the last stream has ended (made by _let_tunnels_end).
        self._drained: trio.Event | None = None
        self._dead = False
        self._broken = False
        self._served = 0
        self._useful_updates = 0
        self._provoked = 0
        self._idle_from = 0.0  # when the last stream ended (or the connection began)
        self._liveness: Liveness | None = None  # made when a stream first parks
        self._last_stream_id = 0
        self._read_scope = trio.CancelScope()
        self._in_turn = False  # the reader handles a read (and writes its answers)
        self._stop_reading = False
        self._nursery: trio.Nursery | None = None
        self._guard = FloodGuard(options.http2_max_concurrent_streams)

    # -- daemon-facing ----------------------------------------------------------------

    def close_if_idle(self) -> bool:
        """Graceful stop: ``GOAWAY`` now; close at once if no stream runs.

        Parked requests are woken (they end with ``DAEMON_SHUTDOWN``, answered
        503); running ones finish within the grace period.

        Returns:
            True if no stream was running.
        """
        self._send_goaway()
        for stream in list(self.streams.values()):
            stream.begin_stop()
        if not self.streams:
            self._closing = True
            self._stop_reader()
            return True
        return False

    def cancel(self) -> None:
        """End the connection now (the grace period is over)."""
        self._cut(RequestEndedCode.DAEMON_SHUTDOWN)
        self._closing = True
        self.transport.scope.cancel()

    # -- used by the streams ------------------------------------------------------------

    @property
    def ending(self) -> bool:
        """The connection is being torn down (protocol error, abuse, or gone)."""
        return self._dead or self._broken

    def wake_writer(self) -> None:
        """Frames were queued: have the writer send them."""
        self._wake.set()

    async def flushed(self) -> None:
        """Wait until what is queued now has been written."""
        if self._broken:
            await trio.lowlevel.checkpoint()
            return
        batch = self._batch
        self._flush_asked = True
        self._wake.set()
        await batch.wait()

    def acknowledge(self, stream_id: int, size: int) -> None:
        """*size* flow-controlled bytes of *stream_id* are consumed: WINDOW_UPDATE."""
        if size and not self._dead:
            try:
                self.h2.acknowledge_received_data(size, stream_id)
            except ProtocolError:
                return
            self._wake.set()

    def stream_parked(self, delta: int) -> None:
        """*delta* streams parked (+1: a suspended request waits) or woke (-1):
        with ``http2_ping_interval``, a connection whose streams are all parked
        is pinged (:class:`~mhd2.http2.liveness.Liveness`)."""
        live = self._liveness
        if live is None:
            options = self.shared.options
            if options.http2_ping_interval is None:
                return
            live = self._liveness = Liveness(options.http2_ping_interval,
                                             options.http2_ping_timeout)
        if live.parked(delta) and self._nursery is not None:
            self._nursery.start_soon(live.run, self)

    def give_up(self) -> None:
        """The client did not answer a ``PING``: end its streams (``TIMEOUT_REACHED``),
        ``GOAWAY``, and close once they have ended."""
        self._cut(RequestEndedCode.TIMEOUT_REACHED)
        self._send_goaway()
        if not self.streams:
            self._stop_reader()

    def stream_done(self, stream: H2Stream, *, in_reader: bool = False) -> None:
        """A stream has ended (its request too); *in_reader*: it was served by the
        reader, which writes what it queued (no need to wake the writer)."""
        self.streams.pop(stream.id, None)
        if not in_reader and self._queued():
            self._wake.set()
        if not self.streams:
            if self._drained is not None:
                self._drained.set()
            self._idle_from = trio.current_time()
            if self._goaway_sent:
                self._stop_reader()
            else:
                self._settle_deadline()

    def _queued(self) -> bool:
        """Frames wait to be written (so the writer has something to do).

        Looks at ``h2``'s outbound buffer without taking it; should a later
        ``h2`` not have it, the answer is always yes (correct, one wake-up
        more per read)."""
        return bool(getattr(self.h2, "_data_to_send", True)) or bool(self._extra)

    # -- the connection's task ------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection to its end (see the class docstring)."""
        if not self._notified:
            self._notify(ConnectionEvent.STARTED)
        transport = self.transport
        code = RequestEndedCode.CONNECTION_ERROR
        linger = False
        try:
            with transport.scope:
                self._idle_from = trio.current_time()
                self._settle_deadline()
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    self._wake.set()  # the server preface (SETTINGS) new_h2 queued
                    nursery.start_soon(self._writer)
                    if self.shared.stopping:
                        # Handed over (h2c) while the daemon began to stop.
                        self.close_if_idle()
                    code = await self._read_loop()
                    self._cut(code)
                    await self._let_tunnels_end()
                    await self.flushed()
                    nursery.cancel_scope.cancel()
            # The client may still be sending: drain a while after the GOAWAY
            # so that a reset does not destroy it before the client read it.
            # (On TLS, which cannot half-close, the close_notify says it.)
            linger = (not self._broken and code is not RequestEndedCode.CLIENT_ABORT
                      and transport.tls is None)
        except TransportError:
            code = RequestEndedCode.CLIENT_ABORT
        except Exception:
            logger.exception("mhd2: internal error while serving HTTP/2 to %s",
                             self.info.client_address)
        finally:
            self._cut(code)
            if transport.scope.cancelled_caught and not self._closing:
                linger = await self._final_goaway() and transport.tls is None
            if linger:
                await transport.linger()
            await transport.close()
            self._notify(ConnectionEvent.CLOSED)

    async def _let_tunnels_end(self) -> None:
        """The connection ends: upgrade handlers still running (their streams cut
        already) get :data:`TUNNEL_END_SECONDS` to see it and return -- as over
        HTTP/1, where a handler sees a broken connection, not a cancellation."""
        if not any(stream.upgraded is not None for stream in self.streams.values()):
            return
        drained = self._drained = trio.Event()
        with trio.move_on_after(TUNNEL_END_SECONDS):
            await drained.wait()

    def _stop_reader(self) -> None:
        """End the reader: at once if it waits for input, else when its turn with
        the last read is over -- its write included: a write cut in the middle
        would lose the answers in it and break the frame stream."""
        self._stop_reading = True
        if not self._in_turn:
            self._read_scope.cancel()

    def _open_connection_window(self) -> None:
        """Widen the connection's receive window (once the client's preface is in)."""
        increment = connection_window(self.shared.options)
        if increment:
            try:
                self.h2.increment_flow_control_window(increment)
            except ProtocolError:  # the connection is closing already
                pass

    async def _read_loop(self) -> RequestEndedCode:
        """Read and handle frames until the connection is to end; return the code for
        streams still running then."""
        data, self._initial = self._initial, b""
        transport = self.transport
        frames = self.h2.incoming_buffer
        opened = False
        answered = False
        more = False
        with self._read_scope:
            while True:
                if data or more:
                    self._in_turn = True
                    try:
                        # At most FRAMES_PER_TURN frames now; the rest after a
                        # checkpoint (a read of tiny frames must not hold the loop).
                        frames.budget = FRAMES_PER_TURN
                        frames.more = False
                        try:
                            events = self.h2.receive_data(data)
                        except ProtocolError as exc:
                            # h2 queued GOAWAY with the error code.
                            logger.debug("mhd2: HTTP/2 protocol error from %s: %s",
                                         self.info.client_address, exc)
                            self._goaway_sent = True
                            return RequestEndedCode.HTTP_PROTOCOL_ERROR
                        more = frames.more
                        if not opened:
                            opened = True
                            self._open_connection_window()
                        if self._handle(events):
                            return RequestEndedCode.HTTP_PROTOCOL_ERROR
                        if self._goaway_sent and self._dead:
                            return RequestEndedCode.HTTP_PROTOCOL_ERROR
                        # (The answers to one read are written together, after
                        # its last turn, as when it was handled in one.)
                        answered = not more and self._queued()
                        if answered:
                            if self._writing:
                                await self.flushed()
                            elif not await self._write():
                                return RequestEndedCode.CLIENT_ABORT
                    finally:
                        self._in_turn = False
                    if self._stop_reading:
                        break
                    if more:
                        # The rest of the read, once the other tasks had their turn.
                        await trio.lowlevel.checkpoint()
                        data = b""
                        continue
                try:
                    # After an answer the client's next frames come a moment
                    # later: reading after the other connections' turn finds
                    # them, where reading at once would find nothing and wait.
                    data = await (transport.receive_later(RECV_SIZE) if answered
                                  else transport.receive(RECV_SIZE))
                except TransportError:
                    data = b""
                if not data:
                    self._broken = True
                    return RequestEndedCode.CLIENT_ABORT
        return RequestEndedCode.DAEMON_SHUTDOWN if self.shared.stopping \
            else RequestEndedCode.CONNECTION_ERROR

    async def _writer(self) -> None:
        """The connection's writer: writes what the streams queued when they wake it."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            # While the reader writes, its write takes what is queued (see _write).
            if not self._writing and not await self._write():
                return

    async def _write(self) -> bool:
        """Write what is queued, until nothing is (one task at a time: not :attr:`_writing`).

        The writer task and the reader call this; a stream only ever asks the
        writer (:meth:`flushed`): a stream's task may be cancelled, and a write
        cut in the middle of a frame would break the connection.

        Returns:
            False if the client is gone (the streams and the reader are then ended).
        """
        transport = self.transport
        h2 = self.h2
        # A write cancelled midway (the connection's deadline, or its end) leaves
        # _writing set: the byte stream is no longer whole, nothing more is
        # written on it (see _final_goaway).
        self._writing = True
        while True:
            done, self._batch = self._batch, trio.Event()
            self._flush_asked = False
            data = h2.data_to_send()
            if self._extra:
                data += b"".join(self._extra)
                self._extra.clear()
            if data and not self._broken:
                try:
                    await transport.send(data)
                except TransportError:
                    # The client is gone: end the streams and the reader.
                    self._writing = False
                    self._broken = True
                    self._cut(RequestEndedCode.CLIENT_ABORT)
                    self._stop_reader()
                    done.set()
                    return False
            done.set()
            # Frames queued, or a flush asked for, during this write: once more.
            if not (self._flush_asked or self._queued()):
                self._writing = False
                self._settle_deadline()
                return True

    # -- endings ----------------------------------------------------------------------------

    def _send_goaway(self) -> None:
        """A graceful ``GOAWAY`` (NO_ERROR, the last stream id processed), once.

        Built by hand: ``h2`` moves to its closed state on any GOAWAY it
        sends and would then refuse the frames of the streams still running.
        """
        if self._goaway_sent:
            return
        self._goaway_sent = True
        frame = GoAwayFrame(0, last_stream_id=self._last_stream_id, error_code=ErrorCodes.NO_ERROR)
        self._extra.append(frame.serialize())
        self._wake.set()

    async def _final_goaway(self) -> bool:
        """The connection timed out: ``GOAWAY`` if the byte stream is in one piece.

        Returns:
            Whether it was sent.
        """
        if self._writing or self._dead or self._broken:
            return False
        self._send_goaway()
        data = self.h2.data_to_send() + b"".join(self._extra)
        with trio.CancelScope(shield=True), trio.move_on_after(FINAL_WRITE_SECONDS):
            try:
                await self.transport.send(data)
                return True
            except TransportError:
                pass
        return False

    def _cut(self, code: RequestEndedCode) -> None:
        """End every stream still running with *code*."""
        for stream in list(self.streams.values()):
            stream.cancel(code)

    def _settle_deadline(self) -> None:
        """The connection's deadline: none while streams run (each has its own)
        except during a write; else the idle limit, counted from when the last
        stream ended.

        Control frames are not activity: a ``PING`` or ``SETTINGS`` (and the
        write of its ack) leaves the idle deadline where it is, so they cannot
        keep an idle connection open past ``keep_alive_timeout`` (the HTTP/2
        twin of a client that trickles bytes between HTTP/1 requests).
        """
        transport = self.transport
        options = self.shared.options
        if self.streams:
            transport.timeout = options.timeout
            if not self._writing and transport.scope.deadline != math.inf:
                # (Moving a deadline is not free: only when one is set.)
                transport.disarm()
            return
        idle = options.keep_alive_timeout if self._served else options.timeout
        if transport.timeout != idle:
            transport.set_timeout(idle)  # (the limit of a write meanwhile)
        if idle is None:
            if transport.scope.deadline != math.inf:
                transport.disarm()
            return
        deadline = self._idle_from + idle
        # (Moved only when off by more than the transport's slack: a write
        # re-arms it to its own limit, and moving a deadline is not free.)
        if abs(transport.scope.deadline - deadline) > min(IDLE_SLACK, idle / 8):
            transport.scope.deadline = deadline

    def _notify(self, event: ConnectionEvent) -> None:
        notify = self.shared.options.notify_connection
        if notify is not None:
            report(notify, self.info, event)
