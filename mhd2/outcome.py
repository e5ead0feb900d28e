"""What the application's action for one request comes to, whatever the protocol.

Both connection loops (HTTP/1 and HTTP/2) ask the same question after a
request head: call the request callback -- again after each resume while it
suspends -- and turn the action it made into what the protocol must do next:
send a :class:`~mhd2.Response`, run an upgrade, or end the request early
(an :class:`~mhd2.exchange.Ending`).  An upload action is run here, through
the body source its protocol provides, and comes to one of the same three.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeAlias

from .actions import AbortAction, Action, SuspendAction, UpgradeAction, UploadRequestAction
from .app_calls import call_app_now, finish_app
from .enums import RequestEndedCode
from .exchange import Ending, Exchange
from .response import Response
from .upload import BodySource, run_upload

__all__ = ["NOT_STARTED", "Outcome", "Started", "app_outcome"]

#: What a request comes to before its reply.
Outcome: TypeAlias = Response | UpgradeAction | Ending


class _NotStarted(enum.Enum):
    NOT_STARTED = "the request callback has not been called"


#: The request callback has not been called yet (``app_outcome`` calls it).
NOT_STARTED = _NotStarted.NOT_STARTED
#: What :func:`~mhd2.app_calls.call_app_now`
#: returned, or :data:`NOT_STARTED`.
Started: TypeAlias = Action | Ending | Awaitable[Any] | Literal[_NotStarted.NOT_STARTED] | None

_ABORTED = Ending(None, RequestEndedCode.BY_APP_ABORT)


async def app_outcome(exchange: Exchange, make_body: Callable[[], BodySource],
                      started: Started = NOT_STARTED) -> Outcome | None:
    """Call the request callback and run its action up to the reply.

    Args:
        exchange: the request, its head read.
        make_body: makes the protocol's body source, where an upload action
            reads the request body from (called only for upload actions).
        started: what the first call of the callback returned, when the
            caller made it already (:func:`~mhd2.app_calls.call_app_now`).

    Returns:
        The response to send, the upgrade to run, or how the request ended
        early; ``None`` when the callback returned ``None`` (the request has
        already ended as aborted: close without a reply).
    """
    action = call_app_now(exchange) if started is NOT_STARTED else started
    while True:
        if action is not None and not isinstance(action, (Action, Ending)):
            action = await finish_app(exchange, action)  # an async callback's awaitable
        if not isinstance(action, SuspendAction):
            break
        await exchange.park()
        action = call_app_now(exchange)
    if action is None or isinstance(action, Ending):
        return action
    if isinstance(action, AbortAction):
        return _ABORTED
    if isinstance(action, UploadRequestAction):
        return await run_upload(make_body(), exchange, action)
    if isinstance(action, UpgradeAction):
        return action
    return action.response  # type: ignore[attr-defined, no-any-return]
