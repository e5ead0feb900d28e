"""Reading one request head from the transport, within the head's limits.

The whole head must arrive within ``timeout`` of its first byte (a trickled
head does not extend it: slowloris) and be at most ``max_header_size`` bytes;
at strict levels >= 1 its raw bytes are checked for bare LF and obs-fold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._http1.parser import CLOSED, NEED_DATA, Head, ParseError, Parser, _Marker
from .._http1.request_checks import check_raw_head

if TYPE_CHECKING:
    from ..transport import Transport

__all__ = ["read_head"]

#: Bytes asked for per read while waiting for a request head.
RECV_SIZE = 16 * 1024


async def read_head(transport: Transport, parser: Parser, max_head: int, *,
                    strict: bool,
                    result: Head | ParseError | _Marker | None = None) -> Head | ParseError | None:
    """Feed *parser* from *transport* until a request head is complete.

    Args:
        transport: the connection.
        parser: the connection's parser, at the start of a request.
        max_head: ``max_header_size``.
        strict: check the raw bytes (strict levels >= 1).
        result: what ``parser.next_head()`` just returned, when the caller
            asked already (the connection does, to skip this coroutine when
            the head is complete and needs no check here).

    Returns:
        The head; a :class:`ParseError` to answer (then close); ``None`` when
        the client left between requests (or mid-head).
    """
    waited = False
    if result is None:
        result = parser.next_head()
    while True:
        if result is NEED_DATA:
            if parser.fed_count > max_head:
                return _too_large(parser, max_head)
            if not waited:
                # The whole head must arrive within `timeout` of its first
                # byte: trickling more bytes does not extend it (slowloris).
                transport.arm(force=True)
                waited = True
            parser.feed(await transport.receive(RECV_SIZE))
            result = parser.next_head()
            continue
        if isinstance(result, ParseError):
            if result.status == 431 and b"\n" not in parser.raw_head_bytes()[:max_head]:
                # RFC 9112 §3: "A server that receives a request-target longer
                # than any URI it wishes to parse MUST respond with a 414 (URI
                # Too Long) status code."
                return ParseError(414, result.detail)
            return result
        if result is CLOSED or not isinstance(result, Head):
            return None
        # The head is at most what was fed: measure it only when that is over
        # the limit, or to check it byte by byte.
        if parser.fed_count > max_head or strict:
            head_len = parser.head_length()
            if head_len > max_head:
                return _too_large(parser, max_head)
            if strict:
                problem = check_raw_head(parser.raw_head_bytes()[:head_len])
                if problem is not None:
                    return ParseError(*problem)
        parser.stop_recording()
        return result


def _too_large(parser: Parser, max_head: int) -> ParseError:
    """431 for a head over *max_head* bytes; 414 when the request line alone is.

    RFC 9112 §3: "A server that receives a request-target longer than any URI
    it wishes to parse MUST respond with a 414 (URI Too Long) status code."
    """
    if b"\n" not in parser.raw_head_bytes()[:max_head]:
        return ParseError(414, "request line too long")
    return ParseError(431, "request header section too large")
