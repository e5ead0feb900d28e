"""The ASGI lifespan protocol: startup before serving, shutdown after.

``async with Lifespan(app) as state:`` calls ``app({"type": "lifespan", ...})``
in a task of its own, sends ``lifespan.startup`` and waits for the app's
answer; leaving the block sends ``lifespan.shutdown`` and waits again.  The
``state`` dict the app filled at startup is copied into every request scope.

An app that raises before answering the startup event does not speak the
lifespan protocol (the spec allows that): it is logged at info level and
serving goes on without it (uvicorn's ``--lifespan auto``).  ``lifespan.startup.failed``
raises :class:`LifespanFailed` with the app's message.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

import trio

from .cycle import ASGIApp, Message
from .scope import ASGI_VERSION

__all__ = ["LifespanFailed", "Lifespan"]

logger = logging.getLogger("mhd2.asgi")

#: How long the app may take to answer ``lifespan.shutdown``, in seconds.
SHUTDOWN_TIMEOUT = 10.0


class LifespanFailed(Exception):
    """The app answered ``lifespan.startup.failed`` (or ``shutdown.failed``); ``str()`` is its message."""


class Lifespan:
    """Run an ASGI app's lifespan protocol around a block (see the module docstring).

    Args:
        app: the ASGI 3 app.
        mode: ``"auto"`` (an app that raises at once does not speak the
            protocol: go on), ``"on"`` (it must: its failure is a startup
            failure) or ``"off"`` (never call the app with a lifespan scope).
        shutdown_timeout: seconds the app may take to shut down.

    Error handling:
        :class:`LifespanFailed` from ``__aenter__`` when the startup fails;
        a failed shutdown is logged, not raised.
    """

    def __init__(self, app: ASGIApp, *, mode: str = "auto",
                 shutdown_timeout: float = SHUTDOWN_TIMEOUT) -> None:
        if mode not in ("auto", "on", "off"):
            from .. import UsageError

            raise UsageError(f"lifespan mode {mode!r} must be 'auto', 'on' or 'off'")
        self.app = app
        self.mode = mode
        self.shutdown_timeout = shutdown_timeout
        #: The lifespan state, copied into each request scope.
        self.state: dict[str, Any] = {}
        self._events: list[str] = []
        self._to_app: trio.MemorySendChannel[Message] | None = None
        self._answers: trio.MemoryReceiveChannel[Message | BaseException] | None = None
        self._nursery_manager: Any = None
        self._scope = trio.CancelScope()
        self._supported = False

    async def __aenter__(self) -> dict[str, Any]:
        if self.mode == "off":
            return self.state
        to_app, from_server = trio.open_memory_channel[Message](1)
        answer_in, answers = trio.open_memory_channel[Message | BaseException](1)
        self._to_app, self._answers = to_app, answers
        self._nursery_manager = trio.open_nursery()
        nursery = await self._nursery_manager.__aenter__()
        scope = {"type": "lifespan", "asgi": ASGI_VERSION, "state": self.state}

        async def receive() -> Message:
            return await from_server.receive()

        async def send(message: Message) -> None:
            await answer_in.send(message)

        async def run() -> None:
            with self._scope:
                try:
                    await self.app(scope, receive, send)
                except Exception as exc:
                    answer: Message | BaseException = exc
                else:
                    answer = RuntimeError("the app returned from the lifespan call")
                try:
                    answer_in.send_nowait(answer)
                except trio.WouldBlock:
                    pass

        nursery.start_soon(run)
        await to_app.send({"type": "lifespan.startup"})
        answer = await answers.receive()
        if isinstance(answer, BaseException):
            await self._close()
            if self.mode == "on":
                raise LifespanFailed(f"the lifespan startup raised {answer!r}") from answer
            logger.info("mhd2.asgi: the app does not speak the lifespan protocol (%r); "
                        "serving without startup and shutdown", answer)
            return self.state
        kind = answer.get("type")
        if kind == "lifespan.startup.failed":
            await self._close()
            raise LifespanFailed(answer.get("message", "") or "the app's startup failed")
        if kind != "lifespan.startup.complete":
            await self._close()
            raise LifespanFailed(f"unexpected lifespan message {kind!r} at startup")
        self._supported = True
        return self.state

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if not self._supported:
            return
        assert self._to_app is not None and self._answers is not None
        with trio.move_on_after(self.shutdown_timeout) as scope:
            await self._to_app.send({"type": "lifespan.shutdown"})
            answer = await self._answers.receive()
            if isinstance(answer, BaseException):
                logger.error("mhd2.asgi: the lifespan shutdown raised %r", answer)
            elif answer.get("type") == "lifespan.shutdown.failed":
                logger.error("mhd2.asgi: the app's shutdown failed: %s",
                             answer.get("message", ""))
        if scope.cancelled_caught:
            logger.error("mhd2.asgi: the app did not shut down within %g s",
                         self.shutdown_timeout)
        await self._close()

    async def _close(self) -> None:
        manager, self._nursery_manager = self._nursery_manager, None
        if manager is None:
            return
        # The app's lifespan task may wait for more: it is done with.
        self._scope.cancel()
        await manager.__aexit__(None, None, None)
