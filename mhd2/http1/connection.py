"""The HTTP/1.x connection loop: read a head, drive its exchange, decide what follows.

One task per connection, deliberately plain: no task per request, and one
cancel scope per connection (the transport's) whose deadline moves with
progress.  The loop reads a request head through the parser interface
(:mod:`mhd2._http1.parser`), makes an :class:`~mhd2.exchange.Exchange`, calls
the application, and carries out its action with :mod:`mhd2.http1.reply`,
:mod:`mhd2.upload` or an upgrade -- each of which *returns* how the request
went.  Keep-alive and the connection's end are decided here and only here;
an HTTP/2 preface is spotted by :mod:`mhd2.http1.preface`, a graceful stop's
step chosen by :mod:`mhd2.http1.stop`, the daemon's error pages written by
:mod:`mhd2.http1.error_page`.

Timeouts (see the daemon docs): ``keep_alive_timeout`` while waiting for the
next request (empty lines before it do not extend it); ``timeout`` from the
first byte of a head until the whole head is in (a trickled head does not
extend it), then as an inactivity limit -- every partial write and every body
read is progress; a body must also keep up ``min_body_rate``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, cast

import trio

from .._http1.chunked_check import ChunkedChecker
from .._http1.parser import Head, ParseError, Parser
from .._http1.screen import screen_head
from .._http1.unread_body import consume_buffered_body
from .._http1.writer import switching_protocols_head
from ..actions import ResponseAction, UpgradeAction
from ..app_calls import begin, call_app_now
from ..callbacks import report
from ..enums import ConnectionEvent, RequestEndedCode
from ..exchange import DaemonStopping, Ending, Exchange
from ..outcome import Outcome, app_outcome
from ..response import Response
from ..transport import TransportError
from ..upgrade import UpgradeHandle, run_upgrade_handler
from .body import RequestBody
from .error_page import send_error_page
from .head import read_head
from .interim import send_interim
from .preface import H2_PREFACE, complete_preface, may_be_preface
from .reply import reply_plan, send_reply
from .stop import StopStep, limit_first_wait, stop_step
from .watch import Watch, watch_client

if TYPE_CHECKING:
    from ..connection_info import ConnectionInfo
    from ..shared import Shared
    from ..transport import Transport

__all__ = ["HTTP1Connection"]

logger = logging.getLogger("mhd2")

#: Bytes asked for per read while waiting for a request head.
RECV_SIZE = 16 * 1024


class _Close(Exception):
    """Internal to this module: the request has ended; close the connection."""


class HTTP1Connection:
    """Serve HTTP/1.x requests on one transport until the connection ends.

    Args:
        transport: the connection's transport (closed at the end).
        info: what is known about the peer.
        shared: the daemon's shared record.

    Resource handling:
        :meth:`run` always closes the transport and reports
        ``ConnectionEvent.CLOSED`` once, whatever happens.

    Error handling:
        Protocol errors are answered with a 4xx/5xx and a close; an exception
        in an application callback becomes a 500 (or a close once the head is
        out), is logged on the ``mhd2`` logger, and ends the request with
        ``BY_APP_ERROR``.  Nothing escapes :meth:`run` but cancellation.
    """

    __slots__ = ("_add_date", "_begin", "_closing_idle", "_exchange", "_head_started", "_idle",
                 "_kept", "_overridden", "_parser", "_reply_started", "_request_timeout",
                 "_served", "_shared", "_strict_level", "_upgraded", "chunk_checker", "handoff",
                 "info", "transport")

    def __init__(self, transport: Transport, info: ConnectionInfo, shared: Shared) -> None:
        self.transport = transport
        self.info = info
        self._shared = shared
        options = shared.options
        self._request_timeout = options.timeout
        # The options every request reads, read once per connection (they
        # never change while a daemon runs).
        #: The request head goes through app_calls.begin (a proxy's fields, the URI logger).
        self._begin = bool(options.forwarded_headers) or options.early_uri_logger is not None
        self._strict_level = int(options.strict_level)
        self._add_date = not options.suppress_date_header
        self._overridden = False
        self._parser: Parser | None = None
        self._exchange: Exchange | None = None
        self.chunk_checker: ChunkedChecker | None = None
        self._kept: list[bytes] = []
        self._reply_started = False
        # True while no request is in progress (waiting for, or reading, a head).
        self._idle = True
        self._closing_idle = False
        self._head_started = False
        #: Requests begun on this connection (0: it may still be on its way).
        self._served = 0
        self._upgraded: UpgradeHandle | None = None
        #: The bytes read so far when the connection turned out to start with
        #: the HTTP/2 preface: :meth:`run` then returns without closing, and the
        #: daemon hands the transport and these bytes to the HTTP/2 loop.
        self.handoff: bytes | None = None

    # -- daemon-facing --------------------------------------------------------

    def close_if_idle(self) -> bool:
        """Graceful stop: close now if between requests; end a suspended request.

        The step is :func:`~mhd2.http1.stop.stop_step`'s (see :mod:`mhd2.http1.stop`).

        Returns:
            True if the connection was closed as idle.
        """
        step = stop_step(self._idle, self._head_started, self._served)
        if step is StopStep.CLOSE_NOW:
            self._closing_idle = True
            self.transport.scope.cancel()
            return True
        if step is StopStep.WAIT_FIRST:
            limit_first_wait(self.transport.scope)
        elif step is StopStep.IN_REQUEST:
            if self._exchange is not None:
                self._exchange.wake_for_stop()
            if self._upgraded is not None:
                self._upgraded.begin_stop()
        return False

    def cancel(self) -> None:
        """End the connection now (the grace period is over)."""
        self.transport.scope.cancel()
        self._closing_idle = True

    def cut(self) -> None:
        """ExchangeHost: end the request now from outside -- close the connection."""
        self.cancel()

    async def run(self) -> None:
        """Serve the connection to its end (see the class docstring)."""
        self._notify(ConnectionEvent.STARTED)
        transport = self.transport
        try:
            with transport.scope:
                await self._serve()
            if transport.scope.cancelled_caught and not self._closing_idle:
                await self._on_timeout()
        except _Close:
            pass
        except DaemonStopping:
            self._record_error_status(503)
            await self._send_error(503)
            self._end(RequestEndedCode.DAEMON_SHUTDOWN)
        except TransportError:
            self._end(RequestEndedCode.CLIENT_ABORT)
        except Exception:
            logger.exception("mhd2: internal error while serving %s", self.info.client_address)
            self._end(RequestEndedCode.CONNECTION_ERROR)
        finally:
            if self._exchange is not None:
                self._end(RequestEndedCode.DAEMON_SHUTDOWN if self._shared.stopping
                          else RequestEndedCode.CONNECTION_ERROR)
            if self.handoff is None:
                await transport.close()
                self._notify(ConnectionEvent.CLOSED)

    # -- ExchangeHost ------------------------------------------------------------

    def wait_client_gone(self) -> Awaitable[None] | Watch:
        """Watch the connection of a parked request; return when the client left.

        Returns the watching coroutine itself (the exchange awaits it): a
        parked request keeps no frame of this method.  On a plain socket, a
        :class:`~mhd2.http1.watch.Watch`, which a resume ends without a
        cancel scope.
        """
        return watch_client(self.transport, self._kept, self._shared.options.max_header_size)

    async def send_informational(self, status: int, fields: list[tuple[str, str]]) -> bool:
        """ExchangeHost: an interim head now (see :mod:`mhd2.http1.interim`)."""
        exchange = self._exchange
        if exchange is None:
            return False
        return await send_interim(self.transport, exchange, status, fields,
                                  lambda: self._reply_started)

    def resumed(self) -> None:
        """A parked request goes on: feed what came meanwhile, re-arm the deadline."""
        if self._kept and self._parser is not None:
            for data in self._kept:
                self._parser.feed(data)
                if self.chunk_checker is not None:
                    self.chunk_checker.feed(data)
            self._kept.clear()
        self.transport.arm(force=True)

    @property
    def timeout(self) -> float | None:
        """The in-request inactivity timeout of this connection."""
        return self._request_timeout

    def set_timeout(self, seconds: float | None) -> None:
        """Override the inactivity timeout for this connection (``MHD_C_O_TIMEOUT``).

        From now on it is also the keep-alive timeout of this connection.
        """
        self._request_timeout = seconds
        self._overridden = True
        self.transport.set_timeout(seconds)

    # -- the request loop -------------------------------------------------------

    async def _serve(self) -> None:
        shared = self._shared
        options = shared.options
        transport = self.transport
        max_head = options.max_header_size
        strict = self._strict_level >= 1
        max_requests = options.max_requests_per_connection
        http2 = options.http2
        parser = shared.make_parser(max_head)
        self._parser = parser
        served = 0
        idle_timeout = options.timeout
        while True:
            self._idle = True
            if not parser.has_next:
                if parser.at_eof or (shared.stopping and served):
                    return
                if transport.timeout != idle_timeout:
                    transport.set_timeout(idle_timeout)
                else:
                    transport.arm(force=served == 0)
                if shared.stopping:
                    limit_first_wait(transport.scope)  # (accepted just before the stop)
                if served:
                    data = await transport.receive_later(RECV_SIZE)
                else:
                    data = await transport.receive(RECV_SIZE)
                    if http2 and may_be_preface(data):
                        data = await complete_preface(transport, data)
                        if data.startswith(H2_PREFACE):
                            self.handoff = data
                            return
                if not data:
                    return
                while data[0] == 0x0D or data[0] == 0x0A:
                    # RFC 9112 §2.2: "a server that is expecting to receive and
                    # parse a request-line SHOULD ignore at least one empty
                    # line (CRLF) received prior to the request-line."  They
                    # are not progress: the idle deadline is not moved.
                    data = data.lstrip(b"\r\n")
                    if not data:
                        data = await transport.receive(RECV_SIZE)
                        if not data:
                            return
                parser.feed(data)
            if transport.timeout != self._request_timeout:
                transport.set_timeout(self._request_timeout)
            self._reply_started = False
            self._head_started = True
            # The head is usually in already: take it without read_head's
            # coroutine unless it needs more bytes, a limit or the strict checks.
            parsed = parser.next_head()
            head: Head | ParseError | None
            if type(parsed) is not Head or strict or parser.fed_count > max_head:
                head = await read_head(transport, parser, max_head, strict=strict, result=parsed)
            else:
                parser.stop_recording()
                head = parsed
            self._idle = False
            if head is None:
                return
            if isinstance(head, ParseError):
                await self._reject(head.status, head.detail)
                return
            self._head_started = False
            served += 1
            self._served = served
            if not await self._handle(parser, head,
                                      max_requests is not None and served >= max_requests):
                return
            parser.next_request()
            idle_timeout = (self._request_timeout if self._overridden
                            else options.keep_alive_timeout)

    async def _handle(self, parser: Parser, head: Head, last: bool) -> bool:
        """Serve one parsed request; return whether the connection stays open."""
        shared = self._shared
        scan = head.scan
        version = head.version
        target = head.target
        exchange = Exchange(
            shared, self, self.info, head.method.decode("ascii"), target.decode("latin-1"),
            "HTTP/1.1" if version == b"1.1" else "HTTP/" + version.decode("ascii", "replace"),
            scan.fields, scan.upload_size, head.lower_fields,
        )
        self._exchange = exchange
        if self._begin:
            if self.transport.holding and shared.options.early_uri_logger is not None:
                await self.transport.flush()  # the logger may wait: answered requests do not
            await begin(exchange, head.lower_fields)

        problem, must_close = screen_head(head, self._strict_level, last)
        if problem is not None:
            await self._reject(*problem)
            return False
        if self._strict_level >= 1 and scan.upload_size is None:
            self.chunk_checker = ChunkedChecker()
            self.chunk_checker.feed(parser.unparsed())
        else:
            self.chunk_checker = None

        # A plain callback answering with a response is served without a
        # coroutine; anything else goes through app_outcome.  Responses held
        # for one write with the next ones (pipelining) go out first then:
        # an async or upload callback, a suspension may wait, and an answered
        # request never waits for a later one.
        action = call_app_now(exchange)
        outcome: Outcome | None
        if type(action) is ResponseAction:
            outcome = action.response
        else:
            if self.transport.holding:
                await self.transport.flush()
            outcome = await app_outcome(exchange, self._upload_body, action)
        if type(outcome) is Response:
            return await self._reply(parser, exchange, outcome, head, must_close)
        if outcome is None:
            return False
        if isinstance(outcome, Ending):
            await self._finish_early(outcome)
            return False
        if isinstance(outcome, UpgradeAction):
            await self._upgrade(parser, exchange, outcome)
            return False
        return await self._reply(parser, exchange, outcome, head, must_close)

    def _upload_body(self) -> RequestBody:
        """The current request's body, for an upload action."""
        return RequestBody(self, cast(Parser, self._parser), cast(Exchange, self._exchange))

    async def _reply(self, parser: Parser, exchange: Exchange, response: Response,
                     head: Head, must_close: bool) -> bool:
        if exchange.set_response(response):
            await exchange.interim_done()  # (a 103 being written goes first)
        scan = head.scan
        upload_size = scan.upload_size
        # A bodiless request (the common GET) has nothing left to read.
        body_done = upload_size == 0 or exchange.body_read
        if not body_done:
            body_done, drain = consume_buffered_body(parser, upload_size)
            if not body_done and (not drain or parser.expects_continue):
                must_close = True
        if body_done and self.chunk_checker is not None and self.chunk_checker.problem is not None:
            must_close = True
        add_date = self._add_date
        planned = reply_plan(response, (head.version == b"1.1", head.method == b"HEAD",
                                        scan.wants_close, scan.wants_keep_alive, must_close,
                                        self._shared.quiescing, add_date))
        plan = planned.plan
        self._reply_started = True
        transport = self.transport
        sent_before = transport.bytes_sent
        if parser.has_more and plan.keep_alive and body_done and response.in_memory:
            # More pipelined requests already here: their in-memory responses
            # leave together, in one write (a body made on the fly never waits).
            transport.batch = True
            try:
                code = await send_reply(transport, exchange, response, planned, add_date=add_date)
            finally:
                transport.batch = False
        else:
            code = await send_reply(transport, exchange, response, planned, add_date=add_date)
        if code is not RequestEndedCode.COMPLETED_OK:
            if code is RequestEndedCode.BY_APP_ERROR and transport.bytes_sent == sent_before:
                # A content creator failed before the head left: still time for a 500.
                self._reply_started = False
                await self._reject(500, "", code)
            else:
                self._end(code)
            return False
        self._end(code)
        if not plan.keep_alive:
            if not body_done or parser.unparsed():
                await transport.linger()
            return False
        # The rest of a small unread body is read and discarded to keep the connection.
        return body_done or await RequestBody(self, parser, exchange).discard()

    async def _upgrade(self, parser: Parser, exchange: Exchange, action: UpgradeAction) -> None:
        """Send ``101 Switching Protocols`` and run the upgrade handler; never keep HTTP."""
        transport = self.transport
        await transport.send(switching_protocols_head(
            action.value, action.headers, add_date=self._add_date))
        request = exchange.request
        self._end(RequestEndedCode.COMPLETED_OK_UPGRADE)
        # Upgraded connections have no idle timeout (MHD2); they still count
        # against the connection limits until the handler is done.
        transport.timeout = None
        transport.disarm()
        handle = UpgradeHandle(transport, parser.unparsed(), request)
        self._upgraded = handle  # told when a graceful stop begins
        await run_upgrade_handler(self._shared, action, request, handle)

    # -- endings ------------------------------------------------------------------

    def _end(self, code: RequestEndedCode) -> None:
        """Report the end of the current request, exactly once."""
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            exchange.end(code)

    def _record_error_status(self, status: int) -> None:
        """The daemon answers *status* itself: the request's end reports it.

        ``notify_request_ended`` (the access log) then sees the real status
        (``request.response_status``), not ``None``. A request whose head
        could not be parsed (400, 408, 413, 414, 431) is reported too, as
        method and URI ``-`` with ``HTTP_PROTOCOL_ERROR`` / ``TIMEOUT_REACHED``.
        """
        exchange = self._exchange
        if exchange is None:
            if self._shared.options.notify_request_ended is None:
                return
            exchange = Exchange(self._shared, self, self.info, "-", "-", "HTTP/1.1", [], 0)
            self._exchange = exchange
        exchange.daemon_status(status)

    def _notify(self, event: ConnectionEvent) -> None:
        notify = self._shared.options.notify_connection
        if notify is not None:
            report(notify, self.info, event)

    async def _finish_early(self, ending: Ending) -> None:
        """End the request without the application's response, then close."""
        if ending.status is None:
            self._end(ending.code)
            await trio.lowlevel.checkpoint()
            return
        await self._reject(ending.status, "", ending.code)

    async def _reject(self, status: int, detail: str,
                      code: RequestEndedCode = RequestEndedCode.HTTP_PROTOCOL_ERROR) -> None:
        """Answer a request that cannot be served, then close (after lingering)."""
        if detail:
            logger.debug("mhd2: %d for %s: %s", status, self.info.client_address, detail)
        self._record_error_status(status)
        self._end(code)
        await self._send_error(status)
        await self.transport.linger()

    async def _send_error(self, status: int) -> None:
        """A daemon-made error page: a fixed text per status, never the request echoed."""
        if self._reply_started:
            return  # too late for a status line: the caller closes
        self._reply_started = True
        if self._exchange is not None:
            await self._exchange.interim_done()
        await send_error_page(self.transport, status, add_date=self._add_date)

    async def _on_timeout(self) -> None:
        """The inactivity deadline passed: 408 if a request was begun, then close."""
        if self._exchange is not None:
            self._end(RequestEndedCode.TIMEOUT_REACHED)
        elif self._head_started:
            self._record_error_status(408)
            self._end(RequestEndedCode.TIMEOUT_REACHED)
            await self._send_error(408)
