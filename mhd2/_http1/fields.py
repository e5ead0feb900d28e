"""One pass over a request's header fields: what the daemon needs to know.

The connection reads the framing and persistence signals (``Content-Length``,
``Transfer-Encoding``, ``Connection``) and the fields as the application will
see them in a single loop, because iterating h11's ``Headers`` wrapper again
for each question costs more than the rest of a small request.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["FieldScan", "scan_fields", "scan_items"]


class FieldScan(NamedTuple):
    """What :func:`scan_fields` found."""

    #: The fields as ``(name as sent, value)`` strings, in arrival order.
    fields: list[tuple[str, str]]
    #: Body length: ``0`` none, an ``int`` from ``Content-Length``, ``None``
    #: when ``Transfer-Encoding`` is present (RFC 9112 §6.3: it overrides).
    upload_size: int | None
    has_transfer_encoding: bool
    has_content_length: bool
    #: ``Connection: close`` was sent.
    wants_close: bool
    #: ``Connection: keep-alive`` was sent.
    wants_keep_alive: bool
    #: Every ``Host`` field value, in arrival order (usually exactly one).
    host_values: list[bytes]


def scan_fields(headers: Any) -> FieldScan:
    """Scan h11's parsed ``headers`` of one request.

    h11 has already refused malformed or conflicting ``Content-Length`` values
    and transfer codings it cannot frame, so the values read here are sound.
    """
    # h11 keeps (raw name, lower name, value) triples; use them when present.
    items = getattr(headers, "_full_items", None)
    if items is None:  # pragma: no cover - other h11 versions
        items = [(raw, raw.lower(), v) for raw, v in headers.raw_items()]
    return scan_items(items)


def scan_items(items: Any) -> FieldScan:
    """Scan ``(name as sent, lower-case name, value)`` triples of one request."""
    upload_size: int | None = 0
    has_te = has_cl = wants_close = wants_keep_alive = False
    fields = []
    hosts = []
    for name, lower, value in items:
        fields.append((name.decode("latin-1"), value.decode("latin-1")))
        if lower == b"transfer-encoding":
            has_te = True
        elif lower == b"content-length":
            has_cl = True
            upload_size = int(value)
        elif lower == b"host":
            hosts.append(value)
        elif lower == b"connection":
            # RFC 9110 §7.6.1: Connection = #connection-option (case-insensitive)
            tokens = [t.strip() for t in value.lower().split(b",")]
            wants_close = wants_close or b"close" in tokens
            wants_keep_alive = wants_keep_alive or b"keep-alive" in tokens
    if has_te:
        upload_size = None
    return FieldScan(fields, upload_size, has_te, has_cl, wants_close, wants_keep_alive, hosts)
