"""The ``Range`` header and ``multipart/byteranges`` (RFC 9110 §14; sans-IO).

:func:`parse_ranges` never raises: a number longer than :data:`MAX_DIGITS`
digits, more than *max_ranges* ranges, ranges that together ask for more bytes
than the representation has, another unit or bad syntax all make the header
ignored (the whole representation, 200). RFC 9110 §14.2: "A server MAY ignore
the Range header field", and "A server that supports range requests MAY ignore
or reject a Range header field that contains an invalid ranges-specifier
(Section 14.1.1), a ranges-specifier with more than two overlapping ranges, or
a set of many small ranges that are not listed in ascending order, since these
are indications of either a broken client or a deliberate denial-of-service
attack".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "DEFAULT_MAX_RANGES",
    "MAX_DIGITS",
    "UNSATISFIABLE",
    "Multipart",
    "multipart",
    "parse_ranges",
]

#: A position or length with more digits than this is not a size any file has
#: (10**19 bytes is 8 EiB); the header is ignored rather than parsed, so that
#: Python's int() limit of 4,300 digits is never reached.
MAX_DIGITS: Final = 19
#: How many ranges one request may ask for before the header is ignored.
DEFAULT_MAX_RANGES: Final = 32
#: :func:`parse_ranges`' answer for "416 Range Not Satisfiable".
UNSATISFIABLE: Final = False

Range = tuple[int, int]  # (first, last), both inclusive


def _number(text: str) -> int | None:
    if not text or len(text) > MAX_DIGITS or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def parse_ranges(
    value: str, size: int, *, max_ranges: int = DEFAULT_MAX_RANGES
) -> list[Range] | Literal[False] | None:
    """Parse a ``Range`` header for a representation of *size* bytes.

    Args:
        value: the field value, e.g. ``"bytes=0-1,5-6"``.
        size: the selected representation's length.
        max_ranges: more range-specs than this: the header is ignored.

    Returns:
        The satisfiable ranges as ``(first, last)`` pairs (inclusive, clipped
        to the representation, in the order asked), :data:`UNSATISFIABLE`
        (``False``: answer 416) when none is satisfiable, or ``None`` when the
        header is to be ignored.
    """
    unit, sep, spec = value.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None  # §14.1: "a server MAY ignore ... range units it does not understand"
    wanted: list[Range] = []
    count = 0
    satisfiable_seen = False
    for item in spec.split(",", max_ranges + 1):
        item = item.strip(" \t")
        if not item:
            continue  # §5.6.1: "a recipient MUST accept empty list elements"
        count += 1
        if count > max_ranges:
            return None
        first_text, dash, last_text = item.partition("-")
        if not dash:
            return None
        first_text, last_text = first_text.strip(" \t"), last_text.strip(" \t")
        if not first_text:  # suffix-range: the last n bytes
            length = _number(last_text)
            if length is None:
                return None
            # §14.1.1: satisfiable if "a suffix-range with a non-zero
            # suffix-length"; an empty representation has no bytes to send
            if length > 0 and size > 0:
                wanted.append((max(0, size - length), size - 1))
                satisfiable_seen = True
            continue
        first = _number(first_text)
        if first is None:
            return None
        if last_text:
            last = _number(last_text)
            # §14.1.1: an int-range "is invalid if the last-pos value is
            # present and less than the first-pos"
            if last is None or last < first:
                return None
        else:
            last = size - 1
        # §14.1.1: satisfiable if "an int-range with a first-pos that is less
        # than the current length of the selected representation"
        if first < size:
            wanted.append((first, min(last, size - 1)))
            satisfiable_seen = True
    if count == 0:
        return None
    if not satisfiable_seen:
        return UNSATISFIABLE
    if len(wanted) > 1 and sum(last - first + 1 for first, last in wanted) > size:
        return None  # overlapping ranges: more than the whole; send the whole once
    return wanted


@dataclass(frozen=True)
class Multipart:
    """A ``multipart/byteranges`` body, as a list of literal and file pieces.

    ``segments`` holds ``bytes`` (boundaries and part headers) and
    ``(offset, length)`` pairs (bytes of the file); ``length`` is the sum of
    them all and ``content_type`` the response's ``Content-Type``.
    """

    content_type: str
    segments: tuple[bytes | tuple[int, int], ...]
    length: int


def multipart(ranges: list[Range], size: int, part_type: str, boundary: str) -> Multipart:
    """The ``multipart/byteranges`` body for *ranges* of a *size*-byte file.

    RFC 9110 §14.6: "each body part has its own Content-Type and Content-Range
    fields", and the parts are delimited as RFC 2046 §5.1.1 says (``--`` and
    the boundary after a CRLF; ``--`` after the last one).

    Args:
        ranges: at least one ``(first, last)`` pair.
        size: the file's complete length (for ``Content-Range``).
        part_type: the file's ``Content-Type``, repeated in each part.
        boundary: 1–70 characters of RFC 2046's ``bchars`` (not checked here).
    """
    segments: list[bytes | tuple[int, int]] = []
    length = 0
    for index, (first, last) in enumerate(ranges):
        head = (
            ("" if index == 0 else "\r\n")
            + f"--{boundary}\r\n"
            + f"Content-Type: {part_type}\r\n"
            + f"Content-Range: bytes {first}-{last}/{size}\r\n\r\n"
        ).encode("latin-1")
        segments.append(head)
        segments.append((first, last - first + 1))
        length += len(head) + last - first + 1
    tail = f"\r\n--{boundary}--\r\n".encode("latin-1")
    segments.append(tail)
    length += len(tail)
    return Multipart(f"multipart/byteranges; boundary={boundary}", tuple(segments), length)
