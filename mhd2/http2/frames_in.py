"""What the client's frames do: ``h2`` events turned into stream work, refusals and GOAWAYs.

:class:`FramesIn` is the half of :class:`~mhd2.http2.connection.HTTP2Connection`
that handles the events ``h2`` made of the bytes read -- synchronous, no
I/O: it opens streams (within ``http2_max_concurrent_streams``, the rest
``REFUSED_STREAM``), feeds them DATA, END_STREAM, trailers, window updates
and resets, answers malformed requests with ``RST_STREAM(PROTOCOL_ERROR)``,
and ends a flooding connection (:class:`~mhd2.http2.guard.FloodGuard`) with
``GOAWAY`` ENHANCE_YOUR_CALM.  The connection queues what these write and its
writer sends it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    PingAckReceived,
    PingReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes

from ..enums import RequestEndedCode
from .checks import Malformed, check_request_head, check_trailers
from .stream import H2Stream

if TYPE_CHECKING:
    import trio

    from ..connection_info import ConnectionInfo
    from ..shared import Shared
    from .guard import FloodGuard
    from .liveness import Liveness
    from .machine import ServerH2

__all__ = ["FramesIn"]

logger = logging.getLogger("mhd2")


class FramesIn:
    """Handling of received ``h2`` events (mixed into the connection).

    The connection provides the attributes declared here (it sets the four
    slots of this class too, in its ``__init__``) and the three methods that
    raise :exc:`NotImplementedError` here.
    """

    __slots__ = ("_dead", "_goaway_sent", "_last_stream_id", "_provoked", "_served",
                 "_useful_updates")

    h2: ServerH2
    info: ConnectionInfo
    shared: Shared
    streams: dict[int, H2Stream]
    _guard: FloodGuard
    _goaway_sent: bool
    _dead: bool
    _served: int
    _last_stream_id: int
    _useful_updates: int
    _provoked: int
    _liveness: Liveness | None
    _nursery: trio.Nursery | None

    def acknowledge(self, stream_id: int, size: int) -> None:
        raise NotImplementedError

    def _send_goaway(self) -> None:
        raise NotImplementedError

    def _settle_deadline(self) -> None:
        raise NotImplementedError

    def _stop_reader(self) -> None:
        raise NotImplementedError

    def _handle(self, events: list[Event]) -> bool:
        """Act on the events of one turn, in order (stop at a flood); count the
        turn's frames against the flood rates; then start the streams opened.

        A stream starts only once all the frames of the turn are handled: a
        request reset in the same turn (rapid reset) costs no application
        work and counts against the reset rate.  Past a flood rate no stream
        starts: the application is called at most once per reset the budget
        allows.

        Returns:
            Whether the connection is to end (``GOAWAY`` ENHANCE_YOUR_CALM queued).
        """
        fresh: list[H2Stream] = []
        try:
            if events:
                self._handle_events(events, fresh)
        finally:
            ended = self._dead or self._count_floods(len(fresh))
            for stream in fresh:
                if ended:
                    stream.cancel(RequestEndedCode.HTTP_PROTOCOL_ERROR)
                self._start(stream)
        return ended

    def _count_floods(self, opened: int) -> bool:
        """Count the frames of the last turn against the flood rates.

        * Stream resets, one budget (:meth:`FloodGuard.resets`): every
          ``RST_STREAM`` the client sent, also for streams already answered
          (CVE-2023-44487, "rapid reset"), and every stream whose reset it
          provoked (CVE-2025-8671, "MadeYouReset"): the stream errors ``h2``
          answered with ``RST_STREAM`` (a second HEADERS on a half-closed
          stream, a ``WINDOW_UPDATE`` overflowing 2^31-1, DATA after the
          client's END_STREAM...: a ``StreamReset`` event not from the client)
          and the streams mhd2 refused or found malformed (:meth:`_refuse`).
        * Frames that carry nothing (CVE-2019-9518): empty DATA, PRIORITY,
          unknown types, acks nobody asked for, ``WINDOW_UPDATE`` for a
          stream mhd2 is not sending on (CVE-2019-9517), and frames on a
          stream reset already (``h2`` answers each with one more
          ``RST_STREAM``; a client's DATA in flight when the server reset
          the stream does that too, so these are not stream resets);
          *opened* streams earn some credit.

        Returns:
            Whether the connection is to end (``GOAWAY`` ENHANCE_YOUR_CALM queued).
        """
        h2 = self.h2
        frames = h2.incoming_buffer
        provoked = self._provoked
        resets = frames.resets + provoked
        idle = (frames.idle + max(0, frames.window_updates - self._useful_updates)
                + max(0, h2.resets_sent - provoked))
        frames.resets = frames.idle = frames.window_updates = 0
        h2.resets_sent = self._provoked = self._useful_updates = 0
        guard = self._guard
        if resets and self._flood(guard.resets(resets)):
            return True
        return self._flood(guard.idle_frames(idle, opened))

    def _start(self, stream: H2Stream) -> None:
        """Serve *stream* in the reader if it can be (:meth:`H2Stream.serve_now`), else
        in a task of its own."""
        if not stream.gone.is_set() and stream.serve_now():
            return
        self._settle_deadline()
        assert self._nursery is not None
        self._nursery.start_soon(stream.run)

    def _handle_events(self, events: list[Event], fresh: list[H2Stream]) -> None:
        streams = self.streams
        for event in events:
            if isinstance(event, DataReceived):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.feed(event.data, event.flow_controlled_length)
                else:
                    self.acknowledge(event.stream_id, event.flow_controlled_length)
            elif isinstance(event, RequestReceived):
                stream = self._on_request(event)
                if stream is not None:
                    fresh.append(stream)
            elif isinstance(event, StreamEnded):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.feed_end()
            elif isinstance(event, WindowUpdated):
                if event.stream_id == 0:
                    for stream in streams.values():
                        stream.window_opened()
                    self._useful_updates += 1
                else:
                    stream = streams.get(event.stream_id)
                    if stream is not None:
                        stream.window_opened()
                        self._useful_updates += 1
            elif isinstance(event, StreamReset):
                if not event.remote_reset:
                    # h2 reset the stream for a stream error of the client's.
                    self._provoked += 1
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.closed_local = True
                    stream.body_ended = True
                    stream.cancel(RequestEndedCode.CLIENT_ABORT)
            elif isinstance(event, TrailersReceived):
                self._on_trailers(event)
            elif isinstance(event, PingReceived):
                if self._flood(self._guard.ping()):
                    return
            elif isinstance(event, PingAckReceived):
                live = self._liveness
                if live is not None and live.answered(event.ping_data):
                    frames = self.h2.incoming_buffer
                    frames.idle = max(0, frames.idle - 1)  # (an ack asked for)
            elif isinstance(event, RemoteSettingsChanged):
                if self._flood(self._guard.settings()):
                    return
                if SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                    for stream in streams.values():
                        stream.window_opened()
            elif isinstance(event, ConnectionTerminated):
                # The client's GOAWAY (RFC 9113 §6.8): its streams are still
                # answered, frames for them accepted (see ServerH2), no new
                # ones; the server's GOAWAY in return ("Endpoints SHOULD
                # always send a GOAWAY frame before closing a connection"),
                # and the connection ends when the last stream has.
                self._send_goaway()
                if not streams:
                    self._stop_reader()

    def _on_request(self, event: RequestReceived) -> H2Stream | None:
        """Open a stream for a request (or refuse it); the caller starts it."""
        stream_id = event.stream_id
        if stream_id is None:
            return None
        options = self.shared.options
        if self._goaway_sent or self.shared.stopping:
            self._refuse(stream_id, ErrorCodes.REFUSED_STREAM)
            return None
        if len(self.streams) >= options.http2_max_concurrent_streams:
            # RFC 9113 §5.1.2: "An endpoint that receives a HEADERS frame that
            # causes its advertised concurrent stream limit to be exceeded MUST
            # treat this as a stream error of type PROTOCOL_ERROR or REFUSED_STREAM."
            self._refuse(stream_id, ErrorCodes.REFUSED_STREAM)
            return None
        ended = event.stream_ended is not None
        try:
            head = check_request_head(event.headers)
            if ended and head.content_length:
                raise Malformed("Content-Length without a body")
        except Malformed as exc:
            self._malformed(stream_id, str(exc))
            return None
        stream = H2Stream(self, stream_id, head, ended)  # type: ignore[arg-type]
        self.streams[stream_id] = stream
        self._last_stream_id = stream_id
        self._served += 1
        limit = options.max_requests_per_connection
        if limit is not None and self._served >= limit:
            # As HTTP/1's "Connection: close" after the last request: GOAWAY.
            self._send_goaway()
        return stream

    def _on_trailers(self, event: TrailersReceived) -> None:
        stream = self.streams.get(event.stream_id) if event.stream_id is not None else None
        if stream is None:
            return
        try:
            if event.stream_ended is None:
                # RFC 9113 §8.1: a trailer section is "a HEADERS frame ... with
                # the END_STREAM flag set".
                raise Malformed("a second HEADERS frame without END_STREAM")
            stream.trailers = check_trailers(event.headers)
        except Malformed as exc:
            self._malformed(stream.id, str(exc))
            stream.cancel(RequestEndedCode.HTTP_PROTOCOL_ERROR)

    def _malformed(self, stream_id: int, detail: str) -> None:
        # RFC 9113 §8.1.1: "Malformed requests or responses that are detected
        # MUST be treated as a stream error of type PROTOCOL_ERROR."
        logger.debug("mhd2: malformed HTTP/2 request on stream %d from %s: %s", stream_id,
                     self.info.client_address, detail)
        self._refuse(stream_id, ErrorCodes.PROTOCOL_ERROR)

    def _refuse(self, stream_id: int, code: ErrorCodes) -> None:
        """Reset a stream the client opened (refused, or malformed); the reset counts
        against the reset rate (CVE-2025-8671, "MadeYouReset")."""
        h2 = self.h2
        self._provoked += 1
        h2.resets_sent += 1  # (sent for the client's frames, as h2's own)
        try:
            h2.reset_stream(stream_id, code)
        except ProtocolError:
            pass

    def _flood(self, why: str | None) -> bool:
        """Abuse (*why*): ``GOAWAY`` ENHANCE_YOUR_CALM, then end the connection.

        Returns:
            Whether the connection is to end (*why* was not ``None``).
        """
        if why is None:
            return False
        logger.warning("mhd2: HTTP/2 connection from %s ended: %s", self.info.client_address, why)
        self.h2.close_connection(ErrorCodes.ENHANCE_YOUR_CALM,
                                 last_stream_id=self._last_stream_id)
        self._goaway_sent = True
        self._dead = True
        return True
