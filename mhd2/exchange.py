"""One request's engine state, independent of the protocol that carries it.

An :class:`Exchange` is made for each request head the daemon accepts, by the
HTTP/1 connection loop or an HTTP/2 stream.  It owns
what the application's calls change and what the engine must get right once:

* the action slots -- "exactly one action per callback invocation"
  (:class:`~mhd2._slot.Slot`), through which :mod:`mhd2.app_calls` calls the
  application's request and upload callbacks;
* suspension: :meth:`Exchange.park` and :meth:`Exchange.resume` (which
  :func:`~mhd2.request_resume` calls from any task or thread:
  :mod:`mhd2.request_calls`); the waiting itself is
  :class:`mhd2.parking.Parking`'s, made only for a request that suspends;
* the end: :meth:`Exchange.end` reports ``notify_request_ended`` (and the
  response's termination callback) exactly once, however the request ends.

Only the exchange changes its state; the protocol loops and writers tell it
what happened through its methods.  The :class:`~mhd2.Request` the
application sees reads it through :class:`~mhd2.exchange_view.ExchangeView`
(plus ``app_context``).
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol, cast

import trio

from ._proxy.forwarded import resolve_from_headers
from ._slot import Slot, UploadSlot
from .callbacks import report
from .enums import RequestEndedCode, StatusCode
from .errors import UsageError
from .parking import ClientGone, DaemonStopping, ParkedBody, Parking, ParkingHost
from .request import Request, exchange_view

if TYPE_CHECKING:
    from ._auth.nonces import NonceRegistry
    from .connection_info import ConnectionInfo
    from .options import DaemonOptions
    from .response import Response
    from .shared import Shared

__all__ = [
    "ABORTED",
    "ClientGone",
    "DaemonStopping",
    "Exchange",
    "ExchangeHost",
    "Ending",
    "ParkedBody",
    "exchange_of",
]

logger = logging.getLogger("mhd2")


class Ending(NamedTuple):
    """The request ends without the application's response: answer *status*
    (if not ``None`` and still possible), end with *code*, close the connection.
    """

    status: int | None
    code: RequestEndedCode


ABORTED = Ending(None, RequestEndedCode.BY_APP_ABORT)


#: The shared empty list of an exchange's optional collections (never appended
#: to: :meth:`Exchange.add_post_field` and :meth:`Exchange.add_end_hook` make
#: a list of the exchange's own first).
_NONE: list[Any] = []


class ExchangeHost(ParkingHost, Protocol):
    """What an exchange needs from the protocol that carries it (waiting for a
    parked request's client to leave, and going on: :class:`~mhd2.parking.ParkingHost`)."""

    @property
    def timeout(self) -> float | None:
        """The inactivity timeout of this connection (HTTP/2: of the stream)."""

    def set_timeout(self, seconds: float | None) -> None:
        """Override the inactivity timeout of this connection."""

    def cut(self) -> None:
        """End the request now, from outside its task (mhd2.fanout drops a slow
        subscriber): HTTP/1 closes the connection, HTTP/2 resets the stream."""

    async def send_informational(self, status: int, fields: list[tuple[str, str]]) -> bool:
        """Send an interim (1xx) response head now; ``False`` if the protocol
        version may not carry one (HTTP/1.0) or the final head has begun."""


class Exchange:
    """The engine state of one request (see the module docstring).

    Only the exchange changes its state: the protocol loops, the writers and
    the library's modules tell it what happened through its methods
    (:meth:`set_response`, :meth:`head_sent`, :meth:`body_sent`,
    :meth:`received`, :meth:`body_complete` ...) and read it through
    read-only properties; :class:`~mhd2.Request` sees it as an
    :class:`~mhd2.exchange_view.ExchangeView`.

    Args:
        shared: the daemon's shared record.
        host: the protocol connection carrying the request.
        info: the connection's :class:`~mhd2.ConnectionInfo`.
        method, uri, version: the request line (``version`` as ``"HTTP/1.1"``).
        headers: ``(name as sent, value)`` pairs in arrival order.
        upload_size: ``0``, a ``Content-Length``, or ``None`` (unknown).
        header_bytes: the headers as ``(lower-case name, value)`` bytes, if the
            parser has them (``request.raw_headers``; else made from *headers*).
    """

    __slots__ = (
        "_body_bytes_sent",
        "_body_read",
        "_end_code",
        "_ended",
        "_footers",
        "_interim_lock",
        "_on_end",
        "_parking",
        "_post_fields",
        "_request",
        "_response",
        "_status",
        "_upload_received",
        "_upload_slot",
        "action_slot",
        "client_address",
        "host",
        "scheme",
        "shared",
        "started_at",
    )

    def __init__(
        self,
        shared: Shared,
        host: ExchangeHost,
        info: ConnectionInfo,
        method: str,
        uri: str,
        version: str,
        headers: list[tuple[str, str]],
        upload_size: int | None,
        header_bytes: Sequence[tuple[bytes, bytes]] | None = None,
    ) -> None:
        #: The daemon's shared record.
        self.shared: Final = shared
        #: The protocol connection (or HTTP/2 stream) carrying the request.
        self.host: Final = host
        #: Holds the action a request callback call made, until the call is
        #: checked (:meth:`~mhd2.actions.Slot.call`; then spent: the action
        #: refers to the request, see :meth:`end`).
        self.action_slot: Final = Slot()
        self._upload_slot: Slot | None = None  # made when an upload callback runs
        # Made when the request first suspends (a keep-alive GET never does).
        self._parking: Parking | None = None
        # Made by interim_writes() when an interim (1xx) head is sent from a
        # task other than the request's: HTTP/1 writes go one at a time.
        self._interim_lock: trio.Lock | None = None
        self._ended = False
        self._end_code: RequestEndedCode | None = None
        self._response: Response | None = None
        self._status: int | None = None
        self._body_bytes_sent = 0
        self._body_read = upload_size == 0
        self._upload_received = 0
        self._footers: list[tuple[str, str]] = _NONE
        self._post_fields: list[Any] = _NONE
        self._on_end: Sequence[Callable[[], object]] = _NONE
        #: ``time.monotonic()`` when the request head was parsed.
        self.started_at: Final = time.monotonic()
        #: The real client after forwarded headers (``None``: the connection's).
        #: (Plain attributes, not properties: ``request.client_address`` and
        #: ``request.scheme`` read them for every ASGI request.)
        self.client_address: tuple[str, int] | None = None
        #: ``"https"`` or ``"http"``: TLS, or what a trusted proxy said.
        self.scheme = "https" if info.tls_version is not None else "http"
        self._request = Request(self, method, uri, version, headers, upload_size, info,
                                header_bytes)

    # -- what the rest of the engine reads -----------------------------------------------

    @property
    def request(self) -> Request:
        """The application's :class:`~mhd2.Request` (a weak proxy once ended)."""
        return self._request

    @property
    def options(self) -> DaemonOptions:
        """The daemon's options."""
        return self.shared.options

    @property
    def nonces(self) -> NonceRegistry | None:
        """The daemon's Digest nonce registry (``None``: Digest auth is off)."""
        return self.shared.nonces

    @property
    def status(self) -> int | None:
        """The status of the response head sent (``None`` until a status line left)."""
        return self._status

    @property
    def body_bytes_sent(self) -> int:
        """Response body bytes actually written (not just announced)."""
        return self._body_bytes_sent

    @property
    def body_read(self) -> bool:
        """The request body was read to its end (or there is none)."""
        return self._body_read

    @property
    def upload_received(self) -> int:
        """Bytes of the request body received so far."""
        return self._upload_received

    @property
    def footers(self) -> list[tuple[str, str]]:
        """The request's trailer fields, once its body was read."""
        return self._footers

    @property
    def post_fields(self) -> list[Any]:
        """Form fields the POST parser kept in memory (``PostField`` records)."""
        return self._post_fields

    @property
    def ended(self) -> bool:
        """:meth:`end` was called."""
        return self._ended

    @property
    def end_code(self) -> RequestEndedCode | None:
        """How the request ended (``None`` until it has)."""
        return self._end_code

    @property
    def connection_timeout(self) -> float | None:
        """The inactivity timeout of the connection (HTTP/2: the stream) carrying it."""
        return self.host.timeout

    def set_connection_timeout(self, seconds: float | None) -> None:
        """Override the inactivity timeout of the connection (HTTP/2: the stream)."""
        self.host.set_timeout(seconds)

    # -- what the protocol loops and writers tell it -----------------------------------

    def set_response(self, response: Response) -> bool:
        """*response* answers the request: released (and its termination callback
        told) when the request ends.

        Returns:
            Whether an interim head was written from another task
            (:meth:`interim_writes`): HTTP/1 awaits :meth:`interim_done`
            before the final head.  (One call for both on every request.)
        """
        self._response = response
        return self._interim_lock is not None

    def head_sent(self, status: int) -> None:
        """The final response head, with *status*, is on its way out."""
        self._status = status

    def daemon_status(self, status: int) -> None:
        """The daemon answers *status* itself (an error page, a malformed request):
        the end reports it, unless a response head had a status already."""
        if self._status is None:
            self._status = status

    def body_sent(self, nbytes: int) -> None:
        """*nbytes* of the response body (and its framing) were written, in all."""
        self._body_bytes_sent = nbytes

    def received(self, nbytes: int) -> None:
        """*nbytes* more of the request body arrived."""
        self._upload_received += nbytes

    def body_complete(self, footers: list[tuple[str, str]]) -> None:
        """The request body was read to its end; *footers* are its trailer fields."""
        self._footers = footers
        self._body_read = True

    # -- what a trusted proxy says ------------------------------------------------

    def believe_proxy(self, fields: Iterable[tuple[str | bytes, str | bytes]]) -> None:
        """Take :attr:`client_address` and :attr:`scheme` from a trusted proxy's
        ``X-Forwarded-*`` or ``Forwarded`` among *fields*: the family
        ``forwarded_headers`` names (the other is ignored)."""
        use = self.shared.options.forwarded_headers
        if not use:
            return
        found = resolve_from_headers(self._request.connection.client_address,
                                     self.shared.trusted, fields, scheme=self.scheme, use=use)
        if found.from_headers:
            self.client_address = found.client_address
            self.scheme = found.scheme

    @property
    def upload_slot(self) -> Slot:
        """The action slot of upload callbacks (made on first use)."""
        slot = self._upload_slot
        if slot is None:
            slot = self._upload_slot = UploadSlot()
        return slot

    def add_post_field(self, field: Any) -> None:
        """Keep a form field the POST parser collected (``request.post_data``)."""
        if self._post_fields is _NONE:
            self._post_fields = []
        self._post_fields.append(field)

    def add_end_hook(self, hook: Callable[[], object]) -> None:
        """Call *hook* once when the request ends, however it ends (library hooks)."""
        # A tuple: most requests with a hook have one (a list would keep room for more).
        self._on_end = (*self._on_end, hook)

    # -- suspension ---------------------------------------------------------------

    def _parked(self) -> Parking:
        parking = self._parking
        if parking is None:
            parking = self._parking = Parking(self.shared, self.host)
        return parking

    def mark_suspended(self) -> None:
        """A suspend action was made (the daemon parks the request next)."""
        if self.shared.options.disallow_suspend_resume:
            raise UsageError(
                "suspend is disabled by the daemon option disallow_suspend_resume=True",
                StatusCode.FEATURE_DISABLED,
            )
        self._parked().suspend()

    def park(self) -> Awaitable[None]:
        """Wait until :func:`request_resume` (:meth:`Parking.park
        <mhd2.parking.Parking.park>`; its awaitable, without a frame of ours).

        Raises:
            ClientGone: the client closed the connection meanwhile.
            DaemonStopping: the daemon is stopping.
        """
        return self._parked().park()

    def resume(self) -> None:
        """Resume the request, if suspended (runs in the daemon's trio run)."""
        parking = self._parking
        if parking is not None and not self._ended:
            parking.resume()

    def wake_for_stop(self) -> bool:
        """Graceful stop: wake the parked request; :meth:`park` then raises
        (or returns, after :meth:`resume_when_stopping`).

        Returns:
            True if the request was parked.
        """
        parking = self._parking
        return parking is not None and parking.wake_for_stop()

    def resume_when_stopping(self) -> None:
        """A graceful stop resumes the parked request like :func:`request_resume`
        (the callback or content creator then sees ``shared.stopping`` and says
        goodbye itself: mhd2.fanout) instead of answering 503."""
        self._parked().resume_when_stopping()

    @property
    def has_direct_body(self) -> bool:
        """:meth:`set_direct_body` was called."""
        parking = self._parking
        return parking is not None and parking.has_direct_body

    def set_direct_body(self, body: ParkedBody) -> None:
        """The HTTP/1 sender of a content creator's body over a plain socket: *body*
        takes writes from outside while the request is parked (:meth:`parked_body`)."""
        self._parked().set_direct_body(body)

    def parked_body(self) -> ParkedBody | None:
        """The body to write to from outside while the request is parked, if that
        is safe (see :meth:`Parking.parked_body <mhd2.parking.Parking.parked_body>`)."""
        parking = self._parking
        return None if parking is None else parking.parked_body()

    def interim_writes(self) -> trio.Lock:
        """The lock that puts this request's interim heads (100, 103) on an
        HTTP/1 connection one at a time, and the final head after them."""
        lock = self._interim_lock
        if lock is None:
            lock = self._interim_lock = trio.Lock()
        return lock

    @property
    def answered(self) -> bool:
        """The final response was chosen, or its head has begun."""
        return self._response is not None or self._status is not None

    async def interim_done(self) -> None:
        """Wait until no interim head is being written (the final head goes after it)."""
        lock = self._interim_lock
        if lock is not None:
            async with lock:
                pass

    # -- the end -------------------------------------------------------------------

    def end(self, code: RequestEndedCode) -> None:
        """Report the end of the request, exactly once.

        Then the exchange lets go of what would keep it in a reference cycle
        (freed by the garbage collector's passes rather than at once): the
        end hooks, and its strong reference to the request -- the request
        keeps its exchange (``request.response_status`` and the rest stay
        readable), the exchange keeps the request only weakly from now on.
        """
        if self._ended:
            return
        self._ended = True
        self._end_code = code
        if self._parking is not None:
            self._parking.ended()
        request = self._request
        if self._on_end is not _NONE:
            hooks, self._on_end = self._on_end, _NONE
            for hook in hooks:
                try:
                    hook()
                except Exception:
                    logger.exception("mhd2: a request-end hook failed")
        response, self._response = self._response, None
        if response is not None:
            response._finish_use()
            if response.termination_callback is not None:
                report(response.termination_callback, request, code)
        shared = self.shared
        notify = shared.options.notify_request_ended
        if notify is not None:
            report(notify, request, code)
        if shared.metrics is not None:
            shared.metrics.request_ended(request)
        # (A proxy reads as the request while anyone else holds it: code that
        # still has the exchange -- an HTTP/2 stream's task -- holds it too.)
        # (No typing.cast(): it is a function call, on the path of every request.)
        self._request = weakref.proxy(request)


#: ``exchange_of(request)``: the :class:`Exchange` behind *request*, for the
#: library's modules above this one (those below see it as
#: :class:`~mhd2.exchange_view.ExchangeView`, through ``exchange_view``: the same
#: function, typed for the whole exchange).
exchange_of = cast(Callable[[Request], Exchange], exchange_view)

