"""``X-Forwarded-For`` and ``X-Forwarded-Proto`` field values, parsed (sans-IO).

* :func:`parse_x_forwarded_for`: every hop, left to right (for tools and
  tests; a hop that is no address makes the whole value ``None``);
* :func:`x_forwarded_hops`: the hops **from the right**, each with its
  ``X-Forwarded-Proto`` if that can be told, for the client walk of
  :mod:`mhd2._proxy.forwarded`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence

from .addresses import UNKNOWN, Hop, address_text, parse_ip, parse_port

__all__ = ["parse_x_forwarded_for", "x_forwarded_hops"]


def parse_x_forwarded_for(values: Sequence[str]) -> list[tuple[str, int | None]] | None:
    """Parse ``X-Forwarded-For`` values (all lines, in order).

    Each hop is an IP address, optionally with a port (``203.0.113.7:4711``,
    ``[2001:db8::1]:4711``), or ``unknown``. Returns the hops left to right,
    or ``None`` if any hop is something else. (:func:`~mhd2._proxy.forwarded.resolve_client` does
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


def x_forwarded_hops(values: Sequence[str], protos: Sequence[str]) -> Iterator[Hop]:
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
    address = parse_ip(item)
    if address is not None:
        port = None
    else:
        host, sep, port_text = item.rpartition(":")  # v4:port or [v6]:port
        port = parse_port(port_text) if sep else None
        if port is None:
            return None, None
        address = parse_ip(host)
        if address is None:
            return None, None
        if isinstance(address, ipaddress.IPv6Address) and not host.startswith("["):
            return None, None  # 2001:db8::1:80 parsed above; a port needs brackets
        item = host
    # brackets are for IPv6 only: "[192.0.2.1]" is no address
    if item.startswith("[") and not isinstance(address, ipaddress.IPv6Address):
        return None, None
    return address_text(address), port
