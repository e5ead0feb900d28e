"""Interim (1xx) response heads on an HTTP/1.1 connection: ``103 Early Hints``.

An interim head may be sent from a task other than the request's (an ASGI
app's, a library's), while the request's task waits for the application or
watches the parked connection.  The writes are kept whole and in order by
the exchange's interim lock (:meth:`mhd2.exchange.Exchange.interim_writes`),
which the ``100 Continue`` and the final head also wait for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from ..enums import reason_phrase
from ..transport import TransportError

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..transport import Transport

__all__ = ["INTERIM_WRITE_SECONDS", "interim_head", "send_interim"]

#: Seconds an interim head may take to leave; a client that reads nothing
#: for that long loses the connection (a half-written head cannot be taken back).
INTERIM_WRITE_SECONDS = 10.0


def interim_head(status: int, fields: list[tuple[str, str]]) -> bytes:
    """The bytes of an HTTP/1.1 interim head (fields already checked)."""
    lines = [f"HTTP/1.1 {status} {reason_phrase(status)}\r\n"]
    lines.extend(f"{name}: {value}\r\n" for name, value in fields)
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


async def send_interim(transport: Transport, exchange: Exchange, status: int,
                       fields: list[tuple[str, str]], reply_started: Callable[[], bool]) -> bool:
    """Write an interim head for *exchange* now, if the protocol allows it.

    Args:
        transport: the connection's transport.
        exchange: the request it answers.
        status: the 1xx status.
        fields: its header lines (checked by the caller).
        reply_started: says whether the final head has begun.

    Returns:
        ``False`` without writing for an HTTP/1.0 request (RFC 9110 §15.2:
        "A server MUST NOT send a 1xx response to an HTTP/1.0 client"), once
        the final head has begun or the request ended, or when the client
        has gone; ``True`` once the head is written.

    Error handling: the write is shielded from the caller's cancellation (a
    half-written head would break the connection) and bounded by
    :data:`INTERIM_WRITE_SECONDS`; past that the connection is closed.
    """
    if exchange.request.version != "HTTP/1.1":
        return False
    async with exchange.interim_writes():
        if exchange.ended or reply_started():
            return False
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + INTERIM_WRITE_SECONDS
            try:
                await transport.send(interim_head(status, fields))
            except TransportError:
                return False
        if scope.cancelled_caught:
            exchange.host.cut()
            return False
    return True
