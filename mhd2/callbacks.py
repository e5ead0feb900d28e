"""Calling the application: the one "call, then await if awaitable" (API.md §1).

Every application callback may be a plain function or an ``async def``; the
engine calls each through :func:`call_maybe_await`, and notification
callbacks through :func:`report`, which never raises.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from inspect import isawaitable
from typing import Any

__all__ = ["call_maybe_await", "report"]

logger = logging.getLogger("mhd2")


async def call_maybe_await(cb: Callable[..., Any], *args: Any) -> Any:
    """Call an application callback; await the result if it is awaitable (API.md §1)."""
    result = cb(*args)
    if isawaitable(result):
        result = await result
    return result


def report(cb: Callable[..., Any], *args: Any) -> None:
    """Call a notification callback; log (never raise) its failure.

    Notifications are synchronous by nature; an async one is closed unawaited
    (with a warning) rather than blocking the connection.
    """
    try:
        result = cb(*args)
        if isawaitable(result):
            close = getattr(result, "close", None)
            if close is not None:
                close()
            logger.warning("mhd2: notification callback %r is async; make it a plain function", cb)
    except Exception:
        logger.exception("mhd2: notification callback %r failed", cb)
