"""The real client behind HTTP proxies: ``Forwarded`` and ``X-Forwarded-*``, sans-IO.

A reverse proxy that terminates the client's connection tells the server who
the client was in a request header: RFC 7239's ``Forwarded: for=...;proto=...``
or the older ``X-Forwarded-For: client, proxy1`` and ``X-Forwarded-Proto``.
Anybody can send those headers, so they are believed only when the socket's
peer is a proxy the operator trusts (:class:`TrustedProxies`), and then only
up to the first hop that is *not* trusted: each trusted proxy appends the
address it saw, so the right-most address that is not one of ours is the
client, and anything left of it may be made up by that client.

A proxy sets one of the two families and passes the other through untouched,
so the operator names the family (``forwarded_headers="x-forwarded"`` or
``"forwarded"``, :data:`FAMILIES`) and the other is never read: there is no
"whichever the request has", which would let the client choose.

:func:`resolve_client` does all of that, reading the hops from the right and
never parsing what is left of the client's hop (the client may have written
it). A hop that should name the client but breaks its grammar makes the
client ``"unknown"``, never the proxy's own address. :func:`parse_forwarded`
and :func:`parse_x_forwarded_for` parse a whole header left to right (for
tools and tests; a value that breaks the grammar anywhere is ``None``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from ..errors import UsageError

__all__ = [
    "DEFAULT_TRUSTED_PROXIES",
    "FAMILIES",
    "ForwardedFamily",
    "ForwardedElement",
    "ForwardedResult",
    "TrustedProxies",
    "check_forwarded_headers",
    "parse_forwarded",
    "parse_x_forwarded_for",
    "resolve_client",
    "resolve_from_headers",
]

#: The default of ``trusted_proxies``: loopback and Unix-domain peers.
DEFAULT_TRUSTED_PROXIES: Final = ("127.0.0.1", "::1", "unix")

#: The two header families a proxy may set (``forwarded_headers=``).
ForwardedFamily = Literal["x-forwarded", "forwarded"]
FAMILIES: Final[tuple[ForwardedFamily, ...]] = ("x-forwarded", "forwarded")


def check_forwarded_headers(value: object) -> ForwardedFamily | Literal[False]:
    """The ``forwarded_headers`` option, validated.

    Args:
        value: ``False`` (the default: no forwarded header is believed),
            ``"x-forwarded"`` or ``"forwarded"`` (in any case).

    Returns:
        ``False`` or the family, lower case.

    Raises:
        UsageError: anything else. ``True`` in particular: it used to mean
            "``Forwarded`` if the request has one, else ``X-Forwarded-*``",
            and a proxy sets only one family and passes the other through, so
            the client could pick its own address and scheme with the other.
            The message says what to pass instead.
    """
    if value is False:
        return False
    if value is True:
        raise UsageError(
            "forwarded_headers=True is ambiguous and no longer accepted: a proxy sets one "
            "header family and passes the other through from the client. Pass "
            'forwarded_headers="x-forwarded" if your proxy sets X-Forwarded-For / '
            "X-Forwarded-Proto (HAProxy option forwardfor, nginx, most load balancers), or "
            'forwarded_headers="forwarded" if it sets RFC 7239 Forwarded; the other family '
            "is then ignored (make the proxy strip it, too)")
    if isinstance(value, str) and value.lower() in FAMILIES:
        return "forwarded" if value.lower() == "forwarded" else "x-forwarded"
    raise UsageError(
        f"forwarded_headers={value!r} is invalid: expected False, \"x-forwarded\" "
        '(X-Forwarded-For / X-Forwarded-Proto) or "forwarded" (RFC 7239 Forwarded): '
        "the family your proxy sets")

_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``(host, port)`` as the daemon reports addresses, or a bare host string.
Peer = tuple[str, int] | str


class TrustedProxies:
    """The peers whose PROXY headers and forwarded headers are believed.

    Built from strings: an IP address (``"127.0.0.1"``, ``"::1"``), a network
    (``"10.0.0.0/8"``, ``"fd00::/8"``), ``"unix"`` for Unix-domain socket peers,
    or ``"*"`` for every peer (only where nothing but your proxies can reach
    the server). A single string is split at commas, so the command line's
    ``--forwarded-allow-ips "127.0.0.1,10.0.0.0/8"`` works as is.

    ``in`` asks about a *peer*. :meth:`is_proxy_hop` asks about a hop named
    inside a forwarded header, and there ``"*"`` matches nothing: "*" says
    that whoever connects is a proxy, not that every address a header names
    is one (else the left-most hop, which a client behind the proxy writes,
    would always win).

    Raises:
        UsageError: an entry is none of the above.
    """

    __slots__ = ("_all", "_networks", "_unix", "entries")

    def __init__(self, entries: Iterable[str] | str = DEFAULT_TRUSTED_PROXIES) -> None:
        if isinstance(entries, str):
            entries = [part for part in entries.split(",")]
        networks: list[_IPNetwork] = []
        self._unix = False
        self._all = False
        kept: list[str] = []
        for raw in entries:
            if not isinstance(raw, str):
                raise UsageError(
                    f"trusted_proxies entries are strings (addresses, networks, 'unix'), "
                    f"not {raw!r}"
                )
            entry = raw.strip()
            if not entry:
                continue
            kept.append(entry)
            if entry.lower() == "unix":
                self._unix = True
            elif entry == "*":
                self._all = True
            else:
                try:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    raise UsageError(
                        f"trusted_proxies entry {entry!r} is not an IP address, a network "
                        "such as '10.0.0.0/8', 'unix' or '*'"
                    ) from None
        self._networks = tuple(networks)
        self.entries = tuple(kept)

    def __repr__(self) -> str:
        return f"TrustedProxies({self.entries!r})"

    def __contains__(self, peer: object) -> bool:
        """Whether *peer* (``(host, port)``, a host string or an IP address) is trusted."""
        return self._all or self.is_proxy_hop(peer)

    def is_proxy_hop(self, peer: object) -> bool:
        """Whether *peer* matches an address, network or ``unix`` entry (not ``"*"``).

        Used for the hops of a forwarded header: a hop is skipped as one of
        our proxies only when the operator listed it.
        """
        host: object = peer[0] if isinstance(peer, tuple) and peer else peer
        if host == "unix" or (isinstance(peer, str) and peer.startswith("/")):
            return self._unix
        if isinstance(host, ipaddress.IPv4Address | ipaddress.IPv6Address):
            address: _IPAddress | None = host
        elif isinstance(host, str):
            address = _ip(host)
        else:
            address = None
        if address is None:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket's ::ffff:10.1.2.3
        return any(address in network for network in self._networks)


def _ip(text: str) -> _IPAddress | None:
    text = text.strip()
    if not text.isascii():  # ipaddress would take other scripts' digits
        return None
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


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
_PORT: Final = re.compile(r"[0-9]{1,5}")
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
        address = _ip(host)
        if not isinstance(address, ipaddress.IPv6Address):
            raise _Malformed(text)
        host = _text(address)
    else:
        host, sep, port_text = text.partition(":")
        rest = sep + port_text
        if host.lower() == "unknown":
            host = "unknown"
        elif not _OBF.fullmatch(host):
            address = _ip(host)
            if not isinstance(address, ipaddress.IPv4Address):
                raise _Malformed(text)
            host = str(address)
    if not rest:
        return host, None
    if not rest.startswith(":"):
        raise _Malformed(text)
    port_text = rest[1:]
    if _PORT.fullmatch(port_text) and int(port_text) <= 65535:
        return host, int(port_text)
    if _OBF.fullmatch(port_text):
        return host, None
    raise _Malformed(text)


def parse_x_forwarded_for(values: Sequence[str]) -> list[tuple[str, int | None]] | None:
    """Parse ``X-Forwarded-For`` values (all lines, in order).

    Each hop is an IP address, optionally with a port (``203.0.113.7:4711``,
    ``[2001:db8::1]:4711``), or ``unknown``. Returns the hops left to right,
    or ``None`` if any hop is something else. (:func:`resolve_client` does
    not use this: it reads hops from the right, only as far as it must.)
    """
    hops: list[tuple[str, int | None]] = []
    for value in values:
        for part in value.split(","):
            node, port = _xff_node(part.strip(" \t"))
            if node is None:
                return None
            hops.append((node, port))
    return hops or None


@dataclass(frozen=True, slots=True)
class ForwardedResult:
    """Who the client is, after the forwarded headers.

    ``client_address`` is ``(host, port)``: *host* is an IP address, or an
    RFC 7239 obfuscated identifier / ``"unknown"`` when the proxy hid the
    client (or wrote something that is not an address); *port* is 0 when no
    proxy said. ``scheme`` is ``"http"`` or ``"https"``. ``from_headers``
    says whether the headers were used.
    """

    client_address: tuple[str, int]
    scheme: str
    from_headers: bool


#: One hop as the walk sees it: (node, port, proto). ``None`` as the node: the
#: hop breaks its header's grammar.
_Hop = tuple[str | None, int | None, str | None]

#: The client when the hop that should name it does not: RFC 7239 section 6.3,
#: "the identity of the preceding entity is not known".
UNKNOWN: Final = "unknown"


def resolve_client(
    peer: Peer,
    trusted: TrustedProxies,
    *,
    scheme: str,
    use: ForwardedFamily,
    forwarded: Sequence[str] = (),
    x_forwarded_for: Sequence[str] = (),
    x_forwarded_proto: Sequence[str] = (),
) -> ForwardedResult:
    """The real client address and scheme of a request.

    Args:
        peer: the address the request came from (after the PROXY protocol, if
            any): ``(host, port)``, ``("unix", 0)`` for a Unix socket peer.
        trusted: the proxies whose headers are believed.
        scheme: the connection's own scheme (``"https"`` on TLS, else ``"http"``).
        use: the header family the proxy *sets*: ``"x-forwarded"``
            (``X-Forwarded-For`` / ``X-Forwarded-Proto``) or ``"forwarded"``
            (RFC 7239). The other family is not looked at: a header the proxy
            passes through untouched is whatever the client wrote, so there
            is no "whichever is present".
        forwarded: every ``Forwarded`` field value of the request, in order.
        x_forwarded_for: every ``X-Forwarded-For`` field value, in order.
        x_forwarded_proto: every ``X-Forwarded-Proto`` field value, in order.

    Returns:
        The client: from the headers if *peer* is trusted and the family has
        a header, else *peer* and *scheme* unchanged. The hops are read from
        the right, because each trusted proxy appends the one it saw: a hop
        that is itself a trusted proxy is skipped, the first that is not is
        the client (if all are trusted, the left-most one is). Nothing left
        of the client's hop is parsed at all: the client may have written it,
        and garbage there must not change the answer. A hop that should name
        the client but breaks the grammar, or a ``Forwarded`` element there
        without ``for=`` (its ``proto=`` still counts), makes the client
        ``("unknown", 0)``: never the proxy's own (trusted, often loopback)
        address. A hop is skipped as a proxy only when it matches a listed
        address, network or ``unix`` (:meth:`TrustedProxies.is_proxy_hop`:
        ``"*"`` trusts every peer but names no hop). The scheme is the ``proto=`` of
        the element that named the client, or the ``X-Forwarded-Proto`` value
        (the matching one if there is one per hop), when that is ``http`` or
        ``https``; otherwise the connection's.

    Raises:
        UsageError: *use* is neither family.
    """
    host, port = (peer, 0) if isinstance(peer, str) else (str(peer[0]), int(peer[1]))
    unchanged = ForwardedResult((host, port), scheme, False)
    if use not in FAMILIES:
        raise UsageError(f"use must be 'x-forwarded' or 'forwarded', not {use!r}")
    if peer not in trusted:
        return unchanged
    if use == "forwarded":
        if not forwarded:
            return unchanged
        return _walk(_forwarded_hops(forwarded), trusted, scheme)
    if not x_forwarded_for:
        return unchanged
    return _walk(_x_forwarded_hops(x_forwarded_for, x_forwarded_proto), trusted, scheme)


def _walk(hops: Iterator[_Hop], trusted: TrustedProxies, scheme: str) -> ForwardedResult:
    """The client among *hops* (right to left), see :func:`resolve_client`."""
    chosen: _Hop | None = None
    for hop in hops:
        chosen = hop
        if hop[0] is None or not trusted.is_proxy_hop(hop[0]):
            break
    if chosen is None:  # only empty list elements: no hop at all
        return ForwardedResult((UNKNOWN, 0), scheme, True)
    node, port, proto = chosen
    if node is None:
        return ForwardedResult((UNKNOWN, 0), scheme, True)
    if proto in ("http", "https"):
        scheme = proto
    return ForwardedResult((node, port or 0), scheme, True)


# ------------------------------------------------------------------ X-Forwarded-*


def _x_forwarded_hops(values: Sequence[str], protos: Sequence[str]) -> Iterator[_Hop]:
    """The ``X-Forwarded-For`` hops from the right, each with its proto if known.

    The field lines are one comma-separated list in order (RFC 9110 section
    5.3); an empty list element is skipped ("a recipient MUST parse and ignore
    a reasonable number of empty list elements", section 5.6.1).
    """
    items = [item.strip(" \t") for value in values for item in value.split(",")]
    items = [item for item in items if item]
    schemes = [p.strip(" \t").lower() for value in protos for p in value.split(",")]
    schemes = [p for p in schemes if p]
    for index in range(len(items) - 1, -1, -1):
        if len(schemes) == len(items):  # one per hop: the matching one
            proto: str | None = schemes[index]
        elif len(schemes) == 1:  # set by the nearest proxy, for the whole chain
            proto = schemes[0]
        else:  # neither: no telling whose is whose
            proto = None
        node, port = _xff_node(items[index])
        yield node, port, proto


def _xff_node(item: str) -> tuple[str | None, int | None]:
    """One ``X-Forwarded-For`` item: an IP address, ``[IPv6]``, either with a
    ``:port``, or ``unknown``; ``(None, None)`` for anything else."""
    if not item.isascii():
        return None, None
    if item.lower() == UNKNOWN:
        return UNKNOWN, None
    address = _ip(item)
    if address is not None:
        port = None
    else:
        host, sep, port_text = item.rpartition(":")  # v4:port or [v6]:port
        if not sep or not _PORT.fullmatch(port_text) or int(port_text) > 65535:
            return None, None
        address = _ip(host)
        if address is None:
            return None, None
        if isinstance(address, ipaddress.IPv6Address) and not host.startswith("["):
            return None, None  # 2001:db8::1:80 parsed above; a port needs brackets
        item, port = host, int(port_text)
    # brackets are for IPv6 only: "[192.0.2.1]" is no address
    if item.startswith("[") and not isinstance(address, ipaddress.IPv6Address):
        return None, None
    return _text(address), port


def _text(address: _IPAddress) -> str:
    """An address as the daemon reports it: an IPv4-mapped IPv6 address as
    the IPv4 address it is (as :class:`TrustedProxies` matches it)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


# ------------------------------------------------------------------ Forwarded, from the right

_TOKEN_CHARS: Final = frozenset("!#$%&'*+-.^_`|~0123456789"
                                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_QUOTED_STRING: Final = re.compile(_QUOTED)


def _forwarded_hops(values: Sequence[str]) -> Iterator[_Hop]:
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


# ------------------------------------------------------------------ from a raw header list

_WANTED: Final = {"forwarded": 0, "x-forwarded-for": 1, "x-forwarded-proto": 2}


def resolve_from_headers(
    peer: Peer,
    trusted: TrustedProxies,
    headers: Iterable[tuple[str | bytes, str | bytes]],
    *,
    scheme: str,
    use: ForwardedFamily,
) -> ForwardedResult:
    """:func:`resolve_client` from a request's raw header list.

    Args:
        peer: as for :func:`resolve_client`.
        trusted: as for :func:`resolve_client`.
        headers: every ``(name, value)`` field line of the request in order,
            as ``str`` or as ``bytes`` (h11's form); names in any case.
        scheme: the connection's own scheme.
        use: as for :func:`resolve_client`; only that family's fields are
            collected.

    Returns:
        The same as :func:`resolve_client`. Values are read as Latin-1, so a
        byte that is not ASCII never makes a whole field unreadable: it only
        makes the hop it is in break the grammar (a hop left of the client's
        is never looked at).
    """
    host, port = (peer, 0) if isinstance(peer, str) else (str(peer[0]), int(peer[1]))
    if use not in FAMILIES:
        raise UsageError(f"use must be 'x-forwarded' or 'forwarded', not {use!r}")
    if peer not in trusted:  # the common case: no need to look at the headers
        return ForwardedResult((host, port), scheme, False)
    found: tuple[list[str], list[str], list[str]] = ([], [], [])
    wanted = (False, True, True) if use == "x-forwarded" else (True, False, False)
    for name, value in headers:
        key = (name.decode("latin-1") if isinstance(name, bytes) else name).lower()
        slot = _WANTED.get(key)
        if slot is None or not wanted[slot]:
            continue
        found[slot].append(value.decode("latin-1") if isinstance(value, bytes) else value)
    forwarded, xff, xfp = found
    return resolve_client(peer, trusted, scheme=scheme, use=use, forwarded=forwarded,
                          x_forwarded_for=xff, x_forwarded_proto=xfp)
