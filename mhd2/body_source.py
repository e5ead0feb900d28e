"""A response's body sources: small records, checked when they are made.

A :class:`~mhd2.Response` holds one of them (its ``from_*`` constructor
picks which); each is read by its producer in :mod:`mhd2.body`.  The
functions here turn a constructor's arguments into a record, refusing what
cannot be sent with :class:`~mhd2.UsageError` -- the response itself only
keeps the record.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from .errors import UsageError

if TYPE_CHECKING:
    from .dcc_context import DCCContext

__all__ = [
    "BodySource",
    "Buffer",
    "BufferBody",
    "CallbackBody",
    "DynamicContentCreator",
    "FdBody",
    "IovecBody",
    "PipeBody",
    "as_buffer",
    "callback_body",
    "fd_body",
    "iovec_body",
]

#: ``dyn_cont(ctx, pos, buf) -> DCCAction`` (or an awaitable of one).
DynamicContentCreator: TypeAlias = Callable[["DCCContext", int, memoryview], Any]
Buffer: TypeAlias = bytes | bytearray | memoryview


@dataclass(slots=True)
class BufferBody:
    """Bytes in memory (``from_buffer``, ``from_buffer_static``, ``from_buffer_copy``)."""

    data: Buffer


@dataclass(slots=True)
class IovecBody:
    """Several buffers sent one after another (``from_iovec``)."""

    parts: list[memoryview]
    size: int


@dataclass(slots=True)
class FdBody:
    """A byte range of a regular file (``from_fd``); sent with ``os.sendfile``."""

    fd: int
    offset: int
    size: int


@dataclass(slots=True)
class PipeBody:
    """The read end of a pipe (``from_pipe``); size unknown."""

    fd: int


@dataclass(slots=True)
class CallbackBody:
    """A dynamic content creator (``from_callback``)."""

    dyn_cont: DynamicContentCreator
    size: int | None


BodySource: TypeAlias = BufferBody | IovecBody | FdBody | PipeBody | CallbackBody


def as_buffer(data: Buffer) -> Buffer:
    """*data* itself, if it is a buffer a body can be.

    Raises:
        UsageError: *data* is not ``bytes``, ``bytearray`` or ``memoryview``.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        return data
    raise UsageError(f"a response body must be bytes, bytearray or memoryview, not {type(data).__name__}")


def iovec_body(parts: Sequence[Buffer]) -> IovecBody:
    """The concatenation of *parts* (not copied: each is viewed as bytes).

    Raises:
        UsageError: a part is not a buffer (see :func:`as_buffer`).
    """
    views = [memoryview(as_buffer(p)).cast("B") for p in parts]
    return IovecBody(views, sum(len(v) for v in views))


def fd_body(fd: int, offset: int, size: int | None) -> FdBody:
    """*size* bytes (``None``: up to the end) of the regular file *fd* from *offset*.

    Error handling:
        *fd* is closed when the arguments are refused: the daemon owns it
        from the constructor's call on.

    Raises:
        UsageError: *fd* is not a regular file, or the range lies outside it.
    """
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(
                "from_fd needs a regular file; use Response.from_pipe for pipes"
            )
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise UsageError(f"from_fd offset {offset!r} must be an int >= 0")
        if size is None:
            size = info.st_size - offset
            if size < 0:
                raise UsageError(
                    f"from_fd offset {offset} lies past the end of the file ({info.st_size})")
        elif isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise UsageError(f"from_fd size {size!r} must be an int >= 0 or None")
        elif offset + size > info.st_size:
            raise UsageError(
                f"from_fd range {offset}+{size} lies past the end of the file "
                f"({info.st_size} bytes)")
    except BaseException:
        os.close(fd)
        raise
    return FdBody(fd, offset, size)


def callback_body(size: int | None, dyn_cont: DynamicContentCreator) -> CallbackBody:
    """A body made by ``dyn_cont(ctx, pos, buf)``, *size* bytes (``None``: unknown).

    Raises:
        UsageError: *size* is not an int >= 0 or ``None``; *dyn_cont* is not callable.
    """
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise UsageError(f"from_callback size {size!r} must be an int >= 0 or None")
    if not callable(dyn_cont):
        raise UsageError("from_callback needs a callable dyn_cont(ctx, pos, buf)")
    return CallbackBody(dyn_cont, size)
