"""One task per connection: read a head, call the application, write the reply.

The loop is deliberately plain -- no task per request, one cancel scope per
connection whose deadline moves with progress (the idle/trickle timeout), and a
fresh :class:`h11.Connection` per request that only *parses*: mhd2 writes
responses itself (:mod:`mhd2.reply`).  Protocol decisions are delegated to the
sans-IO :mod:`mhd2._http1` package.

Every request ends in exactly one reported way: :meth:`HTTPConnection._end`
calls ``notify_request_ended`` (and the response's termination callback) once.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from inspect import isawaitable
from typing import TYPE_CHECKING, Any, NoReturn, cast

import h11
import trio

from ._http1.fields import scan_fields
from ._http1.framing import plan_reply
from ._http1.request_checks import check_head, check_raw_head, transfer_coding_status
from ._http1.unread_body import consume_buffered_body
from ._http1.writer import daemon_reply, switching_protocols_head
from .actions import (
    AbortAction,
    Action,
    ResponseAction,
    SuspendAction,
    UpgradeAction,
    UploadAction,
    UploadRequestAction,
    upload_action_abort_request,
)
from .connection_info import ConnectionInfo
from .enums import ConnectionEvent, RequestEndedCode, reason_phrase
from .errors import AuthError, UsageError
from .plain_stream import PlainSocketStream
from .pool import LargePool
from .reply import ReplyAborted, send_reply
from .request import Request
from .response import Response
from .suspension import Parking, StoppedWhileParked
from .upgrade import UpgradeHandle
from .upload import run_upload

if TYPE_CHECKING:
    from .options import DaemonOptions

__all__ = ["HTTPConnection"]

logger = logging.getLogger("mhd2")

#: Bytes asked for per read while waiting for a request head.
RECV_SIZE = 16 * 1024
#: Bytes per read while reading a body for an upload action.
BODY_RECV_SIZE = 256 * 1024
#: Bytes per read while discarding what a closing client still sends.
DRAIN_RECV_SIZE = 64 * 1024
#: Size of the buffer handed to dynamic content creators.
DCC_BUFFER_SIZE = 32 * 1024
#: After answering and half-closing, how long unread input is drained so the
#: client sees the answer instead of a reset (a "lingering close").
LINGER_SECONDS = 2.0
LINGER_MAX_BYTES = 1024 * 1024
#: The inactivity deadline may lag real progress by this many seconds.
ARM_SLACK = 1.0
#: Bound on sending TLS close_notify when a connection ends.
TLS_CLOSE_SECONDS = 1.0
#: Bound on writing an error response to a client that does not read.
ERROR_WRITE_SECONDS = 5.0


class _CloseConnection(Exception):
    """Internal: stop serving this connection (the request has been ended)."""


class HTTPConnection:
    """Serve HTTP/1.x requests on one accepted stream until it closes.

    Args:
        stream: the accepted (and, for TLS, wrapped) stream; closed at the end.
        info: what is known about the peer.
        options: the daemon's options.
        request_cb: the application's request callback.
        token: the daemon's trio token (for thread-safe ``request_resume``).
        is_stopping: reports whether the daemon is shutting down.
        large_pool: the daemon's budget for in-memory bodies.

    Resource handling:
        :meth:`run` always closes the stream and reports
        ``ConnectionEvent.CLOSED`` once, whatever happens.

    Error handling:
        Protocol errors are answered with a 4xx/5xx and a close; an exception
        in an application callback becomes a 500 (or a close once the head is
        out), is logged on the ``mhd2`` logger, and ends the request with
        ``BY_APP_ERROR``.  Nothing escapes :meth:`run` but cancellation.
    """

    # Slots: thousands of idle connections each hold one of these.
    __slots__ = (
        "_app",
        "_armed_at",
        "_closing_idle",
        "_dcc_buf",
        "_h11",
        "_head_started",
        "_idle",
        "_is_stopping",
        "_large_pool",
        "_options",
        "_parking",
        "_plain",
        "_reply_started",
        "_request",
        "_response",
        "_scope",
        "_slack",
        "_stream",
        "_timeout",
        "_token",
        "_upgraded",
        "can_sendfile",
        "info",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        info: ConnectionInfo,
        options: DaemonOptions,
        request_cb: Callable[[Request], Any],
        token: trio.lowlevel.TrioToken | None,
        is_stopping: Callable[[], bool],
        large_pool: LargePool,
    ) -> None:
        self._stream = stream
        self.info = info
        self._options = options
        self._app = request_cb
        self._token = token
        self._is_stopping = is_stopping
        self._large_pool = large_pool
        self._parking: Parking | None = None  # made at the first suspend
        self._h11: h11.Connection | None = None
        self._timeout = options.timeout
        self._armed_at = -math.inf
        self._slack = ARM_SLACK if options.timeout is None else min(ARM_SLACK, options.timeout / 8)
        self._scope = trio.CancelScope()
        self._request: Request | None = None
        self._response: Response | None = None
        self._reply_started = False
        # True while no request is in progress (waiting for, or reading, a head).
        self._idle = True
        self._closing_idle = False
        self._head_started = False
        self._dcc_buf: bytearray | None = None
        self._upgraded: UpgradeHandle | None = None  # told when a graceful stop begins
        self._plain = stream if isinstance(stream, PlainSocketStream) else None
        self.can_sendfile = self._plain is not None and hasattr(os, "sendfile")

    # -- daemon-facing --------------------------------------------------------

    def close_if_idle(self) -> bool:
        """Graceful stop: close now if between requests; end a suspended request.

        A suspended request is woken and answered ``503 Service Unavailable``
        (or, if its head was already sent, its connection is closed).

        Returns:
            True if the connection was idle.
        """
        if self._idle:
            self._closing_idle = True
            self._scope.cancel()
            return True
        if self._parking is not None:
            self._parking.wake_for_stop()
        if self._upgraded is not None:
            self._upgraded.begin_stop()
        return False

    async def run(self) -> None:
        """Serve the connection to its end (see the class docstring)."""
        self._notify_connection(ConnectionEvent.STARTED)
        try:
            with self._scope:
                await self._serve()
            if self._scope.cancelled_caught and not self._closing_idle:
                await self._on_timeout()
        except _CloseConnection:
            pass
        except StoppedWhileParked:
            await self._send_simple(503, b"503 Service Unavailable: the server is stopping\n")
            self._end(RequestEndedCode.DAEMON_SHUTDOWN)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self._end(RequestEndedCode.CLIENT_ABORT)
        except Exception:
            logger.exception("mhd2: internal error while serving %s", self.info.client_address)
            self._end(RequestEndedCode.CONNECTION_ERROR)
        finally:
            if self._request is not None:
                self._end(RequestEndedCode.DAEMON_SHUTDOWN if self._is_stopping()
                          else RequestEndedCode.CONNECTION_ERROR)
            if isinstance(self._stream, PlainSocketStream):
                self._stream.close()
            else:
                await _close_tls(self._stream)
            self._notify_connection(ConnectionEvent.CLOSED)

    # -- the request loop -------------------------------------------------------

    async def _serve(self) -> None:
        leftover = b""
        eof = False
        served = False
        while True:
            self._idle = True
            if not leftover:
                if eof:
                    return
                if self._is_stopping():
                    return
                self._arm()
                if served and self._plain is not None:
                    leftover = await self._plain.receive_some_later(RECV_SIZE)
                else:
                    leftover = cast(bytes, await self._stream.receive_some(RECV_SIZE))
                if not leftover:
                    return
                if leftover[:1] in b"\r\n":
                    # RFC 9112 §2.2: "a server that is expecting to receive and
                    # parse a request-line SHOULD ignore at least one empty
                    # line (CRLF) received prior to the request-line."
                    leftover = leftover.lstrip(b"\r\n")
                    continue
            conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self._options.max_header_size)
            self._h11 = conn
            conn.receive_data(leftover)
            if eof:
                conn.receive_data(b"")
            self._reply_started = False
            event = await self._read_head(conn, leftover)
            self._idle = False
            if event is None:
                return
            if not await self._handle(conn, event):
                return
            served = True
            leftover, eof = conn.trailing_data
            leftover = bytes(leftover)

    def _arm(self, *, force: bool = False) -> None:
        """Move the inactivity deadline to ``timeout`` seconds from now.

        Moving a deadline is not free, so it is only moved when it was last
        set more than :data:`ARM_SLACK` seconds (or an eighth of the timeout,
        if that is less) ago, or is disarmed.
        """
        if self._timeout is not None:
            now = trio.current_time()
            if force or now - self._armed_at > self._slack:
                self._armed_at = now
                self._scope.deadline = now + self._timeout

    def _disarm(self) -> None:
        self._armed_at = -math.inf
        self._scope.deadline = math.inf

    async def _read_head(self, conn: h11.Connection, first: bytes) -> h11.Request | None:
        """Parse until a request head is complete; answer and return None on errors."""
        fed = len(first)
        chunks = [first]
        self._head_started = True
        waited = False
        max_head = self._options.max_header_size
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if conn.their_state is h11.ERROR and conn.trailing_data[1]:
                    return None  # the client closed mid-head: nobody to answer
                status = exc.error_status_hint
                raw = b"".join(chunks)
                if status == 501:
                    status = transfer_coding_status(raw)
                if status == 431 and b"\n" not in raw[:max_head]:
                    # RFC 9112 §3: "A server that receives a request-target
                    # longer than any URI it wishes to parse MUST respond with
                    # a 414 (URI Too Long) status code."
                    status = 414
                await self._reject(status, str(exc))
                return None
            if event is h11.NEED_DATA:
                if fed > max_head:
                    await self._reject(431, "request header section too large")
                    return None
                if not waited:
                    # The whole head must arrive within `timeout` of its first
                    # byte: trickling more bytes does not extend it (slowloris).
                    self._arm(force=True)
                    waited = True
                data = cast(bytes, await self._stream.receive_some(RECV_SIZE))
                conn.receive_data(data)
                if data:
                    fed += len(data)
                    chunks.append(data)
                continue
            if type(event) is h11.Request:
                self._head_started = False
                strict = self._options.strict_level >= 1
                # The head is at most what was fed: measure it (a copy of
                # h11's buffer) only when that is over the limit, or to check it.
                if fed > max_head or strict:
                    head_len = fed - len(conn.trailing_data[0])
                    if head_len > max_head:
                        await self._reject(431, "request header section too large")
                        return None
                    if strict:
                        problem = check_raw_head(b"".join(chunks)[:head_len])
                        if problem is not None:
                            await self._reject(*problem)
                            return None
                return event
            return None  # ConnectionClosed: the client left between requests

    async def _handle(self, conn: h11.Connection, event: h11.Request) -> bool:
        """Serve one parsed request; return whether the connection stays open."""
        headers = event.headers
        options = self._options
        raw, upload_size, has_te, has_cl, wants_close, wants_keep_alive = scan_fields(headers)
        request = Request(
            event.method.decode("ascii"),
            event.target.decode("latin-1"),
            "HTTP/1.1" if event.http_version == b"1.1" else "HTTP/" + event.http_version.decode(),
            raw,
            upload_size,
            self.info,
            options,
            self._token,
            self._large_pool,
        )
        self._request = request
        if options.early_uri_logger is not None:
            try:
                await _call(options.early_uri_logger, request, request.uri, request.method)
            except Exception:
                logger.exception("mhd2: early_uri_logger failed for %s", request.uri)

        if event.target[:1] != b"/" or event.http_version != b"1.1" or has_te or options.strict_level:
            problem = check_head(event.method, event.target, event.http_version, headers,
                                 options.strict_level)
            if problem is not None:
                await self._reject(*problem)
                return False
        # RFC 9112 §6.1: after CL+TE (lenient levels) the server "MUST close the
        # connection after responding"; an HTTP/1.0 message with TE "MUST [be
        # treated] as if the framing is faulty ... and close the connection".
        must_close = has_te and (has_cl or event.http_version != b"1.1")

        action = await self._call_app(request)
        while isinstance(action, SuspendAction):
            await self.wait_resume(request)
            action = await self._call_app(request)
        if action is None:
            return False
        if isinstance(action, AbortAction):
            self._end(RequestEndedCode.BY_APP_ABORT)
            return False
        if isinstance(action, UpgradeAction):
            return await self._upgrade(conn, request, action)
        if isinstance(action, UploadRequestAction):
            try:
                result = await run_upload(self, conn, request, action)
            except UsageError:
                await self._app_failed("an upload callback misused the API", request)
                return False
            if isinstance(result, UpgradeAction):
                return await self._upgrade(conn, request, result)
            response = result
        else:
            assert isinstance(action, ResponseAction)
            response = action.response
        self._response = response

        body_done = request._body_read
        if not body_done:
            body_done, drain = consume_buffered_body(conn, upload_size)
            if not body_done and (not drain or conn.they_are_waiting_for_100_continue):
                must_close = True
        http11 = event.http_version == b"1.1"
        plan = plan_reply(
            http11=http11,
            is_head=event.method == b"HEAD",
            wants_close=wants_close,
            wants_keep_alive=wants_keep_alive,
            must_close=must_close,
            status=response.status,
            size_known=response.size is not None,
            chunked=response.chunked,
            conn_close=response.conn_close,
            head_only=response.head_only,
            http10_compatible_strict=response.http10_compatible_strict,
            http10_server=response.http10_server,
            app_content_length=response._app_content_length,
            daemon_stopping=self._is_stopping(),
        )
        try:
            await send_reply(self, request, response, plan,
                             add_date=not options.suppress_date_header)
        except ReplyAborted as exc:
            self._end(exc.code)
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, StoppedWhileParked,
                _CloseConnection):
            raise
        except Exception:
            await self._app_failed("a content creator", request)
            return False
        self._end(RequestEndedCode.COMPLETED_OK)
        if not plan.keep_alive:
            if not body_done or conn.trailing_data[0]:
                await self._linger()
            return False
        if not body_done:
            return await self._drain_body(conn)
        return True

    async def _upgrade(self, conn: h11.Connection, request: Request, action: UpgradeAction) -> bool:
        """Send ``101 Switching Protocols`` and run the upgrade handler; never keep HTTP."""
        await self.send_all(switching_protocols_head(
            action.value, action.headers, add_date=not self._options.suppress_date_header))
        self._end(RequestEndedCode.COMPLETED_OK_UPGRADE)
        # Upgraded connections have no idle timeout (MHD2); they still count
        # against the connection limits until the handler is done.
        self._disarm()
        handle = UpgradeHandle(self._stream, bytes(conn.trailing_data[0]), request)
        self._upgraded = handle
        if self._is_stopping():
            handle.begin_stop()
        try:
            result = action.handler(request, handle)
            if isawaitable(result):
                await result
        except Exception:
            logger.exception("mhd2: the upgrade handler failed for %s %s",
                             request.method, request.uri)
        return False

    async def _call_app(self, request: Request) -> Action | None:
        """Call the request callback once; turn its failures into a reply."""
        request._action = None
        try:
            result = self._app(request)
            if result is not None and not isinstance(result, Action) and isawaitable(result):
                self._disarm()
                result = await result
            if result is None:
                _drop_response(request._action)
                self._end(RequestEndedCode.BY_APP_ABORT)
                return None
            if not isinstance(result, Action) or result is not request._action:
                raise UsageError(
                    "the request callback must return the action made for this request "
                    f"by an mhd2.action_* function, not {result!r}"
                )
            return result
        except AuthError as exc:
            # A malformed Authorization header surfaced through request.basic_auth:
            # the client's fault, not the application's.
            _drop_response(request._action)
            await self._send_simple(400, f"400 Bad Request: {exc}\n".encode("latin-1", "replace"))
            self._end(RequestEndedCode.HTTP_PROTOCOL_ERROR)
            raise _CloseConnection from None
        except Exception:
            _drop_response(request._action)
            await self._app_failed("the request callback", request)
            raise _CloseConnection from None

    # -- endings ------------------------------------------------------------------

    def _end(self, code: RequestEndedCode) -> None:
        """Report the end of the current request, exactly once."""
        request, self._request = self._request, None
        response, self._response = self._response, None
        if request is None or request._ended:
            return
        request._ended = True
        request._suspended = False
        for hook in request._on_end:
            try:
                hook()
            except Exception:
                logger.exception("mhd2: a request-end hook failed")
        if response is not None:
            response._finish_use()
            if response.termination_callback is not None:
                self._report(response.termination_callback, request, code)
        if self._options.notify_request_ended is not None:
            self._report(self._options.notify_request_ended, request, code)

    def _report(self, cb: Callable[..., Any], *args: Any) -> None:
        try:
            result = cb(*args)
            if isawaitable(result):
                # Notifications are synchronous by nature; an async one is
                # closed unawaited rather than blocking the connection.
                close = getattr(result, "close", None)
                if close is not None:
                    close()
                logger.warning("mhd2: notification callback %r is async; make it a plain function", cb)
        except Exception:
            logger.exception("mhd2: notification callback %r failed", cb)

    def _notify_connection(self, event: ConnectionEvent) -> None:
        if self._options.notify_connection is not None:
            self._report(self._options.notify_connection, self.info, event)

    async def _reject(self, status: int, reason: str,
                      code: RequestEndedCode = RequestEndedCode.HTTP_PROTOCOL_ERROR) -> None:
        """Answer a request that cannot be served, then close (after lingering)."""
        body = (f"{status} {reason_phrase(status)}: {reason}\n").encode("latin-1", "replace")
        self._end(code)
        await self._send_simple(status, body)
        await self._linger()

    async def _app_failed(self, what: str, request: Request) -> None:
        """An application callback failed: log it, answer 500 if still possible, end."""
        logger.exception("mhd2: %s failed for %s %s", what, request.method, request.uri)
        await self._send_simple(500, b"Internal Server Error")
        self._end(RequestEndedCode.BY_APP_ERROR)

    async def _send_simple(self, status: int, body: bytes) -> None:
        if self._reply_started:
            return  # too late for a status line: the caller closes
        reply = daemon_reply(status, reason_phrase(status), body,
                             add_date=not self._options.suppress_date_header)
        with trio.move_on_after(ERROR_WRITE_SECONDS):
            try:
                await self._stream.send_all(reply)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass

    async def _on_timeout(self) -> None:
        """The inactivity deadline passed: 408 if a request was begun, then close."""
        if self._request is not None:
            self._end(RequestEndedCode.TIMEOUT_REACHED)
        elif self._head_started:
            await self._send_simple(408, b"408 Request Timeout\n")

    async def _linger(self) -> None:
        """Half-close, then discard input for a while so the reply is not reset away."""
        with trio.move_on_after(LINGER_SECONDS):
            try:
                if isinstance(self._stream, trio.abc.HalfCloseableStream):
                    await self._stream.send_eof()
                got = 0
                while got < LINGER_MAX_BYTES:
                    data = await self._stream.receive_some(DRAIN_RECV_SIZE)
                    if not data:
                        break
                    got += len(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass

    async def _drain_body(self, conn: h11.Connection) -> bool:
        """Read and discard the rest of a small unread body; keep the connection.

        A broken or vanished body ends the connection through the exceptions
        of :meth:`next_body_event` (the reply is already out).
        """
        while type(await self.next_body_event(conn)) is not h11.EndOfMessage:
            pass
        return True

    # -- Sink, for mhd2.reply --------------------------------------------------------

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send *data*, with the inactivity timeout applying to the whole write."""
        self._reply_started = True
        self._arm()
        await self._stream.send_all(data)

    async def send_file(self, fd: int, offset: int, count: int) -> int:
        """Send up to *count* bytes of *fd* from *offset* with ``os.sendfile``."""
        self._reply_started = True
        sock = cast(PlainSocketStream, self._stream).socket
        while True:
            self._arm()
            try:
                return os.sendfile(sock.fileno(), fd, offset, count)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(sock)

    def dcc_buffer(self) -> bytearray:
        """The connection's buffer for dynamic content creators (made on first use)."""
        if self._dcc_buf is None:
            self._dcc_buf = bytearray(DCC_BUFFER_SIZE)
        return self._dcc_buf

    async def wait_resume(self, request: Request) -> None:
        """Park until ``request_resume(request)``; no timeout applies meanwhile.

        See :class:`~mhd2.suspension.Parking`: a client that goes away ends
        the request at once (``CLIENT_ABORT``); a graceful stop ends it 503.
        """
        if self._parking is None:
            self._parking = Parking(self._stream, self._options.max_header_size)
        self._disarm()
        try:
            kept = await self._parking.wait(request, stopping=self._is_stopping())
        finally:
            self._armed_at = -math.inf
        if kept and self._h11 is not None:
            self._h11.receive_data(kept)
        self._arm()

    # -- BodyChannel, for mhd2.upload ---------------------------------------------

    async def next_body_event(self, conn: h11.Connection) -> h11.Data | h11.EndOfMessage:
        """The next piece of the request body, or its end."""
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if conn.trailing_data[1]:
                    raise trio.BrokenResourceError("the client closed mid-body") from exc
                await self._reject(exc.error_status_hint, str(exc))
                raise _CloseConnection from exc
            if event is h11.NEED_DATA:
                self._arm()
                conn.receive_data(cast(bytes, await self._stream.receive_some(BODY_RECV_SIZE)))
                continue
            if type(event) is h11.Data:
                return event
            if type(event) is h11.EndOfMessage:
                if self._request is not None:
                    self._request._body_read = True
                return event
            raise trio.BrokenResourceError("the client closed mid-body")

    async def send_continue(self, conn: h11.Connection) -> None:
        """``100 Continue``, sent only now that the application asked for the body."""
        if conn.they_are_waiting_for_100_continue:
            # RFC 9110 §10.1.1: "A server that receives a 100-continue
            # expectation in an HTTP/1.1 request ... MAY omit sending a 100
            # (Continue) response if it has already received some or all of
            # the content ... or if the framing indicates that there is no content."
            self._arm()
            await self._stream.send_all(b"HTTP/1.1 100 Continue\r\n\r\n")

    async def call_upload_cb(self, cb: Callable[..., Any], request: Request, data: bytes) -> Any:
        """Call an upload callback and check it returned its own upload action."""
        request._upload_action = None
        try:
            result = cb(request, data)
            if isawaitable(result):
                self._disarm()
                result = await result
            if result is None:
                result = request._upload_action or upload_action_abort_request(request)
            if not isinstance(result, UploadAction) or result is not request._upload_action:
                raise UsageError(
                    "an upload callback must return the upload action made for its request "
                    f"by an mhd2.upload_action_* function, not {result!r}"
                )
            if result.kind == "response" and result.response is not None:
                self._response = result.response
            return result
        except Exception:
            _drop_response(request._upload_action)
            await self._app_failed("an upload callback", request)
            raise _CloseConnection from None

    async def refuse(self, status: int, reason: str, code: RequestEndedCode) -> NoReturn:
        """Answer *status* with a short text, end the request with *code*, close."""
        await self._reject(status, reason, code)
        raise _CloseConnection

    async def abort(self) -> NoReturn:
        """Close the connection without a reply."""
        self._end(RequestEndedCode.BY_APP_ABORT)
        await trio.lowlevel.checkpoint()
        raise _CloseConnection


def _drop_response(action: Action | UploadAction | None) -> None:
    """Release the response of an action that will not be carried out."""
    response = getattr(action, "response", None)
    if response is not None:
        response._finish_use()


async def _close_tls(stream: trio.abc.Stream) -> None:
    """Close a TLS stream, sending close_notify if that takes at most a moment.

    Shielded, so that a cancelled connection still closes its socket; the
    bound keeps a peer that does not read from holding it open.
    """
    with trio.CancelScope(shield=True):
        with trio.move_on_after(TLS_CLOSE_SECONDS) as closing:
            try:
                await stream.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
        if closing.cancelled_caught:
            await trio.aclose_forcefully(stream)


async def _call(cb: Callable[..., Any], *args: Any) -> Any:
    result = cb(*args)
    if isawaitable(result):
        result = await result
    return result

