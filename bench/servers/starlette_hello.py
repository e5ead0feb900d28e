"""Starlette hello world for ``bench/asgi_ab.py``: one route, ``PlainTextResponse``.

Same reply as ``asgi_hello.py`` (status 200, ``text/plain``, ``Hello, World!``),
through Starlette's routing and middleware stack::

    python bench/asgi_ab.py --a /work/main --b . --app starlette_hello:app
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("Hello, World!", media_type="text/plain")


app = Starlette(routes=[Route("/", hello)])
