"""Validators and the preconditions of RFC 9110 §13 (sans-IO).

Every function here takes header values as ``str`` and never raises on any of
them. A value that does not parse is ignored, as RFC 9110 §13.1.3 says for
dates: "A recipient MUST ignore the If-Modified-Since header field if the
received field-value is not a valid HTTP-date"; an entity-tag list that does
not parse simply matches nothing.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Iterator

__all__ = ["Getter", "etags", "http_date", "if_range", "preconditions"]

#: ``header(name) -> value or None``
Getter = Callable[[str], "str | None"]

#: An HTTP date is at most ~30 characters; anything far longer is not one.
_MAX_DATE_LENGTH = 64


def etags(value: str) -> Iterator[tuple[bool, str]]:
    """Parse an ``If-None-Match`` / ``If-Match`` list.

    Yields ``(weak, opaque)`` pairs, ``opaque`` with its quotes; junk between
    commas is skipped, an unterminated tag ends the list.
    """
    pos, end = 0, len(value)
    while pos < end:
        while pos < end and value[pos] in " \t,":
            pos += 1
        if pos >= end:
            return
        weak = value.startswith("W/", pos)
        if weak:
            pos += 2
        if pos < end and value[pos] == '"':
            close = value.find('"', pos + 1)
            if close < 0:
                return
            yield weak, value[pos : close + 1]
            pos = close + 1
        else:  # not an entity-tag: skip the junk up to the next comma
            comma = value.find(",", pos)
            if comma < 0:
                return
            pos = comma + 1


def http_date(value: str) -> int | None:
    """An HTTP date (RFC 9110 §5.6.7) as a POSIX timestamp, or ``None`` if it is not one."""
    if len(value) > _MAX_DATE_LENGTH:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
        if parsed.tzinfo is None:
            return None
        return int(parsed.timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def preconditions(header: Getter, etag: str, mtime: int | None) -> int | None:
    """RFC 9110 §13.2.2 steps 1–4 for GET/HEAD.

    Args:
        header: looks a request header up by name.
        etag: the selected representation's strong entity tag (with quotes).
        mtime: its modification time (POSIX seconds), or ``None`` if it has
            no ``Last-Modified``.

    Returns:
        412, 304, or ``None`` when the request goes on.
    """
    if_match = header("If-Match")
    if if_match is not None:
        # §13.1.1: "An origin server MUST use the strong comparison function
        # when comparing entity tags for If-Match"
        if if_match.strip() != "*" and not any(
            not weak and tag == etag for weak, tag in etags(if_match)
        ):
            return 412
    elif mtime is not None:
        ius = header("If-Unmodified-Since")
        if ius is not None:
            when = http_date(ius)
            if when is not None and mtime > when:
                return 412
    inm = header("If-None-Match")
    if inm is not None:
        # §13.1.2: "A recipient MUST use the weak comparison function when
        # comparing entity tags for If-None-Match"
        if inm.strip() == "*" or any(tag == etag for _weak, tag in etags(inm)):
            return 304
        return None
    if mtime is not None:
        ims = header("If-Modified-Since")
        if ims is not None:
            when = http_date(ims)
            if when is not None and mtime <= when:
                return 304
    return None


def if_range(value: str | None, etag: str, mtime: int) -> bool:
    """Whether the ``Range`` header applies (no ``If-Range``, or it matches).

    RFC 9110 §13.1.5: "A client MUST NOT generate an If-Range header field
    containing an entity tag that is marked as weak", and a date matches only
    when it equals the ``Last-Modified`` time exactly.
    """
    if value is None:
        return True
    value = value.strip()
    if value.startswith('"'):
        return value == etag
    if value.startswith("W/"):
        return False  # weak tags never match If-Range
    return http_date(value) == mtime
