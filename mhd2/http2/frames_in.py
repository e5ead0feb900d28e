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
    from .machine import ServerH2

__all__ = ["FramesIn"]

logger = logging.getLogger("mhd2")


class FramesIn:
    """Handling of received ``h2`` events (mixed into the connection).

    The connection provides the attributes declared here (it sets the four
    slots of this class too, in its ``__init__``) and the three methods that
    raise :exc:`NotImplementedError` here.
    """

    __slots__ = ("_dead", "_goaway_sent", "_last_stream_id", "_served")

    h2: ServerH2
    info: ConnectionInfo
    shared: Shared
    streams: dict[int, H2Stream]
    _guard: FloodGuard
    _goaway_sent: bool
    _dead: bool
    _served: int
    _last_stream_id: int
    _nursery: trio.Nursery | None

    def acknowledge(self, stream_id: int, size: int) -> None:
        raise NotImplementedError

    def _send_goaway(self) -> None:
        raise NotImplementedError

    def _settle_deadline(self) -> None:
        raise NotImplementedError

    def _stop_reader(self) -> None:
        raise NotImplementedError

    def _handle(self, events: list[Event]) -> None:
        """Act on the events of one read, in order (stop at a flood); then start
        the streams they opened.

        A stream starts only once all the frames of the read are handled: a
        request reset in the same read (rapid reset) costs no application
        work and counts against the reset rate.
        """
        fresh: list[H2Stream] = []
        try:
            self._handle_events(events, fresh)
        finally:
            for stream in fresh:
                self._start(stream)

    def _reset_flood(self) -> bool:
        """Count the ``RST_STREAM`` frames of the last read against the reset rate
        (CVE-2023-44487, "rapid reset"): every one, also for streams already
        answered.

        Returns:
            Whether the connection is to end (``GOAWAY`` ENHANCE_YOUR_CALM queued).
        """
        frames = self.h2.incoming_buffer
        count = frames.resets
        if not count:
            return False
        frames.resets = 0
        return self._flood(self._guard.resets(count))

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
                else:
                    stream = streams.get(event.stream_id)
                    if stream is not None:
                        stream.window_opened()
            elif isinstance(event, StreamReset):
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
            elif isinstance(event, RemoteSettingsChanged):
                if self._flood(self._guard.settings()):
                    return
                if SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                    for stream in streams.values():
                        stream.window_opened()
            elif isinstance(event, ConnectionTerminated):
                # The client's GOAWAY: no new streams; end when the last one has.
                self._goaway_sent = True
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
        try:
            self.h2.reset_stream(stream_id, code)
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
