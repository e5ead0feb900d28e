"""A transport over a plain TCP or Unix socket: the fast path.

:class:`SocketTransport` writes with ``os.write`` straight to the socket of a
:class:`~mhd2.plain_stream.PlainSocketStream` (most responses: one call, no
coroutine), sends files with ``os.sendfile``, corks, and can write without
waiting from another task (mhd2.fanout's direct delivery).

The kernel reports a TCP socket writable only once much of its send buffer is
free, so a slow but steady reader can drain it for longer than the timeout
without a wake-up.  A wait for the socket therefore ends a moment before the
inactivity deadline to try a write: if the reader took anything meanwhile,
that is progress; if not, the deadline is let to pass.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
from typing import ClassVar, Final

import trio

from ..plain_stream import PlainSocketStream, translate_error
from .base import Transport

__all__ = ["SocketTransport"]

_HAS_SENDFILE: Final = hasattr(os, "sendfile")


class SocketTransport(Transport):
    """:class:`~mhd2.transport.base.Transport` over a plain socket.

    Args:
        stream: the connection's socket stream; the transport owns it.
        timeout: the inactivity limit in seconds (``None``: none).
    """

    __slots__ = ("_sock",)

    can_sendfile: ClassVar[bool] = _HAS_SENDFILE

    def __init__(self, stream: PlainSocketStream, timeout: float | None) -> None:
        super().__init__(stream, timeout)
        self._sock = stream

    @classmethod
    def over_socket(cls, sock: socket.socket, timeout: float | None) -> SocketTransport:
        """A plain TCP or Unix-domain connection (the fast path, with ``sendfile``)."""
        return cls(PlainSocketStream(sock), timeout)

    @property
    def is_plain(self) -> bool:
        """Always: :meth:`send_nowait` writes to the socket."""
        return True

    # -- receiving -------------------------------------------------------------------

    async def receive_later(self, max_bytes: int) -> bytes:
        """Receive after a checkpoint, reading before waiting (see the base)."""
        if self._held:
            await self.flush()
        return await self._sock.receive_some_later(max_bytes)

    def receive_now(self, max_bytes: int) -> bytes | None:
        """The bytes there now, or ``None`` if none are (one ``read``)."""
        try:
            return os.read(self._sock.fd, max_bytes)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise translate_error(exc) from exc

    # -- sending -----------------------------------------------------------------------

    def _write_now(self, data: bytes | bytearray | memoryview) -> int:
        """One ``write``: most responses fit the socket buffer."""
        if not data:
            return 0
        try:
            return os.write(self._sock.fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise translate_error(exc) from exc

    async def _write_rest(self, data: bytes | bytearray | memoryview, sent: int) -> None:
        """Write *data* from offset *sent* on, waiting for the socket as needed."""
        size = len(data)
        if not size:
            await trio.lowlevel.checkpoint()
            return
        if sent:  # progress on a partial write re-arms the deadline
            self.arm()
        fd = self._sock.fd
        with memoryview(data) as view:
            tried_early = False
            while True:
                tried_early = await self._wait_writable(fd, tried_early)
                try:
                    written = os.write(fd, view[sent:])
                except BlockingIOError:
                    written = 0
                except OSError as exc:
                    raise translate_error(exc) from exc
                sent += written
                if sent >= size:
                    return
                if written:  # progress on a partial write re-arms the deadline
                    tried_early = False
                    self.arm()

    async def _wait_writable(self, fd: int, tried_early: bool) -> bool:
        """Wait until *fd* is writable, or until just before the inactivity deadline.

        Returns:
            Whether this wait ended early, at the deadline (the caller's next
            write without progress then waits for the deadline itself).
        """
        sock = self._sock
        deadline = self.scope.deadline
        sock.waiting += 1  # (close() wakes counted waiters)
        try:
            if tried_early or deadline == math.inf:
                await trio.lowlevel.wait_writable(fd)
                return False
            early = deadline - self._slack / 2
            with trio.move_on_at(early):
                await trio.lowlevel.wait_writable(fd)
        finally:
            sock.waiting -= 1
        return trio.current_time() >= early

    def send_nowait(self, data: bytes | list[bytes]) -> int:
        """Write what fits now, from any task (see the base); ``0`` while bytes are held."""
        if self._held or self._closed:
            return 0
        fd = self._sock._fd  # (the fd property's check, without its two calls)
        if fd < 0:
            raise trio.ClosedResourceError("the stream was closed")
        try:
            sent = os.writev(fd, data) if isinstance(data, list) else os.write(fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise translate_error(exc) from exc
        self.bytes_sent += sent
        return sent

    async def sendfile(self, fd: int, offset: int, count: int) -> int:
        """``os.sendfile`` up to *count* bytes; each call that moves bytes re-arms
        (with the early retry of :meth:`send`)."""
        if self._held:
            await self.flush()
        tried_early = False
        while True:
            sock_fd = self._sock.fd
            try:
                sent = os.sendfile(sock_fd, fd, offset, count)
            except BlockingIOError:
                tried_early = await self._wait_writable(sock_fd, tried_early)
                continue
            except OSError as exc:
                raise translate_error(exc) from exc
            self.arm()
            self.bytes_sent += sent
            return sent

    async def _send_view_within(self, view: memoryview, timeout: float | None) -> int:
        """Write until done or *timeout* passes without progress (partial writes count)."""
        fd = self._sock.fd
        total = view.nbytes
        sent = 0
        deadline = math.inf if timeout is None else trio.current_time() + timeout
        while sent < total:
            try:
                sent += os.write(fd, view[sent:])
                if timeout:
                    deadline = trio.current_time() + timeout  # progress re-arms
                continue
            except BlockingIOError:
                pass
            except OSError as exc:
                raise translate_error(exc) from exc
            if timeout == 0 or trio.current_time() >= deadline:
                break
            # Woken when writable, or at the deadline: either way the loop
            # tries to write again (see the module docstring on wake-ups).
            self._sock.waiting += 1  # (close() wakes counted waiters)
            try:
                with trio.move_on_at(deadline):
                    await trio.lowlevel.wait_writable(fd)
            finally:
                self._sock.waiting -= 1
        await trio.lowlevel.checkpoint()
        return sent

    def set_cork(self, on: bool) -> bool:
        """``TCP_CORK`` on or off; whether it could (not on Unix sockets or without it)."""
        cork = getattr(socket, "TCP_CORK", None)
        if cork is None:
            return False
        try:
            self._sock.socket.setsockopt(socket.IPPROTO_TCP, cork, 1 if on else 0)
        except OSError:
            return False
        return True

    # -- endings ----------------------------------------------------------------------

    async def _half_close(self) -> None:
        await self._sock.send_eof()

    async def _close_stream(self) -> None:
        """Write what is held as far as the socket buffer takes it, never
        blocking, then close (waking a waiter only if there is one)."""
        if self._held:
            with contextlib.suppress(OSError):
                os.write(self._sock.fd, self._take_held())
        self._sock.close()
