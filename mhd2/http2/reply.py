"""Writing one response on an HTTP/2 stream: a HEADERS block, then DATA frames.

The body comes from the same producers as HTTP/1's (:mod:`mhd2.body`:
buffers, iovecs, files -- read, no ``sendfile``: the bytes go into DATA
frames --, pipes and dynamic content creators), but there is no framing to
decide: the stream carries the body's end (END_STREAM on the last piece),
trailers are a second HEADERS block, and ``Content-Length`` is sent only
when it is the truth.  RFC 9113 §8.2.2:
"An endpoint MUST NOT generate an HTTP/2 message containing
connection-specific header fields", so ``Connection`` and
``Transfer-Encoding`` never leave.

:func:`send_response` *returns* how the request ended; only the client's
going away (:class:`~mhd2.exchange.ClientGone`, transport errors) and
:class:`~mhd2.exchange.DaemonStopping` propagate.  :func:`send_error_page`
and :func:`refuse_upgrade` send the pages the daemon makes itself (503 when
stopping, 4xx of uploads, 500, 501 for ``action_upgrade``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio
from h2.errors import ErrorCodes

from .._date import date_header_line
from ..body import READ_SIZE, BodyProducer, Ended, Suspended, guard_body, producer_for
from ..body_source import BufferBody
from ..enums import RequestEndedCode, reason_phrase
from ..errors import UsageError
from ..exchange import ClientGone, Exchange
from ..response import Response
from .checks import strip_response_fields

if TYPE_CHECKING:
    from ..actions import UpgradeAction
    from .stream import H2Stream

__all__ = ["refuse_upgrade", "reply_now", "response_headers", "send_error_page", "send_response"]

logger = logging.getLogger("mhd2")

#: Bound on sending a daemon-made error page.
ERROR_PAGE_SECONDS = 5.0


def _encode(fields: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in fields]


def response_headers(response: Response, *, add_date: bool,
                     body_allowed: bool) -> list[tuple[bytes, bytes]]:
    """The HEADERS block of *response*: ``:status``, its fields, ``date``, ``content-length``.

    RFC 9110 §8.6: "A server MUST NOT send a Content-Length header field in
    any response with a status code of 1xx (Informational) or 204 (No
    Content)"; mhd2 sends one only when the body's size is known.
    """
    status = response.status
    headers = [(b":status", b"%d" % status), *_encode(strip_response_fields(response._headers))]
    if add_date and not response._has_date:
        headers.append((b"date", date_header_line()[6:-2]))
    size = response.size
    if size is not None and status != 204 and status >= 200 and (body_allowed or status != 304):
        headers.append((b"content-length", b"%d" % size))
    return headers


def _body_allowed(response: Response, is_head: bool) -> bool:
    """Whether *response* carries a body (not for HEAD, head-only, 204 or 304)."""
    return not (is_head or response.head_only or response.status in (204, 304))


def reply_now(stream: H2Stream, exchange: Exchange, response: Response, *, is_head: bool,
              add_date: bool) -> bool:
    """Queue all of *response* on *stream* at once, if that needs no waiting.

    For a response without a body, or with a body in memory that one DATA
    frame can carry within the peer's flow-control windows: HEADERS (and
    DATA) are queued with END_STREAM for the connection's writer.

    Returns:
        Whether the response was queued (the exchange was then told:
        :meth:`~mhd2.exchange.Exchange.set_response`, ``head_sent``, ``body_sent``); if not, nothing was done and the
        caller sends it with :func:`send_response`.
    """
    status = response.status
    if status < 200:
        return False
    body_allowed = _body_allowed(response, is_head)
    data = b""
    if body_allowed:
        body = response._body
        if type(body) is not BufferBody:
            return False
        raw = body.data
        if (raw.nbytes if type(raw) is memoryview else len(raw)) > stream.room():
            return False
        data = bytes(raw)  # (no copy of bytes)
    headers = response_headers(response, add_date=add_date, body_allowed=body_allowed)
    exchange.set_response(response)
    exchange.head_sent(status)
    stream.queue_response(headers, data)
    exchange.body_sent(len(data))
    return True


async def send_response(stream: H2Stream, exchange: Exchange, response: Response, *,
                        is_head: bool, add_date: bool) -> RequestEndedCode:
    """Send *response* on *stream*.

    Returns:
        ``COMPLETED_OK``; or how the request ended when the body could not be
        completed (``FILE_ERROR``, ``BY_APP_ABORT``, ``BY_APP_ERROR``); the
        stream is then reset by the caller.

    Raises:
        ClientGone, trio.BrokenResourceError: the client reset the stream or left.
        DaemonStopping: the daemon stopped while a content creator was suspended.
    """
    status = response.status
    body_allowed = _body_allowed(response, is_head)
    headers = response_headers(response, add_date=add_date, body_allowed=body_allowed)
    exchange.head_sent(status)
    if not body_allowed:
        await stream.send_headers(headers, end=True)
        return RequestEndedCode.COMPLETED_OK
    producer = producer_for(response._body, exchange.request, join_up_to=READ_SIZE)
    try:
        if producer.done:  # an empty body: END_STREAM on the HEADERS
            await stream.send_headers(headers, end=True)
            return RequestEndedCode.COMPLETED_OK
        return await guard_body(exchange, _send_head_and_body(stream, headers, producer, exchange),
                                "HTTP/2 reply")
    finally:
        producer.close()
        exchange.body_sent(stream.body_sent)


async def _send_head_and_body(stream: H2Stream, headers: list[tuple[bytes, bytes]],
                              producer: BodyProducer, exchange: Exchange) -> None:
    """HEADERS, then DATA frames of what *producer* makes; the body's end ends the stream."""
    await stream.send_headers(headers, end=False, flush=False)
    while not producer.done:
        piece = await producer.pull()
        if isinstance(piece, Ended):
            footers = strip_response_fields(list(piece.footers))
            if footers:
                # RFC 9113 §8.1: a trailer section is a HEADERS frame that ends the stream.
                await stream.send_trailers(_encode(footers))
            else:
                await stream.send_data(b"", end=True)
            return
        if isinstance(piece, Suspended):
            await exchange.park()
            continue
        await stream.send_data(piece, end=producer.done)
        del piece  # (a parked stream keeps no piece)
    if not stream.closed_local:
        await stream.send_data(b"", end=True)


# -- pages made by the daemon --------------------------------------------------------------


async def refuse_upgrade(stream: H2Stream, action: UpgradeAction) -> RequestEndedCode:
    """``action_upgrade`` on an HTTP/2 stream: 501, logged with the reason.

    RFC 9113 §8.6: "HTTP/2 removes support for the 101 (Switching
    Protocols) informational status code" -- there is no connection of
    this request's own to hand to an upgrade handler.
    """
    request = stream.exchange.request
    try:
        raise UsageError(
            f"action_upgrade({action.value!r}) on an HTTP/2 stream: HTTP/2 has no "
            "Upgrade (RFC 9113 §8.6); answered 501. Serve this endpoint over HTTP/1.1 "
            "(e.g. a TLS context without 'h2' in its ALPN list, or Daemon(http2=False))"
        )
    except UsageError:
        logger.exception("mhd2: refused an upgrade for %s %s", request.method, request.uri)
    await send_error_page(stream, 501)
    return RequestEndedCode.BY_APP_ERROR


async def send_error_page(stream: H2Stream, status: int) -> None:
    """A daemon-made error page (fixed text per status) on *stream*, or a reset if too late.

    Never raises for a client that is gone: the stream is then reset (or was).
    """
    if stream.headers_sent or stream.closed_local or stream.gone.is_set():
        stream.reset(ErrorCodes.INTERNAL_ERROR)
        return
    body = b"%d %s\n" % (status, reason_phrase(status).encode("latin-1"))
    headers = [(b":status", b"%d" % status),
               (b"content-type", b"text/plain; charset=utf-8"),
               (b"x-content-type-options", b"nosniff"),
               (b"content-length", b"%d" % len(body))]
    if not stream.port.shared.options.suppress_date_header:
        headers.append((b"date", date_header_line()[6:-2]))
    stream.exchange.head_sent(status)
    try:
        with trio.move_on_after(ERROR_PAGE_SECONDS):
            await stream.send_headers(headers, end=False, flush=False)
            await stream.send_data(body, end=True)
    except (ClientGone, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    if not stream.closed_local:
        stream.reset(ErrorCodes.INTERNAL_ERROR)
