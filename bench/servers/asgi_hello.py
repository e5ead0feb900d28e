"""Hello-world ASGI app for the benchmark (hypercorn and uvicorn).

Same reply as ``mhd2_hello.py``: status 200, ``content-type: text/plain`` and the
13-byte body ``Hello, World!``.  Run with e.g.::

    hypercorn --worker-class trio --bind 127.0.0.1:8000 bench.servers.asgi_hello:app
    uvicorn --http h11 --port 8000 bench.servers.asgi_hello:app
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

BODY = b"Hello, World!"  # 13 bytes

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_START: Message = {
    "type": "http.response.start",
    "status": 200,
    # Content-Length as mhd2 sends it; without it both servers would chunk.
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(BODY))],
}
_BODY: Message = {"type": "http.response.body", "body": BODY, "more_body": False}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    await send(dict(_START))
    await send(dict(_BODY))
