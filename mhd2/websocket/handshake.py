"""The handshake helpers of ``libmicrohttpd_ws`` (RFC 6455 §4.2.1 / §4.2.2).

Each ``check_*`` function takes the raw header value (``None`` when the header
is missing) and returns ``True`` when it is acceptable for a WebSocket
handshake; :func:`create_accept_header` computes ``Sec-WebSocket-Accept``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

__all__ = [
    "GUID",
    "check_connection_header",
    "check_http_version",
    "check_upgrade_header",
    "check_version_header",
    "create_accept_header",
]

#: The GUID of RFC 6455 §1.3 appended to ``Sec-WebSocket-Key``.
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

_VERSION = re.compile(r"HTTP/(\d+)\.(\d+)")


def _tokens(value: str) -> list[str]:
    return [token.strip().lower() for token in value.split(",")]


def check_http_version(version: str | None) -> bool:
    """Whether *version* (``"HTTP/1.1"``) is HTTP/1.1 or newer (``MHD_websocket_check_http_version``)."""
    if not version:
        return False
    match = _VERSION.fullmatch(str(version).strip())
    if match is None:
        return False
    return (int(match[1]), int(match[2])) >= (1, 1)


def check_connection_header(value: str | None) -> bool:
    """Whether a ``Connection`` value lists the ``Upgrade`` token (case-insensitive)."""
    return value is not None and "upgrade" in _tokens(value)


def check_upgrade_header(value: str | None) -> bool:
    """Whether an ``Upgrade`` value lists the ``websocket`` protocol (case-insensitive)."""
    if value is None:
        return False
    return any(token.split("/", 1)[0].strip() == "websocket" for token in _tokens(value))


def check_version_header(value: str | None) -> bool:
    """Whether ``Sec-WebSocket-Version`` is ``13``, the only version RFC 6455 defines."""
    return value is not None and value.strip() == "13"


def create_accept_header(key: str | None) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (``MHD_websocket_create_accept_header``).

    Raises:
        ValueError: *key* is missing or is not the base64 encoding of 16 bytes.
    """
    if key is None:
        raise ValueError("Sec-WebSocket-Key is missing")
    key = key.strip()
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ValueError(f"Sec-WebSocket-Key {key!r} is not valid base64") from None
    if len(raw) != 16:
        raise ValueError(f"Sec-WebSocket-Key must encode 16 bytes, not {len(raw)}")
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")
