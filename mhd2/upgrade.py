"""The upgraded-connection handle: ``upgraded_recv`` / ``upgraded_send`` / ``upgraded_close``.

After ``101 Switching Protocols`` the connection no longer speaks HTTP; the
upgrade handler talks to the client through an :class:`UpgradeHandle`, with
MHD2's semantics (timeouts in seconds, ``0`` = do not block, partial sends
reported) and MHD2's error codes as exceptions.  The handle is also a
:class:`trio.abc.HalfCloseableStream`, so any trio protocol library (wsproto
glue, trio-websocket, h2 ...) can run over it.
"""

from __future__ import annotations

import math
import os
import socket
import ssl
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

import trio

from .errors import (
    UpgradedBroken,
    UpgradedClosed,
    UpgradedHandleInvalid,
    UpgradedTimeout,
    UpgradedTLSError,
)
from .plain_stream import PlainSocketStream

if TYPE_CHECKING:
    from .request import Request

fcntl: ModuleType | None
termios: ModuleType | None
try:
    import fcntl
    import termios
except ImportError:  # pragma: no cover - not POSIX
    fcntl = termios = None

__all__ = ["UpgradeHandle"]

_DEFAULT_RECV = 65536
#: With a timeout, a stream without partial writes (TLS) is fed in pieces of
#: one TLS record (RFC 8446 §5.1: at most 2^14 bytes of plaintext).
_STREAM_PIECE = 16384


class UpgradeHandle(trio.abc.HalfCloseableStream):
    """The application's end of an upgraded connection (``struct MHD_UpgradeHandle``).

    Attributes:
        request: the request that was upgraded.

    Resource handling:
        :meth:`upgraded_close` (or :meth:`aclose`) closes the connection; if
        the upgrade handler returns without closing, the daemon closes it.
        A graceful daemon stop first calls :meth:`begin_stop` (so
        :attr:`stopping` turns true and :meth:`wait_stopping` returns: the
        handler can say goodbye in its own protocol), then cancels the
        handler when the grace period ends.

    Timeouts:
        A *timeout* is an inactivity limit, as MHD's connection timeout: every
        partial write re-arms it, so a large send to a slow but steady reader
        is never cut; only *timeout* seconds without any progress end it.

    Error handling:
        Failures raise :class:`~mhd2.UpgradedError` subclasses carrying MHD2's
        status codes: :class:`~mhd2.UpgradedTimeout` (nothing moved before the
        timeout), :class:`~mhd2.UpgradedClosed`, :class:`~mhd2.UpgradedBroken`,
        :class:`~mhd2.UpgradedTLSError`, :class:`~mhd2.UpgradedHandleInvalid`
        (used after close).
    """

    def __init__(self, stream: trio.abc.Stream, extra_in: bytes, request: Request) -> None:
        self._stream = stream
        self._extra = bytearray(extra_in)
        self._closed = False
        self._corked = False
        self._stop = trio.Event()
        self._moved = 0  # bytes received and sent so far (see _progress_mark)
        self.request = request

    # -- MHD2 API ----------------------------------------------------------------

    async def upgraded_recv(self, max_size: int, timeout: float | None = None) -> bytes:
        """Receive up to *max_size* bytes (``MHD_upgraded_recv``).

        Bytes the client sent right after its request head come first.

        Args:
            max_size: the most bytes to return (> 0).
            timeout: seconds to wait; ``None`` waits indefinitely, ``0`` does not block.

        Returns:
            The bytes received; ``b""`` when the peer shut down its sending side.

        Raises:
            UpgradedTimeout: nothing arrived within *timeout*.
            UpgradedBroken, UpgradedClosed, UpgradedTLSError: the connection failed.
            UpgradedHandleInvalid: the handle was closed.
        """
        self._check_open()
        if max_size <= 0:
            raise ValueError("max_size must be > 0")
        if self._extra:
            data = bytes(self._extra[:max_size])
            del self._extra[:max_size]
            await trio.lowlevel.checkpoint()
            return data
        if timeout == 0:
            return self._recv_now(max_size)
        if timeout is None:
            return await self._recv(max_size)
        with trio.move_on_after(timeout):
            return await self._recv(max_size)
        raise UpgradedTimeout(f"nothing received within {timeout} s")

    async def _recv(self, max_size: int) -> bytes:
        stream = self._stream
        try:
            if isinstance(stream, PlainSocketStream):
                # Yield first: in a busy server the peer's next bytes have
                # usually arrived by then, and no epoll registration is needed.
                data = await stream.receive_some_later(max_size)
            else:
                data = bytes(await stream.receive_some(max_size))
            self._moved += len(data)
            return data
        except trio.ClosedResourceError as exc:
            raise self._invalid_or(UpgradedClosed, exc) from exc
        except trio.BrokenResourceError as exc:
            raise _broken(exc) from exc

    async def upgraded_send(
        self, data: bytes | bytearray | memoryview, timeout: float | None = None,
        more_data_to_come: bool = False,
    ) -> int:
        """Send *data* (``MHD_upgraded_send``).

        Args:
            data: the bytes to send.
            timeout: seconds the send may go without progress (an inactivity
                limit: every partial write re-arms it); ``None`` waits
                indefinitely, ``0`` sends only what fits now.
            more_data_to_come: more follows soon, so a partial packet may be
                held back (``TCP_CORK``); ``False`` pushes everything out now.

        Returns:
            How many bytes were sent: all of them, or fewer when *timeout*
            seconds passed without progress after some were sent.

        Raises:
            UpgradedTimeout: *timeout* seconds passed before any byte was sent.
            UpgradedBroken, UpgradedClosed, UpgradedTLSError: the connection failed.
            UpgradedHandleInvalid: the handle was closed.
        """
        self._check_open()
        stream = self._stream
        self._cork(more_data_to_come)
        if isinstance(stream, PlainSocketStream):
            sent = await self._send_plain(stream, memoryview(data), timeout)
        else:
            sent = await self._send_stream(data, timeout)
        if not more_data_to_come:
            self._cork(False)
        self._moved += sent
        return sent

    async def upgraded_close(self) -> None:
        """Close the upgraded connection (``MHD_upgraded_close``); the handle is invalid after."""
        self._check_open()
        self._closed = True
        if isinstance(self._stream, PlainSocketStream):
            self._stream.close()
            await trio.lowlevel.checkpoint()
        else:
            await trio.aclose_forcefully(self._stream)

    @property
    def closed(self) -> bool:
        """Whether :meth:`upgraded_close` was called."""
        return self._closed

    # -- graceful stop ---------------------------------------------------------------

    def begin_stop(self) -> None:
        """Tell the handler that the daemon's graceful stop has begun (the engine calls this).

        Sets :attr:`stopping` and wakes :meth:`wait_stopping`; idempotent.  The
        handler has until the end of the grace period to finish; then it is
        cancelled.
        """
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether the daemon is stopping: finish (say goodbye, close) within the grace period."""
        return self._stop.is_set()

    async def wait_stopping(self) -> None:
        """Return once the daemon's graceful stop has begun (at once if it has)."""
        await self._stop.wait()

    # -- trio.abc.HalfCloseableStream ------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Stream API: :meth:`upgraded_recv` without a timeout."""
        try:
            return await self.upgraded_recv(max_bytes or _DEFAULT_RECV)
        except UpgradedHandleInvalid as exc:
            raise trio.ClosedResourceError(str(exc)) from exc
        except (UpgradedBroken, UpgradedClosed, UpgradedTLSError) as exc:
            raise trio.BrokenResourceError(str(exc)) from exc

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Stream API: send everything, waiting as long as needed."""
        try:
            await self.upgraded_send(data)
        except UpgradedHandleInvalid as exc:
            raise trio.ClosedResourceError(str(exc)) from exc
        except (UpgradedBroken, UpgradedClosed, UpgradedTLSError) as exc:
            raise trio.BrokenResourceError(str(exc)) from exc

    async def wait_send_all_might_not_block(self) -> None:
        """Stream API: wait until sending may proceed."""
        self._check_open_stream()
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        """Stream API: shut down the sending side (plain TCP or TLS 1.3 close_notify)."""
        self._check_open_stream()
        if isinstance(self._stream, trio.abc.HalfCloseableStream):
            await self._stream.send_eof()
        else:
            await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        """Stream API: close (idempotent, unlike :meth:`upgraded_close`)."""
        if not self._closed:
            await self.upgraded_close()
        else:
            await trio.lowlevel.checkpoint()

    # -- internals ----------------------------------------------------------------------

    def _progress_mark(self) -> tuple[int, int, int]:
        """A mark that changes whenever the connection moves (for liveness checks).

        It covers bytes received and sent through this handle and, on Linux,
        the kernel's queues: bytes the peer sent that wait unread, and bytes
        sent but not yet acknowledged by the peer (which shrink as a slow
        reader reads, even while no write happens).
        """
        fd = _fd_of(self._stream)
        unread = unacked = 0
        if fd >= 0 and fcntl is not None and termios is not None:
            buf = bytearray(4)
            try:
                fcntl.ioctl(fd, termios.FIONREAD, buf)
                unread = int.from_bytes(buf, sys.byteorder)
                fcntl.ioctl(fd, termios.TIOCOUTQ, buf)
                unacked = int.from_bytes(buf, sys.byteorder)
            except (OSError, AttributeError):  # pragma: no cover - not Linux
                pass
        return self._moved, unread, unacked

    def _check_open(self) -> None:
        if self._closed:
            raise UpgradedHandleInvalid("the upgraded handle was closed")

    def _check_open_stream(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the upgraded handle was closed")

    def _invalid_or(self, kind: type[Exception], exc: BaseException) -> Exception:
        if self._closed:
            return UpgradedHandleInvalid("the upgraded handle was closed")
        return kind(f"the connection was closed: {exc}")

    def _recv_now(self, max_size: int) -> bytes:
        stream = self._stream
        if not isinstance(stream, PlainSocketStream):
            raise UpgradedTimeout("non-blocking receive is only available on plain TCP")
        try:
            data = stream.socket.recv(max_size)
            self._moved += len(data)
            return data
        except BlockingIOError:
            raise UpgradedTimeout("no data available now") from None
        except OSError as exc:
            raise UpgradedBroken(f"the connection broke: {exc}") from exc

    async def _send_plain(self, stream: PlainSocketStream, view: memoryview,
                          timeout: float | None) -> int:
        fd = stream.socket.fileno()
        if fd < 0:
            raise UpgradedClosed("the connection was closed")
        total = view.nbytes
        sent = 0
        deadline = math.inf if timeout is None else trio.current_time() + timeout
        with view:
            while sent < total:
                try:
                    sent += os.write(fd, view[sent:])
                    if timeout:
                        # Progress re-arms the inactivity deadline (MHD's
                        # connection timeout counts from the last activity).
                        deadline = trio.current_time() + timeout
                    continue
                except BlockingIOError:
                    pass
                except OSError as exc:
                    raise UpgradedBroken(f"the connection broke: {exc}") from exc
                if timeout == 0 or trio.current_time() >= deadline:
                    break
                # Woken when writable, or at the deadline: either way the loop
                # tries to write again.  The kernel reports "writable" only
                # once much of its send buffer is free, so a slow but steady
                # reader can drain it for longer than *timeout* without a
                # wake-up; the write attempt at the deadline sees whether it
                # took anything meanwhile (progress) or nothing (a timeout).
                with trio.move_on_at(deadline):
                    await trio.lowlevel.wait_writable(fd)
        if sent == 0 and total:
            raise UpgradedTimeout(f"nothing could be sent within {timeout} s")
        await trio.lowlevel.checkpoint()
        return sent

    async def _send_stream(self, data: bytes | bytearray | memoryview, timeout: float | None) -> int:
        # A stream such as trio.SSLStream sends all or (when cancelled) leaves
        # itself broken.  With a timeout the data goes in pieces of one TLS
        # record, each piece with its own deadline: a finished piece is
        # progress (the inactivity limit re-arms), and the count returned is
        # that of the pieces sent whole.
        view = memoryview(data).cast("B")
        total = view.nbytes
        step = total if timeout is None else _STREAM_PIECE
        sent = 0
        with view:
            while True:
                with trio.move_on_after(math.inf if timeout is None else timeout):
                    try:
                        await self._stream.send_all(view[sent:sent + step])
                    except trio.ClosedResourceError as exc:
                        raise self._invalid_or(UpgradedClosed, exc) from exc
                    except trio.BrokenResourceError as exc:
                        raise _broken(exc) from exc
                    sent = min(total, sent + step)
                    if sent >= total:
                        return total
                    continue
                break
        if sent:
            return sent
        raise UpgradedTimeout(f"nothing could be sent within {timeout} s")

    def _cork(self, on: bool) -> None:
        stream = self._stream
        if on == self._corked or not isinstance(stream, PlainSocketStream):
            return
        cork = getattr(socket, "TCP_CORK", None)
        if cork is None:  # pragma: no cover - not Linux
            return
        try:
            stream.socket.setsockopt(socket.IPPROTO_TCP, cork, 1 if on else 0)
            self._corked = on
        except OSError:
            pass


def _fd_of(stream: Any) -> int:
    """The socket descriptor under *stream* (through TLS layers), or -1."""
    for _ in range(4):
        sock = getattr(stream, "socket", None)
        if sock is not None:
            fileno = getattr(sock, "fileno", None)
            return fileno() if callable(fileno) else -1
        stream = getattr(stream, "transport_stream", None)
        if stream is None:
            return -1
    return -1


def _broken(exc: BaseException) -> Exception:
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ssl.SSLError):
        return UpgradedTLSError(f"TLS error: {cause}")
    return UpgradedBroken(f"the connection broke: {exc}")
