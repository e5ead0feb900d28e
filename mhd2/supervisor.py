"""Supervised pre-fork workers: bind once, fork N, keep N alive.

The supervisor is a small, synchronous parent process; it knows nothing about
HTTP. It owns one listening socket (bound by the caller, or handed in by
systemd) and forks *N* workers, each of which runs ``worker_main(sock,
worker)`` -- typically a trio loop with an :class:`mhd2.Daemon` on
``listen_socket=sock``. All workers accept on the same socket, so the kernel
spreads the connections and keeps them queued while a worker is replaced: a
connection waits in the listen backlog instead of being refused.

What the supervisor does:

* **restart**: a worker that dies is forked again; one that dies within
  ``min_uptime`` seconds of its start is restarted after a growing back-off
  (0.1 s, 0.2 s, 0.4 s ... up to ``max_backoff``) so that a crash loop does
  not eat the machine. A worker that exits with :data:`WORKER_BOOT_ERROR`
  before it was ready (the application cannot even be imported) stops the
  supervisor when it is first starting, and is given up on during a reload.
  :meth:`Supervisor.run` then returns the status the worker asked for with
  :meth:`Worker.start_failed` (an ASGI app's failed lifespan startup: 3), else 1.
* **recycle**: a worker that calls :meth:`Worker.recycle` (for instance after
  ``--max-requests`` requests) keeps serving until its replacement reports
  :meth:`Worker.ready`; only then is it sent SIGTERM, after which it stops
  accepting and finishes its requests in flight.
* **reload** (SIGHUP): every worker is replaced the same way, one at a time:
  the new one is ready before the old one is told to stop. If a new worker
  fails before it is ready, the reload stops there and the old workers keep
  serving.
* **stop** (SIGINT / SIGTERM): every worker gets SIGTERM and has
  ``graceful_timeout`` seconds (plus a second of slack) to exit before it is
  killed; then :meth:`Supervisor.run` returns 0. A second SIGINT/SIGTERM
  kills the workers at once.

Workers get SIGTERM to stop; they must stop accepting at once and exit
within ``graceful_timeout``. The worker's side -- its pipe to the
supervisor, its signals, its graceful stop -- is :mod:`mhd2._worker`; forking
a worker and the record kept of it are :mod:`mhd2._forking`.
"""

from __future__ import annotations

import errno
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Final, NoReturn

from ._forking import WorkerProc, fork_worker, signal_worker
from ._notify import Notifier
from ._worker import (
    READY,
    RECYCLE,
    WORKER_BOOT_ERROR,
    Worker,
    WorkerMain,
    decode,
    drain_and_stop,
    worker_process,
)
from .errors import UsageError

__all__ = ["WORKER_BOOT_ERROR", "Supervisor", "Worker", "WorkerMain", "drain_and_stop"]

_KILL_SLACK: Final = 1.0
_STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


def _log_stderr(message: str) -> None:
    print(f"mhd2: {message}", file=sys.stderr, flush=True)


class Supervisor:
    """Forks and supervises *workers* processes that share *sock*.

    Args:
        worker_main: ``worker_main(sock, worker)``, run in each worker.
        sock: a bound, listening socket (the workers inherit it).
        workers: how many workers to keep running.
        graceful_timeout: seconds a stopping worker gets before SIGKILL
            (it should finish its requests in that time).
        ready_timeout: seconds a new worker gets to call :meth:`Worker.ready`.
        min_uptime: a worker that dies sooner than this after its start
            counts as a crash loop and is restarted after a back-off.
        max_backoff: the longest back-off, in seconds.
        log: where progress and problems are written (one line each).
        on_ready: called once, when all first workers are ready.
        on_reload: called at SIGHUP before any worker is replaced; it may
            prepare what the new workers inherit (the command line reads the
            TLS files again here). When it returns ``False`` the reload is
            abandoned and the old workers keep serving (it logs why itself).
        on_reloaded: called when a reload is over: every old worker has
            exited (``True``), or the reload was abandoned (``False``).
        notifier: tells systemd (``Type=notify``) ``READY=1`` when the first
            workers are ready, ``RELOADING=1`` / ``READY=1`` around a reload,
            ``STOPPING=1``, ``WATCHDOG=1`` and a ``STATUS=`` line of counts.
        on_worker_exit: called with the pid of every worker that exited
            (the command line tells prometheus-client's multiprocess mode).

    Raises:
        UsageError: a bad argument.
    """

    def __init__(
        self,
        worker_main: WorkerMain,
        sock: socket.socket,
        *,
        workers: int,
        graceful_timeout: float = 30.0,
        ready_timeout: float = 30.0,
        min_uptime: float = 1.0,
        max_backoff: float = 10.0,
        log: Callable[[str], None] = _log_stderr,
        on_ready: Callable[[], None] | None = None,
        on_reload: Callable[[], bool] | None = None,
        on_reloaded: Callable[[bool], None] | None = None,
        notifier: Notifier | None = None,
        on_worker_exit: Callable[[int], None] | None = None,
    ) -> None:
        if not callable(worker_main):
            raise UsageError("Supervisor needs worker_main(sock, worker), a callable")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise UsageError(f"workers must be an int >= 1, not {workers!r}")
        for name, value in (("graceful_timeout", graceful_timeout),
                            ("ready_timeout", ready_timeout), ("min_uptime", min_uptime),
                            ("max_backoff", max_backoff)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise UsageError(f"{name} must be seconds >= 0, not {value!r}")
        self.worker_main = worker_main
        self.sock = sock
        self.workers = workers
        self.graceful_timeout = float(graceful_timeout)
        self.ready_timeout = float(ready_timeout)
        self.min_uptime = float(min_uptime)
        self.max_backoff = float(max_backoff)
        self.log = log
        self.on_ready = on_ready
        self.on_reload = on_reload
        self.on_reloaded = on_reloaded
        self.notifier = notifier
        self.on_worker_exit = on_worker_exit
        self._tick_at: float | None = None
        #: Old workers of the reload under way that have not exited yet.
        self._reload_old: set[int] = set()
        self._reload_finishing = False
        self._procs: dict[int, WorkerProc] = {}
        self._by_fd: dict[int, WorkerProc] = {}
        self._failures: dict[int, int] = {}
        self._spawn_at: dict[int, tuple[float, WorkerProc | None]] = {}
        self._reload_queue: list[WorkerProc] = []
        self._reloading: WorkerProc | None = None
        self._signals: list[int] = []
        self._stopping = False
        self._status = 0
        self._announced = False
        self._selector: selectors.BaseSelector | None = None
        self._wakeup: tuple[socket.socket, socket.socket] | None = None

    # ------------------------------------------------------------ main loop

    def run(self) -> int:
        """Fork the workers and supervise them until SIGINT/SIGTERM.

        Returns:
            0 after a stop by signal; if the workers could not start (a
            worker exited with :data:`WORKER_BOOT_ERROR` before it was
            ready, while the supervisor was first starting), the status
            that worker gave :meth:`Worker.start_failed`, or 1.
        """
        if self._selector is not None:
            raise UsageError("Supervisor.run() runs once")
        self._selector = selectors.DefaultSelector()
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        self._wakeup = (wake_r, wake_w)
        self._selector.register(wake_r, selectors.EVENT_READ)
        handled = (*_STOP_SIGNALS, signal.SIGHUP, signal.SIGCHLD)
        previous = {signum: signal.getsignal(signum) for signum in handled}
        old_wakeup = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        for signum in handled:
            signal.signal(signum, self._on_signal)
        try:
            for index in range(self.workers):
                self._spawn(index)
            while self._procs or (not self._stopping and self._spawn_at):
                self._step()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for proc in list(self._procs.values()):  # only on an unexpected error
                signal_worker(proc.pid, signal.SIGKILL)
            self._selector.close()
            wake_r.close()
            wake_w.close()
        return self._status

    def _on_signal(self, signum: int, frame: object) -> None:
        self._signals.append(signum)

    def _step(self) -> None:
        assert self._selector is not None and self._wakeup is not None
        now = time.monotonic()
        deadlines = [at for at, _ in self._spawn_at.values()]
        deadlines += [p.kill_at for p in self._procs.values() if p.kill_at is not None]
        deadlines += [p.started + self.ready_timeout for p in self._procs.values()
                      if not (p.ready or p.stopping or p.given_up)]
        if self._tick_at is not None:
            deadlines.append(self._tick_at)
        timeout = max(0.0, min(deadlines) - now) if deadlines else None
        if not self._signals:
            for key, _ in self._selector.select(timeout):
                if key.fileobj is self._wakeup[0]:
                    try:
                        while self._wakeup[0].recv(4096):
                            pass
                    except BlockingIOError:
                        pass
                else:
                    self._read_control(self._by_fd[int(key.fd)])
        self._handle_signals()
        self._reap()
        self._timers()

    # ------------------------------------------------------------ workers

    def _spawn(self, index: int, replaces: WorkerProc | None = None, *, reload: bool = False) -> None:
        assert self._selector is not None
        proc = fork_worker(index, self._child, replaces=replaces, reload=reload)
        self._procs[proc.pid] = proc
        self._by_fd[proc.fd] = proc
        self._selector.register(proc.fd, selectors.EVENT_READ)

    def _child(self, index: int, control_fd: int) -> NoReturn:
        """In the new worker process: let go of the supervisor's resources, then be
        the worker (:func:`mhd2._worker.worker_process`)."""

        def detach() -> None:
            assert self._selector is not None and self._wakeup is not None
            if self.notifier is not None:  # the supervisor is the service's main process
                self.notifier.close()
                self.notifier = None
            for fd in self._by_fd:
                os.close(fd)
            self._selector.close()
            self._wakeup[0].close()
            self._wakeup[1].close()

        worker_process(self.worker_main, self.sock,
                       Worker(index, control_fd, self.graceful_timeout), detach)

    def _read_control(self, proc: WorkerProc) -> None:
        if self._by_fd.get(proc.fd) is not proc:
            return  # closed already (its number may belong to a newer worker's pipe now)
        try:
            data = os.read(proc.fd, 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the worker closed its end (it is exiting): SIGCHLD will tell
            self._unregister(proc)
            return
        messages, proc.buffer, status = decode(proc.buffer + data)
        if status is not None:
            proc.boot_status = status
        for message in messages:
            if message == READY and not proc.ready:
                self._on_ready(proc)
            elif message == RECYCLE:
                self._on_recycle(proc)

    def _unregister(self, proc: WorkerProc) -> None:
        # Only if the number is still *proc*'s: once closed (its pipe ended),
        # it can be a newer worker's pipe, and closing that one would lose the
        # newer worker's "ready" (it would be killed, with its connections,
        # after ready_timeout).
        if self._by_fd.get(proc.fd) is proc:
            del self._by_fd[proc.fd]
            assert self._selector is not None
            self._selector.unregister(proc.fd)
            os.close(proc.fd)

    def _on_ready(self, proc: WorkerProc) -> None:
        proc.ready = True
        if proc.stopping:
            return
        self.log(f"worker {proc.index} (pid {proc.pid}) ready")
        old = proc.replaces
        if old is not None:
            proc.replaces = None
            self._stop(old)
        if proc is self._reloading:
            self._reloading = None
            self._next_reload()
        if not self._announced and all(p.ready for p in self._procs.values() if not p.stopping):
            self._announced = True
            if self.notifier is not None:
                self.notifier.ready(self._status_line())
                self._tick_at = time.monotonic() + (self.notifier.watchdog_interval or 5.0)
            if self.on_ready is not None:
                self.on_ready()

    def _on_recycle(self, proc: WorkerProc) -> None:
        if self._stopping or proc.stopping or proc.replaced_by is not None:
            return
        self.log(f"worker {proc.index} (pid {proc.pid}) asked to be recycled")
        self._spawn(proc.index, proc)

    def _stop(self, proc: WorkerProc, *, kill: bool = False) -> None:
        if kill:
            signal_worker(proc.pid, signal.SIGKILL)
        if proc.stopping:
            return
        proc.stopping = True
        proc.kill_at = time.monotonic() + self.graceful_timeout + _KILL_SLACK
        signal_worker(proc.pid, signal.SIGTERM)

    # ------------------------------------------------------------ reload

    def _start_reload(self) -> None:
        if self.on_reload is not None and not self.on_reload():
            if self.on_reloaded is not None:
                self.on_reloaded(False)
            return
        if self.notifier is not None:
            self.notifier.reloading("reloading the workers one at a time")
        current = [p for p in self._procs.values()
                   if not p.stopping and p.replaced_by is None and p.replaces is None]
        self.log(f"SIGHUP: reloading {len(current)} workers one at a time")
        self._reload_old.update(p.pid for p in current)
        self._reload_finishing = False
        self._reload_queue.extend(p for p in current if p not in self._reload_queue)
        if self._reloading is None:
            self._next_reload()

    def _next_reload(self) -> None:
        while self._reload_queue:
            old = self._reload_queue.pop(0)
            if old.pid in self._procs and not old.stopping and old.replaced_by is None:
                self._spawn(old.index, old, reload=True)
                self._reloading = old.replaced_by
                return
        if self._procs:
            self._reload_finishing = True
            self._reload_check_done()

    def _reload_check_done(self) -> None:
        """Say "reload done" once the last old worker has exited, not before."""
        self._reload_old &= set(self._procs)
        if self._reload_finishing and not self._reload_old:
            self._reload_finishing = False
            self.log("reload done: every worker was replaced")
            if self.notifier is not None:
                self.notifier.ready(self._status_line())
            if self.on_reloaded is not None:
                self.on_reloaded(True)

    # ------------------------------------------------------------ events

    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if signum in _STOP_SIGNALS:
                if self._stopping:
                    self.log(f"{signal.Signals(signum).name} again: killing the workers")
                    for proc in self._procs.values():
                        self._stop(proc, kill=True)
                    continue
                self.log(f"{signal.Signals(signum).name}, stopping "
                         f"(graceful timeout {self.graceful_timeout:g} s)")
                self._stopping = True
                self._tick_at = None
                if self.notifier is not None:
                    self.notifier.stopping("stopping the workers")
                self._spawn_at.clear()
                self._reload_queue.clear()
                for proc in self._procs.values():
                    self._stop(proc)
            elif signum == signal.SIGHUP and not self._stopping:
                self._start_reload()

    def _reap(self) -> None:
        while self._procs:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            except OSError as exc:  # pragma: no cover - EINTR is retried by Python
                if exc.errno == errno.EINTR:
                    continue
                raise
            if pid == 0:
                return
            proc = self._procs.pop(pid, None)
            if proc is not None:
                self._read_control(proc)  # a last "ready"/"recycle" before it died
                self._unregister(proc)
                if self.on_worker_exit is not None:
                    self.on_worker_exit(pid)
                self._exited(proc, os.waitstatus_to_exitcode(status))

    def _exited(self, proc: WorkerProc, code: int) -> None:
        if proc.replaced_by is not None:
            proc.replaced_by.replaces = None
        replacement_of = proc.replaces
        if replacement_of is not None:
            replacement_of.replaced_by = None
        if self._stopping:
            return
        if proc.stopping:
            self.log(f"worker {proc.index} (pid {proc.pid}) stopped (replaced)")
            if self._reload_finishing:
                self._reload_check_done()
            return
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited ({code})"
        if proc.reload and not proc.ready:
            self.log(f"new worker {proc.index} (pid {proc.pid}) {how} before it was ready: "
                     "reload abandoned, the old workers keep serving")
            self._reloading = None
            self._reload_queue.clear()
            self._reload_old.clear()
            self._reload_finishing = False
            if self.notifier is not None:
                self.notifier.ready("reload abandoned; " + self._status_line())
            if self.on_reloaded is not None:
                self.on_reloaded(False)
            return
        if code == WORKER_BOOT_ERROR and not proc.ready and not self._announced:
            self.log(f"worker {proc.index} (pid {proc.pid}) could not start; stopping")
            self._status = proc.boot_status or 1
            self._stopping = True
            self._spawn_at.clear()
            for other in self._procs.values():
                self._stop(other)
            return
        if proc.replaced_by is not None:
            return  # its replacement is already on its way
        uptime = time.monotonic() - proc.started
        if uptime < self.min_uptime:
            failures = self._failures.get(proc.index, 0) + 1
            self._failures[proc.index] = failures
            delay = min(self.max_backoff, 0.1 * 2 ** (failures - 1))
        else:
            self._failures[proc.index] = 0
            delay = 0.0
        self.log(f"worker {proc.index} (pid {proc.pid}) {how}; restarting"
                 + (f" in {delay:.1f} s" if delay else ""))
        self._spawn_at[proc.index] = (time.monotonic() + delay, replacement_of)

    def _status_line(self) -> str:
        serving = sum(1 for p in self._procs.values() if p.ready and not p.stopping)
        stopping = sum(1 for p in self._procs.values() if p.stopping)
        return (f"{serving} of {self.workers} workers serving"
                + (f", {stopping} finishing" if stopping else ""))

    def _timers(self) -> None:
        now = time.monotonic()
        if self._tick_at is not None and self._tick_at <= now and self.notifier is not None:
            if self.notifier.watchdog_interval is not None:
                self.notifier.watchdog(self._status_line())
            else:
                self.notifier.status(self._status_line())
            self._tick_at = now + (self.notifier.watchdog_interval or 5.0)
        for index, (at, replaces) in list(self._spawn_at.items()):
            if at <= now and not self._stopping:
                del self._spawn_at[index]
                alive = replaces if replaces is not None and replaces.pid in self._procs else None
                if alive is not None and (alive.stopping or alive.replaced_by is not None):
                    alive = None
                self._spawn(index, alive)
        for proc in list(self._procs.values()):
            if proc.kill_at is not None and proc.kill_at <= now:
                self.log(f"worker {proc.index} (pid {proc.pid}) did not stop in time; killing it")
                proc.kill_at = None
                signal_worker(proc.pid, signal.SIGKILL)
            elif not (proc.ready or proc.stopping or proc.given_up) and (
                    now >= proc.started + self.ready_timeout):
                self.log(f"worker {proc.index} (pid {proc.pid}) not ready after "
                         f"{self.ready_timeout:g} s; killing it")
                proc.given_up = True  # its end is handled like any other death
                signal_worker(proc.pid, signal.SIGKILL)
