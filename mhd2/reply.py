"""Writing one response to a connection: its head, then its body by source.

The framing was decided beforehand (:func:`mhd2._http1.framing.plan_reply`);
here each body source has one small sender, picked from a table keyed by the
source's type, that pushes bytes through a :class:`Sink` (the connection).
Small responses leave in a single ``send_all``.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from inspect import isawaitable
from typing import Any, Protocol

import trio

from ._http1.date import date_header_line
from ._http1.framing import ReplyPlan
from ._http1.writer import BODY_WRITERS, BodyWriter, framing_header_line, status_line
from .actions import DCCAction, DCCContext
from .enums import RequestEndedCode, StatusCode
from .errors import UsageError
from .request import Request
from .response import BufferBody, CallbackBody, FdBody, IovecBody, PipeBody, Response

__all__ = ["ReplyAborted", "Sink", "build_head", "send_reply"]

#: Bodies up to this size are joined with the head into one ``send_all``.
COALESCE_LIMIT = 16 * 1024
#: Read size for file and pipe bodies when ``sendfile`` cannot be used.
READ_SIZE = 64 * 1024


class ReplyAborted(Exception):
    """The body cannot be completed; the connection must be closed.

    Attributes:
        code: how the request ended.
    """

    def __init__(self, code: RequestEndedCode, why: str) -> None:
        super().__init__(why)
        self.code = code


class Sink(Protocol):
    """What a sender needs from the connection."""

    can_sendfile: bool

    async def send_all(self, data: bytes | bytearray | memoryview) -> None: ...

    async def send_file(self, fd: int, offset: int, count: int) -> int: ...

    def dcc_buffer(self) -> bytearray: ...

    async def wait_resume(self, request: Request) -> None: ...


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


async def send_reply(sink: Sink, request: Request, response: Response, plan: ReplyPlan,
                     *, add_date: bool) -> None:
    """Send *response* for *request* as *plan* says.

    Raises:
        ReplyAborted: the body could not be completed (the caller closes).
        trio.BrokenResourceError: the client went away.
    """
    head = build_head(response, plan, add_date=add_date)
    if not plan.send_body:
        await sink.send_all(head)
        return
    body = response._body
    await _SENDERS[type(body)](sink, head, body, BODY_WRITERS[plan.framing], request)


async def _send_buffer(sink: Sink, head: bytes, body: Any, writer: BodyWriter, request: Request) -> None:
    data = body.data
    if not data:
        await sink.send_all(head + writer.end())
    elif not writer.raw or len(data) <= COALESCE_LIMIT:
        await sink.send_all(b"".join([head, *writer.frame(data), writer.end()]))
    else:
        await sink.send_all(head)
        await sink.send_all(data)


async def _send_iovec(sink: Sink, head: bytes, body: Any, writer: BodyWriter, request: Request) -> None:
    parts = [p for p in body.parts if len(p)]
    if body.size <= COALESCE_LIMIT:
        pieces: list[bytes | bytearray | memoryview] = [head]
        for part in parts:
            pieces.extend(writer.frame(part))
        pieces.append(writer.end())
        await sink.send_all(b"".join(pieces))
        return
    await sink.send_all(head)
    for part in parts:
        await _send_framed(sink, writer, part)
    await _send_end(sink, writer)


async def _send_fd(sink: Sink, head: bytes, body: Any, writer: BodyWriter, request: Request) -> None:
    await sink.send_all(head)
    offset, remaining = body.offset, body.size
    if writer.raw and sink.can_sendfile:
        while remaining:
            sent = await sink.send_file(body.fd, offset, remaining)
            if sent == 0:
                raise ReplyAborted(RequestEndedCode.FILE_ERROR, "the file ended before its size")
            offset += sent
            remaining -= sent
        return
    while remaining:
        chunk = os.pread(body.fd, min(READ_SIZE, remaining), offset)
        if not chunk:
            raise ReplyAborted(RequestEndedCode.FILE_ERROR, "the file ended before its size")
        await _send_framed(sink, writer, chunk)
        offset += len(chunk)
        remaining -= len(chunk)
    await _send_end(sink, writer)


async def _send_pipe(sink: Sink, head: bytes, body: Any, writer: BodyWriter, request: Request) -> None:
    await sink.send_all(head)
    # FdStream makes its fd non-blocking and closes it; give it a duplicate so
    # the response keeps (and closes) the descriptor the application passed.
    async with trio.lowlevel.FdStream(os.dup(body.fd)) as pipe:
        while True:
            chunk = await pipe.receive_some(READ_SIZE)
            if not chunk:
                break
            await _send_framed(sink, writer, chunk)
    await _send_end(sink, writer)


async def _send_callback(sink: Sink, head: bytes, body: Any, writer: BodyWriter, request: Request) -> None:
    size: int | None = body.size
    buf = sink.dcc_buffer()
    pending: bytes = head
    pos = 0
    while size is None or pos < size:
        room = len(buf) if size is None else min(len(buf), size - pos)
        ctx = DCCContext(request)
        with memoryview(buf)[:room] as view:
            result = body.dyn_cont(ctx, pos, view)
            if isawaitable(result):
                result = await result
            action = _check_dcc_result(ctx, result)
            kind = action.kind
            if kind == "continue":
                iov = action.iov or []
                if action.data_size > room:
                    raise UsageError(f"DCC data_size {action.data_size} exceeds the buffer ({room})",
                                     StatusCode.DCC_ACTION_INVALID)
                total = action.data_size + sum(len(v) for v in iov)
                if size is not None and pos + total > size:
                    raise UsageError(
                        f"the content creator yielded {pos + total} bytes, more than the "
                        f"declared size {size}", StatusCode.DCC_ACTION_INVALID)
                data: bytes | memoryview = view[:action.data_size]
                if iov:
                    data = b"".join([data, *iov])
                pieces = writer.frame(data, action.chunk_ext)
                if pending:
                    pieces = [pending, *pieces]
                    pending = b""
                await sink.send_all(b"".join(pieces) if len(pieces) > 1 else pieces[0])
                if action.free_cb is not None:
                    action.free_cb()
                pos += total
                continue
        if kind == "finish":
            if size is not None and pos < size:
                raise ReplyAborted(RequestEndedCode.BY_APP_ABORT,
                                   f"the content creator finished at {pos} of {size} bytes")
            await sink.send_all(pending + writer.end(action.footers or ()))
            return
        if kind == "suspend":
            if pending:
                await sink.send_all(pending)
                pending = b""
            await sink.wait_resume(request)
            continue
        raise ReplyAborted(RequestEndedCode.BY_APP_ABORT, "the content creator aborted")
    await sink.send_all(pending + writer.end())


async def _send_framed(sink: Sink, writer: BodyWriter, data: bytes | memoryview) -> None:
    """Send one non-empty body piece, framed (one write per piece)."""
    if writer.raw:
        await sink.send_all(data)
    else:
        await sink.send_all(b"".join(writer.frame(data)))


async def _send_end(sink: Sink, writer: BodyWriter) -> None:
    """Send what ends the body, if the framing has anything to send."""
    tail = writer.end()
    if tail:
        await sink.send_all(tail)


def _check_dcc_result(ctx: DCCContext, result: object) -> DCCAction:
    if result is None:
        return DCCAction("abort")
    if not isinstance(result, DCCAction) or result is not ctx._action:
        raise UsageError(
            "a content creator must return the DCC action made from its own ctx "
            "(dcc_action_continue(ctx, ...), dcc_action_finish(ctx) ...)",
            StatusCode.DCC_ACTION_INVALID,
        )
    return result


_Sender = Callable[[Sink, bytes, Any, BodyWriter, Request], Awaitable[None]]
_SENDERS: dict[type, _Sender] = {
    BufferBody: _send_buffer,
    IovecBody: _send_iovec,
    FdBody: _send_fd,
    PipeBody: _send_pipe,
    CallbackBody: _send_callback,
}

