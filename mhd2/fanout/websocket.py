"""``action_websocket_subscribe``: a topic over a WebSocket.

The subscriber is the WebSocket's own task (the upgrade handler): it sends
what it has not sent (each message's frame, built once for every
subscriber: :meth:`~mhd2.fanout.Message.ws`), then waits to read.  A new
message wakes that wait (the read is interrupted only where that loses
nothing); what the client sends goes to ``on_message``.

**Lean while silent.**  Most subscribers never send a byte.  Over HTTP/1.1
on a plain socket the subscriber therefore starts without a WebSocket
session: no :class:`~mhd2.websocket.WebSocket`, no wsproto connection, no
stop-watcher task.  Its task waits only for the socket to turn readable
(the fan-out writes the shared frame bytes straight to the socket, see
:mod:`~mhd2.fanout.ws_delivery`; the daemon's graceful stop wakes
it through the upgrade handle).  The first byte the client sends -- a
message, a ping, a close frame -- or the server's own goodbye makes the
full session, fed with those bytes, and the subscriber goes on with it.
Over TLS (and any other stream) it has the full session from the start.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from ..actions import Action, UpgradeAction
from ..callbacks import call_maybe_await
from ..errors import UpgradedError, UsageError
from ..transport import Transport
from ..upgrade import UpgradeHandle
from ..websocket import CLOSE_TIMEOUT, CloseReason, ConnectionClosed, WebSocket, action_websocket
from ._answers import bad_cursor, over_limit
from .ws_delivery import WS_BATCH_BYTES, WebSocketDelivery

if TYPE_CHECKING:
    from ..request import Request
    from .topic import Topic

__all__ = ["DROP_GRACE", "action_websocket_subscribe"]

#: A dropped WebSocket subscriber in the middle of a frame gets this many
#: seconds to finish it (then the close frame 1008 follows); after that the
#: connection is closed without one.
DROP_GRACE = CLOSE_TIMEOUT
#: The close code and reason of a dropped subscriber (RFC 6455 §7.4.1: "1008
#: indicates that an endpoint is terminating the connection because it has
#: received a message that violates its policy").
TOO_SLOW = (1008, "too slow")
#: "Service restart" (IANA WebSocket close code registry): sent at a graceful
#: stop or when the hub closes, so that the client reconnects.
RESTART = (1012, "service restart")
#: The largest message accepted from the client (``action_websocket``'s default).
MAX_MESSAGE_SIZE = 1 << 20
#: Bytes read at once from a lean subscriber's socket.
_RECV_SIZE = 65536
#: RFC 6455 §5.5.1 close frame with 1012 "service restart", unmasked: what a
#: lean subscriber sends, if the socket takes it at once, when the grace
#: period of a stop is over.
_RESTART_FRAME = (bytes((0x88, 2 + len(RESTART[1]))) + RESTART[0].to_bytes(2, "big")
                  + RESTART[1].encode("ascii"))

OnMessage = Callable[[WebSocket, "str | bytes"], "Awaitable[Any] | Any"]


class WebSocketSubscriber(WebSocketDelivery):
    """One WebSocket subscriber: its own task (the fan-out side, :attr:`handle`,
    :attr:`ws` and the lean path's state are :class:`WebSocketDelivery`'s).

    Attributes:
        on_message: the application's callback for the client's messages.
        fallback: ``action_websocket``'s own upgrade handler, run when the
            subscriber cannot be lean (dropped once it is).
        send_scope: while the task sends frames (see :meth:`cut`).
    """

    __slots__ = ("fallback", "on_message", "send_scope")

    def __init__(self, topic: Topic, request: Request, cursor: str, key: object, mark: int,
                 on_message: OnMessage | None) -> None:
        super().__init__(topic, request, cursor, key, mark)
        self.on_message = on_message
        self.fallback: Callable[[Request, UpgradeHandle], Awaitable[None]] | None = None
        self.send_scope: trio.CancelScope | None = None

    def cut(self) -> None:
        scope = self.send_scope
        if scope is not None:
            # In the middle of a frame: it may finish within the grace.
            scope.deadline = min(scope.deadline, trio.current_time() + DROP_GRACE)
        else:
            self.wake()

    @property
    def stopping(self) -> bool:
        handle = self.handle
        return self.topic.hub._closing or (handle is not None and handle.stopping)

    # -- the subscriber's task -----------------------------------------------------------

    def upgraded(self, request: Request, handle: UpgradeHandle) -> Awaitable[None]:
        """The upgrade handler (instead of ``action_websocket``'s): lean on a plain
        HTTP/1.1 socket, else ``action_websocket``'s full session.

        A plain function returning the coroutine to await: one coroutine frame
        less per subscriber.
        """
        fallback, self.fallback = self.fallback, None
        transport = handle._transport
        if (type(handle) is not UpgradeHandle or not isinstance(transport, Transport)
                or not transport.is_plain or handle._extra):
            # TLS, an HTTP/2 stream (RFC 8441), or bytes already sent after the
            # handshake: the full session.
            assert fallback is not None
            return fallback(request, handle)
        self.handle = handle
        self.transport = transport
        return self.serve(lean=True)

    async def _end_abruptly(self) -> None:
        """Cancelled (the grace period of a stop is over): close now, never wait.

        A close frame with 1012 goes out only if the socket takes it at once
        (as ``action_websocket`` does).
        """
        handle = self.handle
        assert handle is not None
        ws = self.ws
        if ws is not None:
            await ws._abort()
            return
        transport = self.transport
        assert transport is not None  # (lean: a plain Transport)
        if not transport.holding:
            try:
                transport.send_nowait(_RESTART_FRAME)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
        if not handle.closed:
            await handle.aclose()

    async def session(self, ws: WebSocket) -> None:
        """The handler given to ``action_websocket``: the subscriber with a full
        session from the start (TLS; a client that sent bytes with its handshake)."""
        ws._stop_code = RESTART[0]
        self.ws = ws
        self.handle = ws._urh
        await self.serve(lean=False)

    def _session(self) -> WebSocket:
        """The WebSocket session (made now if the subscriber was lean)."""
        ws = self.ws
        if ws is None:
            from wsproto.connection import Connection, ConnectionType

            handle = self.handle
            assert handle is not None
            ws = self.ws = WebSocket(handle, Connection(ConnectionType.SERVER), None,
                                     MAX_MESSAGE_SIZE, compressed=False)
            ws._stop_code = RESTART[0]
            if self.woken:
                ws._woken = True
                self.woken = False
        return ws

    async def serve(self, lean: bool) -> None:
        """Send and receive until the WebSocket closes.

        *lean*: the subscriber runs the upgraded connection itself (else
        ``action_websocket``'s handler around it closes and aborts).
        """
        topic = self.topic
        handle = self.handle
        assert handle is not None
        if not topic._add(self):
            await self._session().close(1013, "try again later")
            return
        if lean:
            handle._on_stop = self.wake
        try:
            while True:
                if self.dropped:
                    await self._goodbye(*TOO_SLOW)
                    break
                if self.stopping:
                    await self._goodbye(*RESTART)
                    break
                messages, truncated = topic._retained.after(self.key, WS_BATCH_BYTES)
                if truncated:
                    self.drop()
                    continue
                if messages:
                    await self._send(messages)
                    continue
                topic._park(self, None)
                try:
                    ws = self.ws
                    if ws is not None:
                        incoming = await ws._receive_or_wake()
                    else:
                        # Lean: wait for the socket only (written out here, not
                        # in a helper: one coroutine frame less per subscriber).
                        transport = self.transport
                        assert transport is not None  # (lean: a plain Transport)
                        if transport.holding:
                            # The rest of a frame written directly leaves first.
                            await self._write(b"")
                        incoming = None
                        if self.woken:
                            self.woken = False
                        else:
                            self.waiting = True
                            try:
                                await trio.lowlevel.wait_readable(transport.fd)
                            except trio.ClosedResourceError as exc:
                                if not self.woken:  # the connection was closed
                                    raise ConnectionClosed(CloseReason(1006, str(exc))) from exc
                            finally:
                                self.waiting = False
                            if self.woken:
                                self.woken = False
                            else:
                                incoming = await self._first_input()
                finally:
                    self.parked = False
                if incoming is not None and self.on_message is not None:
                    await call_maybe_await(self.on_message, self.ws, incoming)
        except ConnectionClosed:
            pass
        except Exception:
            ws = self.ws
            if lean and ws is not None and ws.closed is None:
                # on_message raised: 1011, as action_websocket does.
                with trio.move_on_after(CLOSE_TIMEOUT):
                    await ws._fail(1011)
            raise
        except BaseException:
            if lean:
                # Cancelled: the grace period of a graceful stop is over.
                with trio.CancelScope(shield=True):
                    await self._end_abruptly()
            raise
        finally:
            topic._remove(self)
            handle._on_stop = None
        if lean and not handle.closed:
            await handle.aclose()

    async def _first_input(self) -> str | bytes | None:
        """A lean subscriber's socket turned readable: read, make the session, feed it
        what was read and go on as it says (a message, or ``None``: nothing whole yet)."""
        handle = self.handle
        assert handle is not None
        try:
            data = handle._transport.receive_now(_RECV_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._session()._finish(CloseReason(1006, f"the connection broke: {exc}"))
            raise ConnectionClosed(CloseReason(1006, "connection lost")) from exc
        if data is None:
            return None  # not readable after all
        ws = self._session()
        if not data:
            ws._finish(CloseReason(1006, "the peer closed the connection without a close frame"))
            await ws._shutdown()
            raise ConnectionClosed(CloseReason(1006, "connection lost"))
        handle._moved += len(data)
        ws._conn.receive_data(data)
        return await ws._receive_or_wake()

    async def _write(self, frame: bytes) -> None:
        """A lean subscriber's task writes *frame* (after anything owed)."""
        handle = self.handle
        assert handle is not None
        try:
            await handle.upgraded_send(frame)
        except UpgradedError as exc:
            self._session()._finish(CloseReason(1006, f"the connection broke: {exc}"))
            raise ConnectionClosed(CloseReason(1006, "connection lost")) from exc

    async def _send(self, messages: list[Any]) -> None:
        ws = self.ws
        with trio.CancelScope() as scope:
            self.send_scope = scope
            try:
                for message in messages:
                    if self.dropped:
                        break  # the close frame 1008 follows this whole frame
                    frame = self.last = message.ws()
                    if ws is not None:
                        await ws._send_prebuilt(frame)
                    else:
                        await self._write(frame)
                    self.advance([message])
            finally:
                self.send_scope = None
        if scope.cancelled_caught:
            # Cut in the middle of a frame: no close frame can follow it.
            ws = self._session()
            with trio.CancelScope(shield=True):
                ws._finish(CloseReason(*TOO_SLOW))
                await ws._shutdown()
            raise ConnectionClosed(CloseReason(*TOO_SLOW))

    async def _goodbye(self, code: int, reason: str) -> None:
        ws = self._session()
        with trio.move_on_after(DROP_GRACE if code == TOO_SLOW[0] else CLOSE_TIMEOUT):
            try:
                await ws.close(code, reason)
            except ConnectionClosed:
                pass
        if ws.closed is None:
            ws._finish(CloseReason(code, reason))
            with trio.CancelScope(shield=True):
                await ws._shutdown()


def action_websocket_subscribe(request: Request, topic: Topic, *, cursor: str | None = None,
                               on_message: OnMessage | None = None) -> Action:
    """Answer with a WebSocket that carries the topic (docs/fanout.rst).

    The handshake is checked as for :func:`mhd2.websocket.action_websocket`
    (a bad one gets ``400``); no extension is negotiated, so that every
    subscriber is sent the same frame bytes.  The messages after *cursor*
    (``None``: from the next message) and then each new one go out as one
    text frame each (binary when the data is not UTF-8) holding ``{"id",
    "event", "data"}`` (``"encoding": "base64"`` for binary data).  Messages
    from the client go to ``on_message(ws, message)`` (plain or ``async``),
    else are ignored.

    A subscriber more than the hub's ``max_pending_bytes`` behind (or out of
    the history) is closed with 1008 ``"too slow"``; at a graceful stop (or
    when the hub closes) with 1012 ``"service restart"``.  The client
    reconnects with the id of the last message it got as cursor.

    Returns:
        The action.  A malformed cursor is answered ``400``, a subscriber
        limit ``503`` with ``Retry-After``, both before the handshake.

    Raises:
        UsageError: the hub is not running, or *on_message* is not callable.
    """
    hub = topic.hub
    hub._check_running("action_websocket_subscribe")
    if on_message is not None and not callable(on_message):
        raise UsageError("on_message must be callable(ws, message) or None")
    try:
        cursor_id, key, mark = topic._start(cursor)
    except ValueError as exc:
        return bad_cursor(request, str(exc).rstrip("."))
    limit = topic.max_subscribers if topic.max_subscribers is not None \
        else hub.max_subscribers_per_topic
    if hub._count >= hub.max_subscribers or (limit is not None and len(topic._subs) >= limit):
        hub._refused += 1
        return over_limit(request, topic)
    sub = WebSocketSubscriber(topic, request, cursor_id, key, mark, on_message)
    action = action_websocket(request, sub.session, compression=False,
                              max_message_size=MAX_MESSAGE_SIZE)
    if isinstance(action, UpgradeAction):
        # The subscriber runs the upgraded connection itself (lean while the
        # client is silent; else action_websocket's own handler).
        sub.fallback = action.handler
        action.handler = sub.upgraded
    return action
