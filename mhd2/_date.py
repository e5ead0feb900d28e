"""The ``Date`` response header, formatted at most once per second.

RFC 9110 §6.6.1: "An origin server with a clock ... MUST generate a Date header
field in all 2xx, 3xx and 4xx responses, and MAY generate a Date header field in
1xx and 5xx responses."  mhd2 sends it on every response unless the daemon's
``suppress_date_header`` is set or the application set its own.

Protocol-neutral: the HTTP/1 writer sends the line as it is; HTTP/2 (replies
and the RFC 8441 tunnel) takes the value from it.
"""

from __future__ import annotations

import time
from email.utils import formatdate

__all__ = ["date_header_line"]

_cached_second = -1
_cached_line = b""


def date_header_line() -> bytes:
    """Return ``b"Date: <IMF-fixdate>\\r\\n"`` for the current second.

    Returns:
        The complete header line, cached until the wall clock's second changes.
    """
    global _cached_second, _cached_line
    now = int(time.time())
    if now != _cached_second:
        _cached_line = b"Date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\n"
        _cached_second = now
    return _cached_line
