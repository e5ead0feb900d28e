"""Calls on a request from outside its callbacks: ``request_resume``, ``request_on_end``.

The application resumes a suspended request from any task or thread, and a
library that serves a request from its own task (the ASGI bridge) hears of
the request's end.  Both are thin: the state they touch is the request's
:class:`~mhd2.exchange.Exchange`'s, and its methods do the work.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from .enums import RequestEndedCode
from .exchange import exchange_of
from .request import Request

__all__ = ["request_on_end", "request_resume"]


def request_resume(request: Request) -> None:
    """Resume a suspended request (``MHD_request_resume``).

    Safe to call from any trio task of the daemon's run and from any other
    thread.  Resuming a request that is not suspended (or has ended) does nothing.
    """
    exchange = exchange_of(request)
    token = exchange.shared.token
    try:
        current: trio.lowlevel.TrioToken | None = trio.lowlevel.current_trio_token()
    except RuntimeError:
        current = None
    if token is not None and current is not token:
        # Another thread (or another trio run): hop into the daemon's run.
        try:
            token.run_sync_soon(exchange.resume)
        except trio.RunFinishedError:
            pass
        return
    exchange.resume()


def request_on_end(request: Request, hook: Callable[[RequestEndedCode], object]) -> None:
    """Call ``hook(code)`` once when *request* ends, however it ends.

    For libraries that serve a request from their own task (the ASGI bridge):
    the client going away while the request is suspended, the daemon stopping,
    a timeout and a completed response all end the request, and the hook is
    how such a task hears of it.  The hook runs in the daemon's task, must not
    block, and its failure is logged, not raised.  On a request that has
    already ended it is called at once.

    Args:
        request: the request to watch.
        hook: ``hook(code)`` with the :class:`~mhd2.RequestEndedCode`.
    """
    exchange = exchange_of(request)
    if exchange.ended:
        assert exchange.end_code is not None
        hook(exchange.end_code)
        return
    exchange.add_end_hook(lambda: hook(exchange.end_code))  # type: ignore[arg-type]
