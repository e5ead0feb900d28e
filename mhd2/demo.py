"""The long-polling chat demo: ``python -m mhd2 demo [--host H] [--port P]``.

A small chat room served by one :class:`mhd2.Daemon`:

``GET /``
    one HTML page with a little JavaScript (no build step); ``/?mode=sse``
    uses server-sent events and ``/?mode=ws`` a WebSocket instead of long
    polling.
``POST /send``
    post a message: a JSON object ``{"name": ..., "text": ...}`` (or plain
    text, the name then comes from ``?name=``).  At most
    :data:`MAX_MESSAGE_BYTES` bytes, else ``413``.
``GET /poll?since=N``
    long polling: answers at once with the messages newer than *N* if there
    are any; otherwise the request is parked with
    :func:`mhd2.action_suspend` until a message arrives (``200`` with JSON)
    or the poll timeout passes (``204 No Content``).  A *since* that is not
    a non-negative integer is ``400``.
``GET /events?since=N``
    the same messages as server-sent events (``text/event-stream``, chunked):
    a dynamic content creator that returns :func:`mhd2.dcc_action_suspend`
    whenever it has nothing to send; a comment line is sent as a keep-alive
    when nothing happened for the poll timeout.
``GET /ws``
    the WebSocket variant (``/?mode=ws``): every new message as a JSON text
    message; a JSON ``{"name": ..., "text": ...}`` sent on it is published
    like ``POST /send`` (an ``{"error": ...}`` message answers a bad one).

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
import sys
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from .actions import (
    Action,
    DCCAction,
    DCCContext,
    UploadAction,
    action_from_response,
    action_process_upload_full,
    action_suspend,
    dcc_action_continue,
    dcc_action_continue_zc,
    dcc_action_suspend,
    upload_action_from_response,
)
from .daemon import Daemon
from .enums import RequestEndedCode, ValueKind
from .exchange import request_resume
from .request import Request
from .response import Response
from .websocket import ConnectionClosed, WebSocket, action_websocket

__all__ = [
    "DEFAULT_PORT",
    "MAX_MESSAGE_BYTES",
    "POLL_SECONDS",
    "ChatRoom",
    "Message",
    "PAGE",
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


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message; ``id`` counts up from 1."""

    id: int
    name: str
    text: str
    time: float

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "text": self.text, "time": self.time}


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


def _json_response(status: int, payload: Any) -> Response:
    response = Response.from_buffer_static(status, json.dumps(payload).encode())
    response.add_header("Content-Type", "application/json")
    response.add_header("Cache-Control", "no-store")
    return response


def _text_response(status: int, text: str) -> Response:
    response = Response.from_buffer_static(status, text.encode())
    response.add_header("Content-Type", "text/plain; charset=utf-8")
    return response


class ChatRoom:
    """The chat's state and its request callback.

    Args:
        poll_timeout: seconds a long poll waits before ``204`` (and the
            keep-alive interval of event streams).
        history: how many messages are kept for clients that come later.

    Use :meth:`handle` as the daemon's request callback,
    :meth:`request_ended` as its ``notify_request_ended``, and run
    :meth:`run_timers` in a nursery beside the daemon (:func:`chat_server`
    does all three).
    """

    def __init__(self, *, poll_timeout: float = POLL_SECONDS, history: int = HISTORY) -> None:
        if not poll_timeout > 0 or math.isinf(poll_timeout):
            raise ValueError(f"poll_timeout must be a positive number of seconds, not {poll_timeout!r}")
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

    def publish(self, name: str, text: str) -> Message:
        """Add a message and wake every parked poll and stream."""
        self.last_id += 1
        message = Message(self.last_id, name, text, time.time())
        self.messages.append(message)
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
        return message

    def newer_than(self, since: int) -> list[Message]:
        """The remembered messages after *since* (all of them after a server restart)."""
        if since >= self.last_id:
            return [] if since == self.last_id else list(self.messages)
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
            return action_websocket(request, self._ws_session, max_message_size=MAX_MESSAGE_BYTES)
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
        return action_from_response(request, _text_response(404, f"404 Not Found: {path}\n"))

    @staticmethod
    def _allow(request: Request, methods: tuple[str, ...]) -> Action | None:
        if request.method in methods:
            return None
        response = _text_response(405, f"405 Method Not Allowed: use {' or '.join(methods)}\n")
        response.add_header("Allow", ", ".join(methods))
        return action_from_response(request, response)

    @staticmethod
    def _since(request: Request) -> int | str:
        """The client's last message id, or an error text."""
        text = request.get_value(ValueKind.GET_ARGUMENT, "since")
        if text is None:
            text = request.get_value(ValueKind.HEADER, "Last-Event-ID")
        if text is None or text == "":
            return 0
        if not text.isascii() or not text.isdigit():
            return f"400 Bad Request: 'since' must be a non-negative integer, not {text!r}\n"
        return int(text)

    def _poll(self, request: Request) -> Action:
        wait = request.app_context
        if not isinstance(wait, _Wait):  # first call
            since = self._since(request)
            if isinstance(since, str):
                return action_from_response(request, _text_response(400, since))
            wait = _Wait(since)
            request.app_context = wait
        if wait.since != self.last_id:  # news (or a client from before a restart)
            response = self._poll_answers.get(wait.since)
            if response is None:
                payload = {"messages": [m.as_json() for m in self.newer_than(wait.since)],
                           "last": self.last_id}
                response = _json_response(200, payload)
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
            return action_from_response(request, _text_response(400, since))
        wait = _Wait(since)
        request.app_context = wait

        def creator(ctx: DCCContext, pos: int, buf: memoryview) -> DCCAction:
            parts: list[bytes] = []
            if not wait.started:
                wait.started = True
                parts.append(b"retry: %d\n\n" % SSE_RETRY_MS)
            for message in self.newer_than(wait.since):
                line = json.dumps(message.as_json())
                parts.append(f"id: {message.id}\nevent: message\ndata: {line}\n\n".encode())
            wait.since = self.last_id
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

    async def _ws_session(self, ws: WebSocket) -> None:
        """``GET /ws``: every message (from now on) as JSON; JSON messages in are published.

        One task sends what is new while this one receives; a received
        ``{"name": ..., "text": ...}`` is published like ``POST /send``, a
        malformed one is answered with ``{"error": ...}``.
        """
        last = self.last_id

        async def pump() -> None:
            nonlocal last
            while True:
                news = self._news
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
                    problem, name, text = _parse_fields(raw, "application/json", None)
                    if problem:
                        await ws.send(json.dumps({"error": problem.strip()}))
                    else:
                        self.publish(name, text)
            except ConnectionClosed:
                pass
            nursery.cancel_scope.cancel()

    def _on_message(self, request: Request, data: bytes) -> UploadAction:
        problem, name, text = _parse_message(request, data)
        if problem:
            return upload_action_from_response(request, _text_response(400, problem))
        message = self.publish(name, text)
        return upload_action_from_response(request, _json_response(200, {"id": message.id}))


def _parse_message(request: Request, data: bytes) -> tuple[str, str, str]:
    """``(problem, name, text)`` from a ``POST /send`` body."""
    return _parse_fields(data, request.get_value(ValueKind.HEADER, "Content-Type"),
                         request.get_value(ValueKind.GET_ARGUMENT, "name"))


def _parse_fields(data: bytes, content_type: str | None, name_arg: str | None
                  ) -> tuple[str, str, str]:
    """``(problem, name, text)`` from a message body: JSON, or plain text with ``?name=``."""
    try:
        body = data.decode("utf-8")
    except UnicodeDecodeError:
        return "400 Bad Request: the message is not UTF-8\n", "", ""
    content_type = (content_type or "").lower()
    name: Any = name_arg or "anonymous"
    text: Any = body
    if content_type.split(";")[0].strip() == "application/json":
        try:
            obj = json.loads(body)
        except ValueError:
            return "400 Bad Request: the body is not valid JSON\n", "", ""
        if not isinstance(obj, dict):
            return '400 Bad Request: send a JSON object {"name": ..., "text": ...}\n', "", ""
        name = obj.get("name") or "anonymous"
        text = obj.get("text")
    if not isinstance(name, str) or not isinstance(text, str):
        return "400 Bad Request: 'name' and 'text' must be strings\n", "", ""
    name, text = name.strip()[:40], text.strip()
    if not text:
        return "400 Bad Request: the message is empty\n", "", ""
    return "", name or "anonymous", text


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
        await nursery.start(room.run_timers)
        async with Daemon(room.handle, notify_request_ended=request_ended, **options) as daemon:
            yield daemon, room
        nursery.cancel_scope.cancel()


async def serve(host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the demo until cancelled (``task_status`` gets the real port)."""
    async with chat_server(host=host, port=port) as (daemon, _):
        task_status.started(daemon.port)
        await trio.sleep_forever()


async def main(host: str, port: int) -> int:
    """``python -m mhd2 demo``: run until SIGINT/SIGTERM; the exit status."""
    from .cli import stop_signals, url_for
    from .errors import DaemonStartError

    with stop_signals() as signals:
        try:
            async with chat_server(host=host, port=port) as (daemon, _):
                print(f"mhd2 demo: chat on {url_for(host, daemon.port)} (Ctrl-C to stop)",
                      file=sys.stderr, flush=True)
                async for _ in signals:
                    print("mhd2 demo: stopping", file=sys.stderr, flush=True)
                    break
        except DaemonStartError as exc:
            cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
            print(f"mhd2 demo: cannot listen on {host} port {port}: {exc}{cause}", file=sys.stderr)
            return 1
    return 0


PAGE = b"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mhd2 chat</title>
<style>
 body { font-family: system-ui, sans-serif; max-width: 40em; margin: 2em auto; padding: 0 1em; }
 #messages { list-style: none; padding: 0; border: 1px solid #ccc; height: 20em;
             overflow-y: auto; margin: 0 0 1em 0; }
 #messages li { padding: .2em .5em; border-bottom: 1px solid #eee; }
 #messages .name { font-weight: bold; margin-right: .5em; }
 form { display: flex; gap: .5em; }
 #text { flex: 1; }
 #status { color: #666; font-size: .9em; }
</style>
</head>
<body>
<h1>mhd2 chat</h1>
<p id="status">connecting&hellip;</p>
<ul id="messages"></ul>
<form id="send">
 <input id="name" placeholder="name" size="10" maxlength="40">
 <input id="text" placeholder="message" autocomplete="off" maxlength="4000" required>
 <button type="submit">Send</button>
</form>
<script>
"use strict";
const list = document.getElementById("messages");
const status = document.getElementById("status");
const seen = new Set();
let last = 0;

function show(messages) {
  for (const m of messages) {
    if (seen.has(m.id)) continue;
    seen.add(m.id);
    const li = document.createElement("li");
    li.dataset.id = m.id;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = m.name;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = m.text;
    li.append(name, text);
    list.append(li);
    list.scrollTop = list.scrollHeight;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function longPoll() {
  status.textContent = "long polling (GET /poll)";
  for (;;) {
    try {
      const r = await fetch("/poll?since=" + last, {cache: "no-store"});
      if (r.status === 200) {
        const body = await r.json();
        show(body.messages);
        last = body.last;
      } else if (r.status !== 204) {
        await sleep(1000);
      }
    } catch (e) {
      status.textContent = "disconnected, retrying";
      await sleep(1000);
      status.textContent = "long polling (GET /poll)";
    }
  }
}

function eventStream() {
  status.textContent = "server-sent events (GET /events)";
  const source = new EventSource("/events?since=0");
  source.addEventListener("message", (e) => show([JSON.parse(e.data)]));
  source.onerror = () => { status.textContent = "event stream: reconnecting"; };
  source.onopen = () => { status.textContent = "server-sent events (GET /events)"; };
}

let socket = null;

function webSocket() {
  status.textContent = "WebSocket (GET /ws)";
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  socket = new WebSocket(scheme + location.host + "/ws");
  socket.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.error) status.textContent = m.error; else show([m]);
  };
  socket.onclose = () => { status.textContent = "WebSocket closed; reload to reconnect"; };
}

document.getElementById("send").addEventListener("submit", async (e) => {
  e.preventDefault();
  const input = document.getElementById("text");
  const text = input.value;
  if (!text.trim()) return;
  const name = document.getElementById("name").value;
  if (socket !== null) {
    socket.send(JSON.stringify({name: name, text: text}));
    input.value = "";
    return;
  }
  const r = await fetch("/send", {method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({name: name, text: text})});
  if (r.ok) { input.value = ""; } else { status.textContent = await r.text(); }
});

const mode = new URLSearchParams(location.search).get("mode");
if (mode === "sse") eventStream();
else if (mode === "ws") webSocket();
else longPoll();
</script>
</body>
</html>
"""
