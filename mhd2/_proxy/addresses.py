"""Addresses as proxies name them: IP text parsed strictly, the daemon's form, ports.

Shared by the trust list (:mod:`mhd2._proxy.trusted`) and the header parsers
(:mod:`mhd2._proxy.rfc7239`, :mod:`mhd2._proxy.x_forwarded`), so that an
address a header names and the peer's address are compared in one form: an
IPv4-mapped IPv6 address (a dual-stack socket's ``::ffff:10.1.2.3``) is the
IPv4 address it is.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

__all__ = ["UNKNOWN", "Hop", "IPAddress", "Peer", "address_text", "parse_ip", "parse_port"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``(host, port)`` as the daemon reports addresses, or a bare host string.
Peer = tuple[str, int] | str

#: One hop of a forwarded header as the client walk sees it: (node, port,
#: proto). ``None`` as the node: the hop breaks its header's grammar.
Hop = tuple[str | None, int | None, str | None]

#: The client when the hop that should name it does not: RFC 7239 section 6.3,
#: "the identity of the preceding entity is not known".
UNKNOWN: Final = "unknown"

_PORT: Final = re.compile(r"[0-9]{1,5}")


def parse_ip(text: str) -> IPAddress | None:
    """*text* as an IP address (``[IPv6]`` brackets allowed), or ``None``.

    Only ASCII is read (:mod:`ipaddress` would take other scripts' digits),
    and a zone (``fe80::1%eth0``) is no address a proxy may name.
    """
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


def address_text(address: IPAddress) -> str:
    """An address as the daemon reports it: an IPv4-mapped IPv6 address as
    the IPv4 address it is (as :class:`~mhd2._proxy.trusted.TrustedProxies` matches it)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def parse_port(text: str) -> int | None:
    """*text* as a port number (1 to 5 digits, at most 65535), or ``None``."""
    if _PORT.fullmatch(text) and int(text) <= 65535:
        return int(text)
    return None
