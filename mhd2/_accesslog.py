"""Access log lines in the Combined Log Format, safe to print on a terminal.

Everything that came from the client (URI, method, version, ``Referer``,
``User-Agent``) is escaped before it is written: control characters and
anything that is not printable ASCII become ``\\xNN`` (the bytes of the UTF-8
or surrogate-escaped encoding), ``"`` becomes ``\\"`` and ``\\`` becomes
``\\\\``, the way Apache's ``mod_log_config`` does it. A client therefore cannot
move the terminal's cursor, change its colours or forge a second log line.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from .request import Request

__all__ = ["AccessLog", "escape", "format_line"]

_TABLE: dict[int, str] = {i: f"\\x{i:02x}" for i in range(256) if not 0x20 <= i < 0x7F}
_TABLE[ord('"')] = '\\"'
_TABLE[ord("\\")] = "\\\\"


def _escape_wide(char: str) -> str:
    if char.isascii():
        return char
    try:
        data = char.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        data = char.encode("utf-8", "surrogatepass")
    return "".join(f"\\x{b:02x}" for b in data)


def escape(text: str) -> str:
    """Return *text* with control, non-ASCII, ``"`` and ``\\`` characters escaped."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return text
    out = text.translate(_TABLE)
    if not out.isascii():
        out = "".join(_escape_wide(c) for c in out)
    return out


class _Clock:
    """The CLF timestamp, formatted at most once per second."""

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._text = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(second))
        return self._text


_clock = _Clock()


def format_line(
    client: str,
    method: str,
    uri: str,
    version: str,
    status: int | None,
    size: int | None,
    referer: str | None = None,
    user_agent: str | None = None,
    timestamp: str | None = None,
    duration: float | None = None,
) -> str:
    """One Combined Log Format line (without the newline).

    ``status`` or ``size`` of ``None`` (and a *size* of 0) are written as ``-``.
    A *duration* (seconds) is appended as a last field, in microseconds (as
    Apache's ``%D``).
    """
    when = _clock.now() if timestamp is None else timestamp
    status_text = "-" if status is None else str(int(status))
    size_text = str(size) if size else "-"
    return (
        f'{escape(client)} - - [{when}] "{escape(method)} {escape(uri)} {escape(version)}" '
        f"{status_text} {size_text} "
        f'"{"-" if referer is None else escape(referer)}" '
        f'"{"-" if user_agent is None else escape(user_agent)}"'
        + ("" if duration is None else f" {round(duration * 1e6)}")
    )


class AccessLog:
    """Writes one line per finished request to *stream*.

    The status is the one sent (``request.response_status``), the size the
    body bytes actually written (``request.bytes_sent``: an aborted download
    shows what the client got), and the last field the request's duration in
    microseconds.  A status left in ``request.app_context`` as a
    ``(status, size)`` tuple is used when no response was sent.
    Use an instance (or :meth:`mhd2.static.StaticFiles.request_ended`) as the
    daemon's ``notify_request_ended`` callback so that the line is written
    when the response is done.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def log(self, request: Request, status: int | None, size: int | None,
            duration: float | None = None) -> None:
        """Write the line for *request*."""
        from .enums import ValueKind

        try:
            address = request.client_address
            client = str(address[0]) if address else "-"
        except Exception:
            client = "-"
        line = format_line(
            client,
            request.method,
            request.uri,
            request.version,
            status,
            size,
            request.get_value(ValueKind.HEADER, "Referer"),
            request.get_value(ValueKind.HEADER, "User-Agent"),
            duration=duration,
        )
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken log stream must not break serving

    def __call__(self, request: Request, code: object = None) -> None:
        """``notify_request_ended`` callback: log what ``request.app_context`` says."""
        status = request.response_status
        if status is None:
            ctx = request.app_context
            if isinstance(ctx, tuple) and len(ctx) == 2:
                status = ctx[0]
        self.log(request, status, request.bytes_sent, request.duration)
