"""A topic's history: the messages it retains, and where a cursor stands in them.

:class:`History` keeps the newest ``history`` messages of a topic, oldest
first, with the marks a cursor is compared to: the *tip* (the newest message,
or the backend's origin before any), the *floor* (a cursor below it may have
lost messages: the newest message evicted, or the origin -- from before this
process) and the running byte total each :class:`~mhd2.fanout.Message`
records as its ``end`` (how far behind a subscriber is, in bytes).

Nothing here knows subscribers, the hub or a clock: keys are the backend's
sort keys, given by the caller.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from .message import Message

__all__ = ["History"]


class History:
    """The retained messages of one topic (see the module docstring).

    Args:
        limit: how many messages are kept (the topic's ``history``).
        origin: the backend's origin id (a cursor before every message).
        origin_key: its sort key.
        ahead_is_lag: a cursor ahead of the tip is this process lagging
            behind the store (nothing to send yet), not an unknown one.

    Attributes:
        messages: the retained messages, oldest first.
        floor: a cursor whose key is below this may have lost messages.
        tip_id: the id of the newest message (or the origin).
        tip_key: its sort key.
        total: bytes published up to the newest message.
    """

    __slots__ = ("ahead_is_lag", "floor", "limit", "messages", "tip_id", "tip_key", "total")

    def __init__(self, limit: int, origin: str, origin_key: Any, *, ahead_is_lag: bool) -> None:
        self.limit = limit
        self.ahead_is_lag = ahead_is_lag
        self.messages: deque[Message] = deque()
        self.floor: Any = origin_key
        self.tip_id = origin
        self.tip_key: Any = origin_key
        self.total = 0

    def append(self, message_id: str, event: str | None, data: bytes, key: Any) -> Message:
        """Add the newest message (evicting the oldest beyond the limit); return it."""
        self.total += len(data)
        message = Message(message_id, event, data, key=key, end=self.total)
        self.messages.append(message)
        self._evict()
        self.tip_id = message_id
        self.tip_key = key
        return message

    def after(self, key: Any, max_bytes: float) -> tuple[list[Message], bool]:
        """Retained messages after *key* (at least one, then up to *max_bytes* of
        data), and whether messages after *key* may be missing."""
        messages = self.messages
        if key == self.tip_key:
            return [], False
        if key > self.tip_key:
            if self.ahead_is_lag:
                return [], False
            start, truncated = 0, True
        elif key < self.floor:
            start, truncated = 0, True
        else:
            # Usually the cursor is near the tip: look from the end.
            start = len(messages)
            while start > 0 and messages[start - 1].key > key:
                start -= 1
            truncated = False
        out: list[Message] = []
        size = 0
        for index in range(start, len(messages)):
            message = messages[index]
            size += len(message.data)
            if out and size > max_bytes:
                break
            out.append(message)
        return out, truncated

    def mark_at(self, key: Any) -> int:
        """The byte total at the message *key* (for a subscriber joining there)."""
        for message in reversed(self.messages):
            if message.key <= key:
                return message.end
        return self.total - sum(len(m.data) for m in self.messages)

    def forget_up_to(self, message_id: str, key: Any) -> None:
        """The messages up to *message_id* (sort key *key*) are not retained here:
        a cursor older than it is answered as truncated."""
        if key > self.floor:
            self.floor = key
        if key > self.tip_key:
            self.tip_id, self.tip_key = message_id, key

    def backfill(self, entries: list[tuple[str, str | None, bytes]],
                 key: Callable[[str], Any]) -> bool:
        """Put *entries* (``(id, event, data)``, oldest first, all older than every
        message retained) before the retained messages.

        Byte marks count up to the newest message; the backfill sits before
        the oldest one held, so its marks count back from there.

        Returns:
            Whether the tip moved (nothing was retained before): cursors at the
            old tip are now at the new one.
        """
        if not entries:
            return False
        messages = self.messages
        had_messages = bool(messages)
        first = messages[0] if messages else None
        end = first.end - len(first.data) if first is not None else self.total
        filled: list[Message] = []
        for message_id, event, data in reversed(entries):
            filled.append(Message(message_id, event, data, key=key(message_id), end=end))
            end -= len(data)
        messages.extendleft(filled)  # extendleft reverses: oldest first again
        self._evict()
        if had_messages:
            return False
        tip = messages[-1]
        self.tip_id, self.tip_key = tip.id, tip.key
        return True

    def _evict(self) -> None:
        """Drop the oldest messages beyond the limit; the floor is the last one dropped."""
        messages = self.messages
        while len(messages) > self.limit:
            self.floor = messages.popleft().key
