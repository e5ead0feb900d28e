"""The chat demo's room in Redis: ``python -m mhd2 demo --redis redis://HOST:PORT/0``.

Any number of demo processes, on any number of machines, then serve one
chat room: the room is the topic ``chat`` of a ``mhd2.fanout.Hub(redis=URL)``
(:mod:`mhd2.fanout.redis`), so its messages, their ids and the history live
in the Redis Stream ``mhd2:fanout:chat``:

* a message is added with ``XADD mhd2:fanout:chat MAXLEN ~ 200 * e message
  d {"name", "text", "time"}``; its id is the entry id Redis gives, the one
  order of the room across every process;
* a process starting up takes the history with ``XREVRANGE``;
* one reader task per process waits with ``XREAD BLOCK`` for what comes
  after the last entry it has, and hands every new message to the hub,
  which wakes the clients waiting in this process: long polls, event
  streams and WebSockets.  A message posted here is shown here only when
  the reader sees it, exactly as everywhere else.

Cursors are stream ids, valid in every process and across restarts of the
demo: a page that reconnects to another process, or after a restart, goes on
where it was.  While Redis cannot be reached a message is answered with a
fixed ``503`` sentence (a WebSocket message with ``{"error": ...}``; the
socket stays open) after at most :data:`mhd2.demo.POST_TIMEOUT` seconds,
the reader tries again with back-off and then reads on from the last id it
saw, and the log gets one WARNING per outage and operation, never a
traceback.

Redis is reached with coredis, which runs on trio (``pip install
'mhd2[redis]'``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from .demo import Chat, chat_server
from .errors import UsageError

__all__ = ["RedisUnavailable", "check_redis", "redis_chat", "redis_chat_server"]

#: The oldest Redis with the stream commands the room uses (XADD MAXLEN ~, XREAD BLOCK).
MIN_VERSION = 5


class RedisUnavailable(Exception):
    """Redis cannot be used: the message says why (one line for the command line)."""


def _client(url: str) -> Any:
    try:
        import coredis
    except ImportError:
        raise RedisUnavailable("--redis needs coredis: pip install 'mhd2[redis]'") from None
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise RedisUnavailable(f"--redis wants a redis://HOST:PORT/DB URL, not {url!r}")
    try:
        return coredis.Redis.from_url(url, decode_responses=True)
    except ValueError as exc:
        raise RedisUnavailable(f"bad --redis URL {url!r}: {exc}") from None


def _reason(exc: BaseException) -> str:
    """What went wrong, in one line (the first leaf of exception groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def check_redis(url: str) -> None:
    """Connect to *url* and check that it is a Redis the room can use (5 or later).

    Raises:
        RedisUnavailable: with a one-line reason.
    """
    client = _client(url)
    try:
        with trio.fail_after(10):
            async with client:
                info = await client.info("server")
    except trio.TooSlowError:
        raise RedisUnavailable(f"cannot use Redis at {url}: no answer in 10 s") from None
    except Exception as exc:  # coredis' ConnectionError, OSError ... maybe in a group
        raise RedisUnavailable(f"cannot use Redis at {url}: {_reason(exc)}") from None
    version = str(info.get("redis_version", "0"))
    major = version.split(".")[0]
    if not major.isdigit() or int(major) < MIN_VERSION:
        raise RedisUnavailable(f"Redis at {url} is version {version}; the demo needs "
                               f"{MIN_VERSION} or later")


def redis_chat(url: str, **options: Any) -> Chat:
    """A :class:`~mhd2.demo.Chat` whose room is in the Redis at *url*.

    Raises:
        RedisUnavailable: coredis is missing or *url* is not a Redis URL.
    """
    try:
        return Chat(redis=url, **options)
    except UsageError as exc:
        raise RedisUnavailable(str(exc)) from None


@asynccontextmanager
async def redis_chat_server(url: str, **options: Any) -> AsyncIterator[Any]:
    """:func:`mhd2.demo.chat_server` with the room in the Redis at *url*."""
    async with chat_server(redis_chat(url), **options) as running:
        yield running
