"""Suspension: where a suspended request waits, and how it is woken.

A :class:`Parking` is made for a request the first time it suspends (or asks
to be resumed at a graceful stop): a request that never suspends -- the
common keep-alive GET -- never makes one.  Its :class:`~mhd2.exchange.Exchange`
owns it and is the only caller.

The rule for a ``request_resume`` that comes *before* the daemon parks the
request (the application resumes from inside the callback that suspended
it): it is remembered (``pending``) and the park that follows returns at
once.  A resume of a request that is not suspended does nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Protocol

import trio

if TYPE_CHECKING:
    from .shared import Shared

__all__ = ["ClientGone", "DaemonStopping", "ParkedBody", "Parking", "ParkingHost",
           "ResumableWait"]


class ClientGone(trio.BrokenResourceError):
    """The client closed the connection while its request was suspended."""


class DaemonStopping(Exception):
    """The daemon is stopping while the request is suspended."""


class ParkedBody(Protocol):
    """A response body that can be written from outside its connection's task while
    its content creator is suspended (HTTP/1 over a plain socket: see
    :class:`mhd2.http1.reply.DirectBody`)."""

    #: Body pieces are framed as chunks (``Transfer-Encoding: chunked``).
    chunked: bool

    def send_nowait(self, data: bytes | list[bytes]) -> int:
        """Write what fits now (already framed); the count written (``0``: none)."""

    def owe(self, rest: bytes) -> None:
        """The unwritten rest of a :meth:`send_nowait`: it goes out first, from the task."""


class ResumableWait:
    """A parked request's wait for its client to leave, which :meth:`cancel` ends
    without a trio cancel scope (HTTP/1 on a plain socket: ``mhd2.http1.watch.Watch``).

    Entering a cancel scope at every park and cancelling it at every resume
    (trio's scope bookkeeping, a ``Cancelled`` unwinding the stack) cost
    about 25 µs of the ~40 µs that parking and waking a request took: every
    long poll pays both, once per message.
    """

    __slots__ = ()

    def cancel(self) -> None:
        """Resume: :meth:`wait` returns ``True`` (now, or at once if not waiting yet)."""
        raise NotImplementedError

    async def wait(self) -> bool:
        """Wait until :meth:`cancel` (``True``) or until the client left (``False``)."""
        raise NotImplementedError


class ParkingHost(Protocol):
    """What a parked request needs from the protocol that carries it (part of
    :class:`mhd2.exchange.ExchangeHost`)."""

    def wait_client_gone(self) -> Awaitable[None] | ResumableWait:
        """Return when the client has gone away (or sleep until cancelled).

        (An ``async def``, or a plain method returning the awaitable that
        waits: one coroutine frame fewer for every parked request.  Or a
        :class:`ResumableWait`, which the exchange ends without a cancel scope.)"""

    def resumed(self) -> None:
        """The parked request goes on (re-arm timeouts, keep what came meanwhile)."""


class Parking:
    """The suspension state of one request (see the module docstring).

    Args:
        shared: the daemon's shared record (the parked count, ``stopping``).
        host: the protocol connection carrying the request.
    """

    __slots__ = ("_direct", "_pending", "_resume_on_stop", "_scope", "_suspended",
                 "_woken_for_stop", "host", "shared")

    def __init__(self, shared: Shared, host: ParkingHost) -> None:
        self.shared = shared
        self.host = host
        self._suspended = False
        self._pending = False
        self._scope: trio.CancelScope | ResumableWait | None = None
        self._woken_for_stop = False
        self._resume_on_stop = False
        self._direct: ParkedBody | None = None

    def suspend(self) -> None:
        """A suspend action was made: the daemon parks the request next."""
        self._suspended = True

    def ended(self) -> None:
        """The request ended: a resume does nothing from now on."""
        self._suspended = False

    def resume_when_stopping(self) -> None:
        """A graceful stop resumes the parked request instead of ending it."""
        self._resume_on_stop = True

    @property
    def has_direct_body(self) -> bool:
        """:meth:`set_direct_body` was called."""
        return self._direct is not None

    def set_direct_body(self, body: ParkedBody) -> None:
        """*body* takes writes from outside while the request is parked."""
        self._direct = body

    async def park(self) -> None:
        """Wait until :meth:`resume`; no inactivity timeout applies meanwhile.

        Raises:
            ClientGone: the client closed the connection meanwhile.
            DaemonStopping: the daemon is stopping.
        """
        self._suspended = True
        self.shared.parked += 1
        try:
            if self._pending:
                # Resumed already, before the daemon got here (from the callback).
                self._pending = False
                await trio.lowlevel.checkpoint()
                return
            if self.shared.stopping:
                if not self._resume_on_stop:
                    raise DaemonStopping
                await trio.lowlevel.checkpoint()
                return
            waiting: Awaitable[None] | ResumableWait = self.host.wait_client_gone()
            if isinstance(waiting, ResumableWait):
                self._scope = waiting
                if not await waiting.wait():
                    raise ClientGone("the client closed the connection while suspended")
            else:
                with trio.CancelScope() as scope:
                    self._scope = scope
                    await waiting
                    raise ClientGone("the client closed the connection while suspended")
            if self._woken_for_stop:
                raise DaemonStopping
        finally:
            self._scope = None
            self._suspended = False
            self.shared.parked -= 1
        self.host.resumed()

    def parked_body(self) -> ParkedBody | None:
        """The body to write to from outside while the request is parked, if that is safe.

        Only while a content creator is suspended and its task waits in
        :meth:`park` (not yet woken, the daemon not stopping) on a connection
        that can take bytes without its task (HTTP/1, plain socket): the task
        sends nothing then, so bytes written by another task (mhd2.fanout's
        direct delivery) cannot interleave with its own.  Else ``None``.
        """
        # (resume() clears `suspended` when it wakes the task: cheaper to test
        # than the scope's cancel_called, which reads the clock.)
        if self._scope is None or not self._suspended or self.shared.stopping:
            return None
        return self._direct

    def wake_for_stop(self) -> bool:
        """Graceful stop: wake the parked request; :meth:`park` then raises
        (or returns, after :meth:`resume_when_stopping`).

        Returns:
            True if the request was parked.
        """
        scope = self._scope
        if scope is None:
            return False
        if not self._resume_on_stop:
            self._woken_for_stop = True
        scope.cancel()
        return True

    def resume(self) -> None:
        """Resume the request, if suspended (runs in the daemon's trio run)."""
        if not self._suspended:
            return
        scope = self._scope
        if scope is None:
            # Suspended by an action that the daemon has not parked yet.
            self._pending = True
            return
        self._suspended = False  # woken: a second resume does nothing
        scope.cancel()
