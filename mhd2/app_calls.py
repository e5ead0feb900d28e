"""Calling the application's callbacks for one request, and judging what they did.

The protocol loops (:mod:`mhd2.http1.connection`, :mod:`mhd2.http2.serve`),
:mod:`mhd2.outcome`, :mod:`mhd2.upload` and :mod:`mhd2.body` call the
application through these functions:

* :func:`begin` -- before the request callback: a trusted proxy's fields and
  the ``early_uri_logger``;
* :func:`call_app_now` and :func:`finish_app` -- the request callback, called
  once per invocation through the exchange's action slot
  (:class:`~mhd2._slot.Slot`: "exactly one action, and it is this request's");
* :func:`call_upload` -- an upload callback, the same through the upload slot;
* :func:`app_failed` -- a failure of any other application code (a content
  creator, a misused upload action).

A callback that raised or misused the API is logged here, the response of an
action it claimed is released, and the request goes on as an
:class:`~mhd2.exchange.Ending`.  These are free functions over an
:class:`~mhd2.exchange.Exchange`: the exchange's state changes only through its
own methods (:meth:`~mhd2.exchange.Exchange.end`,
:meth:`~mhd2.exchange.Exchange.set_response`, ...).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .actions import Action, UploadAction, upload_action_abort_request
from .callbacks import call_maybe_await, warn_returned_none
from .enums import RequestEndedCode
from .errors import AuthError
from .exchange import Ending, Exchange

__all__ = ["app_failed", "begin", "call_app_now", "call_upload", "finish_app"]

logger = logging.getLogger("mhd2")

_NONE_FIX = ("return an action made by an mhd2.action_* function (e.g. "
             "action_from_response), or action_abort_request(request) to abort on purpose")
_UPLOAD_NONE_FIX = ("return an upload action (e.g. upload_action_continue), or "
                    "upload_action_abort_request(request) to abort on purpose")

#: An application callback failed: answer 500 if still possible, end ``BY_APP_ERROR``.
_APP_ERROR = Ending(500, RequestEndedCode.BY_APP_ERROR)


async def begin(exchange: Exchange, fields: Iterable[tuple[str | bytes, str | bytes]]) -> None:
    """What every protocol does before the request callback.

    With ``forwarded_headers``, believe a trusted proxy's header of the family
    it names among *fields* (:meth:`Exchange.believe_proxy
    <mhd2.exchange.Exchange.believe_proxy>`); then call ``early_uri_logger``.

    Args:
        exchange: the request, its head read.
        fields: the request's header pairs, as the protocol has them.

    Error handling:
        A failing ``early_uri_logger`` is logged, not fatal.
    """
    options = exchange.shared.options
    request = exchange.request
    if options.forwarded_headers:
        exchange.believe_proxy(fields)
    if options.early_uri_logger is not None:
        try:
            await call_maybe_await(options.early_uri_logger, request, request.uri,
                                   request.method)
        except Exception:
            logger.exception("mhd2: early_uri_logger failed for %s", request.uri)


def call_app_now(exchange: Exchange) -> Action | Ending | Awaitable[Any] | None:
    """Call the request callback once, without awaiting what it returned.

    A protocol loop can then serve a plain callback's answer without a task
    switch (HTTP/2 streams answered in the reader);
    :func:`mhd2.outcome.app_outcome` carries on from here otherwise.

    Returns:
        The action it made; ``None`` when it returned ``None`` (an abort,
        already ended); a :class:`~mhd2.exchange.Ending` when it raised or
        misused the API (logged; the response of a claimed action is
        released); or, when the callback returned an awaitable (a coroutine
        function), that awaitable: pass it to :func:`finish_app`.
    """
    try:
        # Every request passes here: the exchange's slot is read, not its
        # ``request`` property (one Python call fewer; a read, never a write).
        result = exchange.action_slot.call(exchange.shared.request_cb, exchange._request)
    except Exception as exc:
        return _failed(exchange, exc)
    if result is None:
        _returned_none(exchange)
    return result  # type: ignore[no-any-return]


async def finish_app(exchange: Exchange, pending: Awaitable[Any]) -> Action | Ending | None:
    """Await what an async request callback returned; then as :func:`call_app_now`."""
    try:
        result = exchange.action_slot.returned(await pending)
    except Exception as exc:
        return _failed(exchange, exc)
    if result is None:
        _returned_none(exchange)
    return result  # type: ignore[no-any-return]


def _returned_none(exchange: Exchange) -> None:
    """The request callback returned ``None``: an abort (with a warning, once)."""
    _release(exchange.action_slot.take())
    warn_returned_none(exchange.shared.request_cb, "request callback", _NONE_FIX)
    exchange.end(RequestEndedCode.BY_APP_ABORT)


def _failed(exchange: Exchange, exc: Exception) -> Ending:
    """The callback raised *exc* (being handled): log it, release its action."""
    request = exchange.request
    _release(exchange.action_slot.take())
    if isinstance(exc, AuthError):
        # A malformed Authorization header surfaced through request.basic_auth:
        # the client's fault, not the application's.
        logger.debug("mhd2: malformed credentials in %s %s: %s", request.method,
                     request.uri, exc)
        return Ending(400, RequestEndedCode.HTTP_PROTOCOL_ERROR)
    logger.exception("mhd2: the request callback failed for %s %s",
                     request.method, request.uri)
    return _APP_ERROR


async def call_upload(exchange: Exchange, cb: Callable[..., Any],
                      data: bytes) -> UploadAction | Ending:
    """Call an upload callback once and check it returned its own upload action.

    Args:
        exchange: the request whose body is being read.
        cb: the upload callback of the upload action.
        data: the piece of the body to give it (``b""`` at the end).

    Returns:
        The upload action (its response, if any, now answers the request:
        :meth:`Exchange.set_response <mhd2.exchange.Exchange.set_response>`),
        or an :class:`~mhd2.exchange.Ending` if it raised (logged).
    """
    request = exchange.request
    slot = exchange.upload_slot
    try:
        result: UploadAction | None = await slot.call_async(cb, request, data)
        if result is None:
            # An upload action made but not returned counts as returned.
            result = slot.value
            if result is None:
                warn_returned_none(cb, "upload callback", _UPLOAD_NONE_FIX)
                result = upload_action_abort_request(request)
            result = slot.returned(result)
        assert result is not None
        if result.response is not None:
            exchange.set_response(result.response)
        return result
    except Exception:
        _release(slot.take())
        logger.exception("mhd2: an upload callback failed for %s %s",
                         request.method, request.uri)
        return _APP_ERROR


def app_failed(exchange: Exchange, what: str) -> Ending:
    """Log the exception being handled as a failure of the application's *what*.

    Returns:
        The ending of a failed application: 500 if still possible, ``BY_APP_ERROR``.
    """
    request = exchange.request
    logger.exception("mhd2: %s failed for %s %s", what, request.method, request.uri)
    return _APP_ERROR


def _release(action: object) -> None:
    """Release the response of an action the checks refused (its use ends here)."""
    response = getattr(action, "response", None)
    if response is not None:
        response._finish_use()
