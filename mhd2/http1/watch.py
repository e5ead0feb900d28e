"""What the connection of a suspended request does: watch for the client leaving.

While a request is parked (``action_suspend`` and the other suspend actions)
its connection is read, so that a client that goes away ends the request at
once (``CLIENT_ABORT``) instead of when it is resumed.  What a pipelining
client sends meanwhile is kept for the parser, up to a limit; beyond it
reading stops (the kernel's buffers then push back on the client).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from ..transport import TransportError

if TYPE_CHECKING:
    from ..transport import Transport

__all__ = ["watch_until_gone"]

#: Bytes asked for per read while watching.
WATCH_RECV_SIZE = 16 * 1024


async def watch_until_gone(transport: Transport, kept: list[bytes], limit: int) -> None:
    """Return when the peer closes its side (or the connection breaks).

    Args:
        transport: the parked request's connection.
        kept: where bytes received meanwhile are appended.
        limit: keep at most about this many bytes; then wait without reading.
    """
    total = sum(len(k) for k in kept)
    if transport.holding:
        try:
            await transport.flush()
        except TransportError:
            return
    # On a plain socket the wait is trio's own, with no stream coroutines in
    # between: a parked request (100,000 event streams) keeps two frames fewer.
    fd = transport.fd if transport.is_plain else -1
    while total <= limit:
        try:
            if fd >= 0:
                await trio.lowlevel.wait_readable(fd)
                got = transport.receive_now(WATCH_RECV_SIZE)
                if got is None:
                    continue
                data = got
            else:
                data = await transport.receive(WATCH_RECV_SIZE)
        except TransportError:
            return
        if not data:
            return
        kept.append(data)
        total += len(data)
    await trio.sleep_forever()
