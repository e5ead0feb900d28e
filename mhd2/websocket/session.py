"""A WebSocket connection over an upgraded handle, with wsproto inside (what handlers get).

How it ends (:class:`CloseReason`, :class:`ConnectionClosed`, the daemon's
close reasons) is :mod:`mhd2.websocket.closing`; the frame heads it writes
itself, :mod:`mhd2.websocket.frames` (both re-exported here).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio
from wsproto.connection import Connection, ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from ..errors import UpgradedError
from ..upgrade import UpgradeHandle
from .closing import (
    CLOSE_TIMEOUT,
    CloseReason,
    ConnectionClosed,
    drain_peer,
    end_sending,
    fixed_reason,
)
from .frames import frame_header

__all__ = [
    "CLOSE_TIMEOUT",
    "FRAGMENT_OVERHEAD",
    "MAX_FRAGMENTS",
    "CloseReason",
    "ConnectionClosed",
    "WebSocket",
    "frame_header",
]

logger = logging.getLogger("mhd2")

_RECV_SIZE = 65536
#: Default most frames (first frame and continuations) one message may have.
MAX_FRAGMENTS = 1 << 17
#: What each continuation frame costs against ``max_message_size`` besides its
#: payload (its header and bookkeeping), so that empty fragments are not free.
FRAGMENT_OVERHEAD = 16
#: Received frames handled between two checkpoints (other tasks get to run).
_CHECKPOINT_EVERY = 128

class WebSocket:
    """One server-side WebSocket connection, handed to the handler of :func:`action_websocket`.

    Attributes:
        request: the request that was upgraded.
        subprotocol: the negotiated ``Sec-WebSocket-Protocol`` or ``None``.
        closed: ``None`` while open, then the :class:`CloseReason`.

    One task may :meth:`receive` at a time; any number of tasks may
    :meth:`send` (frames are never interleaved).  Pings are answered and
    pongs noted while a task receives.

    When the daemon's graceful stop begins, the server sends a close frame
    with ``1001`` (going away) at once: :attr:`stopping` turns true, sends
    raise :class:`ConnectionClosed`, and :meth:`receive` raises it when the
    peer answers (or when the grace period ends).
    """

    def __init__(self, urh: UpgradeHandle, conn: Connection, subprotocol: str | None,
                 max_message_size: int, *, compressed: bool = False,
                 max_fragments: int = MAX_FRAGMENTS) -> None:
        self.request = urh.request
        self.subprotocol = subprotocol
        self.closed: CloseReason | None = None
        self._urh = urh
        self._conn = conn
        self._max = max_message_size
        self._max_fragments = max_fragments
        self._send_lock = trio.Lock()
        self._receiving = False
        # A close() waiting for the peer's close frame reads the connection
        # itself; a receive() meanwhile waits for it to finish.
        self._draining = False
        # After a failure (RFC 6455 §7.1.7) no received byte is parsed again.
        self._failed = False
        self._defer_linger = False  # (action_websocket: drain after the handler, see _fail)
        self._linger_owed = False
        # The message being received in fragments.
        self._parts: list[Any] = []
        self._size = 0
        self._frames = 0
        self._in_message = False
        self._uncheckpointed = 0  # frames handled since the last checkpoint
        self._close_seen = trio.Event()
        self._pong_seen = trio.Event()
        # Without an extension a data frame is just a header and the payload:
        # it is framed here instead of by wsproto (whose send path costs more
        # than the rest of an echo).  Control frames still go through wsproto.
        self._plain_frames = not compressed
        #: The close code sent when the daemon's graceful stop begins (1001;
        #: mhd2.fanout's subscribers say 1012, "service restart": reconnect).
        self._stop_code = 1001
        # _receive(wakeable=True) (mhd2.fanout): a _wake() makes it return
        # None while it waits for bytes (the only point where stopping the
        # wait loses nothing).
        self._wake_scope: trio.CancelScope | None = None
        self._woken = False
        #: The rest of a frame that _send_prebuilt_nowait began: it goes out
        #: before any other byte (the task sends it).
        self._owed: bytes | None = None

    # -- public API ---------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """Whether the daemon is stopping (its close frame with 1001 is on its way)."""
        return self._urh.stopping

    async def receive(self) -> str | bytes:
        """The next message: ``str`` for text, ``bytes`` for binary (fragments joined).

        Raises:
            ConnectionClosed: the connection is closed (by either side, by a
                protocol error, or because the peer vanished: code 1006).
            trio.BusyResourceError: another task is already receiving.
        """
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this WebSocket")
        self._receiving = True
        try:
            if self._draining:
                # A close() is reading until the peer's close frame.
                await self._close_seen.wait()
                raise ConnectionClosed(self.closed or CloseReason(1006, "connection lost"))
            message = await self._receive()
            assert message is not None  # only a wakeable receive returns None
            return message
        finally:
            self._receiving = False

    async def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send a text (``str``) or binary message; waits while the peer does not read.

        Raises:
            ConnectionClosed: the connection is closed or closing.
        """
        if self._plain_frames:
            if isinstance(message, str):
                await self._send_frame(0x81, message.encode("utf-8"))
            else:
                await self._send_frame(0x82, message)
            return
        if isinstance(message, str):
            event: Any = TextMessage(data=message)
        else:
            event = BytesMessage(data=bytes(message))
        await self._send_event(event)

    async def _send_frame(self, first_byte: int, payload: bytes | bytearray | memoryview) -> None:
        """Send one unfragmented, unmasked data frame (RFC 6455 §5.2)."""
        if self.closed is not None or self._conn.state is not ConnectionState.OPEN:
            raise ConnectionClosed(self.closed or CloseReason(1000, "closing"))
        length = len(payload)
        header = frame_header(first_byte, length)
        if length < 16384:
            await self._send_locked(lambda: (header + payload,))
        else:
            await self._send_locked(lambda: (header, payload))

    async def ping(self, payload: bytes = b"") -> None:
        """Send a ping (at most 125 bytes of *payload*); the pong is noted while receiving."""
        if len(payload) > 125:
            raise ValueError("a ping carries at most 125 bytes")
        await self._send_event(Ping(payload=bytes(payload)))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start (or finish) the close handshake and close the connection.

        Waits up to :data:`CLOSE_TIMEOUT` seconds for the peer's close frame.
        Does nothing when already closed.
        """
        if self.closed is not None:
            await trio.lowlevel.checkpoint()
            return
        if self._conn.state is ConnectionState.OPEN:
            sent = await self._send_close(code, reason)
            if not sent:
                return
        with trio.move_on_after(CLOSE_TIMEOUT):
            if self._receiving or self._draining:
                # The reading task sees the answer.
                await self._close_seen.wait()
            else:
                self._draining = True
                try:
                    while True:
                        await self._receive()
                except ConnectionClosed:
                    pass
                finally:
                    self._draining = False
        self._finish(CloseReason(code, reason))
        await self._shutdown()

    # -- internals ----------------------------------------------------------------------

    def _reset_message(self) -> None:
        self._parts = []
        self._size = 0
        self._frames = 0
        self._in_message = False

    def _finish(self, reason: CloseReason) -> None:
        """Record why the connection closed (the first reason wins); wake who waits."""
        if self.closed is None:
            self.closed = reason
        self._close_seen.set()

    async def _too_big(self, what: str) -> None:
        logger.debug("mhd2: WebSocket message from %s too big: %s",
                     self.request.client_address, what)
        await self._fail(1009)

    def _wake(self) -> None:
        """Make a ``_receive(wakeable=True)`` return ``None`` (now if it waits for
        bytes, else the next time it would)."""
        scope = self._wake_scope
        if scope is not None:
            scope.cancel()
            self._wake_scope = None  # woken: no direct write until it waits again
        else:
            self._woken = True

    async def _receive_or_wake(self) -> str | bytes | None:
        """As :meth:`receive`, but ``None`` when :meth:`_wake` is called meanwhile."""
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this WebSocket")
        if self._owed is not None:
            # The rest of a frame written directly leaves before the task
            # waits (nothing is owed while it waits: see _send_prebuilt_nowait).
            await self._send_locked(lambda: ())
        self._receiving = True
        try:
            return await self._receive(wakeable=True)
        finally:
            self._receiving = False

    async def _send_prebuilt(self, frame: bytes) -> None:
        """Send one whole unmasked data frame built elsewhere (once for many
        connections: mhd2.fanout); only without extensions."""
        if self.closed is not None or self._conn.state is not ConnectionState.OPEN:
            raise ConnectionClosed(self.closed or CloseReason(1000, "closing"))
        await self._send_locked(lambda: (frame,))

    def _send_prebuilt_nowait(self, frame: bytes) -> int:
        """Direct delivery (mhd2.fanout): write a whole prebuilt frame from another
        task while this WebSocket's task waits in :meth:`_receive_or_wake`.

        Only then -- nothing is being sent (the send lock is free), nothing is
        owed, the connection is open, on a plain socket -- can bytes written
        from outside not interleave with the task's own frames.

        Returns:
            ``1``: the frame was written; ``2``: part of it was, the rest is
            owed (the caller wakes the task, which sends it before anything
            else); ``0``: nothing was written (not now: wake the task), or the
            connection broke (it is closed: the woken task ends).
        """
        if (self._wake_scope is None or self._send_lock.locked() or self._owed is not None
                or self.closed is not None or self._conn.state is not ConnectionState.OPEN
                or not self._plain_frames):
            return 0
        try:
            sent = self._urh._send_nowait(frame)
        except UpgradedError as exc:
            self._finish(CloseReason(1006, f"the connection broke: {exc}"))
            return 0
        if sent == len(frame):
            return 1
        if sent == 0:
            return 0
        self._owed = frame[sent:]
        return 2

    async def _receive(self, wakeable: bool = False) -> str | bytes | None:
        conn = self._conn
        while True:
            if self.closed is not None or self._failed:
                raise ConnectionClosed(self.closed or CloseReason(1006, "connection failed"))
            event: Any
            for event in conn.events():
                self._uncheckpointed += 1
                if self._uncheckpointed >= _CHECKPOINT_EVERY:
                    # A client sending many tiny frames must not starve the
                    # other connections: let them run every so many frames
                    # (also across receive() calls that return at once).
                    self._uncheckpointed = 0
                    await trio.lowlevel.checkpoint()
                kind = type(event)
                if kind is TextMessage or kind is BytesMessage:
                    data = event.data
                    if event.message_finished and not self._in_message:
                        if len(data) > self._max:
                            await self._too_big(f"{len(data)} bytes")
                            break
                        return data  # type: ignore[no-any-return]
                    self._in_message = True
                    self._size += len(data)
                    if event.frame_finished:
                        # Every frame of a fragmented message counts: its
                        # payload and, for a continuation, its overhead.
                        self._frames += 1
                        if self._frames > 1:
                            self._size += FRAGMENT_OVERHEAD
                        if self._frames > self._max_fragments:
                            await self._too_big(f"more than {self._max_fragments} fragments")
                            break
                    if self._size > self._max:
                        await self._too_big(f"{self._size} bytes in {self._frames} frames")
                        break
                    if data:
                        self._parts.append(data)
                    if event.message_finished:
                        parts = self._parts
                        self._reset_message()
                        return ("" if kind is TextMessage else b"").join(parts)
                elif kind is Ping:
                    if conn.state is ConnectionState.OPEN:
                        await self._send_event(event.response(), quiet=True)
                elif kind is Pong:
                    self._pong_seen.set()
                elif kind is CloseConnection:
                    await self._on_close(event)
                    break
            else:
                if wakeable and self._woken:
                    self._woken = False
                    return None
                try:
                    if wakeable:
                        with trio.CancelScope() as scope:
                            self._wake_scope = scope
                            try:
                                data = await self._urh.upgraded_recv(_RECV_SIZE)
                            finally:
                                self._wake_scope = None
                        if scope.cancelled_caught:
                            self._woken = False
                            return None
                    else:
                        data = await self._urh.upgraded_recv(_RECV_SIZE)
                except UpgradedError as exc:
                    self._finish(CloseReason(1006, f"the connection broke: {exc}"))
                    continue
                self._uncheckpointed = 0  # receiving was a checkpoint
                if not data:
                    if conn.state is ConnectionState.CLOSED:
                        self._finish(CloseReason(1006, "connection lost"))
                        continue
                    conn.receive_data(None)
                    for _ in conn.events():
                        pass
                    self._finish(CloseReason(
                        1006, "the peer closed the connection without a close frame"))
                    await self._shutdown()
                    continue
                conn.receive_data(data)

    async def _on_close(self, event: CloseConnection) -> None:
        conn = self._conn
        if conn.state is ConnectionState.REMOTE_CLOSING:
            # The peer closes: answer with its code (RFC 6455 §5.5.1).
            self.closed = CloseReason(event.code, event.reason or "")
            try:
                await self._write(conn.send(event.response()))
            except ConnectionClosed:
                pass
            self._close_seen.set()
            await self._shutdown()
        elif conn.state is ConnectionState.CLOSED:
            # The answer to our close frame.
            self._finish(CloseReason(event.code, event.reason or ""))
            await self._shutdown()
        else:
            # A protocol error found by wsproto (state still OPEN): its
            # message (codec text, parser detail) goes to the log only.
            logger.debug("mhd2: WebSocket protocol error from %s (%s): %s",
                         self.request.client_address, int(event.code), event.reason)
            await self._fail(int(event.code))

    async def _fail(self, code: int) -> None:
        """_Fail the WebSocket Connection_ (RFC 6455 §7.1.7) with *code*.

        "An endpoint MUST NOT continue to attempt to process data (including
        a responding Close frame) from the remote endpoint after being
        instructed to _Fail the WebSocket Connection_."  So: send the close
        frame, signal the end (FIN), then drain the peer (:meth:`_linger`) --
        at once, or once action_websocket's handler has returned.
        """
        self._failed = True
        reason = fixed_reason(code)
        self._reset_message()
        with trio.move_on_after(CLOSE_TIMEOUT) as timer:
            if self._conn.state is ConnectionState.OPEN:
                await self._send_close(code, reason)
            self._finish(CloseReason(code, reason))
            await end_sending(self._urh)
        self._finish(CloseReason(code, reason))
        if self._defer_linger and not timer.cancelled_caught:
            self._linger_owed = True
        else:
            # (on time out, a send stuck on a peer that does not read held the
            # close frame back: closing now also ends that send)
            await self._linger()

    async def _linger(self) -> None:
        """After a failure: :func:`~.closing.drain_peer`, then close."""
        self._linger_owed = False
        await drain_peer(self._urh)
        await self._shutdown()

    async def _send_close(self, code: int, reason: str) -> bool:
        try:
            await self._send_event(CloseConnection(code=code, reason=reason or None), quiet=True)
        except ConnectionClosed:
            return False
        return True

    async def _send_event(self, event: Any, quiet: bool = False) -> None:
        if self.closed is not None or (self._conn.state is not ConnectionState.OPEN and not quiet):
            raise ConnectionClosed(self.closed or CloseReason(1000, "closing"))
        await self._send_locked(lambda: (self._serialize(event),))

    def _serialize(self, event: Any) -> bytes:
        try:
            return self._conn.send(event)
        except Exception as exc:  # wsproto: not allowed in this state
            raise ConnectionClosed(self.closed or CloseReason(1000, "closing")) from exc

    async def _send_locked(
        self, produce: Callable[[], tuple[bytes | bytearray | memoryview, ...]]
    ) -> None:
        """Write what *produce* returns, holding the send lock (frames never interleave).

        *produce* runs under the lock, so frames leave in the order wsproto
        made them.
        """
        lock = self._send_lock
        if lock.locked():
            await lock.acquire()
        else:
            lock.acquire_nowait()  # the write below is the checkpoint
        try:
            owed = self._owed
            if owed is not None:
                # A frame begun by _send_prebuilt_nowait is finished first.
                self._owed = None
                await self._write(owed)
            if self.closed is not None:
                raise ConnectionClosed(self.closed)
            for chunk in produce():
                await self._write(chunk)
        finally:
            lock.release()

    async def _write(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self._urh.upgraded_send(data)
        except UpgradedError as exc:
            self._finish(CloseReason(1006, f"the connection broke: {exc}"))
            raise ConnectionClosed(self.closed or CloseReason(1006, "connection lost")) from exc

    async def _shutdown(self) -> None:
        if not self._urh.closed:
            await self._urh.aclose()

    async def _abort(self) -> None:
        """Cancelled (the grace period of a stop is over): close now, never wait (a close
        frame with 1001, or the stop code, only if the socket takes it at once)."""
        self._linger_owed = False  # (closing now: no time to drain)
        with trio.CancelScope(shield=True):
            if (self.closed is None and self._conn.state is ConnectionState.OPEN
                    and not self._send_lock.locked() and self._owed is None):
                try:
                    frame = self._conn.send(CloseConnection(code=self._stop_code,
                                                            reason=fixed_reason(self._stop_code)))
                    await self._urh.upgraded_send(frame, timeout=0)
                except Exception:
                    pass
            self._finish(CloseReason(self._stop_code, fixed_reason(self._stop_code)))
            await self._shutdown()

    async def _watch_stop(self) -> None:
        """Close with 1001 (going away; or the stop code) as soon as the daemon's graceful stop begins."""
        await self._urh.wait_stopping()
        if self.closed is None and self._conn.state is ConnectionState.OPEN:
            # "1001 indicates that an endpoint is "going away", such as a
            # server going down" (RFC 6455 §7.4.1); 1012 "service restart"
            # (IANA registry) tells a fan-out client to reconnect.
            await self.close(self._stop_code, fixed_reason(self._stop_code))
