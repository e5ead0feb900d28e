"""Actions: what the application tells the daemon to do next.

The request callback returns exactly one :class:`Action` per call, made by one
of the ``action_*`` functions; a dynamic content creator returns exactly one
:class:`DCCAction` per call, made by a ``dcc_action_*`` function.  Creating a
second one for the same call raises :class:`~mhd2.UsageError`.  The action
objects are plain records; the daemon (:mod:`mhd2.connection`,
:mod:`mhd2.http1.reply`) carries them out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._slot import Slot, UploadSlot
from ._syntax import BAD_VALUE as _BAD_VALUE
from ._syntax import TOKEN as _TOKEN
from .enums import StatusCode
from .errors import UsageError
from .request import exchange_view

if TYPE_CHECKING:
    from collections.abc import Callable

    from .request import Request
    from .response import Response

__all__ = [
    "AbortAction",
    "Action",
    "ResponseAction",
    "Slot",
    "UploadSlot",
    "SuspendAction",
    "UpgradeAction",
    "UploadAction",
    "UploadRequestAction",
    "action_abort_request",
    "action_from_response",
    "action_process_upload",
    "action_process_upload_full",
    "action_process_upload_inc",
    "action_suspend",
    "action_upgrade",
    "upload_action_abort_request",
    "upload_action_continue",
    "upload_action_from_response",
    "upload_action_suspend",
    "upload_action_upgrade",
]


class Action:
    """What the daemon does with a request; returned by the request callback."""

    __slots__ = ("request",)

    def __init__(self, request: Request) -> None:
        self.request = request


class ResponseAction(Action):
    """Send :attr:`response`."""

    __slots__ = ("response",)

    def __init__(self, request: Request, response: Response) -> None:
        self.request = request  # (as Action.__init__, without a second call per request)
        self.response = response


class AbortAction(Action):
    """Close the connection without a reply."""

    __slots__ = ()


class SuspendAction(Action):
    """Park the request until :func:`~mhd2.request_resume`, then call back again."""

    __slots__ = ()


def _claim(request: Request, action: Action) -> Action:
    return exchange_view(request).action_slot.claim(action)


def action_from_response(request: Request, response: Response | None) -> Action:
    """Send *response* (``MHD_action_from_response``).

    The response is frozen from now on; unless reusable it is destroyed after
    sending.  ``None`` aborts the request, as in MHD2.

    Raises:
        UsageError: another action was already created for this call, or the
            response was destroyed or (not being reusable) already used.
    """
    if response is None:
        return action_abort_request(request)
    slot = exchange_view(request).action_slot
    slot.check_free()
    response._acquire()
    return slot.claim(ResponseAction(request, response))


def action_abort_request(request: Request) -> Action:
    """Close the connection without a reply (``MHD_action_abort_request``)."""
    return _claim(request, AbortAction(request))


def action_suspend(request: Request) -> Action:
    """Park the request until :func:`~mhd2.request_resume` (``MHD_action_suspend``).

    While suspended the request does not time out; after the resume the
    request callback is called again, with ``request.app_context`` kept.

    Raises:
        UsageError: the daemon was made with ``disallow_suspend_resume=True``.
    """
    view = exchange_view(request)
    view.action_slot.check_free()
    view.mark_suspended()
    return _claim(request, SuspendAction(request))


# -- upgrades ------------------------------------------------------------------------


class UpgradeAction(Action):
    """Answer ``101 Switching Protocols`` and hand the connection to a handler.

    Attributes:
        value: the ``Upgrade`` header value (e.g. ``"websocket"``).
        handler: ``handler(request, urh)``, run once the 101 head has left.
        headers: extra header lines of the 101 response.
    """

    __slots__ = ("handler", "headers", "value")

    def __init__(self, request: Request, value: str, handler: Callable[..., Any],
                 headers: list[tuple[str, str]]) -> None:
        super().__init__(request)
        self.value = value
        self.handler = handler
        self.headers = headers


def _make_upgrade(request: Request, upgrade_hdr_value: str, upgrade_handler: Callable[..., Any],
                  headers: Sequence[tuple[str, str]]) -> UpgradeAction:
    if exchange_view(request).options.disallow_upgrade:
        raise UsageError("upgrades are disabled by the daemon option disallow_upgrade=True",
                         StatusCode.FEATURE_DISABLED)
    # HTTP/2 has no Upgrade (RFC 9113 §8.6): the action is made, and on a stream
    # opened by an extended CONNECT (RFC 8441) the stream itself is upgraded
    # (mhd2.http2.tunnel); any other stream answers 501 and logs why
    # (mhd2.http2.reply.refuse_upgrade).
    if request.version not in ("HTTP/1.1", "HTTP/2"):
        raise UsageError(
            "an HTTP/1.0 request cannot be upgraded (RFC 9110 §7.8: Upgrade is ignored "
            "in HTTP/1.0); answer it with a response", StatusCode.ACTION_INVALID)
    if not exchange_view(request).body_read:
        raise UsageError(
            "the request body has not been read: read it with an upload action and upgrade "
            "from its final callback with upload_action_upgrade",
            StatusCode.ACTION_INVALID,
        )
    if not isinstance(upgrade_hdr_value, str) or not upgrade_hdr_value.strip() or _BAD_VALUE.search(
        upgrade_hdr_value
    ):
        raise UsageError(f"upgrade_hdr_value {upgrade_hdr_value!r} must be a non-empty header value")
    if not callable(upgrade_handler):
        raise UsageError("upgrade_handler must be callable(request, urh)")
    checked: list[tuple[str, str]] = []
    for name, value in headers:
        if not isinstance(name, str) or not _TOKEN.fullmatch(name) or not isinstance(value, str) or (
            _BAD_VALUE.search(value)
        ):
            raise UsageError(f"upgrade header {name!r}: {value!r} is not a valid header line",
                             StatusCode.RESP_HEADER_VALUE_INVALID)
        if name.lower() in ("connection", "upgrade", "content-length", "transfer-encoding"):
            raise UsageError(f"the daemon sets {name} of a 101 response itself",
                             StatusCode.RESP_HEADER_NOT_ALLOWED)
        checked.append((name, value))
    return UpgradeAction(request, upgrade_hdr_value.strip(), upgrade_handler, checked)


def action_upgrade(
    request: Request,
    upgrade_hdr_value: str,
    upgrade_handler: Callable[..., Any],
    headers: Sequence[tuple[str, str]] = (),
) -> Action:
    """Switch protocols (``MHD_action_upgrade``).

    The daemon answers ``101 Switching Protocols`` with ``Connection: Upgrade``,
    ``Upgrade: <upgrade_hdr_value>`` and *headers*; once that head has been
    written, ``upgrade_handler(request, urh)`` runs (in the connection's task,
    in the daemon's nursery) with an :class:`~mhd2.UpgradeHandle`.  When the
    handler returns, the connection is closed if it is still open.

    Raises:
        UsageError: upgrades are disabled (``disallow_upgrade``), the request
            body is still unread (use :func:`upload_action_upgrade` from the
            final upload callback), or a header is invalid.
    """
    return _claim(request, _make_upgrade(request, upgrade_hdr_value, upgrade_handler, headers))


# -- uploads ------------------------------------------------------------------------


class UploadRequestAction(Action):
    """Read the request body and hand it to upload callbacks (``action_process_upload*``).

    Attributes:
        large_buffer_size: a body up to this size is delivered whole (``None``:
            always in pieces).
        full_cb: ``full_cb(request, data)`` for a whole body, or ``None``.
        inc_cb: ``inc_cb(request, data)`` for pieces, or ``None``.
    """

    __slots__ = ("full_cb", "inc_cb", "large_buffer_size")

    def __init__(
        self,
        request: Request,
        large_buffer_size: int | None,
        full_cb: Callable[..., Any] | None,
        inc_cb: Callable[..., Any] | None,
    ) -> None:
        super().__init__(request)
        self.large_buffer_size = large_buffer_size
        self.full_cb = full_cb
        self.inc_cb = inc_cb


def _check_buffer_size(large_buffer_size: int) -> None:
    if isinstance(large_buffer_size, bool) or not isinstance(large_buffer_size, int) or (
        large_buffer_size < 0
    ):
        raise UsageError(f"large_buffer_size {large_buffer_size!r} must be an int >= 0")


def _check_callable(name: str, cb: object) -> None:
    if not callable(cb):
        raise UsageError(f"{name} must be callable(request, data) returning an upload action")


def action_process_upload_full(
    request: Request, large_buffer_size: int, upload_cb: Callable[..., Any]
) -> Action:
    """Read the whole body, then call ``upload_cb(request, data)`` once.

    If the body is larger than *large_buffer_size*, or does not fit into what
    is left of the daemon's ``large_pool_size``, the reply is ``413 Content Too
    Large`` (for a declared ``Content-Length`` at once, without reading it).
    ``Expect: 100-continue`` is answered only when the body is read.

    Returns:
        The action; ``upload_cb`` then returns an upload action
        (usually :func:`upload_action_from_response`).
    """
    _check_buffer_size(large_buffer_size)
    _check_callable("upload_cb", upload_cb)
    return _claim(request, UploadRequestAction(request, large_buffer_size, upload_cb, None))


def action_process_upload_inc(request: Request, upload_cb: Callable[..., Any]) -> Action:
    """Call ``upload_cb(request, data)`` with each piece of the body as it arrives.

    A final call with ``data == b""`` marks the end of the body (trailers of a
    chunked body are then readable as ``ValueKind.FOOTER``); it must answer
    with :func:`upload_action_from_response` (or abort).
    """
    _check_callable("upload_cb", upload_cb)
    return _claim(request, UploadRequestAction(request, None, None, upload_cb))


def action_process_upload(
    request: Request,
    large_buffer_size: int,
    full_cb: Callable[..., Any],
    inc_cb: Callable[..., Any],
) -> Action:
    """Deliver the body whole to *full_cb* if it fits, else in pieces to *inc_cb*.

    "Fits" means a declared ``Content-Length`` of at most *large_buffer_size*
    that can be reserved from the daemon's ``large_pool_size``; a chunked body
    (size unknown) goes to *inc_cb*.
    """
    _check_buffer_size(large_buffer_size)
    _check_callable("full_cb", full_cb)
    _check_callable("inc_cb", inc_cb)
    return _claim(request, UploadRequestAction(request, large_buffer_size, full_cb, inc_cb))


class UploadAction:
    """What an upload callback tells the daemon (see the ``upload_action_*`` functions).

    Attributes:
        kind: ``"continue"``, ``"suspend"``, ``"response"``, ``"upgrade"`` or ``"abort"``.
        response: the response, for ``"response"``.
        upgrade: the upgrade, for ``"upgrade"``.
    """

    __slots__ = ("kind", "request", "response", "upgrade")

    def __init__(self, request: Request, kind: str, response: Response | None = None,
                 upgrade: UpgradeAction | None = None) -> None:
        self.request = request
        self.kind = kind
        self.response = response
        self.upgrade = upgrade


def _upload_claim(request: Request, action: UploadAction) -> UploadAction:
    return exchange_view(request).upload_slot.claim(action)


def upload_action_continue(request: Request) -> UploadAction:
    """Go on reading the body (``MHD_upload_action_continue``)."""
    return _upload_claim(request, UploadAction(request, "continue"))


def upload_action_suspend(request: Request) -> UploadAction:
    """Stop reading until :func:`~mhd2.request_resume`, then go on (``MHD_upload_action_suspend``)."""
    view = exchange_view(request)
    view.upload_slot.check_free()
    view.mark_suspended()
    return _upload_claim(request, UploadAction(request, "suspend"))


def upload_action_from_response(request: Request, response: Response | None) -> UploadAction:
    """Answer now with *response* (``None`` aborts).

    If the body was not read to its end, the rest is read and discarded (when
    small) or the connection is closed after the reply -- never parsed as a
    next request.
    """
    if response is None:
        return upload_action_abort_request(request)
    exchange_view(request).upload_slot.check_free()
    response._acquire()
    return _upload_claim(request, UploadAction(request, "response", response))


def upload_action_abort_request(request: Request) -> UploadAction:
    """Close the connection without a reply (``MHD_upload_action_abort_request``)."""
    return _upload_claim(request, UploadAction(request, "abort"))


def upload_action_upgrade(
    request: Request,
    upgrade_hdr_value: str,
    upgrade_handler: Callable[..., Any],
    headers: Sequence[tuple[str, str]] = (),
) -> UploadAction:
    """Switch protocols from the final upload callback (``MHD_upload_action_upgrade``).

    As :func:`action_upgrade`; only allowed once the whole body was read.
    """
    upgrade = _make_upgrade(request, upgrade_hdr_value, upgrade_handler, headers)
    return _upload_claim(request, UploadAction(request, "upgrade", upgrade=upgrade))
