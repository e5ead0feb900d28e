"""RFC 7239 ``Forwarded`` header field values, parsed (sans-IO).

* :func:`parse_forwarded`: every element of the header, left to right (for
  tools and tests; a value that breaks the grammar anywhere is ``None``);
* :func:`forwarded_hops`: the elements **from the right**, as hops for the
  client walk of :mod:`mhd2._proxy.forwarded`, never parsing what is left
  of the element that stops the walk (the client may have written it).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from .addresses import UNKNOWN, Hop, address_text, parse_ip, parse_port

__all__ = ["ForwardedElement", "forwarded_hops", "parse_forwarded"]


@dataclass(frozen=True, slots=True)
class ForwardedElement:
    """One hop of a ``Forwarded`` header (RFC 7239 section 4).

    ``for_`` is the node as sent: an IP address (IPv6 without brackets), an
    obfuscated identifier (``"_hidden"``) or ``"unknown"``; ``port`` is the
    numeric port if one was given. ``None`` means the parameter was absent.
    """

    for_: str | None = None
    port: int | None = None
    by: str | None = None
    host: str | None = None
    proto: str | None = None


# RFC 7230 token characters.
_TOKEN: Final = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE
_QUOTED: Final = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_PAIR: Final = re.compile(rf"[ \t]*({_TOKEN})=({_TOKEN}|{_QUOTED})[ \t]*")
# obfnode = "_" 1*( ALPHA / DIGIT / "." / "_" / "-" ), same for obfport
_OBF: Final = re.compile(r"_[A-Za-z0-9._-]+")
_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


class _Malformed(ValueError):
    pass


def parse_forwarded(values: Sequence[str]) -> list[ForwardedElement] | None:
    """Parse ``Forwarded`` header field values (all lines, in order).

    Returns:
        The elements left to right (the right-most was added by the proxy
        nearest to us), or ``None`` if any value breaks the grammar of RFC
        7239 section 4 (then the header must be ignored as a whole).
    """
    elements: list[ForwardedElement] = []
    try:
        for value in values:
            elements.extend(_parse_forwarded_value(value))
    except _Malformed:
        return None
    return elements or None


def _parse_forwarded_value(value: str) -> list[ForwardedElement]:
    # Forwarded = 1#forwarded-element
    # forwarded-element = [ forwarded-pair ] *( ";" [ forwarded-pair ] )
    # forwarded-pair = token "=" value ; value = token / quoted-string
    out: list[ForwardedElement] = []
    pos = 0
    params: dict[str, str] = {}
    n = len(value)
    while True:
        while pos < n and value[pos] in " \t":
            pos += 1
        if pos < n and value[pos] not in ",;":
            match = _PAIR.match(value, pos)
            if match is None:
                raise _Malformed(value)
            name = match[1].lower()
            raw = match[2]
            text = _unquote(raw) if raw.startswith('"') else raw
            # "Each parameter MUST NOT occur more than once per forwarded-element."
            if name in params:
                raise _Malformed(value)
            params[name] = text
            pos = match.end()
        if pos >= n or value[pos] == ",":
            if params:
                out.append(_element(params))
            elif pos < n:
                pass  # "1#element" allows empty list elements
            params = {}
            if pos >= n:
                break
            pos += 1
            continue
        if value[pos] == ";":
            pos += 1
            continue
        raise _Malformed(value)
    return out


def _unquote(raw: str) -> str:
    return re.sub(r"\\(.)", r"\1", raw[1:-1])


def _element(params: dict[str, str]) -> ForwardedElement:
    for_, port = (None, None)
    if "for" in params:
        for_, port = _node(params["for"])
    proto = params.get("proto")
    # proto: "the value MUST be a URI scheme name" (section 5.4)
    if proto is not None:
        if not _SCHEME.fullmatch(proto):
            raise _Malformed(proto)
        proto = proto.lower()
    return ForwardedElement(for_, port, params.get("by"), params.get("host"), proto)


def _node(text: str) -> tuple[str, int | None]:
    """``node = nodename [ ":" node-port ]`` (RFC 7239 section 6)."""
    if text.startswith("["):
        # "[" IPv6address "]" -- brackets required for IPv6
        end = text.find("]")
        if end < 0:
            raise _Malformed(text)
        host, rest = text[1:end], text[end + 1 :]
        address = parse_ip(host)
        if not isinstance(address, ipaddress.IPv6Address):
            raise _Malformed(text)
        host = address_text(address)
    else:
        host, sep, port_text = text.partition(":")
        rest = sep + port_text
        if host.lower() == "unknown":
            host = "unknown"
        elif not _OBF.fullmatch(host):
            address = parse_ip(host)
            if not isinstance(address, ipaddress.IPv4Address):
                raise _Malformed(text)
            host = str(address)
    if not rest:
        return host, None
    if not rest.startswith(":"):
        raise _Malformed(text)
    port_text = rest[1:]
    port = parse_port(port_text)
    if port is not None:
        return host, port
    if _OBF.fullmatch(port_text):
        return host, None
    raise _Malformed(text)


# ------------------------------------------------------------------ from the right

_TOKEN_CHARS: Final = frozenset("!#$%&'*+-.^_`|~0123456789"
                                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_QUOTED_STRING: Final = re.compile(_QUOTED)


def forwarded_hops(values: Sequence[str]) -> Iterator[Hop]:
    """The ``Forwarded`` elements from the right, as hops.

    An element that breaks the grammar of RFC 7239 section 4 is yielded as a
    node-less hop and ends the list: what is left of it cannot be told apart
    any more (and, if we got that far, it is no proxy's of ours).
    """
    for value in reversed(values):
        for params in _elements_from_the_right(value):
            if params is None:
                yield None, None, None
                return
            try:
                element = _element(params)
            except _Malformed:
                yield None, None, None
                return
            # no for=: the proxy does not say who (RFC 7239 section 5.2 makes it
            # optional), but what it does say -- proto= -- is still its word
            yield element.for_ or UNKNOWN, element.port, element.proto


def _elements_from_the_right(value: str) -> Iterator[dict[str, str] | None]:
    """The parameters of each ``forwarded-element`` of one field line, right
    to left; ``None`` (and stop) where the line breaks the grammar::

        Forwarded         = 1#forwarded-element
        forwarded-element = [ forwarded-pair ] *( ";" [ forwarded-pair ] )
        forwarded-pair    = token "=" value
        value             = token / quoted-string

    Read backwards, so that the elements our proxies appended are parsed
    without looking at what the client wrote before them. A quoted-string is
    found backwards by its closing quote and the nearest quote to the left
    that is preceded by an even number of backslashes (an odd number escapes
    it), and must then match the grammar as a whole.
    """
    pos = len(value)
    params: dict[str, str] = {}
    while True:
        pos = _skip_ows_left(value, pos)
        if pos == 0:
            if params:
                yield params
            return
        char = value[pos - 1]
        if char == ",":
            if params:  # "1#element" allows empty list elements
                yield params
            params = {}
            pos -= 1
            continue
        if char == ";":
            pos -= 1
            continue
        # forwarded-pair ending at pos: its value first
        if char == '"':
            start = _opening_quote(value, pos - 1)
            if start < 0 or not _QUOTED_STRING.fullmatch(value, start, pos):
                yield None
                return
            text = _unquote(value[start:pos])
        else:
            start = _token_start(value, pos)
            if start == pos:
                yield None
                return
            text = value[start:pos]
        pos = start
        if pos == 0 or value[pos - 1] != "=":
            yield None
            return
        start = _token_start(value, pos - 1)
        if start == pos - 1:
            yield None
            return
        name = value[start:pos - 1].lower()
        # "Each parameter MUST NOT occur more than once per forwarded-element."
        if name in params:
            yield None
            return
        params[name] = text
        pos = _skip_ows_left(value, start)
        if pos > 0 and value[pos - 1] not in ",;":
            yield None
            return


def _skip_ows_left(value: str, pos: int) -> int:
    while pos > 0 and value[pos - 1] in " \t":
        pos -= 1
    return pos


def _token_start(value: str, end: int) -> int:
    start = end
    while start > 0 and value[start - 1] in _TOKEN_CHARS:
        start -= 1
    return start


def _opening_quote(value: str, close: int) -> int:
    """The index of the quote that opens the quoted-string closed at *close*, or -1."""
    if _backslashes_before(value, close) % 2:
        return -1  # the last quote is escaped: the string is not closed
    index = close - 1
    while index >= 0:
        if value[index] == '"' and _backslashes_before(value, index) % 2 == 0:
            return index
        index -= 1
    return -1


def _backslashes_before(value: str, index: int) -> int:
    count = 0
    while index - count > 0 and value[index - count - 1] == "\\":
        count += 1
    return count
