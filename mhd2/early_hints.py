"""``103 Early Hints`` (RFC 8297): resource hints sent before the final response.

:func:`request_send_early_hints` checks the fields (a 1xx carries no
connection or framing fields and no content) and asks the request's protocol
to write the interim head (HTTP/1.1: between other writes, one at a time;
HTTP/2: a HEADERS frame without END_STREAM).
"""

from __future__ import annotations

from collections.abc import Iterable

from ._syntax import BAD_VALUE, TOKEN
from .enums import StatusCode
from .errors import ResponseHeaderError
from .exchange import exchange_of
from .request import Request

__all__ = ["MAX_EARLY_HINTS_SIZE", "request_send_early_hints"]


#: Most bytes of header lines one ``103 Early Hints`` may carry.
MAX_EARLY_HINTS_SIZE = 8192
#: Fields that describe a connection or a body, not a resource: never in a
#: 103 (RFC 9113 §8.2.2 makes them malformed on HTTP/2; a 1xx has no content).
_NOT_HINTS = frozenset(("connection", "content-length", "keep-alive", "proxy-connection",
                        "te", "transfer-encoding", "upgrade"))


def _hint_fields(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """*headers* checked for a ``103`` head.

    Raises:
        ResponseHeaderError: a name that is not a token, a value with a
            control character, a connection or framing field, or more than
            :data:`MAX_EARLY_HINTS_SIZE` bytes in all.
    """
    fields: list[tuple[str, str]] = []
    size = 0
    for name, value in headers:
        if not isinstance(name, str) or not TOKEN.fullmatch(name):
            raise ResponseHeaderError(f"header name {name!r} is not an HTTP token",
                                      StatusCode.RESP_HEADER_NAME_INVALID)
        if not isinstance(value, str) or BAD_VALUE.search(value):
            raise ResponseHeaderError(
                f"header value {value!r} for {name} contains CR, LF, TAB, another control "
                "character or a non-Latin-1 character", StatusCode.RESP_HEADER_VALUE_INVALID)
        if name.lower() in _NOT_HINTS:
            raise ResponseHeaderError(f"{name} is not allowed in 103 Early Hints: send "
                                      "resource hints such as Link",
                                      StatusCode.RESP_HEADER_NOT_ALLOWED)
        size += len(name) + len(value) + 4
        if size > MAX_EARLY_HINTS_SIZE:
            raise ResponseHeaderError(
                f"103 Early Hints over {MAX_EARLY_HINTS_SIZE} bytes: send fewer hints",
                StatusCode.RESP_HEADER_NOT_ALLOWED)
        fields.append((name, value.strip(" ")))
    return fields


async def request_send_early_hints(request: Request,
                                   headers: Iterable[tuple[str, str]]) -> bool:
    """Send ``103 Early Hints`` with *headers* now, before the final response (RFC 8297).

    The client may start fetching what the ``Link`` fields name while the
    application is still working on the response.  Call it from the request
    callback (an ``async`` one) or from any task of the daemon's run while the
    request is suspended, before the action with the final response is given;
    call it as often as needed.  RFC 8297 §3: "a server MUST NOT send a 103
    response to an HTTP/1.0 client": there it sends nothing and returns ``False``.

    Args:
        request: the request being answered.
        headers: ``(name, value)`` text pairs, usually ``Link``.

    Returns:
        ``True`` if the 103 was sent; ``False`` if it could not be (an
        HTTP/1.0 client, the final response has begun, the request ended,
        the client went away).

    Raises:
        ResponseHeaderError: a bad header (as :meth:`Response.add_header`),
            a connection or framing field, or too many bytes
            (:data:`MAX_EARLY_HINTS_SIZE`).
    """
    fields = _hint_fields(headers)
    exchange = exchange_of(request)
    if exchange.ended or exchange.answered:
        return False
    return await exchange.host.send_informational(103, fields)
