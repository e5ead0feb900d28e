"""``action_websocket``: a WebSocket over an upgraded connection, with wsproto inside."""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason as _WsCode
from wsproto.frame_protocol import FrameDecoder, FrameProtocol

from ..actions import Action, action_from_response, action_upgrade
from ..errors import UpgradedError
from ..request import Request
from ..response import Response
from ..upgrade import UpgradeHandle
from .handshake import (
    check_connection_header,
    check_http_version,
    check_upgrade_header,
    check_version_header,
    create_accept_header,
)

__all__ = ["CloseReason", "ConnectionClosed", "WebSocket", "action_websocket"]

logger = logging.getLogger("mhd2")

_RECV_SIZE = 65536
#: Seconds to wait for the peer's close frame (and its end of the connection).
CLOSE_TIMEOUT = 5.0


class CloseReason:
    """Why a WebSocket closed: the close *code* (RFC 6455 §7.4) and *reason* text.

    ``1006`` (abnormal closure) means the connection ended without a close frame.
    """

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str = "") -> None:
        self.code = code
        self.reason = reason

    def __repr__(self) -> str:
        return f"CloseReason(code={self.code}, reason={self.reason!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CloseReason):
            return NotImplemented
        return (self.code, self.reason) == (other.code, other.reason)

    def __hash__(self) -> int:
        return hash((self.code, self.reason))


class ConnectionClosed(Exception):
    """The WebSocket is closed; :attr:`reason` is its :class:`CloseReason`."""

    def __init__(self, reason: CloseReason) -> None:
        super().__init__(f"the WebSocket is closed: {reason.code} {reason.reason}".rstrip())
        self.reason = reason


class _BoundedDeflate(PerMessageDeflate):
    """permessage-deflate whose inflation stops at *max_message_size* (no decompression bombs)."""

    def __init__(self, max_message_size: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_message_size = max_message_size
        self._produced = 0

    def frame_inbound_header(self, proto: FrameDecoder | FrameProtocol, opcode: Any, rsv: Any,
                             payload_length: int) -> Any:
        if self._inbound_compressed is None:
            self._produced = 0  # a new message
        return super().frame_inbound_header(proto, opcode, rsv, payload_length)

    def frame_inbound_payload_data(self, proto: FrameDecoder | FrameProtocol,
                                   data: bytes) -> bytes | _WsCode:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        assert self._decompressor is not None
        return self._inflate(data)

    def _inflate(self, data: bytes) -> bytes | _WsCode:
        assert self._decompressor is not None
        room = self.max_message_size - self._produced
        try:
            out = self._decompressor.decompress(data, room + 1)
        except zlib.error:
            return _WsCode.INVALID_FRAME_PAYLOAD_DATA
        self._produced += len(out)
        if len(out) > room:
            return _WsCode.MESSAGE_TOO_BIG
        return out

    def frame_inbound_complete(self, proto: FrameDecoder | FrameProtocol,
                               fin: bool) -> bytes | _WsCode | None:
        if not fin or not self._inbound_is_compressible or not self._inbound_compressed:
            return super().frame_inbound_complete(proto, fin)
        out = self._inflate(b"\x00\x00\xff\xff")
        if isinstance(out, _WsCode):
            return out
        if self.client_no_context_takeover:
            self._decompressor = None
        self._inbound_compressed = None
        return out


class WebSocket:
    """One server-side WebSocket connection, handed to the handler of :func:`action_websocket`.

    Attributes:
        request: the request that was upgraded.
        subprotocol: the negotiated ``Sec-WebSocket-Protocol`` or ``None``.
        closed: ``None`` while open, then the :class:`CloseReason`.

    One task may :meth:`receive` at a time; any number of tasks may
    :meth:`send` (frames are never interleaved).  Pings are answered and
    pongs noted while a task receives.
    """

    def __init__(self, urh: UpgradeHandle, conn: Connection, subprotocol: str | None,
                 max_message_size: int, *, compressed: bool = False) -> None:
        self.request = urh.request
        self.subprotocol = subprotocol
        self.closed: CloseReason | None = None
        self._urh = urh
        self._conn = conn
        self._max = max_message_size
        self._send_lock = trio.Lock()
        self._receiving = False
        self._parts: list[Any] = []
        self._size = 0
        self._close_seen = trio.Event()
        self._pong_seen = trio.Event()
        # Without an extension a data frame is just a header and the payload:
        # it is framed here instead of by wsproto (whose send path costs more
        # than the rest of an echo).  Control frames still go through wsproto.
        self._plain_frames = not compressed

    # -- public API ---------------------------------------------------------------------

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
            return await self._receive()
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
        # "The length of the Payload data, in bytes: if 0-125, that is the
        # payload length.  If 126, the following 2 bytes interpreted as a
        # 16-bit unsigned integer are the payload length.  If 127, the
        # following 8 bytes interpreted as a 64-bit unsigned integer".
        if length < 126:
            header = bytes((first_byte, length))
        elif length < 65536:
            header = bytes((first_byte, 126)) + length.to_bytes(2, "big")
        else:
            header = bytes((first_byte, 127)) + length.to_bytes(8, "big")
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
        if self._receiving:
            # The receiving task sees the answer.
            with trio.move_on_after(CLOSE_TIMEOUT):
                await self._close_seen.wait()
        else:
            with trio.move_on_after(CLOSE_TIMEOUT):
                try:
                    while True:
                        await self._receive()
                except ConnectionClosed:
                    pass
        if self.closed is None:
            self.closed = CloseReason(code, reason)
        await self._shutdown()

    # -- internals ----------------------------------------------------------------------

    async def _receive(self) -> str | bytes:
        conn = self._conn
        while True:
            if self.closed is not None:
                raise ConnectionClosed(self.closed)
            event: Any
            for event in conn.events():
                kind = type(event)
                if kind is TextMessage or kind is BytesMessage:
                    data = event.data
                    if event.message_finished and not self._parts:
                        if len(data) > self._max:
                            await self._fail(1009, "message too big")
                            break
                        return data  # type: ignore[no-any-return]
                    self._size += len(data)
                    if self._size > self._max:
                        await self._fail(1009, "message too big")
                        break
                    self._parts.append(data)
                    if event.message_finished:
                        parts, self._parts, self._size = self._parts, [], 0
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
                try:
                    data = await self._urh.upgraded_recv(_RECV_SIZE)
                except UpgradedError as exc:
                    self.closed = CloseReason(1006, f"the connection broke: {exc}")
                    self._close_seen.set()
                    continue
                if not data:
                    if conn.state is ConnectionState.CLOSED:
                        self.closed = self.closed or CloseReason(1006, "connection lost")
                        continue
                    conn.receive_data(None)
                    for _ in conn.events():
                        pass
                    self.closed = CloseReason(
                        1006, "the peer closed the connection without a close frame")
                    self._close_seen.set()
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
            if self.closed is None:
                self.closed = CloseReason(event.code, event.reason or "")
            self._close_seen.set()
            await self._shutdown()
        else:
            # A protocol error found by wsproto (state still OPEN).
            await self._fail(int(event.code), event.reason or "")

    async def _fail(self, code: int, reason: str) -> None:
        """Fail the connection: send a close frame with *code*, wait briefly for the answer."""
        if self._conn.state is ConnectionState.OPEN:
            await self._send_close(code, reason[:120])
        self.closed = CloseReason(code, reason)
        self._close_seen.set()
        # Signal the end (FIN), then read and drop what the peer still sends
        # until its close frame or EOF, so that closing does not reset the
        # connection under our close frame.
        with trio.move_on_after(CLOSE_TIMEOUT):
            try:
                await self._urh.send_eof()
            except Exception:
                pass
            try:
                while self._conn.state is not ConnectionState.CLOSED:
                    data = await self._urh.upgraded_recv(_RECV_SIZE)
                    if not data:
                        break
                    self._conn.receive_data(data)
                    for _ in self._conn.events():
                        pass
            except Exception:
                pass
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
            self.closed = self.closed or CloseReason(1006, f"the connection broke: {exc}")
            self._close_seen.set()
            raise ConnectionClosed(self.closed) from exc

    async def _shutdown(self) -> None:
        if not self._urh.closed:
            await self._urh.aclose()

    async def _keepalive(self, interval: float) -> None:
        payload = os.urandom(4)
        while self.closed is None:
            await trio.sleep(interval)
            self._pong_seen = trio.Event()
            try:
                await self.ping(payload)
            except ConnectionClosed:
                return
            with trio.move_on_after(interval):
                await self._pong_seen.wait()
                continue
            if self.closed is None:
                self.closed = CloseReason(1011, "keepalive ping timeout")
                self._close_seen.set()
                with trio.move_on_after(0.5):
                    try:
                        async with self._send_lock:
                            await self._write(self._conn.send(
                                CloseConnection(code=1011, reason="keepalive ping timeout")))
                    except Exception:
                        pass
                await self._shutdown()
            return


def _bad_request(request: Request, reason: str, headers: Sequence[tuple[str, str]] = ()) -> Action:
    response = Response.from_buffer_copy(400, f"Bad WebSocket handshake: {reason}\n".encode())
    response.add_header("Content-Type", "text/plain; charset=utf-8")
    for name, value in headers:
        response.add_header(name, value)
    return action_from_response(request, response)


def _negotiate_deflate(offers: list[str], max_message_size: int) -> tuple[_BoundedDeflate, str] | None:
    for header in offers:
        for offer in header.split(","):
            name = offer.split(";", 1)[0].strip()
            if name != PerMessageDeflate.name:
                continue
            ext = _BoundedDeflate(max_message_size)
            accepted = ext.accept(offer)
            if accepted is None:
                continue
            value = name if accepted is True or not accepted else f"{name}; {accepted}"
            return ext, value
    return None


def action_websocket(
    request: Request,
    handler: Callable[[WebSocket], Awaitable[Any]],
    *,
    subprotocols: Sequence[str] = (),
    compression: bool = True,
    max_message_size: int = 1 << 20,
    ping_interval: float | None = None,
) -> Action:
    """Accept a WebSocket handshake and run ``await handler(ws)`` over the upgraded connection.

    The handshake is checked as RFC 6455 §4.2.1 asks (``GET``, HTTP/1.1,
    ``Connection: Upgrade``, ``Upgrade: websocket``, ``Sec-WebSocket-Version:
    13``, a ``Sec-WebSocket-Key`` of 16 bytes in base64, no body); a bad one
    is answered ``400`` with the reason in the body (never ``101``).

    Args:
        request: the request to answer.
        handler: ``async def handler(ws: WebSocket)``; when it returns the
            connection is closed with 1000, when it raises with 1011.
        subprotocols: the subprotocols the server speaks, preferred first;
            the first one the client offers is chosen.
        compression: negotiate permessage-deflate (RFC 7692) if offered.
        max_message_size: the largest message accepted, after inflation;
            larger ones close the connection with 1009.
        ping_interval: send a ping every that many seconds and close
            (1011) when no pong arrives within as many seconds; pongs are
            seen while the handler receives.  ``None``: no keepalive.
    """
    headers = request.headers
    if request.method != "GET":
        return _bad_request(request, f"the method must be GET, not {request.method}")
    if not check_http_version(request.version):
        return _bad_request(request, f"{request.version} cannot upgrade; HTTP/1.1 is needed")
    if not check_connection_header(", ".join(headers.get_all("Connection")) or None):
        return _bad_request(request, "the Connection header must list Upgrade")
    if not check_upgrade_header(", ".join(headers.get_all("Upgrade")) or None):
        return _bad_request(request, "the Upgrade header must be websocket")
    versions = headers.get_all("Sec-WebSocket-Version")
    if len(versions) != 1 or not check_version_header(versions[0]):
        return _bad_request(request, "Sec-WebSocket-Version must be 13",
                            [("Sec-WebSocket-Version", "13")])
    keys = headers.get_all("Sec-WebSocket-Key")
    if len(keys) != 1:
        return _bad_request(request, "exactly one Sec-WebSocket-Key is needed")
    try:
        accept = create_accept_header(keys[0])
    except ValueError as exc:
        return _bad_request(request, str(exc))
    if not request._body_read:
        return _bad_request(request, "a WebSocket handshake request has no body")

    extra = [("Sec-WebSocket-Accept", accept)]
    offered = [p.strip() for h in headers.get_all("Sec-WebSocket-Protocol") for p in h.split(",")]
    chosen = next((p for p in subprotocols if p in offered), None)
    if chosen is not None:
        extra.append(("Sec-WebSocket-Protocol", chosen))
    extensions: list[Any] = []
    if compression:
        negotiated = _negotiate_deflate(headers.get_all("Sec-WebSocket-Extensions"),
                                        max_message_size)
        if negotiated is not None:
            extensions.append(negotiated[0])
            extra.append(("Sec-WebSocket-Extensions", negotiated[1]))

    async def run(_request: Request, urh: UpgradeHandle) -> None:
        conn = Connection(ConnectionType.SERVER, extensions=extensions)
        ws = WebSocket(urh, conn, chosen, max_message_size, compressed=bool(extensions))
        failure: list[Exception] = []

        async def serve() -> None:
            try:
                await handler(ws)
            except ConnectionClosed:
                pass
            except Exception as exc:
                failure.append(exc)

        try:
            if ping_interval is None:
                await serve()
            else:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(ws._keepalive, ping_interval)
                    await serve()
                    nursery.cancel_scope.cancel()
        finally:
            if ws.closed is None and not urh.closed:
                with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
                    try:
                        if failure:
                            await ws._fail(1011, "internal error")
                        else:
                            await ws.close(1000)
                    except Exception:
                        pass
        if failure:
            raise failure[0]

    return action_upgrade(request, "websocket", run, extra)
