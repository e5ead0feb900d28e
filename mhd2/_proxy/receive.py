"""Take exactly the PROXY header off a socket, and not one byte more.

The one piece of I/O around :mod:`mhd2._proxy.protocol`. The header must be
read before TLS starts (HAProxy's ``send-proxy-v2`` comes before the
ClientHello) and before HTTP is parsed, and the bytes that follow it belong
to someone else (TLS and HTTP read them from the socket themselves).
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
from typing import Any

import trio

from .protocol import (
    DEFAULT_MAX_V2_LENGTH,
    MAX_V1_LENGTH,
    Family,
    ProxyHeader,
    ProxyProtocolError,
    parse_proxy_header,
)
from .trusted import TrustedProxies

__all__ = ["proxied_client_address", "receive_proxy_header"]


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


def peer_address(peer: Any) -> tuple[str, int]:
    """A socket's peer name as ``(host, port)``; ``("unix", 0)`` for a Unix-domain peer."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        return str(peer[0]), int(peer[1])
    return "unix", 0


async def proxied_client_address(
    sock: socket.socket,
    peer: Any,
    trusted: TrustedProxies,
    *,
    timeout: float | None,
    max_v2_length: int = DEFAULT_MAX_V2_LENGTH,
) -> tuple[str, int]:
    """The client of a ``proxy_protocol=True`` connection, its header taken off.

    What the accept path calls before anything else reads the socket (and
    before TLS): the peer must be a trusted proxy, and the connection must
    start with a complete, valid header within *timeout* seconds.

    Args:
        sock: the accepted socket (non-blocking, nothing read yet).
        peer: the socket's peer name as ``accept()`` gave it.
        trusted: the proxies allowed to send PROXY headers.
        timeout: seconds for the whole header, or ``None`` for no limit.
        max_v2_length: the largest v2 length field accepted.

    Returns:
        ``(host, port)``: the header's source address; the socket's own peer
        (``("unix", 0)`` for a Unix-domain one) for ``LOCAL`` and ``UNSPEC``
        headers; ``("unix", 0)`` when the header's source is a Unix socket.

    Raises:
        ProxyProtocolError: close the connection: the peer is not trusted
            (nothing was read), the header is invalid or incomplete, the
            timeout passed, or the socket failed.
    """
    own = peer_address(peer)
    if own not in trusted:
        raise ProxyProtocolError(f"PROXY header from {own[0]}, which is not a trusted proxy")
    try:
        with trio.fail_after(timeout if timeout is not None else float("inf")):
            header = await receive_proxy_header(sock, max_v2_length=max_v2_length)
    except trio.TooSlowError:
        raise ProxyProtocolError(f"no complete PROXY header within {timeout} s") from None
    except OSError as exc:
        raise ProxyProtocolError(f"the connection failed inside the PROXY header: {exc}") from exc
    address = header.client_address
    if address is None:
        return own
    if header.family is Family.UNIX or isinstance(address, str):
        return "unix", 0
    return address
