"""Which transport a stream gets: the one place that looks at a stream's kind.

:func:`open_transport` is how :meth:`mhd2.Daemon.serve_stream` makes a
transport for a stream it is handed; the daemon's own accepted sockets go
through :meth:`SocketTransport.over_socket
<mhd2.transport.plain.SocketTransport.over_socket>` or :meth:`TLSTransport.over_tls
<mhd2.transport.tls.TLSTransport.over_tls>` directly.
"""

from __future__ import annotations

import trio

from ..plain_stream import PlainSocketStream
from .base import Transport
from .plain import SocketTransport
from .stream import StreamTransport
from .tls import TLSTransport

__all__ = ["open_transport"]


def open_transport(stream: trio.abc.Stream, timeout: float | None) -> Transport:
    """The transport for *stream*, by its kind.

    Args:
        stream: the connection's stream; the transport owns it from now on.
        timeout: the inactivity limit in seconds (``None``: none).

    Returns:
        A :class:`~mhd2.transport.plain.SocketTransport` for mhd2's own plain
        socket stream, a :class:`~mhd2.transport.tls.TLSTransport` for a
        :class:`trio.SSLStream`, else a :class:`~mhd2.transport.stream.StreamTransport`.
    """
    # (type() first: isinstance against a trio.abc class is an ABC check,
    # ~1 µs of every connection.)
    if type(stream) is PlainSocketStream or isinstance(stream, PlainSocketStream):
        return SocketTransport(stream, timeout)
    if isinstance(stream, trio.SSLStream):
        return TLSTransport(stream, timeout)
    return StreamTransport(stream, timeout)
