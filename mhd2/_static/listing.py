"""Directory listings: sorting, HTML and JSON bodies, their validator (sans-IO).

The HTML page has a table with name, size and modification time, styled
inline (no external assets), with column headers that sort it through the
query string: ``?sort=name|size|date&order=asc|desc`` (default: name,
ascending; directories always come first). :func:`wants_json` decides from
``Accept`` whether the client asked for the JSON form instead.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import quote, unquote_to_bytes

__all__ = [
    "Entry",
    "SortKey",
    "SortOrder",
    "html_page",
    "json_body",
    "parse_sort",
    "sort_entries",
    "validator",
    "wants_json",
]

SortKey = Literal["name", "size", "date"]
SortOrder = Literal["asc", "desc"]

_KEYS: Final[tuple[SortKey, ...]] = ("name", "size", "date")
_MAX_QUERY_FIELDS: Final = 32
_MAX_ACCEPT_ENTRIES: Final = 64


@dataclass(frozen=True)
class Entry:
    """One listed name: *name* as the file system spells it (``str`` with
    surrogate escapes), its size in bytes (``None`` for directories) and
    modification time in POSIX seconds."""

    name: str
    is_dir: bool
    size: int | None
    mtime: int


def parse_sort(query: str) -> tuple[SortKey, SortOrder]:
    """``(key, order)`` from a query string; unknown values fall back to name, asc."""
    key: SortKey = "name"
    order: SortOrder = "asc"
    for field in query.split("&", _MAX_QUERY_FIELDS)[:_MAX_QUERY_FIELDS]:
        name, _eq, value = field.partition("=")
        if name == "sort":
            for candidate in _KEYS:
                if value == candidate:
                    key = candidate
        elif name == "order" and value in ("asc", "desc"):
            order = "desc" if value == "desc" else "asc"
    return key, order


def sort_entries(entries: Sequence[Entry], key: SortKey, order: SortOrder) -> list[Entry]:
    """Directories first, then by *key* (ties by name), reversed for ``desc``."""
    reverse = order == "desc"

    def name_key(e: Entry) -> bytes:
        return os.fsencode(e.name)

    by_name = sorted(entries, key=name_key, reverse=reverse)
    if key == "size":
        by_name.sort(key=lambda e: e.size or 0, reverse=reverse)
    elif key == "date":
        by_name.sort(key=lambda e: e.mtime, reverse=reverse)
    by_name.sort(key=lambda e: not e.is_dir)  # stable: keeps the order within each group
    return by_name


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
@media (prefers-color-scheme:dark){body{background:#121212;color:#e3e3e3}
table{background:#1e1e1e}th,td{border-color:#2c2c2c}th,td.date{color:#aaa}
td a{color:#8ab4f8}tr:hover td{background:#26292e}}
@media (max-width:600px){td.date,th.date{display:none}}
""".strip()


def html_page(location: str, entries: Sequence[Entry], key: SortKey, order: SortOrder) -> bytes:
    """The HTML listing of the directory at URL path *location* (ends with ``/``).

    Names are HTML-escaped and their links percent-encoded; *entries* are
    shown in the order given (see :func:`sort_entries`).
    """
    title = html.escape(_shown(os.fsdecode(unquote_to_bytes(location))), quote=True)

    def header(label: str, column: SortKey, css: str) -> str:
        flip: SortOrder = "desc" if key == column and order == "asc" else "asc"
        arrow = (" \u2191" if order == "asc" else " \u2193") if key == column else ""
        return (
            f'<th class="{css}"><a href="?sort={column}&amp;order={flip}">'
            f"{label}{arrow}</a></th>"
        )

    rows = []
    if location != "/":
        rows.append('<tr><td><a href="../">../</a></td><td class="size"></td><td class="date"></td></tr>')
    for e in entries:
        slash = "/" if e.is_dir else ""
        size = "" if e.size is None else f'<span title="{e.size} bytes">{_human(e.size)}</span>'
        when = _iso(e.mtime)
        rows.append(
            f'<tr><td><a href="{_href(e)}">{html.escape(_shown(e.name), quote=True)}{slash}</a></td>'
            f'<td class="size">{size}</td>'
            f'<td class="date"><time datetime="{when}">{when[:10]} {when[11:16]}</time></td></tr>'
        )
    return "\n".join(
        [
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
            *rows,
            "</tbody></table></main></body></html>",
            "",
        ]
    ).encode("utf-8")


def json_body(location: str, entries: Sequence[Entry]) -> bytes:
    """The JSON listing: ``{"path": ..., "entries": [{"name", "href", "type",
    "size", "modified"}, ...]}`` (``size`` is ``null`` for directories,
    ``modified`` an RFC 3339 UTC time)."""
    document = {
        "path": _shown(os.fsdecode(unquote_to_bytes(location))),
        "entries": [
            {
                "name": _shown(e.name),
                "href": _href(e),
                "type": "directory" if e.is_dir else "file",
                "size": e.size,
                "modified": _iso(e.mtime),
            }
            for e in entries
        ],
    }
    return (json.dumps(document, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def validator(
    directory: os.stat_result, entries: Sequence[Entry], variant: str
) -> tuple[str, int]:
    """``(etag, last_modified)`` for a listing.

    The entity tag is made from the directory's inode and modification time
    (which change when a name is added, removed or renamed), each listed
    entry's size and modification time (shown on the page), and *variant*
    (the format and sort order), so that every distinct page has its own
    tag. ``last_modified`` is the newest of those times.
    """
    digest = hashlib.blake2b(digest_size=12)
    digest.update(f"{directory.st_ino}:{directory.st_mtime_ns}:{variant}".encode())
    newest = int(directory.st_mtime)
    for e in entries:
        digest.update(os.fsencode(e.name) + f"\0{e.is_dir}:{e.size}:{e.mtime}\0".encode())
        newest = max(newest, e.mtime)
    return f'"d-{digest.hexdigest()}"', newest


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
