"""A WebSocket subscriber as the fan-out sees it: woken, or written to directly.

:class:`WebSocketDelivery` is what the publishing task does to a WebSocket
subscriber (:meth:`~mhd2.fanout.topic.Subscriber.wake`,
:meth:`~mhd2.fanout.topic.Subscriber.write_parked`); the subscriber's own
task -- the upgrade handler that reads, sends and says goodbye -- is
:class:`~mhd2.fanout.websocket.WebSocketSubscriber`, its subclass.

A parked subscriber that is behind gets the shared frame bytes of the
messages it lacks (:meth:`~mhd2.fanout.Message.ws`) with a non-blocking
write from the publishing task, and its task sleeps on; whatever does not
fit at once (a full socket buffer, a partial frame, a broken connection)
wakes the task, which sends the rest itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from .topic import Subscriber

if TYPE_CHECKING:
    from ..request import Request
    from ..transport import Transport
    from ..upgrade import UpgradeHandle
    from ..websocket import WebSocket
    from .topic import Topic

__all__ = ["WS_BATCH_BYTES", "WebSocketDelivery"]

#: One wake-up (or one direct write) sends at most this many bytes of frames.
WS_BATCH_BYTES = 64 * 1024

_NONE: list[Any] = []  # never appended to


class WebSocketDelivery(Subscriber):
    """The fan-out side of one WebSocket subscriber.

    Attributes:
        handle: the upgraded connection (``None`` before the ``101``).
        transport: the plain socket's transport under :attr:`handle`, for a
            lean subscriber only (see :mod:`mhd2.fanout.websocket`).
        ws: the WebSocket session, once there is one.
        waiting: a lean subscriber's task waits for its socket to be readable
            (only then does the fan-out write to it).
        woken: a wake came (the task looks at the topic again before waiting).
    """

    kind = "websocket"
    direct = True
    __slots__ = ("handle", "transport", "waiting", "woken", "ws")

    def __init__(self, topic: Topic, request: Request, cursor: str, key: object,
                 mark: int) -> None:
        super().__init__(topic, request, cursor, key, mark)
        self.handle: UpgradeHandle | None = None
        self.transport: Transport | None = None
        self.ws: WebSocket | None = None
        self.waiting = False
        self.woken = False

    def wake(self) -> None:
        ws = self.ws
        if ws is not None:
            ws._wake()
            return
        self.woken = True
        if self.waiting:
            # Its task waits in trio.lowlevel.wait_readable: notify_closing ends
            # that wait (with ClosedResourceError, which the task expects
            # after a wake) and closes nothing.  A cancel scope per parked
            # subscriber would cost ~0.6 KB (its CancelStatus's two sets).
            self.waiting = False  # no direct write until it waits again
            handle = self.handle
            assert handle is not None
            trio.lowlevel.notify_closing(handle._transport.fd)

    # -- direct writes -------------------------------------------------------------------

    def write_parked(self) -> bool:
        """Direct delivery: write the frames it lacks from the publishing task.

        Only while its task waits to read on a plain socket with nothing in
        flight: the shared frame bytes go out with one non-blocking
        ``write`` (``writev`` for several) and the task sleeps on.  A partial
        write commits the frame it began (the rest is owed to the
        connection, written before any other byte) and wakes the task, as
        does a full socket buffer (nothing written) or a broken connection.
        """
        topic = self.topic
        if self.dropped or topic.hub._closing:
            return False
        if self.ws is not None:
            return self._write_session()
        handle = self.handle
        if not self.waiting or handle is None or handle.stopping:
            return False
        transport = self.transport
        assert transport is not None  # (lean: a plain Transport)
        history = topic._retained.messages
        while True:
            if len(history) > 1 and history[-2].key == self.key:
                # One message behind: the common case, no list made.
                messages = _NONE
                last = history[-1]
                frame = last._ws or last.ws()
                data: bytes | list[bytes] = frame
                size = len(frame)
            else:
                messages, truncated = topic._retained.after(self.key, WS_BATCH_BYTES)
                if truncated:
                    return False  # out of the history: the task drops it
                if not messages:
                    return True
                last = messages[-1]
                data = [m.ws() for m in messages]
                size = sum(len(f) for f in data)
            try:
                sent = transport.send_nowait(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return False  # woken: the task reads the end of the connection and leaves
            if sent == 0:
                return False
            handle._moved += sent
            if sent < size:
                # Commit up to the frame the write stopped in; owe its rest.
                for count, message in enumerate(messages or [last], 1):
                    frame = message.ws()
                    if sent < len(frame):
                        transport.owe(frame[sent:])
                        self.took_directly(message, count, message.ws())
                        return False  # woken: the task sends the rest first
                    sent -= len(frame)
            self.took_directly(last, len(messages) or 1, last.ws())
            if self.key == topic._retained.tip_key:
                return True

    def _write_session(self) -> bool:
        """:meth:`write_parked` for a subscriber with a WebSocket session (one frame
        per write, through ``WebSocket._send_prebuilt_nowait``)."""
        ws = self.ws
        assert ws is not None
        if ws.stopping:
            return False
        topic = self.topic
        history = topic._retained.messages
        hub = topic.hub
        while True:
            messages: list[Any]
            if len(history) > 1 and history[-2].key == self.key:
                messages = _NONE
                message = history[-1]
            else:
                messages, truncated = topic._retained.after(self.key, WS_BATCH_BYTES)
                if truncated:
                    return False
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
            if self.key == topic._retained.tip_key:
                return True
