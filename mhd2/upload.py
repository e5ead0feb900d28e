"""Reading a request body for the upload actions.

``action_process_upload_full`` / ``_inc`` / ``action_process_upload`` ask the
daemon to read the body and hand it to upload callbacks; each callback answers
with an upload action.  The bytes come from a :class:`BodySource` that the
protocol provides (HTTP/1 reads them through its parser; HTTP/2 would read
DATA frames); this module holds the policy -- whole or in pieces, the memory
budget, what each upload action means -- and *returns* what happens next:
the application's response, an upgrade, or an :class:`~mhd2.exchange.Ending`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import trio

from .actions import UpgradeAction, UploadAction, UploadRequestAction
from .app_calls import app_failed, call_upload
from .enums import RequestEndedCode, StatusCode
from .exchange import ABORTED, Ending, Exchange

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .response import Response

__all__ = ["BodyError", "BodyRate", "BodySource", "run_upload"]

_TOO_LARGE = Ending(413, RequestEndedCode.HTTP_PROTOCOL_ERROR)
_POOL_IN_USE = Ending(413, RequestEndedCode.NO_RESOURCES)
#: A full upload did not fill its share of the pool within ``large_pool_fill_time``.
_FILLED_TOO_SLOWLY = Ending(408, RequestEndedCode.TIMEOUT_REACHED)


class BodyError(Exception):
    """The body is malformed or came too slowly: answer *status* and close.

    Raised by a :class:`BodySource`; the detail is for the debug log only.
    """

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class BodySource(Protocol):
    """Where the upload policy gets the body from."""

    async def next_piece(self) -> bytes | None:
        """The next non-empty piece of the body, or ``None`` at its end.

        At the end, trailers are in ``exchange.footers``.

        Raises:
            BodyError: the body is malformed (answer its status and close).
            trio.BrokenResourceError: the client went away.
        """

    async def send_continue(self) -> None:
        """Send ``100 Continue`` if the client waits for it."""


async def run_upload(
    source: BodySource, exchange: Exchange, action: UploadRequestAction
) -> Response | UpgradeAction | Ending:
    """Carry out an upload action; return what the request comes to.

    Raises:
        trio.BrokenResourceError: the client went away.
        DaemonStopping: the daemon stopped while an upload callback had suspended.
    """
    try:
        size = exchange.request.upload_size
        limit = action.large_buffer_size
        if action.full_cb is not None and limit is not None:
            if action.inc_cb is None:
                return await _run_full(source, exchange, action.full_cb, limit)
            if size is not None and size <= limit and exchange.shared.large_pool.available >= size:
                return await _run_full(source, exchange, action.full_cb, limit)
        assert action.inc_cb is not None
        return await _run_incremental(source, exchange, action.inc_cb)
    except BodyError as exc:
        return Ending(exc.status, RequestEndedCode.HTTP_PROTOCOL_ERROR)


async def _run_full(
    source: BodySource, exchange: Exchange, cb: Callable[..., Any], limit: int
) -> Response | UpgradeAction | Ending:
    """Read the whole body into memory drawn from the daemon's shared pool.

    The pool is cheap to hold if a reservation may last as long as a body
    trickled at ``min_body_rate`` (a 1 MiB body at 1 KiB per 20 s: almost six
    hours): a few such uploads would lock every other full upload out.  So the
    body must arrive whole within ``large_pool_fill_time`` seconds of its first
    reservation -- an average rate that grows with the size reserved -- else
    ``408`` and the reservation is given back: holding the whole pool costs
    ``large_pool_size / large_pool_fill_time`` bytes per second of real upload.
    """
    size = exchange.request.upload_size
    if size is not None and size > limit:
        # Refused before a byte of the body is read (or a 100 Continue sent).
        return _TOO_LARGE
    # A declared size is reserved up front; a chunked body (size unknown)
    # reserves as it grows, so a small one fits even when `limit` would not.
    pool = exchange.shared.large_pool
    fill_time = exchange.shared.options.large_pool_fill_time
    reserved = 0
    if size is not None:
        if not pool.try_reserve(size):
            return _POOL_IN_USE
        reserved = size
    try:
        with trio.CancelScope() as filling:
            if reserved and fill_time is not None:
                filling.deadline = trio.current_time() + fill_time
            await source.send_continue()
            body = bytearray()
            while (piece := await source.next_piece()) is not None:
                grown = len(body) + len(piece)
                if grown > limit:
                    return _TOO_LARGE
                if grown > reserved:
                    if not pool.try_reserve(grown - reserved):
                        return _POOL_IN_USE
                    if not reserved and fill_time is not None:  # chunked: from its first piece
                        filling.deadline = trio.current_time() + fill_time
                    reserved = grown
                body += piece
        if filling.cancelled_caught:  # only its deadline cancels it
            return _FILLED_TOO_SLOWLY
        data = bytes(body)
        del body
        return await _last_call(exchange, cb, data)
    finally:
        pool.release(reserved)


async def _run_incremental(
    source: BodySource, exchange: Exchange, cb: Callable[..., Any]
) -> Response | UpgradeAction | Ending:
    await source.send_continue()
    while (piece := await source.next_piece()) is not None:
        result = await call_upload(exchange, cb, piece)
        if isinstance(result, Ending):
            return result
        if result.kind == "continue":
            continue
        if result.kind == "suspend":
            await exchange.park()
            continue
        return _final(exchange, result)
    return await _last_call(exchange, cb, b"")


async def _last_call(
    exchange: Exchange, cb: Callable[..., Any], data: bytes
) -> Response | UpgradeAction | Ending:
    """Call the upload callback for the complete body (again after each suspend)."""
    while True:
        result = await call_upload(exchange, cb, data)
        if isinstance(result, Ending):
            return result
        if result.kind != "suspend":
            return _final(exchange, result)
        await exchange.park()


def _final(exchange: Exchange, result: UploadAction) -> Response | UpgradeAction | Ending:
    if result.kind == "response":
        assert result.response is not None
        return result.response
    if result.kind == "upgrade":
        assert result.upgrade is not None
        return result.upgrade
    if result.kind == "abort":
        return ABORTED
    try:
        from .errors import UsageError

        raise UsageError(
            "the body is complete: the upload callback must answer with "
            "upload_action_from_response (or abort), not upload_action_continue",
            StatusCode.ACTION_INVALID,
        )
    except UsageError:
        return app_failed(exchange, "an upload callback misused the API")


class BodyRate:
    """``min_body_rate`` for one request body: enough bytes per time spent waiting.

    Over each window of *seconds* spent waiting for the client's body bytes (time
    the application spends with what arrived does not count, nor does a
    window the application keeps closed), at least *min_bytes* must arrive.
    """

    __slots__ = ("_bytes", "_min_bytes", "_waited", "_window")

    def __init__(self, rule: tuple[int, float]) -> None:
        self._min_bytes, self._window = rule
        self._bytes = 0
        self._waited = 0.0

    def add(self, waited: float, nbytes: int) -> str | None:
        """*nbytes* arrived after waiting *waited* seconds; why the body is too slow, or ``None``."""
        self._waited += waited
        self._bytes += nbytes
        if self._waited < self._window:
            return None
        if self._bytes < self._min_bytes:
            return f"the body came slower than {self._min_bytes} bytes per {self._window:g} s"
        self._waited = 0.0
        self._bytes = 0
        return None
