"""One supervised worker process as the supervisor sees it: forking it, its record,
signalling it.

:func:`fork_worker` forks a worker with a pipe back to the supervisor (the
worker writes its messages into it, :mod:`mhd2._worker`) and returns its
:class:`WorkerProc`; :func:`signal_worker` signals a worker that may be gone already.
What to do with the workers -- restart, recycle, reload, stop -- is
:class:`mhd2.supervisor.Supervisor`'s.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

from ._worker import stop_with

__all__ = ["WorkerProc", "fork_worker", "signal_worker"]


@dataclass(eq=False)
class WorkerProc:
    """The supervisor's record of one worker process."""

    pid: int
    index: int
    #: The read end of the worker's pipe to the supervisor.
    fd: int
    started: float
    ready: bool = False
    stopping: bool = False
    kill_at: float | None = None
    reload: bool = False
    given_up: bool = False
    replaces: WorkerProc | None = None
    replaced_by: WorkerProc | None = None
    buffer: bytes = field(default=b"", repr=False)
    #: The exit status the worker asked for with ``Worker.start_failed``.
    boot_status: int | None = None


def fork_worker(index: int, child: Callable[[int, int], NoReturn], *,
                replaces: WorkerProc | None, reload: bool) -> WorkerProc:
    """Fork worker *index*; in the child, run ``child(index, pipe_write_fd)`` (never returns).

    Args:
        index: the worker's slot.
        child: what the new process runs: the worker itself.
        replaces: the worker this one replaces (recycle, reload), if any; the
            two records are linked.
        reload: it is started by a reload (SIGHUP).

    Returns:
        The new worker's record (in the supervisor).
    """
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    supervisor = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        stop_with(supervisor)
        child(index, write_fd)  # never returns
    os.close(write_fd)
    os.set_blocking(read_fd, False)
    proc = WorkerProc(pid, index, read_fd, time.monotonic(), reload=reload, replaces=replaces)
    if replaces is not None:
        replaces.replaced_by = proc
    return proc


def signal_worker(pid: int, signum: int) -> None:
    """Send *signum* to worker *pid*; one that has exited already is no error."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
