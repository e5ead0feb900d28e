"""Calling the application: the one "call, then await if awaitable" (docs/actions.rst).

Every application callback may be a plain function or an ``async def``; the
engine calls each through :func:`call_maybe_await`, and notification
callbacks through :func:`report`, which never raises.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from inspect import isawaitable
from typing import Any

__all__ = ["call_maybe_await", "report", "warn_returned_none"]

logger = logging.getLogger("mhd2")


async def call_maybe_await(cb: Callable[..., Any], *args: Any) -> Any:
    """Call an application callback; await the result if it is awaitable (plain or ``async def``)."""
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


#: Callbacks already warned about by :func:`warn_returned_none` (by
#: module and qualified name, so a bound method or a closure made per request
#: warns once, and nothing is kept alive). Bounded: a program has few callbacks.
_WARNED_NONE: set[tuple[str, str]] = set()
_WARNED_NONE_LIMIT = 1024


def warn_returned_none(cb: Callable[..., Any], what: str, fix: str) -> None:
    """Log one WARNING the first time callback *cb* returns ``None``.

    ``None`` keeps its MHD meaning (the request is aborted: the connection is
    closed without a reply), but forgetting ``return`` is the classic first
    slip, so the log says what happened and what to return instead.

    Args:
        cb: the application callback that returned ``None``.
        what: what it is, e.g. ``"request callback"``.
        fix: the sentence saying what to return, e.g. which ``action_*``.
    """
    target = getattr(cb, "__func__", cb)
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    key = (str(getattr(target, "__module__", "")), str(name))
    if key in _WARNED_NONE or len(_WARNED_NONE) >= _WARNED_NONE_LIMIT:
        return
    _WARNED_NONE.add(key)
    logger.warning(
        "mhd2: the %s %s.%s returned None, so the request was aborted (connection closed "
        "without a reply); %s (logged once per callback)", what, key[0], key[1], fix)
