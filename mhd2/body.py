"""Body producers: one per body source, each saying what to send next.

A response's body source (:mod:`mhd2.response`: a buffer, an iovec, a byte
range of a file, a pipe, a dynamic content creator) becomes a
:class:`BodyProducer`.  Its :meth:`~BodyProducer.pull` returns the next
piece of the body -- bytes (never empty), :data:`SUSPENDED` (the creator
paused: park until resumed, then pull again) or an :class:`Ended` (the body
is complete, with its footers) -- and :attr:`~BodyProducer.done` says when
the last byte has been produced.  The producers do no network I/O: the
HTTP/1 writer (:mod:`mhd2.http1.reply`: framing, ``Content-Length`` or chunked,
coalescing with the head) and the HTTP/2 writer (:mod:`mhd2.http2.reply`:
DATA frames within flow-control windows, trailers) consume the same
producers, so each source is read in one place.  Only the file producer
reads a file (``pread``) and the pipe producer a pipe; a content creator is
called, and awaited when it is a coroutine.

:func:`guard_body` and :func:`body_failed` turn what went wrong while a body
was being sent into how the request ended, for both writers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, ClassVar, TypeAlias

import trio

from .app_calls import app_failed
from .body_source import BodySource, BufferBody, CallbackBody, FdBody, IovecBody, PipeBody
from .dcc import (
    DCCAction,
    DCCContext,
    call_creator,
    creator_returned,
    dcc_step,
    lend_buffer,
    return_buffer,
)
from .enums import RequestEndedCode
from .exchange import DaemonStopping, Exchange

if TYPE_CHECKING:
    from .request import Request
    from .response import FreeCallback

__all__ = [
    "END",
    "READ_SIZE",
    "SUSPENDED",
    "BodyAborted",
    "BodyProducer",
    "BufferProducer",
    "CallbackProducer",
    "Ended",
    "FdProducer",
    "IovecProducer",
    "Piece",
    "PipeProducer",
    "Suspended",
    "body_failed",
    "guard_body",
    "producer_for",
]

logger = logging.getLogger("mhd2")

#: Read size for file and pipe bodies (one piece at most).
READ_SIZE = 64 * 1024

Data: TypeAlias = bytes | bytearray | memoryview


class Suspended:
    """The type of :data:`SUSPENDED`: the content creator paused (``dcc_action_suspend``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SUSPENDED"


#: Returned by :meth:`BodyProducer.pull` when the request is to park until
#: ``request_resume``; pull again after it.
SUSPENDED = Suspended()


class Ended:
    """The body is complete; *footers* are its trailer fields (``dcc_action_finish``)."""

    __slots__ = ("footers",)

    def __init__(self, footers: Sequence[tuple[str, str]] = ()) -> None:
        self.footers = footers

    def __repr__(self) -> str:
        return f"Ended({list(self.footers)!r})"


#: The end of a body without footers.
END = Ended()

#: What :meth:`BodyProducer.pull` returns.
Piece: TypeAlias = bytes | bytearray | memoryview | Suspended | Ended


class BodyAborted(Exception):
    """The body cannot be completed, and how the request ends (the connection or stream is cut)."""

    def __init__(self, code: RequestEndedCode, why: str) -> None:
        super().__init__(why)
        self.code = code


class BodyProducer:
    """The next piece of one response's body, source by source (the base: no body).

    Attributes:
        size: the body's size when known (``None``: a pipe, a creator of
            unknown size).
        pos: bytes produced so far.
        done: the last byte was produced: the writer ends the body without
            pulling again (also true from the start for an empty body).
        ext: the chunk extension of the last piece (a content creator's
            ``chunk_ext``; ``None`` otherwise).
    """

    __slots__ = ("done", "ext", "pos", "size")

    #: Pulling may wait on I/O before the first byte (a pipe, a disk): the
    #: HTTP/1 writer sends the head first instead of joining it to that byte.
    slow: ClassVar[bool] = False
    #: Pulling may wait on the application (a content creator): responses
    #: held for one write (pipelining) leave first, with the head.
    may_wait: ClassVar[bool] = False

    def __init__(self, size: int | None) -> None:
        self.size = size
        self.pos = 0
        self.done = size == 0
        self.ext: str | None = None

    async def pull(self) -> Piece:
        """The next piece: non-empty bytes, :data:`SUSPENDED`, or an :class:`Ended`.

        Bytes stay valid until the next :meth:`pull` or :meth:`close`.

        Raises:
            BodyAborted: the body cannot be completed (a short file, an abort).
            UsageError: a content creator returned a wrong action.
            Exception: whatever the content creator raised.
        """
        return END

    def close(self) -> None:
        """Let go of what the producer holds (a buffer, a pipe); called once, always."""


class BufferProducer(BodyProducer):
    """Bytes in memory: one piece."""

    __slots__ = ("data",)

    def __init__(self, body: BufferBody) -> None:
        data = body.data
        super().__init__(data.nbytes if type(data) is memoryview else len(data))
        self.data: Data | None = data

    async def pull(self) -> Piece:
        data = self.data
        if data is None:
            return END
        self.data = None
        self.pos = self.size or 0
        self.done = True
        return data


class IovecProducer(BodyProducer):
    """Several buffers: one piece each, or one joined piece when small.

    Args:
        body: the iovec body.
        join_up_to: a body of at most this many bytes is joined into one
            piece (one write, one DATA frame instead of one per buffer).
    """

    __slots__ = ("parts",)

    def __init__(self, body: IovecBody, join_up_to: int) -> None:
        super().__init__(body.size)
        parts: list[Data] = [p for p in body.parts if len(p)]
        if len(parts) > 1 and body.size <= join_up_to:
            parts = [b"".join(parts)]
        parts.reverse()
        self.parts = parts

    async def pull(self) -> Piece:
        parts = self.parts
        if not parts:
            return END
        data = parts.pop()
        self.pos += len(data)
        self.done = not parts
        return data


class FdProducer(BodyProducer):
    """A byte range of a regular file, read :data:`READ_SIZE` bytes at a time.

    The HTTP/1 writer may send the range with ``sendfile`` instead (plain
    socket, no framing): it reads :attr:`fd`, :attr:`offset` and
    :attr:`left` and reports with :meth:`advance`.
    """

    __slots__ = ("fd", "left", "offset")

    slow = True

    def __init__(self, body: FdBody) -> None:
        super().__init__(body.size)
        self.fd = body.fd
        self.offset = body.offset
        self.left = body.size

    def advance(self, sent: int) -> None:
        """*sent* bytes of the range left (``sendfile``); ``0`` means the file is short.

        Raises:
            BodyAborted: ``FILE_ERROR``, the file ended before its size.
        """
        if sent == 0:
            raise BodyAborted(RequestEndedCode.FILE_ERROR, "the file ended before its size")
        self.offset += sent
        self.left -= sent
        self.pos += sent
        self.done = not self.left

    async def pull(self) -> Piece:
        if not self.left:
            return END
        chunk = os.pread(self.fd, min(READ_SIZE, self.left), self.offset)
        self.advance(len(chunk))
        return chunk


class PipeProducer(BodyProducer):
    """The read end of a pipe, until end of file; what arrives, up to :data:`READ_SIZE`."""

    __slots__ = ("_fd", "_pipe")

    slow = True

    def __init__(self, body: PipeBody) -> None:
        super().__init__(None)
        self._fd = body.fd
        self._pipe: trio.lowlevel.FdStream | None = None

    async def pull(self) -> Piece:
        pipe = self._pipe
        if pipe is None:
            # FdStream makes its fd non-blocking and closes it; give it a
            # duplicate so the response keeps (and closes) the descriptor
            # the application passed.
            pipe = self._pipe = trio.lowlevel.FdStream(os.dup(self._fd))
        chunk = await pipe.receive_some(READ_SIZE)
        if not chunk:
            self.done = True
            return END
        self.pos += len(chunk)
        return chunk

    def close(self) -> None:
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None


class CallbackProducer(BodyProducer):
    """A dynamic content creator: one call per piece (:func:`~mhd2.dcc.dcc_step` checks it).

    The creator's buffer is held only while it is needed (see
    :func:`~mhd2.dcc.lend_buffer`): from the call until its bytes were sent
    (the next pull), not while the request is parked and not for zero-copy
    data.  A piece's ``free_cb`` is called once it was sent (at the next
    pull, or at :meth:`close`).
    """

    __slots__ = ("_buf", "_dyn_cont", "_free_cb", "_request")

    may_wait = True

    def __init__(self, body: CallbackBody, request: Request) -> None:
        # (BodyProducer.__init__ inline: one made per streamed response)
        self.size = size = body.size
        self.pos = 0
        self.done = size == 0
        self.ext = None
        self._dyn_cont = body.dyn_cont
        self._request = request
        self._buf: bytearray | None = None
        self._free_cb: FreeCallback | None = None

    async def pull(self) -> Piece:
        if self._free_cb is not None:
            self._sent()
        size = self.size
        pos = self.pos
        if size is not None and pos >= size:
            return END
        buf = self._buf
        if buf is None:
            buf = self._buf = lend_buffer()
        room = len(buf) if size is None else min(len(buf), size - pos)
        ctx = DCCContext(self._request)
        # The view is released when the call is over: a creator that kept it
        # cannot write into a buffer that is lent out again.  (The data
        # returned is a slice, valid until the next pull.)
        with memoryview(buf)[:room] as view:
            # (no call_maybe_await: one coroutine fewer for every piece)
            result = call_creator(self._dyn_cont, ctx, pos, view)
            if result is not None and type(result) is not DCCAction:
                result = creator_returned(ctx, await result)
            step = dcc_step(result, view, pos, size)
        kind = step.kind
        if kind == "data":
            action = step.action
            if not action.data_size:
                self._let_go()  # zero-copy data only: the buffer is not needed to send it
            self._free_cb = action.free_cb
            self.ext = action.chunk_ext
            self.pos = pos = pos + len(step.data)
            self.done = pos == size
            return step.data
        self._let_go()
        if kind == "finish":
            self.done = True
            footers = step.action.footers
            return Ended(footers) if footers else END
        if kind == "suspend":
            return SUSPENDED
        raise BodyAborted(RequestEndedCode.BY_APP_ABORT, step.why)

    def _sent(self) -> None:
        """The last piece was sent (or never will be): its ``free_cb`` now."""
        free_cb = self._free_cb
        if free_cb is not None:
            self._free_cb = None
            free_cb()

    def _let_go(self) -> None:
        buf = self._buf
        if buf is not None:
            self._buf = None
            return_buffer(buf)

    def close(self) -> None:
        if self._buf is not None:
            self._let_go()
        if self._free_cb is not None:
            self._sent()


def producer_for(body: BodySource, request: Request, *, join_up_to: int) -> BodyProducer:
    """The producer of *body*, a response's body source, for *request*.

    Args:
        body: the response's body source.
        request: the request answered (a content creator's ``ctx.request``).
        join_up_to: an iovec of at most this many bytes is one piece.
    """
    kind = type(body)
    if kind is BufferBody:
        return BufferProducer(body)  # type: ignore[arg-type]
    if kind is CallbackBody:
        return CallbackProducer(body, request)  # type: ignore[arg-type]
    if kind is IovecBody:
        return IovecProducer(body, join_up_to)  # type: ignore[arg-type]
    if kind is FdBody:
        return FdProducer(body)  # type: ignore[arg-type]
    return PipeProducer(body)  # type: ignore[arg-type]


# -- how a body's sending ended (both writers) ---------------------------------------------


async def guard_body(exchange: Exchange, sending: Awaitable[None], what: str) -> RequestEndedCode:
    """Await *sending* (a response's body going out); how the request ended.

    A :class:`BodyAborted` is the code it carries (logged at debug), a
    failure of the application's content creator is ``BY_APP_ERROR``
    (logged), and the transport's own errors and
    :class:`~mhd2.exchange.DaemonStopping` propagate.
    """
    try:
        await sending
    except Exception as exc:
        return body_failed(exchange, exc, what)
    return RequestEndedCode.COMPLETED_OK


def body_failed(exchange: Exchange, exc: Exception, what: str) -> RequestEndedCode:
    """How the request ended when sending its body raised *exc* (being handled):
    :func:`guard_body`'s rules, for a writer that awaits the body itself
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
    app_failed(exchange, "a content creator")
    return RequestEndedCode.BY_APP_ERROR
