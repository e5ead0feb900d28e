"""The chat demo: ``python -m mhd2 demo [--host H] [--port P] [--redis URL]``.

A small chat room served by one :class:`mhd2.Daemon`, reachable three ways:
long polling, server-sent events and a WebSocket.  The room is one topic of
a :class:`mhd2.fanout.Hub` (:doc:`/fanout`): in this process, or with
``--redis`` a Redis Stream shared by every demo process naming that Redis.
Each message is published once, as the JSON text ``{"name", "text",
"time"}`` with the event name ``message``; the hub builds each delivery
kind's bytes once and wakes every waiting client.

``GET /``
    one HTML page with a little JavaScript (no build step, no external
    assets; ``mhd2/demo_page.html``); ``/?mode=sse`` uses server-sent events
    and ``/?mode=ws`` a WebSocket instead of long polling; the page links the
    three.
``GET /favicon.ico``
    the page's icon (also inlined in the page), so browsers get no 404.
``POST /send``
    post a message: a JSON object ``{"name": ..., "text": ...}`` (or plain
    text, the name then comes from ``?name=``).  At most
    :data:`MAX_MESSAGE_BYTES` bytes, else ``413``.  Answered ``{"id": ID}``;
    ``503`` with ``Retry-After`` and a fixed sentence when the room's store
    (Redis) cannot take it within *post_timeout* seconds.
``GET /poll?since=CURSOR``
    long polling (:func:`mhd2.fanout.action_long_poll`): answers at once
    with ``{"messages": [{"id", "event", "data"}...], "cursor"}`` if there
    are messages after *CURSOR* (``"truncated": true`` when *CURSOR* is older
    than the history, or from before a restart of the room); otherwise the
    request is parked until a message arrives or the poll timeout passes
    (``204`` with ``X-Cursor``).  Without *CURSOR*: the whole history.  A
    malformed *CURSOR* is ``400``.
``GET /events?since=CURSOR``
    the same messages as server-sent events (:func:`mhd2.fanout.action_sse`):
    one ``message`` event per message whose ``id:`` is its cursor, so a
    reconnecting ``EventSource`` sends it back as ``Last-Event-ID`` (which
    wins over ``since``; a garbled one starts from the whole history, as an
    ``EventSource`` gives up on an error); a comment line when nothing
    happened for the poll timeout.
``GET /ws?since=CURSOR``
    the WebSocket variant (:func:`mhd2.fanout.action_websocket_subscribe`):
    the history after *CURSOR*, then every new message, each as one JSON text
    message ``{"id", "event", "data"}``; a JSON ``{"name": ..., "text": ...}``
    sent on it is published like ``POST /send`` (an ``{"error": ...}``
    message answers a bad one, or one the store cannot take; the socket
    stays open).

Cursors are the hub's message ids: they sort in publication order and do
not repeat after a restart (in-process ids start with the start time; Redis
ids are the stream's), so a page that stayed open across a restart simply
goes on.  On a graceful stop (or a worker recycle) parked polls answer
``204`` with ``X-Cursor``, event streams get a last ``retry:``, WebSockets
close with 1012, and every page comes back with its cursor.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from ._demo_parts import (
    FAVICON,
    PAGE,
    json_response,
    parse_fields,
    parse_message,
    text_response,
)
from .actions import (
    Action,
    UploadAction,
    action_from_response,
    action_process_upload_full,
    upload_action_from_response,
)
from .daemon import Daemon
from .fanout import (
    FanoutUnavailable,
    Hub,
    action_long_poll,
    action_sse,
    action_websocket_subscribe,
)
from .fanout.backend import Backend
from .request import Request
from .response import Response
from .websocket import WebSocket

__all__ = [
    "DEFAULT_PORT",
    "FAVICON",
    "MAX_MESSAGE_BYTES",
    "PAGE",
    "POLL_SECONDS",
    "TOPIC",
    "UNAVAILABLE",
    "Chat",
    "chat_server",
    "serve",
]

#: The demo's default port (the tutorial's).
DEFAULT_PORT = 8888
#: Largest ``POST /send`` body accepted; more is ``413 Content Too Large``.
MAX_MESSAGE_BYTES = 4096
#: How long a long poll waits before ``204``; also the SSE keep-alive interval.
POLL_SECONDS = 30.0
#: How many messages the room remembers for newcomers.
HISTORY = 200
#: ``retry:`` sent to EventSource clients (milliseconds before a reconnect).
SSE_RETRY_MS = 2000
#: The room's topic (with ``--redis``: the stream ``mhd2:fanout:chat``).
TOPIC = "chat"
#: How long a message waits for the store (Redis) to take it before the
#: client is told it was not sent (seconds).
POST_TIMEOUT = 5.0
#: What a client is told when the store cannot take its message: a fixed
#: sentence, never Redis' address or the driver's error (those are logged).
UNAVAILABLE = "the chat cannot store messages right now; try again in a moment"
#: ``Retry-After`` of the ``503`` answered then (seconds).
RETRY_AFTER = 5
#: A failure to store messages is logged at most once per this many seconds.
OUTAGE_LOG_INTERVAL = 30.0

log = logging.getLogger("mhd2.demo")


class _OutageLog:
    """Failures to store a message: a WARNING sentence (with a count) at most
    once per :data:`OUTAGE_LOG_INTERVAL`, never an ERROR or a traceback -- an
    outage of Redis is expected operation, and it lasts."""

    __slots__ = ("_count", "_last")

    def __init__(self) -> None:
        self._count = 0
        self._last = -math.inf

    def failed(self, exc: FanoutUnavailable) -> None:
        self._count += 1
        now = trio.current_time()
        if now - self._last < OUTAGE_LOG_INTERVAL:
            return
        again = "" if self._count == 1 else (
            f" ({self._count} times in the last {OUTAGE_LOG_INTERVAL:.0f} s)")
        self._count = 0
        self._last = now
        log.warning("storing a message failed%s: %s; the sender is told it was not sent",
                    again, exc)


class Chat:
    """The chat: one topic of a hub, and the request callback.

    Args:
        redis: keep the room in this Redis (``redis://HOST:PORT/DB``): every
            process naming it serves one room.  ``None``: in this process.
        backend: a :class:`mhd2.fanout.Backend` instead (tests); excludes *redis*.
        poll_timeout: seconds a long poll waits before ``204`` (and the
            keep-alive interval of event streams).
        history: how many messages are kept for clients that come later.
        post_timeout: seconds a message waits for Redis to take it.

    Run :attr:`hub` around the daemon whose request callback is
    :meth:`handle` (:func:`chat_server` does both).

    Raises:
        ValueError: a bad *poll_timeout*.
        mhd2.UsageError: a bad Redis URL, or coredis missing.
    """

    def __init__(self, *, redis: str | None = None, backend: Backend | None = None,
                 poll_timeout: float = POLL_SECONDS, history: int = HISTORY,
                 post_timeout: float = POST_TIMEOUT) -> None:
        if not poll_timeout > 0 or math.isinf(poll_timeout):
            raise ValueError(f"poll_timeout must be a positive number of seconds, not {poll_timeout!r}")
        if redis is not None:
            from .fanout.redis import RedisBackend

            backend = RedisBackend(redis, publish_timeout=post_timeout)
        # The JSON of a message: its text, a short name and escapes (at most 6
        # bytes for a control character).
        self.hub = Hub(backend=backend, max_message_size=6 * MAX_MESSAGE_BYTES + 1024)
        self.topic = self.hub.topic(TOPIC, history=history)
        #: A cursor before every message: the topic's last id before anything
        #: was published or loaded (the hub does not run yet).
        self.origin = self.topic.last_id
        self.poll_timeout = poll_timeout
        self._outage = _OutageLog()

    async def post(self, name: str, text: str) -> str:
        """Publish a message; returns its id.

        Raises:
            FanoutUnavailable: the store (Redis) did not take it (logged
                here: a rate-limited WARNING).
        """
        data = json.dumps({"name": name, "text": text, "time": time.time()},
                          ensure_ascii=False)
        try:
            return await self.topic.publish(data, event="message")
        except FanoutUnavailable as exc:
            self._outage.failed(exc)
            raise

    # -- the request callback --------------------------------------------------------

    def handle(self, request: Request) -> Action:
        """The daemon's request callback."""
        path = request.path
        method = request.method
        if path == "/poll":
            return self._allow(request, ("GET", "HEAD")) or action_long_poll(
                request, self.topic, cursor=request.args.get("since") or self.origin,
                timeout=self.poll_timeout)
        if path == "/events":
            return self._allow(request, ("GET",)) or self._events(request)
        if path == "/ws":
            return action_websocket_subscribe(
                request, self.topic, cursor=request.args.get("since") or self.origin,
                on_message=self._ws_message)
        if path == "/send":
            return self._allow(request, ("POST",)) or action_process_upload_full(
                request, MAX_MESSAGE_BYTES, self._on_message
            )
        if path in ("/", "/index.html"):
            if method not in ("GET", "HEAD"):
                return self._allow(request, ("GET", "HEAD")) or action_from_response(request, None)
            response = Response.from_buffer_static(200, PAGE)
            response.add_header("Content-Type", "text/html; charset=utf-8")
            response.add_header("Cache-Control", "no-cache")
            return action_from_response(request, response)
        if path == "/favicon.ico" and method in ("GET", "HEAD"):
            response = Response.from_buffer_static(200, FAVICON)
            response.add_header("Content-Type", "image/svg+xml")
            response.add_header("Cache-Control", "max-age=86400")
            return action_from_response(request, response)
        return action_from_response(request, text_response(404, f"404 Not Found: {path}\n"))

    @staticmethod
    def _allow(request: Request, methods: tuple[str, ...]) -> Action | None:
        if request.method in methods:
            return None
        response = text_response(405, f"405 Method Not Allowed: use {' or '.join(methods)}\n")
        response.add_header("Allow", ", ".join(methods))
        return action_from_response(request, response)

    def _events(self, request: Request) -> Action:
        """``GET /events``: ``Last-Event-ID`` (a reconnect) wins over ``?since=``.

        A garbled ``Last-Event-ID`` is not an error but a fresh start: an
        ``EventSource`` that got a non-200 answer would give up for good.
        """
        cursor = request.headers.get("Last-Event-ID")
        if cursor:
            try:
                self.topic.since(cursor)
            except ValueError:
                cursor = None
        cursor = cursor or request.args.get("since") or self.origin
        return action_sse(request, self.topic, cursor=cursor, heartbeat=self.poll_timeout,
                          retry_ms=SSE_RETRY_MS)

    async def _ws_message(self, ws: WebSocket, data: str | bytes) -> None:
        """A message from a WebSocket client: published like ``POST /send``;
        a bad one, or one the store cannot take, is answered ``{"error"}``."""
        raw = data.encode("utf-8") if isinstance(data, str) else data
        problem, name, text = parse_fields(raw, "application/json", None)
        if problem:
            await ws.send(json.dumps({"error": problem.strip()}))
            return
        try:
            await self.post(name, text)
        except FanoutUnavailable:  # the socket stays open
            await ws.send(json.dumps({"error": UNAVAILABLE}))

    async def _on_message(self, request: Request, data: bytes) -> UploadAction:
        """``POST /send``: published, answered with the message's id."""
        problem, name, text = parse_message(request, data)
        if problem:
            return upload_action_from_response(request, text_response(400, problem))
        try:
            ident = await self.post(name, text)
        except FanoutUnavailable:
            response = text_response(503, f"503 Service Unavailable: {UNAVAILABLE}\n")
            response.add_header("Retry-After", str(RETRY_AFTER))
            return upload_action_from_response(request, response)
        return upload_action_from_response(request, json_response(200, {"id": ident}))


@asynccontextmanager
async def chat_server(chat: Chat | None = None, **options: Any
                      ) -> AsyncIterator[tuple[Daemon, Chat]]:
    """Run the chat (its hub, then the daemon) for the duration of the block.

    *options* go to :class:`mhd2.Daemon` (``host``, ``port`` ...).  Leaving
    the block stops the daemon gracefully: parked polls answer ``204`` with
    ``X-Cursor``, event streams get a last ``retry:`` and end, WebSockets
    close with 1012; then the hub stops.
    """
    chat = chat if chat is not None else Chat()
    async with chat.hub, Daemon(chat.handle, **options) as daemon:
        yield daemon, chat


async def serve(host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the demo until cancelled (``task_status`` gets the real port)."""
    async with chat_server(host=host, port=port) as (daemon, _):
        task_status.started(daemon.port)
        await trio.sleep_forever()
