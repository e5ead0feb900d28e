"""A transport over any :class:`trio.abc.Stream`: in slices, with a bounded close.

:class:`StreamTransport` serves what :meth:`mhd2.Daemon.serve_stream` is handed
(``trio.testing`` memory streams, a ``trio.SocketStream``, anything with
trio's stream API) and is the base of the TLS transport.  Such a stream sends
all or nothing, so a large write is cut into slices of :data:`SEND_SLICE`
bytes, each one progress that re-arms the inactivity deadline; and its close
may wait for the peer, so it is bounded.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable

import trio

from .base import Transport, TransportError

__all__ = ["CLOSE_SECONDS", "SEND_SLICE", "TLS_RECORD", "StreamTransport"]

#: A large write is cut into slices of this size; each slice written is
#: progress that re-arms the deadline.
SEND_SLICE = 64 * 1024
#: One TLS record's plaintext at most (RFC 8446 §5.1: 2^14 bytes): the piece
#: :meth:`~mhd2.transport.base.Transport.send_within` sends under one limit.
TLS_RECORD = 16384
#: Bound on closing the stream (for TLS: sending close_notify) when a connection ends.
CLOSE_SECONDS = 1.0


class StreamTransport(Transport):
    """:class:`~mhd2.transport.base.Transport` over any trio stream.

    Args:
        stream: the connection's stream; the transport owns it.
        timeout: the inactivity limit in seconds (``None``: none).
    """

    __slots__ = ()

    def _write_rest(self, data: bytes | bytearray | memoryview, sent: int) -> Awaitable[None]:
        """``send_all``, in slices of :data:`SEND_SLICE` when larger, each one re-arming.

        (Most writes are one slice: the stream's own ``send_all`` is returned,
        with no coroutine of this class around it.)
        """
        if len(data) - sent <= SEND_SLICE:
            return self.stream.send_all(data[sent:] if sent else data)
        return self._write_slices(data, sent)

    async def _write_slices(self, data: bytes | bytearray | memoryview, sent: int) -> None:
        size = len(data)
        with memoryview(data) as view:
            for start in range(sent, size, SEND_SLICE):
                await self.stream.send_all(view[start:start + SEND_SLICE])
                self.arm()

    async def _send_view_within(self, view: memoryview, timeout: float | None) -> int:
        """Send in pieces of one TLS record, each under its own limit.

        A stream such as trio.SSLStream sends all or (when cancelled) leaves
        itself broken.  With a timeout the data goes in pieces of one TLS
        record (RFC 8446 §5.1: at most 2^14 bytes of plaintext), each with
        its own deadline: a finished piece is progress, and the count
        returned is that of the pieces sent whole.
        """
        total = view.nbytes
        step = total if timeout is None else TLS_RECORD
        sent = 0
        while True:
            with trio.move_on_after(math.inf if timeout is None else timeout):
                await self.stream.send_all(view[sent:sent + step])
                sent = min(total, sent + step)
                if sent >= total:
                    return total
                continue
            return sent

    async def _half_close(self) -> None:
        """``send_eof`` where the stream is half-closeable; otherwise nothing."""
        if isinstance(self.stream, trio.abc.HalfCloseableStream):
            await self.stream.send_eof()

    async def _close_stream(self) -> None:
        """Send what is held and close, shielded, within :data:`CLOSE_SECONDS`;
        past that the stream is closed forcefully."""
        with trio.CancelScope(shield=True):
            with trio.move_on_after(CLOSE_SECONDS) as closing:
                try:
                    if self._held:
                        await self.stream.send_all(self._take_held())
                    await self.stream.aclose()
                except TransportError:
                    pass
            if closing.cancelled_caught:
                await trio.aclose_forcefully(self.stream)
