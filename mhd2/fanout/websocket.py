"""``action_websocket_subscribe``: a topic over a WebSocket.

The subscriber is the WebSocket's own task (the upgrade handler): it sends
what it has not sent (each message's frame, built once for every
subscriber: :meth:`~mhd2.fanout.Message.ws`), then waits to read.  A new
message wakes that wait (the read is interrupted only where that loses
nothing); what the client sends goes to ``on_message``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from ..actions import Action
from ..callbacks import call_maybe_await
from ..errors import UsageError
from ..websocket import CLOSE_TIMEOUT, CloseReason, ConnectionClosed, WebSocket, action_websocket
from ._answers import bad_cursor, over_limit
from .topic import Subscriber

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
#: One wake-up sends at most this many bytes of frames before reading again.
WS_BATCH_BYTES = 64 * 1024

_NONE: list[Any] = []  # never appended to

OnMessage = Callable[[WebSocket, "str | bytes"], "Awaitable[Any] | Any"]


class WebSocketSubscriber(Subscriber):
    """The state of one WebSocket subscriber."""

    kind = "websocket"
    direct = True
    __slots__ = ("send_scope", "ws")

    def __init__(self, topic: Topic, request: Request, cursor: str, key: object, mark: int,
                 ws: WebSocket) -> None:
        super().__init__(topic, request, cursor, key, mark)
        self.ws = ws
        self.send_scope: trio.CancelScope | None = None

    def wake(self) -> None:
        self.ws._wake()

    def cut(self) -> None:
        scope = self.send_scope
        if scope is not None:
            # In the middle of a frame: it may finish within the grace.
            scope.deadline = min(scope.deadline, trio.current_time() + DROP_GRACE)
        else:
            self.ws._wake()

    @property
    def stopping(self) -> bool:
        return self.topic.hub._closing or self.ws.stopping

    def write_parked(self) -> bool:
        """Direct delivery: write the frames it lacks from the publishing task.

        Only while its task waits to read on a plain socket with nothing in
        flight (``WebSocket._send_prebuilt_nowait``): the shared frame bytes
        go out with a non-blocking send and the task sleeps on.  A partial
        send commits the frame (its rest is owed) and wakes the task, as
        does a full socket buffer (nothing sent) or a broken connection.
        """
        topic = self.topic
        if self.dropped or topic.hub._closing or self.ws.stopping:
            return False
        history = topic._messages
        ws = self.ws
        hub = topic.hub
        while True:
            messages: list[Any]
            if len(history) > 1 and history[-2].key == self.key:
                # One message behind: the common case, no list made.
                messages = _NONE
                message = history[-1]
            else:
                messages, truncated = topic._after(self.key, WS_BATCH_BYTES)
                if truncated:
                    return False  # out of the history: the task drops it
                if not messages:
                    return True
                message = messages[0]
            index = 0
            while True:
                frame = message.ws()
                done = ws._send_prebuilt_nowait(frame)
                if not done:
                    return False
                self.cursor = message.id
                self.key = message.key
                self.mark = message.end
                self.last = frame
                hub._deliveries += 1
                hub._direct += 1
                if done == 2:
                    return False  # woken: the task sends the rest first
                index += 1
                if index >= len(messages):
                    break
                message = messages[index]
            if self.key == topic._tip_key:
                return True

    async def serve(self, on_message: OnMessage | None) -> None:
        """Send and receive until the WebSocket closes (the upgrade handler)."""
        ws = self.ws
        topic = self.topic
        try:
            while True:
                if self.dropped:
                    await self._goodbye(*TOO_SLOW)
                    return
                if self.stopping:
                    await self._goodbye(*RESTART)
                    return
                messages, truncated = topic._after(self.key, WS_BATCH_BYTES)
                if truncated:
                    self.drop()
                    continue
                if messages:
                    await self._send(messages)
                    continue
                topic._park(self, None)
                try:
                    incoming = await ws._receive_or_wake()
                finally:
                    self.parked = False
                if incoming is not None and on_message is not None:
                    await call_maybe_await(on_message, ws, incoming)
        except ConnectionClosed:
            pass
        finally:
            topic._remove(self)

    async def _send(self, messages: list[Any]) -> None:
        ws = self.ws
        with trio.CancelScope() as scope:
            self.send_scope = scope
            try:
                for message in messages:
                    if self.dropped:
                        break  # the close frame 1008 follows this whole frame
                    frame = self.last = message.ws()
                    await ws._send_prebuilt(frame)
                    self.advance([message])
            finally:
                self.send_scope = None
        if scope.cancelled_caught:
            # Cut in the middle of a frame: no close frame can follow it.
            with trio.CancelScope(shield=True):
                ws._finish(CloseReason(*TOO_SLOW))
                await ws._shutdown()
            raise ConnectionClosed(CloseReason(*TOO_SLOW))

    async def _goodbye(self, code: int, reason: str) -> None:
        ws = self.ws
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

    async def handler(ws: WebSocket) -> None:
        ws._stop_code = RESTART[0]
        sub = WebSocketSubscriber(topic, request, cursor_id, key, mark, ws)
        if not topic._add(sub):
            await ws.close(1013, "try again later")
            return
        await sub.serve(on_message)

    return action_websocket(request, handler, compression=False)
