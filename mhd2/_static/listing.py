"""Directory listings: query, sort keys, HTML and JSON pages (sans-IO).

The HTML page has a table with name, size and modification time, styled
inline (no external assets), with column headers that sort it through the
query string: ``?sort=name|size|date&order=asc|desc`` (default: name,
ascending; directories always come first), and ``&page=N`` for the pages of a
long listing. :func:`wants_json` decides from ``Accept`` whether the client
asked for the JSON form instead.

A page is made in pieces -- :func:`html_head`, one :func:`html_row` per
entry, :func:`html_tail` (and :func:`json_head`, :func:`json_entry`,
:func:`json_tail`) -- so that its maker can yield to the event loop between
rows; :func:`html_page` and :func:`json_body` put a whole page together at
once.
"""

from __future__ import annotations

import html
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple
from urllib.parse import quote, unquote_to_bytes

__all__ = [
    "MAX_PAGE_DIGITS",
    "Entry",
    "Page",
    "Query",
    "Row",
    "SortKey",
    "SortOrder",
    "html_head",
    "html_page",
    "html_row",
    "html_tail",
    "json_body",
    "json_entry",
    "json_head",
    "json_tail",
    "parse_query",
    "parse_sort",
    "sort_entries",
    "sort_key",
    "wants_json",
]

#: An :class:`Entry` as a plain tuple: ``(name, is_dir, size, mtime)``.
Row = tuple[str, bool, int | None, int]

SortKey = Literal["name", "size", "date"]
SortOrder = Literal["asc", "desc"]

_KEYS: Final[tuple[SortKey, ...]] = ("name", "size", "date")
_MAX_QUERY_FIELDS: Final = 32
_MAX_ACCEPT_ENTRIES: Final = 64
#: A ``page`` value with more digits is ignored (page 1): no directory has
#: that many pages, and ``int()`` of a huge number is not free.
MAX_PAGE_DIGITS: Final = 9


class Entry(NamedTuple):
    """One listed name: *name* as the file system spells it (``str`` with
    surrogate escapes), its size in bytes (``None`` for directories) and
    modification time in POSIX seconds.

    Long listings keep their entries as plain :data:`Row` tuples (the
    garbage collector stops tracking a tuple of atoms, not a named tuple, so
    100,000 kept rows add nothing to its whole-heap collections, which stop
    the loop); ``Entry(*row)`` makes the entry of a row.
    """

    name: str
    is_dir: bool
    size: int | None
    mtime: int


@dataclass(frozen=True)
class Query:
    """What a listing's query string asks for: the sort *key*, the *order*
    and the 1-based *page* number."""

    key: SortKey = "name"
    order: SortOrder = "asc"
    page: int = 1

    def href(self, page: int) -> str:
        """The relative link to *page* of this listing in this order.

        Only the parsed values go into it, never the client's own text.
        """
        return f"?sort={self.key}&order={self.order}&page={page}"


def parse_query(query: str) -> Query:
    """The :class:`Query` of a query string (after the ``?``).

    Unknown sort keys and orders fall back to name and asc, and a ``page``
    that is not a number from 1 with at most :data:`MAX_PAGE_DIGITS` digits
    to page 1. Only the first 32 fields are looked at.
    """
    key: SortKey = "name"
    order: SortOrder = "asc"
    page = 1
    for field in query.split("&", _MAX_QUERY_FIELDS)[:_MAX_QUERY_FIELDS]:
        name, _eq, value = field.partition("=")
        if name == "sort":
            for candidate in _KEYS:
                if value == candidate:
                    key = candidate
        elif name == "order" and value in ("asc", "desc"):
            order = "desc" if value == "desc" else "asc"
        elif name == "page":
            ascii_digits = value.isascii() and value.isdigit()
            if ascii_digits and len(value) <= MAX_PAGE_DIGITS and int(value) >= 1:
                page = int(value)
    return Query(key, order, page)


def parse_sort(query: str) -> tuple[SortKey, SortOrder]:
    """``(key, order)`` from a query string; unknown values fall back to name, asc."""
    parsed = parse_query(query)
    return parsed.key, parsed.order


#: A sort key: compares like a tuple; the first item puts directories first.
SortTuple = tuple[bool, bytes] | tuple[bool, int, bytes]


def sort_key(entry: Row, key: SortKey) -> SortTuple:
    """The ascending sort key of *entry*: directories first, then by *key*,
    ties by name (its bytes). Names in one directory are unique, so no two
    entries have the same key, and the descending order of each group
    (directories, files) is exactly its ascending order reversed."""
    name, is_dir, size, mtime = entry
    encoded = os.fsencode(name)
    if key == "size":
        return (not is_dir, size or 0, encoded)
    if key == "date":
        return (not is_dir, mtime, encoded)
    return (not is_dir, encoded)


def sort_entries(entries: Sequence[Entry], key: SortKey, order: SortOrder) -> list[Entry]:
    """Directories first, then by *key* (ties by name), reversed for ``desc``
    (directories still first).

    In one step: for a few entries. :mod:`mhd2._static.pages` sorts long
    listings in slices, to the same order.
    """
    ordered = sorted(entries, key=lambda e: sort_key(e, key))
    if order == "asc":
        return ordered
    dirs = sum(1 for e in ordered if e.is_dir)
    return ordered[:dirs][::-1] + ordered[dirs:][::-1]


def _q(text: str) -> float | None:
    try:
        value = float(text.strip(" \t")) if len(text) <= 8 else None
    except ValueError:
        return None
    return value if value is not None and 0 <= value <= 1 else None


def wants_json(accept: str | None) -> bool:
    """Whether ``Accept`` prefers ``application/json`` to ``text/html``.

    The q-value of each is that of the most specific matching range
    (RFC 9110 §12.5.1); HTML wins ties and an absent header.
    """
    if accept is None:
        return False
    best: dict[str, tuple[int, float]] = {}  # media range -> (specificity, q)
    for entry in accept.split(",", _MAX_ACCEPT_ENTRIES)[:_MAX_ACCEPT_ENTRIES]:
        media, *params = entry.split(";")
        media = media.strip(" \t").lower()
        q: float | None = 1.0
        for param in params:
            name, _eq, value = param.partition("=")
            if name.strip(" \t").lower() == "q":
                q = _q(value)
        if q is not None and media and media not in best:
            best[media] = (0, q)

    def quality(media: str) -> float:
        kind = media.split("/")[0] + "/*"
        for candidate in (media, kind, "*/*"):
            if candidate in best:
                return best[candidate][1]
        return 0.0

    json_q = quality("application/json")
    return json_q > 0 and json_q > quality("text/html")


def _shown(name: str) -> str:
    return os.fsencode(name).decode("utf-8", "replace")


def _href(entry: Entry) -> str:
    return quote(os.fsencode(entry.name), safe="") + ("/" if entry.is_dir else "")


#: 9999-12-31T23:59:59Z: the last time with a four-digit year.
_LAST_TIME: Final = 253_402_300_799


def _iso(mtime: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(max(0, min(mtime, _LAST_TIME))))


def _human(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024
        if value < 1024 or unit == "PiB":
            break
    return f"{value:.1f} {unit}"


_STYLE: Final = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
main{max-width:60rem;margin:0 auto;padding:1.5rem 1rem}
h1{font-size:1.3rem;font-weight:600;word-break:break-all;margin:0 0 1rem}
table{width:100%;border-collapse:collapse;background:#fff;box-shadow:0 1px 3px #0002;border-radius:6px}
th,td{padding:.45rem .8rem;text-align:left;border-bottom:1px solid #eee}
th{font-weight:600;font-size:.85rem;text-transform:uppercase;letter-spacing:.03em;color:#555}
th a{color:inherit;text-decoration:none}th a:hover{text-decoration:underline}
td.size,th.size{text-align:right;white-space:nowrap}td.date{white-space:nowrap;color:#555}
td a{color:#0b57d0;text-decoration:none;word-break:break-all}td a:hover{text-decoration:underline}
tr:last-child td{border-bottom:0}tr:hover td{background:#f3f6fc}
nav{display:flex;flex-wrap:wrap;gap:1rem;margin:1rem 0;color:#555}
nav a{color:#0b57d0;text-decoration:none}.note{color:#a50}
@media (prefers-color-scheme:dark){body{background:#121212;color:#e3e3e3}
table{background:#1e1e1e}th,td{border-color:#2c2c2c}th,td.date,nav{color:#aaa}
td a,nav a{color:#8ab4f8}tr:hover td{background:#26292e}.note{color:#e9a}}
@media (max-width:600px){td.date,th.date{display:none}}
""".strip()


@dataclass(frozen=True)
class Page:
    """One page of a listing.

    Attributes:
        location: the directory's URL path (ends with ``/``, percent-encoded).
        query: the order and page number asked for.
        pages: how many pages the listing has (at least 1).
        first: the 0-based position of this page's first entry.
        count: how many entries this page shows.
        total: how many entries the listing has, on all pages.
        truncated: the directory has more entries than were read.
    """

    location: str
    query: Query
    pages: int = 1
    first: int = 0
    count: int = 0
    total: int = 0
    truncated: bool = False

    @classmethod
    def of(cls, location: str, query: Query, total: int, page_size: int,
           truncated: bool = False) -> Page | None:
        """Page ``query.page`` of a listing of *total* entries, *page_size* a
        page; ``None`` if there is no such page (an empty listing has one,
        empty, page)."""
        pages = max(1, -(-total // page_size))
        if query.page > pages:
            return None
        first = (query.page - 1) * page_size
        count = min(page_size, total - first)
        return cls(location, query, pages, first, count, total, truncated)

    def link(self, step: int) -> str | None:
        """The link to the page *step* pages away, ``None`` if there is none."""
        target = self.query.page + step
        return self.query.href(target) if 1 <= target <= self.pages else None


def _title(location: str) -> str:
    return html.escape(_shown(os.fsdecode(unquote_to_bytes(location))), quote=True)


def html_head(page: Page) -> str:
    """The HTML page up to its first entry's row (with ``../`` below the root)."""
    title = _title(page.location)
    key, order = page.query.key, page.query.order

    def header(label: str, column: SortKey, css: str) -> str:
        flip: SortOrder = "desc" if key == column and order == "asc" else "asc"
        arrow = (" \u2191" if order == "asc" else " \u2193") if key == column else ""
        return (
            f'<th class="{css}"><a href="?sort={column}&amp;order={flip}">'
            f"{label}{arrow}</a></th>"
        )

    lines = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        '<link rel="icon" href="data:,">',  # no favicon request from a listing
        f"<title>Index of {title}</title><style>{_STYLE}</style></head>",
        f"<body><main><h1>Index of {title}</h1>",
        "<table><thead><tr>"
        + header("Name", "name", "name")
        + header("Size", "size", "size")
        + header("Modified (UTC)", "date", "date")
        + "</tr></thead><tbody>",
    ]
    if page.location != "/":
        lines.append(
            '<tr><td><a href="../">../</a></td><td class="size"></td><td class="date"></td></tr>'
        )
    return "\n".join(lines) + "\n"


def html_row(e: Entry) -> str:
    """One entry's table row (and a newline): its name HTML-escaped, its link
    percent-encoded."""
    slash = "/" if e.is_dir else ""
    size = "" if e.size is None else f'<span title="{e.size} bytes">{_human(e.size)}</span>'
    when = _iso(e.mtime)
    return (
        f'<tr><td><a href="{_href(e)}">{html.escape(_shown(e.name), quote=True)}{slash}</a></td>'
        f'<td class="size">{size}</td>'
        f'<td class="date"><time datetime="{when}">{when[:10]} {when[11:16]}</time></td></tr>\n'
    )


def _nav(page: Page) -> list[str]:
    """The lines below the table: where this page is, links to its neighbours,
    and the note of a truncated listing."""
    lines = []
    if page.pages > 1:
        parts = []
        previous, following = page.link(-1), page.link(1)
        if previous is not None:
            parts.append(f'<a rel="prev" href="{html.escape(previous)}">\u2190 Previous</a>')
        parts.append(
            f"<span>Entries {page.first + 1:,}\u2013{page.first + page.count:,} of "
            f"{page.total:,} \u00b7 page {page.query.page:,} of {page.pages:,}</span>"
        )
        if following is not None:
            parts.append(f'<a rel="next" href="{html.escape(following)}">Next \u2192</a>')
        lines.append("<nav>" + "".join(parts) + "</nav>")
    if page.truncated:
        lines.append(
            f'<p class="note">This directory has more entries: only the first {page.total:,} '
            "read from it are listed.</p>"
        )
    return lines


def html_tail(page: Page) -> str:
    """The HTML page after its last entry's row."""
    return "\n".join(["</tbody></table>", *_nav(page), "</main></body></html>", ""])


def html_page(
    location: str, entries: Sequence[Entry], key: SortKey, order: SortOrder,
    page: Page | None = None,
) -> bytes:
    """The HTML listing of the directory at URL path *location* (ends with ``/``).

    Names are HTML-escaped and their links percent-encoded; *entries* are
    shown in the order given (see :func:`sort_entries`). *page* says which
    page of how many they are (default: the one page of a listing of them
    all).
    """
    if page is None:
        page = Page(location, Query(key, order), 1, 0, len(entries), len(entries))
    rows = "".join(html_row(e) for e in entries)
    return (html_head(page) + rows + html_tail(page)).encode("utf-8")


def json_head(page: Page) -> str:
    """The JSON listing up to its first entry: ``{"path", "page", "pages",
    "total", "truncated", "previous", "next", "entries": [``."""
    fields = {
        "path": _shown(os.fsdecode(unquote_to_bytes(page.location))),
        "page": page.query.page,
        "pages": page.pages,
        "total": page.total,
        "truncated": page.truncated,
        "previous": page.link(-1),
        "next": page.link(1),
    }
    return json.dumps(fields, ensure_ascii=False)[:-1] + ', "entries": ['


def json_entry(e: Entry, first: bool) -> str:
    """One entry of the JSON listing: ``{"name", "href", "type", "size",
    "modified"}`` (``size`` is ``null`` for directories, ``modified`` an
    RFC 3339 UTC time); *first*: no comma before it."""
    item = {
        "name": _shown(e.name),
        "href": _href(e),
        "type": "directory" if e.is_dir else "file",
        "size": e.size,
        "modified": _iso(e.mtime),
    }
    return ("\n" if first else ",\n") + json.dumps(item, ensure_ascii=False)


def json_tail(page: Page) -> str:
    """The JSON listing after its last entry."""
    return "\n]}\n"


def json_body(location: str, entries: Sequence[Entry], page: Page | None = None) -> bytes:
    """The JSON listing of *entries* (see :func:`json_head`, :func:`json_entry`)."""
    if page is None:
        page = Page(location, Query(), 1, 0, len(entries), len(entries))
    items = "".join(json_entry(e, i == 0) for i, e in enumerate(entries))
    return (json_head(page) + items + json_tail(page)).encode("utf-8")


def error_page(status: int, reason: str, explanation: str) -> bytes:
    """A daemon-made error page (404, 503) in the listing's style.

    Args:
        status: the status code.
        reason: its reason phrase.
        explanation: one sentence for the reader (plain text; escaped here).

    Returns:
        The UTF-8 HTML document.
    """
    title = html.escape(f"{status} {reason}")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{title}</title><style>{_STYLE}"
        "p{background:#fff;box-shadow:0 1px 3px #0002;border-radius:6px;padding:.8rem 1rem}"
        "@media (prefers-color-scheme:dark){p{background:#1e1e1e}}</style></head>"
        f"<body><main><h1>{title}</h1><p>{html.escape(explanation)}</p>"
        '<p><a href="/">Back to the top directory</a></p></main></body></html>\n'
    ).encode()


#: The static server's 404 page.
NOT_FOUND_PAGE: Final = error_page(404, "Not Found",
                                   "There is no file or directory at this address.")
#: The static server's 503 page (out of descriptors or memory).
UNAVAILABLE_PAGE: Final = error_page(503, "Service Unavailable",
                                     "The server is busy right now; please try again shortly.")
