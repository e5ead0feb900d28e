"""A static file server as an mhd2 request callback.

::

    files = StaticFiles("/srv/www", access_log=sys.stderr)
    async with mhd2.Daemon(files.handle, notify_request_ended=files.request_ended):
        ...

What it does:

* ``GET`` and ``HEAD`` (any other method: 405 with ``Allow: GET, HEAD``);
  file bodies go out with :meth:`mhd2.Response.from_fd` (``os.sendfile``).
* ``Content-Type`` from :mod:`mimetypes` (``application/octet-stream`` when
  unknown, ``; charset=utf-8`` added to ``text/*``).
* ``ETag`` (from inode, size and modification time) and ``Last-Modified``;
  the preconditions of RFC 9110 §13.2.2 in order: ``If-Match`` and
  ``If-Unmodified-Since`` (412), ``If-None-Match`` (``*``, lists, weak
  comparison) and, only without it, ``If-Modified-Since`` (304).
* ``Accept-Ranges: bytes``; one range (``a-b``, ``a-``, ``-n``) → 206 with
  ``Content-Range``; unsatisfiable → 416 with ``Content-Range: bytes */size``;
  several ranges → the whole file (200); ``If-Range`` with an entity tag
  (strong comparison) or a date (exact match).
* Directories: ``/dir`` → 301 to ``/dir/``; ``index.html`` when present,
  else an HTML listing with escaped names and URL-quoted links.
* Nothing outside the root is ever served: a path with a NUL, a backslash or
  a ``..`` segment (after percent-decoding) is 404, and every path is resolved
  with :func:`os.path.realpath` and must stay inside the resolved root — so a
  symbolic link that points out of the tree is 404 too. Other file types
  (FIFOs, devices, sockets) are 404.

The callback is synchronous and does its file-system calls (``stat``,
``open``, ``scandir``) inline: fine for local disks, but a slow network file
system blocks the daemon while it waits.
"""

from __future__ import annotations

import email.utils
import html
import mimetypes
import os
import stat
from collections.abc import Callable, Iterator
from typing import Literal, TextIO
from urllib.parse import quote, unquote_to_bytes

from . import (
    Action,
    HTTPStatus,
    Request,
    Response,
    ValueKind,
    action_from_response,
)
from ._accesslog import AccessLog

__all__ = ["StaticFiles"]

_ALLOWED = "GET, HEAD"
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NONBLOCK", 0)  # never hang on a FIFO
)


_ENCODED = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "compress": "application/x-compress",
}

_Getter = Callable[[str], "str | None"]


def _etag(st: os.stat_result) -> str:
    return f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'


def _content_type(path: str) -> str:
    ctype, encoding = mimetypes.guess_type(path, strict=False)
    if encoding is not None:
        # ``x.tar.gz`` is gzip bytes: say so, rather than ask the client to unpack it
        return _ENCODED.get(encoding, "application/octet-stream")
    if ctype is None:
        return "application/octet-stream"
    if ctype.startswith("text/"):
        return ctype + "; charset=utf-8"
    return ctype


def _etags(value: str) -> Iterator[tuple[bool, str]]:
    """Parse an ``If-None-Match`` / ``If-Match`` list → ``(weak, opaque)`` pairs."""
    pos, end = 0, len(value)
    while pos < end:
        while pos < end and value[pos] in " \t,":
            pos += 1
        if pos >= end:
            return
        weak = value.startswith("W/", pos)
        if weak:
            pos += 2
        if pos < end and value[pos] == '"':
            close = value.find('"', pos + 1)
            if close < 0:
                return
            yield weak, value[pos : close + 1]
            pos = close + 1
        else:  # not an entity-tag: skip the junk up to the next comma
            comma = value.find(",", pos)
            if comma < 0:
                return
            pos = comma + 1


def _http_date(value: str) -> int | None:
    """An HTTP date as a POSIX timestamp, or ``None`` if it is not one."""
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        return None
    return int(parsed.timestamp())


def _parse_range(value: str, size: int) -> tuple[int, int] | Literal[False] | None:
    """Parse a ``Range`` header for a representation of *size* bytes.

    Returns ``(first, last)`` (inclusive) for one satisfiable range, ``False``
    when the range is unsatisfiable (416), and ``None`` when the header is to
    be ignored (bad syntax, another unit, several ranges).
    """
    unit, sep, spec = value.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    spec = spec.strip()
    if "," in spec:
        return None  # multipart/byteranges is not offered; the whole file is fine
    first_text, dash, last_text = spec.partition("-")
    first_text, last_text = first_text.strip(), last_text.strip()
    if not dash or not (first_text.isdigit() or last_text.isdigit()):
        return None
    if any(t and not (t.isascii() and t.isdigit()) for t in (first_text, last_text)):
        return None
    if not first_text:  # suffix range: the last n bytes
        length = int(last_text)
        if length == 0 or size == 0:
            return False
        return max(0, size - length), size - 1
    first = int(first_text)
    if last_text:
        last = int(last_text)
        if last < first:
            return None
        last = min(last, size - 1)
    else:
        last = size - 1
    if first >= size:
        return False
    return first, last


class StaticFiles:
    """Serve the files below *root*; :meth:`handle` is the request callback.

    *access_log*: a text stream that gets one Combined Log Format line per
    request, written by :meth:`request_ended` (pass it as the daemon's
    ``notify_request_ended``). *index* is the file served for a directory;
    *listing* turns the generated directory listing on or off (off: 404).

    The instance uses ``request.app_context`` to remember the status and
    size for the log.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        access_log: TextIO | None = None,
        index: str | None = "index.html",
        listing: bool = True,
    ) -> None:
        real = os.path.realpath(os.fspath(root))
        if not os.path.isdir(real):
            raise NotADirectoryError(f"not a directory: {os.fspath(root)!r}")
        self.root = real
        self.index = index
        self.listing = listing
        self._log = AccessLog(access_log) if access_log is not None else None

    # ------------------------------------------------------------------ callbacks

    def __call__(self, request: Request) -> Action:
        return self.handle(request)

    def handle(self, request: Request) -> Action:
        """The mhd2 request callback."""
        method = request.method
        if method not in ("GET", "HEAD"):
            r = Response.from_buffer_static(
                HTTPStatus.METHOD_NOT_ALLOWED, b"405 Method Not Allowed\n"
            )
            r.add_header("Allow", _ALLOWED)
            r.add_header("Content-Type", "text/plain; charset=utf-8")
            return self._send(request, r, 405, 23)
        parsed = self._segments(request.uri)
        if parsed is None:
            return self._not_found(request)
        segments, slash = parsed
        try:
            real = os.path.realpath(os.path.join(self.root, *segments))
        except (OSError, ValueError):
            return self._not_found(request)
        if not self._inside(real):
            return self._not_found(request)
        try:
            st = os.stat(real)
        except (OSError, ValueError):
            return self._not_found(request)
        if stat.S_ISDIR(st.st_mode):
            return self._directory(request, real, segments, slash)
        if not stat.S_ISREG(st.st_mode):
            return self._not_found(request)
        return self._file(request, real)

    def request_ended(self, request: Request, code: object = None) -> None:
        """``notify_request_ended`` callback: writes the access log line."""
        if self._log is not None:
            self._log(request, code)

    # ------------------------------------------------------------------ paths

    @staticmethod
    def _segments(target: str) -> tuple[list[str], bool] | None:
        """The decoded, checked path segments of a request-target and whether it
        ends with a slash (``None``: 404)."""
        if target.startswith("/"):
            path = target
        elif target.startswith(("http://", "https://")):  # absolute-form
            slash = target.find("/", target.find("//") + 2)
            path = "/" if slash < 0 else target[slash:]
        else:
            return None
        for stop in "?#":
            cut = path.find(stop)
            if cut >= 0:
                path = path[:cut]
        decoded = os.fsdecode(unquote_to_bytes(path))
        if "\x00" in decoded or "\\" in decoded:
            return None
        segments = []
        for seg in decoded.split("/"):
            if seg in ("", "."):
                continue
            if seg == "..":
                return None
            segments.append(seg)
        return segments, decoded.endswith("/")

    def _inside(self, real: str) -> bool:
        if real == self.root:
            return True
        try:
            return os.path.commonpath((self.root, real)) == self.root
        except ValueError:
            return False

    # ------------------------------------------------------------------ replies

    def _send(self, request: Request, response: Response, status: int, size: int) -> Action:
        request.app_context = (status, 0 if request.method == "HEAD" else size)
        return action_from_response(request, response)

    def _not_found(self, request: Request) -> Action:
        r = Response.from_buffer_static(HTTPStatus.NOT_FOUND, b"404 Not Found\n")
        r.add_header("Content-Type", "text/plain; charset=utf-8")
        return self._send(request, r, 404, 14)

    def _directory(self, request: Request, real: str, segments: list[str], slash: bool) -> Action:
        location = "/" + "".join(quote(os.fsencode(s), safe="") + "/" for s in segments)
        if not slash:
            query = request.uri.partition("?")[2]
            r = Response.from_empty(HTTPStatus.MOVED_PERMANENTLY)
            r.add_header("Location", location + ("?" + query if query else ""))
            return self._send(request, r, 301, 0)
        if self.index:
            index = os.path.realpath(os.path.join(real, self.index))
            if self._inside(index) and os.path.isfile(index):
                return self._file(request, index)
        if not self.listing:
            return self._not_found(request)
        try:
            with os.scandir(real) as it:
                entries = sorted((e.name, e.is_dir()) for e in it)
        except OSError:
            return self._not_found(request)
        body = self._listing_page(location, entries)
        r = Response.from_buffer_copy(HTTPStatus.OK, body)
        r.add_header("Content-Type", "text/html; charset=utf-8")
        r.add_header("Cache-Control", "no-cache")
        return self._send(request, r, 200, len(body))

    @staticmethod
    def _listing_page(location: str, entries: list[tuple[str, bool]]) -> bytes:
        def shown(name: str) -> str:
            return html.escape(os.fsencode(name).decode("utf-8", "replace"), quote=True)

        title = shown(os.fsdecode(unquote_to_bytes(location)))
        lines = [
            "<!DOCTYPE html>",
            '<html><head><meta charset="utf-8">',
            f"<title>Index of {title}</title></head>",
            f"<body><h1>Index of {title}</h1><ul>",
        ]
        if location != "/":
            lines.append('<li><a href="../">../</a></li>')
        for name, is_dir in entries:
            slash = "/" if is_dir else ""
            href = quote(os.fsencode(name), safe="") + slash
            lines.append(f'<li><a href="{href}">{shown(name)}{slash}</a></li>')
        lines.append("</ul></body></html>\n")
        return "\n".join(lines).encode("utf-8")

    def _file(self, request: Request, real: str) -> Action:
        try:
            fd = os.open(real, _OPEN_FLAGS)
        except OSError:
            return self._not_found(request)
        try:
            st = os.fstat(fd)
            regular = stat.S_ISREG(st.st_mode)
            if regular:
                os.set_blocking(fd, True)
                status, first, last = self._plan(request, st)
        except BaseException:
            os.close(fd)
            raise
        if not regular:
            os.close(fd)
            return self._not_found(request)
        size = st.st_size
        headers = [
            ("Accept-Ranges", "bytes"),
            ("ETag", _etag(st)),
            ("Last-Modified", email.utils.formatdate(int(st.st_mtime), usegmt=True)),
        ]
        if status in (200, 206):
            length = last - first + 1
            r = Response.from_fd(status, fd, offset=first, size=length)  # r owns fd now
            headers.insert(0, ("Content-Type", _content_type(real)))
            if status == 206:
                headers.append(("Content-Range", f"bytes {first}-{last}/{size}"))
        else:  # 304, 412, 416: no body
            os.close(fd)
            length = 0
            r = Response.from_empty(status)
            if status == 416:
                headers.append(("Content-Range", f"bytes */{size}"))
        try:
            for name, value in headers:
                r.add_header(name, value)
        except BaseException:
            r.destroy()
            raise
        return self._send(request, r, status, length)

    def _plan(self, request: Request, st: os.stat_result) -> tuple[int, int, int]:
        """``(status, first, last)`` for the regular file described by *st*."""
        size = st.st_size
        mtime = int(st.st_mtime)
        etag = _etag(st)

        def header(name: str) -> str | None:
            return request.get_value(ValueKind.HEADER, name)

        status = self._preconditions(header, etag, mtime)
        if status is not None:
            return status, 0, -1
        rng = header("Range")
        if rng is not None and self._if_range(header("If-Range"), etag, mtime):
            parsed = _parse_range(rng, size)
            if parsed is False:
                return 416, 0, -1
            if parsed is not None:
                return 206, parsed[0], parsed[1]
        return 200, 0, size - 1

    @staticmethod
    def _preconditions(header: _Getter, etag: str, mtime: int) -> int | None:
        """RFC 9110 §13.2.2 steps 1–4 for GET/HEAD: 412, 304 or ``None`` (go on)."""
        if_match = header("If-Match")
        if if_match is not None:
            if if_match.strip() != "*" and not any(
                not weak and tag == etag for weak, tag in _etags(if_match)
            ):
                return 412
        else:
            ius = header("If-Unmodified-Since")
            if ius is not None:
                when = _http_date(ius)
                if when is not None and mtime > when:
                    return 412
        inm = header("If-None-Match")
        if inm is not None:
            if inm.strip() == "*" or any(tag == etag for _weak, tag in _etags(inm)):
                return 304
            return None
        ims = header("If-Modified-Since")
        if ims is not None:
            when = _http_date(ims)
            if when is not None and mtime <= when:
                return 304
        return None

    @staticmethod
    def _if_range(value: str | None, etag: str, mtime: int) -> bool:
        """Whether the ``Range`` header applies (no ``If-Range``, or it matches)."""
        if value is None:
            return True
        value = value.strip()
        if value.startswith('"'):
            return value == etag
        if value.startswith("W/"):
            return False  # weak tags never match If-Range
        return _http_date(value) == mtime
