"""One connection's byte stream and its inactivity deadline.

This is the only module that knows what kind of stream a connection runs
over -- plain TCP or a Unix socket (:class:`~mhd2.plain_stream.PlainSocketStream`,
with ``sendfile``), TLS (:class:`~mhd2.tls_stream.TLSSocketStream`), or any other
:class:`trio.abc.Stream` handed to :meth:`mhd2.Daemon.serve_stream` (for example
``trio.testing`` memory streams).  The protocol layers above it only receive,
send, and close.

The transport owns the connection's inactivity deadline: one
:class:`trio.CancelScope` per connection whose deadline moves as bytes move.
Every partial write re-arms it (a slow but steady reader is never cut), as
libmicrohttpd's connection timeout does; reads re-arm it where the protocol
layer says they count as progress (a trickled request head does not).
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import ssl
from collections.abc import Callable
from typing import Final, cast

import trio

from .plain_stream import PlainSocketStream, translate_error
from .tls_stream import TLSSocketStream

__all__ = ["Transport", "TransportError", "send_last_words"]

#: The inactivity deadline may lag real progress by this many seconds, so
#: that it is not moved on every read and write (moving it is not free).
ARM_SLACK = 1.0
#: On streams other than plain sockets a large write is cut into slices of
#: this size; each slice written is progress that re-arms the deadline.
SEND_SLICE = 64 * 1024
#: At most this many bytes of responses are held back for one write (:meth:`Transport.hold`).
HOLD_LIMIT = 64 * 1024
#: After answering and half-closing, how long unread input is drained so the
#: client sees the answer instead of a reset (a "lingering close").
LINGER_SECONDS = 2.0
LINGER_MAX_BYTES = 1024 * 1024
DRAIN_RECV_SIZE = 64 * 1024
#: Bound on sending TLS close_notify when a connection ends.
TLS_CLOSE_SECONDS = 1.0
#: One TLS record's plaintext at most (RFC 8446 §5.1: 2^14 bytes).
TLS_RECORD = 16384
#: Bound on a TLS handshake (the inactivity timeout applies when it is shorter).
TLS_HANDSHAKE_TIMEOUT = 10.0

_HAS_SENDFILE: Final = hasattr(os, "sendfile")

#: What a broken or closed connection raises from :meth:`Transport.receive`
#: and :meth:`Transport.send`.
TransportError = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class Transport:
    """A connection's stream, its inactivity deadline, and its one close.

    Args:
        stream: the connection's stream; the transport owns it from now on.
        timeout: the inactivity limit in seconds (``None``: none).

    Attributes:
        stream: the underlying stream (handed to an upgrade handler).
        scope: the cancel scope the connection runs in; its deadline is the
            inactivity deadline.
        timeout: the inactivity limit now in force (the protocol layer
            switches between the keep-alive and the in-request limit).
        bytes_sent: body and head bytes written so far (for the access log).
        can_sendfile: :meth:`sendfile` may work on this stream.

    Resource handling:
        :meth:`close` closes the stream exactly once, however often it is
        called; TLS gets a bounded close_notify.
    """

    __slots__ = (
        "_armed_at",
        "_closed",
        "_held",
        "_held_size",
        "_plain",
        "_slack",
        "batch",
        "bytes_sent",
        "can_sendfile",
        "scope",
        "stream",
        "timeout",
    )

    def __init__(self, stream: trio.abc.Stream, timeout: float | None) -> None:
        self.stream = stream
        # (type() first: isinstance against a trio.abc class is an ABC check,
        # ~1 µs of every connection.)
        self._plain = (stream if type(stream) is PlainSocketStream
                       or isinstance(stream, PlainSocketStream) else None)
        self.can_sendfile = self._plain is not None and _HAS_SENDFILE
        self.scope = trio.CancelScope()
        self.timeout = timeout
        self._armed_at = -math.inf
        self._slack = ARM_SLACK if timeout is None else min(ARM_SLACK, timeout / 8)
        self._closed = False
        self.bytes_sent = 0
        # Responses held back while more pipelined requests are being served
        # (see hold()); written before any other I/O.
        self._held: list[bytes] = []
        self._held_size = 0
        #: Set by the protocol layer while more pipelined responses will follow
        #: the one being sent: small sends are then held (see :meth:`hold`).
        self.batch = False

    # -- making one ---------------------------------------------------------------

    @classmethod
    def over_socket(cls, sock: socket.socket, timeout: float | None) -> Transport:
        """A plain TCP or Unix-domain connection (the fast path, with ``sendfile``)."""
        return cls(PlainSocketStream(sock), timeout)

    @classmethod
    async def over_tls(cls, sock: socket.socket, context: ssl.SSLContext,
                       timeout: float | None) -> Transport | None:
        """Wrap *sock* in TLS and do the handshake (bounded).

        Returns:
            The transport, or ``None`` if the handshake failed or timed out
            (the socket is then closed).
        """
        # Under TLS too the socket is a PlainSocketStream: its reads and writes
        # cost a third of trio.SocketStream's, and TLS makes several per request.
        tls = TLSSocketStream(PlainSocketStream(sock), context)
        limit = TLS_HANDSHAKE_TIMEOUT if timeout is None else min(TLS_HANDSHAKE_TIMEOUT, timeout)
        with trio.move_on_after(limit):
            try:
                await tls.do_handshake()
            except trio.BrokenResourceError as exc:
                cause = exc.__cause__
                if isinstance(cause, ssl.SSLError) and cause.reason == "HTTP_REQUEST":
                    _answer_plain_http(sock)
                await trio.aclose_forcefully(tls)
                return None
            return cls(tls, timeout)
        await trio.aclose_forcefully(tls)
        return None

    @property
    def tls(self) -> ssl.SSLObject | None:
        """The TLS session after the handshake, or ``None`` on a plain stream."""
        stream = self.stream
        if stream is self._plain or not isinstance(stream, TLSSocketStream):
            return None
        return stream.ssl_object

    # -- the deadline -----------------------------------------------------------

    def arm(self, *, force: bool = False) -> None:
        """Move the inactivity deadline to :attr:`timeout` seconds from now.

        Unless *force*, it is only moved when it was last set more than
        :data:`ARM_SLACK` seconds (or an eighth of the timeout) ago.
        """
        timeout = self.timeout
        if timeout is not None:
            now = trio.current_time()
            if force or now - self._armed_at > self._slack:
                self._armed_at = now
                self.scope.deadline = now + timeout
        elif self._armed_at != -math.inf or force:
            self.disarm()

    def disarm(self) -> None:
        """No inactivity deadline until the next :meth:`arm` (suspended, upgraded)."""
        self._armed_at = -math.inf
        self.scope.deadline = math.inf

    def set_timeout(self, timeout: float | None) -> None:
        """Change the inactivity limit and re-arm the deadline with it."""
        self.timeout = timeout
        if timeout is not None:
            self._slack = min(ARM_SLACK, timeout / 8)
        self.arm(force=True)

    # -- bytes ----------------------------------------------------------------------

    async def receive(self, max_bytes: int) -> bytes:
        """Receive up to *max_bytes*; ``b""`` at end of input.  Does not re-arm.

        Held responses (:meth:`hold`) are written first.
        """
        if self._held:
            await self.flush()
        return cast(bytes, await self.stream.receive_some(max_bytes))

    async def receive_later(self, max_bytes: int) -> bytes:
        """As :meth:`receive`, yielding to other tasks first (between requests).

        After a response the client's next request usually arrives while other
        connections are served: reading after a checkpoint then finds it.
        """
        if self._held:
            await self.flush()
        if self._plain is not None:
            return await self._plain.receive_some_later(max_bytes)
        return cast(bytes, await self.stream.receive_some(max_bytes))

    def hold(self, data: bytes | bytearray | memoryview) -> bool:
        """Keep a complete small response to write with the next ones (pipelining).

        While a client's pipelined requests are already received, their
        responses can leave in one write instead of one each.  The held bytes
        are written by the next :meth:`send` (in front of its data), by any
        receive, by :meth:`flush`, and at :meth:`close`; they count as sent.

        Returns:
            Whether *data* was held (up to :data:`HOLD_LIMIT` bytes in all); if
            not, the caller sends it.
        """
        size = len(data)
        if self._held_size + size > HOLD_LIMIT:
            return False
        self._held.append(bytes(data))
        self._held_size += size
        self.bytes_sent += size
        return True

    def _take_held(self, after: bytes | bytearray | memoryview = b"") -> bytes:
        """The held bytes (then *after*) as one ``bytes``; nothing is held any more."""
        data = b"".join([*self._held, after])
        self._held.clear()
        self._held_size = 0
        return data

    @property
    def holding(self) -> bool:
        """Responses are held back (:meth:`hold`), waiting for the next write."""
        return bool(self._held)

    def on_idle_wait(self, hook: Callable[[], object]) -> None:
        """Call *hook* whenever :meth:`receive_later` is about to wait for the
        client (plain sockets only: elsewhere an idle connection costs more
        than the hook could save)."""
        if self._plain is not None:
            self._plain.before_wait = hook

    @property
    def is_plain(self) -> bool:
        """A plain socket (TCP or Unix) that :meth:`send_nowait` can write to."""
        return self._plain is not None

    def send_nowait(self, data: bytes | list[bytes]) -> int:
        """Write what of *data* (bytes, or a list written with ``writev``) fits now,
        without waiting, from any task.

        For a writer outside the connection's task while that task is parked
        and sends nothing (mhd2.fanout's direct delivery): only on a plain
        socket with nothing held or owed.  What is written counts as sent.

        Returns:
            Bytes written: all, some (the caller owes the rest: :meth:`owe`), or
            ``0`` (the socket buffer is full; or not a plain socket, or bytes
            are still owed: the caller leaves the writing to the task).

        Raises:
            trio.BrokenResourceError, trio.ClosedResourceError: the connection
                failed (``EPIPE``, ``ECONNRESET``) or was closed.
        """
        plain = self._plain
        if plain is None or self._held or self._closed:
            return 0
        fd = plain._fd  # (the fd property's check, without its two calls)
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

    def owe(self, rest: bytes) -> None:
        """The rest of what :meth:`send_nowait` began: written before any other byte.

        Unlike :meth:`hold` there is no limit (the caller bounds it: one
        batch of messages), and it counts as sent now.
        """
        self._held.append(rest)
        self._held_size += len(rest)
        self.bytes_sent += len(rest)

    async def flush(self) -> None:
        """Write the held responses now."""
        if self._held:
            await self.send(b"")  # send() writes the held bytes in front

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of *data*; every write that moves bytes re-arms the deadline.

        On a plain socket each partial ``write`` counts; on other streams
        (TLS, memory) each slice of :data:`SEND_SLICE` bytes does.

        The kernel reports a TCP socket writable only once much of its send
        buffer is free, so a slow but steady reader can drain it for longer
        than the timeout without a wake-up.  The wait therefore ends a moment
        before the deadline to try a write: if the reader took anything
        meanwhile, that is progress; if not, the deadline is let to pass.
        (The first write is made here, with no view and no helper coroutine:
        it is the path of every response, and usually the only write.)
        """
        if self.batch and self.hold(data):
            return
        self.arm()
        counted = 0  # held bytes were counted as sent when held
        if self._held:
            counted = self._held_size
            data = self._take_held(data)
        size = len(data)
        plain = self._plain
        if plain is not None:
            fd = plain.fd
            try:
                # Most responses fit the socket buffer: one write, no view.
                sent = os.write(fd, data) if size else 0
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                raise translate_error(exc) from exc
            if sent < size:
                if sent:  # progress on a partial write re-arms the deadline
                    self.arm()
                await self._send_rest(fd, data, sent)
            if size == 0:
                await trio.lowlevel.checkpoint()
        elif size <= SEND_SLICE:
            await self.stream.send_all(data)
        else:
            with memoryview(data) as view:
                for start in range(0, size, SEND_SLICE):
                    await self.stream.send_all(view[start:start + SEND_SLICE])
                    self.arm()
        self.bytes_sent += size - counted

    async def _send_rest(self, fd: int, data: bytes | bytearray | memoryview, sent: int) -> None:
        """Write *data* from offset *sent* on, waiting for the socket as needed."""
        size = len(data)
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
        plain = cast(PlainSocketStream, self._plain)
        deadline = self.scope.deadline
        plain.waiting += 1  # (close() wakes counted waiters)
        try:
            if tried_early or deadline == math.inf:
                await trio.lowlevel.wait_writable(fd)
                return False
            early = deadline - self._slack / 2
            with trio.move_on_at(early):
                await trio.lowlevel.wait_writable(fd)
        finally:
            plain.waiting -= 1
        return trio.current_time() >= early

    async def sendfile(self, fd: int, offset: int, count: int) -> int:
        """Send up to *count* bytes of *fd* from *offset* with ``os.sendfile``.

        Only when :attr:`can_sendfile`.  Each call that moves bytes re-arms
        (with the early retry of :meth:`send`).

        Returns:
            The bytes sent (``0`` at the end of the file).
        """
        if self._held:
            await self.flush()
        plain = cast(PlainSocketStream, self._plain)
        tried_early = False
        while True:
            sock_fd = plain.fd
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

    # -- for upgraded connections ----------------------------------------------------

    def receive_now(self, max_bytes: int) -> bytes | None:
        """Receive without blocking: the bytes there now, or ``None`` if none are.

        Only a plain socket can tell; on other streams this is always ``None``.
        """
        if self._plain is None:
            return None
        try:
            return os.read(self._plain.fd, max_bytes)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise translate_error(exc) from exc

    async def send_within(self, data: bytes | bytearray | memoryview,
                          timeout: float | None) -> int:
        """Send *data* with an inactivity limit of *timeout* seconds for this call.

        Every write that moves bytes re-arms the limit; ``0`` sends only what
        fits now; ``None`` waits as long as needed.  (The connection's own
        deadline is not involved: upgraded connections have none.)

        Returns:
            How many bytes were sent (fewer than all only when the limit hit).

        Raises:
            trio.TooSlowError: not a byte could be sent within *timeout*.
            trio.BrokenResourceError, trio.ClosedResourceError: the connection failed.
        """
        if self._held:
            await self.flush()
        view = memoryview(data).cast("B")
        total = view.nbytes
        with view:
            if self._plain is not None:
                sent = await self._send_plain_within(self._plain.fd, view, timeout)
            else:
                sent = await self._send_stream_within(view, timeout)
        if sent == 0 and total:
            raise trio.TooSlowError(f"nothing could be sent within {timeout} s")
        self.bytes_sent += sent
        return sent

    async def _send_plain_within(self, fd: int, view: memoryview, timeout: float | None) -> int:
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
            # tries to write again (see send() on the kernel's wake-ups).
            plain = cast(PlainSocketStream, self._plain)
            plain.waiting += 1  # (close() wakes counted waiters)
            try:
                with trio.move_on_at(deadline):
                    await trio.lowlevel.wait_writable(fd)
            finally:
                plain.waiting -= 1
        await trio.lowlevel.checkpoint()
        return sent

    async def _send_stream_within(self, view: memoryview, timeout: float | None) -> int:
        # A stream such as trio.SSLStream sends all or (when cancelled) leaves
        # itself broken.  With a timeout the data goes in pieces of one TLS
        # record (RFC 8446 §5.1: at most 2^14 bytes of plaintext), each with
        # its own deadline: a finished piece is progress, and the count
        # returned is that of the pieces sent whole.
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

    def set_cork(self, on: bool) -> bool:
        """Hold back partial packets (``TCP_CORK``) or push them out; plain TCP only.

        Returns:
            Whether the socket option was set.
        """
        cork = getattr(socket, "TCP_CORK", None)
        if self._plain is None or cork is None:
            return False
        try:
            self._plain.socket.setsockopt(socket.IPPROTO_TCP, cork, 1 if on else 0)
        except OSError:
            return False
        return True

    @property
    def fd(self) -> int:
        """The socket descriptor under the stream (through TLS), or ``-1``."""
        stream: object = self.stream
        for _ in range(4):
            sock = getattr(stream, "socket", None)
            if sock is not None:
                fileno = getattr(sock, "fileno", None)
                return int(fileno()) if callable(fileno) else -1
            stream = getattr(stream, "transport_stream", None)
            if stream is None:
                return -1
        return -1

    # -- endings ----------------------------------------------------------------------

    async def linger(self) -> None:
        """Half-close, then discard input for a while so the reply is not reset away."""
        with trio.move_on_after(LINGER_SECONDS):
            try:
                if self._held:
                    await self.flush()
                if isinstance(self.stream, trio.abc.HalfCloseableStream):
                    await self.stream.send_eof()
                got = 0
                while got < LINGER_MAX_BYTES:
                    data = await self.stream.receive_some(DRAIN_RECV_SIZE)
                    if not data:
                        break
                    got += len(data)
            except TransportError:
                pass

    async def close(self) -> None:
        """Close the stream, once.  Shielded and bounded: safe in a cancelled task."""
        if self._closed:
            return
        self._closed = True
        if self._plain is not None:
            if self._held:
                # Best effort, never blocking: what fits in the socket buffer.
                with contextlib.suppress(OSError):
                    os.write(self._plain.fd, self._take_held())
            self._plain.close()
            return
        with trio.CancelScope(shield=True):
            with trio.move_on_after(TLS_CLOSE_SECONDS) as closing:
                try:
                    if self._held:
                        await self.stream.send_all(self._take_held())
                    await self.stream.aclose()
                except TransportError:
                    pass
            if closing.cancelled_caught:
                await trio.aclose_forcefully(self.stream)


#: What a plain-HTTP request to a TLS port gets (as nginx's 497 and Caddy do,
#: but with a status every client knows), before the connection is closed.
PLAIN_HTTP_TO_TLS_REPLY: Final = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\nContent-Length: 73\r\n\r\n"
    b"This port speaks HTTPS: use an https:// URL (the request was plain HTTP)\n"
)


def send_last_words(sock: socket.socket, reply: bytes) -> None:
    """Send *reply* if it can go without blocking, then shut down the sending side.

    For the daemon's fixed answers before a connection is dropped (the 503 of
    a refusal, the 400 for plain HTTP on a TLS port); errors are ignored, the
    caller closes the socket.
    """
    try:
        sock.setblocking(False)
        sock.send(reply)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _answer_plain_http(sock: socket.socket) -> None:
    """OpenSSL saw a plain HTTP request: say so in plain HTTP (never blocks)."""
    send_last_words(sock, PLAIN_HTTP_TO_TLS_REPLY)
