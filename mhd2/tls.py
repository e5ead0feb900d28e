"""TLS contexts for the daemon (``MHD_OPTION_HTTPS_MEM_*`` in Python).

:func:`server_context` builds an :class:`ssl.SSLContext` from PEM given in
memory (``str``/``bytes``) or as file paths, with TLS 1.2 as the floor and the
``ssl`` module's modern default cipher policy.  Pass it as ``Daemon(tls=...)``.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Callable, Iterable, Mapping
from typing import TypeAlias

__all__ = ["server_context"]

PEM: TypeAlias = str | bytes | os.PathLike[str]
SNIHandler: TypeAlias = (
    Mapping[str, tuple[PEM, PEM]] | Callable[[str], "ssl.SSLContext | None"]
)


def _is_pem(value: PEM) -> bool:
    if isinstance(value, bytes):
        return b"-----BEGIN" in value
    return isinstance(value, str) and "-----BEGIN" in value


def _load_chain(ctx: ssl.SSLContext, cert: PEM, key: PEM, password: str | bytes | None) -> None:
    if not _is_pem(cert) and not _is_pem(key):
        ctx.load_cert_chain(os.fspath(cert), os.fspath(key), password)
        return
    # ssl loads certificate chains from files only; write PEM given in memory
    # to private temporary files that exist only during the load.
    with tempfile.TemporaryDirectory(prefix="mhd2-tls-") as tmp:
        paths: list[str | bytes] = []
        for name, value in (("cert.pem", cert), ("key.pem", key)):
            if _is_pem(value):
                path = os.path.join(tmp, name)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    out.write(value if isinstance(value, bytes) else str(value).encode())
                paths.append(path)
            else:
                paths.append(os.fspath(value))
        ctx.load_cert_chain(paths[0], paths[1], password)


def _base_context(alpn: Iterable[str]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!MD5:!DSS")
    protocols = list(alpn)
    if protocols:
        ctx.set_alpn_protocols(protocols)
    return ctx


def server_context(
    cert_pem: PEM,
    key_pem: PEM,
    *,
    password: str | bytes | None = None,
    client_ca_pem: PEM | None = None,
    client_cert_optional: bool = False,
    sni: SNIHandler | None = None,
    alpn: Iterable[str] = ("http/1.1",),
) -> ssl.SSLContext:
    """Build a server-side TLS context.

    Args:
        cert_pem: the certificate chain, as PEM text/bytes or a file path.
        key_pem: the private key, as PEM text/bytes or a file path.
        password: the key's password, if it is encrypted.
        client_ca_pem: CA certificate(s) that client certificates must chain
            to; with it a client certificate is required, unless
            *client_cert_optional*.
        client_cert_optional: ask for, but do not require, a client certificate.
        sni: server name → ``(cert, key)`` for other names, or a callable
            ``name -> SSLContext | None``; unknown names get the default
            certificate.
        alpn: ALPN protocols to offer, most preferred first.

    Returns:
        A context to pass as ``Daemon(tls=...)``.
    """
    alpn = tuple(alpn)
    ctx = _base_context(alpn)
    _load_chain(ctx, cert_pem, key_pem, password)
    if client_ca_pem is not None:
        if _is_pem(client_ca_pem):
            data = client_ca_pem.decode() if isinstance(client_ca_pem, bytes) else str(client_ca_pem)
            ctx.load_verify_locations(cadata=data)
        else:
            ctx.load_verify_locations(cafile=os.fspath(client_ca_pem))
        ctx.verify_mode = ssl.CERT_OPTIONAL if client_cert_optional else ssl.CERT_REQUIRED
    if sni is not None:
        if callable(sni):
            lookup = sni
        else:
            contexts: dict[str, ssl.SSLContext] = {}
            for name, (cert, key) in sni.items():
                sub = _base_context(alpn)
                _load_chain(sub, cert, key, password)
                if client_ca_pem is not None:
                    sub.verify_mode = ctx.verify_mode
                    sub.load_verify_locations(cadata=None if not _is_pem(client_ca_pem) else (
                        client_ca_pem.decode() if isinstance(client_ca_pem, bytes)
                        else str(client_ca_pem)),
                        cafile=None if _is_pem(client_ca_pem) else os.fspath(client_ca_pem))
                contexts[name.lower()] = sub
            lookup = contexts.get

        def _pick(sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            if name:
                chosen = lookup(name.lower())
                if chosen is not None:
                    sock.context = chosen

        ctx.sni_callback = _pick
    return ctx
