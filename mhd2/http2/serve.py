"""Serving one HTTP/2 stream: the application, its action, the reply, and the end.

The connection starts a stream here once its engine reported the request
(:class:`~mhd2.http2.events.RequestReceived`): :func:`serve_now` in the
reader for a request answered at once from memory, else :func:`run_stream`
in a task of its own (a malformed request, which never became a stream, only
has its end reported: :func:`report_malformed`).  Either calls the application
through the exchange,
carries out what it returned (a response: :mod:`mhd2.http2.reply`; an
upgrade: :mod:`mhd2.http2.tunnel`; an error page), reports the request's end
once (``notify_request_ended``) and frees the stream (:meth:`H2Stream.finish
<mhd2.http2.stream.H2Stream.finish>`).

This module calls down only: the stream and the reply functions do not call
back into it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio
from h2.errors import ErrorCodes

from ..actions import ResponseAction, UpgradeAction
from ..app_calls import begin, call_app_now
from ..enums import RequestEndedCode
from ..exchange import ClientGone, DaemonStopping, Ending, Exchange
from ..outcome import NOT_STARTED, app_outcome
from .reply import refuse_upgrade, reply_now, send_error_page, send_response
from .tunnel import serve_upgrade

if TYPE_CHECKING:
    from ..upload import BodySource
    from .port import StreamPort
    from .stream import H2Stream

__all__ = ["report_malformed", "run_stream", "serve_now"]

logger = logging.getLogger("mhd2")

_TRANSPORT_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class _ResetStream:
    """The :class:`~mhd2.exchange.ExchangeHost` of a malformed request: its stream was
    reset before it began, so the client is gone and nothing can be sent."""

    __slots__ = ()

    async def wait_client_gone(self) -> None:
        return

    def resumed(self) -> None:
        pass

    @property
    def timeout(self) -> float | None:
        return None

    def set_timeout(self, seconds: float | None) -> None:
        pass

    def cut(self) -> None:
        pass

    async def send_informational(self, status: int, fields: list[tuple[str, str]]) -> bool:
        return False


_RESET_STREAM = _ResetStream()


def report_malformed(port: StreamPort, status: int) -> None:
    """Report the end of a malformed request (``notify_request_ended``, and so the
    access log), as HTTP/1 reports a head it refuses: method and URI ``-``,
    ``request.response_status`` *status* (the ``400`` HTTP/1 would have
    answered; over HTTP/2 the stream is reset instead, RFC 9113 §8.1.1), code
    ``HTTP_PROTOCOL_ERROR``.

    Called by the connection's reader while it dispatches the engine's events,
    so before it writes the ``RST_STREAM`` the engine queued: the application
    hears of the end first, as over HTTP/1, where ``notify_request_ended`` is
    called before the ``400`` is written.
    """
    if port.shared.options.notify_request_ended is None:
        return
    exchange = Exchange(port.shared, _RESET_STREAM, port.info, "-", "-", "HTTP/2", [], 0)
    exchange.daemon_status(status)
    exchange.end(RequestEndedCode.HTTP_PROTOCOL_ERROR)


def serve_now(stream: H2Stream) -> bool:
    """Serve the request here and now, if that needs no waiting.

    Called by the connection's reader once it has handled the frames of the
    read that brought the request's HEADERS.  A bodiless request whose
    callback answers synchronously with a response in memory that fits the
    peer's windows is answered without a task of its own: its frames are
    queued for the reader's next write, and the request ends here.  Anything
    else -- a coroutine callback, a suspend, an upload, a body source to
    stream -- goes on in :func:`run_stream`, from what the callback returned
    (kept in ``stream.started``).

    Returns:
        Whether the request has ended (else the caller starts :func:`run_stream`).
    """
    port = stream.port
    options = port.shared.options
    if not stream.body_ended or options.early_uri_logger is not None or port.ending:
        return False
    exchange = stream.exchange
    if options.forwarded_headers:
        exchange.believe_proxy(exchange.request._headers)
    started = call_app_now(exchange)
    stream.started = started
    if type(started) is not ResponseAction:
        return False
    code = RequestEndedCode.COMPLETED_OK
    try:
        if not reply_now(stream, exchange, started.response,
                         is_head=exchange.request.method == "HEAD",
                         add_date=not options.suppress_date_header):
            return False
    except Exception:
        logger.exception("mhd2: internal error on HTTP/2 stream %d of %s", stream.id,
                         port.info.client_address)
        stream.reset(ErrorCodes.INTERNAL_ERROR)
        code = RequestEndedCode.CONNECTION_ERROR
    exchange.end(code)
    stream.finish(in_reader=True)
    return True


async def run_stream(stream: H2Stream) -> None:
    """Serve the request to its end in the stream's task; report the end once; free
    the stream.

    Error handling:
        The client's reset, the connection's end and transport errors end the
        request (``CLIENT_ABORT`` or the code the stream was cancelled with);
        the stream's inactivity timeout resets it (``CANCEL``,
        ``TIMEOUT_REACHED``); a graceful stop while parked answers 503; an
        internal error is logged and the stream reset (``INTERNAL_ERROR``).
    """
    exchange = stream.exchange
    code = RequestEndedCode.CONNECTION_ERROR
    try:
        if stream.gone.is_set():
            # Reset before its task ran (rapid reset): no application work.
            code = stream.cancel_code or RequestEndedCode.CLIENT_ABORT
            return
        with stream.scope:
            stream.arm(force=True)
            code = await _serve(stream)
        if stream.scope.cancelled_caught:
            code = stream.cancel_code or RequestEndedCode.TIMEOUT_REACHED
            if stream.cancel_code is None:
                logger.debug("mhd2: HTTP/2 stream %d of %s timed out", stream.id,
                             stream.port.info.client_address)
                stream.reset(ErrorCodes.CANCEL)
    except ClientGone:
        code = stream.cancel_code or RequestEndedCode.CLIENT_ABORT
    except DaemonStopping:
        code = RequestEndedCode.DAEMON_SHUTDOWN
        await send_error_page(stream, 503)
    except _TRANSPORT_ERRORS:
        code = stream.cancel_code or RequestEndedCode.CLIENT_ABORT
    except Exception:
        logger.exception("mhd2: internal error on HTTP/2 stream %d of %s", stream.id,
                         stream.port.info.client_address)
        stream.reset(ErrorCodes.INTERNAL_ERROR)
    finally:
        exchange.end(code)
        stream.finish()


async def _serve(stream: H2Stream) -> RequestEndedCode:
    """Call the application (unless :func:`serve_now` did) and carry out its action."""
    exchange = stream.exchange
    request = exchange.request
    options = stream.port.shared.options
    started = stream.started
    if started is NOT_STARTED and (options.forwarded_headers
                                   or options.early_uri_logger is not None):
        await begin(exchange, request._headers)

    def body_source() -> BodySource:
        # The stream is its own request body source (for an upload action).
        return stream

    outcome = await app_outcome(exchange, body_source, started)
    if outcome is None:
        stream.reset(ErrorCodes.INTERNAL_ERROR)
        return RequestEndedCode.BY_APP_ABORT
    if isinstance(outcome, UpgradeAction):
        if stream.tunnel:
            return await serve_upgrade(stream, outcome)
        return await refuse_upgrade(stream, outcome)
    if isinstance(outcome, Ending):
        if outcome.status is None:
            stream.reset(ErrorCodes.INTERNAL_ERROR)
        else:
            await send_error_page(stream, outcome.status)
        return outcome.code
    exchange.set_response(outcome)
    if (not stream.body_ended and not stream.expects_continue and not stream.tunnel
            and request.method != "CONNECT"):
        # (A client waiting for 100 Continue sends no body: answer at once;
        # after a CONNECT come tunnel bytes, not a body -- RFC 9113 §8.5.)
        await stream.discard_small_body()
    code = await send_response(stream, exchange, outcome, is_head=request.method == "HEAD",
                               add_date=not options.suppress_date_header)
    if code is RequestEndedCode.BY_APP_ERROR and not stream.headers_sent:
        await send_error_page(stream, 500)
    return code
