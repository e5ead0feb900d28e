"""A request body the application did not ask for: finished, drainable, or not.

RFC 9112 §9.3: a server that answers without reading the whole body must not
take what follows for the next request.  When the application answers without
an upload action, the daemon first takes what h11 already buffered of the
body; if that completes it, the connection goes on as usual.  Otherwise a
small known remainder is read and discarded after the reply, and anything
else (large, chunked, or announced with ``Expect: 100-continue``) makes the
reply close the connection.
"""

from __future__ import annotations

from .parser import NEED_DATA, BodyEnd, Parser

__all__ = ["DRAIN_LIMIT", "consume_buffered_body"]

#: An unread request body up to this many bytes is read and discarded so the
#: connection can be kept alive; a larger one closes the connection instead.
DRAIN_LIMIT = 256 * 1024


def consume_buffered_body(parser: Parser, upload_size: int | None) -> tuple[bool, bool]:
    """Consume what the parser has buffered of an unread body (no I/O).

    Args:
        parser: the request's parser, its head already parsed.
        upload_size: the declared body size (``None``: chunked).

    Returns:
        ``(done, drainable)``: the body is completely received; the rest is
        small enough to read and discard after the reply.
    """
    if upload_size == 0:
        return True, True
    received = 0
    while True:
        result = parser.next_body()
        if type(result) is bytes:
            received += len(result)
            continue
        if isinstance(result, BodyEnd):
            return True, True
        if result is not NEED_DATA:
            return False, False  # malformed, or the client closed
        break
    if upload_size is None:
        return False, False
    return False, upload_size - received <= DRAIN_LIMIT
