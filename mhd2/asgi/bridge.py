"""The request callback that serves an ASGI app, and :func:`action_asgi`.

A :class:`Bridge` turns each request into an ASGI cycle (HTTP or WebSocket),
starts the app's task for it, and gives the daemon the cycle's next action
each time the request callback is called (first, and again after each
resume).  Nothing here knows the engine: only mhd2's public API is used.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from typing import Any

import trio

from .. import Action, Request, request_on_end, request_resume
from .http import ASGIApp, HTTPCycle, Stopping, run_app
from .scope import http_scope, is_websocket_request, websocket_scope
from .websocket import WebSocketCycle

__all__ = ["Bridge", "action_asgi"]

logger = logging.getLogger("mhd2.asgi")

Spawn = Callable[..., Any]


class Bridge:
    """Serve requests with one ASGI app.

    Args:
        app: the ASGI 3 app.
        root_path: ``scope["root_path"]``.
        mounted: *root_path* is already part of the request path (see
            :func:`~mhd2.asgi.scope.http_scope`).
        state: the lifespan state copied into each scope (``None``: no state key).
        spawn: ``spawn(async_fn, *args)`` starts the app's task
            (``nursery.start_soon``).
        websocket_max_message_size: the largest WebSocket message accepted.
    """

    __slots__ = ("app", "cycles", "mounted", "root_path", "spawn", "state", "stopping",
                 "ws_max")

    def __init__(self, app: ASGIApp, *, root_path: str = "", mounted: bool = False,
                 state: dict[str, Any] | None = None, spawn: Spawn | None = None,
                 websocket_max_message_size: int = 1 << 20) -> None:
        self.app = app
        self.root_path = root_path
        self.mounted = mounted
        self.state = state
        self.spawn: Spawn | None = spawn
        self.stopping = Stopping()
        self.ws_max = websocket_max_message_size
        #: The cycles whose request has not ended, by request.
        self.cycles: dict[Request, HTTPCycle | WebSocketCycle] = {}

    def __call__(self, request: Request) -> Action:
        """The request callback."""
        cycle = self.cycles.get(request)
        if cycle is None:
            cycle = self.start(request)
        return cycle.next_action()

    def start(self, request: Request) -> HTTPCycle | WebSocketCycle:
        """Make the cycle of a new request and start the app's task for it."""
        cycle: HTTPCycle | WebSocketCycle
        if is_websocket_request(request):
            scope = websocket_scope(request, self.root_path, self.state, mounted=self.mounted)
            cycle = WebSocketCycle(request, scope, self.stopping, self.ws_max)
        else:
            scope = http_scope(request, self.root_path, self.state, mounted=self.mounted)
            cycle = HTTPCycle(request, scope, self.stopping)
        cycles = self.cycles
        if cycle.end_code is None:
            cycles[request] = cycle
            request_on_end(request, lambda _code: cycles.pop(request, None))
        spawn = self.spawn
        if spawn is None:
            spawn = _system_spawn
        spawn(run_app, self.app, cycle)
        return cycle

    def begin_stop(self) -> None:
        """A graceful stop begins: let every request in flight wait for its app.

        Every parked request is resumed once, and is then awaited rather than
        suspended (see :class:`~mhd2.asgi.http.Stopping`).  Call before the
        daemon's own stop, with a checkpoint in between.
        """
        self.stopping.now = True
        for request in list(self.cycles):
            request_resume(request)


def _system_spawn(fn: Callable[..., Any], *args: Any) -> None:
    """Start the app's task when no nursery was given (:func:`action_asgi`)."""
    trio.lowlevel.spawn_system_task(fn, *args, context=contextvars.copy_context())


#: One bridge per (app, root_path) that :func:`action_asgi` has served.
_MOUNTS: dict[tuple[int, str], Bridge] = {}


def action_asgi(request: Request, app: ASGIApp, *, root_path: str = "") -> Action:
    """Answer *request* with an ASGI app, from inside an mhd2 request callback.

    Return what it returns, every time the callback is called for the request
    (the request is suspended while the app works, so the callback is called
    again; each call gives the next action)::

        def request_cb(request):
            if request.path.startswith("/api/"):
                return mhd2.asgi.action_asgi(request, fastapi_app, root_path="/api")
            ...

    The app sees ``root_path`` and the full ``path`` (which starts with
    *root_path*), as under Starlette's ``Mount``.  Its lifespan is not run
    here: wrap the daemon in ``async with mhd2.asgi.Lifespan(app)`` for that.
    The app's tasks run as trio system tasks.

    Args:
        request: the request to answer.
        app: the ASGI 3 app.
        root_path: where the app is mounted (``"/api"``), without a trailing slash.

    Returns:
        The action to return from the request callback.
    """
    key = (id(app), root_path)
    bridge = _MOUNTS.get(key)
    if bridge is None or bridge.app is not app:
        bridge = _MOUNTS[key] = Bridge(app, root_path=root_path.rstrip("/"), mounted=True)
    return bridge(request)

