"""The flood accounting of an HTTP/2 connection.

Nothing here does I/O: :class:`FloodGuard` counts the frames a client may
send only so often: ``PING``, ``SETTINGS``, stream resets -- the client's
own (CVE-2023-44487, "rapid reset") and those it provokes the server to send
(CVE-2025-8671, "MadeYouReset") -- and frames that carry nothing
(CVE-2019-9518, "empty frames flood"; CVE-2019-9517 with zero-effect
``WINDOW_UPDATE``).

The clock is the caller's (``trio.current_time`` in the server; a plain
function in the unit tests), so the rates can be tested without a loop.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["IDLE_FRAMES_PER_STREAM", "MAX_IDLE_FRAMES", "MAX_PINGS", "MAX_SETTINGS", "MIN_RESETS",
           "RATE_WINDOW", "FloodGuard"]

#: The window for the rates below, in seconds.
RATE_WINDOW = 10.0
#: PING frames a client may send per window.
MAX_PINGS = 100
#: SETTINGS frames a client may send per window.
MAX_SETTINGS = 100
#: Stream resets per window -- the client's ``RST_STREAM`` frames and the
#: resets it provokes (stream errors, refused and malformed streams) together:
#: at least this many, or twice the stream limit.
MIN_RESETS = 200
#: Frames that carry nothing (empty DATA without END_STREAM, PRIORITY, unknown
#: frame types, unasked-for ``PING``/``SETTINGS`` acks, ``WINDOW_UPDATE`` that
#: no stream waits for) per window ...
MAX_IDLE_FRAMES = 1000
#: ... plus this many for each stream the client opened in the window (a
#: client may send a PRIORITY frame with each request, and a WINDOW_UPDATE
#: that crosses the stream's end).
IDLE_FRAMES_PER_STREAM = 4


class Rate:
    """Counts events in fixed windows of :data:`RATE_WINDOW` seconds."""

    __slots__ = ("_clock", "_count", "_limit", "_start")

    def __init__(self, limit: int, clock: Callable[[], float]) -> None:
        self._limit = limit
        self._clock = clock
        self._count = 0
        self._start = clock()

    def over(self, count: int = 1) -> bool:
        """Count *count* (a negative count is credit, down to zero); True when the
        limit of this window is passed."""
        now = self._clock()
        if now - self._start >= RATE_WINDOW:
            self._start = now
            self._count = 0
        self._count = max(0, self._count + count)
        return self._count > self._limit


class FloodGuard:
    """The frames a client may send only so often, per connection.

    Each method counts one frame and returns why the connection is to end
    (``GOAWAY`` ENHANCE_YOUR_CALM), or ``None``.

    Args:
        max_concurrent_streams: the connection's stream limit (the reset budget
            is at least twice it).
        clock: the current time in seconds (``trio.current_time``).
    """

    __slots__ = ("_idle", "_pings", "_resets", "_settings")

    def __init__(self, max_concurrent_streams: int, clock: Callable[[], float]) -> None:
        self._pings = Rate(MAX_PINGS, clock)
        self._settings = Rate(MAX_SETTINGS, clock)
        self._resets = Rate(max(MIN_RESETS, 2 * max_concurrent_streams), clock)
        self._idle = Rate(MAX_IDLE_FRAMES, clock)

    def ping(self) -> str | None:
        """A ``PING`` arrived."""
        return "PING flood" if self._pings.over() else None

    def settings(self) -> str | None:
        """A ``SETTINGS`` frame arrived."""
        return "SETTINGS flood" if self._settings.over() else None

    def resets(self, count: int) -> str | None:
        """*count* streams were reset: by the client's ``RST_STREAM`` (CVE-2023-44487,
        "rapid reset") or by the server for the client's errors (CVE-2025-8671,
        "MadeYouReset") -- one budget for both."""
        return "too many stream resets" if self._resets.over(count) else None

    def idle_frames(self, count: int, opened: int) -> str | None:
        """*count* frames that carry nothing arrived, and *opened* streams were opened."""
        if not count:
            return None
        if self._idle.over(count - IDLE_FRAMES_PER_STREAM * opened):
            return "too many frames that carry nothing"
        return None
