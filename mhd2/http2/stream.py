"""One HTTP/2 stream: the exchange's host, its body source, and its task.

An :class:`H2Stream` is to an HTTP/2 request what the HTTP/1 connection is to
an HTTP/1 request: it makes the :class:`~mhd2.exchange.Exchange`, calls the
application, carries out the action and reports the end once.  It is also

* the exchange's :class:`~mhd2.exchange.ExchangeHost` -- the client is "gone"
  when it resets the stream or the connection ends; its timeout is the
  stream's own inactivity limit (``timeout``, or ``request.connection_timeout``);
* the :class:`~mhd2.upload.BodySource` of uploads -- DATA frames queued by the
  connection, acknowledged to the peer (``WINDOW_UPDATE``) only once the
  application has consumed them, so a slow application stops the client's
  window instead of buffering;
* the sink of :mod:`mhd2.http2.reply` -- HEADERS and DATA frames within the
  peer's flow-control windows, written by the connection's one writer.

A stream sees its connection only as a :class:`~mhd2.http2.port.StreamPort`:
it queues frames in the connection's sans-IO engine and asks for them to be
written.  It calls nothing above it: :mod:`mhd2.http2.serve` runs it (the
application, the action, the reply), and the connection feeds it what its
engine received.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import trio
from h2.errors import ErrorCodes

from ..enums import RequestEndedCode
from ..exchange import ClientGone, Exchange
from ..outcome import NOT_STARTED, Started
from ..upload import BodyError, BodyRate
from .events import MALFORMED_STATUS

if TYPE_CHECKING:
    from ..upgrade import UpgradeHandle
    from .checks import RequestHead
    from .engine import H2Engine
    from .port import StreamPort

__all__ = ["H2Stream"]

logger = logging.getLogger("mhd2")

#: A stream's deadline may lag its progress by this many seconds at most.
ARM_SLACK = 1.0
#: Queue at most this many body bytes before waiting for the writer.
FLUSH_BYTES = 64 * 1024
#: An unread request body of at most this many bytes is read and discarded
#: before the response (see ``H2Stream.discard_small_body``).
DISCARD_LIMIT = 64 * 1024


class H2Stream:
    """One request/response exchange on an HTTP/2 connection (see the module docstring).

    Args:
        port: the connection carrying the stream, as streams see it.
        stream_id: the client's stream id.
        head: the checked request head.
        ended: the request came with END_STREAM on its HEADERS (no body).
    """

    __slots__ = (
        "_armed_at",
        "_data_event",
        "_pieces",
        "_rate",
        "_reset_code",
        "_send_rate",
        "_timeout",
        "_unacked",
        "_window_event",
        "body_ended",
        "body_sent",
        "cancel_code",
        "closed_local",
        "exchange",
        "expects_continue",
        "gone",
        "headers_sent",
        "id",
        "port",
        "scope",
        "started",
        "trailers",
        "tunnel",
        "upgraded",
    )

    def __init__(self, port: StreamPort, stream_id: int, head: RequestHead,
                 ended: bool) -> None:
        self.port = port
        self.id = stream_id
        self.scope = trio.CancelScope()
        self._timeout = port.shared.options.timeout
        self._armed_at = -math.inf
        self.gone = trio.Event()
        self.cancel_code: RequestEndedCode | None = None
        #: The RST_STREAM code :meth:`finish` sends (malformed trailers), if any.
        self._reset_code: ErrorCodes | None = None
        # DATA received and not yet handed over; taken whole (a list: an empty
        # deque is ten times its size, and there is one per parked stream).
        self._pieces: list[tuple[bytes, int]] = []
        self._unacked = 0
        self._data_event = trio.Event()
        self._window_event = trio.Event()
        #: An extended CONNECT (RFC 8441): its DATA is the tunnel's, not a body.
        self.tunnel = head.protocol is not None
        #: The upgraded handle, once the tunnel runs (see mhd2.http2.tunnel).
        self.upgraded: UpgradeHandle | None = None
        rule = port.shared.options.min_body_rate
        self._rate = (BodyRate(rule) if rule is not None and not ended and not self.tunnel
                      else None)
        #: ``http2_min_send_rate`` of the response (made at the first wait for a window).
        self._send_rate: BodyRate | None = None
        self.body_ended = ended
        self.trailers: list[tuple[str, str]] = []
        self.headers_sent = False
        self.closed_local = False
        self.body_sent = 0
        self.expects_continue = head.expects_continue and not ended
        upload_size = 0 if ended or self.tunnel else head.content_length
        self.exchange = Exchange(port.shared, self, port.info, head.method, head.uri, "HTTP/2",
                                 head.fields, upload_size)
        #: What the request callback returned, when the reader called it
        #: (:func:`mhd2.http2.serve.serve_now`).
        self.started: Started = NOT_STARTED

    # -- fed by the connection (synchronous, from its reader) ------------------------

    def feed(self, data: bytes, flow: int) -> None:
        """DATA arrived for this stream (*flow*: its flow-controlled length)."""
        if self.closed_local and self.gone.is_set():
            self.port.acknowledge(self.id, flow)
            return
        self._pieces.append((data, flow))
        self._data_event.set()

    def feed_end(self) -> None:
        """The client ended its side of the stream (END_STREAM)."""
        self.body_ended = True
        self._data_event.set()

    def window_opened(self) -> None:
        """The peer opened a flow-control window this stream may use."""
        self._window_event.set()

    def reset_by_client(self) -> None:
        """The client reset the stream (or made ``h2`` reset it): closed both ways."""
        self.closed_local = True
        self.body_ended = True
        self.cancel(RequestEndedCode.CLIENT_ABORT)

    def cancel(self, code: RequestEndedCode) -> None:
        """End the stream's work now; the request ends with *code*."""
        if self.cancel_code is None:
            self.cancel_code = code
        self.gone.set()
        self._data_event.set()
        self._window_event.set()
        if self.upgraded is None:
            # (An upgrade handler is not cancelled: its calls see a broken
            # connection, as over HTTP/1.)
            self.scope.cancel()

    def malformed(self) -> None:
        """Its trailers are malformed (RFC 9113 §8.1.1: "MUST be treated as a
        stream error of type PROTOCOL_ERROR"): the request ends with
        ``HTTP_PROTOCOL_ERROR`` -- and the status HTTP/1 would have answered
        (:data:`~mhd2.http2.events.MALFORMED_STATUS`) if no response head left
        -- and ``RST_STREAM(PROTOCOL_ERROR)`` goes when the stream is freed
        (:meth:`finish`), after the end was reported, as HTTP/1 reports the end
        before its ``400`` leaves.  An upgrade handler is not cancelled (its
        calls see a broken connection): its stream is reset at once.
        """
        if not self.headers_sent:
            self.exchange.daemon_status(MALFORMED_STATUS)
        self._reset_code = ErrorCodes.PROTOCOL_ERROR
        self.cancel(RequestEndedCode.HTTP_PROTOCOL_ERROR)
        if self.upgraded is not None:
            self.reset(ErrorCodes.PROTOCOL_ERROR)

    def begin_stop(self) -> None:
        """Graceful stop: wake a parked request; tell an upgrade handler."""
        self.exchange.wake_for_stop()
        if self.upgraded is not None:
            self.upgraded.begin_stop()

    # -- ExchangeHost -----------------------------------------------------------------

    def cut(self) -> None:
        """End the request now from outside: the stream is reset (CANCEL)."""
        self.cancel(RequestEndedCode.BY_APP_ABORT)

    async def wait_client_gone(self) -> None:
        """Return when the client reset the stream or the connection ended (or did
        not answer a ``PING``: see :mod:`mhd2.http2.liveness`)."""
        self.scope.deadline = math.inf
        port = self.port
        port.stream_parked(1)
        try:
            await self.gone.wait()
        finally:
            port.stream_parked(-1)

    async def send_informational(self, status: int, fields: list[tuple[str, str]]) -> bool:
        """An interim HEADERS block (``:status`` 1xx, no END_STREAM) before the
        final one; ``False`` once the final head has gone or the stream ended.

        RFC 9113 §8.1: a response "consists of zero or more HEADERS frames
        ... containing the control data and header section for
        informational (1xx) HTTP responses" before the final one.
        """
        if self.headers_sent or self.closed_local:
            return False
        headers = [(b":status", b"%d" % status)]
        headers.extend((name.lower().encode("latin-1"), value.encode("latin-1"))
                       for name, value in fields)
        try:
            await self.send_headers(headers, end=False, final=False)
        except ClientGone:
            return False
        return True

    def resumed(self) -> None:
        """The parked request goes on: re-arm the stream's deadline."""
        self.arm(force=True)

    @property
    def timeout(self) -> float | None:
        """The stream's inactivity timeout (``request.connection_timeout``)."""
        return self._timeout

    def set_timeout(self, seconds: float | None) -> None:
        """Override the inactivity timeout of this stream."""
        self._timeout = seconds
        self.arm(force=True)

    def arm(self, *, force: bool = False) -> None:
        """Progress: the stream's deadline moves to its timeout from now.

        Unless *force*, only when it was last moved more than an eighth of the
        timeout (at most a second) ago: moving a deadline is not free.
        """
        timeout = self._timeout
        if timeout is None or self.upgraded is not None:
            # (An upgraded stream has no inactivity limit: mhd2.http2.tunnel.)
            self.scope.deadline = math.inf
            return
        now = trio.current_time()
        if force or now - self._armed_at > min(ARM_SLACK, timeout / 8):
            self._armed_at = now
            self.scope.deadline = now + timeout

    # -- BodySource -------------------------------------------------------------------

    async def next_piece(self) -> bytes | None:
        """The next piece of the body (what has arrived, merged), or ``None`` at its end."""
        self._ack_consumed()
        while True:
            if self._pieces:
                pieces = self._pieces
                data = b"".join(p[0] for p in pieces)
                self._unacked += sum(p[1] for p in pieces)
                pieces.clear()
                self.arm()
                if not data:
                    self._ack_consumed()  # padding only
                    continue
                self.exchange.received(len(data))
                await trio.lowlevel.checkpoint()
                return data
            if self.body_ended:
                self.exchange.body_complete(self.trailers)
                return None
            if self.gone.is_set():
                raise ClientGone("the client reset the stream mid-body")
            self._data_event = trio.Event()
            started = trio.current_time()
            await self._data_event.wait()
            if self._rate is not None:
                slow = self._rate.add(trio.current_time() - started,
                                      sum(len(p[0]) for p in self._pieces))
                if slow is not None:
                    # As HTTP/1: 408; the stream is then reset (NO_ERROR: the
                    # response is complete, the rest of the body unwanted).
                    raise BodyError(408, slow)

    def _ack_consumed(self) -> None:
        """Tell the peer the bytes handed to the application are consumed (WINDOW_UPDATE)."""
        if self._unacked:
            self.port.acknowledge(self.id, self._unacked)
            self._unacked = 0

    async def send_continue(self) -> None:
        """An informational ``100`` HEADERS, now that the application asked for the body."""
        if self.expects_continue and not self._pieces and not self.body_ended:
            # RFC 9110 §10.1.1: the server MAY omit the 100 "if it has already
            # received some or all of the content".
            self.expects_continue = False
            await self.send_headers([(b":status", b"100")], end=False, final=False)

    # -- output (used by mhd2.http2.reply and mhd2.http2.serve) -------------------------

    def _check_open(self) -> None:
        if self.gone.is_set() or self.port.ending:
            raise ClientGone("the client reset the stream, or the connection is ending")

    async def send_headers(self, headers: list[tuple[bytes, bytes]], *, end: bool,
                           final: bool = True, flush: bool = True) -> None:
        """Send a HEADERS block (``final``: the response head, not a 1xx)."""
        self._check_open()
        self.port.engine.send_headers(self.id, headers, end=end)
        if final:
            self.headers_sent = True
        if end:
            self.closed_local = True
        if flush or end:
            await self.port.flushed()
            self.arm()
        else:
            self.port.wake_writer()

    def room(self) -> int:
        """How many body bytes one DATA frame may carry now (flow control, frame size)."""
        return self.port.engine.room(self.id)

    def queue_response(self, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """Queue a final response whole (*body* at most :meth:`room` bytes), ending the stream."""
        self._check_open()
        self.port.engine.send_response(self.id, headers, body)
        self.headers_sent = True
        self.closed_local = True
        self.body_sent += len(body)

    async def send_data(self, data: bytes | bytearray | memoryview, *, end: bool = False) -> None:
        """Send *data* as DATA frames within the flow-control windows; *end*: END_STREAM.

        Waits for ``WINDOW_UPDATE`` when a window is closed; the stream's
        deadline moves only when bytes leave (a window that never opens is
        cut at the timeout).
        """
        port = self.port
        engine = port.engine
        with memoryview(data) as raw, raw.cast("B") as view:
            total = view.nbytes
            pos = 0
            queued = 0
            while pos < total:
                self._check_open()
                window = engine.window(self.id)
                if window <= 0:
                    if queued:
                        await port.flushed()
                        self.arm()
                        queued = 0
                        continue
                    await self._wait_for_window(engine)
                    continue
                n = min(total - pos, window, engine.frame_size)
                engine.send_data(self.id, bytes(view[pos:pos + n]), end=end and pos + n == total)
                pos += n
                queued += n
                self.body_sent += n
                if queued >= FLUSH_BYTES and pos < total:
                    await port.flushed()
                    self.arm()
                    queued = 0
        if end:
            if total == 0:
                self._check_open()
                engine.end_stream(self.id)
            self.closed_local = True
        await port.flushed()
        self.arm()

    async def _wait_for_window(self, engine: H2Engine) -> None:
        """Wait until the client opens a flow-control window (or the stream ends).

        ``http2_min_send_rate``: over each window of time spent waiting here,
        the client must grant at least so many bytes, else the stream is
        reset (``RST_STREAM(CANCEL)``, ``TIMEOUT_REACHED``) -- the download
        twin of ``min_body_rate``: a window opened a byte at a time would
        otherwise keep a stream and its response alive for as long as the
        client likes.
        """
        self._window_event = trio.Event()
        started = trio.current_time()
        await self._window_event.wait()
        rule = self.port.shared.options.http2_min_send_rate
        if rule is None:
            return
        rate = self._send_rate
        if rate is None:
            rate = self._send_rate = BodyRate(rule)
        granted = max(0, engine.window(self.id))
        if rate.add(trio.current_time() - started, granted) is not None:
            why = (f"the client's flow-control window opened slower than {rule[0]} bytes "
                   f"per {rule[1]:g} s")
            logger.debug("mhd2: HTTP/2 stream %d of %s reset: %s", self.id,
                         self.port.info.client_address, why)
            self.cancel(RequestEndedCode.TIMEOUT_REACHED)
            raise ClientGone(why)

    async def send_trailers(self, fields: list[tuple[bytes, bytes]]) -> None:
        """End the stream with a trailer section (DCC footers)."""
        await self.send_headers(fields, end=True, final=False)

    def reset(self, code: ErrorCodes) -> None:
        """Send RST_STREAM (once; nothing if the stream is closed already)."""
        if self.closed_local and self.body_ended:
            return
        self.closed_local = True
        if self.port.engine.reset(self.id, code):
            self.port.wake_writer()

    async def discard_small_body(self) -> None:
        """The application answers without reading the body: if what is left of it
        is small, read and discard it before the answer, so the request is
        complete (and checked) when the response starts -- as HTTP/1 reads a
        small unread body to keep the connection.  A larger rest (declared, or
        past the limit while reading) is not waited for: the response goes at
        once, then RST_STREAM(NO_ERROR).
        """
        size = self.exchange.request.upload_size
        if size is not None and size - self.exchange.upload_received > DISCARD_LIMIT:
            return
        discarded = 0
        while not self.body_ended and discarded <= DISCARD_LIMIT:
            if self.gone.is_set():
                raise ClientGone("the client reset the stream mid-body")
            if self._pieces:
                flow = sum(p[1] for p in self._pieces)
                discarded += sum(len(p[0]) for p in self._pieces)
                self._pieces.clear()
                self.port.acknowledge(self.id, flow)
                self.arm()
                continue
            self._data_event = trio.Event()
            await self._data_event.wait()
        self._ack_consumed()

    # -- the end ---------------------------------------------------------------------

    def finish(self, *, in_reader: bool = False) -> None:
        """After the end: free what the stream holds in the connection's windows
        and tell the connection (*in_reader*: as :meth:`StreamPort.stream_done
        <mhd2.http2.port.StreamPort.stream_done>`)."""
        if not self.closed_local:
            code = self._reset_code
            if code is None:
                code = ErrorCodes.INTERNAL_ERROR if not self.gone.is_set() else ErrorCodes.CANCEL
            self.reset(code)
        elif not self.body_ended:
            # RFC 9113 §8.1: "A server can send a complete response prior to the
            # client sending an entire request ... the server MAY request that
            # the client abort transmission of a request without error by
            # sending a RST_STREAM with an error code of NO_ERROR".
            self.body_ended = True
            self.port.engine.reset(self.id, ErrorCodes.NO_ERROR)
        unread = self._unacked + sum(p[1] for p in self._pieces)
        self._pieces.clear()
        self._unacked = 0
        self.gone.set()
        if unread:
            self.port.acknowledge(self.id, unread)
        self.port.stream_done(self.id, in_reader=in_reader)
