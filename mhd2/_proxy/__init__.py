"""Running behind proxies: sans-IO parsers, and one read from the socket.

* :mod:`mhd2._proxy.protocol`: HAProxy's PROXY protocol, v1 (text) and v2
  (binary), parsed from bytes as they arrive.
* :mod:`mhd2._proxy.forwarded`: the real client from RFC 7239 ``Forwarded``
  or ``X-Forwarded-For`` / ``X-Forwarded-Proto``, believed only from trusted
  peers; it assembles the answer from
  :mod:`~mhd2._proxy.trusted` (the trust list,
  :class:`~mhd2._proxy.trusted.TrustedProxies`),
  :mod:`~mhd2._proxy.rfc7239` and :mod:`~mhd2._proxy.x_forwarded` (the two
  header families' grammars) and :mod:`~mhd2._proxy.addresses` (the address
  forms they share).

The exception to "no I/O" is :mod:`mhd2._proxy.receive`:
:func:`~mhd2._proxy.receive.receive_proxy_header` takes exactly the header off
an accepted socket (peeking first), so that TLS and HTTP find their bytes
untouched, and :func:`~mhd2._proxy.receive.proxied_client_address` adds the
trust check and the timeout: the one call the accept path makes.
"""

from __future__ import annotations

from .forwarded import ForwardedResult, resolve_client, resolve_from_headers
from .protocol import (
    NEED_DATA,
    Command,
    Family,
    NeedData,
    ProxyHeader,
    ProxyHeaderReader,
    ProxyProtocolError,
    parse_proxy_header,
)
from .receive import peer_address, proxied_client_address, receive_proxy_header
from .rfc7239 import parse_forwarded
from .trusted import TrustedProxies
from .x_forwarded import parse_x_forwarded_for

__all__ = [
    "NEED_DATA",
    "Command",
    "Family",
    "ForwardedResult",
    "NeedData",
    "ProxyHeader",
    "ProxyHeaderReader",
    "ProxyProtocolError",
    "TrustedProxies",
    "parse_forwarded",
    "parse_proxy_header",
    "parse_x_forwarded_for",
    "peer_address",
    "proxied_client_address",
    "receive_proxy_header",
    "resolve_client",
    "resolve_from_headers",
]
