"""The Redis Streams backend: ``Hub(redis="redis://HOST:PORT/DB")``.

Every process whose hub names the same Redis shares its topics.  A topic
*name* is the stream ``mhd2:fanout:<name>`` (the prefix is configurable):

* ``topic.publish`` is ``XADD <stream> MAXLEN ~ <history> * [e <event>] d
  <data>``; the message id is the entry id Redis gives (``"<ms>-<seq>"``),
  returned at once.  The message reaches this process's subscribers like
  everyone else's: through the reader, so every process sees the stream's
  one order.
* **One** reader task per process and hub (:meth:`RedisBackend.run`) waits
  with ``XREAD BLOCK`` on the streams of every topic followed here, from
  the last id it delivered per stream, and hands every entry, in order, to
  the hub's local fan-out.
* A topic followed here for the first time takes its history from the
  stream (``XREVRANGE + - COUNT <history + 1>``: the one before the history
  marks where ``truncated`` begins) before the reader reads on: topics made
  before the hub starts are loaded before ``async with hub`` returns, later
  ones within one round trip.  The history is not news: it is not fanned
  out, and a subscriber that joined meanwhile "from the next message" waits
  for the next one after it (``Topic._backfill``).
* Redis going away: ``publish`` raises
  :class:`~mhd2.fanout.FanoutUnavailable` (within *publish_timeout*
  seconds at most); the reader logs one WARNING (at most one per
  :data:`OUTAGE_LOG_INTERVAL`), tries again with exponential back-off
  (*min_backoff*, :data:`MIN_BACKOFF` by default, doubling up to
  *max_backoff*), and when Redis answers again reads on from the last id it
  delivered: nothing still in the stream is lost.  Each recovery counts in ``hub.stats().redis_reconnects``.

Ids sort as ``(ms, seq)`` pairs (:meth:`RedisBackend.key`), never as text:
``"10-0"`` comes after ``"9-0"``.  Redis makes them from its clock and the
stream's last id, so they do not repeat after a restart of the process, or
of a Redis that kept its data; a Redis restarted empty starts again from its
clock, above the ids handed out before.

Limits: an outage during which more than the stream's ``MAXLEN ~`` messages
are published elsewhere loses, for this process's subscribers, the ones
trimmed meanwhile, without a ``truncated`` flag (Redis does not say what it
trimmed).  A cursor more than :data:`MAX_CURSOR_AHEAD_MS` ahead of this
machine's clock is refused (``400``): it cannot be an id of this Redis, and
a subscriber waiting for it would wait forever.

Needs coredis (``pip install 'mhd2[redis]'``), which runs on trio.
"""

from __future__ import annotations

import logging
import math
import re
import time
from typing import TYPE_CHECKING, Any

import trio

from ..errors import UsageError
from .backend import Backend, Feed
from .errors import FanoutUnavailable

if TYPE_CHECKING:
    from coredis import Redis

    from .topic import Topic

__all__ = [
    "BLOCK_MS",
    "DEFAULT_PREFIX",
    "MAX_CURSOR_AHEAD_MS",
    "MIN_BACKOFF",
    "OUTAGE_LOG_INTERVAL",
    "READ_COUNT",
    "RedisBackend",
]

log = logging.getLogger("mhd2.fanout")

#: Stream keys are this prefix plus the topic's name.
DEFAULT_PREFIX = "mhd2:fanout:"
#: One ``XREAD BLOCK`` waits at most this long (ms) before it is issued again;
#: a server that does not answer within this plus *publish_timeout* is taken
#: as gone (a half-open connection).
BLOCK_MS = 10_000
#: Entries one ``XREAD`` returns per stream at most (``COUNT``).
READ_COUNT = 1000
#: First pause (seconds) after a failed read; it doubles up to *max_backoff*.
MIN_BACKOFF = 0.05
#: An outage is logged at most once per this many seconds (with a count).
OUTAGE_LOG_INTERVAL = 30.0
#: How far (ms) ahead of this machine's clock a cursor may be.
MAX_CURSOR_AHEAD_MS = 3_600_000
#: Largest part of an id: Redis ids are two unsigned 64-bit numbers.
_U64 = (1 << 64) - 1
_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
#: The stream fields: ``d`` the data, ``e`` the event (absent: none).
_DATA = b"d"
_EVENT = b"e"


def _reason(exc: BaseException) -> str:
    """What went wrong, in one line (the first leaf of exception groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _redact(url: str) -> str:
    """*url* without a password (for messages and logs)."""
    return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", url)


def _text(value: Any) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)


def _entry(entry: Any) -> tuple[str, str | None, bytes] | None:
    """A stream entry as ``(id, event, data)``; ``None`` if a hub did not write it."""
    fields = entry.field_values
    data = fields.get(_DATA)
    if not isinstance(data, bytes):
        return None
    event = fields.get(_EVENT)
    return (_text(entry.identifier),
            event.decode("utf-8", "replace") if isinstance(event, bytes) else None, data)


class _TopicState:
    """What the reader knows of one followed topic."""

    __slots__ = ("key", "last", "loaded", "topic")

    def __init__(self, topic: Topic, key: bytes) -> None:
        self.topic = topic
        self.key = key
        #: The id of the last entry delivered (the ``XREAD`` position).
        self.last = "0-0"
        #: The history was taken from the stream (``XREVRANGE``).
        self.loaded = False


class RedisBackend(Backend):
    """Topics in Redis Streams, shared by every process naming the same Redis.

    Made by ``Hub(redis=url)``; make one yourself for other options and pass
    it as ``Hub(backend=...)``.

    Args:
        url: ``redis://[:PASSWORD@]HOST:PORT/DB``, ``rediss://...`` (TLS) or
            ``unix:///path/to/socket?db=N``.
        prefix: stream keys are *prefix* + topic name.
        publish_timeout: seconds ``publish`` waits for Redis at most (then
            :class:`~mhd2.fanout.FanoutUnavailable`); also how long after
            ``BLOCK`` ms an unanswered ``XREAD`` is given up.
        min_backoff: the reader's first pause (seconds) after a failed
            read; it doubles at each failure up to *max_backoff*.
        max_backoff: longest pause (seconds) between the reader's attempts
            while Redis cannot be reached.
        block_ms: one ``XREAD BLOCK``'s wait (ms).

    Raises:
        UsageError: coredis is not installed, or a bad URL or number.
    """

    ahead_is_lag = True

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX, publish_timeout: float = 5.0,
                 min_backoff: float = MIN_BACKOFF, max_backoff: float = 5.0,
                 block_ms: int = BLOCK_MS) -> None:
        try:
            import coredis
        except ImportError:
            raise UsageError("Hub(redis=...) needs coredis: pip install 'mhd2[redis]'") from None
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise UsageError(f"Hub(redis=...) wants a redis://HOST:PORT/DB URL, not {url!r}")
        for name, value in (("publish_timeout", publish_timeout), ("min_backoff", min_backoff),
                            ("max_backoff", max_backoff)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                    0 < value < math.inf):
                raise UsageError(f"{name} must be seconds > 0, not {value!r}")
        if isinstance(block_ms, bool) or not isinstance(block_ms, int) or block_ms <= 0:
            raise UsageError(f"block_ms must be an int > 0, not {block_ms!r}")
        if not isinstance(prefix, str):
            raise UsageError(f"prefix must be a str, not {prefix!r}")
        try:
            # No retries inside coredis: XADD is not idempotent (a retry after
            # a lost reply would publish twice); the reader has its own back-off.
            self._client: Redis[bytes] = coredis.Redis.from_url(
                url, decode_responses=False, retry_policy=coredis.retry.NoRetryPolicy(),
                connect_timeout=publish_timeout)
        except ValueError as exc:
            raise UsageError(f"bad Redis URL {_redact(url)!r}: {exc}") from None
        self.url = _redact(url)
        self.prefix = prefix
        self.publish_timeout = float(publish_timeout)
        self.min_backoff = float(min_backoff)
        self.max_backoff = max(float(max_backoff), self.min_backoff)
        self.block_ms = block_ms
        self._topics: dict[bytes, _TopicState] = {}
        self._by_topic: dict[Topic, _TopicState] = {}
        #: Cancelled to interrupt the reader's ``XREAD`` (a topic to load).
        self._read_scope: trio.CancelScope | None = None
        self._wakeup = trio.Event()
        self._down = False
        self._failures = 0
        self._logged_at = -math.inf

    # -- ids ------------------------------------------------------------------------

    def key(self, message_id: str) -> Any:
        """``(ms, seq)``: ids compare as numbers, not as text."""
        ms, _, seq = message_id.partition("-")
        return (int(ms), int(seq or 0))

    def parse_cursor(self, text: str) -> str:
        match = _ID.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError("the cursor must be a message id as this server sends them "
                             "(like 1712345678901-0)")
        ms, seq = int(match[1]), int(match[2])
        if ms > _U64 or seq > _U64:
            raise ValueError("the cursor's numbers are too large for a message id")
        if ms > time.time_ns() // 1_000_000 + MAX_CURSOR_AHEAD_MS:
            raise ValueError("the cursor is an id from the future, not one this server sent")
        return f"{ms}-{seq}"

    def origin(self) -> str:
        return "0-0"

    # -- topics and publishing ----------------------------------------------------------------

    def follow(self, feed: Feed, topic: Topic) -> None:
        """Read *topic*'s stream from now on (its history first)."""
        key = (self.prefix + topic.name).encode("utf-8")
        state = _TopicState(topic, key)
        self._topics[key] = state
        self._by_topic[topic] = state
        self._interrupt()

    async def append(self, feed: Feed, topic: Topic, event: str | None, data: bytes) -> str:
        """``XADD``; the reader delivers the message.

        Raises:
            FanoutUnavailable: Redis did not take it within *publish_timeout*.
        """
        import coredis

        state = self._by_topic[topic]
        fields: dict[bytes, bytes] = {}
        if event is not None:
            fields[_EVENT] = event.encode("utf-8")
        fields[_DATA] = data
        try:
            with trio.fail_after(self.publish_timeout):
                ident = await self._client.xadd(
                    state.key, fields, trim_strategy=coredis.PureToken.MAXLEN,
                    threshold=topic.history, trim_operator=coredis.PureToken.APPROXIMATELY)
        except Exception as exc:  # coredis' ConnectionError, OSError, TooSlowError, a group ...
            reason = (f"no answer in {self.publish_timeout:g} s"
                      if isinstance(exc, trio.TooSlowError) else _reason(exc))
            raise FanoutUnavailable(
                f"could not publish on topic {topic.name!r}: Redis at {self.url} did not take "
                f"the message ({reason}); nothing was published") from None
        if ident is None:  # pragma: no cover - only with NOMKSTREAM
            raise FanoutUnavailable(f"could not publish on topic {topic.name!r}: XADD gave no id")
        return _text(ident)

    # -- the reader ---------------------------------------------------------------------------

    def _interrupt(self) -> None:
        """Wake the reader (a new topic): its ``XREAD`` is cancelled and issued again."""
        self._wakeup.set()
        if self._read_scope is not None:
            self._read_scope.cancel()

    async def run(self, feed: Feed, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The process's one reader of this hub: load, then ``XREAD BLOCK``, until cancelled.

        Topics followed before the start are loaded before ``task_status.started()``
        when Redis answers within *publish_timeout*; otherwise the hub starts
        anyway and the reader keeps trying.
        """
        async with self._client:
            started = False
            backoff = self.min_backoff
            while True:
                try:
                    if self._down:  # count the reconnect once Redis answers
                        with trio.fail_after(self.publish_timeout):
                            await self._client.ping()
                        self._recovered()
                    await self._load(feed)
                    if not started:
                        started = True
                        task_status.started()
                    await self._read(feed)
                except Exception as exc:  # coredis' ConnectionError, TooSlowError, a group ...
                    self._read_scope = None
                    self._failed(exc, backoff)
                    if not started:
                        started = True
                        task_status.started()
                    await trio.sleep(backoff)
                    backoff = min(self.max_backoff, backoff * 2)
                    continue
                backoff = self.min_backoff

    async def _load(self, feed: Feed) -> None:
        """Take the history of newly followed topics from their streams (``XREVRANGE``).

        It is history, not news (``Topic._backfill``): nothing is fanned out.
        One entry more than the history is read: when the stream has it, the
        topic learns that it does not hold that one and what came before, so
        an older cursor is ``truncated``.
        """
        for state in list(self._topics.values()):
            if state.loaded:
                continue
            topic = state.topic
            with trio.fail_after(self.publish_timeout):
                entries = await self._client.xrevrange(state.key, "+", "-",
                                                       count=topic.history + 1)
            lost_before = None
            if len(entries) > topic.history:
                lost_before = _text(entries[-1].identifier)
                entries = entries[:-1]
            history: list[tuple[str, str | None, bytes]] = []
            for entry in reversed(entries):
                message = _entry(entry)
                if message is not None:
                    history.append(message)
            topic._backfill(history, lost_before=lost_before)
            if entries:
                state.last = _text(entries[0].identifier)
            elif lost_before is not None:  # pragma: no cover - only with history=0
                state.last = lost_before
            state.loaded = True

    async def _read(self, feed: Feed) -> None:
        """One ``XREAD BLOCK`` on every followed stream (or wait for a first topic)."""
        if any(not state.loaded for state in self._topics.values()):
            return  # a topic followed while loading: load it first
        self._wakeup = trio.Event()
        if not self._topics:
            await self._wakeup.wait()
            return
        streams = {state.key: state.last for state in self._topics.values()}
        with trio.CancelScope() as scope:
            self._read_scope = scope
            with trio.fail_after(self.block_ms / 1000 + self.publish_timeout):
                answer = await self._client.xread(streams, count=READ_COUNT, block=self.block_ms)
            for key, entries in (answer or {}).items():
                state = self._topics.get(key if isinstance(key, bytes) else key.encode())
                if state is not None:
                    for entry in entries:
                        self._deliver(feed, state, entry)
        self._read_scope = None

    def _deliver(self, feed: Feed, state: _TopicState, entry: Any) -> None:
        """Hand one stream entry to the hub (in order; each id once)."""
        ident = _text(entry.identifier)
        if self.key(ident) <= self.key(state.last):
            return
        state.last = ident
        message = _entry(entry)
        if message is not None:  # else: not written by a hub; read past
            feed.deliver(state.topic, *message)

    # -- outages ------------------------------------------------------------------------

    def _failed(self, exc: BaseException, backoff: float) -> None:
        """A read failed: log it (rate-limited), remember to count the recovery."""
        self._down = True
        self._failures += 1
        now = trio.current_time()
        if now - self._logged_at < OUTAGE_LOG_INTERVAL:
            return
        again = "" if self._failures == 1 else f" ({self._failures} times)"
        self._logged_at = now
        self._failures = 0
        log.warning("fan-out: Redis at %s cannot be read%s: %s; trying again within %g s",
                    self.url, again, _reason(exc), min(self.max_backoff, backoff * 2))

    def _recovered(self) -> None:
        """Redis answers again: count the reconnect, say so."""
        self._down = False
        self._failures = 0
        self._logged_at = -math.inf
        self.reconnects += 1
        log.warning("fan-out: Redis at %s answers again; reading on from the last ids seen",
                    self.url)

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()

    def __repr__(self) -> str:
        return f"<mhd2.fanout.RedisBackend {self.url} topics={len(self._topics)}>"
