"""Run an ASGI app's first step inside the request callback, as a task that is parked.

Most ASGI apps answer a request without ever waiting: ``send(start)``,
``send(body)``, return.  Starting a trio task for each such call, and making
the daemon's side wait for it, costs more than the bridge's own work (two
task switches, a task to create and to reap).  So the bridge calls the app's
coroutine *once* right away, in the request callback (:func:`first_step`):

* if the app returns (or raises) in that first step, no task was needed: the
  callback returns the response as a plain callback would (HTTP/2 answers it
  in the connection's reader);
* if the app waits (it yields one of trio's traps: a checkpoint, a sleep, a
  lock, waiting on its ``receive()`` or on a chunk being taken), its coroutine
  is handed to a :class:`Runner`, which drives it from then on as if it had
  run there from the start.

The first step runs with ``trio.lowlevel.current_task()`` answering the
*runner's* task (it is parked, idle, so nothing runs in its name meanwhile):
whatever the app arranges before it waits -- a task to wake in a parking lot,
a cancel scope, a nursery, a lock's owner -- names the task that will go on
driving it.  The runner stays parked through the hand-over: the abort function
of its wait becomes the app's (:meth:`Runner._abort`), and whoever wakes the
app wakes the runner, which passes trio's answer to the app's coroutine.
That takes two of trio's internals (the thread-local that holds the current
task, and a task's abort function, which trio forgets after one try); when
they are not there (another trio), :data:`SUPPORTED` is false and every app
call gets a task of its own, as before.
"""

from __future__ import annotations

import contextvars
import math
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

import outcome
import trio

__all__ = ["HANDED_OVER", "SUPPORTED", "Runner", "Runners", "first_step"]

try:  # trio's internals, checked before they are used (see the module docstring)
    from trio._core import _run as _trio_run
    from trio._core._traps import CancelShieldedCheckpoint as _Checkpoint
    from trio._core._traps import WaitTaskRescheduled as _Wait

    _RUN_CONTEXT: Any = _trio_run.GLOBAL_RUN_CONTEXT
    SUPPORTED = (isinstance(getattr(_Wait, "__attrs_attrs__", None), tuple)
                 and hasattr(_trio_run.Task, "_abort_func")
                 and hasattr(_trio_run.Task, "_runner") and hasattr(_RUN_CONTEXT, "__dict__"))
except (ImportError, AttributeError):  # pragma: no cover -- another trio
    _RUN_CONTEXT = None
    _Checkpoint = _Wait = None  # type: ignore[assignment, misc]
    SUPPORTED = False

#: What a :class:`Runner` is doing.
_IDLE, _LENT, _DRIVING = 0, 1, 2

#: ``done(error)``: the app's call ended (``error``: what it raised, else ``None``).
Done = Callable[[BaseException | None], None]
AppCoroutine = Coroutine[Any, Any, Any]


def _cannot_abort(_: Any) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED


class _Throw:
    """Wakes a runner to throw *error* into the app it is handed (not send a value)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


@types.coroutine
def _forward(trap: Any) -> Generator[Any, Any, Any]:
    """Yield one of the app's traps to trio as this task's own; return trio's answer."""
    return (yield trap)


class _Ended:
    """What a runner's :func:`_driver` yields when the app's call has ended."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        #: What the app raised (``None``: it returned).
        self.error = error

    def take(self) -> BaseException | None:
        """The error, which this record then forgets (an idle runner's driver
        still refers to the record: it must not keep the app's exception,
        its traceback and with them the request, until the runner's next app)."""
        error, self.error = self.error, None
        return error


_RETURNED = _Ended(None)


@types.coroutine
def _driver() -> Generator[Any, Any, None]:
    """A runner's own generator: it drives one app coroutine after another.

    Sent an app's coroutine (not started), it runs it with ``yield from``:
    the app's traps come out of it, and what is sent or thrown in goes on
    to the app.  When the app's call ends it yields an :class:`_Ended` and
    waits for the next coroutine.  (So the end of an app that returns is
    seen without a ``StopIteration`` being raised and caught: ``yield from``
    takes the return value directly.)
    """
    coro = yield None
    while True:
        try:
            yield from coro
        except BaseException as exc:  # (an app's GeneratorExit too: it ends the call)
            ended = _Ended(exc)
        else:
            ended = _RETURNED
        # (Outside the except block: waiting in it would keep the exception
        # while idle, as the one being handled.)
        coro = yield ended


class Runner:
    """A task that drives app coroutines whose first step ran in a request callback.

    Between apps it is parked in :attr:`Runners.idle`; :func:`first_step`
    lends its identity, and hands it the app if the app has to wait.
    """

    __slots__ = ("abort_fn", "driver", "job", "mode", "pending_cancel", "pool", "step", "task",
                 "trio_run")

    def __init__(self, pool: Runners) -> None:
        self.pool = pool
        #: The runner's :func:`_driver` (primed), and its ``send``.
        self.driver = _driver()
        self.driver.send(None)
        self.step = self.driver.send
        self.task: trio.lowlevel.Task | None = None
        self.mode = _DRIVING
        #: The app's abort function while it waits in the runner's name (hand-over).
        self.abort_fn: Callable[[Any], trio.lowlevel.Abort] = _cannot_abort
        #: ``(coroutine, context, done)`` handed over by :func:`first_step`.
        self.job: tuple[AppCoroutine, contextvars.Context, Done] | None = None
        #: The trio run it lives in (trio's internal ``Runner``, which is
        #: cheaper to look up than the root task; ``None`` unless :data:`SUPPORTED`).
        self.trio_run: Any = None
        #: A cancellation trio tried to deliver while the identity was lent.
        self.pending_cancel: Callable[[], Any] | None = None

    def _abort(self, raise_cancel: Callable[[], Any]) -> trio.lowlevel.Abort:
        mode = self.mode
        if mode == _DRIVING:
            return self.abort_fn(raise_cancel)  # the app's own wait
        if mode == _LENT:
            # The first step entered a cancelled scope: it is delivered when
            # the app waits (first_step), or never if it leaves the scope first.
            self.pending_cancel = raise_cancel
            return trio.lowlevel.Abort.FAILED
        self.pool.idle.remove(self)  # idle, cancelled: the daemon is stopping
        return trio.lowlevel.Abort.SUCCEEDED

    async def main(self, job: tuple[AppCoroutine, contextvars.Context, Done] | None = None
                   ) -> None:
        """Drive *job* (an app not started yet), then any app handed over, until cancelled."""
        self.task = trio.lowlevel.current_task()
        if SUPPORTED:
            self.trio_run = getattr(_RUN_CONTEXT, "runner", None)
        pool = self.pool
        send: Any = None
        while True:
            if job is not None:
                coro, context, done = job
                job = None
                # (a coroutine sent to the driver starts; anything else goes on to it)
                await self._drive(context, coro if send is None else send, done)
            if len(pool.idle) >= pool.max_idle:
                return
            self.mode = _IDLE
            pool.idle.append(self)
            try:
                value = await trio.lowlevel.wait_task_rescheduled(self._abort)
            except BaseException as exc:
                if self.job is None:
                    raise  # cancelled while idle
                send = outcome.Error(exc)
            else:
                send = value if type(value) is _Throw else outcome.Value(value)
            job, self.job = self.job, None

    async def _drive(self, context: contextvars.Context, send: Any, done: Done) -> None:
        """Drive the app to its end, starting by sending its driver *send* (the app's
        coroutine to start it, or trio's answer to its wait), or throwing it in
        (a :class:`_Throw`)."""
        self.mode = _DRIVING
        self.abort_fn = _cannot_abort
        driver = self.driver
        step: Callable[[Any], Any] = self.step
        if type(send) is _Throw:
            step, send = driver.throw, send.error
        while True:
            trap = context.run(step, send)
            if type(trap) is _Ended:
                break
            try:
                send = await _forward(trap)
                step = self.step
            except BaseException as exc:
                # trio threw this into the task (a yield it does not know,
                # as from asyncio code): the app's own task would get it.
                step, send = driver.throw, exc
        error = trap.take()
        done(error)
        if error is not None and not isinstance(error, Exception):
            raise error  # Cancelled (the daemon stops), KeyboardInterrupt ...


class Runners:
    """The runners of one bridge, and how they are started.

    Args:
        spawn: ``spawn(async_fn, *args)`` starts a task (a nursery's ``start_soon``).
        max_idle: runners kept parked between apps; more end when their app does.
    """

    __slots__ = ("idle", "max_idle", "spawn")

    def __init__(self, spawn: Callable[..., Any], max_idle: int = 64) -> None:
        self.spawn = spawn
        self.max_idle = max_idle
        self.idle: list[Runner] = []

    def start(self, coro: AppCoroutine, context: contextvars.Context, done: Done) -> None:
        """Run *coro* in a runner task of its own from the start (no first step here)."""
        self.spawn(Runner(self).main, (coro, context, done))


#: :func:`first_step`'s answer when the app waits: a runner drives it from then on.
HANDED_OVER: Any = type("HandedOver", (), {"__repr__": lambda self: "HANDED_OVER"})()


def first_step(runners: Runners, coro: AppCoroutine, context: contextvars.Context,
               done: Done) -> Any:
    """Take the app's first step here, in an idle runner's name (module docstring).

    Args:
        runners: where the idle runners are; with none idle (or
            :data:`SUPPORTED` false), the app is started in a new runner.
        coro: the app's call, not started.
        context: the context the app runs in.
        done: called once when the app's call ends, if it does not end here.

    Returns:
        :data:`HANDED_OVER` if the app waits (a runner goes on with it and
        calls *done*); else the app's call has ended here: ``None`` if it
        returned, the :class:`Exception` it raised (*done* is not called).

    Raises:
        BaseException: what the app raised that is not an :class:`Exception`
            (``KeyboardInterrupt``, a ``Cancelled``).
    """
    idle = runners.idle
    if not idle or not SUPPORTED:
        runners.start(coro, context, done)
        return HANDED_OVER
    run_context = _RUN_CONTEXT
    own = run_context.task
    runner = idle[-1]
    if own._runner is not runner.trio_run:
        # (A bridge that action_asgi shares between trio runs in two threads
        # never lends a runner of one run to the other.)
        runners.start(coro, context, done)
        return HANDED_OVER
    idle.pop()
    task = runner.task
    assert task is not None  # (an idle runner has run)
    runner.mode = _LENT
    runner.pending_cancel = None
    run_context.task = task
    try:
        trap = context.run(runner.step, coro)
        # (asked in the runner's name: a scope the app entered is the runner's)
        cancelled = runner.pending_cancel is not None and (
            trio.current_effective_deadline() == -math.inf)
    finally:
        run_context.task = own
    if runner.pending_cancel is not None:
        # trio tries an abort function once per wait and then forgets it,
        # though it declined (Runner._abort): the runner is still parked in
        # that wait, and must stay cancellable.
        task._abort_func = runner._abort
    if type(trap) is _Ended:
        runner.mode = _IDLE
        idle.append(runner)
        if trap is _RETURNED:
            return None
        error = trap.take()
        if error is not None and not isinstance(error, Exception):
            raise error
        return error
    # The app waits: the runner drives it from here.
    runner.job = (coro, context, done)
    runner.mode = _DRIVING
    if type(trap) is _Wait:
        runner.abort_fn = trap.abort_func
        raise_cancel = runner.pending_cancel
        if cancelled and raise_cancel is not None and (
                trap.abort_func(raise_cancel) is trio.lowlevel.Abort.SUCCEEDED):
            trio.lowlevel.reschedule(task, outcome.capture(raise_cancel))
    elif trap is _Checkpoint:
        runner.abort_fn = _cannot_abort
        trio.lowlevel.reschedule(task)  # a schedule point: the runner goes on next
    else:
        # Not one of trio's traps (an asyncio future ...): as trio does with
        # a task that yields it, throw a TypeError into the app.
        runner.abort_fn = _cannot_abort
        trio.lowlevel.reschedule(task, outcome.Value(_Throw(TypeError(
            f"trio.run received unrecognized yield message {trap!r}. Are you trying to "
            "use a library written for some other framework like asyncio? That won't "
            "work without some kind of compatibility shim."))))
    return HANDED_OVER
