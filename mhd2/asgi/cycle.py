"""What every ASGI cycle shares: the app's types, the bridge's shared record,
the base of the HTTP and WebSocket cycles, and running the app for one.

* :class:`Shared`: one per bridge -- the cycles in flight, the app tasks
  running, the graceful-stop flag, and the sweeper that tells request
  callbacks waiting too long for the app's first step to suspend
  (:data:`PARK_AFTER`);
* :class:`Cycle`: a request, its scope, and being listed in
  ``shared.cycles`` until the request ends;
* :func:`run_app`: call the app for a cycle in a task of its own, log what
  escapes it and end the response;
* :class:`ClientDisconnected`: what ``send()`` raises once the client has gone.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

import trio

from .. import Request, RequestEndedCode, request_on_end
from .wake import Changes

__all__ = ["ASGIApp", "ClientDisconnected", "Cycle", "Message", "PARK_AFTER", "Shared",
           "run_app"]

logger = logging.getLogger("mhd2.asgi")

Message = MutableMapping[str, Any]
ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[Message]],
                    Callable[[Message], Awaitable[None]]], Awaitable[None]]

#: Seconds (up to twice that) the request callback waits for the app's first
#: step before it suspends the request (see ``HTTPCycle._awaited_action`` in
#: :mod:`mhd2.asgi.http`).
PARK_AFTER = 1.0


class Parkable(Protocol):
    """A cycle whose request callback may be told to stop waiting and suspend."""

    def too_slow(self) -> None:
        """The request callback has waited long enough: suspend the request."""


class Shared:
    """What the cycles of one bridge share.

    Attributes:
        stopping: a graceful stop has begun.  From then on the daemon's side
            waits for the app in ``async`` callbacks instead of suspending the
            request: mhd2 answers a request that is suspended when a graceful
            stop begins with ``503`` at once, and an ASGI request in flight
            must instead get the grace period to finish.
        cycles: the cycles whose request has not ended, by request.
        fresh, stale: request callbacks waiting for the app's first step,
            since the sweeper's last tick or since the one before (those are
            told to suspend: ``HTTPCycle._awaited_action``).
        running: app tasks running; ``idle`` is set when that drops to 0.
    """

    __slots__ = ("cycles", "fresh", "idle", "running", "stale", "stopping")

    def __init__(self) -> None:
        self.stopping = False
        self.cycles: dict[Request, Any] = {}
        self.fresh: set[Parkable] = set()
        self.stale: set[Parkable] = set()
        self.running = 0
        self.idle: trio.Event | None = None

    async def sweep(self) -> None:
        """Every :data:`PARK_AFTER` seconds, tell callbacks waiting since two ticks to suspend."""
        while True:
            await trio.sleep(PARK_AFTER)
            stale, self.stale, self.fresh = self.stale, self.fresh, set()
            for cycle in stale:
                cycle.too_slow()


class ClientDisconnected(OSError):
    """``send()`` on a request whose client has gone (the ASGI spec's OSError)."""



class Cycle(Changes):
    """What an HTTP and a WebSocket cycle share: their request, scope and bridge
    record, and being listed in ``shared.cycles`` until the request ends.

    A subclass sets its own state, then calls :meth:`_watch_end` last (the
    request may have ended already, and :meth:`_ended` looks at that state).
    """

    __slots__ = ("app_done", "end_code", "request", "scope", "shared")

    def __init__(self, request: Request, scope: dict[str, Any], shared: Shared) -> None:
        super().__init__()
        self.request = request
        self.scope = scope
        self.shared = shared
        self.app_done = False
        self.end_code: RequestEndedCode | None = None

    def _watch_end(self) -> None:
        """Have :meth:`_ended` told when the request ends; list the cycle until then."""
        request_on_end(self.request, self._ended)
        if self.end_code is None:
            self.shared.cycles[self.request] = self

    def _ended(self, code: RequestEndedCode) -> None:
        """The request is over: note how, and unlist the cycle (subclasses go on)."""
        self.end_code = code
        self.shared.cycles.pop(self.request, None)



async def run_app(app: ASGIApp, cycle: Any) -> None:
    """Call the app for one cycle; log what escapes it and end the response."""
    shared: Shared = cycle.shared
    shared.running += 1
    try:
        await app(cycle.scope, cycle.receive, cycle.send)
    except Exception as exc:
        if not isinstance(exc, ClientDisconnected):
            logger.exception("mhd2.asgi: the app failed on %s %s",
                             cycle.request.method, cycle.request.uri)
        cycle.app_returned(exc)
    else:
        cycle.app_returned(None)
    finally:
        shared.running -= 1
        if not shared.running and shared.idle is not None:
            shared.idle.set()
