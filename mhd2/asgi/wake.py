"""A condition the app's task and the daemon's side of one request wait on.

Either side changes the cycle's state and calls :meth:`Changes.notify`; a
waiter then looks at the state again.  This is a ``trio.Event`` that re-arms
itself, without making an Event (and its parking lot) per wait: per request
there are one or two waits, on the path every request takes.
"""

from __future__ import annotations

from typing import Any

import trio

__all__ = ["Changes"]


class Changes:
    """Base of the cycles: :meth:`wait` until the next :meth:`notify`."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        # Made by the first wait (most cycles of an app that answers at once never wait).
        self._waiters: list[trio.lowlevel.Task] | None = None

    def notify(self) -> None:
        """Wake every task in :meth:`wait` (none: nothing happens)."""
        waiters = self._waiters
        if waiters:
            self._waiters = None
            reschedule = trio.lowlevel.reschedule
            for task in waiters:
                reschedule(task)

    async def wait(self) -> None:
        """Wait for the next :meth:`notify` (a checkpoint; cancellable)."""
        task = trio.lowlevel.current_task()
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = []
        waiters.append(task)

        def abort(_: Any) -> trio.lowlevel.Abort:
            try:
                self._waiters.remove(task)  # type: ignore[union-attr]
            except (ValueError, AttributeError):  # (AttributeError: None, all woken)
                pass
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
