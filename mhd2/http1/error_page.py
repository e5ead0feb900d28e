"""The daemon's own error page on an HTTP/1 connection (400, 408, 413, 500, 503 ...).

A fixed text per status, never the request echoed, written within a bound so
that a client that does not read cannot hold the connection: the connection
loop (:mod:`mhd2.http1.connection`) closes it afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from .._http1.writer import daemon_reply
from ..enums import reason_phrase
from ..transport import TransportError

if TYPE_CHECKING:
    from ..transport import Transport

__all__ = ["ERROR_WRITE_SECONDS", "send_error_page"]

#: Bound on writing an error response to a client that does not read.
ERROR_WRITE_SECONDS = 5.0


async def send_error_page(transport: Transport, status: int, *, add_date: bool) -> None:
    """Write the error page for *status* (the caller closes the connection after it).

    Args:
        transport: the connection's transport; no status line has left on it
            for this request.
        status: the 4xx/5xx status.
        add_date: send a ``Date`` field (the daemon's ``suppress_date_header`` off).

    Error handling:
        A broken connection, or a write not done within
        :data:`ERROR_WRITE_SECONDS`, is given up silently: the caller closes.
    """
    reply = daemon_reply(status, reason_phrase(status), add_date=add_date)
    with trio.move_on_after(ERROR_WRITE_SECONDS):
        try:
            await transport.send(reply)
        except TransportError:
            pass
