"""Long work on the trio loop without blocking it: time slices and single flights.

mhd2 starts no threads, and a directory listing is Python work (building
entries, sorting, formatting) that a thread would not make faster -- the
GIL lets one of them run at a time, and a loop thread that has to win the
GIL back after every system call would be slower still. So long work runs
on the loop, in slices: :class:`Slicer` tells the worker when it has used
its budget, and the worker then yields with a checkpoint, letting every
other ready task run before it goes on.

:class:`SingleFlight` makes concurrent requests for the same result share
one piece of work instead of each doing it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Final, Generic, TypeVar

import trio

__all__ = ["DEFAULT_SLICE", "SingleFlight", "Slicer"]

#: Seconds a worker may run before it yields to the loop.
DEFAULT_SLICE: Final = 0.002

T = TypeVar("T")


class Slicer:
    """Measures one worker's time on the loop.

    Call :meth:`due` every few units of work (it reads the clock only); when
    it says so, ``await`` :meth:`pause`.

    Args:
        budget: seconds of work between two yields.
    """

    def __init__(self, budget: float = DEFAULT_SLICE) -> None:
        self.budget = budget
        self._deadline = time.perf_counter() + budget
        self.pauses = 0

    def due(self) -> bool:
        """Whether the budget is spent."""
        return time.perf_counter() >= self._deadline

    async def pause(self) -> None:
        """Let every other ready task run (a trio checkpoint; cancellation is
        delivered here), then start a new budget."""
        await trio.lowlevel.checkpoint()
        self.pauses += 1
        self._deadline = time.perf_counter() + self.budget


class _Flight(Generic[T]):
    def __init__(self) -> None:
        self.done = trio.Event()
        self.value: T | None = None
        self.ok = False
        self.error: OSError | None = None


class SingleFlight(Generic[T]):
    """Runs the work for one key once, however many tasks ask for it at once.

    The first task to ask runs the work; the others wait for it and get its
    result, or its :class:`OSError`. If the first task is cancelled (its
    client went away) or fails otherwise, a waiting task runs the work
    itself.
    """

    def __init__(self) -> None:
        self._flights: dict[Hashable, _Flight[T]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    async def run(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> T:
        """The result of *work* for *key*, computed at most once at a time.

        Raises:
            OSError: what *work* raised (also to the tasks that waited).
        """
        while True:
            flight = self._flights.get(key)
            if flight is None:
                break
            await flight.done.wait()
            if flight.ok:
                return flight.value  # type: ignore[return-value]
            if flight.error is not None:
                raise flight.error
            # its runner was cancelled or failed otherwise: try again
        flight = _Flight[T]()
        self._flights[key] = flight
        try:
            value = await work()
            flight.value, flight.ok = value, True
            return value
        except OSError as exc:
            flight.error = exc
            raise
        finally:
            del self._flights[key]
            flight.done.set()
