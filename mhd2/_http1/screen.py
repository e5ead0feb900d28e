"""What a parsed request head allows: refuse it, or serve it and maybe close after (sans-IO).

The HTTP/1 loop asks :func:`screen_head` once per request, before the
application sees it.  The rules are :mod:`mhd2._http1.request_checks`'; this
module only decides which of them a head needs (the common GET in origin-form
on HTTP/1.1 needs only the ``Host`` check) and what its framing demands of
the connection.
"""

from __future__ import annotations

from .parser import Head
from .request_checks import HeadRejection, check_head, check_host

__all__ = ["screen_head"]


def screen_head(head: Head, strict_level: int, last: bool) -> tuple[HeadRejection | None, bool]:
    """Screen one parsed request head.

    Args:
        head: the head.
        strict_level: the daemon's ``strict_level``.
        last: the connection closes after this request anyway
            (``max_requests_per_connection``).

    Returns:
        ``(rejection, must_close)``: the status and reason to answer instead of
        serving the request (or ``None``), and whether the connection must
        close after the response.
    """
    scan = head.scan
    target = head.target
    version = head.version
    problem = check_host(scan.host_values)
    if problem is None and (target[:1] != b"/" or version != b"1.1"
                            or scan.has_transfer_encoding or strict_level):
        problem = check_head(head.method, target, version, head.lower_fields, strict_level)
    # RFC 9112 §6.1: after CL+TE (lenient levels) the server "MUST close the
    # connection after responding"; an HTTP/1.0 message with TE "MUST [be
    # treated] as if the framing is faulty ... and close the connection".
    must_close = last or (scan.has_transfer_encoding
                          and (scan.has_content_length or version != b"1.1"))
    return problem, must_close
