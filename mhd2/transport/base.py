"""What every transport does, whatever its stream: the deadline, held bytes, the one close.

:class:`Transport` is the base of the three kinds (:mod:`.plain`, :mod:`.stream`,
:mod:`.tls`).  It owns the connection's inactivity deadline -- one
:class:`trio.CancelScope` per connection whose deadline moves as bytes move.
Every partial write re-arms it (a slow but steady reader is never cut), as
libmicrohttpd's connection timeout does; reads re-arm it where the protocol
layer says they count as progress (a trickled request head does not).  It
also holds small pipelined responses back to write them together, counts the
bytes sent, lingers before a close, and closes exactly once.

Where the kinds differ -- how bytes are written, whether a write can be made
without waiting, how the stream is closed -- the base calls a method that each
kind overrides; no method here asks what kind of stream it has.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, ClassVar

import trio

if TYPE_CHECKING:
    import ssl

__all__ = [
    "ARM_SLACK", "DRAIN_RECV_SIZE", "HOLD_LIMIT", "LINGER_MAX_BYTES", "LINGER_SECONDS",
    "Transport", "TransportError",
]

#: The inactivity deadline may lag real progress by this many seconds, so
#: that it is not moved on every read and write (moving it is not free).
ARM_SLACK = 1.0
#: At most this many bytes of responses are held back for one write (:meth:`Transport.hold`).
HOLD_LIMIT = 64 * 1024
#: After answering and half-closing, how long unread input is drained so the
#: client sees the answer instead of a reset (a "lingering close").
LINGER_SECONDS = 2.0
LINGER_MAX_BYTES = 1024 * 1024
DRAIN_RECV_SIZE = 64 * 1024

#: What a broken or closed connection raises from :meth:`Transport.receive`
#: and :meth:`Transport.send`.
TransportError = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


def _clock_reader() -> Callable[[], float]:
    """The run's clock's ``current_time``: ``trio.current_time()`` without its two
    lookups (the clock is the run's for its whole life; :meth:`Transport.arm`
    reads it twice per request).  Outside a run (a unit test), ``trio.current_time``."""
    try:
        return trio.lowlevel.current_clock().current_time
    except RuntimeError:
        return trio.current_time


class Transport:
    """A connection's stream, its inactivity deadline, and its one close.

    Not made directly: :func:`mhd2.transport.open_transport` picks the kind for
    a stream, :meth:`SocketTransport.over_socket
    <mhd2.transport.plain.SocketTransport.over_socket>` and
    :meth:`TLSTransport.over_tls <mhd2.transport.tls.TLSTransport.over_tls>`
    make one for an accepted socket.

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
        batch: set by the protocol layer while more pipelined responses will
            follow the one being sent: small sends are then held (:meth:`hold`).
        can_sendfile: :meth:`sendfile` may work on this kind of stream.

    Resource handling:
        :meth:`close` closes the stream exactly once, however often it is
        called, and never blocks for long (:meth:`_close_stream`).
    """

    __slots__ = (
        "_armed_at",
        "_closed",
        "_held",
        "_held_size",
        "_now",
        "_slack",
        "batch",
        "bytes_sent",
        "scope",
        "stream",
        "timeout",
    )

    can_sendfile: ClassVar[bool] = False

    def __init__(self, stream: trio.abc.Stream, timeout: float | None) -> None:
        self.stream = stream
        self.scope = trio.CancelScope()
        self.timeout = timeout
        self._armed_at = -math.inf
        self._slack = ARM_SLACK if timeout is None else min(ARM_SLACK, timeout / 8)
        self._now = _clock_reader()
        self._closed = False
        self.bytes_sent = 0
        # Responses held back while more pipelined requests are being served
        # (see hold()); written before any other I/O.
        self._held: list[bytes] = []
        self._held_size = 0
        self.batch = False

    # -- what a kind tells ---------------------------------------------------------

    @property
    def tls(self) -> ssl.SSLObject | None:
        """The TLS session after the handshake, or ``None`` when not TLS."""
        return None

    @property
    def is_plain(self) -> bool:
        """A plain socket (TCP or Unix) that :meth:`send_nowait` can write to."""
        return False

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

    # -- the deadline -----------------------------------------------------------

    def arm(self, *, force: bool = False) -> None:
        """Move the inactivity deadline to :attr:`timeout` seconds from now.

        Unless *force*, it is only moved when it was last set more than
        :data:`ARM_SLACK` seconds (or an eighth of the timeout) ago.
        """
        timeout = self.timeout
        if timeout is not None:
            now = self._now()
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

    # -- receiving -------------------------------------------------------------------

    async def receive(self, max_bytes: int) -> bytes:
        """Receive up to *max_bytes*; ``b""`` at end of input.  Does not re-arm.

        Held responses (:meth:`hold`) are written first.
        """
        if self._held:
            await self.flush()
        # (trio types it bytes | bytearray; no typing.cast(): it is a call)
        return await self.stream.receive_some(max_bytes)  # type: ignore[return-value]

    async def receive_later(self, max_bytes: int) -> bytes:
        """As :meth:`receive`, yielding to other tasks first (between requests).

        After a response the client's next request usually arrives while other
        connections are served: reading after a checkpoint then finds it.  (A
        kind without a cheaper way simply receives.)
        """
        if self._held:
            await self.flush()
        # (trio types it bytes | bytearray; no typing.cast(): it is a call)
        return await self.stream.receive_some(max_bytes)  # type: ignore[return-value]

    def receive_now(self, max_bytes: int) -> bytes | None:
        """Receive without blocking: the bytes there now, or ``None`` if none are.

        Only a plain socket can tell; on other streams this is always ``None``.
        """
        return None

    # -- holding back ---------------------------------------------------------------

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

    # -- sending -----------------------------------------------------------------------

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of *data*; every write that moves bytes re-arms the deadline.

        Held bytes go in front.  The kind writes what it can at once
        (:meth:`_write_now`: on a plain socket usually all of it, with no
        view and no coroutine) and the rest with :meth:`_write_rest`, whose
        every step of progress re-arms.
        """
        if self.batch and self.hold(data):
            return
        self.arm()
        counted = 0  # held bytes were counted as sent when held
        if self._held:
            counted = self._held_size
            data = self._take_held(data)
        size = len(data)
        sent = self._write_now(data)
        if sent < size or not size:
            await self._write_rest(data, sent)
        self.bytes_sent += size - counted

    def _write_now(self, data: bytes | bytearray | memoryview) -> int:
        """Write what of *data* goes without waiting; how many bytes did (none here)."""
        return 0

    def _write_rest(self, data: bytes | bytearray | memoryview, sent: int) -> Awaitable[None]:
        """Write *data* from offset *sent* on, re-arming on progress (a checkpoint if empty).

        Returns the awaitable that writes (a kind may hand back its stream's own
        ``send_all`` instead of wrapping it in one more coroutine).
        """
        raise NotImplementedError

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
        return 0

    async def sendfile(self, fd: int, offset: int, count: int) -> int:
        """Send up to *count* bytes of *fd* from *offset* with ``os.sendfile``.

        Only when :attr:`can_sendfile`.  Each call that moves bytes re-arms.

        Returns:
            The bytes sent (``0`` at the end of the file).
        """
        raise NotImplementedError("sendfile only where can_sendfile is true")

    def set_cork(self, on: bool) -> bool:
        """Hold back partial packets (``TCP_CORK``) or push them out; plain TCP only.

        Returns:
            Whether the socket option was set.
        """
        return False

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
            sent = await self._send_view_within(view, timeout)
        if sent == 0 and total:
            raise trio.TooSlowError(f"nothing could be sent within {timeout} s")
        self.bytes_sent += sent
        return sent

    async def _send_view_within(self, view: memoryview, timeout: float | None) -> int:
        """:meth:`send_within`'s writing: how many bytes of *view* went."""
        raise NotImplementedError

    # -- endings ----------------------------------------------------------------------

    async def linger(self) -> None:
        """Half-close, then discard input for a while so the reply is not reset away."""
        with trio.move_on_after(LINGER_SECONDS):
            try:
                if self._held:
                    await self.flush()
                await self._half_close()
                got = 0
                while got < LINGER_MAX_BYTES:
                    data = await self.stream.receive_some(DRAIN_RECV_SIZE)
                    if not data:
                        break
                    got += len(data)
            except TransportError:
                pass

    async def _half_close(self) -> None:
        """Stop sending, keep receiving (for :meth:`linger`), where the stream can."""

    async def close(self) -> None:
        """Close the stream, once.  Shielded and bounded: safe in a cancelled task.

        Held bytes are written first, as far as the kind can without a long wait.
        """
        if self._closed:
            return
        self._closed = True
        await self._close_stream()

    async def _close_stream(self) -> None:
        """Close the stream (called once, from :meth:`close`)."""
        raise NotImplementedError
