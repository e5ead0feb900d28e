"""Access log lines (Common, Combined or JSON), safe to print on a terminal.

:class:`AccessLogger` writes one record per finished request to the
``mhd2.access`` logger (``--access-log-format common|combined|json``);
:class:`AccessLog` writes Combined lines straight to a stream.

Everything that came from the client (URI, method, version, ``Referer``,
``User-Agent``) is escaped before it is written: control characters and
anything that is not printable ASCII become ``\\xNN`` (the bytes of the UTF-8
or surrogate-escaped encoding), ``"`` becomes ``\\"`` and ``\\`` becomes
``\\\\``, the way Apache's ``mod_log_config`` does it. A client therefore cannot
move the terminal's cursor, change its colours or forge a second log line.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .request import Request

__all__ = ["FORMATS", "AccessLog", "AccessLogger", "escape", "format_line"]

#: The ``--access-log-format`` choices.
FORMATS = ("common", "combined", "json")


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
    *,
    combined: bool = True,
) -> str:
    """One Combined (``combined=False``: Common) Log Format line, without the newline.

    ``status`` or ``size`` of ``None`` (and a *size* of 0) are written as ``-``.
    A *duration* (seconds) is appended as a last field, in microseconds (as
    Apache's ``%D``).
    """
    when = _clock.now() if timestamp is None else timestamp
    status_text = "-" if status is None else str(int(status))
    size_text = str(size) if size else "-"
    common = (
        f'{escape(client)} - - [{when}] "{escape(method)} {escape(uri)} {escape(version)}" '
        f"{status_text} {size_text}"
    )
    if not combined:
        return common + ("" if duration is None else f" {round(duration * 1e6)}")
    return (
        common + " "
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


def _status_of(request: Request) -> int | None:
    status = request.response_status
    if status is None:
        ctx = request.app_context
        if isinstance(ctx, tuple) and len(ctx) == 2 and isinstance(ctx[0], int):
            status = ctx[0]
    return status


def _client_of(request: Request) -> str:
    try:
        address = request.client_address
        return str(address[0]) if address else "-"
    except Exception:
        return "-"


class AccessLogger:
    """``notify_request_ended`` callback: one record per request on ``mhd2.access``.

    The record's message is the line in *format*; the fields are also on the
    record as ``record.access`` (a dict: time, client, method, target,
    protocol, status, bytes, duration_ms, user_agent, referer, request_id), for
    a formatter of one's own (``--log-config``). The status is the one sent,
    including the daemon's own error replies (500 after a failing callback; 400,
    408, 413, 414, 431 for bad requests, whose method and target are ``-``).

    Args:
        format: ``"common"``, ``"combined"`` or ``"json"`` (one object a line).
        logger: the logger (default: ``mhd2.access``); records are at INFO.

    Raises:
        UsageError: an unknown *format*.
    """

    def __init__(self, format: str = "combined", logger: logging.Logger | None = None) -> None:
        from .errors import UsageError

        if format not in FORMATS:
            raise UsageError(f"access log format must be one of {', '.join(FORMATS)}, "
                             f"not {format!r}")
        self.format = format
        self.logger = logger if logger is not None else logging.getLogger("mhd2.access")

    def fields(self, request: Request) -> dict[str, Any]:
        """The record's fields for *request* (values as the client sent them)."""
        from .enums import ValueKind

        return {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "client": _client_of(request),
            "method": request.method,
            "target": request.uri,
            "protocol": request.version,
            "status": _status_of(request),
            "bytes": request.bytes_sent,
            "duration_ms": round(request.duration * 1000, 3),
            "user_agent": request.get_value(ValueKind.HEADER, "User-Agent"),
            "referer": request.get_value(ValueKind.HEADER, "Referer"),
            "request_id": request.get_value(ValueKind.HEADER, "X-Request-ID"),
        }

    def __call__(self, request: Request, code: object = None) -> None:
        """Log the finished *request* (``notify_request_ended``)."""
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        fields = self.fields(request)
        if self.format == "json":
            # json.dumps escapes control characters (ensure_ascii: non-ASCII
            # too), so a client cannot forge a second line.
            line = json.dumps(fields, ensure_ascii=True, separators=(",", ":"))
        else:
            line = format_line(fields["client"], fields["method"], fields["target"],
                               fields["protocol"], fields["status"], fields["bytes"],
                               fields["referer"], fields["user_agent"],
                               duration=request.duration,
                               combined=self.format == "combined")
        logger.info("%s", line, extra={"access": fields})
