"""A topic: its subscribers, and the fan-out of one message to all of them.

Subscribers are not tasks and have no queues.  A waiting subscriber is a
parked request (long poll, event stream) or a WebSocket waiting to read;
:meth:`Topic.deliver` wakes each one directly (a cancel scope is cancelled,
nothing is allocated per subscriber), and the woken subscriber takes what
it has not sent from the shared history (:mod:`mhd2.fanout.history`) --
the same :class:`Message` objects, whose wire bytes are made once per kind.

A subscriber that is still busy sending when more messages arrive falls
behind; how far is counted in bytes (the topic's running total minus the
total at the subscriber's position).  Beyond ``max_pending_bytes``, or once
its position has left the history, it is dropped (see :meth:`Subscriber.drop`).
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, Any

import trio

from ..errors import UsageError
from ..exchange import exchange_of
from .history import History
from .message import Message, MessageList

if TYPE_CHECKING:
    from ..request import Request
    from .hub import Hub

__all__ = ["Subscriber", "Topic"]

#: Longest topic name accepted.
MAX_TOPIC_NAME = 200
#: Longest event name accepted.
MAX_EVENT_NAME = 200
#: Reusable answers kept per topic until the next message (long polls), at
#: most this many and this many bytes of body in all.
_CACHE_ENTRIES = 64
#: Direct writes per turn of a fan-out: publishing makes this many at once,
#: the hub's fan-out task the rest, with a checkpoint after each batch
#: (100,000 subscribers must not hold up every other task of the process).
FANOUT_BATCH = 1000
_CACHE_BYTES = 4 << 20


class Subscriber:
    """One waiting client of a topic (the kinds subclass it).

    Attributes:
        topic: the topic.
        request: the client's request.
        cursor: the id of the last message it was given (or the tip it joined at).
        key: the backend's sort key of :attr:`cursor`.
        mark: the topic's byte total at :attr:`cursor` (see the module docstring).
        parked: it waits for news (else it is busy sending, or done).
        due: its timer ran out (a long poll answers 204, a stream sends a heartbeat).
        dropped: it fell too far behind and is being cut off.
        ticket: changes at every park, so a stale timer entry is recognised.
        sent_at: when the fan-out last wrote to it directly (its timer entry
            stays; see :meth:`Topic._expire`).
        last: the last wire bytes handed to its connection (shared with every
            subscriber of the same kind).
    """

    kind = ""
    #: Whether it can fall behind (a long poll waits at the newest message and
    #: its answer is bounded: never).
    droppable = True
    #: Whether :meth:`write_parked` may write to it (else it is always woken).
    direct = False
    __slots__ = ("cursor", "dropped", "due", "key", "last", "mark", "parked", "request",
                 "sent_at", "ticket", "topic")

    def __init__(self, topic: Topic, request: Request, cursor: str, key: Any, mark: int) -> None:
        self.topic = topic
        self.request = request
        self.cursor = cursor
        self.key = key
        self.mark = mark
        self.parked = False
        self.due = False
        self.dropped = False
        self.ticket = 0
        self.sent_at = -math.inf
        self.last: bytes | None = None

    @property
    def stopping(self) -> bool:
        """The daemon stops gracefully (or the hub closes): say goodbye."""
        return self.topic.hub._closing or exchange_of(self.request).shared.stopping

    def advance(self, messages: list[Message]) -> None:
        """*messages* were handed to the connection: move the cursor past them."""
        last = messages[-1]
        self.cursor = last.id
        self.key = last.key
        self.mark = last.end
        self.topic.hub._deliveries += len(messages)

    def took_directly(self, last: Message, count: int, wire: bytes) -> None:
        """The fan-out wrote *count* messages up to *last* straight to its
        connection (:meth:`write_parked`); *wire*: the bytes of *last*."""
        hub = self.topic.hub
        self.cursor = last.id
        self.key = last.key
        self.mark = last.end
        self.last = wire
        hub._deliveries += count
        hub._direct += count

    def wake(self) -> None:
        """Resume the waiting subscriber (it was parked)."""
        raise NotImplementedError

    def write_parked(self) -> bool:
        """Send what it lacks straight to its connection, without waking it.

        Called by the fan-out for a parked subscriber that is behind.  The
        kinds that can (an event stream over HTTP/1 on a plain socket) write
        the shared wire bytes with a non-blocking send and stay parked.

        Returns:
            True when it was brought up to date (or released, its connection
            broken) this way; False: wake it instead (its task sends).
        """
        return False

    def drop(self) -> None:
        """Cut off a subscriber that fell too far behind (counted once)."""
        if not self.dropped:
            self.dropped = True
            self.topic.hub._drops += 1
            self.cut()

    def cut(self) -> None:
        """End the connection (kind-specific)."""
        raise NotImplementedError


class Topic:
    """A named stream of messages with a bounded history (made by :meth:`Hub.topic`).

    Attributes:
        name: the topic's name.
        history: how many messages are kept for catch-up.
        hub: the hub it belongs to.
    """

    def __init__(self, hub: Hub, name: str, history: int, max_subscribers: int | None) -> None:
        self.hub = hub
        self.name = name
        self.max_subscribers = max_subscribers
        backend = hub._backend
        origin = backend.origin()
        #: The retained messages, the tip, the floor and the byte total.
        self._retained = History(history, origin, backend.key(origin),
                                 ahead_is_lag=backend.ahead_is_lag)
        self._subs: dict[Subscriber, None] = {}
        #: Parked long polls by request (their callback is called again).
        self._waiting: dict[Request, Subscriber] = {}
        #: Timer FIFOs, one per length of wait: (deadline, subscriber, ticket).
        self._fifos: dict[float, deque[tuple[float, Subscriber, int]]] = {}
        #: The fan-out under way (more subscribers than FANOUT_BATCH): the
        #: subscribers it visits, how far it got, whether to walk again.
        self._walk: list[Subscriber] | None = None
        self._walk_pos = 0
        self._walk_again = False
        #: The time the batch being visited began (see _visit).
        self._now = 0.0
        #: Answers shared until the next message (see mhd2.fanout.longpoll).
        self._cache: dict[Any, Any] = {}
        self._cache_bytes = 0

    # -- publishing -------------------------------------------------------------------

    async def publish(self, data: bytes | bytearray | memoryview | str, *,
                      event: str | None = None) -> str:
        """Publish *data* to every subscriber of the topic, in every process of the hub.

        Args:
            data: the payload: bytes, or ``str`` (sent as UTF-8).
            event: an event name (SSE ``event:`` field, ``"event"`` in JSON).

        Returns:
            The message id (a ``str`` that sorts in publication order; the
            subscribers' cursor).

        Raises:
            UsageError: *data* is larger than the hub's ``max_message_size``,
                or *event* is not a one-line string; the hub is not running.
            FanoutUnavailable: the hub's backend (Redis) cannot be reached.
        """
        if isinstance(data, str):
            payload = data.encode("utf-8")
        elif isinstance(data, bytes | bytearray | memoryview):
            payload = bytes(data)
        else:
            raise UsageError(f"publish needs bytes or str data, not {type(data).__name__}")
        hub = self.hub
        if len(payload) > hub.max_message_size:
            raise UsageError(
                f"the message has {len(payload)} bytes, more than the hub's max_message_size "
                f"({hub.max_message_size}): send less, or make the Hub with a larger "
                "max_message_size")
        if event is not None and (not isinstance(event, str) or not event
                                  or len(event) > MAX_EVENT_NAME
                                  or any(c in event for c in "\r\n\0")):
            raise UsageError(f"event {event!r} must be a non-empty str of at most "
                             f"{MAX_EVENT_NAME} characters without CR, LF or NUL")
        hub._check_running("publish")
        return await hub._backend.append(hub, self, event, payload)

    def _deliver(self, message_id: str, event: str | None, data: bytes) -> None:
        """Add a message (in order) and wake or check every subscriber."""
        hub = self.hub
        self._retained.append(message_id, event, data, hub._backend.key(message_id))
        hub._published += 1
        cache = self._cache
        if cache:
            for response in cache.values():
                response.destroy()
            cache.clear()
            self._cache_bytes = 0
        if self._walk is not None:
            # A walk over the subscribers is under way (see _walk_step): the
            # ones it has not reached get this message too; the others at
            # the walk after it.
            self._walk_again = True
            return
        subs = list(self._subs)
        end = self._visit(subs, 0)
        if end < len(subs):
            self._walk = subs
            self._walk_pos = end
            hub._walk_later(self)

    def _walk_step(self) -> bool:
        """Visit the next batch of subscribers of the walk under way (see :meth:`_visit`).

        Returns:
            Whether the walk goes on (the hub's fan-out task calls again after
            a checkpoint, so that other tasks run meanwhile).
        """
        subs = self._walk
        if subs is None:
            return False
        end = self._visit(subs, self._walk_pos)
        if end < len(subs):
            self._walk_pos = end
            return True
        if self._walk_again:
            # Messages came during the walk: visit everyone again (those
            # already at the newest message are passed over cheaply).
            self._walk_again = False
            self._walk = list(self._subs)
            self._walk_pos = 0
            return True
        self._walk = None
        return False

    def _visit(self, subs: list[Subscriber], start: int) -> int:
        """Bring subscribers from ``subs[start]`` on up to date, one batch: a parked
        subscriber is written to directly or woken; a busy one too far behind
        is dropped.

        A batch ends after :data:`FANOUT_BATCH` direct writes (a system call
        each, ~10 µs) or ``16 * FANOUT_BATCH`` subscribers (waking one costs
        about a microsecond: 10,000 long polls are still woken at once).

        Returns:
            The index after the last subscriber visited.
        """
        limit = self.hub.max_pending_bytes
        retained = self._retained
        total = retained.total
        floor = retained.floor
        tip = retained.tip_key
        live = self._subs
        # One clock read per batch: a directly written stream's heartbeat timer restarts.
        self._now = trio.current_time()
        writes = FANOUT_BATCH
        end = min(len(subs), start + 16 * FANOUT_BATCH)
        index = start
        while index < end and writes:
            sub = subs[index]
            index += 1
            if sub.parked:
                if sub.key == tip:
                    continue
                if sub.direct:
                    writes -= 1  # a direct write, or an attempt: counted either way
                    if sub.write_parked():
                        continue
                sub.parked = False
                sub.wake()
            elif sub.droppable and not sub.dropped and (total - sub.mark > limit
                                                        or sub.key < floor) and sub in live:
                sub.drop()
        return index

    # -- reading ------------------------------------------------------------------------

    def since(self, cursor: str | None) -> MessageList:
        """The retained messages after *cursor*, oldest first.

        Args:
            cursor: a message id (as a client sends it back), or ``None``
                (no messages: a new subscriber starts at the newest one).

        Returns:
            A :class:`MessageList`; ``truncated`` is true when the cursor is
            older than the history or unknown here (all that is retained is
            then returned).

        Raises:
            ValueError: *cursor* is not a message id of this hub.
        """
        if cursor is None:
            return MessageList()
        key = self.hub._backend.key(self.hub._backend.parse_cursor(cursor))
        messages, truncated = self._retained.after(key, math.inf)
        return MessageList(messages, truncated)

    def _forget_up_to(self, message_id: str) -> None:
        """For backends that fill the history from a store (Redis backfill): the
        messages up to *message_id* are not retained here, so a cursor older
        than it is answered as truncated."""
        self._retained.forget_up_to(message_id, self.hub._backend.key(message_id))

    def _backfill(self, entries: list[tuple[str, str | None, bytes]],
                  lost_before: str | None = None) -> None:
        """For backends whose reader fetches the history after ``hub.topic`` (Redis
        ``XREVRANGE``): put *entries* (oldest first, all older than anything
        delivered since) into the history without fanning them out.

        Subscribers that joined at the newest message meanwhile ("from the
        next message") move to the new newest one: the backfill is not news
        to them.  *lost_before*: the id of the newest entry the store has but
        the history does not keep (older cursors are truncated).
        """
        retained = self._retained
        old_tip = retained.tip_key
        if lost_before is not None:
            self._forget_up_to(lost_before)
        if retained.backfill(entries, self.hub._backend.key):
            for sub in self._subs:
                if sub.key == old_tip:
                    sub.cursor, sub.key = retained.tip_id, retained.tip_key

    @property
    def history(self) -> int:
        """How many messages are kept for catch-up (the history's own limit)."""
        return self._retained.limit

    @history.setter
    def history(self, limit: int) -> None:
        self._retained.limit = limit

    @property
    def last_id(self) -> str:
        """The id of the newest message (or the origin: a cursor before every message)."""
        return self._retained.tip_id

    def _parse(self, cursor: str | None) -> tuple[str, Any]:
        """*cursor* (``None``: the tip) as ``(id, key)``.  Raises ValueError."""
        if cursor is None:
            return self._retained.tip_id, self._retained.tip_key
        backend = self.hub._backend
        cursor = backend.parse_cursor(cursor)
        return cursor, backend.key(cursor)

    def _start(self, cursor: str | None) -> tuple[str, Any, int]:
        """Where a stream subscriber joins: ``(cursor id, key, byte mark)``.

        A cursor older than the history (or unknown) joins just before the
        oldest retained message: all of it is sent.  Raises ValueError.
        """
        cursor_id, key = self._parse(cursor)
        retained = self._retained
        if retained.after(key, 0)[1]:
            key = retained.floor
        return cursor_id, key, retained.mark_at(key)

    # -- subscribers ---------------------------------------------------------------------

    def _add(self, sub: Subscriber) -> bool:
        """Count *sub* in; ``False`` when a subscriber limit is reached."""
        hub = self.hub
        limit = self.max_subscribers if self.max_subscribers is not None \
            else hub.max_subscribers_per_topic
        if hub._count >= hub.max_subscribers or (limit is not None and len(self._subs) >= limit):
            hub._refused += 1
            return False
        self._subs[sub] = None
        hub._count += 1
        hub._kinds[sub.kind] += 1
        return True

    def _remove(self, sub: Subscriber) -> None:
        """*sub* is gone (answered, disconnected, closed); idempotent."""
        self._waiting.pop(sub.request, None)
        if self._subs.pop(sub, 0) is None:
            hub = self.hub
            hub._count -= 1
            hub._kinds[sub.kind] -= 1
        sub.parked = False
        sub.ticket += 1

    def _park(self, sub: Subscriber, seconds: float | None, now: float | None = None) -> None:
        """*sub* waits for news, or until *seconds* pass (then ``due``) from *now*
        (default: the current time)."""
        sub.parked = True
        sub.ticket += 1
        if seconds is None:
            return
        fifo = self._fifos.get(seconds)
        if fifo is None:
            fifo = self._fifos[seconds] = deque()
        deadline = (trio.current_time() if now is None else now) + seconds
        fifo.append((deadline, sub, sub.ticket))
        self.hub._timer_added(deadline)
        if len(fifo) > 2 * len(self._subs) + 64:
            # Entries of subscribers woken (and parked again) meanwhile are
            # stale; keep the FIFO within twice the subscribers, in order.
            self._fifos[seconds] = deque(
                entry for entry in fifo if entry[1].ticket == entry[2] and entry[1].parked)

    def _expire(self, now: float) -> float:
        """Wake the subscribers whose wait is over; the next deadline (or inf)."""
        earliest = math.inf
        for seconds, fifo in self._fifos.items():
            while fifo:
                deadline, sub, ticket = fifo[0]
                if sub.ticket != ticket or not sub.parked:
                    fifo.popleft()
                    continue
                if deadline > now:
                    earliest = min(earliest, deadline)
                    break
                fifo.popleft()
                if sub.sent_at > deadline - seconds:
                    # Written to directly since it parked: its silence began
                    # then.  (The entry goes to the back though its deadline
                    # may be earlier than some there: it can be late by the
                    # spread of one batch's send times, not more.)
                    fifo.append((sub.sent_at + seconds, sub, ticket))
                    continue
                sub.parked = False
                sub.due = True
                sub.wake()
        return earliest

    def _close(self) -> None:
        """The hub closes: wake every waiting subscriber so it says goodbye (busy
        ones see :attr:`Subscriber.stopping` before their next send)."""
        self._walk = None
        self._walk_again = False
        for sub in list(self._subs):
            if sub.parked:
                sub.parked = False
                sub.wake()

    def __repr__(self) -> str:
        return f"<mhd2.fanout.Topic {self.name!r} history={self.history} subscribers={len(self._subs)}>"
