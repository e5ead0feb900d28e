"""The chat demo: ``python -m mhd2 demo [--host H] [--port P]``.

A small chat room served by one :class:`mhd2.Daemon`, reachable three ways:
long polling, server-sent events and a WebSocket.

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
    :data:`MAX_MESSAGE_BYTES` bytes, else ``413``.
``GET /poll?since=CURSOR``
    long polling: answers at once with ``{"epoch", "messages", "last"}`` if
    there are messages after *CURSOR*; otherwise the request is parked with
    :func:`mhd2.action_suspend` until a message arrives (``200`` with JSON)
    or the poll timeout passes (``204 No Content``).  A malformed *CURSOR*
    is ``400``.
``GET /events?since=CURSOR``
    the same messages as server-sent events (``text/event-stream``, chunked):
    an ``epoch`` event first, then one ``message`` event per message, whose
    ``id:`` is its cursor (so a reconnecting ``EventSource`` sends it back
    as ``Last-Event-ID``).  A dynamic content creator that returns
    :func:`mhd2.dcc_action_suspend` whenever it has nothing to send; a
    comment line is sent as a keep-alive when nothing happened for the poll
    timeout.
``GET /ws?since=CURSOR``
    the WebSocket variant (``/?mode=ws``): first ``{"epoch", "messages",
    "last"}`` (the history after *CURSOR*, as ``/poll`` would answer), then
    every new message as a JSON text message; a JSON ``{"name": ...,
    "text": ...}`` sent on it is published like ``POST /send`` (an
    ``{"error": ...}`` message answers a bad one).

Cursors and restarts: message ids count from 1 in every run of the server,
so every answer carries the room's ``epoch`` (random, new at each start) and
a cursor is ``EPOCH:ID`` (a bare ``ID`` is taken as this run's).  A cursor
from another epoch -- a page that stayed open across a restart -- gets the
whole history and the new epoch, and the page replaces what it showed,
instead of ignoring new messages whose ids it has "already seen".

How waiting stays cheap: a parked request costs the daemon its connection
task and the room one dictionary entry.  Every wait has the same length, so
the deadlines are appended to a FIFO that is already sorted; a single timer
task (:meth:`ChatRoom.run_timers`) sleeps until the oldest deadline and
resumes whatever has expired.  Publishing a message resumes every parked
request at once and clears the FIFO.  A client that goes away while parked is
removed in :meth:`ChatRoom.request_ended` (the daemon's
``notify_request_ended``).  No threads, and no task per waiting client.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from ._demo_parts import (
    FAVICON,
    PAGE,
    Message,
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
    action_suspend,
    upload_action_from_response,
)
from .daemon import Daemon
from .dcc import (
    DCCAction,
    DCCContext,
    dcc_action_continue,
    dcc_action_continue_zc,
    dcc_action_suspend,
)
from .enums import RequestEndedCode, ValueKind
from .exchange import request_resume
from .request import Request
from .response import Response
from .websocket import ConnectionClosed, WebSocket, action_websocket

__all__ = [
    "DEFAULT_PORT",
    "FAVICON",
    "MAX_MESSAGE_BYTES",
    "POLL_SECONDS",
    "ChatRoom",
    "Message",
    "PAGE",
    "RoomUnavailable",
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


class RoomUnavailable(Exception):
    """:meth:`ChatRoom.post` could not store the message (its store is down).

    The message is one sentence for the client: it says what happened, never
    where the store is.
    """


class _Wait:
    """``request.app_context`` of a long poll or an event stream.

    Attributes:
        since: the last message id the client has.
        ticket: key in :attr:`ChatRoom._parked` while parked, else ``0``.
        expired: the wait timed out (a poll answers 204, a stream sends a
            keep-alive comment).
    """

    __slots__ = ("expired", "since", "started", "ticket")

    def __init__(self, since: int) -> None:
        self.since = since
        self.ticket = 0
        self.expired = False
        self.started = False


class ChatRoom:
    """The chat's state and its request callback.

    Args:
        poll_timeout: seconds a long poll waits before ``204`` (and the
            keep-alive interval of event streams).
        history: how many messages are kept for clients that come later.
        epoch: this run's name in cursors (default: random); pages that
            hold a cursor of another epoch reload the history.

    Use :meth:`handle` as the daemon's request callback,
    :meth:`request_ended` as its ``notify_request_ended``, and run
    :meth:`run_timers` in a nursery beside the daemon (:func:`chat_server`
    does all three).
    """

    def __init__(self, *, poll_timeout: float = POLL_SECONDS, history: int = HISTORY,
                 epoch: str | None = None) -> None:
        if not poll_timeout > 0 or math.isinf(poll_timeout):
            raise ValueError(f"poll_timeout must be a positive number of seconds, not {poll_timeout!r}")
        if epoch is not None and (not epoch or not epoch.isascii() or not epoch.isalnum()):
            raise ValueError(f"epoch must be a non-empty ASCII letters-and-digits string, not {epoch!r}")
        self.epoch = epoch if epoch is not None else secrets.token_hex(4)
        self.poll_timeout = poll_timeout
        self.messages: deque[Message] = deque(maxlen=history)
        self.last_id = 0
        # ticket -> parked request; FIFO of (deadline, ticket), sorted because
        # every wait lasts poll_timeout.
        self._parked: dict[int, Request] = {}
        self._deadlines: deque[tuple[float, int]] = deque()
        self._next_ticket = 1
        self._timer_wakeup = trio.Event()
        # since -> one reusable answer, shared by every poll that waited for
        # the same message (10,000 parked polls need one JSON encoding).
        self._poll_answers: dict[int, Response] = {}
        # Set (and replaced) at every publish: WebSocket sessions wait on it.
        self._news = trio.Event()

    # -- state -------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """How many requests (polls and event streams) are parked now."""
        return len(self._parked)

    @property
    def pending_deadlines(self) -> int:
        """Entries in the deadline FIFO (bounded by about twice :attr:`waiting`)."""
        return len(self._deadlines)

    #: ``True`` where a client may be ahead of this process (a room shared
    #: through Redis): a cursor past :attr:`last_id` in this epoch then means
    #: "not here yet, wait" instead of "from before a restart".
    ahead_is_lag = False

    def publish(self, name: str, text: str) -> Message:
        """Add a message and wake every parked poll and stream."""
        message = Message(self.last_id + 1, name, text, time.time(), self.epoch)
        self.deliver(message)
        return message

    async def post(self, name: str, text: str) -> int:
        """Publish a message from a task (a WebSocket session); returns its id.

        Raises:
            RoomUnavailable: the message could not be stored (a room kept
                elsewhere, such as Redis, is out of reach); the session tells
                the client and stays open.
        """
        return self.publish(name, text).id

    def deliver(self, message: Message) -> None:
        """Take *message* (the next one in the room's order) and wake every parked
        poll, stream and WebSocket."""
        self.last_id = message.id
        self.messages.append(message)
        self.wake()

    def wake(self) -> None:
        """Resume every parked request and WebSocket pump (news, or a new epoch)."""
        news, self._news = self._news, trio.Event()
        news.set()
        for response in self._poll_answers.values():
            response.destroy()  # sends in flight still finish
        self._poll_answers.clear()
        parked, self._parked = self._parked, {}
        self._deadlines.clear()
        for request in parked.values():
            wait = request.app_context
            if isinstance(wait, _Wait):
                wait.ticket = 0
            request_resume(request)

    def has_news(self, since: int) -> bool:
        """Whether a client at *since* gets an answer now (else it waits)."""
        return since < self.last_id if self.ahead_is_lag else since != self.last_id

    def newer_than(self, since: int) -> list[Message]:
        """The remembered messages after *since* (all of them for ``-1``, a cursor of another
        epoch, or for an id this run has not reached)."""
        if since >= self.last_id:
            return [] if since == self.last_id or self.ahead_is_lag else list(self.messages)
        return [m for m in self.messages if m.id > since]

    # -- parking --------------------------------------------------------------------

    def _park(self, request: Request, wait: _Wait) -> None:
        ticket = self._next_ticket
        self._next_ticket += 1
        wait.ticket = ticket
        wait.expired = False
        self._parked[ticket] = request
        self._deadlines.append((trio.current_time() + self.poll_timeout, ticket))
        if len(self._deadlines) == 1:
            self._timer_wakeup.set()
        elif len(self._deadlines) > 2 * len(self._parked) + 1024:
            # Many parked requests ended early: drop their stale deadlines.
            self._deadlines = deque(e for e in self._deadlines if e[1] in self._parked)

    def request_ended(self, request: Request, code: RequestEndedCode) -> None:
        """``notify_request_ended``: forget a request that was parked (client gone, stop ...)."""
        wait = request.app_context
        if isinstance(wait, _Wait) and wait.ticket:
            self._parked.pop(wait.ticket, None)
            wait.ticket = 0
            if not self._parked:
                self._deadlines.clear()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Everything the room runs beside the daemon (here: :meth:`run_timers`)."""
        await self.run_timers(task_status=task_status)

    async def run_timers(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Resume parked requests whose wait has expired; runs until cancelled.

        One task for all waits: it sleeps until the oldest deadline in the
        FIFO (or until something is parked), then resumes every expired one.
        """
        task_status.started()
        while True:
            if not self._deadlines:
                self._timer_wakeup = trio.Event()
                await self._timer_wakeup.wait()
                continue
            await trio.sleep_until(self._deadlines[0][0])
            now = trio.current_time()
            deadlines = self._deadlines
            while deadlines and deadlines[0][0] <= now:
                _, ticket = deadlines.popleft()
                request = self._parked.pop(ticket, None)
                if request is not None:
                    wait = request.app_context
                    if isinstance(wait, _Wait):
                        wait.ticket = 0
                        wait.expired = True
                    request_resume(request)

    # -- the request callback --------------------------------------------------------

    def handle(self, request: Request) -> Action:
        """The daemon's request callback."""
        path = request.path
        method = request.method
        if path == "/poll":
            return self._allow(request, ("GET", "HEAD")) or self._poll(request)
        if path == "/events":
            return self._allow(request, ("GET",)) or self._events(request)
        if path == "/ws":
            since = self._since(request)
            if isinstance(since, str):
                return action_from_response(request, text_response(400, since))
            return action_websocket(request, self._ws_session(since),
                                    max_message_size=MAX_MESSAGE_BYTES)
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

    def _cursor(self, text: str) -> int | None:
        """The message id in a cursor ``[EPOCH:]ID``: ``-1`` for another epoch, ``None`` if bad."""
        epoch, colon, number = text.rpartition(":")
        if not number.isascii() or not number.isdigit():
            return None
        if colon and epoch != self.epoch:
            return -1  # a client from before a restart: it gets the whole history
        return int(number)

    def _since(self, request: Request) -> int | str:
        """Where the client is: from ``Last-Event-ID`` (an ``EventSource`` reconnecting)
        or ``?since=``; ``0`` (everything) without either; an error text for a bad ``since``.

        A bad ``Last-Event-ID`` is not an error but a fresh start: an
        ``EventSource`` that got a non-200 answer would give up for good.
        """
        header = request.get_value(ValueKind.HEADER, "Last-Event-ID")
        if header:
            cursor = self._cursor(header)
            return -1 if cursor is None else cursor
        text = request.get_value(ValueKind.GET_ARGUMENT, "since")
        if not text:
            return 0
        cursor = self._cursor(text)
        if cursor is None:
            return ("400 Bad Request: 'since' must be a message id (a non-negative integer),"
                    f" optionally after 'EPOCH:', not {text!r}\n")
        return cursor

    def _batch(self, since: int) -> dict[str, Any]:
        """``{"epoch", "messages", "last"}``: what a client at *since* has not seen."""
        return {"epoch": self.epoch, "messages": [m.as_json() for m in self.newer_than(since)],
                "last": self.last_id}

    def _poll(self, request: Request) -> Action:
        wait = request.app_context
        if not isinstance(wait, _Wait):  # first call
            since = self._since(request)
            if isinstance(since, str):
                return action_from_response(request, text_response(400, since))
            wait = _Wait(since)
            request.app_context = wait
        if self.has_news(wait.since):  # news, or a client from before a restart
            response = self._poll_answers.get(wait.since)
            if response is None:
                response = json_response(200, self._batch(wait.since))
                response.set_options(reusable=True)
                self._poll_answers[wait.since] = response
            return action_from_response(request, response)
        if wait.expired:
            response = Response.from_empty(204)
            response.add_header("Cache-Control", "no-store")
            return action_from_response(request, response)
        self._park(request, wait)
        return action_suspend(request)

    def _events(self, request: Request) -> Action:
        since = self._since(request)
        if isinstance(since, str):
            return action_from_response(request, text_response(400, since))
        wait = _Wait(since)
        request.app_context = wait

        def creator(ctx: DCCContext, pos: int, buf: memoryview) -> DCCAction:
            parts: list[bytes] = []
            if not wait.started:
                # Every (re)connection starts with the epoch: a page that
                # knew another one drops what it shows and takes the history.
                wait.started = True
                hello = json.dumps({"epoch": self.epoch, "last": self.last_id})
                parts.append(b"retry: %d\n\nevent: epoch\ndata: %s\n\n"
                             % (SSE_RETRY_MS, hello.encode()))
            for message in self.newer_than(wait.since):
                line = json.dumps(message.as_json())
                parts.append(f"id: {message.cursor}\nevent: message\ndata: {line}\n\n".encode())
            wait.since = max(wait.since, self.last_id) if self.ahead_is_lag else self.last_id
            if not parts and wait.expired:
                wait.expired = False
                parts.append(b": keep-alive\n\n")
            if not parts:
                self._park(request, wait)
                return dcc_action_suspend(ctx)
            data = b"".join(parts)
            if len(data) <= len(buf):
                buf[: len(data)] = data
                return dcc_action_continue(ctx, len(data))
            return dcc_action_continue_zc(ctx, 0, [data])

        response = Response.from_callback(200, None, creator)
        response.add_header("Content-Type", "text/event-stream")
        response.add_header("Cache-Control", "no-cache")
        response.add_header("X-Accel-Buffering", "no")
        return action_from_response(request, response)

    def _ws_session(self, since: int) -> Callable[[WebSocket], Awaitable[None]]:
        """``GET /ws``: the history after *since*, then every new message as JSON;
        JSON messages in are published.

        The first message is ``{"epoch", "messages", "last"}``, as ``/poll``
        answers.  One task sends what is new while this one receives; a
        received ``{"name": ..., "text": ...}`` is published like ``POST
        /send``, a malformed one is answered with ``{"error": ...}``, and so
        is one the room cannot store now (:class:`RoomUnavailable`).
        """

        async def session(ws: WebSocket) -> None:
            hello = self._batch(since)
            last = max(since, self.last_id) if self.ahead_is_lag else self.last_id

            async def pump() -> None:
                nonlocal last
                await ws.send(json.dumps(hello))
                epoch = self.epoch
                while True:
                    news = self._news
                    if self.epoch != epoch:  # the room started over (Redis lost it)
                        epoch, last = self.epoch, -1
                    for message in self.newer_than(last):
                        await ws.send(json.dumps(message.as_json()))
                        last = message.id
                    await news.wait()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(pump)
                try:
                    while True:
                        data = await ws.receive()
                        raw = data.encode("utf-8") if isinstance(data, str) else data
                        problem, name, text = parse_fields(raw, "application/json", None)
                        if problem:
                            await ws.send(json.dumps({"error": problem.strip()}))
                        else:
                            try:
                                await self.post(name, text)
                            except RoomUnavailable as exc:  # the socket stays open
                                await ws.send(json.dumps({"error": str(exc)}))
                except ConnectionClosed:
                    pass
                nursery.cancel_scope.cancel()

        return session

    def _on_message(self, request: Request, data: bytes) -> UploadAction:
        problem, name, text = parse_message(request, data)
        if problem:
            return upload_action_from_response(request, text_response(400, problem))
        message = self.publish(name, text)
        return upload_action_from_response(request, json_response(200, {"id": message.id}))


@asynccontextmanager
async def chat_server(
    room: ChatRoom | None = None, **options: Any
) -> AsyncIterator[tuple[Daemon, ChatRoom]]:
    """Run the chat (daemon + timer task) for the duration of the block.

    *options* go to :class:`mhd2.Daemon` (``host``, ``port`` ...); the
    room's :meth:`~ChatRoom.request_ended` is chained before any
    ``notify_request_ended`` given.  Leaving the block stops the daemon
    gracefully: parked polls are answered ``503``, open event streams are
    closed.
    """
    room = room if room is not None else ChatRoom()
    notify = options.pop("notify_request_ended", None)

    def request_ended(request: Request, code: RequestEndedCode) -> None:
        room.request_ended(request, code)
        if notify is not None:
            notify(request, code)

    async with trio.open_nursery() as nursery:
        await nursery.start(room.run)
        async with Daemon(room.handle, notify_request_ended=request_ended, **options) as daemon:
            yield daemon, room
        nursery.cancel_scope.cancel()


async def serve(host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the demo until cancelled (``task_status`` gets the real port)."""
    async with chat_server(host=host, port=port) as (daemon, _):
        task_status.started(daemon.port)
        await trio.sleep_forever()
