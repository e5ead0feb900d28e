"""Where a hub's messages are stored and where new ones come from.

A :class:`~mhd2.fanout.Hub` fans messages out to the subscribers of *this*
process; its :class:`Backend` decides where messages live and how the ones
published elsewhere arrive:

* :class:`MemoryBackend` (``Hub()``): the topic's own history is the
  store; :meth:`Backend.append` hands the new message to the local fan-out
  before it returns;
* a Redis Streams backend (``Hub(redis=...)``): ``append`` is ``XADD
  <topic> MAXLEN ~ <history> * event E data D`` and returns the entry id;
  **one** reader per process per hub (:meth:`Backend.run`) does ``XREAD
  BLOCK`` over every followed topic and hands each entry, in stream order,
  to :meth:`Feed.deliver` -- including the process's own messages, so every
  process sees one order.  At start and after a reconnect it resumes from
  the last id it delivered per topic (``XRANGE``/``XREAD`` from there), and
  :meth:`Backend.follow` registers a topic with the reader, which fills its
  local history with ``XREVRANGE COUNT history`` through
  ``topic._backfill(entries, lost_before=id)`` (history, not news: nothing
  is fanned out, subscribers waiting "from the next message" move to the
  newest entry) before it reads on from there; reconnects back off and are counted
  (:attr:`Backend.reconnects`).  When Redis cannot be reached ``append``
  raises :class:`~mhd2.fanout.FanoutUnavailable` with a sentence.

The local fan-out (subscribers, cursors against the local history, drops,
timers) is the same for every backend: a backend only stores and feeds.

Contract of a backend (all called in the hub's trio run):

``key(message_id) -> sortable``
    the sort key of an id (in-process ids sort as ``str``; Redis ids
    ``"ms-seq"`` as ``(ms, seq)``).
``parse_cursor(text) -> str``
    the cursor a client sent, checked; ``ValueError`` with a sentence if
    it is not an id of this backend (the client gets ``400``).
``origin() -> str``
    an id before every message this process can know (``"0-0"`` for
    Redis): a cursor to start from when there is no message yet.
``ahead_is_lag``
    ``True`` when a cursor past the local newest message is a message on
    its way (another process published it and the reader has not read it
    yet): the subscriber then waits instead of replaying the history.
``follow(feed, topic)``
    start feeding *topic* (called once per topic, by ``hub.topic``).
``async append(feed, topic, event, data) -> str``
    store one message, return its id.
``async run(feed, task_status)``
    the reader loop (returns at once for :class:`MemoryBackend`); runs in
    the hub's nursery until cancelled.
``reconnects``
    how often the reader reconnected (``hub.stats()``).
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any, Protocol

import trio

if TYPE_CHECKING:
    from .topic import Topic

__all__ = ["Backend", "Feed", "MemoryBackend"]


class Feed(Protocol):
    """What a backend calls back into (the hub)."""

    def deliver(self, topic: Topic, message_id: str, event: str | None, data: bytes) -> None:
        """A new message of *topic*, in order: add it to the history and fan it out."""


class Backend:
    """The interface a hub's storage implements (see the module docstring)."""

    ahead_is_lag: bool = False
    reconnects: int = 0

    def key(self, message_id: str) -> Any:
        """The sort key of *message_id*."""
        raise NotImplementedError

    def parse_cursor(self, text: str) -> str:
        """*text* as a cursor of this backend.

        Raises:
            ValueError: it is not one (the message is a sentence for the client).
        """
        raise NotImplementedError

    def origin(self) -> str:
        """An id before every message this process can know."""
        raise NotImplementedError

    def follow(self, feed: Feed, topic: Topic) -> None:
        """Start feeding *topic* to *feed*."""

    async def append(self, feed: Feed, topic: Topic, event: str | None, data: bytes) -> str:
        """Store one message; return its id.

        Raises:
            FanoutUnavailable: the store cannot be reached.
        """
        raise NotImplementedError

    async def run(self, feed: Feed, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The reader loop: feed messages published elsewhere until cancelled."""
        task_status.started()

    async def aclose(self) -> None:
        """Release connections (after :meth:`run` ended)."""
        await trio.lowlevel.checkpoint()


#: In-process ids: 14 hex digits of the process's start time in microseconds,
#: a dash, 10 hex digits of a counter.  Fixed width, so they sort as ``str``;
#: the start time makes them new after a restart.
_MEMORY_ID = re.compile(r"[0-9a-f]{14}-[0-9a-f]{10}")


class MemoryBackend(Backend):
    """Messages live in this process only (``Hub()``).

    Ids are ``"<start time µs, 14 hex>-<counter, 10 hex>"``: they sort as
    strings in publication order and do not repeat after a restart of the
    process (its start time differs).

    Args:
        start_us: the prefix's time in microseconds (default: now).
    """

    ahead_is_lag = False

    def __init__(self, start_us: int | None = None) -> None:
        start = time.time_ns() // 1000 if start_us is None else start_us
        self._prefix = f"{start:014x}"[-14:]
        self._count = 0

    def key(self, message_id: str) -> Any:
        return message_id

    def parse_cursor(self, text: str) -> str:
        if not isinstance(text, str) or not _MEMORY_ID.fullmatch(text):
            raise ValueError("the cursor must be a message id as this server sends them "
                             "(like 0189abcdef0123-0000000001)")
        return text

    def origin(self) -> str:
        return f"{self._prefix}-{0:010x}"

    async def append(self, feed: Feed, topic: Topic, event: str | None, data: bytes) -> str:
        self._count += 1
        message_id = f"{self._prefix}-{self._count:010x}"
        feed.deliver(topic, message_id, event, data)
        await trio.lowlevel.checkpoint()
        return message_id
