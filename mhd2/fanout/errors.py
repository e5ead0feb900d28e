"""The fan-out's own exception."""

from __future__ import annotations

from ..errors import MHDError

__all__ = ["FanoutUnavailable"]


class FanoutUnavailable(MHDError):
    """The hub's backend (Redis) cannot be reached: the message was not published.

    ``str(exc)`` is one sentence saying what failed; the hub's reader
    reconnects by itself, so publishing again later may succeed.
    """
