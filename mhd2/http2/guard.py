"""The flood accounting of an HTTP/2 connection.

Nothing here does I/O: :class:`FloodGuard` counts the frames a client may
send only so often (``PING``, ``SETTINGS``, stream resets -- CVE-2023-44487
"rapid reset").
"""

from __future__ import annotations

import trio

__all__ = ["MAX_PINGS", "MAX_SETTINGS", "MIN_RESETS", "RATE_WINDOW", "FloodGuard"]

#: The window for the rates below, in seconds.
RATE_WINDOW = 10.0
#: PING frames a client may send per window.
MAX_PINGS = 100
#: SETTINGS frames a client may send per window.
MAX_SETTINGS = 100
#: Stream resets by the client per window: at least this many, or twice the
#: stream limit.
MIN_RESETS = 200


class Rate:
    """Counts events in fixed windows of :data:`RATE_WINDOW` seconds."""

    __slots__ = ("_count", "_limit", "_start")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._count = 0
        self._start = trio.current_time()

    def over(self, count: int = 1) -> bool:
        """Count *count*; True when the limit of this window is passed."""
        now = trio.current_time()
        if now - self._start >= RATE_WINDOW:
            self._start = now
            self._count = 0
        self._count += count
        return self._count > self._limit


class FloodGuard:
    """The frames a client may send only so often, per connection.

    Each method counts one frame and returns why the connection is to end
    (``GOAWAY`` ENHANCE_YOUR_CALM), or ``None``.
    """

    __slots__ = ("_pings", "_resets", "_settings")

    def __init__(self, max_concurrent_streams: int) -> None:
        self._pings = Rate(MAX_PINGS)
        self._settings = Rate(MAX_SETTINGS)
        self._resets = Rate(max(MIN_RESETS, 2 * max_concurrent_streams))

    def ping(self) -> str | None:
        """A ``PING`` arrived."""
        return "PING flood" if self._pings.over() else None

    def settings(self) -> str | None:
        """A ``SETTINGS`` frame arrived."""
        return "SETTINGS flood" if self._settings.over() else None

    def resets(self, count: int) -> str | None:
        """The client sent *count* ``RST_STREAM`` frames (CVE-2023-44487, "rapid reset")."""
        return "too many stream resets" if self._resets.over(count) else None
