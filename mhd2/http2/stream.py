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

Nothing here touches the socket; the connection (:mod:`mhd2.http2.connection`)
owns the ``h2`` state machine and the transport.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import trio
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError

from ..actions import ResponseAction, UpgradeAction
from ..enums import RequestEndedCode
from ..exchange import ClientGone, DaemonStopping, Ending, Exchange
from ..outcome import NOT_STARTED, Started, app_outcome
from ..upload import BodyError, BodyRate
from .checks import RequestHead
from .reply import refuse_upgrade, reply_now, send_error_page, send_response
from .tunnel import serve_upgrade

if TYPE_CHECKING:
    from ..upgrade import UpgradeHandle
    from .connection import HTTP2Connection
    from .machine import ServerH2

__all__ = ["H2Stream"]

logger = logging.getLogger("mhd2")

#: A stream's deadline may lag its progress by this many seconds at most.
ARM_SLACK = 1.0
#: Queue at most this many body bytes before waiting for the writer.
FLUSH_BYTES = 64 * 1024
#: An unread request body of at most this many bytes is read and discarded
#: before the response (see ``H2Stream._discard_small_body``).
DISCARD_LIMIT = 64 * 1024
_TRANSPORT_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class H2Stream:
    """One request/response exchange on an HTTP/2 connection (see the module docstring).

    Args:
        conn: the connection carrying the stream.
        stream_id: the client's stream id.
        head: the checked request head.
        ended: the request came with END_STREAM on its HEADERS (no body).
    """

    __slots__ = (
        "_armed_at",
        "_data_event",
        "_pieces",
        "_rate",
        "_send_rate",
        "_started",
        "_timeout",
        "_unacked",
        "_window_event",
        "body_ended",
        "body_sent",
        "cancel_code",
        "closed_local",
        "conn",
        "exchange",
        "expects_continue",
        "gone",
        "headers_sent",
        "id",
        "scope",
        "trailers",
        "tunnel",
        "upgraded",
    )

    def __init__(self, conn: HTTP2Connection, stream_id: int, head: RequestHead,
                 ended: bool) -> None:
        self.conn = conn
        self.id = stream_id
        self.scope = trio.CancelScope()
        self._timeout = conn.shared.options.timeout
        self._armed_at = -math.inf
        self.gone = trio.Event()
        self.cancel_code: RequestEndedCode | None = None
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
        rule = conn.shared.options.min_body_rate
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
        self.exchange = Exchange(conn.shared, self, conn.info, head.method, head.uri, "HTTP/2",
                                 head.fields, upload_size)
        #: What the request callback returned, when :meth:`serve_now` called it.
        self._started: Started = NOT_STARTED

    # -- fed by the connection (synchronous, from its reader) ------------------------

    def feed(self, data: bytes, flow: int) -> None:
        """DATA arrived for this stream (*flow*: its flow-controlled length)."""
        if self.closed_local and self.gone.is_set():
            self.conn.acknowledge(self.id, flow)
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
        conn = self.conn
        conn.stream_parked(1)
        try:
            await self.gone.wait()
        finally:
            conn.stream_parked(-1)

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
                self.exchange.upload_received += len(data)
                await trio.lowlevel.checkpoint()
                return data
            if self.body_ended:
                self.exchange.footers = self.trailers
                self.exchange.body_read = True
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
            self.conn.acknowledge(self.id, self._unacked)
            self._unacked = 0

    async def send_continue(self) -> None:
        """An informational ``100`` HEADERS, now that the application asked for the body."""
        if self.expects_continue and not self._pieces and not self.body_ended:
            # RFC 9110 §10.1.1: the server MAY omit the 100 "if it has already
            # received some or all of the content".
            self.expects_continue = False
            await self.send_headers([(b":status", b"100")], end=False, final=False)

    # -- output (used by mhd2.http2.reply) --------------------------------------------

    def _check_open(self) -> None:
        if self.gone.is_set() or self.conn.ending:
            raise ClientGone("the client reset the stream, or the connection is ending")

    async def send_headers(self, headers: list[tuple[bytes, bytes]], *, end: bool,
                           final: bool = True, flush: bool = True) -> None:
        """Send a HEADERS block (``final``: the response head, not a 1xx)."""
        self._check_open()
        self.conn.h2.send_headers(self.id, headers, end_stream=end)
        if final:
            self.headers_sent = True
        if end:
            self.closed_local = True
        if flush or end:
            await self.conn.flushed()
            self.arm()
        else:
            self.conn.wake_writer()

    def room(self) -> int:
        """How many body bytes one DATA frame may carry now (flow control, frame size)."""
        h2 = self.conn.h2
        return min(h2.local_flow_control_window(self.id), h2.max_outbound_frame_size)

    def queue_response(self, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """Queue a final response whole (*body* at most :meth:`room` bytes), ending the stream."""
        self._check_open()
        h2 = self.conn.h2
        if not h2.send_whole_response(self.id, headers, body):
            h2.send_headers(self.id, headers, end_stream=not body)
            if body:
                h2.send_data(self.id, body, end_stream=True)
        self.headers_sent = True
        self.closed_local = True
        self.body_sent += len(body)

    async def send_data(self, data: bytes | bytearray | memoryview, *, end: bool = False) -> None:
        """Send *data* as DATA frames within the flow-control windows; *end*: END_STREAM.

        Waits for ``WINDOW_UPDATE`` when a window is closed; the stream's
        deadline moves only when bytes leave (a window that never opens is
        cut at the timeout).
        """
        h2 = self.conn.h2
        with memoryview(data) as raw, raw.cast("B") as view:
            total = view.nbytes
            pos = 0
            queued = 0
            while pos < total:
                self._check_open()
                window = h2.local_flow_control_window(self.id)
                if window <= 0:
                    if queued:
                        await self.conn.flushed()
                        self.arm()
                        queued = 0
                        continue
                    await self._wait_for_window(h2)
                    continue
                n = min(total - pos, window, h2.max_outbound_frame_size)
                h2.send_data(self.id, bytes(view[pos:pos + n]), end_stream=end and pos + n == total)
                pos += n
                queued += n
                self.body_sent += n
                if queued >= FLUSH_BYTES and pos < total:
                    await self.conn.flushed()
                    self.arm()
                    queued = 0
        if end:
            if total == 0:
                self._check_open()
                h2.end_stream(self.id)
            self.closed_local = True
        await self.conn.flushed()
        self.arm()

    async def _wait_for_window(self, h2: ServerH2) -> None:
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
        rule = self.conn.shared.options.http2_min_send_rate
        if rule is None:
            return
        rate = self._send_rate
        if rate is None:
            rate = self._send_rate = BodyRate(rule)
        granted = max(0, h2.local_flow_control_window(self.id))
        if rate.add(trio.current_time() - started, granted) is not None:
            why = (f"the client's flow-control window opened slower than {rule[0]} bytes "
                   f"per {rule[1]:g} s")
            logger.debug("mhd2: HTTP/2 stream %d of %s reset: %s", self.id,
                         self.conn.info.client_address, why)
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
        try:
            self.conn.h2.reset_stream(self.id, code)
        except ProtocolError:
            return
        self.conn.wake_writer()

    # -- served in the reader ----------------------------------------------------------

    def serve_now(self) -> bool:
        """Serve the request here and now, if that needs no waiting.

        Called by the connection's reader once it has handled the frames of
        the read that brought the request's HEADERS.  A
        bodiless request whose callback answers synchronously with a response
        in memory that fits the peer's windows is answered without a task of
        its own: its frames are queued for the reader's next write, and the
        request ends here.  Anything else -- a coroutine callback, a suspend,
        an upload, a body source to stream -- goes on in :meth:`run`, from
        what the callback returned.

        Returns:
            Whether the request has ended (else the caller starts :meth:`run`).
        """
        options = self.conn.shared.options
        if not self.body_ended or options.early_uri_logger is not None or self.conn.ending:
            return False
        exchange = self.exchange
        if options.forwarded_headers:
            exchange.believe_proxy(exchange.request._headers)
        started = exchange.call_app_now()
        self._started = started
        if type(started) is not ResponseAction:
            return False
        code = RequestEndedCode.COMPLETED_OK
        try:
            if not reply_now(self, exchange, started.response,
                             is_head=exchange.request.method == "HEAD",
                             add_date=not options.suppress_date_header):
                return False
        except Exception:
            logger.exception("mhd2: internal error on HTTP/2 stream %d of %s", self.id,
                             self.conn.info.client_address)
            self.reset(ErrorCodes.INTERNAL_ERROR)
            code = RequestEndedCode.CONNECTION_ERROR
        exchange.end(code)
        self._finish(in_reader=True)
        return True

    # -- the stream's task ------------------------------------------------------------

    async def run(self) -> None:
        """Serve the request to its end; report the end once; free the stream."""
        exchange = self.exchange
        code = RequestEndedCode.CONNECTION_ERROR
        try:
            if self.gone.is_set():
                # Reset before its task ran (rapid reset): no application work.
                code = self.cancel_code or RequestEndedCode.CLIENT_ABORT
                return
            with self.scope:
                self.arm(force=True)
                code = await self._serve()
            if self.scope.cancelled_caught:
                code = self.cancel_code or RequestEndedCode.TIMEOUT_REACHED
                if self.cancel_code is None:
                    logger.debug("mhd2: HTTP/2 stream %d of %s timed out", self.id,
                                 self.conn.info.client_address)
                    self.reset(ErrorCodes.CANCEL)
        except ClientGone:
            code = self.cancel_code or RequestEndedCode.CLIENT_ABORT
        except DaemonStopping:
            code = RequestEndedCode.DAEMON_SHUTDOWN
            await send_error_page(self, 503)
        except _TRANSPORT_ERRORS:
            code = self.cancel_code or RequestEndedCode.CLIENT_ABORT
        except Exception:
            logger.exception("mhd2: internal error on HTTP/2 stream %d of %s", self.id,
                             self.conn.info.client_address)
            self.reset(ErrorCodes.INTERNAL_ERROR)
        finally:
            exchange.end(code)
            self._finish()

    def _finish(self, *, in_reader: bool = False) -> None:
        """After the end: free what the stream holds in the connection's windows
        (*in_reader*: as :meth:`HTTP2Connection.stream_done`)."""
        if not self.closed_local:
            self.reset(ErrorCodes.INTERNAL_ERROR if not self.gone.is_set() else ErrorCodes.CANCEL)
        elif not self.body_ended:
            # RFC 9113 §8.1: "A server can send a complete response prior to the
            # client sending an entire request ... the server MAY request that
            # the client abort transmission of a request without error by
            # sending a RST_STREAM with an error code of NO_ERROR".
            self.body_ended = True
            try:
                self.conn.h2.reset_stream(self.id, ErrorCodes.NO_ERROR)
            except ProtocolError:
                pass
        unread = self._unacked + sum(p[1] for p in self._pieces)
        self._pieces.clear()
        self._unacked = 0
        self.gone.set()
        if unread:
            self.conn.acknowledge(self.id, unread)
        self.conn.stream_done(self, in_reader=in_reader)

    def _body_source(self) -> H2Stream:
        """The stream is its own request body source (for an upload action)."""
        return self

    async def _serve(self) -> RequestEndedCode:
        exchange = self.exchange
        request = exchange.request
        options = self.conn.shared.options
        started = self._started
        if started is NOT_STARTED and (options.forwarded_headers
                                       or options.early_uri_logger is not None):
            await exchange.begin(request._headers)
        outcome = await app_outcome(exchange, self._body_source, started)
        if outcome is None:
            self.reset(ErrorCodes.INTERNAL_ERROR)
            return RequestEndedCode.BY_APP_ABORT
        if isinstance(outcome, UpgradeAction):
            if self.tunnel:
                return await serve_upgrade(self, outcome)
            return await refuse_upgrade(self, outcome)
        if isinstance(outcome, Ending):
            if outcome.status is None:
                self.reset(ErrorCodes.INTERNAL_ERROR)
            else:
                await send_error_page(self, outcome.status)
            return outcome.code
        exchange.response = outcome
        if (not self.body_ended and not self.expects_continue and not self.tunnel
                and request.method != "CONNECT"):
            # (A client waiting for 100 Continue sends no body: answer at once;
            # after a CONNECT come tunnel bytes, not a body -- RFC 9113 §8.5.)
            await self._discard_small_body()
        code = await send_response(self, exchange, outcome, is_head=request.method == "HEAD",
                                   add_date=not options.suppress_date_header)
        if code is RequestEndedCode.BY_APP_ERROR and not self.headers_sent:
            await send_error_page(self, 500)
        return code

    async def _discard_small_body(self) -> None:
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
                self.conn.acknowledge(self.id, flow)
                self.arm()
                continue
            self._data_event = trio.Event()
            await self._data_event.wait()
        self._ack_consumed()
