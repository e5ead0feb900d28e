"""``action_websocket``: check the handshake, negotiate, and run the handler over a WebSocket."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio
from wsproto.connection import Connection, ConnectionType

from ..actions import Action, action_from_response, action_upgrade
from ..errors import UsageError
from ..request import Request, exchange_view
from ..response import Response
from ..upgrade import UpgradeHandle
from .deflate import negotiate_deflate
from .handshake import (
    check_connection_header,
    check_http_version,
    check_upgrade_header,
    check_version_header,
    create_accept_header,
)
from .keepalive import keepalive
from .session import CLOSE_TIMEOUT, MAX_FRAGMENTS, ConnectionClosed, WebSocket

__all__ = ["action_websocket"]

logger = logging.getLogger("mhd2")


def _bad_request(request: Request, reason: str, headers: Sequence[tuple[str, str]] = ()) -> Action:
    """``400`` with *reason*: a fixed text that never echoes what the client sent."""
    response = Response.from_buffer_copy(400, f"Bad WebSocket handshake: {reason}\n".encode())
    response.add_header("Content-Type", "text/plain; charset=utf-8")
    response.add_header("X-Content-Type-Options", "nosniff")
    for name, value in headers:
        response.add_header(name, value)
    return action_from_response(request, response)


def action_websocket(
    request: Request,
    handler: Callable[[WebSocket], Awaitable[Any]],
    *,
    subprotocols: Sequence[str] = (),
    compression: bool = True,
    max_message_size: int = 1 << 20,
    ping_interval: float | None = None,
    max_fragments: int = MAX_FRAGMENTS,
    headers: Sequence[tuple[str, str]] = (),
) -> Action:
    """Accept a WebSocket handshake and run ``await handler(ws)`` over the upgraded connection.

    The handshake is checked as RFC 6455 §4.2.1 asks (``GET``, HTTP/1.1,
    ``Connection: Upgrade``, ``Upgrade: websocket``, ``Sec-WebSocket-Version:
    13``, a ``Sec-WebSocket-Key`` of 16 bytes in base64, no body); a bad one
    is answered ``400`` with the reason in the body (never ``101``).  Over
    HTTP/2 the handshake is an extended CONNECT (RFC 8441 §5), which
    :mod:`mhd2.http2` presents as ``GET`` with ``Upgrade: websocket``: only
    ``Sec-WebSocket-Version: 13`` is checked (no key, no ``Accept``), and
    the answer is ``200`` on the stream.

    Args:
        request: the request to answer.
        handler: ``async def handler(ws: WebSocket)``; when it returns the
            connection is closed with 1000, when it raises with 1011.
        subprotocols: the subprotocols the server speaks, preferred first;
            the first one the client offers is chosen.
        compression: negotiate permessage-deflate (RFC 7692) if offered.
        max_message_size: the largest message accepted, after inflation;
            larger ones close the connection with 1009.  Each continuation
            frame also costs :data:`FRAGMENT_OVERHEAD` bytes of it.
        ping_interval: send a ping every that many seconds and close
            (1011) when no pong arrives and nothing moves on the connection
            (no byte read or written, the send queue not draining) within as
            many seconds; pongs are seen while the handler receives.
            ``None``: no keepalive.
        max_fragments: the most frames one message may arrive in; more
            close the connection with 1009.
        headers: further ``(name, value)`` header lines for the ``101``
            reply (e.g. ``Set-Cookie``); the handshake's own headers are
            set by the daemon.

    Raises:
        UsageError: *max_message_size* or *max_fragments* is not a positive
            integer, or *ping_interval* is not positive seconds.
    """
    if not isinstance(max_message_size, int) or max_message_size <= 0:
        raise UsageError(f"max_message_size must be a positive int, not {max_message_size!r}")
    if not isinstance(max_fragments, int) or max_fragments <= 0:
        raise UsageError(f"max_fragments must be a positive int, not {max_fragments!r}")
    if ping_interval is not None and not (
            isinstance(ping_interval, int | float) and ping_interval > 0):
        raise UsageError(f"ping_interval must be seconds > 0 or None, not {ping_interval!r}")
    reply_headers = list(headers)
    received = request.headers
    if request.method != "GET":
        return _bad_request(request, "the method must be GET")
    # RFC 8441 §5: over HTTP/2 the handshake is an extended CONNECT with
    # ":protocol" websocket, which mhd2.http2 presents as GET with
    # "Upgrade: websocket" (a client's own Upgrade field is malformed there).
    over_h2 = request.version == "HTTP/2"
    if not over_h2 and not check_http_version(request.version):
        return _bad_request(request, "HTTP/1.1 is needed to upgrade")
    if not over_h2 and not check_connection_header(
            ", ".join(received.get_all("Connection")) or None):
        return _bad_request(request, "the Connection header must list Upgrade")
    if not check_upgrade_header(", ".join(received.get_all("Upgrade")) or None):
        return _bad_request(request, "the Upgrade header must be websocket" if not over_h2 else
                            "an extended CONNECT with :protocol websocket is needed (RFC 8441)")
    versions = received.get_all("Sec-WebSocket-Version")
    if len(versions) != 1 or not check_version_header(versions[0]):
        return _bad_request(request, "Sec-WebSocket-Version must be 13",
                            [("Sec-WebSocket-Version", "13")])
    extra: list[tuple[str, str]] = []
    if not over_h2:
        # (RFC 8441 §5: "The Sec-WebSocket-Key and Sec-WebSocket-Accept header
        # fields are not used" over HTTP/2.)
        keys = received.get_all("Sec-WebSocket-Key")
        if len(keys) != 1:
            return _bad_request(request, "exactly one Sec-WebSocket-Key is needed")
        try:
            extra.append(("Sec-WebSocket-Accept", create_accept_header(keys[0])))
        except ValueError as exc:
            logger.debug("mhd2: bad WebSocket handshake from %s: %s", request.client_address, exc)
            return _bad_request(request, "Sec-WebSocket-Key must be 16 bytes in base64")
    if not exchange_view(request).body_read:
        return _bad_request(request, "a WebSocket handshake request has no body")

    offered = [p.strip() for h in received.get_all("Sec-WebSocket-Protocol") for p in h.split(",")]
    chosen = next((p for p in subprotocols if p in offered), None)
    if chosen is not None:
        extra.append(("Sec-WebSocket-Protocol", chosen))
    extensions: list[Any] = []
    if compression:
        negotiated = negotiate_deflate(received.get_all("Sec-WebSocket-Extensions"),
                                        max_message_size)
        if negotiated is not None:
            extensions.append(negotiated[0])
            extra.append(("Sec-WebSocket-Extensions", negotiated[1]))

    async def run(_request: Request, urh: UpgradeHandle) -> None:
        conn = Connection(ConnectionType.SERVER, extensions=extensions)
        ws = WebSocket(urh, conn, chosen, max_message_size, compressed=bool(extensions),
                       max_fragments=max_fragments)
        failure: list[Exception] = []

        async def serve() -> None:
            try:
                await handler(ws)
            except ConnectionClosed:
                pass
            except Exception as exc:
                failure.append(exc)

        ws._defer_linger = True  # (a failure ends receive() now; the drain waits for serve())
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ws._watch_stop)
                if ping_interval is not None:
                    nursery.start_soon(keepalive, ws, ping_interval)
                await serve()
                nursery.cancel_scope.cancel()
        finally:
            ws._defer_linger = False
            if not urh.closed and (ws._linger_owed or ws.closed is None):
                if trio.current_effective_deadline() == -math.inf:
                    # Cancelled: the grace period of a graceful stop is
                    # over.  Close now; waiting here would outlive the grace.
                    await ws._abort()
                elif ws._linger_owed:
                    # A failure ended the handler's receive: drain what the
                    # peer still sends, now that the handler is done, then close.
                    await ws._linger()
                else:
                    with trio.move_on_after(CLOSE_TIMEOUT):
                        try:
                            if failure:
                                await ws._fail(1011)
                            else:
                                await ws.close(1000)
                        except Exception:
                            pass
                    if not urh.closed:
                        await ws._abort()
        if failure:
            raise failure[0]

    extra.extend(reply_headers)
    return action_upgrade(request, "websocket", run, extra)
