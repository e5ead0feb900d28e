"""The request callback that serves an ASGI app, and :func:`action_asgi`.

A :class:`Bridge` turns each request into an ASGI cycle (HTTP or WebSocket),
starts the app's task for it, and gives the daemon the cycle's next action
each time the request callback is called (first, and again after each
resume).  Nothing here knows the engine: only mhd2's public API is used.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import types
from collections.abc import Callable
from typing import Any

import trio

from .. import Action, Request, action_from_response, request_resume
from .cycle import ASGIApp, Shared, run_app
from .http import HTTPCycle
from .inline import HANDED_OVER, Runners, first_step
from .scope import http_scope, websocket_scope
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
        spawn: ``spawn(async_fn, *args)`` starts a task for the app
            (``nursery.start_soon``); ``None``: trio system tasks.
        websocket_max_message_size: the largest WebSocket message accepted.
        inline: take each HTTP app call's first step in the request callback,
            without a task of its own (:mod:`mhd2.asgi.inline`); ``False``:
            every call gets a task from the start.
        idle_runners: the most runner tasks kept parked between app calls
            (more end when their app does).
    """

    __slots__ = ("_sweeping", "app", "inline", "mounted", "root_path", "runners", "shared",
                 "spawn", "state", "ws_max")

    def __init__(self, app: ASGIApp, *, root_path: str = "", mounted: bool = False,
                 state: dict[str, Any] | None = None, spawn: Spawn | None = None,
                 websocket_max_message_size: int = 1 << 20, inline: bool = True,
                 idle_runners: int = 64) -> None:
        self.app = app
        self.inline = inline
        self.root_path = root_path
        self.mounted = mounted
        self.state = state
        self.spawn: Spawn = spawn or _system_spawn
        self.shared = Shared()
        self.ws_max = websocket_max_message_size
        self._sweeping = False
        #: Tasks that drive the app calls that wait (``spawn`` is looked up
        #: when one is started: the daemon sets it once its nursery is open).
        self.runners = Runners(lambda *args: self.spawn(*args), max_idle=idle_runners)

    def __call__(self, request: Request) -> Action:
        """The request callback: the request's next action.

        The first call for a request makes its cycle (HTTP or WebSocket) and
        calls the app.  An HTTP app's first step is taken here
        (:func:`~mhd2.asgi.inline.first_step`): an app that answers without
        waiting needs no task.  A WebSocket app gets a task of its own.  A
        call after a resume asks the cycle what the app has done since.
        """
        cycle: HTTPCycle | WebSocketCycle | None = self.shared.cycles.get(request)
        if cycle is not None:
            return cycle.next_action()
        if not self._sweeping:
            self._sweeping = True
            self.spawn(self.shared.sweep)
        # "headers: ... header names should be lowercased" -- duplicates kept.
        headers = request.raw_headers
        if request.method == "GET":
            # (a loop, not any(<generator>): this runs for every GET)
            for name, value in headers:
                if name == b"upgrade" and b"websocket" in value.lower():
                    return self._start_websocket(request, headers)
        scope = http_scope(request, headers, self.root_path, self.state, mounted=self.mounted)
        cycle = HTTPCycle(request, scope, self.shared)  # (stepping: not resumed until below)
        context = contextvars.copy_context()
        try:
            coro = context.run(self.app, scope, cycle.receive, cycle.send)
            if type(coro) is not _COROUTINE and not inspect.iscoroutine(coro):
                coro = _awaiting(coro)
        except Exception as exc:
            cycle.stepping = False
            cycle.app_finished(exc)
            return cycle.next_action()
        if self.inline:
            ended = first_step(self.runners, coro, context, cycle.app_ended)
        else:
            self.runners.start(coro, context, cycle.app_ended)
            ended = HANDED_OVER
        cycle.stepping = False
        if ended is HANDED_OVER:
            self.shared.running += 1  # (app_ended counts it down)
            cycle.watch_end()
        elif ended is None and cycle.finished:
            # The common case: the app answered in full, at once (app_finished's
            # first case, written out: nothing waits on the cycle yet).
            cycle.app_done = True
            return action_from_response(request, cycle.response)
        else:
            cycle.app_finished(ended)
        return cycle.next_action()

    def _start_websocket(self, request: Request, headers: list[tuple[bytes, bytes]]) -> Action:
        """A WebSocket request (``Upgrade: websocket`` on a GET): its app runs in a task."""
        scope = websocket_scope(request, headers, self.root_path, self.state,
                                mounted=self.mounted)
        ws = WebSocketCycle(request, scope, self.shared, self.ws_max)
        self.spawn(run_app, self.app, ws)
        return ws.next_action()

    def begin_stop(self) -> None:
        """A graceful stop begins: let every request in flight wait for its app.

        Every parked request is resumed once, and is then awaited rather than
        suspended (see :class:`~mhd2.asgi.cycle.Shared`).  Call before the
        daemon's own stop, with a checkpoint in between.
        """
        self.shared.stopping = True
        for request in list(self.shared.cycles):
            request_resume(request)

    async def wait_idle(self) -> None:
        """Return when no app task runs."""
        shared = self.shared
        while shared.running:
            shared.idle = trio.Event()
            await shared.idle.wait()


_COROUTINE = types.CoroutineType


async def _awaiting(awaitable: Any) -> Any:
    """A coroutine for an app whose call returned another kind of awaitable."""
    return await awaitable


def _system_spawn(fn: Callable[..., Any], *args: Any) -> None:
    """Start the app's task when no nursery was given (:func:`action_asgi`)."""
    trio.lowlevel.spawn_system_task(fn, *args, context=contextvars.copy_context())


#: One bridge per (app, root_path, state) that :func:`action_asgi` has served.
_MOUNTS: dict[tuple[int, str, int], Bridge] = {}


def action_asgi(request: Request, app: ASGIApp, *, root_path: str = "",
                state: dict[str, Any] | None = None) -> Action:
    """Answer *request* with an ASGI app, from inside an mhd2 request callback.

    Return what it returns, every time the callback is called for the request
    (the request may be suspended while the app works, so the callback can be
    called again; each call gives the next action)::

        def request_cb(request):
            if request.path.startswith("/api/"):
                return mhd2.asgi.action_asgi(request, fastapi_app, root_path="/api")
            ...

    The app sees ``root_path`` and the full ``path`` (which starts with
    *root_path*), as under Starlette's ``Mount``.  Its lifespan is not run
    here: run it around the daemon with ``async with mhd2.asgi.Lifespan(app)
    as state:`` and pass that *state*.  The app's tasks run as trio system tasks.

    Args:
        request: the request to answer.
        app: the ASGI 3 app.
        root_path: where the app is mounted (``"/api"``), without a trailing slash.
        state: the lifespan state (copied into each scope); ``None``: an empty one.

    Returns:
        The action to return from the request callback.
    """
    key = (id(app), root_path, id(state))
    bridge = _MOUNTS.get(key)
    if bridge is None or bridge.app is not app or bridge.state is not state:
        bridge = _MOUNTS[key] = Bridge(app, root_path=root_path.rstrip("/"), mounted=True,
                                       state=state)
    return bridge(request)
