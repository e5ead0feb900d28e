"""A lean stream over a plain TCP socket, for the connection loop's hot path.

:class:`trio.SocketStream` is correct and general, but each ``receive_some`` and
``send_all`` pays for conflict detection, two scheduler checkpoints and a
context manager or two -- a large share of a hello-world request.  This stream
makes the same system calls directly on the non-blocking descriptor and only
waits (``trio.lowlevel.wait_readable/writable``) when the kernel says so.

It keeps trio's guarantees where they matter: every ``receive_some`` is a
checkpoint (a wait, or an explicit one when data was already there) that
never loses bytes it read to a cancellation, every blocking point is
cancellable, and closing notifies trio first so that other waiters are woken.
"""

from __future__ import annotations

import errno
import os
import socket

import trio

__all__ = ["PlainSocketStream", "translate_error"]

_BROKEN_ERRNOS = {errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT,
                  errno.ENOTCONN, errno.EHOSTUNREACH, errno.ENETUNREACH}


class PlainSocketStream(trio.abc.HalfCloseableStream):
    """A :class:`trio.abc.HalfCloseableStream` over an accepted TCP socket.

    Args:
        sock: an accepted, connected TCP socket; the stream owns it from now
            on (it is made non-blocking, gets ``TCP_NODELAY``, and is closed by
            :meth:`close` / :meth:`aclose`).
    """

    #: Tasks waiting on the socket right now (``wait_readable`` /
    #: ``wait_writable``, here or in :class:`mhd2.transport.Transport`): every
    #: wait on the descriptor counts itself, so :meth:`close` knows whether
    #: anyone must be woken.
    waiting = 0

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover - not TCP
            pass
        self.socket = sock
        self._fd = sock.fileno()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Receive at most *max_bytes* (65536 by default); ``b""`` at EOF."""
        # The wait loop is written out here and in receive_some_later rather
        # than shared: an idle connection waits inside it, and a helper
        # coroutine would keep one more frame (~0.6 KB) alive per connection.
        fd = self.fd
        # A cancellation point before the read, none after it: bytes read are
        # never lost to a cancellation (trio's own sockets do the same).  A
        # TLS stream on top, whose wait is cancelled to wake it (mhd2.fanout's
        # WebSocket subscribers), would otherwise break.
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            data = os.read(fd, max_bytes or 65536)
        except BlockingIOError:
            pass
        except OSError as exc:
            raise _translate(exc) from exc
        else:
            # The bytes are read: a cancellation now must not lose them, so
            # the checkpoint that lets other tasks run is shielded (a watcher
            # of a parked request is cancelled when the request is resumed).
            await trio.lowlevel.cancel_shielded_checkpoint()
            return data
        while True:
            self.waiting += 1
            try:
                await trio.lowlevel.wait_readable(fd)
            finally:
                self.waiting -= 1
            try:
                return os.read(fd, max_bytes or 65536)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise _translate(exc) from exc

    async def receive_some_later(self, max_bytes: int) -> bytes:
        """Yield to other tasks first, then receive (for a keep-alive connection).

        After a response the client's next request usually arrives while
        other connections are served: reading after a checkpoint then finds
        it, where reading first would find nothing and have to register with
        epoll to wait.
        """
        await trio.lowlevel.checkpoint()
        fd = self._fd  # (the fd property written out: this runs for every keep-alive request)
        if fd < 0:
            raise trio.ClosedResourceError("the stream was closed")
        while True:
            try:
                return os.read(fd, max_bytes)
            except BlockingIOError:
                pass
            except OSError as exc:
                raise _translate(exc) from exc
            self.waiting += 1
            try:
                await trio.lowlevel.wait_readable(fd)
            finally:
                self.waiting -= 1

    @property
    def fd(self) -> int:
        """The socket's descriptor (raises ``ClosedResourceError`` once closed)."""
        fd = self._fd
        if fd < 0:
            raise trio.ClosedResourceError("the stream was closed")
        return fd

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of *data*, waiting for the socket to drain as needed."""
        fd = self.fd
        with memoryview(data) as view:
            total = view.nbytes
            sent = 0
            while True:
                try:
                    sent += os.write(fd, view[sent:] if sent else view)
                except BlockingIOError:
                    pass
                except OSError as exc:
                    raise _translate(exc) from exc
                if sent >= total:
                    break
                self.waiting += 1
                try:
                    await trio.lowlevel.wait_writable(fd)
                finally:
                    self.waiting -= 1
        if total == 0:
            await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        """Wait until the socket is writable."""
        self.waiting += 1
        try:
            await trio.lowlevel.wait_writable(self.fd)
        finally:
            self.waiting -= 1

    async def send_eof(self) -> None:
        """Shut down the sending side (``SHUT_WR``); receiving still works."""
        await trio.lowlevel.checkpoint()
        try:
            self.socket.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        """Close the socket now, waking any task that waits on it.

        ``trio.lowlevel.notify_closing`` is called only when a task waits
        (:attr:`waiting`): for a socket nobody waits on it finds no waiter and
        costs a failing ``epoll_ctl(EPOLL_CTL_DEL)`` and a caught exception --
        ~15 µs of every ``Connection: close`` request -- while closing the
        descriptor removes it from epoll anyway.
        """
        if self._fd >= 0:
            self._fd = -1
            if self.waiting:
                trio.lowlevel.notify_closing(self.socket)
            self.socket.close()

    async def aclose(self) -> None:
        """Close the socket (a checkpoint, as trio streams are)."""
        self.close()
        await trio.lowlevel.checkpoint()


def translate_error(exc: OSError) -> Exception:
    """The trio exception for an ``OSError`` of a read or write on a socket."""
    return _translate(exc)


def _translate(exc: OSError) -> Exception:
    if exc.errno == errno.EBADF:
        return trio.ClosedResourceError("the stream was closed")
    if exc.errno in _BROKEN_ERRNOS:
        return trio.BrokenResourceError(f"the connection broke: {exc}")
    return trio.BrokenResourceError(f"socket error: {exc}")
