"""Response heads, body framing and trailers, written as bytes.

h11 parses mhd2's requests, but mhd2 writes its responses itself: h11 cannot
write chunk extensions, and its send path costs more than the parse (see
docs/design.rst).  As in ``h11/_writers.py`` there is one tiny class per
framing, picked from a table keyed by :class:`~.framing.Framing`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar

from .._date import date_header_line
from .framing import Framing

__all__ = [
    "BODY_WRITERS",
    "BodyWriter",
    "daemon_reply",
    "encode_header_lines",
    "framing_header_line",
    "status_line",
    "switching_protocols_head",
]

_status_lines: dict[tuple[bytes, int], bytes] = {}


def status_line(version: bytes, status: int, reason: str) -> bytes:
    """Return ``b"HTTP/1.1 200 OK\\r\\n"``, cached per (version, status).

    Args:
        version: ``b"HTTP/1.1"`` or ``b"HTTP/1.0"``.
        status: the three-digit status code.
        reason: its reason phrase (RFC 9112 §4: may be empty).
    """
    key = (version, status)
    line = _status_lines.get(key)
    if line is None:
        line = b"%s %d %s\r\n" % (version, status, reason.encode("latin-1"))
        _status_lines[key] = line
    return line


def encode_header_lines(headers: Iterable[tuple[str, str]]) -> bytes:
    """Serialize validated ``(name, value)`` pairs as header lines.

    The caller has already refused CR, LF and other control characters, so no
    line can be split or smuggled here.
    """
    return b"".join(
        b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in headers
    )


def framing_header_line(framing: Framing, size: int | None) -> bytes:
    """The header line that announces *framing* (empty when none is needed).

    RFC 9110 §8.6: "A server MUST NOT send a Content-Length header field in any
    response with a status code of 1xx (Informational) or 204 (No Content)."
    """
    if framing is Framing.CONTENT_LENGTH and size is not None:
        return b"Content-Length: %d\r\n" % size
    if framing is Framing.CHUNKED:
        return b"Transfer-Encoding: chunked\r\n"
    return b""


def daemon_reply(status: int, reason: str, *, add_date: bool) -> bytes:
    """A complete reply the daemon makes itself (an error page), closing the connection.

    The body is a fixed text per status (``"400 Bad Request\n"``): nothing of
    the request is echoed, and ``X-Content-Type-Options: nosniff`` keeps a
    browser from reading it as anything but text.

    Args:
        status: the status code, e.g. 400.
        reason: its reason phrase.
        add_date: include the ``Date`` header.
    """
    key = (status, add_date)
    cached = _daemon_replies.get(key)
    if cached is not None and not add_date:
        return cached
    body = b"%d %s\n" % (status, reason.encode("latin-1"))
    reply = b"".join((
        status_line(b"HTTP/1.1", status, reason),
        date_header_line() if add_date else b"",
        b"Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body),
        body,
    ))
    if not add_date:
        _daemon_replies[key] = reply
    return reply


_daemon_replies: dict[tuple[int, bool], bytes] = {}


def switching_protocols_head(
    upgrade: str, headers: Iterable[tuple[str, str]], *, add_date: bool
) -> bytes:
    """The head of ``101 Switching Protocols`` for an upgrade to *upgrade*.

    RFC 9110 §15.2.2: "The server MUST generate an Upgrade header field in the
    response that indicates which protocol(s) will be in use".  RFC 9110 §7.8:
    "the server ... MUST send a Connection header field with the upgrade option".
    """
    return b"".join((
        b"HTTP/1.1 101 Switching Protocols\r\n",
        date_header_line() if add_date else b"",
        b"Connection: Upgrade\r\nUpgrade: %s\r\n" % upgrade.encode("latin-1"),
        encode_header_lines(headers),
        b"\r\n",
    ))


class BodyWriter:
    """Frames body pieces for one framing; stateless and shared."""

    #: May pieces be sent as they are, without any framing bytes around them?
    raw: ClassVar[bool] = True

    def frame(self, data: bytes | bytearray | memoryview, ext: str | None = None) -> list[bytes | bytearray | memoryview]:
        """Return what to send for one body piece of ``len(data) > 0`` bytes."""
        return [data]

    def end(self, trailers: Sequence[tuple[str, str]] = ()) -> bytes:
        """Return what ends the body (and carries trailers, where possible)."""
        return b""


class ContentLengthWriter(BodyWriter):
    """``Content-Length``: the bytes as they are; the count ends the body."""


class CloseDelimitedWriter(BodyWriter):
    """Close-delimited: the bytes as they are; closing the connection ends the body."""


class ChunkedWriter(BodyWriter):
    """``Transfer-Encoding: chunked`` (RFC 9112 §7.1).

    chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
    last-chunk = 1*("0") [ chunk-ext ] CRLF
    chunked-body = *chunk last-chunk trailer-section CRLF
    """

    raw = False

    def frame(self, data: bytes | bytearray | memoryview, ext: str | None = None) -> list[bytes | bytearray | memoryview]:
        if ext:
            head = b"%x;%s\r\n" % (len(data), ext.encode("latin-1"))
        else:
            head = b"%x\r\n" % len(data)
        return [head, data, b"\r\n"]

    def end(self, trailers: Sequence[tuple[str, str]] = ()) -> bytes:
        return b"0\r\n" + encode_header_lines(trailers) + b"\r\n"


BODY_WRITERS: dict[Framing, BodyWriter] = {
    Framing.NONE: ContentLengthWriter(),
    Framing.CONTENT_LENGTH: ContentLengthWriter(),
    Framing.CHUNKED: ChunkedWriter(),
    Framing.CLOSE_DELIMITED: CloseDelimitedWriter(),
}
