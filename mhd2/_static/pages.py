"""Directory listing pages, made without blocking the loop (issue 19, item 10).

Reading a directory of 50,000 names, sorting them and formatting them used
to take about a second in one step of the request callback, during which the
daemon served no one else. :class:`Listings` makes the same pages so that
the loop is never held for more than about one time slice
(:attr:`ListingLimits.slice`):

* the directory is read (``scandir`` and one ``stat`` per entry) in slices,
  with a checkpoint between them (see :mod:`mhd2._static.slices` for why
  slices on the loop rather than threads);
* at most :attr:`ListingLimits.max_entries` names are read from one
  directory; a longer one is listed in part, and says so;
* what a read found is kept (:class:`~mhd2._static.snapshot.Snapshot`) while
  the directory's identity and times stay the same, for at most
  :attr:`ListingLimits.max_age` seconds; each sort order is worked out once
  per snapshot, in sorted runs merged in slices;
* a listing is cut into pages of :attr:`ListingLimits.page_size` entries,
  each formatted in slices and kept in a cache bounded in bytes;
* concurrent requests for the same read, sort or page share one piece of
  work, and at most :attr:`ListingLimits.concurrent_reads` reads and sorts
  run at once.
"""

from __future__ import annotations

import heapq
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import trio

from ..errors import UsageError
from . import listing
from .listing import Entry, Page, SortKey, SortOrder
from .slices import DEFAULT_SLICE, SingleFlight, Slicer
from .snapshot import LRU, RACY_NS, Snapshot, SnapshotBuilder, dir_key

__all__ = ["ListingLimits", "Listings", "ReadEntry"]

#: Entries sorted in one step; the sorted runs are then merged in slices.
_RUN: Final = 512
#: Units of work (entries read, keyed, merged or formatted) between two
#: looks at the clock.
_STRIDE: Final = 32
#: The most rendered pages kept at once (they are bounded in bytes too).
_MAX_PAGES: Final = 1024

#: What a listing shows for one directory entry: an :class:`Entry`, or
#: ``None`` to leave it out. It may raise :class:`OSError` to end the read.
ReadEntry = Callable[["os.DirEntry[str]"], Entry | None]


@dataclass(frozen=True)
class ListingLimits:
    """The limits of generated directory listings.

    Attributes:
        page_size: entries on one page; the rest are on further pages
            (``?page=2``, ...).
        max_entries: the most names read from one directory, listed or not
            (dot-names and links out of the tree count too); a directory with
            more is listed in part, with a note saying so.
        max_age: seconds a read of a directory answers for it while the
            directory itself does not change; a file rewritten in place shows
            its new size and time at most this much later.
        slice: seconds of listing work between two yields to the event loop.
        concurrent_reads: directory reads and sorts that run at once; more
            wait their turn.
        cache_dirs: directories whose reads are kept.
        cache_entries: entries kept in all those reads together.
        cache_bytes: bytes of rendered pages kept.

    Raises:
        UsageError: a value is not a positive number (``max_age`` may be 0:
            read the directory for every request).
    """

    page_size: int = 1000
    max_entries: int = 100_000
    max_age: float = 2.0
    slice: float = DEFAULT_SLICE
    concurrent_reads: int = 2
    cache_dirs: int = 64
    cache_entries: int = 200_000
    cache_bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("page_size", "max_entries", "concurrent_reads", "cache_dirs",
                     "cache_entries", "cache_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"ListingLimits.{name} must be an int >= 1, not {value!r}")
        for name in ("max_age", "slice"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                0 <= value < float("inf")
            ) or (name == "slice" and value == 0):
                raise UsageError(
                    f"ListingLimits.{name} must be a finite number of seconds "
                    f"{'> 0' if name == 'slice' else '>= 0'}, not {value!r}"
                )


class Listings:
    """Reads, sorts and formats directory listings in slices, with caches.

    Args:
        limits: the limits.
        read_entry: what the listing shows for one directory entry.

    One instance serves one trio run at a time.
    """

    def __init__(self, limits: ListingLimits, read_entry: ReadEntry) -> None:
        self.limits = limits
        self._read_entry = read_entry
        self._snapshots: LRU[str, Snapshot] = LRU(
            limits.cache_dirs, limits.cache_entries, lambda s: len(s.entries) + 1
        )
        self._pages: LRU[tuple[object, ...], bytes] = LRU(_MAX_PAGES, limits.cache_bytes, len)
        self._reads: SingleFlight[Snapshot] = SingleFlight()
        self._sorts: SingleFlight[Sequence[int]] = SingleFlight()
        self._renders: SingleFlight[bytes] = SingleFlight()
        self._work = trio.Semaphore(limits.concurrent_reads)
        #: How many times a directory was read (for tests and curiosity).
        self.reads = 0

    # -------------------------------------------------------------- reading

    async def snapshot(self, path: str, st: os.stat_result) -> Snapshot:
        """What directory *path* (whose ``stat`` is *st*) holds: a kept read
        while it is fresh, else a new one.

        Raises:
            OSError: the directory could not be read, or an entry's
                ``read_entry`` raised it.
        """
        key = dir_key(st)
        kept = self._snapshots.get(path)
        if kept is not None and kept.fresh(key, time.monotonic(), self.limits.max_age):
            return kept
        return await self._reads.run((path, key), lambda: self._read(path, st))

    async def _read(self, path: str, st: os.stat_result) -> Snapshot:
        async with self._work:
            self.reads += 1
            slicer = Slicer(self.limits.slice)
            started = time.time_ns()
            # A name added in the same clock tick as this read would leave the
            # key as it is. (A modification time set back with os.utime is not
            # racy: the later change sets it, and the change time, anew.)
            racy = st.st_mtime_ns >= started - RACY_NS
            builder = SnapshotBuilder(dir_key(st), int(st.st_mtime), time.monotonic(), racy)
            truncated = False
            with os.scandir(path) as names:
                for n, e in enumerate(names):
                    if n >= self.limits.max_entries:
                        truncated = True
                        break
                    if n % _STRIDE == 0 and slicer.due():
                        await slicer.pause()
                    entry = self._read_entry(e)
                    if entry is not None:
                        builder.add(entry)
            snap = builder.snapshot(truncated)
            self._snapshots.put(path, snap)
            return snap

    # -------------------------------------------------------------- sorting

    async def order(self, snap: Snapshot, key: SortKey, order: SortOrder) -> Sequence[int]:
        """The positions in ``snap.entries`` in this order (see
        :func:`mhd2._static.listing.sort_entries`), worked out once."""
        found = snap.orders.get((key, order))
        if found is not None:
            return found
        if order == "desc":
            ascending = await self.order(snap, key, "asc")
            descending = snap.descending(ascending)  # two reversed slices: C speed
            snap.orders[(key, "desc")] = descending
            return descending
        return await self._sorts.run((snap.serial, key), lambda: self._sort(snap, key))

    async def _sort(self, snap: Snapshot, key: SortKey) -> Sequence[int]:
        async with self._work:
            slicer = Slicer(self.limits.slice)
            keyed = []
            for i, e in enumerate(snap.entries):
                if i % _STRIDE == 0 and slicer.due():
                    await slicer.pause()
                keyed.append((listing.sort_key(e, key), i))
            runs = []
            for start in range(0, len(keyed), _RUN):
                if slicer.due():
                    await slicer.pause()
                runs.append(sorted(keyed[start : start + _RUN]))
            ordered: list[int] = []
            for n, (_key, i) in enumerate(heapq.merge(*runs)):
                if n % _STRIDE == 0 and slicer.due():
                    await slicer.pause()
                ordered.append(i)
            snap.orders[(key, "asc")] = ordered
            return ordered

    # -------------------------------------------------------------- pages

    def page(self, snap: Snapshot, location: str, query: listing.Query) -> Page | None:
        """Page ``query.page`` of *snap*'s listing, ``None`` if it has no such page."""
        return Page.of(location, query, len(snap.entries), self.limits.page_size, snap.truncated)

    def etag(self, snap: Snapshot, page: Page, as_json: bool) -> str:
        """The entity tag of *page* of *snap*'s listing, in HTML or JSON."""
        q = page.query
        variant = (
            f"{'json' if as_json else 'html'}:{q.key}:{q.order}:{q.page}:"
            f"{self.limits.page_size}:{page.location}"
        )
        return snap.etag(variant)

    async def body(self, snap: Snapshot, page: Page, as_json: bool) -> bytes:
        """The body of *page* of *snap*'s listing, in HTML or JSON (kept)."""
        key = (snap.serial, page.location, as_json, page.query)
        kept = self._pages.get(key)
        if kept is not None:
            return kept
        return await self._renders.run(key, lambda: self._render(snap, page, as_json, key))

    async def _render(
        self, snap: Snapshot, page: Page, as_json: bool, key: tuple[object, ...]
    ) -> bytes:
        order = await self.order(snap, page.query.key, page.query.order)
        slicer = Slicer(self.limits.slice)
        entries = snap.entries
        shown = order[page.first : page.first + page.count]
        parts = [listing.json_head(page) if as_json else listing.html_head(page)]
        for n, i in enumerate(shown):
            if n % _STRIDE == 0 and slicer.due():
                await slicer.pause()
            entry = Entry(*entries[i])
            if as_json:
                parts.append(listing.json_entry(entry, n == 0))
            else:
                parts.append(listing.html_row(entry))
        parts.append(listing.json_tail(page) if as_json else listing.html_tail(page))
        body = "".join(parts).encode("utf-8")
        self._pages.put(key, body)
        return body
