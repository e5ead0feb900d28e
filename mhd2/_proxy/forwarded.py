"""The real client behind HTTP proxies: ``Forwarded`` and ``X-Forwarded-*``, sans-IO.

A reverse proxy that terminates the client's connection tells the server who
the client was in a request header: RFC 7239's ``Forwarded: for=...;proto=...``
or the older ``X-Forwarded-For: client, proxy1`` and ``X-Forwarded-Proto``.
Anybody can send those headers, so they are believed only when the socket's
peer is a proxy the operator trusts (:class:`~mhd2._proxy.trusted.TrustedProxies`), and then only
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
client ``"unknown"``, never the proxy's own address.

This module assembles the answer; the pieces are in their own modules:
the trust list in :mod:`mhd2._proxy.trusted`, the headers' grammars in
:mod:`mhd2._proxy.rfc7239` (``Forwarded``) and :mod:`mhd2._proxy.x_forwarded`,
and the address forms both share in :mod:`mhd2._proxy.addresses`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from ..errors import UsageError
from .addresses import UNKNOWN, Hop, Peer
from .rfc7239 import forwarded_hops
from .trusted import TrustedProxies
from .x_forwarded import x_forwarded_hops

__all__ = [
    "FAMILIES",
    "ForwardedFamily",
    "ForwardedResult",
    "check_forwarded_headers",
    "resolve_client",
    "resolve_from_headers",
]

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
        address, network or ``unix`` (:meth:`~mhd2._proxy.trusted.TrustedProxies.is_proxy_hop`:
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
        return _walk(forwarded_hops(forwarded), trusted, scheme)
    if not x_forwarded_for:
        return unchanged
    return _walk(x_forwarded_hops(x_forwarded_for, x_forwarded_proto), trusted, scheme)


def _walk(hops: Iterator[Hop], trusted: TrustedProxies, scheme: str) -> ForwardedResult:
    """The client among *hops* (right to left), see :func:`resolve_client`."""
    chosen: Hop | None = None
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
