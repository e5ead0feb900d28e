"""The peers' fan-out app for ``bench/fanout.py``: Starlette + sse-starlette + broadcaster.

What a Python developer writes today for "one message to many waiting
clients" on an ASGI server: encode's `broadcaster` (one queue per subscriber)
behind Starlette routes, with sse-starlette's ``EventSourceResponse`` for
server-sent events.  The same routes as ``fanout_mhd2.py``:

| route | what |
| --- | --- |
| ``GET /sse`` | ``text/event-stream``: every message on topic ``bench`` as an event |
| ``GET /poll`` | long poll: parks until the next message, answers ``{"messages": [...]}`` |
| ``GET /ws`` | WebSocket: every message as one text frame (the message's JSON) |
| ``POST /publish?n=K&size=S`` | publishes K messages of S bytes of data; answers JSON with the ``time.monotonic()`` just before the first publish and just after the last |
| ``GET /hello`` | a 2-byte ``ok`` (the bare idle-connection baseline) |

The broker comes from the environment variable ``FANOUT_BACKEND``:

* ``memory://`` (default): broadcaster's in-memory backend;
* ``redis://HOST:PORT``: broadcaster's Redis (pub/sub) backend;
* ``anyio``: the same design (an unbounded queue per subscriber, filled by
  the publisher) on anyio memory streams.  broadcaster itself needs asyncio
  (``asyncio.create_task``, ``asyncio.Queue``), so it cannot run under
  hypercorn's trio worker; this is what a trio user of that design writes.

A message is published as one JSON string ``{"id", "event", "data"}`` (made
once per message); each subscriber sends that string as it is: the SSE
event's data, the WebSocket text frame, the element of the long poll's
``messages`` list.  That is the least per-subscriber work this design allows.

Run with e.g.::

    uvicorn --app-dir bench/servers fanout_asgi:app
    FANOUT_BACKEND=anyio hypercorn --worker-class trio fanout_asgi:app
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from sse_starlette.sse import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

CHANNEL = "bench"
BACKEND = os.environ.get("FANOUT_BACKEND", "memory://")
#: sse-starlette pings every 15 s by default; the benchmark's clients count
#: messages, so no pings while it runs (mhd2 gets the same: heartbeat=3600).
PING_S = 3600


class _AnyioSubscriber:
    def __init__(self, receive: Any) -> None:
        self._receive = receive

    async def get(self) -> str:
        return str(await self._receive.receive())

    async def __aiter__(self) -> AsyncIterator[str]:
        async for item in self._receive:
            yield item


class AnyioBroadcast:
    """broadcaster's memory backend, on anyio: one unbounded queue per subscriber."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[Any]] = {}

    async def connect(self) -> None:
        pass

    async def disconnect(self) -> None:
        pass

    async def publish(self, channel: str, message: str) -> None:
        for send in list(self._subscribers.get(channel, ())):
            send.send_nowait(message)

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[_AnyioSubscriber]:
        send, receive = anyio.create_memory_object_stream[str](math.inf)
        self._subscribers.setdefault(channel, set()).add(send)
        try:
            yield _AnyioSubscriber(receive)
        finally:
            self._subscribers[channel].discard(send)
            send.close()
            receive.close()


class _BroadcasterAdapter:
    """broadcaster's ``Broadcast``, its events reduced to the message string."""

    def __init__(self, url: str) -> None:
        from broadcaster import Broadcast

        self._broadcast = Broadcast(url)

    async def connect(self) -> None:
        await self._broadcast.connect()

    async def disconnect(self) -> None:
        await self._broadcast.disconnect()

    async def publish(self, channel: str, message: str) -> None:
        await self._broadcast.publish(channel, message)

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Any]:
        async with self._broadcast.subscribe(channel) as subscriber:
            yield _BroadcasterSubscriber(subscriber)


class _BroadcasterSubscriber:
    def __init__(self, subscriber: Any) -> None:
        self._subscriber = subscriber

    async def get(self) -> str:
        return str((await self._subscriber.get()).message)

    async def __aiter__(self) -> AsyncIterator[str]:
        async for event in self._subscriber:
            yield event.message


broadcast: Any = AnyioBroadcast() if BACKEND == "anyio" else _BroadcasterAdapter(BACKEND)
_ids = itertools.count(1)


async def sse(request: Request) -> Response:
    async def events() -> AsyncIterator[ServerSentEvent]:
        async with broadcast.subscribe(CHANNEL) as subscriber:
            async for message in subscriber:
                yield ServerSentEvent(data=message, event="message")

    return EventSourceResponse(events(), ping=PING_S, headers={"Cache-Control": "no-store"})


async def poll(request: Request) -> Response:
    async with broadcast.subscribe(CHANNEL) as subscriber:
        message = await subscriber.get()
    return Response('{"messages": [' + message + "]}", media_type="application/json")


async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    async with anyio.create_task_group() as tg:

        async def drain() -> None:
            # what the client sends is ignored (as mhd2's subscriber without
            # on_message); a disconnect ends the subscription
            with contextlib.suppress(WebSocketDisconnect):
                while True:
                    await websocket.receive_text()
            tg.cancel_scope.cancel()

        tg.start_soon(drain)
        async with broadcast.subscribe(CHANNEL) as subscriber:
            async for message in subscriber:
                await websocket.send_text(message)


async def publish(request: Request) -> Response:
    n = int(request.query_params.get("n", "1"))
    size = int(request.query_params.get("size", "32"))
    data = "~" + "a" * (size - 1)  # "~": the client counts one per message
    t_publish = time.monotonic()
    for _ in range(n):
        message = json.dumps({"id": str(next(_ids)), "event": "message", "data": data})
        await broadcast.publish(CHANNEL, message)
    t_done = time.monotonic()
    return JSONResponse({"n": n, "t_publish": t_publish, "t_done": t_done})


async def hello(request: Request) -> Response:
    return PlainTextResponse("ok")


async def _keeper(subscribed: anyio.Event) -> None:
    """One subscription for the life of the process, its messages thrown away.

    broadcaster 0.3.1's ``subscribe`` has a race: while the first subscriber
    of a channel awaits the backend's ``subscribe`` (a round trip to Redis),
    others that arrive see no subscriber either, and each then *replaces* the
    channel's set of queues with a set of its own; every subscriber but the
    last of that burst is lost and never gets a message (measured: 73 of 300
    SSE clients got any).  The same happens whenever the count falls to zero
    and comes back, as it does with long polling.  Keeping one subscriber
    always there is the workaround an application has to use.

    A second race of the Redis backend: its listener task can look at the
    pub/sub connection before the first ``SUBSCRIBE`` has gone out, find it
    not subscribed, and stop until the next *first* subscriber, which with a
    keeper never comes.  So the keeper checks that its own probe message
    comes back, and subscribes again until it does.
    """
    while True:
        async with broadcast.subscribe(CHANNEL) as subscriber:
            await broadcast.publish(CHANNEL, "probe")  # no "~": no client counts it
            confirmed = False
            with anyio.move_on_after(1.0):
                await subscriber.get()
                confirmed = True
            if confirmed:
                subscribed.set()
                async for _ in subscriber:
                    pass


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    await broadcast.connect()
    try:
        async with anyio.create_task_group() as tg:
            if isinstance(broadcast, _BroadcasterAdapter):
                subscribed = anyio.Event()
                tg.start_soon(_keeper, subscribed)
                await subscribed.wait()
            yield
            tg.cancel_scope.cancel()
    finally:
        await broadcast.disconnect()


app = Starlette(
    routes=[
        Route("/sse", sse),
        Route("/poll", poll),
        WebSocketRoute("/ws", ws),
        Route("/publish", publish, methods=["POST"]),
        Route("/hello", hello),
    ],
    lifespan=lifespan,
)
