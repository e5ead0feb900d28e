"""Dynamic content creator actions: what a ``from_callback`` body's creator returns.

``dyn_cont(ctx, pos, buf)`` returns exactly one :class:`DCCAction` per call,
made by a ``dcc_action_*`` function from its own :class:`DCCContext` (whose
:class:`~mhd2.actions.Slot` enforces the "exactly one").  The daemon
(:class:`mhd2.body.CallbackProducer`, for both HTTP/1 and HTTP/2) carries
them out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ._syntax import BAD_VALUE as _BAD_VALUE
from ._syntax import TOKEN as _TOKEN
from .dcc_context import DCCContext
from .enums import StatusCode
from .errors import UsageError
from .request import exchange_view

if TYPE_CHECKING:

    from .body_source import Buffer
    from .response import FreeCallback

__all__ = [
    "DCC_BUFFER_SIZE",
    "DCCAction",
    "DCCContext",
    "DCCStep",
    "call_creator",
    "creator_returned",
    "dcc_action_abort",
    "dcc_action_continue",
    "dcc_action_continue_zc",
    "dcc_action_finish",
    "dcc_action_suspend",
    "dcc_step",
    "lend_buffer",
    "return_buffer",
]

#: Size of the buffer handed to dynamic content creators.
DCC_BUFFER_SIZE = 32 * 1024
#: Buffers kept for reuse (see :func:`lend_buffer`).
_POOL_SIZE = 64
_free: list[bytearray] = []


def lend_buffer() -> bytearray:
    """A buffer of :data:`DCC_BUFFER_SIZE` bytes for one content creator call.

    A response's sender holds one only while its creator runs and the data
    written into it is being sent -- never while the request is parked
    (``dcc_action_suspend``) and not while zero-copy data (the creator
    wrote nothing into it) is sent: 100,000 parked event streams hold no
    buffer at all.  Give it back with :func:`return_buffer`.
    """
    try:
        return _free.pop()
    except IndexError:
        return bytearray(DCC_BUFFER_SIZE)


def return_buffer(buf: bytearray) -> None:
    """Give back a buffer from :func:`lend_buffer` (nothing may still use it)."""
    if len(_free) < _POOL_SIZE:
        _free.append(buf)


class DCCAction:
    """What a dynamic content creator tells the daemon (see the ``dcc_action_*`` functions).

    Attributes:
        kind: ``"continue"``, ``"finish"``, ``"suspend"`` or ``"abort"``.
    """

    __slots__ = ("chunk_ext", "data_size", "footers", "free_cb", "iov", "kind")

    def __init__(
        self,
        kind: str,
        data_size: int = 0,
        iov: list[memoryview] | None = None,
        chunk_ext: str | None = None,
        footers: list[tuple[str, str]] | None = None,
        free_cb: FreeCallback | None = None,
    ) -> None:
        self.kind = kind
        self.data_size = data_size
        self.iov = iov
        self.chunk_ext = chunk_ext
        self.footers = footers
        self.free_cb = free_cb


def _dcc_claim(ctx: DCCContext, action: DCCAction) -> DCCAction:
    return ctx._slot.claim(action)


def _check_chunk_ext(chunk_ext: str | None) -> None:
    if chunk_ext is not None and (
        not isinstance(chunk_ext, str) or any(c in chunk_ext for c in "\r\n\0")
        or chunk_ext.startswith(";")
    ):
        raise UsageError(
            f"chunk_ext {chunk_ext!r} must be a str without CR, LF, NUL or a leading ';' "
            "(e.g. 'name=value')", StatusCode.DCC_ACTION_INVALID,
        )


def dcc_action_continue(ctx: DCCContext, data_size: int, chunk_ext: str | None = None) -> DCCAction:
    """*data_size* (> 0) bytes were written into ``buf``; call again for more.

    Args:
        ctx: the context the creator was given.
        data_size: how many bytes of ``buf`` hold body data.
        chunk_ext: a chunk extension without the leading ``;`` (``"foo=bar"``),
            sent when the body is chunked and ignored otherwise.
    """
    if isinstance(data_size, bool) or not isinstance(data_size, int) or data_size <= 0:
        raise UsageError(
            f"dcc_action_continue data_size {data_size!r} must be an int > 0; "
            "use dcc_action_finish at the end or dcc_action_suspend when no data is ready",
            StatusCode.DCC_ACTION_INVALID,
        )
    _check_chunk_ext(chunk_ext)
    return _dcc_claim(ctx, DCCAction("continue", data_size, chunk_ext=chunk_ext))


def dcc_action_continue_zc(
    ctx: DCCContext,
    data_size: int,
    iov: Sequence[Buffer] | None,
    chunk_ext: str | None = None,
    free_cb: FreeCallback | None = None,
) -> DCCAction:
    """``buf[:data_size]`` and then the buffers in *iov* (zero-copy) are the next data.

    Args:
        ctx: the context the creator was given.
        data_size: bytes written into ``buf`` (may be 0 if *iov* has data).
        iov: buffers sent after ``buf[:data_size]``, not copied.
        chunk_ext: as for :func:`dcc_action_continue`.
        free_cb: called once the daemon no longer needs *iov*.
    """
    views = [memoryview(b).cast("B") for b in (iov or ())]
    if isinstance(data_size, bool) or not isinstance(data_size, int) or data_size < 0:
        raise UsageError("dcc_action_continue_zc data_size must be an int >= 0",
                         StatusCode.DCC_ACTION_INVALID)
    if data_size == 0 and not any(len(v) for v in views):
        raise UsageError("dcc_action_continue_zc needs data in buf or in iov",
                         StatusCode.DCC_ACTION_INVALID)
    _check_chunk_ext(chunk_ext)
    return _dcc_claim(
        ctx, DCCAction("continue", data_size, iov=views, chunk_ext=chunk_ext, free_cb=free_cb)
    )


def dcc_action_finish(ctx: DCCContext, footers: Sequence[tuple[str, str]] | None = None) -> DCCAction:
    """The body is complete; *footers* become HTTP trailers when the body is chunked.

    Finishing short of a declared size closes the connection (the client
    cannot be told otherwise that the body is incomplete).
    """
    checked: list[tuple[str, str]] | None = None
    if footers:
        checked = []
        for name, value in footers:
            if not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value):
                raise UsageError(f"footer {name!r}: {value!r} is not a valid header line",
                                 StatusCode.DCC_ACTION_INVALID)
            checked.append((name, value))
    return _dcc_claim(ctx, DCCAction("finish", footers=checked))


def dcc_action_suspend(ctx: DCCContext) -> DCCAction:
    """No data yet: pause until ``request_resume(ctx.request)``, then call the creator again."""
    ctx._slot.check_free()
    exchange_view(ctx.request).mark_suspended()
    return _dcc_claim(ctx, DCCAction("suspend"))


def dcc_action_abort(ctx: DCCContext) -> DCCAction:
    """Stop: close the connection (the body stays incomplete)."""
    return _dcc_claim(ctx, DCCAction("abort"))




# -- carrying out one result (used by the HTTP/1 and HTTP/2 senders) --------------------


def call_creator(dyn_cont: Callable[..., Any], ctx: DCCContext, pos: int,
                 buf: memoryview) -> Any:
    """Call ``dyn_cont(ctx, pos, buf)`` through *ctx*'s slot (:meth:`Slot.call
    <mhd2._slot.Slot.call>`).

    Returns:
        The DCC action made from *ctx* and returned, ``None``, or (an ``async``
        creator) an awaitable: await it and pass the result to
        :func:`creator_returned`.

    Raises:
        UsageError: it returned something else than the action made from *ctx*.
    """
    return ctx._slot.call(dyn_cont, ctx, pos, buf)


def creator_returned(ctx: DCCContext, result: object) -> DCCAction | None:
    """What an ``async`` content creator returned, checked as by :func:`call_creator`."""
    return ctx._slot.returned(result)  # type: ignore[no-any-return]


class DCCStep(NamedTuple):
    """One content-creator call, validated (see :func:`dcc_step`).

    Attributes:
        kind: ``"data"``, ``"finish"``, ``"suspend"`` or ``"abort"``.
        action: the creator's action (``chunk_ext``, ``footers``, ``free_cb``).
        data: for ``"data"``, the bytes to send: ``buf[:data_size]`` then the
            *iov* buffers (a view of ``buf`` when there is no *iov*: send it
            before the next call, which reuses ``buf``); else empty.
        why: for ``"abort"``, why the body cannot be completed.
    """

    kind: str
    action: DCCAction
    data: bytes | memoryview
    why: str


def dcc_step(result: DCCAction | None, buf: memoryview, pos: int,
             size: int | None) -> DCCStep:
    """Validate a content creator's action and say what to send: bytes, the end, or a pause.

    Sans-IO: the sender calls the creator with :func:`call_creator` (which
    checks that it returned its own action) and hands the result here, then
    sends ``data``, ends the body, parks, or gives up.

    Args:
        result: the action it returned (``None`` counts as ``dcc_action_abort``).
        buf: the buffer it was given (``buf[:data_size]`` holds its data).
        pos: the body offset of this call (bytes produced before it).
        size: the declared body size, or ``None`` when unknown.

    Raises:
        UsageError: its ``data_size`` exceeds *buf*, or the data runs past *size*.
    """
    if result is None:
        return DCCStep("abort", DCCAction("abort"), b"", "the content creator aborted")
    kind = result.kind
    if kind == "continue":
        room = len(buf)
        if result.data_size > room:
            raise UsageError(f"DCC data_size {result.data_size} exceeds the buffer ({room})",
                             StatusCode.DCC_ACTION_INVALID)
        iov = result.iov or []
        total = result.data_size + sum(len(v) for v in iov)
        if size is not None and pos + total > size:
            raise UsageError(
                f"the content creator yielded {pos + total} bytes, more than the "
                f"declared size {size}", StatusCode.DCC_ACTION_INVALID)
        data: bytes | memoryview = buf[:result.data_size]
        if iov:
            # One zero-copy buffer alone is sent as it is (shared bytes, such
            # as mhd2.fanout's events, are not copied here).
            data = iov[0] if not result.data_size and len(iov) == 1 else b"".join([data, *iov])
        return DCCStep("data", result, data, "")
    if kind == "finish" and size is not None and pos < size:
        return DCCStep("abort", result, b"",
                       f"the content creator finished at {pos} of {size} bytes")
    why = "the content creator aborted" if kind == "abort" else ""
    return DCCStep(kind, result, b"", why)
