"""A directory's entries as read once, and bounded caches of them (sans-IO).

A :class:`Snapshot` is what one read of a directory found: its entries, a
digest of them (the base of every listing page's entity tag), the newest
modification time (``Last-Modified``) and the directory's own identity and
times when it was read (:func:`dir_key`). It stays valid while the directory
keeps that key -- adding, removing or renaming a name changes the
directory's modification time -- and for at most a set age, since a file
that is rewritten in place changes its own size and time but not its
directory's. Sort orders are worked out once per snapshot and kept with it.

:class:`LRU` is the small least-recently-used map, bounded by a count and by
a total cost, that keeps snapshots and rendered pages.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from .listing import Row, SortKey, SortOrder

__all__ = ["LRU", "RACY_NS", "DirKey", "Snapshot", "SnapshotBuilder", "dir_key"]

#: A directory whose modification time is this close to the start of its
#: read, or later, may change again without its times showing
#: it: many file systems keep times in coarse ticks (2 s on FAT). Such a
#: snapshot is "racy": it serves the requests that waited for it, and the
#: next request reads the directory again.
RACY_NS: Final = 2_000_000_000

#: ``(st_dev, st_ino, st_mtime_ns, st_ctime_ns, st_size)`` of a directory.
DirKey = tuple[int, int, int, int, int]

_serials = itertools.count(1)


def dir_key(st: os.stat_result) -> DirKey:
    """The identity and times of a directory: when any of them changes, its
    list of names may have changed."""
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


@dataclass(eq=False)
class Snapshot:
    """The entries of one directory, as one read found them.

    Attributes:
        key: the directory's :func:`dir_key` before the read.
        entries: the listed entries, as plain tuples (``Entry(*row)`` makes
            one an :class:`~mhd2._static.listing.Entry`), in the order the
            directory gave them.
        truncated: the directory had more entries than were read.
        digest: a hex digest of the key and of every entry's name, type, size
            and time.
        newest: the newest modification time of the directory and its
            entries, in POSIX seconds.
        read_at: :func:`time.monotonic` when the read started.
        racy: the directory's times were too close to the read's start to
            tell a later change (see :data:`RACY_NS`).
        dirs: how many entries are directories.
        serial: a number no other snapshot of this process has.
        orders: positions in *entries*, sorted, by ``(key, order)``; filled
            in as they are asked for.
    """

    key: DirKey
    entries: list[Row]
    truncated: bool
    digest: str
    newest: int
    read_at: float
    racy: bool
    dirs: int
    serial: int = field(default_factory=lambda: next(_serials))
    orders: dict[tuple[SortKey, SortOrder], Sequence[int]] = field(default_factory=dict)

    def fresh(self, key: DirKey, now: float, max_age: float) -> bool:
        """Whether this snapshot may answer for a directory whose key is now
        *key*, at :func:`time.monotonic` *now*."""
        return not self.racy and key == self.key and now - self.read_at < max_age

    def etag(self, variant: str) -> str:
        """The entity tag of one page of this listing; *variant* names the
        page (format, order, page number and size)."""
        digest = hashlib.blake2b(digest_size=12)
        digest.update(f"{self.digest}\0{variant}".encode())
        return f'"d-{digest.hexdigest()}"'

    def descending(self, ascending: Sequence[int]) -> list[int]:
        """The descending order from the ascending one: each group
        (directories first, then files) reversed (see
        :func:`mhd2._static.listing.sort_key`)."""
        return [*ascending[: self.dirs][::-1], *ascending[self.dirs :][::-1]]


class SnapshotBuilder:
    """Collects a directory's entries one at a time, then makes the
    :class:`Snapshot`.

    Args:
        key: the directory's :func:`dir_key`, taken before the read.
        mtime: the directory's modification time, in POSIX seconds.
        read_at: :func:`time.monotonic` when the read started.
        racy: see :attr:`Snapshot.racy`.
    """

    def __init__(self, key: DirKey, mtime: int, read_at: float, racy: bool) -> None:
        self._key = key
        self._read_at = read_at
        self._racy = racy
        self._digest = hashlib.blake2b(digest_size=16)
        self._digest.update(repr(key).encode())
        self._newest = mtime
        self._dirs = 0
        self.entries: list[Row] = []

    def add(self, e: Row) -> None:
        """Add one entry (in directory order; an ``Entry`` is kept as a plain tuple)."""
        name, is_dir, size, mtime = e
        self.entries.append((name, is_dir, size, mtime))
        self._digest.update(os.fsencode(name) + f"\0{is_dir}:{size}:{mtime}\0".encode())
        if mtime > self._newest:
            self._newest = mtime
        self._dirs += is_dir

    def snapshot(self, truncated: bool) -> Snapshot:
        """The snapshot of what was added; *truncated*: the directory had more."""
        return Snapshot(
            self._key, self.entries, truncated, self._digest.hexdigest(), self._newest,
            self._read_at, self._racy, self._dirs,
        )


K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A least-recently-used map of at most *max_items* values whose costs add
    up to at most *max_cost*.

    Args:
        max_items: the most values kept.
        max_cost: the most total cost kept; a value that costs more on its
            own is not kept at all.
        cost: the cost of a value (e.g. its entries, its bytes).
    """

    def __init__(self, max_items: int, max_cost: int, cost: Callable[[V], int]) -> None:
        self.max_items = max_items
        self.max_cost = max_cost
        self._cost = cost
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self.total = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K) -> V | None:
        """The value of *key* (now the most recently used), or ``None``."""
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: K, value: V) -> None:
        """Keep *value* under *key* (replacing what was there); then drop the
        least recently used values until both bounds hold."""
        self.pop(key)
        cost = self._cost(value)
        if cost > self.max_cost or self.max_items < 1:
            return
        self._items[key] = (value, cost)
        self.total += cost
        while len(self._items) > self.max_items or self.total > self.max_cost:
            _key, (_value, dropped) = self._items.popitem(last=False)
            self.total -= dropped

    def pop(self, key: K) -> V | None:
        """Drop *key*; its value, or ``None``."""
        item = self._items.pop(key, None)
        if item is None:
            return None
        self.total -= item[1]
        return item[0]
