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
from typing import Any, cast

import trio

from ._http1.date import date_header_line
from ._http1.framing import ReplyPlan
from ._http1.writer import BODY_WRITERS, BodyWriter, framing_header_line, status_line
from .callbacks import call_maybe_await
from .dcc import DCCContext, dcc_step
from .enums import RequestEndedCode
from .exchange import DaemonStopping, Exchange
from .response import BufferBody, CallbackBody, FdBody, IovecBody, PipeBody, Response
from .transport import Transport

__all__ = ["build_head", "send_reply"]

logger = logging.getLogger("mhd2")

#: Bodies up to this size are joined with the head into one ``send_all``.
COALESCE_LIMIT = 16 * 1024
#: Read size for file and pipe bodies when ``sendfile`` cannot be used.
READ_SIZE = 64 * 1024


#: Size of the buffer handed to dynamic content creators (made on first use).
DCC_BUFFER_SIZE = 32 * 1024


class _Aborted(Exception):
    """Internal to this module: the body cannot be completed."""

    def __init__(self, code: RequestEndedCode, why: str) -> None:
        super().__init__(why)
        self.code = code


def build_head(response: Response, plan: ReplyPlan, *, add_date: bool) -> bytes:
    """The status line and header section of *response* under *plan*."""
    parts = [status_line(plan.version, response.status, response.reason), response._blob]
    if add_date and not response._has_date:
        parts.append(date_header_line())
    if not response._app_content_length:
        parts.append(framing_header_line(plan.framing, response.size))
    if not plan.keep_alive:
        parts.append(b"Connection: close\r\n")
    elif plan.announce_keep_alive:
        parts.append(b"Connection: keep-alive\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


async def send_reply(transport: Transport, exchange: Exchange, response: Response,
                     plan: ReplyPlan, *, add_date: bool) -> RequestEndedCode:
    """Send *response* as *plan* says.

    Returns:
        ``COMPLETED_OK``; or, when the body could not be completed and the
        connection must be closed, how the request ended (``FILE_ERROR``,
        ``BY_APP_ABORT``, ``BY_APP_ERROR`` -- a failed content creator is
        logged on the ``mhd2`` logger).

    Raises:
        trio.BrokenResourceError, trio.ClosedResourceError: the client went away.
        DaemonStopping: the daemon stopped while a content creator was suspended.
    """
    body = response._body
    if response.reusable and type(body) is BufferBody and len(body.data) <= COALESCE_LIMIT:
        return await _send_reusable(transport, exchange, response, plan, add_date)
    head = build_head(response, plan, add_date=add_date)
    exchange.status = response.status
    if not plan.send_body:
        await transport.send(head)
        return RequestEndedCode.COMPLETED_OK
    # What was written beyond the head is the body (and its framing), as far
    # as the client got it: an aborted download is not logged as complete.
    body_starts = transport.bytes_sent + len(head)
    try:
        await _SENDERS[type(body)](transport, head, body, BODY_WRITERS[plan.framing], exchange)
    except _Aborted as exc:
        logger.debug("mhd2: reply to %s %s cut: %s", exchange.request.method,
                     exchange.request.uri, exc)
        return exc.code
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, DaemonStopping):
        raise
    except Exception:
        exchange.app_failed("a content creator")
        return RequestEndedCode.BY_APP_ERROR
    finally:
        exchange.body_bytes_sent = max(0, transport.bytes_sent - body_starts)
    return RequestEndedCode.COMPLETED_OK


async def _send_reusable(transport: Transport, exchange: Exchange, response: Response,
                         plan: ReplyPlan, add_date: bool) -> RequestEndedCode:
    """A reusable buffer response: its bytes on the wire are made once per plan and second.

    The head of a frozen response changes only with the plan (version,
    framing, keep-alive) and the ``Date`` line, which is the same object for
    a whole second; the joined head and body are kept on the response.
    """
    date = date_header_line() if add_date and not response._has_date else b""
    wire = response._wire
    if wire is None or wire[0] is not plan or wire[1] is not date:
        head = build_head(response, plan, add_date=add_date)
        data = body = cast(BufferBody, response._body).data
        writer = BODY_WRITERS[plan.framing]
        if not plan.send_body:
            data = head
        elif not body:
            data = head + writer.end()
        else:
            data = b"".join([head, *writer.frame(body), writer.end()])
        wire = response._wire = (plan, date, data, len(data) - len(head))
    exchange.status = response.status
    await transport.send(wire[2])
    exchange.body_bytes_sent = wire[3]
    return RequestEndedCode.COMPLETED_OK


async def _send_buffer(sink: Transport, head: bytes, body: Any, writer: BodyWriter, exchange: Exchange) -> None:
    data = body.data
    if not data:
        await sink.send(head + writer.end())
    elif not writer.raw or len(data) <= COALESCE_LIMIT:
        await sink.send(b"".join([head, *writer.frame(data), writer.end()]))
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
                raise _Aborted(RequestEndedCode.FILE_ERROR, "the file ended before its size")
            offset += sent
            remaining -= sent
        return
    while remaining:
        chunk = os.pread(body.fd, min(READ_SIZE, remaining), offset)
        if not chunk:
            raise _Aborted(RequestEndedCode.FILE_ERROR, "the file ended before its size")
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
    buf = bytearray(DCC_BUFFER_SIZE)
    request = exchange.request
    pending: bytes = head
    pos = 0
    while size is None or pos < size:
        room = len(buf) if size is None else min(len(buf), size - pos)
        ctx = DCCContext(request)
        with memoryview(buf)[:room] as view:
            result = await call_maybe_await(body.dyn_cont, ctx, pos, view)
            step = dcc_step(ctx, result, view, pos, size)
            if step.kind == "data":
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
            if pending:
                await sink.send(pending)
                pending = b""
            await exchange.park()
            continue
        raise _Aborted(RequestEndedCode.BY_APP_ABORT, step.why)
    await sink.send(pending + writer.end())


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

