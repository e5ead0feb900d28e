"""``--reload``: run the server in a child process, start it again when code changes.

For development (as ``uvicorn --reload``): this process binds the listening
socket once, watches the directories (``--reload-dir``, default the current
one) for changed ``.py`` files with watchfiles (``pip install 'mhd2[dev]'``)
and runs the server as a child process of the same command line on that
socket. After a change the child is stopped (SIGTERM: requests in flight
finish within ``--graceful-timeout``) and a new one started; connections
made meanwhile wait in the socket's backlog. A child that fails to start
(a syntax error) is started again after the next change.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["CHILD_ENV", "run_reloader"]

#: Set in the child's environment: it serves (and does not watch) itself.
CHILD_ENV = "_MHD2_RELOAD_CHILD"
#: How long file events are collected before a restart, in milliseconds.
DEBOUNCE_MS = 300


def _log(message: str) -> None:
    print(f"mhd2: {message}", file=sys.stderr, flush=True)


def run_reloader(sock_fd: int, directories: Sequence[str], graceful_timeout: float,
                 listen_env: dict[str, str]) -> int:
    """Serve through restarted children until SIGINT/SIGTERM; the exit status (0).

    Args:
        sock_fd: the listening socket's descriptor (handed to every child).
        directories: the directories to watch.
        graceful_timeout: how long a stopping child may take before SIGKILL.
        listen_env: the environment that names the socket to a child.
    """
    from watchfiles import PythonFilter, watch

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    os.set_inheritable(sock_fd, True)
    env = {**os.environ, **listen_env, CHILD_ENV: "1"}
    argv = [sys.executable, *sys.orig_argv[1:]]
    shown = ", ".join(os.path.abspath(d) for d in directories)
    _log(f"reloading on changes to .py files under {shown}")
    child: subprocess.Popen[bytes] | None = subprocess.Popen(argv, env=env, pass_fds=(sock_fd,))
    try:
        for changes in watch(*directories, watch_filter=PythonFilter(), stop_event=stop,
                             debounce=DEBOUNCE_MS, step=50, raise_interrupt=False):
            names = sorted({os.path.relpath(path) for _, path in changes})
            _log(f"{', '.join(names[:3])}{' ...' if len(names) > 3 else ''} changed; "
                 "restarting")
            _stop_child(child, graceful_timeout)
            child = subprocess.Popen(argv, env=env, pass_fds=(sock_fd,))
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _stop_child(child, graceful_timeout)
    return 0


def _stop_child(child: subprocess.Popen[bytes] | None, graceful_timeout: float) -> None:
    if child is None or child.poll() is not None:
        return
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(graceful_timeout + 1.0)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
