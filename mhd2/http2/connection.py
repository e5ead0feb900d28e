"""The HTTP/2 connection task: it reads, writes, and starts stream tasks.

Everything the client's frames mean is decided by the connection's sans-IO
engine (:class:`~mhd2.http2.engine.H2Engine`); this module does the I/O
around it.  One task per connection owns a nursery; in it run the
connection's reader (this task), its writer, and one task per stream that
needs one (:func:`~mhd2.http2.serve.run_stream`), so every stream ends before
its connection does.  A request answered at once from memory needs none: the
reader serves it (:func:`~mhd2.http2.serve.serve_now`).  All engine calls
happen in trio tasks of one thread without an ``await`` in the middle, so
the state machine needs no lock.  Streams see the connection as a
:class:`~mhd2.http2.port.StreamPort`.

* **One write at a time** (:class:`~mhd2.http2.writer.FrameWriter`).
  Everyone queues frames into the engine.  The reader writes what is queued
  after each read it handled, unless a write is under way; streams wake the
  writer task instead.  Streams and the reader wait until their frames are
  written (:meth:`flushed`) before they queue more, so what waits for the
  socket is bounded: a window's worth per stream, and the reader reads
  nothing while its answers (responses, ``PING`` and ``SETTINGS`` acks)
  cannot be written.
* **Flow control is the backpressure.**  Received DATA is acknowledged only
  when the application has consumed it (:meth:`acknowledge`).
* **Limits.**  The engine refuses streams beyond
  ``http2_max_concurrent_streams``, resets malformed ones and ends floods
  with ``GOAWAY`` ENHANCE_YOUR_CALM (:mod:`mhd2.http2.engine`,
  :mod:`mhd2.http2.guard`).  The engine handles at most ``FRAMES_PER_TURN``
  frames of a read per turn and the reader yields between turns (the
  answers to one read are written together).
* **Timeouts** (:mod:`mhd2.http2.idle`).  With no stream running the
  connection waits for one for ``keep_alive_timeout`` (the first one:
  ``timeout``), counted from the end of the last stream -- control frames
  are not activity -- then sends ``GOAWAY`` and closes; a write that moves
  no byte for ``timeout`` ends the connection; each stream has its own
  inactivity limit (see the stream module).  A connection whose streams
  are all parked is pinged (:mod:`mhd2.http2.liveness`).
* **Graceful stop** (:mod:`mhd2.http2.stop`).  Announced first, then
  ``GOAWAY`` with the last stream id processed; the streams running finish
  (within the daemon's grace period), then the connection closes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from ..callbacks import report
from ..enums import ConnectionEvent, RequestEndedCode
from ..transport import TransportError
from . import events as ev
from .engine import ConnState, H2Engine
from .idle import IdleDeadline
from .liveness import Liveness
from .serve import report_malformed, run_stream, serve_now
from .stop import GracefulStop
from .stream import H2Stream
from .writer import FrameWriter

if TYPE_CHECKING:
    from ..connection_info import ConnectionInfo
    from ..shared import Shared
    from ..transport import Transport

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


class HTTP2Connection:
    """Serve HTTP/2 streams on one transport until the connection ends.

    Args:
        transport: the connection's transport (closed at the end).
        info: what is known about the peer.
        shared: the daemon's shared record.
        initial: bytes already read (the preface, when the HTTP/1 loop saw it).
        notified: ``ConnectionEvent.STARTED`` was already reported.

    The protocol state is the engine's (:attr:`engine`, one
    :class:`~mhd2.http2.engine.ConnState`); writing is the
    :class:`~mhd2.http2.writer.FrameWriter`'s.  The flags here only
    coordinate the reader: it handles a read (``_in_turn``) or is to stop
    after it (``_stop_reading``), and the daemon closed the connection
    itself (``_closing``: no final ``GOAWAY``).

    Resource handling:
        :meth:`run` always closes the transport and reports
        ``ConnectionEvent.CLOSED`` once; every stream's request has ended
        (``notify_request_ended`` once each) when it returns.
    """

    __slots__ = (
        "_closing",
        "_drained",
        "_idle",
        "_in_turn",
        "_initial",
        "_liveness",
        "_notified",
        "_nursery",
        "_read_scope",
        "_stop",
        "_stop_reading",
        "_writer",
        "engine",
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
        #: The sans-IO engine (its server preface queued).
        self.engine = H2Engine(shared.options, trio.current_time, info.client_address)
        self.streams: dict[int, H2Stream] = {}
        self._writer = FrameWriter(self.engine, transport, self._lost, self._settle_deadline)
        self._closing = False
        #: Set when the last stream has ended (made by _let_tunnels_end).
        self._drained: trio.Event | None = None
        self._stop = GracefulStop()
        self._idle = IdleDeadline(transport, shared.options)
        self._liveness: Liveness | None = None  # made when a stream first parks
        self._read_scope = trio.CancelScope()
        self._in_turn = False  # the reader handles a read (and writes its answers)
        self._stop_reading = False
        self._nursery: trio.Nursery | None = None

    # -- daemon-facing, and StopHost (what GracefulStop uses) ---------------------------

    def close_if_idle(self) -> bool:
        """Graceful stop: announce it, take the streams in flight, then ``GOAWAY``
        (:meth:`GracefulStop.begin <mhd2.http2.stop.GracefulStop.begin>`).

        Returns:
            True if no stream was running and the connection closes at once.
        """
        return self._stop.begin(self, self._nursery)

    def close_if_no_stream(self) -> bool:
        """After the final ``GOAWAY``: close now if no stream runs (else the
        last stream to end closes it); return whether it closes now."""
        if self.streams:
            return False
        self._closing = True
        self._stop_reader()
        return True

    def cancel(self) -> None:
        """End the connection now (the grace period is over)."""
        self._cut(RequestEndedCode.DAEMON_SHUTDOWN)
        self._closing = True
        self.transport.scope.cancel()

    # -- StreamPort (what the streams use) and PingHost (what Liveness uses) ----------

    @property
    def ending(self) -> bool:
        """The connection is being torn down (protocol error, abuse, or gone)."""
        return self.engine.ending

    @property
    def stream_count(self) -> int:
        """Streams running."""
        return len(self.streams)

    def wake_writer(self) -> None:
        """Frames were queued: have the writer send them."""
        self._writer.wake()

    async def flushed(self) -> None:
        """Wait until what is queued now has been written."""
        await self._writer.flushed()

    def acknowledge(self, stream_id: int, size: int) -> None:
        """*size* flow-controlled bytes of *stream_id* are consumed: WINDOW_UPDATE."""
        if self.engine.acknowledge(stream_id, size):
            self._writer.wake()

    def send_ping(self, payload: bytes) -> bool:
        """Queue a ``PING`` (for :class:`~mhd2.http2.liveness.Liveness`) and wake the writer."""
        if not self.engine.ping(payload):
            return False
        self._writer.wake()
        return True

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
        self.send_goaway()
        if not self.streams:
            self._stop_reader()

    def stream_done(self, stream_id: int, *, in_reader: bool = False) -> None:
        """A stream has ended (its request too); *in_reader*: it was served by the
        reader, which writes what it queued (no need to wake the writer)."""
        self.streams.pop(stream_id, None)
        engine = self.engine
        engine.stream_closed(stream_id)
        if not in_reader and engine.has_output():
            self._writer.wake()
        if not self.streams:
            if self._drained is not None:
                self._drained.set()
            self._idle.since = trio.current_time()
            if engine.state is not ConnState.OPEN:
                self._stop_reader()
            else:
                self._settle_deadline()

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
                self._idle.since = trio.current_time()
                self._settle_deadline()
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    self._writer.wake()  # the server preface (SETTINGS) the engine queued
                    nursery.start_soon(self._writer.run)
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
            linger = (self.engine.state is not ConnState.LOST
                      and code is not RequestEndedCode.CLIENT_ABORT and transport.tls is None)
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

    async def _read_loop(self) -> RequestEndedCode:
        """Read and hand what was read to the engine until the connection is to end;
        return the code for streams still running then."""
        data, self._initial = self._initial, b""
        transport = self.transport
        engine = self.engine
        shared = self.shared
        answered = False
        with self._read_scope:
            while True:
                if data or engine.more:
                    self._in_turn = True
                    try:
                        # At most FRAMES_PER_TURN frames now; the rest after a
                        # checkpoint (a read of tiny frames must not hold the loop).
                        events = engine.receive(data, stopping=shared.stopping)
                        if self._dispatch(events):
                            return RequestEndedCode.HTTP_PROTOCOL_ERROR
                        # (The answers to one read are written together, after
                        # its last turn, as when it was handled in one.)
                        answered = not engine.more and engine.has_output()
                        if answered:
                            writer = self._writer
                            if writer.writing:
                                await writer.flushed()
                            elif not await writer.write():
                                return RequestEndedCode.CLIENT_ABORT
                    finally:
                        self._in_turn = False
                    if self._stop_reading:
                        break
                    if engine.more:
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
                    engine.lost()
                    return RequestEndedCode.CLIENT_ABORT
        return RequestEndedCode.DAEMON_SHUTDOWN if shared.stopping \
            else RequestEndedCode.CONNECTION_ERROR

    def _dispatch(self, events: list[ev.Event]) -> bool:
        """Hand the engine's events of one turn to the streams, in order; then start
        the streams opened.

        A stream starts only once all the events of the turn are handled: a
        request reset in the same turn (rapid reset) costs no application
        work and counts against the reset rate.  After a connection error
        (a protocol error, a flood) no stream starts work: the ones opened
        are ended (``HTTP_PROTOCOL_ERROR``), so the application is called at
        most once per reset the budget allows.

        Returns:
            Whether the connection is to end (a connection error).
        """
        streams = self.streams
        fresh: list[H2Stream] = []
        try:
            for event in events:
                if isinstance(event, ev.RequestReceived):
                    stream = H2Stream(self, event.stream_id, event.head, event.ended)
                    streams[event.stream_id] = stream
                    fresh.append(stream)
                elif isinstance(event, ev.DataReceived):
                    streams[event.stream_id].feed(event.data, event.flow)
                elif isinstance(event, ev.BodyEnded):
                    streams[event.stream_id].feed_end()
                elif isinstance(event, ev.WindowOpened):
                    if event.stream_id == 0:
                        for stream in streams.values():
                            stream.window_opened()
                    else:
                        streams[event.stream_id].window_opened()
                elif isinstance(event, ev.StreamCancelled):
                    stream = streams[event.stream_id]
                    if event.by_client:
                        stream.reset_by_client()
                    else:
                        stream.malformed()
                elif isinstance(event, ev.TrailersReceived):
                    streams[event.stream_id].trailers = event.fields
                elif isinstance(event, ev.RequestMalformed):
                    report_malformed(self, event.status)
                elif isinstance(event, ev.PingAnswered):
                    if self._liveness is not None:
                        self._liveness.answered()
                elif isinstance(event, ev.ShutdownAnswered):
                    self._stop.answered()
                elif isinstance(event, ev.GoawayReceived):
                    self._writer.wake()
                    if not streams:
                        self._stop_reader()
        finally:
            failed = self.engine.state is ConnState.FAILED
            for stream in fresh:
                if failed:
                    stream.cancel(RequestEndedCode.HTTP_PROTOCOL_ERROR)
                self._start(stream)
        return failed

    def _start(self, stream: H2Stream) -> None:
        """Serve *stream* in the reader if it can be (:func:`serve_now`), else in a task."""
        if not stream.gone.is_set() and serve_now(stream):
            return
        self._settle_deadline()
        assert self._nursery is not None
        self._nursery.start_soon(run_stream, stream)

    # -- endings ----------------------------------------------------------------------------

    def send_goaway(self) -> None:
        """A graceful ``GOAWAY`` (the engine's, once), and wake the writer."""
        if self.engine.goaway():
            self._writer.wake()

    async def _final_goaway(self) -> bool:
        """The connection timed out: ``GOAWAY`` if the byte stream is in one piece.

        Returns:
            Whether it was sent.
        """
        engine = self.engine
        if self._writer.writing or engine.ending:
            return False
        engine.goaway()
        data = engine.data_to_send()
        with trio.CancelScope(shield=True), trio.move_on_after(FINAL_WRITE_SECONDS):
            try:
                await self.transport.send(data)
                return True
            except TransportError:
                pass
        return False

    def _lost(self) -> None:
        """A write failed (the client is gone): end the streams and the reader."""
        self._cut(RequestEndedCode.CLIENT_ABORT)
        self._stop_reader()

    def _cut(self, code: RequestEndedCode) -> None:
        """End every stream still running with *code*."""
        for stream in list(self.streams.values()):
            stream.cancel(code)

    def _settle_deadline(self) -> None:
        """The connection's deadline for where it is now (:meth:`IdleDeadline.settle
        <mhd2.http2.idle.IdleDeadline.settle>`): none while streams run but
        during a write, else the idle limit."""
        self._idle.settle(streams=bool(self.streams), writing=self._writer.writing,
                          served=self.engine.served > 0)

    def _notify(self, event: ConnectionEvent) -> None:
        notify = self.shared.options.notify_connection
        if notify is not None:
            report(notify, self.info, event)
