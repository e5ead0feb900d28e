"""The trust list: which peers' PROXY headers and forwarded headers are believed.

:class:`TrustedProxies` is the ``trusted_proxies`` option: addresses,
networks, ``"unix"`` and ``"*"``. It answers two questions -- is this *peer*
(the socket's) a proxy of ours, and is this *hop* (an address a forwarded
header names) one -- which differ only for ``"*"``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final

from ..errors import UsageError
from .addresses import IPAddress, parse_ip

__all__ = ["DEFAULT_TRUSTED_PROXIES", "TrustedProxies"]

#: The default of ``trusted_proxies``: loopback and Unix-domain peers.
DEFAULT_TRUSTED_PROXIES: Final = ("127.0.0.1", "::1", "unix")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


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
        networks: list[IPNetwork] = []
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
            address: IPAddress | None = host
        elif isinstance(host, str):
            address = parse_ip(host)
        else:
            address = None
        if address is None:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket's ::ffff:10.1.2.3
        return any(address in network for network in self._networks)
