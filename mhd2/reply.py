"""Writing one HTTP/1 response: its head, then its body by source.

The framing was decided beforehand (:func:`mhd2._http1.framing.plan_reply`);
here each body source has one small sender, picked from a table keyed by the
source's type, that pushes bytes through the connection's
:class:`~mhd2.transport.Transport`.  Small responses leave in a single write.

:func:`send_reply` *returns* how the request ended; only the transport's own
errors (the client went away) and :class:`~mhd2.exchange.DaemonStopping`
(stopped while a content creator was suspended) propagate.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, cast

import trio

from ._http1.date import date_header_line
from ._http1.framing import ReplyPlan, plan_reply
from ._http1.writer import BODY_WRITERS, BodyWriter, framing_header_line, status_line
from .callbacks import call_maybe_await
from .dcc import DCCContext, DCCStep, dcc_step, lend_buffer, return_buffer
from .enums import RequestEndedCode
from .exchange import DaemonStopping, Exchange
from .response import BufferBody, CallbackBody, FdBody, IovecBody, PipeBody, Response
from .transport import Transport

__all__ = ["BodyAborted", "DirectBody", "Planned", "RequestSide", "body_failed", "build_head",
           "guard_body", "reply_plan", "send_reply"]

logger = logging.getLogger("mhd2")

#: Bodies up to this size are joined with the head into one ``send_all``.
COALESCE_LIMIT = 16 * 1024
#: Read size for file and pipe bodies when ``sendfile`` cannot be used.
READ_SIZE = 64 * 1024




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


class BodyAborted(Exception):
    """A body sender's way to say the body cannot be completed, and how it ends."""

    def __init__(self, code: RequestEndedCode, why: str) -> None:
        super().__init__(why)
        self.code = code


async def guard_body(exchange: Exchange, sending: Awaitable[None], what: str) -> RequestEndedCode:
    """Await *sending* (a response's body going out); how the request ended.

    Shared by the HTTP/1 and HTTP/2 senders: a :class:`BodyAborted` is the
    code it carries (logged at debug), a failure of the application's content
    creator is ``BY_APP_ERROR`` (logged), and the transport's own errors and
    :class:`~mhd2.exchange.DaemonStopping` propagate.
    """
    try:
        await sending
    except Exception as exc:
        return body_failed(exchange, exc, what)
    return RequestEndedCode.COMPLETED_OK


def body_failed(exchange: Exchange, exc: Exception, what: str) -> RequestEndedCode:
    """How the request ended when sending its body raised *exc* (being handled):
    :func:`guard_body`'s rules, for a sender that awaits the body itself
    (one coroutine frame fewer for every parked event stream).

    Raises:
        The transport's own errors and DaemonStopping: *exc* again.
    """
    if isinstance(exc, BodyAborted):
        logger.debug("mhd2: %s to %s %s cut: %s", what, exchange.request.method,
                     exchange.request.uri, exc)
        return exc.code
    if isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError | OSError
                  | DaemonStopping):
        raise exc
    exchange.app_failed("a content creator")
    return RequestEndedCode.BY_APP_ERROR


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
    exchange.status = response.status
    wire = planned.data
    if wire is not None:
        await transport.send(wire)
        exchange.body_bytes_sent = planned.body_size
        return RequestEndedCode.COMPLETED_OK
    plan = planned.plan
    body = response._body
    date = date_header_line() if add_date and not response._has_date else b""
    head = build_head(response, plan, date)
    if not plan.send_body:
        await transport.send(head)
        return RequestEndedCode.COMPLETED_OK
    # What was written beyond the head is the body (and its framing), as far
    # as the client got it: an aborted download is not logged as complete.
    body_starts = transport.bytes_sent + len(head)
    sending = _SENDERS[type(body)](transport, head, body, BODY_WRITERS[plan.framing], exchange)
    del head  # the sender has it (a parked event stream keeps no copy here)
    try:
        try:
            await sending
        except Exception as exc:
            return body_failed(exchange, exc, "reply")
        return RequestEndedCode.COMPLETED_OK
    finally:
        exchange.body_bytes_sent = max(0, transport.bytes_sent - body_starts)


def _head_and_buffer(head: bytes, data: bytes | bytearray | memoryview, writer: BodyWriter) -> bytes:
    """*head* and a whole in-memory body, framed by *writer*, as one ``bytes``."""
    if not data:
        return head + writer.end()
    return b"".join([head, *writer.frame(data), writer.end()])


async def _send_buffer(sink: Transport, head: bytes, body: Any, writer: BodyWriter, exchange: Exchange) -> None:
    data = body.data
    if not data or not writer.raw or len(data) <= COALESCE_LIMIT:
        await sink.send(_head_and_buffer(head, data, writer))
    else:
        await sink.send(head)
        await sink.send(data)


async def _send_iovec(sink: Transport, head: bytes, body: Any, writer: BodyWriter, exchange: Exchange) -> None:
    parts = [p for p in body.parts if len(p)]
    if body.size <= COALESCE_LIMIT:
        pieces: list[bytes | bytearray | memoryview] = [head]
        for part in parts:
            pieces.extend(writer.frame(part))
        pieces.append(writer.end())
        await sink.send(b"".join(pieces))
        return
    await sink.send(head)
    for part in parts:
        await _send_framed(sink, writer, part)
    await _send_end(sink, writer)


async def _send_fd(sink: Transport, head: bytes, body: Any, writer: BodyWriter, exchange: Exchange) -> None:
    await sink.send(head)
    offset, remaining = body.offset, body.size
    if writer.raw and sink.can_sendfile:
        while remaining:
            sent = await sink.sendfile(body.fd, offset, remaining)
            if sent == 0:
                raise BodyAborted(RequestEndedCode.FILE_ERROR, "the file ended before its size")
            offset += sent
            remaining -= sent
        return
    while remaining:
        chunk = os.pread(body.fd, min(READ_SIZE, remaining), offset)
        if not chunk:
            raise BodyAborted(RequestEndedCode.FILE_ERROR, "the file ended before its size")
        await _send_framed(sink, writer, chunk)
        offset += len(chunk)
        remaining -= len(chunk)
    await _send_end(sink, writer)


async def _send_pipe(sink: Transport, head: bytes, body: Any, writer: BodyWriter, exchange: Exchange) -> None:
    await sink.send(head)
    # FdStream makes its fd non-blocking and closes it; give it a duplicate so
    # the response keeps (and closes) the descriptor the application passed.
    async with trio.lowlevel.FdStream(os.dup(body.fd)) as pipe:
        while True:
            chunk = await pipe.receive_some(READ_SIZE)
            if not chunk:
                break
            await _send_framed(sink, writer, chunk)
    await _send_end(sink, writer)


async def _send_callback(sink: Transport, head: bytes, body: Any, writer: BodyWriter, exchange: Exchange) -> None:
    size: int | None = body.size
    # The creator's buffer is held only while it is needed (see lend_buffer):
    # a parked stream holds none.
    buf: bytearray | None = None
    request = exchange.request
    pending: bytes = head
    del head  # (pending holds it until it is sent; a parked stream keeps neither)
    if sink.holding:
        # Responses held for one write with this one (pipelining) leave now,
        # with this head: the creator may wait, an answered request does not.
        await sink.send(pending)
        pending = b""
    pos = 0
    # What one creator call made; all of it is let go of before the task
    # parks (a parked event stream keeps no views, pieces or actions).
    ctx: DCCContext | None = None
    view: memoryview | None = None
    result: object = None
    step: DCCStep | None = None
    pieces: list[bytes | bytearray | memoryview] | None = None
    try:
        while size is None or pos < size:
            if buf is None:
                buf = lend_buffer()
            room = len(buf) if size is None else min(len(buf), size - pos)
            ctx = DCCContext(request)
            with memoryview(buf)[:room] as view:
                result = await call_maybe_await(body.dyn_cont, ctx, pos, view)
                step = dcc_step(ctx, result, view, pos, size)
                if step.kind == "data":
                    if not step.action.data_size:
                        return_buffer(buf)  # zero-copy data only: not needed to send it
                        buf = None
                    pieces = writer.frame(step.data, step.action.chunk_ext)
                    if pending:
                        pieces = [pending, *pieces]
                        pending = b""
                    await sink.send(b"".join(pieces) if len(pieces) > 1 else pieces[0])
                    if step.action.free_cb is not None:
                        step.action.free_cb()
                    pos += len(step.data)
                    continue
            if step.kind == "finish":
                await sink.send(pending + writer.end(step.action.footers or ()))
                return
            if step.kind == "suspend":
                return_buffer(buf)
                buf = None
                if pending or sink.holding:
                    # Owed bytes of a direct write (DirectBody) leave before
                    # the task parks: nothing is owed while it is parked.
                    await sink.send(pending)
                    pending = b""
                if exchange.direct is None and sink.is_plain:
                    exchange.direct = DirectBody(sink, not writer.raw)
                ctx = view = result = step = pieces = None
                await exchange.park()
                continue
            raise BodyAborted(RequestEndedCode.BY_APP_ABORT, step.why)
        await sink.send(pending + writer.end())
    finally:
        if buf is not None:
            return_buffer(buf)


async def _send_framed(sink: Transport, writer: BodyWriter, data: bytes | memoryview) -> None:
    """Send one non-empty body piece, framed (one write per piece)."""
    if writer.raw:
        await sink.send(data)
    else:
        await sink.send(b"".join(writer.frame(data)))


async def _send_end(sink: Transport, writer: BodyWriter) -> None:
    """Send what ends the body, if the framing has anything to send."""
    tail = writer.end()
    if tail:
        await sink.send(tail)


_Sender = Callable[[Transport, bytes, Any, BodyWriter, Exchange], Awaitable[None]]
_SENDERS: dict[type, _Sender] = {
    BufferBody: _send_buffer,
    IovecBody: _send_iovec,
    FdBody: _send_fd,
    PipeBody: _send_pipe,
    CallbackBody: _send_callback,
}

