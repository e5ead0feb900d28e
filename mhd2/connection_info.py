"""What is known about a client connection: its address and, over TLS, its session."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ConnectionInfo", "connection_info_for"]


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """One client connection, as ``request.connection`` and ``notify_connection`` see it.

    Attributes:
        client_address: ``(host, port)`` of the peer.
        server_address: ``(host, port)`` of the local end.
        tls_version: e.g. ``"TLSv1.3"``, or ``None`` on plain TCP.
        cipher: the negotiated cipher suite name, or ``None``.
        server_name: the SNI server name the client asked for, or ``None``.
        alpn_protocol: the ALPN protocol agreed on, or ``None``.
        peer_certificate: the client certificate as :meth:`ssl.SSLSocket.getpeercert`
            returns it, or ``None``.
        peer_subject: the client certificate's subject as an RFC 4514 string.
        peer_alt_names: the certificate's subject alternative names.
    """

    client_address: tuple[str, int]
    server_address: tuple[str, int] | None = None
    tls_version: str | None = None
    cipher: str | None = None
    server_name: str | None = None
    alpn_protocol: str | None = None
    peer_certificate: dict[str, Any] | None = None
    peer_subject: str | None = None
    peer_alt_names: tuple[tuple[str, str], ...] = field(default=())


def _address(addr: Any) -> tuple[str, int]:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return (str(addr[0]), int(addr[1]))
    return (str(addr), 0)


def _rfc4514(subject: Any) -> str:
    # getpeercert()'s subject is a tuple of RDNs, each a tuple of (key, value);
    # RFC 4514 writes the most specific RDN first.
    short = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
             "countryName": "C", "stateOrProvinceName": "ST", "localityName": "L",
             "domainComponent": "DC", "userId": "UID"}
    parts = []
    for rdn in reversed(subject):
        parts.append("+".join(
            f"{short.get(k, k)}={_escape_dn_value(v)}" for k, v in rdn
        ))
    return ",".join(parts)


def _escape_dn_value(value: str) -> str:
    out = "".join("\\" + c if c in ',+"\\<>;=' else c for c in value)
    if out[:1] in ("#", " "):
        out = "\\" + out
    if out.endswith(" "):
        out = out[:-1] + "\\ "
    return out


def connection_info_for(
    client_address: Any, server_address: Any, ssl_object: ssl.SSLObject | None = None,
    server_name: str | None = None,
) -> ConnectionInfo:
    """Build the :class:`ConnectionInfo` of an accepted connection.

    Args:
        client_address, server_address: as ``getpeername()``/``getsockname()`` return them.
        ssl_object: the connection's TLS session after the handshake, if any.
        server_name: the SNI name seen during the handshake, if any.
    """
    if ssl_object is None:
        return ConnectionInfo(_address(client_address), _address(server_address))
    cert = ssl_object.getpeercert()
    cipher = ssl_object.cipher()
    return ConnectionInfo(
        client_address=_address(client_address),
        server_address=_address(server_address),
        tls_version=ssl_object.version(),
        cipher=cipher[0] if cipher else None,
        server_name=server_name,
        alpn_protocol=ssl_object.selected_alpn_protocol(),
        peer_certificate=dict(cert) if cert else None,
        peer_subject=_rfc4514(cert["subject"]) if cert and "subject" in cert else None,
        peer_alt_names=tuple(cert.get("subjectAltName", ())) if cert else (),  # type: ignore[arg-type]
    )
