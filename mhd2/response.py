"""Responses: a status, headers, a body source and options.

A :class:`Response` is built by the application, handed to the daemon with
:func:`~mhd2.action_from_response`, frozen from then on, and destroyed once
sent -- unless it is *reusable*, in which case the daemon may send it any number
of times, concurrently, until :meth:`Response.destroy`.  Resources (a
``free_cb``, a file descriptor) are released exactly once, when the last use
ends after destruction.

The body sources are small records (:mod:`mhd2.body_source`, which also
checks a constructor's arguments); each is read by its producer in
:mod:`mhd2.body`, and written by :mod:`mhd2.http1.reply` (HTTP/1) or
:mod:`mhd2.http2.reply` (HTTP/2).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

from ._http1.writer import encode_header_lines
from ._syntax import BAD_VALUE, TOKEN
from .body_source import (
    BodySource,
    Buffer,
    BufferBody,
    CallbackBody,
    DynamicContentCreator,
    FdBody,
    IovecBody,
    PipeBody,
    as_buffer,
    callback_body,
    fd_body,
    iovec_body,
)
from .enums import PredefinedHeader, StatusCode, reason_phrase
from .errors import ResponseHeaderError, UsageError

__all__ = ["DynamicContentCreator", "FreeCallback", "Response"]

FreeCallback: TypeAlias = Callable[[], Any]

# RFC 9110 §5.1: field-name = token; tchar = "!" / "#" / "$" / "%" / "&" / "'"
# / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
# MHD2 refuses CR, LF and TAB in values; mhd2 also refuses the other controls
# (NUL, DEL ...), which RFC 9110 §5.5 forbids in field values.
_TOKEN = TOKEN
_BAD_VALUE = BAD_VALUE


def _status(status: int) -> int:
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 999:
        raise UsageError(
            f"status {status!r} is not an HTTP status code: pass an int from 100 to 999 "
            "or an mhd2.HTTPStatus"
        )
    return int(status)


class Response:
    """An HTTP response: status, headers, body and options.

    Build one with a ``from_*`` constructor, add headers, set options, then
    return ``action_from_response(request, response)``.

    Resource handling:
        The daemon releases the body's resources (calls ``free_cb``, closes the
        fd) exactly once: after the response was sent, or for a reusable
        response after :meth:`destroy` once no send is in flight.
    """

    __slots__ = (
        "__weakref__",
        "_app_content_length",
        "_blob",
        "_body",
        "_destroyed",
        "_free_cb",
        "_frozen",
        "_has_date",
        "_headers",
        "_in_use",
        "_released",
        "_replies",
        "_sent_once",
        "chunked",
        "conn_close",
        "head_only",
        "http10_compatible_strict",
        "http10_server",
        "insanity_header_content_length",
        "reason",
        "reusable",
        "status",
        "termination_callback",
    )

    status: int
    reason: str

    def __init__(self, status: int, body: BodySource, free_cb: FreeCallback | None = None) -> None:
        """Use the ``from_*`` constructors; this one is internal."""
        self.status = _status(status)
        self.reason = reason_phrase(self.status)
        self._body = body
        self._free_cb = free_cb
        self._headers: list[tuple[str, str]] = []
        self._blob = b""
        self._has_date = False
        self._app_content_length = False
        self._frozen = False
        self._destroyed = False
        self._released = False
        self._sent_once = False
        self._in_use = 0
        #: For a reusable response, once frozen: its reply plans (and, for a
        #: small in-memory body, its bytes on the wire), by the request-side
        #: inputs they depend on (see :func:`mhd2.http1.reply.reply_plan`).
        self._replies: dict[tuple[bool, ...], Any] | None = None
        self.reusable = False
        self.head_only = False
        self.chunked = False
        self.conn_close = False
        self.http10_compatible_strict = False
        self.http10_server = False
        self.insanity_header_content_length = False
        self.termination_callback: Callable[..., Any] | None = None

    # -- constructors -------------------------------------------------------

    @classmethod
    def from_buffer(cls, status: int, data: Buffer, free_cb: FreeCallback | None = None) -> Response:
        """Respond with *data*, which must stay unchanged until ``free_cb()`` runs.

        Args:
            status: the HTTP status code.
            data: the body (not copied).
            free_cb: called exactly once when the daemon no longer needs *data*.
        """
        return cls(status, BufferBody(as_buffer(data)), free_cb)

    @classmethod
    def from_buffer_static(cls, status: int, data: Buffer) -> Response:
        """Respond with *data* that lives as long as the program (not copied)."""
        return cls(status, BufferBody(as_buffer(data)))

    @classmethod
    def from_buffer_copy(cls, status: int, data: Buffer) -> Response:
        """Respond with a copy of *data*; the caller may change *data* right away."""
        return cls(status, BufferBody(bytes(data)))

    @classmethod
    def from_empty(cls, status: int) -> Response:
        """Respond with an empty body (``Content-Length: 0`` where a body is allowed)."""
        return cls(status, BufferBody(b""))

    @classmethod
    def from_iovec(
        cls, status: int, parts: Sequence[Buffer], free_cb: FreeCallback | None = None
    ) -> Response:
        """Respond with the concatenation of *parts*, sent without joining them.

        Args:
            status: the HTTP status code.
            parts: buffers (``bytes``, ``bytearray``, ``memoryview``), not copied.
            free_cb: called exactly once when the daemon no longer needs *parts*.
        """
        return cls(status, iovec_body(parts), free_cb)

    @classmethod
    def from_fd(cls, status: int, fd: int, offset: int = 0, size: int | None = None) -> Response:
        """Respond with *size* bytes of a regular file, starting at *offset*.

        The daemon owns *fd* from now on and closes it when the response is
        destroyed (also when this constructor refuses its arguments).  On plain
        TCP the bytes go out with ``os.sendfile``.

        Args:
            status: the HTTP status code.
            fd: an open file descriptor of a regular file.
            offset: where the body starts in the file.
            size: how many bytes to send; ``None`` means up to the end of the file.

        Raises:
            UsageError: *fd* is not a regular file, or the range lies outside it.
        """
        return cls(status, fd_body(fd, offset, size))

    @classmethod
    def from_pipe(cls, status: int, fd: int) -> Response:
        """Respond with what can be read from the pipe *fd* until its end.

        The size is unknown, so the body is chunked for HTTP/1.1 clients and
        close-delimited for HTTP/1.0 ones.  The daemon closes *fd* when done.
        """
        return cls(status, PipeBody(fd))

    @classmethod
    def from_callback(
        cls,
        status: int,
        size: int | None,
        dyn_cont: DynamicContentCreator,
        free_cb: FreeCallback | None = None,
    ) -> Response:
        """Respond with a body produced by ``dyn_cont(ctx, pos, buf)`` on demand.

        Args:
            status: the HTTP status code.
            size: the total body size, or ``None`` if unknown (chunked/close-delimited).
            dyn_cont: the dynamic content creator; returns a DCC action
                (:func:`~mhd2.dcc_action_continue`, ``..._finish`` ...).
            free_cb: called exactly once when the response is destroyed.
        """
        return cls(status, callback_body(size, dyn_cont), free_cb)

    # -- headers ------------------------------------------------------------

    def add_header(self, name: str, value: str) -> None:
        """Add a header line.

        The daemon writes ``Date``, ``Content-Length``, ``Transfer-Encoding``
        and ``Connection`` itself; an application value for them only steers
        it: ``Transfer-Encoding: chunked`` forces chunked coding,
        ``Connection: close`` closes after the response, ``Content-Length`` is
        refused unless ``insanity_header_content_length`` is set.

        Raises:
            ResponseHeaderError: the name is not a token, the value contains
                CR, LF, TAB or another control character, or the header is not
                allowed (with the :class:`~mhd2.StatusCode` saying which).
            UsageError: the response was already used (it is frozen).
        """
        self._check_mutable("add_header")
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ResponseHeaderError(
                f"header name {name!r} is not an HTTP token", StatusCode.RESP_HEADER_NAME_INVALID
            )
        if not isinstance(value, str) or _BAD_VALUE.search(value):
            raise ResponseHeaderError(
                f"header value {value!r} for {name} contains CR, LF, TAB, another control "
                "character or a non-Latin-1 character",
                StatusCode.RESP_HEADER_VALUE_INVALID,
            )
        value = value.strip(" ")
        lower = name.lower()
        if lower == "transfer-encoding":
            if value.lower() not in ("chunked", "identity"):
                raise ResponseHeaderError(
                    f"Transfer-Encoding {value!r} is not supported: only 'chunked' or 'identity'",
                    StatusCode.RESP_HEADER_NOT_ALLOWED,
                )
            if value.lower() == "chunked":
                self.chunked = True
            return
        if lower == "connection":
            if value.lower() not in ("close", "keep-alive"):
                raise ResponseHeaderError(
                    f"Connection {value!r} is not allowed: only 'close' or 'keep-alive'",
                    StatusCode.RESP_HEADER_NOT_ALLOWED,
                )
            if value.lower() == "close":
                self.conn_close = True
            return
        if lower == "content-length":
            if not self.insanity_header_content_length:
                raise ResponseHeaderError(
                    "Content-Length is set by the daemon; set the option "
                    "insanity_header_content_length=True first to send your own",
                    StatusCode.RESP_HEADER_NOT_ALLOWED,
                )
            if not value.isdigit():
                raise ResponseHeaderError(
                    f"Content-Length {value!r} is not a number", StatusCode.RESP_HEADER_VALUE_INVALID
                )
            self._app_content_length = True
        elif lower == "date":
            self._has_date = True
        self._headers.append((name, value))

    def _add_headers(self, pairs: tuple[tuple[str, str], ...]) -> None:
        """Add constant header lines, checked as :meth:`add_header` does; the pairs
        themselves are kept (shared by every response made with them: a
        library's fixed headers cost nothing per response)."""
        for pair in pairs:
            count = len(self._headers)
            self.add_header(*pair)
            if len(self._headers) > count and self._headers[-1] == pair:
                self._headers[-1] = pair

    def add_predef_header(self, header: PredefinedHeader, value: str) -> None:
        """Add a header named by a :class:`~mhd2.PredefinedHeader` code."""
        self.add_header(PredefinedHeader(header).header_name, value)

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The application's header lines, in order (a copy)."""
        return list(self._headers)

    # -- options ------------------------------------------------------------

    def set_options(
        self,
        *,
        reusable: bool | None = None,
        head_only: bool | None = None,
        chunked: bool | None = None,
        conn_close: bool | None = None,
        http10_compatible_strict: bool | None = None,
        http10_server: bool | None = None,
        insanity_header_content_length: bool | None = None,
        termination_callback: Callable[..., Any] | None = None,
    ) -> None:
        """Set response options (MHD2's ``MHD_R_O_*``); options not given keep their value.

        Args:
            reusable: may be sent many times, concurrently, until :meth:`destroy`.
            head_only: send only the head (as for ``HEAD``), never the body.
            chunked: use chunked coding even when the size is known (HTTP/1.1 clients).
            conn_close: close the connection after this response.
            http10_compatible_strict: be understood by HTTP/1.0 clients: no
                chunked coding, close after the response.
            http10_server: answer as an HTTP/1.0 server (status line
                ``HTTP/1.0``, keep-alive only if the client asked for it).
            insanity_header_content_length: allow the application's own
                ``Content-Length`` header (it is sent as given).
            termination_callback: ``cb(request, RequestEndedCode)``, called when
                each request that used this response ends.

        Raises:
            UsageError: the response is already in use (frozen), or a
                pipe-backed response was made reusable.
        """
        self._check_mutable("set_options")
        if reusable and isinstance(self._body, PipeBody):
            raise UsageError("a pipe can be read only once: a from_pipe response cannot be reusable")
        if termination_callback is not None and not callable(termination_callback):
            raise UsageError("termination_callback must be callable(request, RequestEndedCode)")
        for key, val in (
            ("reusable", reusable),
            ("head_only", head_only),
            ("chunked", chunked),
            ("conn_close", conn_close),
            ("http10_compatible_strict", http10_compatible_strict),
            ("http10_server", http10_server),
            ("insanity_header_content_length", insanity_header_content_length),
        ):
            if val is not None:
                setattr(self, key, bool(val))
        if termination_callback is not None:
            self.termination_callback = termination_callback

    # -- life cycle -----------------------------------------------------------

    @property
    def in_memory(self) -> bool:
        """The body is bytes in memory (a buffer or an iovec), sent without waiting."""
        return type(self._body) is BufferBody or type(self._body) is IovecBody

    @property
    def size(self) -> int | None:
        """The body size in bytes, ``None`` when unknown."""
        body = self._body
        if isinstance(body, BufferBody):
            return len(body.data)
        if isinstance(body, IovecBody | FdBody):
            return body.size
        if isinstance(body, CallbackBody):
            return body.size
        return None

    def destroy(self) -> None:
        """Release the response.

        For a reusable response: no new sends; resources are released when the
        last send in flight ends.  For an unused response: released now.

        Raises:
            UsageError: the response was handed to the daemon without being
                reusable (the daemon destroys it after sending).
        """
        if self._destroyed:
            return
        if self._frozen and not self.reusable:
            raise UsageError(
                "this response was given to action_from_response and is destroyed after "
                "sending; only reusable responses need destroy()"
            )
        self._destroyed = True
        if self._in_use == 0:
            self._release()

    def _check_mutable(self, what: str) -> None:
        if self._destroyed:
            raise UsageError(f"{what}: the response was destroyed", StatusCode.TOO_LATE)
        if self._frozen:
            raise UsageError(
                f"{what}: the response is frozen because it was used in an action; "
                "create a new response (or set options before the first use)",
                StatusCode.TOO_LATE,
            )

    def _acquire(self) -> None:
        """Start one use (called by ``action_from_response``)."""
        if self._destroyed:
            raise UsageError("this response was destroyed; create a new one", StatusCode.TOO_LATE)
        if self._sent_once and not self.reusable:
            raise UsageError(
                "this response was already used; set_options(reusable=True) to send it "
                "more than once", StatusCode.TOO_LATE,
            )
        if not self._frozen:
            self._frozen = True
            self._blob = encode_header_lines(self._headers)
        self._sent_once = True
        self._in_use += 1

    def _finish_use(self) -> None:
        """End one use; a non-reusable response is destroyed by its only use."""
        self._in_use -= 1
        if not self.reusable:
            self._destroyed = True
        if self._destroyed and self._in_use == 0:
            self._release()

    def _release(self) -> None:
        if self._released:
            return
        self._released = True
        body = self._body
        if isinstance(body, FdBody | PipeBody):
            try:
                os.close(body.fd)
            except OSError:
                pass
        if self._free_cb is not None:
            cb, self._free_cb = self._free_cb, None
            cb()

    def __repr__(self) -> str:
        kind = type(self._body).__name__.removesuffix("Body").lower()
        return f"<mhd2.Response {self.status} {kind} size={self.size}>"

