"""A transport over TLS: the bounded handshake, the session, no half-close.

:class:`TLSTransport` is a :class:`~mhd2.transport.stream.StreamTransport` over a
:class:`trio.SSLStream` (itself over a
:class:`~mhd2.plain_stream.PlainSocketStream` when the daemon accepted the
socket).  It writes in slices and sends ``close_notify`` within a bound as any
stream does; what it adds is the handshake (:meth:`TLSTransport.over_tls`,
which answers a plain HTTP request to a TLS port in plain HTTP), the session
(:attr:`TLSTransport.tls`), and a lingering close without a half-close (TLS
has none: ``close_notify`` ends both directions).
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Final

import trio

from ..plain_stream import PlainSocketStream
from .last_words import send_last_words
from .stream import StreamTransport

if TYPE_CHECKING:
    import socket

__all__ = ["PLAIN_HTTP_TO_TLS_REPLY", "TLS_HANDSHAKE_TIMEOUT", "TLSTransport"]

#: Bound on a TLS handshake (the inactivity timeout applies when it is shorter).
TLS_HANDSHAKE_TIMEOUT = 10.0

#: What a plain-HTTP request to a TLS port gets (as nginx's 497 and Caddy do,
#: but with a status every client knows), before the connection is closed.
PLAIN_HTTP_TO_TLS_REPLY: Final = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\nContent-Length: 73\r\n\r\n"
    b"This port speaks HTTPS: use an https:// URL (the request was plain HTTP)\n"
)


class TLSTransport(StreamTransport):
    """:class:`~mhd2.transport.stream.StreamTransport` over a :class:`trio.SSLStream`.

    Args:
        stream: the connection's TLS stream; the transport owns it.
        timeout: the inactivity limit in seconds (``None``: none).
    """

    __slots__ = ("_tls",)

    def __init__(self, stream: trio.SSLStream[trio.abc.Stream], timeout: float | None) -> None:
        super().__init__(stream, timeout)
        self._tls = stream

    @classmethod
    async def over_tls(cls, sock: socket.socket, context: ssl.SSLContext,
                       timeout: float | None) -> TLSTransport | None:
        """Wrap *sock* in TLS and do the handshake (bounded).

        Returns:
            The transport, or ``None`` if the handshake failed or timed out
            (the socket is then closed).
        """
        # Under TLS too the socket is a PlainSocketStream: its reads and writes
        # cost a third of trio.SocketStream's, and TLS makes several per request.
        tls: trio.SSLStream[trio.abc.Stream] = trio.SSLStream(
            PlainSocketStream(sock), context, server_side=True)
        limit = TLS_HANDSHAKE_TIMEOUT if timeout is None else min(TLS_HANDSHAKE_TIMEOUT, timeout)
        with trio.move_on_after(limit):
            try:
                await tls.do_handshake()
            except trio.BrokenResourceError as exc:
                cause = exc.__cause__
                if isinstance(cause, ssl.SSLError) and cause.reason == "HTTP_REQUEST":
                    # OpenSSL saw a plain HTTP request: say so in plain HTTP (never blocks).
                    send_last_words(sock, PLAIN_HTTP_TO_TLS_REPLY)
                await trio.aclose_forcefully(tls)
                return None
            return cls(tls, timeout)
        await trio.aclose_forcefully(tls)
        return None

    @property
    def tls(self) -> ssl.SSLObject:
        """The TLS session (after the handshake)."""
        # trio forwards only a fixed set of SSLObject methods; the SNI name
        # that mhd2.tls's callback records on the SSLObject is not among them.
        return self._tls._ssl_object

    async def _half_close(self) -> None:
        """Nothing: TLS cannot half-close (``close_notify`` closes both ways)."""
