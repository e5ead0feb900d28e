"""The flood accounting of an HTTP/2 connection.

Nothing here does I/O: :class:`FloodGuard` counts the frames a client may
send only so often: ``PING``, ``SETTINGS``, stream resets -- the client's
own (CVE-2023-44487, "rapid reset") and those it provokes the server to send
(CVE-2025-8671, "MadeYouReset") -- and frames that carry nothing
(CVE-2019-9518, "empty frames flood"; CVE-2019-9517 with zero-effect
``WINDOW_UPDATE``).

:meth:`FloodGuard.turn` is the accounting of one turn of the engine: what
its frames come to as stream resets and as frames that carry nothing, from
the counters of ``h2``'s frame buffer and the resets mhd2 itself provoked.

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

    Each method counts frames and returns why the connection is to end
    (``GOAWAY`` ENHANCE_YOUR_CALM), or ``None``.

    Args:
        max_concurrent_streams: the connection's stream limit (the reset budget
            is at least twice it).
        clock: the current time in seconds (``trio.current_time``).
    """

    __slots__ = ("_idle", "_pings", "_provoked", "_resets", "_settings", "_useful_updates")

    def __init__(self, max_concurrent_streams: int, clock: Callable[[], float]) -> None:
        self._pings = Rate(MAX_PINGS, clock)
        self._settings = Rate(MAX_SETTINGS, clock)
        self._resets = Rate(max(MIN_RESETS, 2 * max_concurrent_streams), clock)
        self._idle = Rate(MAX_IDLE_FRAMES, clock)
        # This turn's stream resets provoked by the client, and WINDOW_UPDATEs
        # for a stream mhd2 sends on (or the connection): see turn().
        self._provoked = 0
        self._useful_updates = 0

    def provoked(self) -> None:
        """The server reset a stream for the client's frames this turn (a stream
        error ``h2`` answered, a refused or malformed stream)."""
        self._provoked += 1

    def useful_update(self) -> None:
        """A ``WINDOW_UPDATE`` of this turn opened a window something waits for."""
        self._useful_updates += 1

    def turn(self, *, resets: int, idle: int, window_updates: int, resets_sent: int,
             opened: int) -> str | None:
        """Count the frames of the engine's last turn against the rates.

        * Stream resets, one budget (:meth:`resets`): every ``RST_STREAM``
          the client sent (*resets*), also for streams already answered
          (CVE-2023-44487, "rapid reset"), and every stream whose reset it
          provoked (CVE-2025-8671, "MadeYouReset"): the stream errors ``h2``
          answered with ``RST_STREAM`` (a second HEADERS on a half-closed
          stream, a ``WINDOW_UPDATE`` overflowing 2^31-1, DATA after the
          client's END_STREAM...) and the streams mhd2 refused or found
          malformed (:meth:`provoked`).
        * Frames that carry nothing (CVE-2019-9518): empty DATA, PRIORITY,
          unknown types, acks nobody asked for (*idle*), ``WINDOW_UPDATE``
          for a stream mhd2 is not sending on (CVE-2019-9517: the
          *window_updates* that were not :meth:`useful_update`), and frames
          on a stream reset already (``h2`` answers each with one more
          ``RST_STREAM``: the *resets_sent* not provoked; a client's DATA in
          flight when the server reset the stream does that too, so these
          are not stream resets); *opened* streams earn some credit.

        Args:
            resets: the client's ``RST_STREAM`` frames of the turn.
            idle: frames of the turn that carried nothing.
            window_updates: its ``WINDOW_UPDATE`` frames.
            resets_sent: the ``RST_STREAM`` frames the server queued in it.
            opened: the streams it opened.

        Returns:
            Why the connection is to end, or ``None``.  The turn's counts of
            :meth:`provoked` and :meth:`useful_update` start again at zero.
        """
        provoked = self._provoked
        resets += provoked
        idle += max(0, window_updates - self._useful_updates) + max(0, resets_sent - provoked)
        self._provoked = self._useful_updates = 0
        if resets:
            why = self.resets(resets)
            if why is not None:
                return why
        return self.idle_frames(idle, opened)

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
