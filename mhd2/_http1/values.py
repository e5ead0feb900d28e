"""The request target, query string and cookies, as decoded values.

Pure string work over what h11 parsed: the path is percent-decoded without its
query (RFC 3986 §2.1), the query is ``application/x-www-form-urlencoded``
(with or without ``+`` as space), cookies follow RFC 6265 §5.4.
"""

from __future__ import annotations

from urllib.parse import unquote

__all__ = ["parse_cookies", "parse_query", "split_target"]


def split_target(target: str) -> tuple[str, str]:
    """Split a request target into ``(decoded path, raw query)``.

    An absolute-form target (``http://host/path?q``) yields its path.  Bytes
    that are not UTF-8 survive as surrogate escapes, so ``os`` functions map
    them back to the same bytes.
    """
    path, _, query = target.partition("?")
    if path[:1] != "/" and "://" in path:
        rest = path.split("://", 1)[1]
        slash = rest.find("/")
        path = rest[slash:] if slash >= 0 else "/"
    path, _, _ = path.partition("#")
    return unquote(path, errors="surrogateescape"), query


def parse_query(query: str, *, plus_as_space: bool) -> list[tuple[str, str]]:
    """Parse ``a=1&b=&c`` into ``[("a", "1"), ("b", ""), ("c", "")]``.

    Args:
        query: the raw query string (no leading ``?``).
        plus_as_space: decode ``+`` as a space (MHD2's default).
    """
    if not query:
        return []
    pairs: list[tuple[str, str]] = []
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if plus_as_space:
            name = name.replace("+", " ")
            value = value.replace("+", " ")
        pairs.append((unquote(name), unquote(value)))
    return pairs


def parse_cookies(header_values: list[str]) -> list[tuple[str, str]]:
    """Parse ``Cookie`` header values into ``(name, value)`` pairs.

    RFC 6265 §5.4: the user agent sends ``cookie-pair *( ";" SP cookie-pair )``.
    Pairs without ``=`` are skipped; surrounding quotes of a value are removed
    (RFC 6265 §4.1.1 ``cookie-value = *cookie-octet / ( DQUOTE *cookie-octet DQUOTE )``).
    """
    pairs: list[tuple[str, str]] = []
    for header in header_values:
        for part in header.split(";"):
            name, eq, value = part.strip().partition("=")
            if not eq or not name:
                continue
            value = value.strip()
            if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
                value = value[1:-1]
            pairs.append((name.strip(), value))
    return pairs
