"""Small HTTP answers the delivery kinds share: 400 for a bad cursor, 503 over a limit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..actions import Action, action_from_response
from ..exchange import exchange_of
from ..response import Response

if TYPE_CHECKING:
    from ..request import Request
    from .topic import Topic

__all__ = ["bad_cursor", "over_limit", "stopping"]


def _text(status: int, text: str) -> Response:
    response = Response.from_buffer_copy(status, (text + "\n").encode("utf-8"))
    response.add_header("Content-Type", "text/plain; charset=utf-8")
    response.add_header("Cache-Control", "no-store")
    response.add_header("X-Content-Type-Options", "nosniff")
    return response


def bad_cursor(request: Request, why: str) -> Action:
    """``400`` saying why the cursor was refused (a fixed sentence, not the input)."""
    return action_from_response(request, _text(400, f"Bad cursor: {why}."))


def over_limit(request: Request, topic: Topic) -> Action:
    """``503`` with ``Retry-After``: a subscriber limit is reached."""
    response = _text(503, "Too many clients are waiting on this server; try again later.")
    response.add_header("Retry-After", str(topic.hub.retry_after))
    return action_from_response(request, response)


def stopping(request: Request) -> bool:
    """Whether the daemon serving *request* is stopping gracefully."""
    return bool(exchange_of(request).shared.stopping)
