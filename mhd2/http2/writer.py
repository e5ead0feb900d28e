"""The one writer of an HTTP/2 connection: what the engine queued, to the transport.

Everyone queues frames in the connection's engine
(:class:`~mhd2.http2.engine.H2Engine`); :class:`FrameWriter` takes them
(:meth:`~mhd2.http2.engine.H2Engine.data_to_send`) and writes them, one write
at a time.  The connection's reader writes the answers to a read itself
(:meth:`FrameWriter.write`), unless a write is under way; streams wake the
writer task instead (:meth:`FrameWriter.wake`, :meth:`FrameWriter.flushed`):
a stream's task may be cancelled, and a write cut mid-frame would break the
connection.  Streams and the reader wait until their frames are written
before they queue more, so what waits for the socket is bounded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from ..transport import TransportError
from .engine import ConnState

if TYPE_CHECKING:
    from ..transport import Transport
    from .engine import H2Engine

__all__ = ["FrameWriter"]


class FrameWriter:
    """Writes what *engine* queued to *transport*.

    Args:
        engine: the connection's engine.
        transport: the connection's transport.
        on_lost: called once when a write fails (the client is gone; the
            engine is then :attr:`~mhd2.http2.engine.ConnState.LOST`).
        on_idle: called when a write has emptied the queue (the connection's
            deadline is settled again).
    """

    __slots__ = ("_batch", "_engine", "_flush_asked", "_on_idle", "_on_lost", "_transport",
                 "_wake", "writing")

    def __init__(self, engine: H2Engine, transport: Transport, on_lost: Callable[[], None],
                 on_idle: Callable[[], None]) -> None:
        self._engine = engine
        self._transport = transport
        self._on_lost = on_lost
        self._on_idle = on_idle
        self._wake = trio.Event()
        self._batch = trio.Event()
        self._flush_asked = False
        #: A write is under way.  A write cancelled midway (the connection's
        #: deadline, or its end) leaves it set: the byte stream is no longer
        #: whole, nothing more is written on it.
        self.writing = False

    def wake(self) -> None:
        """Frames were queued: have the writer task send them."""
        self._wake.set()

    async def flushed(self) -> None:
        """Wait until what is queued now has been written."""
        if self._engine.state is ConnState.LOST:
            await trio.lowlevel.checkpoint()
            return
        batch = self._batch
        self._flush_asked = True
        self._wake.set()
        await batch.wait()

    async def run(self) -> None:
        """The writer task: write what was queued whenever woken, until a write fails."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            # While the reader writes, its write takes what is queued (see write).
            if not self.writing and not await self.write():
                return

    async def write(self) -> bool:
        """Write what is queued, until nothing is (one task at a time: not :attr:`writing`).

        Returns:
            False if the client is gone (``on_lost`` was called).
        """
        transport = self._transport
        engine = self._engine
        self.writing = True
        while True:
            done, self._batch = self._batch, trio.Event()
            self._flush_asked = False
            data = engine.data_to_send()
            if data and engine.state is not ConnState.LOST:
                try:
                    await transport.send(data)
                except TransportError:
                    self.writing = False
                    engine.lost()
                    self._on_lost()
                    done.set()
                    return False
            done.set()
            # Frames queued, or a flush asked for, during this write: once more.
            if not (self._flush_asked or engine.has_output()):
                self.writing = False
                self._on_idle()
                return True
