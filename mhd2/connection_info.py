"""What is known about a client connection: its address and, over TLS, its session."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["ConnectionInfo", "connection_info_for"]


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """One client connection, as ``request.connection`` and ``notify_connection`` see it.

    Attributes:
        client_address: ``(host, port)`` of the client: the socket's peer, or
            what a trusted proxy's PROXY protocol header said
            (``proxy_protocol=True``).
        server_address: ``(host, port)`` of the local end.
        tls_version: e.g. ``"TLSv1.3"``, or ``None`` on plain TCP.
        cipher: the negotiated cipher suite name, or ``None``.
        server_name: the SNI server name the client asked for, or ``None``.
        alpn_protocol: the ALPN protocol agreed on, or ``None``.
        peer_certificate: the client certificate as :meth:`ssl.SSLSocket.getpeercert`
            returns it, or ``None``.
        peer_subject: the client certificate's subject as an RFC 4514 string.
        peer_alt_names: the certificate's subject alternative names.
        peer_issuer: the client certificate's issuer as an RFC 4514 string.
        peer_serial: the client certificate's serial number.
        peer_not_before, peer_not_after: the certificate's validity (UTC).
        peer_address: ``(host, port)`` of the socket's peer (the proxy, behind
            one); ``client_address`` when not given.
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
    peer_issuer: str | None = None
    peer_serial: int | None = None
    peer_not_before: datetime | None = None
    peer_not_after: datetime | None = None
    peer_address: tuple[str, int] | None = None

    def __post_init__(self) -> None:
        if self.peer_address is None:
            object.__setattr__(self, "peer_address", self.client_address)


def _address(addr: Any) -> tuple[str, int]:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return (str(addr[0]), int(addr[1]))
    return (str(addr), 0)


def connection_info_for(
    client_address: Any, server_address: Any, ssl_object: ssl.SSLObject | None = None,
    server_name: str | None = None, peer_address: tuple[str, int] | None = None,
) -> ConnectionInfo:
    """Build the :class:`ConnectionInfo` of an accepted connection.

    Args:
        client_address, server_address: as ``getpeername()``/``getsockname()`` return them.
        ssl_object: the connection's TLS session after the handshake, if any.
        server_name: the SNI name seen during the handshake, if any.
    """
    if ssl_object is None:
        return ConnectionInfo(_address(client_address), _address(server_address),
                              peer_address=peer_address)
    from .tls import certificate_details

    cert = ssl_object.getpeercert()
    cipher = ssl_object.cipher()
    details = certificate_details(cert)
    return ConnectionInfo(
        client_address=_address(client_address),
        server_address=_address(server_address),
        tls_version=ssl_object.version(),
        cipher=cipher[0] if cipher else None,
        server_name=server_name,
        alpn_protocol=ssl_object.selected_alpn_protocol(),
        peer_certificate=dict(cert) if cert else None,
        peer_subject=details["subject"],
        peer_alt_names=details["alt_names"],
        peer_issuer=details["issuer"],
        peer_serial=details["serial_number"],
        peer_not_before=details["not_before"],
        peer_not_after=details["not_after"],
        peer_address=peer_address,
    )
