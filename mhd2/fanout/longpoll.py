"""``action_long_poll``: answer with the messages after a cursor, or wait for the next one.

A poll with nothing to answer is parked (:func:`mhd2.action_suspend`); the
topic wakes it at the next message, the hub's timer task at its timeout.
The application's request callback is then called again and calls
``action_long_poll`` again: the poll is found by its request and answered.

Polls that wake for the same message at the same cursor share one reusable
:class:`~mhd2.Response` (its JSON is built once from the messages' shared
JSON items, its head once per HTTP version and second): 10,000 polls cost
one encoding.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from ..actions import Action, action_from_response, action_suspend
from ..errors import UsageError
from ..exchange import exchange_of
from ..response import Response
from ._answers import bad_cursor, over_limit, stopping
from .topic import _CACHE_BYTES, _CACHE_ENTRIES, Subscriber

if TYPE_CHECKING:
    from ..request import Request
    from .message import Message
    from .topic import Topic

__all__ = ["action_long_poll"]

#: (A tuple, not ``int | float``: that makes a new union at every call, and
#: every poll calls twice.)
_NUMBER = (int, float)


class LongPoll(Subscriber):
    """A parked long poll."""

    kind = "long_poll"
    droppable = False
    __slots__ = ()

    def wake(self) -> None:
        exchange_of(self.request).resume()

    def cut(self) -> None:
        """Never called: a poll is not droppable."""


def _answer(topic: Topic, messages: list[Message], cursor: str, truncated: bool,
            cache_key: Any) -> Response:
    """The ``200`` JSON answer (shared through the topic's cache)."""
    cache = topic._cache
    response: Response | None = cache.get(cache_key)
    if response is not None:
        return response
    body = b"".join((b'{"messages":[', b",".join(m.json() for m in messages), b'],"cursor":',
                     json.dumps(cursor).encode("ascii"),
                     b',"truncated":true}' if truncated else b"}"))
    response = Response.from_buffer_static(200, body)
    response.add_header("Content-Type", "application/json")
    _common(response, cursor)
    return _cached(topic, cache_key, response, len(body))


def _timeout_answer(topic: Topic, cursor: str) -> Response:
    """``204`` with ``X-Cursor`` (shared through the topic's cache)."""
    key = ("204", cursor)
    response: Response | None = topic._cache.get(key)
    if response is None:
        response = Response.from_empty(204)
        _common(response, cursor)
        response = _cached(topic, key, response)
    return response


def _common(response: Response, cursor: str) -> None:
    response.add_header("Cache-Control", "no-store")
    response.add_header("X-Cursor", cursor)


def _cached(topic: Topic, key: Any, response: Response, size: int = 0) -> Response:
    if len(topic._cache) < _CACHE_ENTRIES and topic._cache_bytes + size <= _CACHE_BYTES:
        response.set_options(reusable=True)
        topic._cache[key] = response
        topic._cache_bytes += size
    return response


def action_long_poll(request: Request, topic: Topic, *, cursor: str | None,
                     timeout: float = 30.0) -> Action:
    """Answer a long poll on *topic* (docs/fanout.rst).

    Messages after *cursor*: ``200``, ``application/json``, ``{"messages":
    [{"id", "event", "data"}...], "cursor": last_id}`` at once (``data`` as
    text, or base64 with ``"encoding": "base64"``; ``"truncated": true``
    when the cursor is older than the history; at most the hub's
    ``max_pending_bytes`` of data, the rest at the next poll).  Else the
    request waits for the next message (the same answer) or *timeout*
    seconds (``204`` with ``X-Cursor``).  Both carry ``X-Cursor``.

    Call it from the request callback every time it is called for the
    request: after the wait the daemon calls the callback again and this
    answers.

    Args:
        request: the request.
        topic: the topic.
        cursor: the id of the last message the client has (``None``: it
            has none and waits for the next).
        timeout: seconds to wait.

    Returns:
        The action: the answer, or a suspend.  A malformed *cursor* is
        answered ``400`` with a sentence; over a subscriber limit ``503``
        with ``Retry-After``; a graceful stop of the daemon (or the hub
        closing) answers a waiting poll ``204`` with ``X-Cursor`` at once.

    Raises:
        UsageError: *timeout* is not positive seconds, or the hub is not running.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, _NUMBER) or not (
            0 < timeout < math.inf):
        raise UsageError(f"timeout must be seconds > 0, not {timeout!r}")
    hub = topic.hub
    sub = topic._waiting.get(request)
    if sub is None:
        hub._check_running("action_long_poll")
        try:
            cursor_id, key = topic._parse(cursor)
        except ValueError as exc:
            return bad_cursor(request, str(exc).rstrip("."))
        messages, truncated = topic._retained.after(key, hub.max_pending_bytes)
        if messages or truncated:
            hub._deliveries += len(messages)
            last = messages[-1].id if messages else topic.last_id
            return action_from_response(request, _answer(
                topic, messages, last, truncated, (key, truncated)))
        if stopping(request) or hub._closing:
            return action_from_response(request, _timeout_answer(topic, cursor_id))
        sub = LongPoll(topic, request, cursor_id, key, topic._retained.mark_at(key))
        if not topic._add(sub):
            return over_limit(request, topic)
        exchange = exchange_of(request)
        exchange.resume_when_stopping()
        exchange.add_end_hook(lambda: topic._remove(sub))
        topic._waiting[request] = sub
        topic._park(sub, float(timeout))
        return action_suspend(request)
    # Called again after the wait.
    key = sub.key
    messages, truncated = topic._retained.after(key, hub.max_pending_bytes)
    if messages or truncated or sub.due or sub.stopping:
        topic._remove(sub)
        if not messages and not truncated:
            return action_from_response(request, _timeout_answer(topic, sub.cursor))
        last = messages[-1].id if messages else topic.last_id
        if messages:
            sub.advance(messages)
        return action_from_response(request, _answer(topic, messages, last, truncated,
                                                     (key, truncated)))
    topic._park(sub, float(timeout))  # woken, but nothing after its cursor yet
    return action_suspend(request)
