"""ASGI 3 applications on mhd2 (docs/asgi.rst): Starlette, FastAPI, Quart ... on trio.

* :class:`Daemon` -- ``async with mhd2.asgi.Daemon(app, port=8000):`` serves an
  ASGI app, with its lifespan;
* :func:`action_asgi` -- answer one request with an ASGI app from inside an
  mhd2 request callback (mount an app under a prefix);
* :class:`Lifespan` -- an app's lifespan startup / shutdown around a block;
* :func:`is_asgi_app` -- whether an object is an ASGI 3 app (``--interface auto``).

This package is a layer above the engine: it uses only mhd2's public API.
"""

from .bridge import Bridge, action_asgi
from .cycle import ClientDisconnected
from .daemon import Daemon, is_asgi_app
from .lifespan import Lifespan, LifespanFailed

__all__ = [
    "Bridge",
    "ClientDisconnected",
    "Daemon",
    "Lifespan",
    "LifespanFailed",
    "action_asgi",
    "is_asgi_app",
]
