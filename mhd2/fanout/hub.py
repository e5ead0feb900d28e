"""The hub: topics, the backend, the timer task, limits and counters."""

from __future__ import annotations

import math
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from types import TracebackType

import trio

from ..errors import UsageError
from ..metrics import register_fanout
from .backend import Backend, MemoryBackend
from .topic import MAX_TOPIC_NAME, Topic

__all__ = ["DEFAULT_HISTORY", "FanoutStats", "Hub"]

#: Messages a topic keeps by default.
DEFAULT_HISTORY = 1000
#: Timers are coalesced: the timer task wakes at most this often (seconds).
TIMER_SLACK = 0.05
#: The delivery kinds, as ``hub.stats().subscribers`` names them.
KINDS = ("long_poll", "sse", "websocket")


@dataclass(frozen=True)
class FanoutStats:
    """What :meth:`Hub.stats` reports.

    Attributes:
        subscribers: waiting clients by kind (``long_poll``, ``sse``, ``websocket``).
        published: messages that reached this process's fan-out.
        deliveries: messages handed to subscribers' connections (one per
            message and subscriber).
        direct_deliveries: the part of *deliveries* written by the fan-out
            itself straight to a parked subscriber's socket, without waking
            the subscriber's task (event streams over HTTP/1 on plain TCP).
        drops: subscribers cut off for falling behind (``max_pending_bytes``
            or out of the history).
        refused: subscriptions refused over a subscriber limit (503).
        redis_reconnects: reconnects of the backend's reader (0 in-process).
    """

    subscribers: dict[str, int] = field(default_factory=dict)
    published: int = 0
    deliveries: int = 0
    drops: int = 0
    direct_deliveries: int = 0
    refused: int = 0
    redis_reconnects: int = 0


def _positive_int(name: str, value: object, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UsageError(f"{name} must be an int > 0{' or None' if allow_none else ''}, "
                         f"not {value!r}")


class Hub:
    """Topics whose messages reach many waiting clients (docs/fanout.rst).

    ``Hub()`` keeps messages in this process; ``Hub(redis="redis://...")``
    shares the topics of every process naming that Redis (Redis Streams).

    Run it as ``async with hub:`` (its tasks run in a nursery it opens in
    the caller's task) or with ``await nursery.start(hub.run)``.

    Args:
        redis: a Redis URL; ``None`` (default): in-process.
        backend: a :class:`~mhd2.fanout.backend.Backend` to use instead (tests,
            other stores); excludes *redis*.
        max_message_size: the largest message ``publish`` accepts (bytes).
        max_pending_bytes: how far (in bytes of messages) a subscriber may
            fall behind before it is dropped; also the most data one
            long-poll answer carries.
        max_subscribers: waiting clients in this hub at most (all topics);
            more get ``503`` with ``Retry-After``.
        max_subscribers_per_topic: the same per topic (``None``: only the
            hub's limit); ``hub.topic(..., max_subscribers=)`` overrides it.
        retry_after: the ``Retry-After`` seconds of those ``503`` answers.

    Raises:
        UsageError: a bad option.
    """

    def __init__(self, *, redis: str | None = None, backend: Backend | None = None,
                 max_message_size: int = 1 << 20, max_pending_bytes: int = 1 << 20,
                 max_subscribers: int = 250_000, max_subscribers_per_topic: int | None = None,
                 retry_after: int = 5) -> None:
        _positive_int("max_message_size", max_message_size)
        _positive_int("max_pending_bytes", max_pending_bytes)
        _positive_int("max_subscribers", max_subscribers)
        _positive_int("max_subscribers_per_topic", max_subscribers_per_topic, allow_none=True)
        _positive_int("retry_after", retry_after)
        if redis is not None and backend is not None:
            raise UsageError("give Hub either redis= or backend=, not both")
        if redis is not None:
            backend = _redis_backend(redis)
        self._backend: Backend = backend if backend is not None else MemoryBackend()
        self.max_message_size = max_message_size
        self.max_pending_bytes = max_pending_bytes
        self.max_subscribers = max_subscribers
        self.max_subscribers_per_topic = max_subscribers_per_topic
        self.retry_after = retry_after
        self._topics: dict[str, Topic] = {}
        self._running = False
        self._closing = False
        self._count = 0
        self._kinds: Counter[str] = Counter()
        self._published = 0
        self._deliveries = 0
        self._direct = 0
        self._drops = 0
        self._refused = 0
        self._token: trio.lowlevel.TrioToken | None = None
        self._timer_scope: trio.CancelScope | None = None
        #: Topics whose fan-out goes on in the fan-out task (see Topic._walk_step).
        self._walking: dict[Topic, None] = {}
        self._walk_event: trio.Event | None = None
        self._run_scope: trio.CancelScope | None = None
        self._stack: AsyncExitStack | None = None

    # -- topics ----------------------------------------------------------------------

    def topic(self, name: str, *, history: int = DEFAULT_HISTORY,
              max_subscribers: int | None = None) -> Topic:
        """The topic *name* (made on first use; later calls return the same one).

        Args:
            name: 1 to 200 printable characters.
            history: how many of the newest messages stay available for
                clients that resume with a cursor (at least 1).
            max_subscribers: waiting clients on this topic at most.

        Raises:
            UsageError: a bad name or number, or the topic exists with
                another *history*.
        """
        if not isinstance(name, str) or not name or len(name) > MAX_TOPIC_NAME or (
                not name.isprintable()):
            raise UsageError(f"topic name {name!r} must be 1 to {MAX_TOPIC_NAME} printable characters")
        _positive_int("history", history)
        _positive_int("max_subscribers", max_subscribers, allow_none=True)
        topic = self._topics.get(name)
        if topic is not None:
            if topic.history != history:
                raise UsageError(f"topic {name!r} exists with history={topic.history}; "
                                 f"ask for it with the same history, not {history}")
            return topic
        topic = self._topics[name] = Topic(self, name, history, max_subscribers)
        self._backend.follow(self, topic)
        return topic

    # -- the Feed a backend calls --------------------------------------------------------

    def deliver(self, topic: Topic, message_id: str, event: str | None, data: bytes) -> None:
        """A new message of *topic* (from the backend, in order): fan it out."""
        topic._deliver(message_id, event, data)

    # -- running ----------------------------------------------------------------------

    async def __aenter__(self) -> Hub:
        if self._stack is not None:
            raise UsageError("this Hub is already entered")
        stack = AsyncExitStack()
        nursery = await stack.enter_async_context(trio.open_nursery())
        self._stack = stack
        try:
            await nursery.start(self.run)
        except BaseException:
            self._stack = None
            await stack.aclose()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        stack, self._stack = self._stack, None
        if self._run_scope is not None:
            self._run_scope.cancel()
        if stack is not None:
            await stack.aclose()

    async def run(self, *, task_status: trio.TaskStatus[Hub] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the hub's tasks (the backend's reader, the timers) until cancelled.

        Use as ``await nursery.start(hub.run)``.  When it ends, every waiting
        subscriber is told to go (as at a graceful stop: long polls answer
        ``204``, event streams get ``retry:`` and end, WebSockets close with
        1012).

        Raises:
            UsageError: the hub runs already.
        """
        if self._running:
            raise UsageError("this Hub is already running; a Hub runs once at a time")
        self._running = True
        self._closing = False
        register_fanout(self)  # mhd2_fanout_* of a Daemon(metrics=...) read its stats()
        self._token = trio.lowlevel.current_trio_token()
        try:
            with trio.CancelScope() as scope:
                self._run_scope = scope
                async with trio.open_nursery() as nursery:
                    await nursery.start(self._backend.run, self)
                    nursery.start_soon(self._timers)
                    nursery.start_soon(self._walks)
                    task_status.started(self)
                    await trio.sleep_forever()
        finally:
            self._run_scope = None
            self._closing = True
            self._walking.clear()
            for topic in self._topics.values():
                topic._close()
            self._running = False
            with trio.CancelScope(shield=True):
                await self._backend.aclose()

    def _check_running(self, what: str) -> None:
        if not self._running:
            raise UsageError(f"{what} needs a running hub: use it inside 'async with hub' "
                             "(or after 'await nursery.start(hub.run)')")
        if trio.lowlevel.current_trio_token() is not self._token:
            raise UsageError(f"{what} must run in the hub's trio run; from another thread use "
                             "trio.from_thread.run(topic.publish, data, token=...)")

    async def _timers(self) -> None:
        """The one timer task: long-poll timeouts and SSE heartbeats of every topic."""
        while True:
            now = trio.current_time()
            earliest = math.inf
            for topic in self._topics.values():
                earliest = min(earliest, topic._expire(now))
            with trio.CancelScope(deadline=earliest + TIMER_SLACK) as scope:
                self._timer_scope = scope
                await trio.sleep_forever()
            self._timer_scope = None

    async def _walks(self) -> None:
        """The fan-out task: large fan-outs go on here, a batch per turn of the loop."""
        while True:
            while self._walking:
                for topic in list(self._walking):
                    if not topic._walk_step():
                        del self._walking[topic]
                await trio.lowlevel.checkpoint()
            event = self._walk_event = trio.Event()
            await event.wait()

    def _walk_later(self, topic: Topic) -> None:
        """*topic* has a fan-out to finish (in the fan-out task)."""
        self._walking[topic] = None
        event = self._walk_event
        if event is not None:
            event.set()

    def _timer_added(self, deadline: float) -> None:
        scope = self._timer_scope
        if scope is not None and deadline + TIMER_SLACK < scope.deadline:
            scope.deadline = deadline + TIMER_SLACK

    # -- numbers ------------------------------------------------------------------------

    def stats(self) -> FanoutStats:
        """Subscribers by kind, messages published, deliveries, drops, refusals, reconnects."""
        return FanoutStats(
            subscribers={kind: self._kinds[kind] for kind in KINDS},
            published=self._published, deliveries=self._deliveries, drops=self._drops,
            direct_deliveries=self._direct,
            refused=self._refused, redis_reconnects=self._backend.reconnects)

    def __repr__(self) -> str:
        return f"<mhd2.fanout.Hub {type(self._backend).__name__} topics={len(self._topics)}>"


def _redis_backend(url: str) -> Backend:
    """The Redis Streams backend for *url* (:mod:`mhd2.fanout.redis`)."""
    from .redis import RedisBackend

    return RedisBackend(url)
