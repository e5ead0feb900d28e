"""TLS contexts for the daemon (``MHD_OPTION_HTTPS_MEM_*`` in Python).

:func:`server_context` builds an :class:`ssl.SSLContext` from PEM given in
memory (``str``/``bytes``) or as file paths, with TLS 1.2 as the floor and a
modern cipher policy (forward-secret AEAD suites only for TLS 1.2; TLS 1.3's
suites are all modern).  Pass it as ``Daemon(tls=...)``.

Client certificates (mutual TLS) are asked for with ``client_ca_pem``; SNI
picks another certificate by the name the client asked for.  Contexts made
here remember that name, so ``request.connection.server_name`` shows it.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeAlias

__all__ = ["PEM", "SNIHandler", "TLSFileError", "certificate_details", "load_files",
           "server_context", "sni_server_name"]

PEM: TypeAlias = str | bytes | os.PathLike[str]
SNIHandler: TypeAlias = (
    Mapping[str, tuple[PEM, PEM]] | Callable[[str], "ssl.SSLContext | None"]
)

#: TLS 1.2 suites: ECDHE/DHE key exchange (forward secrecy) with AES-GCM or ChaCha20.
CIPHERS_TLS12 = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!MD5:!DSS:!SHA1"


class _SSLObject(ssl.SSLObject):
    """An SSLObject that knows the SNI name the client sent (server side)."""

    _mhd2_sni: str | None = None

    @property
    def server_hostname(self) -> str | None:
        if self.server_side:
            return self._mhd2_sni
        return super().server_hostname


def sni_server_name(ssl_object: ssl.SSLObject | None) -> str | None:
    """The SNI name the client asked for on a connection of a :func:`server_context`."""
    if ssl_object is None:
        return None
    name = getattr(ssl_object, "_mhd2_sni", None)
    return name if isinstance(name, str) else None


def _is_pem(value: PEM) -> bool:
    if isinstance(value, bytes):
        return b"-----BEGIN" in value
    return isinstance(value, str) and "-----BEGIN" in value


def _pem_text(value: PEM) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


class _NoPassword(ValueError):
    """An encrypted private key, and no password given (instead of a prompt)."""


def _never_prompt() -> bytes:
    # Without a password argument OpenSSL asks for one on the terminal; a
    # server must not sit waiting for a keyboard (stdin may be a terminal).
    raise _NoPassword("the private key is encrypted and no password was given")


def _load_chain(ctx: ssl.SSLContext, cert: PEM, key: PEM, password: str | bytes | None) -> None:
    secret: str | bytes | Callable[[], bytes] = password if password is not None else _never_prompt
    if not _is_pem(cert) and not _is_pem(key):
        ctx.load_cert_chain(os.fspath(cert), os.fspath(key), secret)
        return
    # ssl loads certificate chains from files only; write PEM given in memory
    # to private temporary files that exist only during the load.
    with tempfile.TemporaryDirectory(prefix="mhd2-tls-") as tmp:
        paths: list[str] = []
        for name, value in (("cert.pem", cert), ("key.pem", key)):
            if _is_pem(value):
                path = os.path.join(tmp, name)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    out.write(value if isinstance(value, bytes) else str(value).encode())
                paths.append(path)
            else:
                paths.append(str(os.fspath(value)))
        ctx.load_cert_chain(paths[0], paths[1], secret)


def _load_client_ca(ctx: ssl.SSLContext, client_ca_pem: PEM, optional: bool) -> None:
    if _is_pem(client_ca_pem):
        ctx.load_verify_locations(cadata=_pem_text(client_ca_pem))
    else:
        ctx.load_verify_locations(cafile=os.fspath(client_ca_pem))
    ctx.verify_mode = ssl.CERT_OPTIONAL if optional else ssl.CERT_REQUIRED


def _base_context(alpn: tuple[str, ...]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    ctx.set_ciphers(CIPHERS_TLS12)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    ctx.sslobject_class = _SSLObject
    return ctx


def server_context(
    cert_pem: PEM,
    key_pem: PEM,
    *,
    password: str | bytes | None = None,
    client_ca_pem: PEM | None = None,
    client_cert_optional: bool = False,
    sni: SNIHandler | None = None,
    sni_strict: bool = False,
    alpn: Iterable[str] = ("h2", "http/1.1"),
) -> ssl.SSLContext:
    """Build a server-side TLS context.

    Args:
        cert_pem: the certificate chain, as PEM text/bytes or a file path.
        key_pem: the private key, as PEM text/bytes or a file path.
        password: the key's password, if it is encrypted (also used for the
            SNI keys).
        client_ca_pem: CA certificate(s) that client certificates must chain
            to; with it a client certificate is required, unless
            *client_cert_optional*.  Applies to the SNI certificates too.
        client_cert_optional: ask for, but do not require, a client
            certificate (one that is sent must still verify).
        sni: server name → ``(cert, key)`` for other names (case-insensitive),
            or a callable ``name -> SSLContext | None`` (a context of its own,
            e.g. another :func:`server_context`; ``None`` = unknown name).
        sni_strict: refuse the handshake (alert ``unrecognized_name``) when
            the client asks for a name that *sni* does not know; by default
            unknown names, and clients that send no name, get the default
            certificate.
        alpn: ALPN protocols to offer, most preferred first (HTTP/2, then
            HTTP/1.1; a daemon with ``http2=False`` never selects ``h2``).

    Returns:
        A context to pass as ``Daemon(tls=...)``.

    Raises:
        ssl.SSLError, OSError, ValueError: a certificate or key cannot be loaded
            (wrong password, key does not match, file missing; an encrypted key
            without *password* is a ValueError, never a terminal prompt).
            :func:`load_files` says which file in one sentence.
    """
    protocols = tuple(alpn)
    ctx = _base_context(protocols)
    _load_chain(ctx, cert_pem, key_pem, password)
    if client_ca_pem is not None:
        _load_client_ca(ctx, client_ca_pem, client_cert_optional)
    lookup: Callable[[str], ssl.SSLContext | None] | None = None
    if callable(sni):
        lookup = sni
    elif sni is not None:
        contexts: dict[str, ssl.SSLContext] = {}
        for name, (cert, key) in sni.items():
            sub = _base_context(protocols)
            _load_chain(sub, cert, key, password)
            if client_ca_pem is not None:
                _load_client_ca(sub, client_ca_pem, client_cert_optional)
            contexts[name.lower().rstrip(".")] = sub
        lookup = contexts.get

    def _pick(sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> int | None:
        if name:
            if isinstance(sock, _SSLObject):
                sock._mhd2_sni = name
            if lookup is not None:
                chosen = lookup(name.lower().rstrip("."))
                if chosen is not None:
                    sock.context = chosen
                elif sni_strict:
                    return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        return None

    ctx.sni_callback = _pick
    return ctx


class TLSFileError(ValueError):
    """TLS files that cannot be used; the message is one sentence naming the file."""


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise TLSFileError(f"cannot read the {what} file {path}: "
                           f"{exc.strerror or exc}") from None


def _check_certificates(path: str, data: bytes, what: str) -> None:
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        if b"-----BEGIN CERTIFICATE-----" not in data:
            raise ValueError
        probe.load_verify_locations(cadata=data.decode("ascii"))
    except (ValueError, ssl.SSLError):
        raise TLSFileError(f"the {what} file {path} holds no PEM certificate") from None


def load_files(
    cert_file: str,
    key_file: str,
    *,
    password: str | bytes | None = None,
    client_ca_file: str | None = None,
    **options: Any,
) -> ssl.SSLContext:
    """:func:`server_context` from files, with one-sentence errors naming the file.

    The files are read now (call it again to pick up renewed certificates:
    the command line does so on SIGHUP). An encrypted key without a password
    is an error, never an OpenSSL prompt on the terminal.

    Args:
        cert_file: PEM certificate chain.
        key_file: PEM private key.
        password: the key's password, if it is encrypted.
        client_ca_file: PEM CA certificate(s) for client certificates.
        options: more :func:`server_context` arguments.

    Returns:
        The context.

    Raises:
        TLSFileError: a file is missing or unreadable, holds no certificate or
            key, the key's password is missing or wrong, or the key does not
            match the certificate. The message names the file.
    """
    cert = _read(cert_file, "TLS certificate")
    key = _read(key_file, "TLS key")
    _check_certificates(cert_file, cert, "TLS certificate")
    if b"-----BEGIN" not in key or b"PRIVATE KEY-----" not in key:
        raise TLSFileError(f"the TLS key file {key_file} holds no usable PEM private key")
    client_ca = None
    if client_ca_file is not None:
        client_ca = _read(client_ca_file, "TLS client CA")
        _check_certificates(client_ca_file, client_ca, "TLS client CA")
    try:
        return server_context(cert, key, password=password, client_ca_pem=client_ca, **options)
    except _NoPassword:
        raise TLSFileError(f"the TLS key file {key_file} is encrypted and no password was "
                           "given (--tls-key-password-file FILE or MHD2_TLS_KEY_PASSWORD)"
                           ) from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TLSFileError(f"the TLS key file {key_file} does not match the certificate "
                               f"in {cert_file}") from None
        if b"ENCRYPTED" in key and password is not None:
            raise TLSFileError(f"the TLS key file {key_file} cannot be decrypted with the "
                               "password given (wrong password)") from None
        raise TLSFileError(f"the TLS key file {key_file} holds no usable PEM private key "
                           f"({exc.reason or exc})") from None


def _dn(name: Any) -> str | None:
    if not name:
        return None
    return _rfc4514(name)


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



def _cert_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    return datetime.fromtimestamp(ssl.cert_time_to_seconds(value), UTC)


def certificate_details(cert: Mapping[str, Any] | None) -> dict[str, Any]:
    """The peer certificate's fields, from ``SSLObject.getpeercert()``.

    Returns:
        ``subject`` and ``issuer`` (RFC 4514 strings), ``serial_number``
        (``int``), ``not_before`` / ``not_after`` (aware UTC ``datetime``),
        ``alt_names`` (tuple of ``(type, value)``); ``None``/``()`` when absent.
    """
    if not cert:
        return {"subject": None, "issuer": None, "serial_number": None,
                "not_before": None, "not_after": None, "alt_names": ()}
    serial = cert.get("serialNumber")
    return {
        "subject": _dn(cert.get("subject")),
        "issuer": _dn(cert.get("issuer")),
        "serial_number": int(serial, 16) if isinstance(serial, str) else None,
        "not_before": _cert_time(cert.get("notBefore")),
        "not_after": _cert_time(cert.get("notAfter")),
        "alt_names": tuple(tuple(x) for x in cert.get("subjectAltName", ())),
    }
