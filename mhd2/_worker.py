"""The worker's side of :mod:`mhd2.supervisor`: what a worker process knows and says.

A supervised worker gets a :class:`Worker` (its slot, its graceful timeout,
the write end of its pipe to the supervisor) and talks to the supervisor
through that pipe, one byte a message: :data:`READY` ("I accept
connections now"), :data:`RECYCLE` ("replace me") and :data:`START_FAILED`
followed by a status byte ("I cannot start: exit with this status"); the
supervisor reads them with :func:`decode`.  Workers get SIGTERM to stop; in
a worker SIGTERM and SIGCHLD have their default handlers, SIGINT raises
``KeyboardInterrupt`` (a worker's ``KeyboardInterrupt`` is exit status 0)
and SIGHUP is ignored (:func:`worker_process`).
:func:`drain_and_stop` is a worker's graceful stop; :func:`stop_with` makes
a new worker stop when its supervisor dies.  The supervisor itself (forking,
restarting, reloading, stopping) is :class:`mhd2.supervisor.Supervisor`,
which re-exports the public names here.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import traceback
from collections.abc import Callable
from typing import Any, Final, NoReturn

from .errors import UsageError

__all__ = ["DRAIN_SECONDS", "READY", "RECYCLE", "START_FAILED", "WORKER_BOOT_ERROR", "Worker",
           "WorkerMain", "decode", "drain_and_stop", "stop_with", "worker_process"]

#: Exit status of a worker that could not start its application at all (it
#: is not restarted in a loop).
WORKER_BOOT_ERROR: Final = 3

#: "Ready": the worker accepts connections.
READY: Final = b"R"
#: "Recycle me": start my replacement, then stop me.
RECYCLE: Final = b"Q"
#: "I cannot start" (a status byte follows).
START_FAILED: Final = b"S"


class Worker:
    """What a worker process knows about itself; handed to ``worker_main``.

    Attributes:
        index: the worker's slot, ``0`` to ``workers - 1``; a replacement
            gets the slot of the worker it replaces.
        graceful_timeout: seconds the worker has between SIGTERM and its end.
    """

    def __init__(self, index: int, control_fd: int, graceful_timeout: float) -> None:
        self.index = index
        self.graceful_timeout = graceful_timeout
        self._fd = control_fd
        self._recycle_asked = False

    def ready(self) -> None:
        """Tell the supervisor this worker accepts connections now.

        Call it once the daemon listens; the worker it replaces is stopped
        only after this. A worker that never calls it is killed after the
        supervisor's ``ready_timeout``.
        """
        self._send(READY)

    def recycle(self) -> None:
        """Ask to be replaced; keep serving until SIGTERM arrives.

        The supervisor starts a new worker and, once that one is ready,
        sends this one SIGTERM. Calling it more than once has no effect.
        """
        if not self._recycle_asked:
            self._recycle_asked = True
            self._send(RECYCLE)

    def start_failed(self, status: int) -> int:
        """Say that the application cannot start, and the exit status the
        supervisor should end with (if it is first starting); return
        :data:`WORKER_BOOT_ERROR`, this worker's own exit status.

        Args:
            status: 1 to 255, e.g. 3 for an ASGI app's failed startup.
        """
        if not 1 <= status <= 255:
            raise UsageError(f"start_failed({status}): an exit status is 1 to 255")
        self._send(START_FAILED + bytes([status]))
        return WORKER_BOOT_ERROR

    def _send(self, message: bytes) -> None:
        try:
            os.write(self._fd, message)
        except OSError:
            pass  # the supervisor is gone: nothing to tell


#: ``worker_main(sock, worker)`` runs in the worker process; its return value
#: (an int, or ``None`` for 0) is the worker's exit status.
WorkerMain = Callable[[socket.socket, Worker], "int | None"]


def decode(data: bytes) -> tuple[list[bytes], bytes, int | None]:
    """The supervisor's reading of a worker's pipe (sans-IO).

    Args:
        data: what was read, after what was left of the last read.

    Returns:
        The messages (:data:`READY`, :data:`RECYCLE`), the bytes to keep for
        the next read (a :data:`START_FAILED` whose status byte has not come
        yet), and the status of a complete :data:`START_FAILED` (nothing
        follows it: the worker exits) or ``None``.
    """
    messages: list[bytes] = []
    for at, byte in enumerate(data):
        message = bytes([byte])
        if message == START_FAILED:
            if at + 1 == len(data):
                return messages, message, None  # its status byte comes with the next read
            return messages, b"", data[at + 1]
        messages.append(message)
    return messages, b"", None


def worker_process(worker_main: WorkerMain, sock: socket.socket, worker: Worker,
                   detach: Callable[[], None]) -> NoReturn:
    """Be a worker, in a process just forked by the supervisor: never returns.

    The signals are set as a worker has them -- SIGTERM and SIGCHLD default,
    SIGINT raising ``KeyboardInterrupt``, SIGHUP ignored -- *detach* lets go of
    what the process inherited from the supervisor, then ``worker_main(sock,
    worker)`` runs, and the process exits with its status.

    Error handling:
        ``KeyboardInterrupt`` is status 0, ``SystemExit`` its code, any other
        exception is printed and status 1.
    """
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        # SIGHUP is the supervisor's business (reload); a hang-up of the
        # terminal's process group must not kill the workers under it.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        detach()
        result = worker_main(sock, worker)
        code = 0 if result is None else int(result)
    except KeyboardInterrupt:
        code = 0  # SIGINT from the terminal before the worker's own handler was in place
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


#: How long :func:`drain_and_stop` lets connections end on their own.
DRAIN_SECONDS: Final = 1.0


async def drain_and_stop(daemon: Any, grace: float, *, drain: float = DRAIN_SECONDS) -> None:
    """A worker's graceful stop: stop accepting, let connections finish, then stop.

    It first only quiesces (the listening socket stays open in the other
    workers): for up to *drain* seconds every connection keeps being served,
    and each reply says ``Connection: close``, so a kept-alive client that
    sends its next request now is answered instead of finding its connection
    closed.  It moves on as soon as the last connection has ended
    (:meth:`mhd2.Daemon.drained`), then stops the daemon with what is left
    of *grace* (idle keep-alive connections are closed, a connection that has
    not sent its first request yet still gets it, requests in flight finish,
    then what remains is cancelled).

    Args:
        daemon: a running :class:`mhd2.Daemon`.
        grace: the whole time the stop may take, in seconds.
        drain: the longest wait for connections to end by themselves.
    """
    import trio

    deadline = trio.current_time() + grace
    daemon.quiesce()
    with trio.move_on_after(min(drain, grace)):
        await daemon.drained()
    await daemon.stop(grace=max(0.0, deadline - trio.current_time()))


def stop_with(supervisor: int) -> None:
    """In a new worker: be sent SIGTERM (a graceful stop) if the supervisor dies.

    A supervisor that is killed outright (``kill -9``, an OOM kill) cannot stop
    its workers; on Linux ``prctl(PR_SET_PDEATHSIG)`` has the kernel do it,
    so no worker is left serving, orphaned, on the shared socket.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return
    if os.getppid() != supervisor:  # it died before the prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
