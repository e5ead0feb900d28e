"""RFC 8441: an upgraded HTTP/2 stream -- WebSocket (or any ``action_upgrade``) over a stream.

An extended CONNECT (``:method CONNECT``, ``:protocol websocket``) asks for a
tunnel on its own stream.  When the application answers it with
``action_upgrade`` (``action_websocket`` does), :func:`serve_upgrade` sends
a ``200`` HEADERS block without END_STREAM -- RFC 8441 §5: no ``101``, no
``Sec-WebSocket-Accept`` -- and runs the upgrade handler with an
:class:`~mhd2.UpgradeHandle` over a :class:`StreamTunnel`: the stream's DATA
frames carry the bytes both ways.

* **Flow control is the backpressure.**  Received DATA is acknowledged
  (``WINDOW_UPDATE``) only as the handler reads it; a send waits for the
  client's windows, its *timeout* an inactivity limit as over TCP.
* **Endings.**  RFC 8441 §7: "Orderly TCP-level closures are represented as
  END_STREAM flags; RST exceptions are represented with the RST_STREAM frame
  with the CANCEL error code" -- the client's END_STREAM reads as the end of
  input (``b""``), its ``RST_STREAM`` (or the end of the connection) as a
  broken connection; :meth:`StreamTunnel.send_eof` and
  :meth:`StreamTunnel.close` send END_STREAM.
* **Timeouts.**  As an upgraded HTTP/1 connection, the stream has no
  inactivity limit of its own once upgraded (the handler's calls carry
  theirs); the connection stays open while the handler runs.
* **Graceful stop.**  The handle's :meth:`~mhd2.UpgradeHandle.begin_stop` is
  called as for HTTP/1 (a WebSocket says 1001, or 1012 for mhd2.fanout).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Protocol

import trio
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError

from .._date import date_header_line
from ..enums import RequestEndedCode
from ..upgrade import UpgradeHandle, run_upgrade_handler
from .checks import strip_response_fields

if TYPE_CHECKING:
    from ..actions import UpgradeAction
    from ..exchange import Exchange
    from .port import StreamPort

__all__ = ["LINGER_SECONDS", "StreamTunnel", "TunnelStream", "serve_upgrade"]

logger = logging.getLogger("mhd2")

#: Queue at most this many bytes of one send before waiting for the writer.
FLUSH_BYTES = 64 * 1024
#: After the handler has ended its side (END_STREAM), wait at most this long
#: for the client's END_STREAM (reading and discarding what still comes), then
#: reset the stream (``RST_STREAM(NO_ERROR)``, RFC 9113 §8.1).
LINGER_SECONDS = 2.0
_RECV_SIZE = 65536


class TunnelStream(Protocol):
    """What a tunnel uses of its stream (:class:`~mhd2.http2.stream.H2Stream`), and
    through it of the connection (its :class:`~mhd2.http2.port.StreamPort`): a
    protocol, so that the tunnel depends on no more of them than this."""

    id: int
    exchange: Exchange
    scope: trio.CancelScope
    gone: trio.Event
    body_ended: bool
    closed_local: bool
    body_sent: int
    upgraded: UpgradeHandle | None
    _pieces: list[tuple[bytes, int]]
    _data_event: trio.Event
    _window_event: trio.Event

    @property
    def port(self) -> StreamPort:
        """The connection carrying the stream, as streams see it."""
        ...

    async def send_headers(self, headers: list[tuple[bytes, bytes]], *, end: bool,
                           final: bool = True, flush: bool = True) -> None:
        """Send a HEADERS block."""
        ...

    def reset(self, code: ErrorCodes) -> None:
        """Send RST_STREAM (once)."""
        ...


class StreamTunnel(trio.abc.HalfCloseableStream):
    """The bytes of one upgraded HTTP/2 stream, as the upgraded handle needs them.

    Implements :class:`~mhd2.upgrade.UpgradedPipe` (what
    :class:`~mhd2.UpgradeHandle` uses of a transport) and, through it, trio's
    half-closeable stream.

    Args:
        stream: the HTTP/2 stream (its response HEADERS sent, no END_STREAM).

    Error handling:
        ``trio.BrokenResourceError`` once the client reset the stream or the
        connection ended; ``trio.ClosedResourceError`` after :meth:`close`.
    """

    def __init__(self, stream: TunnelStream) -> None:
        self._s = stream
        self._closed = False
        #: The trio stream under the handle: the tunnel itself.
        self.stream: trio.abc.Stream = self
        self.bytes_sent = 0
        self.bytes_received = 0

    # -- receiving -------------------------------------------------------------------

    def receive_now(self, max_bytes: int) -> bytes | None:
        """The bytes there now (acknowledged to the client as consumed), ``b""`` once
        the client ended its side, or ``None`` when nothing is there yet.

        Raises:
            trio.ClosedResourceError: the tunnel was closed.
            trio.BrokenResourceError: the client reset the stream (or the
                connection ended).
        """
        if self._closed:
            raise trio.ClosedResourceError("the upgraded stream was closed")
        s = self._s
        pieces = s._pieces
        while pieces:
            out: list[bytes] = []
            taken = flow = 0
            while pieces and taken < max_bytes:
                data, size = pieces[0]
                room = max_bytes - taken
                if len(data) <= room:
                    del pieces[0]
                    out.append(data)
                    taken += len(data)
                    flow += size
                else:
                    # The rest stays (its flow-controlled length with it: padding
                    # is acknowledged with the last part).
                    out.append(data[:room])
                    pieces[0] = (data[room:], size - room)
                    taken += room
                    flow += room
            if flow:
                # Consumed: the client may send as much again (h2 batches the
                # WINDOW_UPDATE frames: one per half a window).
                s.port.acknowledge(s.id, flow)
            if taken:
                self.bytes_received += taken
                return b"".join(out)
        if s.gone.is_set():
            raise trio.BrokenResourceError("the client reset the stream, or the connection ended")
        if s.body_ended:
            return b""
        return None

    async def receive_later(self, max_bytes: int) -> bytes:
        """Receive up to *max_bytes*, waiting for them; ``b""`` at the client's END_STREAM."""
        s = self._s
        while True:
            await trio.lowlevel.checkpoint_if_cancelled()
            data = self.receive_now(max_bytes)
            if data is not None:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return data
            s._data_event = trio.Event()
            await s._data_event.wait()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """trio's stream API: :meth:`receive_later`."""
        return await self.receive_later(max_bytes or _RECV_SIZE)

    # -- sending ----------------------------------------------------------------------

    def _check_send(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the upgraded stream was closed")
        s = self._s
        if s.gone.is_set() or s.port.ending or s.closed_local:
            raise trio.BrokenResourceError("the stream was reset or ended, or the connection ended")

    def _window(self) -> int:
        """How many bytes one DATA frame may carry now (0: a window is closed)."""
        s = self._s
        try:
            return s.port.engine.room(s.id)
        except (ProtocolError, KeyError) as exc:
            raise trio.BrokenResourceError("the stream is closed") from exc

    async def send_within(self, data: bytes | bytearray | memoryview,
                          timeout: float | None) -> int:
        """Send *data* as DATA frames within the client's windows.

        *timeout* is an inactivity limit: every frame queued re-arms it; ``0``
        sends what the windows take now (without waiting for the write);
        ``None`` waits as long as needed.

        Returns:
            How many bytes were sent (fewer than all only when the limit hit).

        Raises:
            trio.TooSlowError: not a byte could be sent within *timeout*.
            trio.BrokenResourceError, trio.ClosedResourceError: as the class says.
        """
        s = self._s
        port = s.port
        engine = port.engine
        deadline = math.inf if not timeout else trio.current_time() + timeout
        with memoryview(data) as raw, raw.cast("B") as view:
            total = view.nbytes
            pos = queued = 0
            while pos < total:
                self._check_send()
                room = self._window()
                if room <= 0:
                    if queued and timeout != 0:
                        await port.flushed()
                        queued = 0
                        continue
                    if timeout == 0 or trio.current_time() >= deadline:
                        break
                    s._window_event = trio.Event()
                    with trio.move_on_at(deadline):
                        await s._window_event.wait()
                    continue
                n = min(total - pos, room)
                try:
                    engine.send_data(s.id, bytes(view[pos:pos + n]))
                except ProtocolError as exc:
                    raise trio.BrokenResourceError("the stream is closed") from exc
                pos += n
                queued += n
                if timeout:
                    deadline = trio.current_time() + timeout  # progress re-arms
                if queued >= FLUSH_BYTES and timeout != 0:
                    await port.flushed()
                    queued = 0
        if queued:
            if timeout == 0:
                # (Never waits: also used in a cancelled task's last words.)
                port.wake_writer()
            else:
                await port.flushed()
        else:
            await trio.lowlevel.checkpoint()
        if pos == 0 and total:
            raise trio.TooSlowError(f"nothing could be sent within {timeout} s")
        self.bytes_sent += pos
        s.body_sent += pos
        return pos

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """trio's stream API: send everything, waiting as long as needed."""
        await self.send_within(data, None)

    def send_nowait(self, data: bytes | list[bytes]) -> int:
        """Direct writes from another task are for plain sockets only: always ``0``
        (the caller leaves the writing to the handler's task)."""
        return 0

    async def wait_send_all_might_not_block(self) -> None:
        """Wait until the client's windows take at least a byte."""
        s = self._s
        while True:
            self._check_send()
            if self._window() > 0:
                await trio.lowlevel.checkpoint()
                return
            s._window_event = trio.Event()
            await s._window_event.wait()

    def set_cork(self, on: bool) -> bool:
        """No ``TCP_CORK`` for a stream: ``False``."""
        return False

    @property
    def fd(self) -> int:
        """No socket of its own: ``-1``."""
        return -1

    @property
    def is_plain(self) -> bool:
        """Never: its bytes travel in the connection's DATA frames."""
        return False

    # -- endings -------------------------------------------------------------------------

    def _end_stream(self) -> None:
        """END_STREAM, once (RFC 8441 §7: an orderly close)."""
        s = self._s
        if s.closed_local or s.gone.is_set() or s.port.ending:
            return
        s.closed_local = True
        try:
            s.port.engine.end_stream(s.id)
        except ProtocolError:
            return
        s.port.wake_writer()

    async def send_eof(self) -> None:
        """Shut down the sending side: END_STREAM (the client's side stays open)."""
        if self._closed:
            raise trio.ClosedResourceError("the upgraded stream was closed")
        self._end_stream()
        await trio.lowlevel.checkpoint()

    async def close(self) -> None:
        """End the server's side (END_STREAM), once; receives and sends then raise
        ``trio.ClosedResourceError``.  Never waits (safe in a cancelled task)."""
        if self._closed:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        self._closed = True
        self._end_stream()
        s = self._s
        s._data_event.set()
        s._window_event.set()
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def aclose(self) -> None:
        """trio's stream API: :meth:`close`."""
        await self.close()

    async def linger(self) -> None:
        """After the handler: wait (at most :data:`LINGER_SECONDS`) for the client's
        END_STREAM, discarding (and acknowledging) what it still sends."""
        s = self._s
        with trio.move_on_after(LINGER_SECONDS):
            while not s.body_ended and not s.gone.is_set():
                if s._pieces:
                    flow = sum(p[1] for p in s._pieces)
                    s._pieces.clear()
                    s.port.acknowledge(s.id, flow)
                    continue
                s._data_event = trio.Event()
                await s._data_event.wait()


async def serve_upgrade(stream: TunnelStream, action: UpgradeAction) -> RequestEndedCode:
    """Answer an extended CONNECT with ``200`` and run the upgrade handler over the stream.

    RFC 8441 §5: "the server ... replies with a 2xx status code" and "The
    Sec-WebSocket-Accept header field is not used"; the request ends
    (``COMPLETED_OK_UPGRADE``) when the ``200`` has left, as the ``101`` of
    HTTP/1.1.  A ``2xx`` response to CONNECT carries no ``Content-Length``
    (RFC 9110 §9.3.6: "A server MUST NOT send any Transfer-Encoding or
    Content-Length header fields in a 2xx (Successful) response to CONNECT").

    Returns:
        ``COMPLETED_OK_UPGRADE`` (already reported when the handler started).
    """
    exchange = stream.exchange
    request = exchange.request
    shared = stream.port.shared
    headers = [(b":status", b"200")]
    headers.extend((name.encode("latin-1"), value.encode("latin-1"))
                   for name, value in strip_response_fields(action.headers))
    if not shared.options.suppress_date_header:
        headers.append((b"date", date_header_line()[6:-2]))
    exchange.head_sent(200)
    await stream.send_headers(headers, end=False)
    code = RequestEndedCode.COMPLETED_OK_UPGRADE
    exchange.end(code)
    # Upgraded connections have no inactivity limit (MHD2): the handler's
    # calls carry theirs.
    stream.scope.deadline = math.inf
    tunnel = StreamTunnel(stream)
    handle = UpgradeHandle(tunnel, b"", request)
    stream.upgraded = handle  # told when a graceful stop begins
    try:
        await run_upgrade_handler(shared, action, request, handle)
    finally:
        await tunnel.close()
    if not stream.body_ended and not stream.gone.is_set():
        await tunnel.linger()
        if not stream.body_ended and not stream.gone.is_set():
            # The client did not end its side: RST_STREAM(CANCEL), RFC 8441 §7's
            # exception.
            stream.reset(ErrorCodes.CANCEL)
            stream.body_ended = True
    return code
