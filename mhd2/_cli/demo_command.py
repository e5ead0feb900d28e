"""The ``demo`` sub-command: the chat demo (:mod:`mhd2.demo`), its room in this
process or in Redis (:mod:`mhd2.demo_redis`, ``--redis URL``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from ..daemon import Daemon

from .options import _tls_context, add_address_arguments, daemon_options
from .running import _execute, _Plan, _with_workers

__all__ = ["demo_arguments", "room_of", "run_demo"]


def demo_arguments(parser: argparse.ArgumentParser) -> None:
    add_address_arguments(parser, port=8888)
    parser.add_argument(
        "--redis", metavar="URL",
        help="keep the room in this Redis (redis://HOST:PORT/DB, Redis 5+), so that every "
             "demo process using it serves one room (needs mhd2[redis])")


def run_demo(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from .. import demo

    tls = _tls_context(parser, args)
    if args.redis is not None:
        from .. import demo_redis

        try:  # one line and exit status 1 when Redis cannot be used, like a busy port
            trio.run(demo_redis.check_redis, args.redis)
        except demo_redis.RedisUnavailable as exc:
            print(f"mhd2 demo: {exc}", file=sys.stderr)
            return 1

    @asynccontextmanager
    async def open_app(options: dict[str, Any]) -> AsyncIterator[Daemon]:
        chat = None
        if args.redis is not None:
            from ..demo_redis import redis_chat

            chat = redis_chat(args.redis)
        async with demo.chat_server(chat, **options) as (daemon, _):
            yield daemon

    options = daemon_options(args, tls, access_log=False)
    plan = _Plan(
        open_app, options,
        lambda url, n: f"mhd2 demo: chat on {url}{_with_workers(n)} ({room_of(args.redis)}; "
                       "Ctrl-C to stop)",
        args.graceful_timeout, args.max_requests, args.max_requests_jitter,
        stopping_line="mhd2 demo: stopping")
    return _execute(parser, args, plan, "https" if tls else "http")


def room_of(redis_url: str | None) -> str:
    """Where the demo keeps its room, for the startup line (never the password)."""
    if redis_url is None:
        return "room in this process"
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(redis_url)
        where = (f"{parts.scheme}://{parts.hostname or 'localhost'}:{parts.port or 6379}"
                 f"{parts.path or '/0'}")
    except ValueError:
        where = "(an unreadable URL)"
    return f"room in Redis at {where}"
