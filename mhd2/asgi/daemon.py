"""``mhd2.asgi.Daemon``: an mhd2 daemon that serves an ASGI app, lifespan included."""

from __future__ import annotations

import inspect
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

import trio

from .. import Daemon as _EngineDaemon
from .. import UsageError
from .bridge import Bridge
from .cycle import ASGIApp
from .lifespan import Lifespan

__all__ = ["Daemon", "is_asgi_app"]


class Daemon(_EngineDaemon):
    """A :class:`mhd2.Daemon` whose requests go to an ASGI 3 app.

    ``async with mhd2.asgi.Daemon(app, port=8000):`` runs the app's lifespan
    startup (``state`` goes into every request scope) before the daemon
    accepts, serves, and on leaving stops gracefully: requests in flight get
    the grace period to finish (then their apps see ``http.disconnect``),
    WebSockets are closed with 1001, app tasks still running after the grace
    are cancelled, and the lifespan shutdown runs last.

    Args:
        app: the ASGI 3 app (``async def app(scope, receive, send)``).
        root_path: ``scope["root_path"]``, for an app behind a proxy that strips
            that prefix (it is prefixed to ``path``, as uvicorn's ``--root-path``).
        lifespan: ``"auto"``, ``"on"`` or ``"off"`` (see :class:`Lifespan`).
        websocket_max_message_size: the largest WebSocket message accepted
            (larger ones close the connection with 1009).
        idle_runners: the most runner tasks kept parked between app calls
            (docs/asgi.rst, "How it works"); 0 starts a task for each call
            that waits.
        **options: the :class:`mhd2.Daemon` options.

    Raises:
        UsageError: *app* is not callable or is a class (an ASGI 2 app), or a
            bad option.

    Error handling:
        ``async with`` raises :class:`~mhd2.asgi.LifespanFailed` when the
        app's startup fails (nothing is served then).
    """

    def __init__(self, app: ASGIApp, *, root_path: str = "", lifespan: str = "auto",
                 websocket_max_message_size: int = 1 << 20, idle_runners: int = 64,
                 **options: Any) -> None:
        if idle_runners < 0:
            raise UsageError(f"idle_runners={idle_runners!r} must be 0 or more")
        if not callable(app) or inspect.isclass(app):
            raise UsageError(
                f"mhd2.asgi.Daemon needs an ASGI 3 app (async def app(scope, receive, send)), "
                f"not {app!r}; serve a request callback with mhd2.Daemon")
        self.app = app
        self._lifespan = Lifespan(app, mode=lifespan)
        self._bridge = Bridge(app, root_path=root_path.rstrip("/"),
                              websocket_max_message_size=websocket_max_message_size,
                              idle_runners=idle_runners)
        self._app_stack: AsyncExitStack | None = None
        self._apps: trio.Nursery | None = None
        self._stop_deadline = float("inf")
        super().__init__(self._bridge, **options)

    @property
    def state(self) -> dict[str, Any]:
        """The lifespan state (copied into each request scope)."""
        return self._lifespan.state

    async def _open_apps(self, stack: AsyncExitStack) -> None:
        state = await stack.enter_async_context(self._lifespan)
        self._bridge.state = state
        self._apps = await stack.enter_async_context(trio.open_nursery())
        self._bridge.spawn = self._apps.start_soon

    async def _close_apps(self, stack: AsyncExitStack) -> None:
        apps = self._apps
        if apps is not None:
            # In-flight apps had the grace period; what is left is cancelled.
            with trio.move_on_at(self._stop_deadline):
                await self._bridge.wait_idle()
            apps.cancel_scope.cancel()
        await stack.aclose()

    async def __aenter__(self) -> Daemon:
        stack = AsyncExitStack()
        try:
            await self._open_apps(stack)
            await super().__aenter__()
        except BaseException:
            if self._apps is not None:
                self._apps.cancel_scope.cancel()
            await stack.aclose()
            raise
        self._app_stack = stack
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        stack, self._app_stack = self._app_stack, None
        try:
            if exc_type is None:
                await self._begin_stop(self._grace)
            await super().__aexit__(exc_type, exc, tb)
        finally:
            if stack is not None:
                await self._close_apps(stack)

    async def serve(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        """As :meth:`mhd2.Daemon.serve`, with the lifespan around it."""
        if self._apps is not None:  # from __aenter__: the lifespan runs already
            await super().serve(task_status=task_status)
            return
        stack = AsyncExitStack()
        try:
            await self._open_apps(stack)
            await super().serve(task_status=task_status)
        finally:
            await self._close_apps(stack)

    async def stop(self, grace: float = 5.0) -> None:
        """As :meth:`mhd2.Daemon.stop`: requests in flight get *grace* seconds."""
        await self._begin_stop(grace)
        await super().stop(grace)

    async def _begin_stop(self, grace: float) -> None:
        if not self._bridge.shared.stopping:
            self._stop_deadline = trio.current_time() + grace
            self._bridge.begin_stop()
            # The resumed requests run before the daemon's stop looks at them.
            await trio.lowlevel.checkpoint()


def _takes_three(fn: Any) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return len(positional) <= 3
    required = [p for p in positional if p.default is p.empty]
    return len(required) <= 3 <= len(positional)


def is_asgi_app(obj: object) -> bool:
    """Whether *obj* looks like an ASGI 3 app.

    That is: a coroutine function taking ``(scope, receive, send)``, or an
    object (not a class) whose ``__call__`` is one.  A class (ASGI 2's
    double callable) and a one-argument request callback are not.
    """
    if inspect.isclass(obj) or not callable(obj):
        return False
    fn: Any = obj
    if not (inspect.isfunction(fn) or inspect.ismethod(fn)
            or inspect.iscoroutinefunction(fn)):
        fn = type(obj).__call__
        if not inspect.iscoroutinefunction(fn):
            return False
        return _takes_three(obj.__call__)
    return inspect.iscoroutinefunction(fn) and _takes_three(fn)
