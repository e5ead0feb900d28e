"""Reading a request body for the upload actions.

``action_process_upload_full`` / ``_inc`` / ``action_process_upload`` ask the
daemon to read the body and hand it to upload callbacks; each callback answers
with an upload action.  The reading itself (h11 body events, timeouts,
``100 Continue``) is the connection's; this module holds the policy: whole or
in pieces, the memory budget, and what each upload action means.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import h11

from .actions import UpgradeAction, UploadAction, UploadRequestAction
from .enums import RequestEndedCode, StatusCode
from .errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

    from .request import Request
    from .response import Response

__all__ = ["BodyChannel", "run_upload"]

_POOL_IN_USE = "the daemon's memory for uploads (large_pool_size) is in use"


class BodyChannel(Protocol):
    """What the upload policy needs from the connection."""

    async def next_body_event(self, conn: h11.Connection) -> h11.Data | h11.EndOfMessage:
        """The next piece of the body, or its end (reading as needed)."""
        ...

    async def send_continue(self, conn: h11.Connection) -> None:
        """Send ``100 Continue`` if the client is waiting for it."""
        ...

    async def wait_resume(self, request: Request) -> None:
        """Park until the request is resumed."""
        ...

    async def call_upload_cb(
        self, cb: Callable[..., Any], request: Request, data: bytes
    ) -> UploadAction:
        """Call an upload callback; a failure ends the request (500) and the connection."""
        ...

    async def refuse(self, status: int, reason: str, code: RequestEndedCode) -> NoReturn:
        """Answer *status*, end the request with *code*, close the connection."""
        ...

    async def abort(self) -> NoReturn:
        """Close the connection without a reply (``BY_APP_ABORT``)."""
        ...


async def run_upload(
    channel: BodyChannel, conn: h11.Connection, request: Request, action: UploadRequestAction
) -> Response | UpgradeAction:
    """Carry out an upload action; return the response (or upgrade) the application chose.

    Raises (through the channel) when the request ends otherwise: refused
    (413 ...), aborted, failed, or the client went away.
    """
    size = request.upload_size
    limit = action.large_buffer_size
    if action.full_cb is not None and limit is not None:
        if action.inc_cb is None:
            return await _run_full(channel, conn, request, action.full_cb, limit)
        if size is not None and size <= limit and request._large_pool.available >= size:
            return await _run_full(channel, conn, request, action.full_cb, limit)
    assert action.inc_cb is not None
    return await _run_incremental(channel, conn, request, action.inc_cb)


async def _run_full(
    channel: BodyChannel, conn: h11.Connection, request: Request, cb: Callable[..., Any],
    limit: int,
) -> Response | UpgradeAction:
    size = request.upload_size
    if size is not None and size > limit:
        # Refused before a byte of the body is read (or a 100 Continue sent).
        await channel.refuse(413, f"the body ({size} bytes) exceeds the limit ({limit})",
                             RequestEndedCode.HTTP_PROTOCOL_ERROR)
    # A declared size is reserved up front; a chunked body (size unknown)
    # reserves as it grows, so a small one fits even when `limit` would not.
    pool = request._large_pool
    reserved = 0
    if size is not None:
        if not pool.try_reserve(size):
            await channel.refuse(413, _POOL_IN_USE, RequestEndedCode.NO_RESOURCES)
        reserved = size
    try:
        await channel.send_continue(conn)
        body = bytearray()
        while True:
            event = await channel.next_body_event(conn)
            if type(event) is h11.Data:
                grown = len(body) + len(event.data)
                if grown > limit:
                    await channel.refuse(413, f"the body exceeds the limit ({limit})",
                                         RequestEndedCode.HTTP_PROTOCOL_ERROR)
                if grown > reserved:
                    if not pool.try_reserve(grown - reserved):
                        await channel.refuse(413, _POOL_IN_USE, RequestEndedCode.NO_RESOURCES)
                    reserved = grown
                body += event.data
            else:
                _keep_trailers(request, event)
                break
        data = bytes(body)
        del body
        return await _last_call(channel, cb, request, data)
    finally:
        pool.release(reserved)


async def _run_incremental(
    channel: BodyChannel, conn: h11.Connection, request: Request, cb: Callable[..., Any]
) -> Response | UpgradeAction:
    await channel.send_continue(conn)
    while True:
        event = await channel.next_body_event(conn)
        if type(event) is not h11.Data:
            _keep_trailers(request, event)
            break
        result = await channel.call_upload_cb(cb, request, bytes(event.data))
        if result.kind == "continue":
            continue
        if result.kind == "suspend":
            await channel.wait_resume(request)
            continue
        return await _final(channel, result)
    return await _last_call(channel, cb, request, b"")


async def _last_call(
    channel: BodyChannel, request_cb: Callable[..., Any], request: Request, data: bytes
) -> Response | UpgradeAction:
    """Call the upload callback for the complete body (again after each suspend)."""
    while True:
        result = await channel.call_upload_cb(request_cb, request, data)
        if result.kind != "suspend":
            return await _final(channel, result)
        await channel.wait_resume(request)


async def _final(channel: BodyChannel, result: UploadAction) -> Response | UpgradeAction:
    if result.kind == "response":
        assert result.response is not None
        return result.response
    if result.kind == "upgrade":
        assert result.upgrade is not None
        return result.upgrade
    if result.kind == "abort":
        await channel.abort()
    raise UsageError(
        "the body is complete: the upload callback must answer with "
        "upload_action_from_response (or abort), not upload_action_continue",
        StatusCode.ACTION_INVALID,
    )


def _keep_trailers(request: Request, event: h11.Data | h11.EndOfMessage) -> None:
    if isinstance(event, h11.EndOfMessage) and event.headers:
        request._footers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in event.headers.raw_items()
        ]
