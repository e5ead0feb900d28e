"""The chat demo's room in Redis: ``python -m mhd2 demo --redis redis://HOST:PORT/0``.

Any number of demo processes, on any number of machines, then serve one
chat room.  The room is a Redis Stream (key ``mhd2:demo:chat``):

* a message is added with ``XADD mhd2:demo:chat 0-* name N text T time S``:
  Redis gives it the id ``0-N`` where *N* is one more than the stream's last
  id, so the ids are the stream's own, count 1, 2, 3 ... across every process,
  and their order is the one global order of the room (``0-*`` -- an explicit
  zero time with an automatic sequence number -- needs Redis 7);
* a process starting up reads the history with ``XRANGE``;
* one reader task per process waits with ``XREAD BLOCK`` for what comes after
  the last message it has, and hands every new message to the room of
  :mod:`mhd2.demo` (:meth:`~mhd2.demo.ChatRoom.deliver`), which wakes the
  requests parked in this process: long polls, event streams and WebSocket
  sessions.  A message posted here is shown here only when the reader sees
  it, exactly as everywhere else, so every client sees every message once,
  in the stream's order.

The room's epoch (the ``EPOCH`` of cursors ``EPOCH:ID``) lives beside the
stream (key ``mhd2:demo:epoch``, set once with ``SET NX``), so it is the same
in every process and survives restarts of the demo: a page that reconnects to
another process, or after a restart, carries on where it was.  If Redis loses
both keys (a Redis restart without persistence, ``FLUSHDB``), the reader makes
a new epoch when it reconnects and the pages reload the history.  (Delete both
keys, never the stream alone: ids would start again at 1 in the old epoch.)

Redis is reached with coredis, which runs on trio through anyio
(``pip install 'mhd2[redis]'``).
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from ._demo_parts import Message, json_response, parse_message, text_response
from .actions import UploadAction, upload_action_from_response, upload_action_suspend
from .demo import HISTORY, POLL_SECONDS, ChatRoom, RoomUnavailable, _Wait
from .errors import UsageError
from .exchange import request_resume
from .request import Request
from .response import Response

if TYPE_CHECKING:
    from coredis import Redis

__all__ = ["EPOCH_KEY", "STREAM_KEY", "RedisChatRoom", "RedisUnavailable", "check_redis"]

#: The stream that holds the messages.
STREAM_KEY = "mhd2:demo:chat"
#: The room's epoch, beside the stream.
EPOCH_KEY = "mhd2:demo:epoch"
#: ``XADD ... MAXLEN ~ N``: about how many messages Redis keeps.
STREAM_MAXLEN = 10_000
#: How long one ``XREAD BLOCK`` waits before it is simply issued again (ms).
BLOCK_MS = 10_000
#: Longest pause between attempts when Redis cannot be reached (seconds).
MAX_BACKOFF = 5.0
#: How long a message (``POST /send`` or a WebSocket's) waits for Redis to
#: take it before the client is told it was not sent (seconds).
POST_TIMEOUT = 5.0
#: What a client is told when Redis cannot take its message: a fixed
#: sentence, never Redis' address or the driver's error (that is logged).
UNAVAILABLE = "the chat cannot store messages right now; try again in a moment"
#: ``Retry-After`` of the ``503`` answered then (seconds).
RETRY_AFTER = 5
#: An outage is logged at most once per this many seconds (with a count).
OUTAGE_LOG_INTERVAL = 30.0

log = logging.getLogger("mhd2.demo")


class RedisUnavailable(Exception):
    """Redis cannot be used: the message says why (one line for the command line)."""


def _client(url: str) -> Redis[str]:
    try:
        import coredis
    except ImportError:
        raise RedisUnavailable(
            "--redis needs coredis: pip install 'mhd2[redis]'") from None
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise RedisUnavailable(f"--redis wants a redis://HOST:PORT/DB URL, not {url!r}")
    try:
        return coredis.Redis.from_url(url, decode_responses=True)
    except ValueError as exc:
        raise RedisUnavailable(f"bad --redis URL {url!r}: {exc}") from None


async def check_redis(url: str) -> None:
    """Connect to *url* and check that it is a Redis this room can use (7 or later).

    Raises:
        RedisUnavailable: with a one-line reason.
    """
    client = _client(url)
    try:
        with trio.fail_after(10):
            async with client:
                info = await client.info("server")
    except RedisUnavailable:
        raise
    except trio.TooSlowError:
        raise RedisUnavailable(f"cannot use Redis at {url}: no answer in 10 s") from None
    except Exception as exc:  # coredis' ConnectionError, OSError ... maybe in a group
        raise RedisUnavailable(f"cannot use Redis at {url}: {_reason(exc)}") from None
    version = str(info.get("redis_version", "0"))
    major = version.split(".")[0]
    if not major.isdigit() or int(major) < 7:
        raise RedisUnavailable(f"Redis at {url} is version {version}; the demo needs 7 or later")


def _reason(exc: BaseException) -> str:
    """What went wrong, in one line (the first leaf of exception groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _message(identifier: str | bytes, fields: Mapping[Any, Any], epoch: str) -> Message | None:
    """A stream entry as a :class:`Message` (``None`` for an entry this room did not write)."""
    if isinstance(identifier, bytes):
        identifier = identifier.decode("ascii", "replace")
    zero, _, number = identifier.partition("-")
    if zero != "0" or not number.isdigit():
        return None
    try:
        when = float(fields.get("time", "0"))
    except ValueError:
        when = 0.0
    return Message(int(number), str(fields.get("name", "anonymous")), str(fields.get("text", "")),
                   when if math.isfinite(when) else 0.0, epoch)


class _Send:
    """``request.app_context`` of a ``POST /send`` whose ``XADD`` is under way."""

    __slots__ = ("ident",)

    def __init__(self) -> None:
        self.ident: int | None = None


class _OutageLog:
    """Warnings about Redis being out of reach, at most one per
    :data:`OUTAGE_LOG_INTERVAL` for each kind of operation, with a count.

    An outage is expected operation (Redis restarts, fails over): a WARNING
    sentence, never an ERROR or a traceback, and not one per attempt or per
    message while it lasts.
    """

    __slots__ = ("_counts", "_last", "url")

    def __init__(self, url: str) -> None:
        self.url = url
        self._counts: dict[str, int] = {}
        self._last: dict[str, float] = {}

    def failed(self, what: str, exc: BaseException, then: str) -> None:
        """*what* (``"reading the room"``, ``"storing a message"``) failed with
        *exc*; *then* says what happens next."""
        count = self._counts.get(what, 0) + 1
        now = trio.current_time()
        if now - self._last.get(what, -math.inf) < OUTAGE_LOG_INTERVAL:
            self._counts[what] = count
            return
        self._counts[what] = 0
        self._last[what] = now
        again = "" if count == 1 else f" ({count} times in the last {OUTAGE_LOG_INTERVAL:.0f} s)"
        log.warning("Redis at %s: %s failed%s: %s; %s", self.url, what, again, _reason(exc),
                    then)

    def back(self) -> None:
        """Redis answers again: the next failure is logged at once."""
        log.warning("Redis at %s: back", self.url)
        self._counts.clear()
        self._last.clear()


class RedisChatRoom(ChatRoom):
    """A :class:`~mhd2.demo.ChatRoom` whose messages live in a Redis Stream.

    Args:
        url: ``redis://HOST:PORT/DB`` (or ``rediss://``, ``unix://``).
        poll_timeout, history: as for :class:`~mhd2.demo.ChatRoom`.

    Run :meth:`run` beside the daemon (:func:`mhd2.demo.chat_server` does):
    it connects, takes the epoch and the history, then reads the stream.
    """

    ahead_is_lag = True

    def __init__(self, url: str, *, poll_timeout: float = POLL_SECONDS,
                 history: int = HISTORY, post_timeout: float = POST_TIMEOUT) -> None:
        super().__init__(poll_timeout=poll_timeout, history=history, epoch="pending")
        self.url = url
        self.post_timeout = post_timeout
        self._outage = _OutageLog(url)
        self._redis: Redis[str] | None = None
        self._nursery: trio.Nursery | None = None

    # -- Redis ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, load the epoch and history, then read the stream and run the
        timers until cancelled (``task_status.started()`` once the history is in)."""
        client = _client(self.url)
        async with client, trio.open_nursery() as nursery:
            self._redis = client
            self._nursery = nursery
            await self._sync(client)
            await nursery.start(self.run_timers)
            nursery.start_soon(self._read, client)
            task_status.started()

    async def _sync(self, client: Redis[str]) -> None:
        """Take the room's epoch (making one if there is none) and the last
        :attr:`history` messages (``XRANGE``)."""
        await client.set(EPOCH_KEY, secrets.token_hex(4), condition=_nx())
        epoch = await client.get(EPOCH_KEY)
        if not epoch or not epoch.isascii() or not epoch.isalnum():
            raise RedisUnavailable(f"{EPOCH_KEY} in Redis is not a letters-and-digits epoch: "
                                   f"{epoch!r}; delete it")
        last = await client.xrevrange(STREAM_KEY, count=1)
        top = _message(last[0].identifier, {}, epoch) if last else None
        start = max(1, top.id - self.messages.maxlen + 1) if top and self.messages.maxlen else 1
        entries = await client.xrange(STREAM_KEY, f"0-{start}", "+") if top else ()
        changed = epoch != self.epoch
        if changed:
            self.epoch = epoch
            self.messages.clear()
            self.last_id = 0
            for request in self._parked.values():
                wait = request.app_context
                if isinstance(wait, _Wait):
                    wait.since = -1  # its cursor is of the old epoch: send everything
        for entry in entries:
            message = _message(entry.identifier, entry.field_values, epoch)
            if message is not None and message.id > self.last_id:
                self.messages.append(message)
                self.last_id = message.id
        if changed or entries:
            self.wake()

    async def _read(self, client: Redis[str]) -> None:
        """The one reader of this process: ``XREAD BLOCK`` after the last message,
        every new one delivered to the local room.  Redis going away is logged and
        retried with back-off; on return the epoch and history are checked again."""
        backoff = 0.1
        lost = False
        while True:
            try:
                if lost:  # never XREAD after a stream that may have started over
                    await self._sync(client)
                    lost = False
                    self._outage.back()
                answer = await client.xread({STREAM_KEY: f"0-{self.last_id}"},
                                            count=500, block=BLOCK_MS)
                backoff = 0.1
                for entry in (answer or {}).get(STREAM_KEY, ()):
                    message = _message(entry.identifier, entry.field_values, self.epoch)
                    if message is not None and message.id > self.last_id:
                        self.deliver(message)
            except Exception as exc:  # coredis' ConnectionError, TimeoutError ...
                self._outage.failed("reading the room", exc,
                                    f"trying again within {MAX_BACKOFF:g} s")
                lost = True
                await trio.sleep(backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)

    async def _xadd(self, name: str, text: str) -> int:
        if self._redis is None:
            raise RedisUnavailable("the room is not running (RedisChatRoom.run)")
        import coredis

        ident = await self._redis.xadd(
            STREAM_KEY, {"name": name, "text": text, "time": repr(time.time())},
            identifier="0-*", trim_strategy=coredis.PureToken.MAXLEN,
            threshold=STREAM_MAXLEN, trim_operator=coredis.PureToken.APPROXIMATELY)
        if ident is None:
            raise RedisUnavailable("XADD returned no id")
        return int(ident.partition("-")[2])

    async def post(self, name: str, text: str) -> int:
        """``XADD`` a message; the reader delivers it.

        Waits at most :attr:`post_timeout` seconds for Redis.

        Raises:
            RoomUnavailable: Redis did not take it (down, or no answer in
                time); the message is the fixed :data:`UNAVAILABLE`, the
                reason is logged (a rate-limited WARNING).
        """
        try:
            with trio.fail_after(self.post_timeout):
                return await self._xadd(name, text)
        except Exception as exc:  # coredis' ConnectionError, trio.TooSlowError, ...
            self._outage.failed("storing a message", exc, "the sender is told it was not sent")
            raise RoomUnavailable(UNAVAILABLE) from None

    def publish(self, name: str, text: str) -> Message:
        """Not here: a message must go through Redis first.

        Raises:
            UsageError: always; use ``await room.post(name, text)``.
        """
        raise UsageError("RedisChatRoom.publish: messages go through Redis to keep one order "
                         "across processes; use 'await room.post(name, text)'")

    def _on_message(self, request: Request, data: bytes) -> UploadAction:
        """``POST /send``: parked while ``XADD`` runs, answered with the stream's id."""
        send = request.app_context
        if isinstance(send, _Send):  # resumed: the XADD is done
            if send.ident is None:
                return upload_action_from_response(request, _unavailable())
            return upload_action_from_response(request, json_response(200, {"id": send.ident}))
        problem, name, text = parse_message(request, data)
        if problem:
            return upload_action_from_response(request, text_response(400, problem))
        if self._nursery is None:
            return upload_action_from_response(request, _unavailable())
        send = _Send()
        request.app_context = send
        self._nursery.start_soon(self._send, request, send, name, text)
        return upload_action_suspend(request)

    async def _send(self, request: Request, send: _Send, name: str, text: str) -> None:
        try:
            send.ident = await self.post(name, text)
        except RoomUnavailable:
            pass  # logged by post; answered 503
        request_resume(request)


def _unavailable() -> Response:
    """``503`` with the fixed sentence and ``Retry-After``: Redis did not take a message."""
    response = text_response(503, f"503 Service Unavailable: {UNAVAILABLE}\n")
    response.add_header("Retry-After", str(RETRY_AFTER))
    return response


def _nx() -> Any:
    import coredis

    return coredis.PureToken.NX


@asynccontextmanager
async def redis_chat_server(url: str, **options: Any) -> AsyncIterator[Any]:
    """:func:`mhd2.demo.chat_server` with a :class:`RedisChatRoom` on *url*."""
    from .demo import chat_server

    async with chat_server(RedisChatRoom(url), **options) as running:
        yield running
