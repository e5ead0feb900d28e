"""The upgraded-connection handle: ``upgraded_recv`` / ``upgraded_send`` / ``upgraded_close``.

After ``101 Switching Protocols`` the connection no longer speaks HTTP (over
HTTP/2: after the ``200`` to an extended CONNECT, RFC 8441, the stream
carries the bytes: :mod:`mhd2.http2.tunnel`); the
upgrade handler talks to the client through an :class:`UpgradeHandle`, with
MHD2's semantics (timeouts in seconds, ``0`` = do not block, partial sends
reported) and MHD2's error codes as exceptions.  The handle is also a
:class:`trio.abc.HalfCloseableStream`, so any trio protocol library (wsproto
glue, trio-websocket, h2 ...) can run over it.
"""

from __future__ import annotations

import logging
import ssl
import sys
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

import trio

from .callbacks import call_maybe_await
from .errors import (
    UpgradedBroken,
    UpgradedClosed,
    UpgradedHandleInvalid,
    UpgradedTimeout,
    UpgradedTLSError,
)
from .transport import TransportError

if TYPE_CHECKING:
    from .actions import UpgradeAction
    from .request import Request
    from .shared import Shared

fcntl: ModuleType | None
termios: ModuleType | None
try:
    import fcntl
    import termios
except ImportError:  # pragma: no cover - not POSIX
    fcntl = termios = None

__all__ = ["UpgradeHandle", "UpgradedPipe", "run_upgrade_handler"]

logger = logging.getLogger("mhd2")

_DEFAULT_RECV = 65536


class UpgradedPipe(Protocol):
    """What an :class:`UpgradeHandle` needs of the bytes under it.

    An HTTP/1 connection's :class:`~mhd2.transport.Transport`, or one HTTP/2
    stream upgraded by an extended CONNECT (RFC 8441:
    :class:`~mhd2.http2.tunnel.StreamTunnel`).  Errors are trio's:
    ``trio.BrokenResourceError``, ``trio.ClosedResourceError``, ``OSError``.
    """

    @property
    def stream(self) -> trio.abc.Stream:
        """The trio stream (for ``wait_send_all_might_not_block`` and ``send_eof``)."""
        ...

    @property
    def fd(self) -> int:
        """The socket under it, or ``-1``."""
        ...

    @property
    def is_plain(self) -> bool:
        """A plain socket whose bytes are the upgraded connection's own (not TLS,
        not an HTTP/2 stream): mhd2.fanout may write its frames to it directly."""
        ...

    async def receive_later(self, max_bytes: int) -> bytes:
        """Up to *max_bytes*, waiting for them; ``b""`` at the end of input."""
        ...

    def receive_now(self, max_bytes: int) -> bytes | None:
        """The bytes there now, or ``None``."""
        ...

    async def send_within(self, data: bytes | bytearray | memoryview,
                          timeout: float | None) -> int:
        """Send with an inactivity limit; how many bytes were sent."""
        ...

    def send_nowait(self, data: bytes | list[bytes]) -> int:
        """Write what fits now from any task (``0``: leave it to the handler's task)."""
        ...

    def set_cork(self, on: bool) -> bool:
        """Hold back partial packets; whether it could."""
        ...

    async def close(self) -> None:
        """Close, once, without blocking for long."""
        ...


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

    def __init__(self, transport: UpgradedPipe, extra_in: bytes, request: Request) -> None:
        self._transport = transport
        self._stream = transport.stream
        self._extra = bytearray(extra_in)
        self._closed = False
        self._corked = False
        self._stop = trio.Event()
        #: Called (no arguments) by :meth:`begin_stop`, for a handler whose task
        #: waits on something else than :meth:`wait_stopping` (mhd2.fanout's
        #: WebSocket subscribers wait only for their socket to be readable).
        self._on_stop: Callable[[], object] | None = None
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
            # The checkpoint first: a cancellation never loses bytes taken.
            await trio.lowlevel.checkpoint()
            data = bytes(self._extra[:max_size])
            del self._extra[:max_size]
            return data
        if timeout == 0:
            return self._recv_now(max_size)
        if timeout is None:
            return await self._recv(max_size)
        with trio.move_on_after(timeout):
            return await self._recv(max_size)
        raise UpgradedTimeout(f"nothing received within {timeout} s")

    async def _recv(self, max_size: int) -> bytes:
        try:
            # Yield first: in a busy server the peer's next bytes have usually
            # arrived by then, and no epoll registration is needed.
            data = bytes(await self._transport.receive_later(max_size))
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
        self._cork(more_data_to_come)
        try:
            sent = await self._transport.send_within(data, timeout)
        except trio.TooSlowError:
            raise UpgradedTimeout(f"nothing could be sent within {timeout} s") from None
        except trio.ClosedResourceError as exc:
            raise self._invalid_or(UpgradedClosed, exc) from exc
        except (trio.BrokenResourceError, OSError) as exc:
            raise _broken(exc) from exc
        if not more_data_to_come:
            self._cork(False)
        self._moved += sent
        return sent

    def _send_nowait(self, data: bytes) -> int:
        """Write what of *data* fits now, from any task, without waiting (plain
        sockets only: else ``0``).  For mhd2.fanout's direct delivery to a
        WebSocket whose task waits to read (see ``WebSocket._send_prebuilt_nowait``).

        Raises:
            UpgradedBroken, UpgradedClosed: the connection failed.
        """
        self._check_open()
        try:
            sent = self._transport.send_nowait(data)
        except trio.ClosedResourceError as exc:
            raise self._invalid_or(UpgradedClosed, exc) from exc
        except (trio.BrokenResourceError, OSError) as exc:
            raise _broken(exc) from exc
        self._moved += sent
        return sent

    async def upgraded_close(self) -> None:
        """Close the upgraded connection (``MHD_upgraded_close``); the handle is invalid after."""
        self._check_open()
        self._closed = True
        await self._transport.close()
        await trio.lowlevel.checkpoint()

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
        if self._on_stop is not None:
            self._on_stop()

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
        fd = self._transport.fd
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
        try:
            data = self._transport.receive_now(max_size)
        except TransportError as exc:
            raise UpgradedBroken(f"the connection broke: {exc}") from exc
        if data is None:
            raise UpgradedTimeout("no data available now")
        self._moved += len(data)
        return data

    def _cork(self, on: bool) -> None:
        if on != self._corked and self._transport.set_cork(on):
            self._corked = on


def _broken(exc: BaseException) -> Exception:
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ssl.SSLError):
        return UpgradedTLSError(f"TLS error: {cause}")
    return UpgradedBroken(f"the connection broke: {exc}")


async def run_upgrade_handler(shared: Shared, action: UpgradeAction, request: Request,
                              handle: UpgradeHandle) -> None:
    """Run *action*'s handler on *handle* (HTTP/1.1 after the 101, or an RFC 8441 stream).

    A stop already begun is passed on at once; a WebSocket is counted while
    its handler runs.

    Error handling:
        An exception from the handler is logged on the ``mhd2`` logger.
    """
    if shared.stopping:
        handle.begin_stop()
    websocket = str(action.value).lower() == "websocket"
    shared.websockets += websocket
    try:
        await call_maybe_await(action.handler, request, handle)
    except Exception:
        logger.exception("mhd2: the upgrade handler failed for %s %s",
                         request.method, request.uri)
    finally:
        shared.websockets -= websocket
