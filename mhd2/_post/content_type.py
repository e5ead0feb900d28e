"""Which form encoding a request uses: its ``Content-Type`` and the ``boundary``.

Follows MHD2's ``detect_post_enc``: no ``Content-Type`` →
``FAILED_NO_CNTN_TYPE``; ``application/x-www-form-urlencoded``,
``multipart/form-data`` (with a ``boundary``) and ``text/plain`` are known;
anything else → ``FAILED_UNKNOWN_CNTN_TYPE``.  Asking explicitly for
``MULTIPART_FORMDATA`` still needs the header for its boundary
(``FAILED_HEADER_NOT_MPART`` if the header names another type).
"""

from __future__ import annotations

import re

from ..enums import PostEncoding, PostParseResult

__all__ = ["MAX_BOUNDARY", "detect_encoding", "parse_content_type"]

#: RFC 2046 §5.1.1: ``boundary := 0*69<bchars> bcharsnospace`` — 1 to 70 characters.
MAX_BOUNDARY = 70

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_MEDIA = re.compile(rf"\s*({_TOKEN})/({_TOKEN})\s*")
_PARAM = re.compile(rf';\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|{_TOKEN})\s*')
_QUOTED_PAIR = re.compile(r"\\(.)")
# Control characters (NUL, CR, LF …), DEL and non-ASCII are never part of a boundary.
_BAD_BOUNDARY = re.compile(r"[\x00-\x1f\x7f-\U0010ffff]")


def parse_content_type(value: str) -> tuple[str, dict[str, str]] | None:
    """Split ``type/subtype; name=value …`` into the lowercased media type and its parameters.

    Parameter names are lowercased, quoted values unquoted; the first of a
    repeated parameter wins.  Returns ``None`` when the value is malformed.
    """
    m = _MEDIA.match(value)
    if m is None:
        return None
    media = f"{m.group(1)}/{m.group(2)}".lower()
    params: dict[str, str] = {}
    pos = m.end()
    while pos < len(value):
        p = _PARAM.match(value, pos)
        if p is None:
            if value[pos:].strip(" \t;") == "":
                break  # a trailing ";" is harmless
            return None
        raw = p.group(2)
        if raw.startswith('"'):
            raw = _QUOTED_PAIR.sub(r"\1", raw[1:-1])
        params.setdefault(p.group(1).lower(), raw)
        pos = p.end()
    return media, params


def detect_encoding(
    content_type: str | None, requested: PostEncoding
) -> tuple[PostEncoding, bytes | None] | PostParseResult:
    """Decide how to parse a body.

    Args:
        content_type: the request's ``Content-Type`` header, or ``None``.
        requested: what the application asked for (``OTHER`` = detect).

    Returns:
        ``(encoding, boundary)`` (*boundary* only for multipart), or the
        :class:`~mhd2.PostParseResult` that ends parsing before it starts.
    """
    if requested in (PostEncoding.FORM_URLENCODED, PostEncoding.TEXT_PLAIN):
        return requested, None
    if content_type is None:
        return PostParseResult.FAILED_NO_CNTN_TYPE
    parsed = parse_content_type(content_type)
    media = parsed[0] if parsed else content_type.split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        if parsed is None:
            return PostParseResult.FAILED_HEADER_MISFORMED
        boundary = parsed[1].get("boundary")
        if not boundary:
            return PostParseResult.FAILED_HEADER_NO_BOUNDARY
        if len(boundary) > MAX_BOUNDARY or _BAD_BOUNDARY.search(boundary) or boundary.endswith(" "):
            # RFC 2046 §5.1.1: "Boundary delimiters must not appear within the
            # encapsulated material, and must be no longer than 70 characters,
            # not counting the two leading hyphens."
            return PostParseResult.FAILED_HEADER_MISFORMED
        return PostEncoding.MULTIPART_FORMDATA, boundary.encode("ascii")
    if requested is PostEncoding.MULTIPART_FORMDATA:
        return PostParseResult.FAILED_HEADER_NOT_MPART
    if media == "application/x-www-form-urlencoded":
        return PostEncoding.FORM_URLENCODED, None
    if media == "text/plain":
        return PostEncoding.TEXT_PLAIN, None
    return PostParseResult.FAILED_UNKNOWN_CNTN_TYPE
