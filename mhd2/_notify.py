"""systemd's notification protocol (``sd_notify``), in plain stdlib socket code.

A service started with ``Type=notify`` (or ``notify-reload``) gets the path of
a Unix datagram socket in ``NOTIFY_SOCKET``; it tells systemd how it is doing
by sending newline-separated ``KEY=VALUE`` assignments there (see
``sd_notify(3)``):

* ``READY=1`` once it listens (systemd holds back units ordered after it
  until then);
* ``RELOADING=1`` with ``MONOTONIC_USEC=`` (``CLOCK_MONOTONIC`` in µs) when a
  reload starts, and ``READY=1`` again when it is over;
* ``STOPPING=1`` when it begins to stop;
* ``WATCHDOG=1`` at least every ``WATCHDOG_USEC`` µs when the unit has
  ``WatchdogSec=`` (sent every half of it);
* ``STATUS=`` one line for ``systemctl status``.

Without ``NOTIFY_SOCKET`` :meth:`Notifier.from_environ` returns ``None`` and
nothing is sent. A failed send is ignored: the notification protocol must
never stop a server.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from typing import Final

__all__ = ["Notifier"]

#: A STATUS= line longer than this is cut (systemd shows one line anyway).
MAX_STATUS: Final = 200


class Notifier:
    """Sends notifications to the service manager at *address*.

    Args:
        address: ``NOTIFY_SOCKET``'s value: a path, or ``@name`` for an
            abstract socket.
        watchdog_usec: ``WATCHDOG_USEC`` (0: no watchdog).
    """

    def __init__(self, address: str, watchdog_usec: int = 0) -> None:
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_usec = watchdog_usec
        self._sock: socket.socket | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier | None:
        """The notifier ``NOTIFY_SOCKET`` asks for, or ``None`` without one.

        ``WATCHDOG_USEC`` counts only when ``WATCHDOG_PID`` is unset or this
        process's id (as ``sd_watchdog_enabled(3)``).
        """
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if not address or not (address.startswith(("/", "@"))):
            return None
        watchdog = 0
        pid = env.get("WATCHDOG_PID", "")
        if not pid or pid == str(os.getpid()):
            try:
                watchdog = max(0, int(env.get("WATCHDOG_USEC", "0")))
            except ValueError:
                watchdog = 0
        return cls(address, watchdog)

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``), or ``None``."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec else None

    def send(self, *assignments: str) -> None:
        """Send ``KEY=VALUE`` assignments in one datagram (errors are ignored)."""
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(assignments).encode("utf-8", "replace"), self.address)
        except OSError:
            pass  # the manager went away, or its queue is full: never stop serving for it

    def ready(self, status: str | None = None) -> None:
        """``READY=1`` (and a status line)."""
        self.send("READY=1", *self._status(status))

    def reloading(self, status: str | None = None) -> None:
        """``RELOADING=1`` with ``MONOTONIC_USEC`` (as ``Type=notify-reload`` wants)."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", *self._status(status))

    def stopping(self, status: str | None = None) -> None:
        """``STOPPING=1``."""
        self.send("STOPPING=1", *self._status(status))

    def watchdog(self, status: str | None = None) -> None:
        """``WATCHDOG=1`` (the service is alive), with a fresh status line."""
        self.send("WATCHDOG=1", *self._status(status))

    def status(self, status: str) -> None:
        """``STATUS=`` alone."""
        self.send(*self._status(status))

    @staticmethod
    def _status(status: str | None) -> tuple[str, ...]:
        if status is None:
            return ()
        line = " ".join(status.split())[:MAX_STATUS]
        return (f"STATUS={line}",)

    def close(self) -> None:
        """Close the socket (a later send opens it again)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
