"""Writing one HTTP/1 response: its head, then its body by source.

The framing was decided beforehand (:func:`mhd2._http1.framing.plan_reply`);
here the body's pieces, from its producer (:mod:`mhd2.body`, shared with
HTTP/2), are framed and pushed through the connection's
:class:`~mhd2.transport.Transport`.  Small responses leave in a single write
(a reusable one from its cached wire bytes), and a file range on a plain
socket without framing goes by ``sendfile``.

:func:`send_reply` *returns* how the request ended; only the transport's own
errors (the client went away) and :class:`~mhd2.exchange.DaemonStopping`
(stopped while a content creator was suspended) propagate.
"""

from __future__ import annotations

import logging
from typing import TypeAlias, cast

from .._date import date_header_line
from .._http1.framing import ReplyPlan, plan_reply
from .._http1.writer import BODY_WRITERS, BodyWriter, framing_header_line, status_line
from ..body import BodyProducer, Ended, FdProducer, Suspended, body_failed, producer_for
from ..body_source import BufferBody
from ..enums import RequestEndedCode
from ..exchange import Exchange
from ..response import Response
from ..transport import Transport

__all__ = ["DirectBody", "Planned", "RequestSide", "build_head", "reply_plan", "send_reply"]

logger = logging.getLogger("mhd2")

#: Bodies up to this size are joined with the head into one ``send_all``.
COALESCE_LIMIT = 16 * 1024




class DirectBody:
    """A suspended content creator's body over a plain socket, written from outside its task.

    The :class:`~mhd2.exchange.ParkedBody` of HTTP/1: made once per response
    whose creator suspends on a plain socket, handed out by
    :meth:`Exchange.parked_body <mhd2.exchange.Exchange.parked_body>` only
    while the connection's task is parked.  mhd2.fanout writes an event
    stream's shared, already framed event bytes through it to every parked
    subscriber from the publishing task, without waking theirs.
    """

    __slots__ = ("chunked", "transport")

    def __init__(self, transport: Transport, chunked: bool) -> None:
        self.transport = transport
        self.chunked = chunked

    def send_nowait(self, data: bytes | list[bytes]) -> int:
        return self.transport.send_nowait(data)

    def owe(self, rest: bytes) -> None:
        self.transport.owe(rest)


def build_head(response: Response, plan: ReplyPlan, date_line: bytes) -> bytes:
    """The status line and header section of *response* under *plan*.

    *date_line* is the ``Date`` header line to add (``b""`` for none).
    """
    parts = [status_line(plan.version, response.status, response.reason), response._blob,
             date_line]
    if not response._app_content_length:
        parts.append(framing_header_line(plan.framing, response.size))
    if not plan.keep_alive:
        parts.append(b"Connection: close\r\n")
    elif plan.announce_keep_alive:
        parts.append(b"Connection: keep-alive\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


#: The request's side of a reply plan, as :func:`reply_plan` takes it:
#: ``(HTTP/1.1, HEAD, "Connection: close" asked, "Connection: keep-alive"
#: asked, the request forces a close, the daemon is quiescing, add a Date)``.
RequestSide: TypeAlias = tuple[bool, bool, bool, bool, bool, bool, bool]


class Planned:
    """How one response answers requests of one :data:`RequestSide`.

    Attributes:
        plan: the framing and the connection's fate (:class:`ReplyPlan`).
        data: the whole reply as bytes -- head and body -- when the response
            is reusable with a small in-memory body (``None`` otherwise);
            kept on the response, remade when the ``Date`` line changes.
        date: the ``Date`` line *data* was made with (``b""``: none).
        body_size: the bytes of *data* after the head.
    """

    __slots__ = ("body_size", "data", "date", "plan")

    def __init__(self, plan: ReplyPlan) -> None:
        self.plan = plan
        self.data: bytes | None = None
        self.date = b""
        self.body_size = 0


def reply_plan(response: Response, side: RequestSide) -> Planned:
    """How *response* answers a request whose side is *side*.

    A frozen response's own inputs to :func:`~mhd2._http1.framing.plan_reply`
    never change, so a reusable response keeps its plans by *side* (at most
    2**7 of them), with its wire bytes when its body is small and in memory:
    answering with it is then a dictionary lookup and one write.  The
    ``Date`` line is still that of the current second (RFC 9110 §6.6.1: an
    origin server with a clock "MUST generate a Date header field" in 2xx,
    3xx and 4xx responses): the bytes are remade when it changes.
    """
    replies = response._replies
    planned: Planned | None = replies.get(side) if replies is not None else None
    if planned is None:
        http11, is_head, wants_close, wants_keep_alive, must_close, stopping, _ = side
        planned = Planned(plan_reply(
            http11=http11, is_head=is_head, wants_close=wants_close,
            wants_keep_alive=wants_keep_alive, must_close=must_close,
            status=response.status, size_known=response.size is not None,
            chunked=response.chunked, conn_close=response.conn_close,
            head_only=response.head_only,
            http10_compatible_strict=response.http10_compatible_strict,
            http10_server=response.http10_server,
            app_content_length=response._app_content_length, daemon_stopping=stopping,
        ))
        if not response.reusable:
            return planned
        if replies is None:
            replies = response._replies = {}
        replies[side] = planned
        body = response._body
        if type(body) is not BufferBody or len(body.data) > COALESCE_LIMIT:
            return planned
    elif planned.data is None:
        return planned
    date = date_header_line() if side[6] and not response._has_date else b""
    if planned.data is None or planned.date is not date:
        plan = planned.plan
        head = build_head(response, plan, date)
        data = (_head_and_buffer(head, cast(BufferBody, response._body).data,
                                 BODY_WRITERS[plan.framing])
                if plan.send_body else head)
        planned.date = date
        planned.body_size = len(data) - len(head)
        planned.data = data
    return planned


async def send_reply(transport: Transport, exchange: Exchange, response: Response,
                     planned: Planned, *, add_date: bool) -> RequestEndedCode:
    """Send *response* as *planned* (:func:`reply_plan`) says.

    Returns:
        ``COMPLETED_OK``; or, when the body could not be completed and the
        connection must be closed, how the request ended (``FILE_ERROR``,
        ``BY_APP_ABORT``, ``BY_APP_ERROR`` -- a failed content creator is
        logged on the ``mhd2`` logger).

    Raises:
        trio.BrokenResourceError, trio.ClosedResourceError: the client went away.
        DaemonStopping: the daemon stopped while a content creator was suspended.
    """
    exchange.head_sent(response.status)
    wire = planned.data
    if wire is not None:
        await transport.send(wire)
        exchange.body_sent(planned.body_size)
        return RequestEndedCode.COMPLETED_OK
    plan = planned.plan
    body = response._body
    date = date_header_line() if add_date and not response._has_date else b""
    head = build_head(response, plan, date)
    if not plan.send_body:
        await transport.send(head)
        return RequestEndedCode.COMPLETED_OK
    writer = BODY_WRITERS[plan.framing]
    if type(body) is BufferBody and len(body.data) <= COALESCE_LIMIT:
        # As reply_plan's wire bytes, made for this once: one write, no producer.
        wire = _head_and_buffer(head, body.data, writer)
        await transport.send(wire)
        exchange.body_sent(len(wire) - len(head))
        return RequestEndedCode.COMPLETED_OK
    # What was written beyond the head is the body (and its framing), as far
    # as the client got it: an aborted download is not logged as complete.
    body_starts = transport.bytes_sent + len(head)
    producer = producer_for(body, exchange.request, join_up_to=COALESCE_LIMIT)
    if type(producer) is FdProducer and writer.raw and transport.can_sendfile:
        sending = _sendfile(transport, head, producer)
    else:
        sending = _send_produced(transport, head, producer, writer, exchange)
    del head  # the writer has it (a parked event stream keeps no copy here)
    try:
        try:
            await sending
        except Exception as exc:
            return body_failed(exchange, exc, "reply")
        return RequestEndedCode.COMPLETED_OK
    finally:
        producer.close()
        exchange.body_sent(max(0, transport.bytes_sent - body_starts))


def _head_and_buffer(head: bytes, data: bytes | bytearray | memoryview, writer: BodyWriter) -> bytes:
    """*head* and a whole in-memory body, framed by *writer*, as one ``bytes``."""
    if not data:
        return head + writer.end()
    return b"".join([head, *writer.frame(data), writer.end()])


async def _send_produced(sink: Transport, head: bytes, producer: BodyProducer,
                         writer: BodyWriter, exchange: Exchange) -> None:
    """Send *head*, then the body *producer* makes, framed by *writer*.

    The head leaves with the first piece (and a small last piece with the
    body's end: one write), except before a slow source (a pipe, a file)
    and when held responses are waiting (pipelining) and the source may wait.
    """
    pending: bytes = head
    del head  # (pending holds it until it is sent; a parked stream keeps neither)
    if producer.slow or (producer.may_wait and sink.holding):
        # Responses held for one write with this one leave now, with this
        # head: the source may wait, an answered request does not.
        await sink.send(pending)
        pending = b""
    raw = writer.raw
    while not producer.done:
        piece = await producer.pull()
        if isinstance(piece, Ended):
            await sink.send(pending + writer.end(piece.footers))
            return
        if isinstance(piece, Suspended):
            if pending or sink.holding:
                # Owed bytes of a direct write (DirectBody) leave before
                # the task parks: nothing is owed while it is parked.
                await sink.send(pending)
                pending = b""
            if sink.is_plain and not exchange.has_direct_body:
                exchange.set_direct_body(DirectBody(sink, not raw))
            await exchange.park()
            continue
        data = piece
        del piece  # (a parked stream keeps no piece)
        if raw and len(data) > COALESCE_LIMIT:
            # A large piece as it is: no copy to join it with the head.
            if pending:
                await sink.send(pending)
                pending = b""
            await sink.send(data)
            del data
            continue
        pieces = writer.frame(data, producer.ext)
        del data
        if pending:
            pieces = [pending, *pieces]
            pending = b""
        if producer.done:
            pieces.append(writer.end())
            await sink.send(b"".join(pieces))
            return
        await sink.send(b"".join(pieces) if len(pieces) > 1 else pieces[0])
        del pieces
    tail = writer.end()
    if pending or tail:
        await sink.send(pending + tail)


async def _sendfile(sink: Transport, head: bytes, producer: FdProducer) -> None:
    """Send *head*, then a file's byte range with ``sendfile`` (plain socket, no framing)."""
    await sink.send(head)
    while not producer.done:
        producer.advance(await sink.sendfile(producer.fd, producer.offset, producer.left))
