"""Take exactly the PROXY header off a socket, and not one byte more.

The one piece of I/O around :mod:`mhd2._proxy.protocol`. The header must be
read before TLS starts (HAProxy's ``send-proxy-v2`` comes before the
ClientHello) and before HTTP is parsed, and the bytes that follow it belong
to someone else: :class:`trio.SSLStream` cannot be handed bytes already read.
So the socket is read with ``MSG_PEEK`` first, and only the bytes that
certainly belong to the header are then taken from it; everything after the
header stays in the kernel for whoever reads the socket next.

Every iteration takes at least one byte off the socket or waits until the
socket is readable again, so a peer that sends its header a byte at a time
costs one wake-up per byte, never a busy loop. Bound the whole read with the
connection's timeout (``trio.move_on_after``): a peer that never completes its
header must not hold the connection.
"""

from __future__ import annotations

import socket

import trio

from .protocol import (
    DEFAULT_MAX_V2_LENGTH,
    MAX_V1_LENGTH,
    ProxyHeader,
    ProxyProtocolError,
    parse_proxy_header,
)

__all__ = ["receive_proxy_header"]


async def receive_proxy_header(
    sock: socket.socket, *, max_v2_length: int = DEFAULT_MAX_V2_LENGTH
) -> ProxyHeader:
    """Read the PROXY header at the start of a connection, leaving what follows.

    Args:
        sock: an accepted, non-blocking stream socket (``socket.socket``, as
            the daemon's accept loop has it) that nothing has read from yet.
        max_v2_length: the largest v2 length field accepted.

    Returns:
        The header; the socket's next byte is the first byte after it.

    Raises:
        ProxyProtocolError: the bytes are not a valid header, or the peer
            closed the connection before the header was complete.
        OSError: the socket failed (e.g. the peer reset the connection).
    """
    buffer = b""
    limit = max(MAX_V1_LENGTH, 16 + max_v2_length)
    while True:
        try:
            peeked = sock.recv(limit - len(buffer), socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            await trio.lowlevel.wait_readable(sock)
            continue
        if not peeked:
            raise ProxyProtocolError("the connection ended inside the PROXY header")
        result = parse_proxy_header(buffer + peeked, max_v2_length=max_v2_length)
        # Complete: take the rest of the header. Incomplete: every byte seen
        # so far is part of the header (the parser would have failed
        # otherwise), so all of them can be taken.
        take = result.consumed - len(buffer) if isinstance(result, ProxyHeader) else len(peeked)
        buffer += _receive_exactly(sock, take)
        if isinstance(result, ProxyHeader):
            await trio.lowlevel.checkpoint()
            return result
        await trio.lowlevel.checkpoint()


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    """*size* bytes that a peek has shown to be in the receive buffer already."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:  # pragma: no cover - peeked bytes cannot vanish
            raise ProxyProtocolError("the connection ended inside the PROXY header")
        data += chunk
    return data
