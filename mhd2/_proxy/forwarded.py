"""The real client behind HTTP proxies: ``Forwarded`` and ``X-Forwarded-*``, sans-IO.

A reverse proxy that terminates the client's connection tells the server who
the client was in a request header: RFC 7239's ``Forwarded: for=...;proto=...``
or the older ``X-Forwarded-For: client, proxy1`` and ``X-Forwarded-Proto``.
Anybody can send those headers, so they are believed only when the socket's
peer is a proxy the operator trusts (:class:`TrustedProxies`), and then only
up to the first hop that is *not* trusted: each trusted proxy appends the
address it saw, so the right-most address that is not one of ours is the
client, and anything left of it may be made up by that client.

:func:`resolve_client` does all of that; :func:`parse_forwarded` and
:func:`parse_x_forwarded_for` are its parsers. A header that does not follow
its grammar is ignored as a whole (the peer stays the client): half-believing
a broken header is how spoofing starts.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from ..errors import UsageError

__all__ = [
    "DEFAULT_TRUSTED_PROXIES",
    "ForwardedElement",
    "ForwardedResult",
    "TrustedProxies",
    "parse_forwarded",
    "parse_x_forwarded_for",
    "resolve_client",
    "resolve_from_headers",
]

#: The default of ``trusted_proxies``: loopback and Unix-domain peers.
DEFAULT_TRUSTED_PROXIES: Final = ("127.0.0.1", "::1", "unix")

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
        host: object = peer[0] if isinstance(peer, tuple) and peer else peer
        if self._all:
            return True
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
        if not isinstance(_ip(host), ipaddress.IPv6Address):
            raise _Malformed(text)
        host = str(ipaddress.IPv6Address(host))
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
    or ``None`` if any hop is something else (the header is then ignored).
    """
    hops: list[tuple[str, int | None]] = []
    for value in values:
        for part in value.split(","):
            item = part.strip()
            if not item:
                return None
            if item.lower() == "unknown":
                hops.append(("unknown", None))
                continue
            address = _ip(item)
            if address is not None:
                hops.append((str(address), None))
                continue
            # with a port: v4:port or [v6]:port
            host, sep, port_text = item.rpartition(":")
            if not sep or not _PORT.fullmatch(port_text) or int(port_text) > 65535:
                return None
            address = _ip(host)
            if address is None or (
                isinstance(address, ipaddress.IPv6Address) and not host.startswith("[")
            ):
                return None
            hops.append((str(address), int(port_text)))
    return hops or None


@dataclass(frozen=True, slots=True)
class ForwardedResult:
    """Who the client is, after the forwarded headers.

    ``client_address`` is ``(host, port)``: *host* is an IP address, or an
    RFC 7239 obfuscated identifier / ``"unknown"`` when the proxy hid the
    client; *port* is 0 when no proxy said. ``scheme`` is ``"http"`` or
    ``"https"``. ``from_headers`` says whether the headers were used.
    """

    client_address: tuple[str, int]
    scheme: str
    from_headers: bool


def resolve_client(
    peer: Peer,
    trusted: TrustedProxies,
    *,
    scheme: str,
    forwarded: Sequence[str] = (),
    x_forwarded_for: Sequence[str] = (),
    x_forwarded_proto: Sequence[str] = (),
    use: Literal["auto", "forwarded", "x-forwarded"] = "auto",
) -> ForwardedResult:
    """The real client address and scheme of a request.

    Args:
        peer: the address the request came from (after the PROXY protocol, if
            any): ``(host, port)``, ``("unix", 0)`` for a Unix socket peer.
        trusted: the proxies whose headers are believed.
        scheme: the connection's own scheme (``"https"`` on TLS, else ``"http"``).
        forwarded: every ``Forwarded`` field value of the request, in order.
        x_forwarded_for: every ``X-Forwarded-For`` field value, in order.
        x_forwarded_proto: every ``X-Forwarded-Proto`` field value, in order.
        use: which headers to believe: ``"forwarded"``, ``"x-forwarded"``, or
            ``"auto"`` (``Forwarded`` when the request has one, else the
            ``X-Forwarded-*`` pair). Pick the one your proxy *sets* (and make
            it remove the other): a header the proxy passes through untouched
            is whatever the client wrote.

    Returns:
        The client: from the headers if *peer* is trusted and they parse,
        else *peer* and *scheme* unchanged. Walking the hops from the right,
        each one that is itself a trusted proxy is skipped; the first that is
        not is the client (if all are trusted, the left-most one is). Its
        scheme is the ``proto=`` of the element that named it, or the
        ``X-Forwarded-Proto`` value (the matching one if there is one per
        hop), when that is ``http`` or ``https``.
    """
    host, port = (peer, 0) if isinstance(peer, str) else (str(peer[0]), int(peer[1]))
    unchanged = ForwardedResult((host, port), scheme, False)
    if peer not in trusted:
        return unchanged
    if use not in ("auto", "forwarded", "x-forwarded"):
        raise UsageError(f"use must be 'auto', 'forwarded' or 'x-forwarded', not {use!r}")
    if forwarded and use in ("auto", "forwarded"):
        elements = parse_forwarded(forwarded)
        if elements is None:
            return unchanged
        hops = [(e.for_, e.port, e.proto) for e in elements]
        return _walk(hops, trusted, scheme) or unchanged
    if use == "forwarded" or not x_forwarded_for:
        return unchanged
    xff = parse_x_forwarded_for(x_forwarded_for)
    if xff is None:
        return unchanged
    protos = [p.strip().lower() for v in x_forwarded_proto for p in v.split(",")]
    if len(protos) == len(xff):
        per_hop: list[str | None] = list(protos)
    elif len(protos) == 1:
        per_hop = [protos[0]] * len(xff)
    else:
        per_hop = [None] * len(xff)
    return _walk(
        [(h, p, proto) for (h, p), proto in zip(xff, per_hop, strict=True)], trusted, scheme
    ) or unchanged


def _walk(
    hops: list[tuple[str | None, int | None, str | None]], trusted: TrustedProxies, scheme: str
) -> ForwardedResult | None:
    chosen: tuple[str, int | None, str | None] | None = None
    for for_, port, proto in reversed(hops):
        if for_ is None:  # an element without for=: nothing to learn from it
            return None
        chosen = (for_, port, proto)
        if for_ not in trusted:
            break
    if chosen is None:
        return None
    for_, port, proto = chosen
    if proto in ("http", "https"):
        scheme = proto
    return ForwardedResult((for_, port or 0), scheme, True)


_WANTED: Final = {"forwarded": 0, "x-forwarded-for": 1, "x-forwarded-proto": 2}


def resolve_from_headers(
    peer: Peer,
    trusted: TrustedProxies,
    headers: Iterable[tuple[str | bytes, str | bytes]],
    *,
    scheme: str,
    use: Literal["auto", "forwarded", "x-forwarded"] = "auto",
) -> ForwardedResult:
    """:func:`resolve_client` from a request's raw header list.

    Args:
        peer: as for :func:`resolve_client`.
        trusted: as for :func:`resolve_client`.
        headers: every ``(name, value)`` field line of the request in order,
            as ``str`` or as ``bytes`` (h11's form); names in any case.
        scheme: the connection's own scheme.
        use: as for :func:`resolve_client`.

    Returns:
        The same as :func:`resolve_client`. A value that is not ASCII makes
        its header count as garbage (ignored as a whole).
    """
    host, port = (peer, 0) if isinstance(peer, str) else (str(peer[0]), int(peer[1]))
    unchanged = ForwardedResult((host, port), scheme, False)
    if peer not in trusted:  # the common case: no need to look at the headers
        return unchanged
    found: tuple[list[str], list[str], list[str]] = ([], [], [])
    broken = [False, False, False]
    for name, value in headers:
        key = (name.decode("latin-1") if isinstance(name, bytes) else name).lower()
        slot = _WANTED.get(key)
        if slot is None:
            continue
        try:
            text = value.decode("ascii") if isinstance(value, bytes) else value
            text.encode("ascii")
        except UnicodeError:
            broken[slot] = True
            continue
        found[slot].append(text)
    forwarded, xff, xfp = found
    # a broken header that would be used makes the request keep its peer
    uses_forwarded = use == "forwarded" or (use == "auto" and (forwarded or broken[0]))
    if broken[0] and uses_forwarded:
        return unchanged
    if broken[1] and not uses_forwarded:
        return unchanged
    if broken[2]:
        xfp = []
    return resolve_client(peer, trusted, scheme=scheme, forwarded=forwarded,
                          x_forwarded_for=xff, x_forwarded_proto=xfp, use=use)
