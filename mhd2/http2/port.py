"""What an HTTP/2 stream sees of its connection: the :class:`StreamPort` protocol.

A stream (:mod:`mhd2.http2.stream`), its server (:mod:`mhd2.http2.serve`), its
reply (:mod:`mhd2.http2.reply`) and a tunnel over it (:mod:`mhd2.http2.tunnel`)
queue frames in the connection's sans-IO :class:`~mhd2.http2.engine.H2Engine`
and ask the connection only to write them, to give back window, and to be
told of parking and of the end.  :class:`~mhd2.http2.connection.HTTP2Connection`
is a ``StreamPort``; nothing of the stream side imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..connection_info import ConnectionInfo
    from ..shared import Shared
    from .engine import H2Engine

__all__ = ["StreamPort"]


class StreamPort(Protocol):
    """The connection as its streams use it.

    All calls are synchronous except :meth:`flushed`; none raises for a
    connection that is ending (the stream finds out from :attr:`ending`).
    """

    #: The connection's sans-IO engine: streams queue their frames in it.
    engine: H2Engine
    #: The daemon's shared record (options, counters, ``stopping``).
    shared: Shared
    #: What is known about the peer.
    info: ConnectionInfo

    @property
    def ending(self) -> bool:
        """The connection is being torn down (protocol error, abuse, or gone)."""
        ...

    def acknowledge(self, stream_id: int, size: int) -> None:
        """*size* received bytes of *stream_id* are consumed: WINDOW_UPDATE (written soon)."""
        ...

    async def flushed(self) -> None:
        """Wait until what is queued now has been written."""
        ...

    def wake_writer(self) -> None:
        """Frames were queued: have the writer send them."""
        ...

    def stream_parked(self, delta: int) -> None:
        """*delta* streams parked (+1) or woke (-1): see :mod:`mhd2.http2.liveness`."""
        ...

    def stream_done(self, stream_id: int, *, in_reader: bool = False) -> None:
        """The stream has ended (its request too); *in_reader*: it was served by the
        connection's reader, which writes what it queued."""
        ...
