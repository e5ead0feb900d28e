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
* Precompressed sidecars: ``x.css.br``, ``x.css.zst`` or ``x.css.gz``, when
  present and not older than ``x.css``, are sent for ``x.css`` to clients
  whose ``Accept-Encoding`` prefers them, with ``Content-Encoding``, their
  own ``ETag``, and ``Vary: Accept-Encoding`` on every answer for a file that
  has sidecars. Ranges and preconditions apply to the encoded bytes.
* ``Accept-Ranges: bytes``; one range → 206 with ``Content-Range``; several
  → 206 ``multipart/byteranges``; unsatisfiable → 416 with
  ``Content-Range: bytes */size``; too many ranges (more than *max_ranges*),
  ranges that add up to more than the file, numbers of more than 19 digits or
  bad syntax → the header is ignored (200); ``If-Range`` with an entity tag
  (strong comparison) or a date (exact match).
* Directories: ``/dir`` → 301 to ``/dir/``; the first *index* file present,
  else a listing (HTML with name, size and date, sortable with
  ``?sort=name|size|date&order=asc|desc``, in pages of
  ``listing_limits.page_size`` entries, ``&page=N``; JSON when ``Accept``
  prefers ``application/json``), with an ``ETag`` and ``Last-Modified`` of
  its own. A listing is made without blocking the daemon: read, sorted and
  formatted in slices of a few milliseconds with checkpoints between them,
  and kept while the directory does not change (see
  :mod:`mhd2._static.pages` and :class:`ListingLimits`).
* Dot-files: with ``dotfiles="deny"`` (the default) any path segment that
  starts with ``.`` is 404 and such names are not listed.
* Nothing outside the root is ever served: a path with a NUL, a backslash or
  a ``..`` segment (after percent-decoding) is 404, and every path is resolved
  with :func:`os.path.realpath` and must stay inside the resolved root — so a
  symbolic link that points out of the tree is 404 too, and is not listed.
  Other file types (FIFOs, devices, sockets) are 404 and not listed.
* Out of file descriptors or memory (``EMFILE``, ``ENFILE``, ``ENOMEM``) when
  opening: 503 with ``Retry-After``, never 404.

The callback does its file-system calls (``stat``, ``open``, ``scandir``,
``pread`` for multipart bodies) inline: fine for local disks, but a slow
network file system blocks the daemon while it waits. It is synchronous
except for listings, for which it returns a coroutine (an async callback,
see docs/actions.rst). It starts no threads.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Coroutine, Sequence
from typing import Any, Literal, TextIO
from urllib.parse import quote

from . import (
    Action,
    HTTPStatus,
    Request,
    Response,
    UsageError,
    ValueKind,
    action_from_response,
)
from ._accesslog import AccessLog
from ._static import listing
from ._static.conditionals import if_range, preconditions
from ._static.encodings import choose
from ._static.files import MultipartBody, content_type, etag_of, http_date, last_modified
from ._static.pages import ListingLimits, Listings
from ._static.ranges import DEFAULT_MAX_RANGES, multipart, parse_ranges
from ._static.tree import EXHAUSTED, Tree, segments

__all__ = ["ListingLimits", "StaticFiles"]

_ALLOWED = "GET, HEAD"
#: Seconds in the Retry-After of a 503 for an exhausted resource.
RETRY_AFTER = 1

#: What :meth:`StaticFiles.handle` returns: an action, or (for a listing) a
#: coroutine that makes one.
Handled = Action | Coroutine[Any, Any, Action]

class StaticFiles:
    """Serve the files below *root*; :meth:`handle` is the request callback.

    Args:
        root: the directory to serve.
        access_log: a text stream that gets one Combined Log Format line per
            request, written by :meth:`request_ended` (pass it as the daemon's
            ``notify_request_ended``).
        index: the file name(s) served for a directory, first match wins
            (default ``index.html``; ``None`` or ``()``: none).
        listing: whether a directory without an index file gets a generated
            listing (``False``: 404, so that a directory's existence is not
            revealed either).
        dotfiles: ``"deny"`` (default): any path segment starting with ``.``
            is 404 and dot-names are left out of listings; ``"allow"``: they
            are served like any other name.
        cache_control: a ``Cache-Control`` value for file responses (200,
            206, 304), e.g. ``"public, max-age=3600"``; ``None``: none.
            Listings always say ``no-cache`` (and carry a validator).
        precompressed: look for ``.br``, ``.zst`` and ``.gz`` sidecar files.
        max_ranges: the most ranges one request may ask for; more, and the
            whole file is sent (200).
        listing_limits: page size, cache and time-slice limits of listings
            (default: :class:`ListingLimits` ``()``: 1000 entries a page,
            at most 100,000 names read from a directory).

    Raises:
        NotADirectoryError: *root* is not a directory.
        UsageError: an option has a wrong value.

    The instance uses ``request.app_context`` to remember the status and
    size for the log.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        access_log: TextIO | None = None,
        index: str | Sequence[str] | None = "index.html",
        listing: bool = True,
        dotfiles: Literal["allow", "deny"] = "deny",
        cache_control: str | None = None,
        precompressed: bool = True,
        max_ranges: int = DEFAULT_MAX_RANGES,
        listing_limits: ListingLimits | None = None,
    ) -> None:
        real = os.path.realpath(os.fspath(root))
        if not os.path.isdir(real):
            raise NotADirectoryError(f"not a directory: {os.fspath(root)!r}")
        if dotfiles not in ("allow", "deny"):
            raise UsageError(f"dotfiles must be 'allow' or 'deny', not {dotfiles!r}")
        if cache_control is not None and (
            not isinstance(cache_control, str)
            or not cache_control.strip()
            or any(not (c == "\t" or " " <= c <= "~") for c in cache_control)
        ):
            raise UsageError(
                f"cache_control must be a printable ASCII header value, not {cache_control!r}"
            )
        if isinstance(max_ranges, bool) or not isinstance(max_ranges, int) or max_ranges < 1:
            raise UsageError(f"max_ranges must be an int >= 1, not {max_ranges!r}")
        if listing_limits is None:
            listing_limits = ListingLimits()
        elif not isinstance(listing_limits, ListingLimits):
            raise UsageError(
                f"listing_limits must be a mhd2.static.ListingLimits, not {listing_limits!r}"
            )
        names = (index,) if isinstance(index, str) else tuple(index or ())
        for name in names:
            if not name or "/" in name or name in (".", ".."):
                raise UsageError(f"index names are plain file names, not {name!r}")
        #: The files that may be served (the root, ``dotfiles``, ``precompressed``).
        self.tree = Tree(real, dotfiles, precompressed)
        self.index: tuple[str, ...] = names
        self.listing = listing
        self.cache_control = cache_control
        self.max_ranges = max_ranges
        self._log = AccessLog(access_log) if access_log is not None else None
        self.listings = Listings(listing_limits, self.tree.entry)

    @property
    def root(self) -> str:
        """The served directory, resolved."""
        return self.tree.root

    @property
    def dotfiles(self) -> Literal["allow", "deny"]:
        """Whether dot-names are served (``"allow"``) or 404 (``"deny"``)."""
        return self.tree.dotfiles

    @property
    def precompressed(self) -> bool:
        """Whether precompressed sidecar files are looked for."""
        return self.tree.precompressed

    #: The decoded, checked path segments of a request-target (see
    #: :func:`mhd2._static.tree.segments`).
    _segments = staticmethod(segments)

    # ------------------------------------------------------------------ callbacks

    def __call__(self, request: Request) -> Handled:
        return self.handle(request)

    def handle(self, request: Request) -> Handled:
        """The mhd2 request callback.

        Returns:
            The action; for a directory listing, a coroutine that makes it
            (the daemon awaits it).
        """
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
        if self.dotfiles == "deny" and any(s.startswith(".") for s in segments):
            return self._not_found(request)
        try:
            real = os.path.realpath(os.path.join(self.root, *segments))
        except (OSError, ValueError):
            return self._not_found(request)
        if not self.tree.visible(real):
            return self._not_found(request)
        try:
            st = os.stat(real)
        except OSError as exc:
            return self._failed(request, exc)
        except ValueError:
            return self._not_found(request)
        if stat.S_ISDIR(st.st_mode):
            return self._directory(request, real, st, segments, slash)
        if not stat.S_ISREG(st.st_mode):
            return self._not_found(request)
        return self._file(request, real, st)

    def request_ended(self, request: Request, code: object = None) -> None:
        """``notify_request_ended`` callback: writes the access log line."""
        if self._log is not None:
            self._log(request, code)

    # ------------------------------------------------------------------ replies

    def _send(self, request: Request, response: Response, status: int, size: int) -> Action:
        request.app_context = (status, 0 if request.method == "HEAD" else size)
        return action_from_response(request, response)

    def _with_headers(
        self, request: Request, r: Response, headers: list[tuple[str, str]], status: int, size: int
    ) -> Action:
        try:
            for name, value in headers:
                r.add_header(name, value)
        except BaseException:
            r.destroy()
            raise
        return self._send(request, r, status, size)

    def _not_found(self, request: Request) -> Action:
        page = listing.NOT_FOUND_PAGE
        r = Response.from_buffer_static(HTTPStatus.NOT_FOUND, page)
        r.add_header("Content-Type", "text/html; charset=utf-8")
        return self._send(request, r, 404, len(page))

    def _failed(self, request: Request, exc: OSError) -> Action:
        """404 for a file-system error — except when the server is out of
        descriptors or memory: that is 503 with ``Retry-After`` (RFC 9110
        §15.6.4: "the server is currently unable to handle the request due to
        a temporary overload")."""
        if exc.errno not in EXHAUSTED:
            return self._not_found(request)
        page = listing.UNAVAILABLE_PAGE
        r = Response.from_buffer_static(HTTPStatus.SERVICE_UNAVAILABLE, page)
        headers = [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Retry-After", str(RETRY_AFTER)),
        ]
        return self._with_headers(request, r, headers, 503, len(page))

    def _directory(
        self, request: Request, real: str, st: os.stat_result, segments: list[str], slash: bool
    ) -> Handled:
        location = "/" + "".join(quote(os.fsencode(s), safe="") + "/" for s in segments)
        query = request.uri.partition("?")[2].partition("#")[0]
        if not slash:
            r = Response.from_empty(HTTPStatus.MOVED_PERMANENTLY)
            r.add_header("Location", location + ("?" + query if query else ""))
            return self._send(request, r, 301, 0)
        for name in self.index:
            index = os.path.realpath(os.path.join(real, name))
            try:
                ist = os.stat(index)
            except OSError as exc:
                if exc.errno in EXHAUSTED:
                    return self._failed(request, exc)
                continue
            if stat.S_ISREG(ist.st_mode) and self.tree.visible(index):
                return self._file(request, index, ist)
        if not self.listing:
            return self._not_found(request)
        return self._listing(request, real, st, location, query)

    async def _listing(
        self, request: Request, real: str, st: os.stat_result, location: str, query: str
    ) -> Action:
        """The listing page of directory *real* (resolved, visible; *st* is its
        stat) at URL path *location* that *query* asks for.

        Built in slices and kept (:class:`~mhd2._static.pages.Listings`); a
        page number past the last page is 404.
        """
        listings = self.listings
        try:
            snap = await listings.snapshot(real, st)
        except OSError as exc:
            return self._failed(request, exc)
        as_json = listing.wants_json(request.get_value(ValueKind.HEADER, "Accept"))
        page = listings.page(snap, location, listing.parse_query(query))
        if page is None:
            return self._not_found(request)
        etag = listings.etag(snap, page, as_json)
        modified = last_modified(snap.newest)
        headers = [
            ("Cache-Control", "no-cache"),
            ("ETag", etag),
            ("Last-Modified", http_date(modified)),
            ("Vary", "Accept"),
        ]
        links = [(page.link(-1), "prev"), (page.link(1), "next")]
        # RFC 8288 §3: Link = #link-value; link-value = "<" URI-Reference ">" *( OWS ";" OWS link-param )
        headers += [("Link", f'<{href}>; rel="{rel}"') for href, rel in links if href is not None]
        status = preconditions(
            lambda n: request.get_value(ValueKind.HEADER, n), etag, modified
        )
        if status is not None:
            return self._with_headers(request, Response.from_empty(status), headers, status, 0)
        try:
            body = await listings.body(snap, page, as_json)
        except OSError as exc:
            return self._failed(request, exc)
        ctype = "application/json" if as_json else "text/html; charset=utf-8"
        headers.insert(0, ("Content-Type", ctype))
        r = Response.from_buffer_static(HTTPStatus.OK, body)  # kept bytes: never changed
        return self._with_headers(request, r, headers, 200, len(body))

    def _file(self, request: Request, real: str, original: os.stat_result) -> Action:
        """Serve the regular file *real* (resolved, visible; *original* is its stat)."""

        def header(name: str) -> str | None:
            return request.get_value(ValueKind.HEADER, name)

        sidecars = self.tree.sidecars(real, original)
        coding = choose(header("Accept-Encoding"), sidecars) if sidecars else None
        opened = self.tree.open(sidecars[coding]) if coding is not None else None
        if not isinstance(opened, tuple):
            if isinstance(opened, OSError) and opened.errno in EXHAUSTED:
                return self._failed(request, opened)
            coding = None  # no usable sidecar after all: the file itself
            opened = self.tree.open(real)
        if isinstance(opened, OSError):
            return self._failed(request, opened)
        if opened is None:
            return self._not_found(request)
        fd, st = opened
        size, mtime, etag = st.st_size, last_modified(st.st_mtime), etag_of(st, coding)
        headers = [
            ("Accept-Ranges", "bytes"),
            ("ETag", etag),
            ("Last-Modified", http_date(mtime)),
        ]
        if sidecars:
            headers.append(("Vary", "Accept-Encoding"))
        if self.cache_control is not None:
            headers.append(("Cache-Control", self.cache_control))
        status = preconditions(header, etag, mtime)
        if status is not None:  # 304 or 412
            os.close(fd)
            return self._with_headers(request, Response.from_empty(status), headers, status, 0)
        ctype = content_type(real)  # the original's type, whatever the coding
        rng = header("Range")
        ranges = None
        if rng is not None and if_range(header("If-Range"), etag, mtime):
            ranges = parse_ranges(rng, size, max_ranges=self.max_ranges)
        if ranges is False:
            os.close(fd)
            headers.append(("Content-Range", f"bytes */{size}"))
            return self._with_headers(request, Response.from_empty(416), headers, 416, 0)
        if coding is not None:
            headers.append(("Content-Encoding", coding))
        if ranges and len(ranges) > 1:
            body = multipart(ranges, size, ctype, secrets.token_hex(16))
            creator = MultipartBody(fd, body)
            try:
                r = Response.from_callback(206, body.length, creator, creator.free)
            except BaseException:
                os.close(fd)
                raise
            headers.insert(0, ("Content-Type", body.content_type))
            return self._with_headers(request, r, headers, 206, body.length)
        headers.insert(0, ("Content-Type", ctype))
        if ranges:
            (first, last), status = ranges[0], 206
            headers.append(("Content-Range", f"bytes {first}-{last}/{size}"))
        else:
            first, last, status = 0, size - 1, 200
        r = Response.from_fd(status, fd, offset=first, size=last - first + 1)  # r owns fd now
        return self._with_headers(request, r, headers, status, last - first + 1)
