"""``action_sse``: a topic as a ``text/event-stream`` (server-sent events).

The stream is an endless response made by a dynamic content creator.  With
nothing to send it returns :func:`mhd2.dcc_action_suspend`: the request is
parked, and the topic resumes it at the next message (the hub's timer task
after *heartbeat* seconds of silence, for a comment line).  The creator
then hands the daemon the messages' shared event bytes
(:meth:`~mhd2.fanout.Message.sse`) without copying them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import trio

from ..actions import Action, action_from_response
from ..dcc import (
    DCCAction,
    DCCContext,
    dcc_action_abort,
    dcc_action_continue_zc,
    dcc_action_finish,
    dcc_action_suspend,
)
from ..errors import UsageError
from ..exchange import exchange_of
from ..response import Response
from ._answers import bad_cursor, over_limit
from .encode import sse_comment, sse_retry
from .topic import Subscriber

if TYPE_CHECKING:
    from ..request import Request
    from .message import Message
    from .topic import Topic

__all__ = ["SSE_BATCH_BYTES", "action_sse"]

#: One creator call hands over at most this many bytes of events (at least one).
SSE_BATCH_BYTES = 64 * 1024
_HEARTBEAT = sse_comment()
#: The event stream's header lines (one shared tuple each).
_HEADERS = (
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-store"),
    # nginx buffers proxied responses unless told not to.
    ("X-Accel-Buffering", "no"),
)


class EventStream(Subscriber):
    """One ``text/event-stream`` subscriber (the content creator's state)."""

    kind = "sse"
    direct = True
    __slots__ = ("done", "heartbeat", "retry", "started")

    def __init__(self, topic: Topic, request: Request, cursor: str, key: object, mark: int,
                 heartbeat: float | None, retry_ms: int) -> None:
        super().__init__(topic, request, cursor, key, mark)
        self.heartbeat = heartbeat
        self.retry = sse_retry(retry_ms)
        self.started = False
        self.done = False

    def wake(self) -> None:
        exchange_of(self.request).resume()

    def cut(self) -> None:
        self.topic._remove(self)
        exchange_of(self.request).host.cut()

    def release(self) -> None:
        """The request ended (the exchange's end hook): the subscriber is gone."""
        self.topic._remove(self)

    def write_parked(self) -> bool:
        """Direct delivery: write the events it lacks from the publishing task.

        Only while its connection's task is parked in the content creator's
        suspend on an HTTP/1 plain socket (:meth:`Exchange.parked_body
        <mhd2.exchange.Exchange.parked_body>`): the shared event bytes (one
        chunk each, made once per message: :meth:`Message.sse_chunk
        <mhd2.fanout.Message.sse_chunk>`) go out with one non-blocking send,
        and the task sleeps on.  A partial send commits the event it began
        (its rest is owed to the connection and goes first) and wakes the
        task to finish it and send the rest as usual; a full socket buffer
        wakes the task without sending anything; a broken connection
        releases the subscriber.
        """
        topic = self.topic
        body = exchange_of(self.request).parked_body()  # None when the daemon stops, too
        if body is None or self.due or topic.hub._closing:
            return False
        history = topic._retained.messages
        chunked = body.chunked
        while True:
            if len(history) > 1 and history[-2].key == self.key:
                # One message behind: the common case, no list made.
                last = history[-1]
                data = (last._sse_chunk or last.sse_chunk()) if chunked else last.sse()
                try:
                    sent = body.send_nowait(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    self.cut()  # EPIPE, ECONNRESET: the client is gone; release it now
                    return True
                if sent == len(data):
                    self.cursor = last.id
                    self.key = last.key
                    self.mark = last.end
                    self.last = last._sse
                    hub = topic.hub
                    hub._deliveries += 1
                    hub._direct += 1
                    self.sent_at = topic._now  # its silence starts again (heartbeat)
                    return True
                if sent == 0:
                    return False
                body.owe(data[sent:])
                self._took(last, None)
                return False  # woken: the task sends the rest, then more
            # Several messages behind (a burst): one writev of their events.
            messages, truncated = topic._retained.after(self.key, SSE_BATCH_BYTES)
            if truncated:
                return False  # out of the history: the task drops it
            if not messages:
                return True
            pieces = [m.sse_chunk() if chunked else m.sse() for m in messages]
            try:
                sent = body.send_nowait(pieces)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                self.cut()
                return True
            if sent == 0:
                return False
            if sent < sum(len(piece) for piece in pieces):
                # Commit up to the event the send stopped in; owe its rest.
                for index, piece in enumerate(pieces):
                    if sent < len(piece):
                        body.owe(piece[sent:])
                        self._took(messages[index], messages)
                        return False
                    sent -= len(piece)
            self._took(messages[-1], messages)
            if self.key == topic._retained.tip_key:
                self.sent_at = topic._now
                return True

    def _took(self, last: Message, messages: list[Message] | None) -> None:
        """The connection took the events up to *last* (*messages*, or just *last*)."""
        count = 1 if messages is None else messages.index(last) + 1
        self.took_directly(last, count, last.sse())

    def __call__(self, ctx: DCCContext, pos: int, buf: memoryview) -> DCCAction:
        """The content creator (see the module docstring); the stream itself is
        the response's creator, so that no bound method is kept per stream."""
        topic = self.topic
        if self.done:
            return dcc_action_finish(ctx)
        if self.dropped:
            return dcc_action_abort(ctx)
        parts: list[bytes] = []
        if not self.started:
            self.started = True
            # The client's reconnection delay, before anything else.
            parts.append(self.retry)
        if self.stopping:
            # "Stop and reload lose no message": a last retry: and the end; the
            # client reconnects (to another worker) with Last-Event-ID.
            topic._remove(self)
            self.done = True
            parts.append(self.retry)
            return dcc_action_continue_zc(ctx, 0, parts)
        messages, truncated = topic._retained.after(self.key, SSE_BATCH_BYTES)
        if truncated:
            # Fell out of the history while busy: the client resumes with its cursor.
            self.drop()
            return dcc_action_abort(ctx)
        if messages:
            self.advance(messages)
            if len(messages) == 1 and not parts:
                frame = self.last = messages[0].sse()
                return dcc_action_continue_zc(ctx, 0, [frame])
            parts.extend(m.sse() for m in messages)
            self.last = parts[-1]
            return dcc_action_continue_zc(ctx, 0, parts)
        if self.due:
            self.due = False
            parts.append(_HEARTBEAT)
        if parts:
            return dcc_action_continue_zc(ctx, 0, parts)
        topic._park(self, self.heartbeat)
        return dcc_action_suspend(ctx)


def action_sse(request: Request, topic: Topic, *, cursor: str | None = None,
               heartbeat: float | None = 15.0, retry_ms: int = 2000) -> Action:
    """Answer with the topic as server-sent events (docs/fanout.rst).

    ``200``, ``text/event-stream``, ``Cache-Control: no-store``: first
    ``retry: <retry_ms>``, then the messages after *cursor* (or after the
    request's ``Last-Event-ID``; neither: from the next message), then each
    new message as it is published -- ``id:``, ``event:`` (if any) and one
    ``data:`` line per line of data (base64 when it is not UTF-8).  After
    *heartbeat* seconds without a message a comment line (``:``) is sent,
    so that proxies keep the stream and a vanished client is noticed.

    A subscriber more than the hub's ``max_pending_bytes`` behind (or out of
    the history) is dropped: its connection is closed (HTTP/2: the stream
    reset), and the client's ``EventSource`` resumes with ``Last-Event-ID``.
    At a graceful stop of the daemon (or when the hub closes) the stream
    gets a last ``retry:`` and ends.

    Args:
        request: the request.
        topic: the topic.
        cursor: resume after this message id (else ``Last-Event-ID``).
        heartbeat: seconds of silence before a comment line (``None``: never).
        retry_ms: the ``retry:`` sent to the client (milliseconds).

    Returns:
        The action.  A malformed cursor is answered ``400``, a subscriber
        limit ``503`` with ``Retry-After``.

    Raises:
        UsageError: a bad *heartbeat* or *retry_ms*, or the hub is not running.
    """
    if heartbeat is not None and (isinstance(heartbeat, bool) or not isinstance(
            heartbeat, int | float) or not 0 < heartbeat < math.inf):
        raise UsageError(f"heartbeat must be seconds > 0 or None, not {heartbeat!r}")
    if isinstance(retry_ms, bool) or not isinstance(retry_ms, int) or retry_ms < 0:
        raise UsageError(f"retry_ms must be an int >= 0, not {retry_ms!r}")
    hub = topic.hub
    hub._check_running("action_sse")
    if cursor is None:
        # "If the field value does not contain U+0000 NULL, then set the last
        # event ID buffer to the field value" -- an empty one means none.
        cursor = request.headers.get("Last-Event-ID") or None
    try:
        cursor_id, key, mark = topic._start(cursor)
    except ValueError as exc:
        return bad_cursor(request, str(exc).rstrip("."))
    stream = EventStream(topic, request, cursor_id, key, mark,
                         None if heartbeat is None else float(heartbeat), retry_ms)
    if not topic._add(stream):
        return over_limit(request, topic)
    exchange = exchange_of(request)
    exchange.resume_when_stopping()
    exchange.add_end_hook(stream.release)
    response = Response.from_callback(200, None, stream)  # the stream is its content creator
    response._add_headers(_HEADERS)
    return action_from_response(request, response)
