"""Large directory listings (issue 19, item 10), over real connections.

A listing of a 50,000-entry directory used to be built in one step of the
request callback: ~1 s per request with the whole daemon stopped, so that a
bystander's small file waited seconds while three clients looped on the
listing. Now the listing is built in slices with checkpoints, cached by the
directory's validator, and paginated.
"""

from __future__ import annotations

import gc
import json
import os
import re
import statistics
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import trio
import trio.testing
from _harness import daemon_thread
from hypothesis import given, settings
from hypothesis import strategies as st
from rawhttp import connect, fetch
from test_static import MTIME, EventLog, Server, get
from test_static_features import running

import mhd2
from mhd2._static import listing, pages
from mhd2._static.pages import Listings
from mhd2._static.slices import SingleFlight
from mhd2._static.snapshot import LRU, SnapshotBuilder
from mhd2.static import ListingLimits, StaticFiles

BIG = 50_000
SMALL = b"small file\n"


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``root/big/`` with 50,000 empty files, and ``root/small.txt``."""
    root = tmp_path_factory.mktemp("bigtree")
    (root / "small.txt").write_bytes(SMALL)
    big = root / "big"
    big.mkdir()
    for i in range(BIG):
        os.close(os.open(big / f"entry-{i:05d}.txt", os.O_CREAT | os.O_WRONLY, 0o644))
    return root


def request(target: str, *headers: str, method: str = "GET") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: t", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_big_listing_does_not_stall_bystanders(big_tree: Path) -> None:
    """Three clients loop on the listing of 50,000 entries (varying the sort,
    the page and the format, so that not every answer is a cache hit, and
    mostly with HEAD: all of the server's work, little transfer); a
    bystander's p50 for a small file stays under 100 ms.

    The daemon runs in a thread of its own, so that the clients measure it
    from outside: a daemon that blocks its loop cannot also hold up the
    clock of the bystander that measures it.
    """
    files = StaticFiles(big_tree)
    queries = [
        ("/big/", ()),
        ("/big/?sort=size&order=desc", ()),
        ("/big/?sort=date&page=2", ()),
        ("/big/?sort=name&order=desc&page=3", ("Accept: application/json",)),
        ("/big/?sort=date&order=desc", ("Accept: application/json",)),
    ]
    started = [trio.Event() for _ in range(3)]
    stop = trio.Event()
    listings = 0
    latencies: list[float] = []

    async def looper(port: int, i: int) -> None:
        nonlocal listings
        async with connect(port) as client:
            for n in range(10_000):  # bounded; ends when the bystander is done
                if stop.is_set():
                    return
                target, headers = queries[(i + n) % len(queries)]
                method = "GET" if n % 4 == 3 else "HEAD"
                await client.send(request(target, *headers, method=method))
                started[i].set()
                answer = await client.response(method)
                assert answer.head.status == 200, answer.head.raw
                assert method == "HEAD" or b"entry-" in answer.body
                listings += 1

    async def bystander(port: int) -> None:
        for event in started:
            await event.wait()
        for _ in range(2000):  # at least 20 samples, while 6 listings are served
            if len(latencies) >= 20 and listings >= 6:
                break
            t0 = time.perf_counter()
            with trio.move_on_after(1.0):  # a latency of 1 s or more counts as 1 s
                answer = await fetch(port, "/small.txt")
                assert answer.head.status == 200 and answer.body == SMALL
            latencies.append(time.perf_counter() - t0)
        stop.set()

    async def clients(port: int) -> None:
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                for i in range(3):
                    nursery.start_soon(looper, port, i)
                nursery.start_soon(bystander, port)

    with daemon_thread(files.handle, name="mhd2-listing-daemon", host="127.0.0.1") as harness:
        trio.run(clients, harness.port)
    assert listings >= 6
    p50 = statistics.median(latencies)
    assert p50 < 0.1, f"bystander p50 {p50 * 1000:.0f} ms; latencies {latencies}"


class StepTimer(trio.abc.Instrument):
    """The longest single step of any task, in CPU time of the loop's thread
    (time the OS gave to other processes does not count), less the time the
    garbage collector took within it (the interpreter's pauses, not the
    listing's: the rows a listing keeps are not even tracked by it, see
    :func:`test_kept_rows_are_not_tracked_by_the_garbage_collector`)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._start: float | None = None  # the step that adds the instrument has none
        self._gc = 0.0
        self._gc_start = 0.0

    def collecting(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = time.thread_time()
        else:
            self._gc += time.thread_time() - self._gc_start

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._start = time.thread_time()
        self._gc = 0.0

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if self._start is not None:
            step = time.thread_time() - self._start - self._gc
            self.longest = max(self.longest, step)


async def test_big_listing_work_comes_in_short_steps(big_tree: Path) -> None:
    """Every order, both formats, several pages, HEAD and GET: no step of any
    task on the loop takes more than 25 ms of CPU (the slice is 2 ms)."""
    files = StaticFiles(big_tree)
    timer = StepTimer()
    async with mhd2.Daemon(files.handle, host="127.0.0.1", port=0) as daemon:
        trio.lowlevel.add_instrument(timer)
        gc.callbacks.append(timer.collecting)
        try:
            async with connect(daemon.port) as client:
                for key in ("name", "size", "date"):
                    for order in ("asc", "desc"):
                        for accept in ("text/html", "application/json"):
                            for page in (1, 50):
                                target = f"/big/?sort={key}&order={order}&page={page}"
                                for method in ("HEAD", "GET"):
                                    await client.send(request(target, f"Accept: {accept}",
                                                              method=method))
                                    answer = await client.response(method)
                                    assert answer.head.status == 200
        finally:
            gc.callbacks.remove(timer.collecting)
            trio.lowlevel.remove_instrument(timer)
    assert timer.longest < 0.025, f"a step took {timer.longest * 1000:.0f} ms of CPU"


# ---------------------------------------------------------------- pages


def rows_of(page: str) -> list[str]:
    """The hrefs of a page's entry rows, without ``../``."""
    return [h for h in re.findall(r'<td><a href="([^"]+)">', page) if h != "../"]


async def test_big_listing_is_paginated(big_tree: Path) -> None:
    async for server in running(big_tree):
        first = await get(server, "/big/")
        assert first.status_code == 200
        assert rows_of(first.text) == [f"entry-{i:05d}.txt" for i in range(1000)]
        assert "Entries 1\u20131,000 of 50,000 \u00b7 page 1 of 50" in first.text
        assert '<a rel="next" href="?sort=name&amp;order=asc&amp;page=2">' in first.text
        assert 'rel="prev"' not in first.text
        assert first.headers["link"] == '<?sort=name&order=asc&page=2>; rel="next"'
        last = await get(server, "/big/?sort=name&order=desc&page=50")
        assert rows_of(last.text) == [f"entry-{i:05d}.txt" for i in range(999, -1, -1)]
        assert 'rel="next"' not in last.text and "page 50 of 50" in last.text
        assert last.headers["link"] == '<?sort=name&order=desc&page=49>; rel="prev"'
        for bad in ("0", "-1", "x", "1e3", "\u0661", "9" * 10, ""):
            assert rows_of((await get(server, f"/big/?page={bad}")).text) == rows_of(first.text)
        for missing in ("51", "999999999"):
            assert (await get(server, f"/big/?page={missing}")).status_code == 404
        as_json = await get(server, "/big/?page=2", Accept="application/json")
        doc = json.loads(as_json.content)
        assert (doc["page"], doc["pages"], doc["total"], doc["truncated"]) == (2, 50, BIG, False)
        assert doc["previous"] == "?sort=name&order=asc&page=1"
        assert doc["next"] == "?sort=name&order=asc&page=3"
        assert [e["name"] for e in doc["entries"]] == [
            f"entry-{i:05d}.txt" for i in range(1000, 2000)
        ]


async def test_every_entry_is_on_exactly_one_page(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for i in range(23):
        (root / f"f{i:02d}").write_bytes(b"x" * (i * 37 % 11))
        os.utime(root / f"f{i:02d}", (MTIME + i * 7 % 5, MTIME + i * 7 % 5))
    for i in range(4):
        (root / f"d{i}").mkdir()
    entries = [
        listing.Entry(p.name, p.is_dir(), None if p.is_dir() else p.stat().st_size,
                      int(p.stat().st_mtime))
        for p in root.iterdir()
    ]
    async for server in running(root, listing_limits=ListingLimits(page_size=5)):
        for key in ("name", "size", "date"):
            for order in ("asc", "desc"):
                seen: list[str] = []
                for page in range(1, 7):
                    doc = json.loads((await get(
                        server, f"/?sort={key}&order={order}&page={page}",
                        Accept="application/json")).content)
                    assert doc["pages"] == 6 and doc["total"] == 27
                    seen += [e["name"] for e in doc["entries"]]
                expected = listing.sort_entries(entries, key, order)
                assert seen == [e.name for e in expected], (key, order)


async def test_a_directory_with_too_many_names_is_listed_in_part(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for i in range(30):
        (root / f"f{i:02d}").write_bytes(b"")
    (root / ".hidden").write_bytes(b"")
    async for server in running(root, listing_limits=ListingLimits(max_entries=12)):
        page = (await get(server, "/")).text
        assert len(rows_of(page)) <= 12  # a dot-name read counts, though not shown
        assert "This directory has more entries: only the first" in page
        doc = json.loads((await get(server, "/", Accept="application/json")).content)
        assert doc["truncated"] is True and doc["total"] == len(doc["entries"]) <= 12
    async for server in running(root, listing_limits=ListingLimits(max_entries=31)):
        page = (await get(server, "/")).text
        assert len(rows_of(page)) == 30 and "more entries" not in page


# ---------------------------------------------------------------- the cache


def old_dir(path: Path) -> None:
    """Set *path*'s modification time an hour back, as if it had not
    changed for a while (a fresh directory's read is racy: never kept)."""
    old = time.time() - 3600
    os.utime(path, (old, old))


async def test_the_listing_is_kept_while_the_directory_does_not_change(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.txt").write_bytes(b"a")
    old_dir(root / "sub")
    files = StaticFiles(root, listing_limits=ListingLimits(max_age=3600))
    async with mhd2.Daemon(files.handle, host="127.0.0.1", port=0) as daemon:
        server = Server(daemon.port, root, EventLog())
        first = await get(server, "/sub/")
        for query in ("", "?sort=size", "?sort=date&order=desc"):
            assert "a.txt" in (await get(server, "/sub/" + query)).text
        assert files.listings.reads == 1
        assert (await get(server, "/sub/")).headers["etag"] == first.headers["etag"]

        # a name added, renamed, removed: the directory's times change
        (root / "sub" / "b.txt").write_bytes(b"bb")
        added = await get(server, "/sub/", **{"If-None-Match": first.headers["etag"]})
        assert added.status_code == 200 and rows_of(added.text) == ["a.txt", "b.txt"]
        os.rename(root / "sub" / "a.txt", root / "sub" / "c.txt")
        assert rows_of((await get(server, "/sub/")).text) == ["b.txt", "c.txt"]
        (root / "sub" / "b.txt").unlink()
        gone = await get(server, "/sub/", Accept="application/json")
        assert [e["name"] for e in json.loads(gone.content)["entries"]] == ["c.txt"]
        assert files.listings.reads == 4

        # the same directory replaced by another (another inode)
        os.rename(root / "sub", root / "old")
        (root / "sub").mkdir()
        (root / "sub" / "new.txt").write_bytes(b"")
        assert rows_of((await get(server, "/sub/")).text) == ["new.txt"]
        (root / "sub" / "new.txt").unlink()
        os.rmdir(root / "sub")
        assert (await get(server, "/sub/")).status_code == 404


async def test_a_file_rewritten_in_place_shows_within_max_age(tmp_path: Path) -> None:
    """Rewriting a file does not change its directory: with ``max_age=0``
    every request reads the directory again, so the new size shows at once."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "f.txt").write_bytes(b"1")
    old_dir(root)
    async for server in running(root, listing_limits=ListingLimits(max_age=0)):
        before = await get(server, "/")
        assert 'title="1 bytes"' in before.text
        (root / "f.txt").write_bytes(b"12345")
        old_dir(root)
        after = await get(server, "/", **{"If-None-Match": before.headers["etag"]})
        assert after.status_code == 200 and 'title="5 bytes"' in after.text


async def test_concurrent_requests_share_one_read(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for i in range(3000):
        os.close(os.open(root / f"n{i}", os.O_CREAT | os.O_WRONLY, 0o644))
    old_dir(root)
    files = StaticFiles(root)
    async with mhd2.Daemon(files.handle, host="127.0.0.1", port=0) as daemon:
        tags: list[str] = []

        async def one() -> None:
            answer = await fetch(daemon.port, "/?sort=size")
            assert answer.head.status == 200
            tags.append(answer.head.get("etag") or "")

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for _ in range(10):
                    nursery.start_soon(one)
    assert len(tags) == 10 and len(set(tags)) == 1
    assert files.listings.reads == 1  # those that came during the read waited for it


# ---------------------------------------------------------------- HEAD, conditionals


async def test_head_and_conditionals_on_pages(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for i in range(7):
        (root / f"f{i}").write_bytes(b"x" * i)
        os.utime(root / f"f{i}", (MTIME + i, MTIME + i))
    async for server in running(root, listing_limits=ListingLimits(page_size=3)):
        tags = set()
        for target in ("/", "/?page=2", "/?page=3", "/?sort=size", "/?order=desc"):
            for accept in ("text/html", "application/json"):
                got = await get(server, target, Accept=accept)
                head = await get(server, target, "HEAD", Accept=accept)
                assert got.status_code == head.status_code == 200
                assert head.content == b""
                for name in ("etag", "last-modified", "content-length", "content-type", "link"):
                    assert head.headers.get(name) == got.headers.get(name), name
                assert int(got.headers["content-length"]) == len(got.content)
                etag = got.headers["etag"]
                tags.add(etag)
                again = await get(server, target, Accept=accept, **{"If-None-Match": etag})
                assert again.status_code == 304 and again.content == b""
                assert again.headers["etag"] == etag
                since = await get(server, target, Accept=accept,
                                  **{"If-Modified-Since": got.headers["last-modified"]})
                assert since.status_code == 304
                assert (await get(server, target, Accept=accept,
                                  **{"If-Match": '"other"'})).status_code == 412
        assert len(tags) == 10  # every page, order and format has a tag of its own
        assert (await get(server, "/", **{"If-None-Match": "*"})).status_code == 304


# ---------------------------------------------------------------- hostile names

HOSTILE = [
    "<img src=x onerror=alert(1)>.txt",
    "a\"b'c.txt",
    "&amp;lt;.txt",
    "%2e%2e%2fup.txt",
    "?page=2&sort=size.txt",
    "#frag.txt",
    "line\nbreak.txt",
    "tab\there.txt",
    "<table><td><script>alert(1)<script>",
    "\u202etxt.exe",
]


async def test_hostile_names_stay_escaped_on_every_page(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for name in HOSTILE:
        (root / name).write_bytes(b"h")
    undecodable = os.fsdecode(b"caf\xe9<b>.txt")
    (root / undecodable).write_bytes(b"u")
    names = [*HOSTILE, undecodable]
    async for server in running(root, listing_limits=ListingLimits(page_size=4)):
        hrefs: list[str] = []
        for page in (1, 2, 3):
            text = (await get(server, f"/?page={page}")).text
            assert "<img" not in text and "<script>" not in text
            assert "onerror=alert(1)>" not in text and "<table><td>" not in text
            for href in rows_of(text):
                assert re.fullmatch(r"[A-Za-z0-9%._~-]+", href), href  # all percent-encoded
                hrefs.append(href)
            for link in re.findall(r'rel="(?:next|prev)" href="([^"]+)"', text):
                assert re.fullmatch(r"\?sort=name&amp;order=asc&amp;page=[0-9]+", link)
        assert sorted(hrefs) == sorted(quote(os.fsencode(n), safe="") for n in names)
        for href in hrefs:  # and each link serves its file
            assert (await get(server, "/" + href)).content in (b"h", b"u")
        seen = []
        for page in (1, 2, 3):
            doc = json.loads((await get(server, f"/?page={page}", Accept="application/json")).content)
            seen += [(e["name"], e["href"]) for e in doc["entries"]]
        assert sorted(n for n, _ in seen) == sorted(
            os.fsencode(n).decode("utf-8", "replace") for n in names
        )
        # the query is never copied into the page: only the parsed values are
        text = (await get(server, '/?sort="><script>&order=<x>&page=1<b>')).text
        assert "<script>" not in text and "<x>" not in text and "<b>" not in text


# ---------------------------------------------------------------- units


@pytest.mark.parametrize(
    "options",
    [
        {"page_size": 0}, {"page_size": 1.5}, {"page_size": True}, {"max_entries": -1},
        {"max_age": -1}, {"max_age": float("inf")}, {"max_age": float("nan")},
        {"slice": 0}, {"slice": "1"}, {"concurrent_reads": 0}, {"cache_bytes": None},
    ],
)
def test_bad_listing_limits_are_usage_errors(options: dict[str, object]) -> None:
    with pytest.raises(mhd2.UsageError, match="ListingLimits"):
        ListingLimits(**options)  # type: ignore[arg-type]


def test_listing_limits_must_be_listing_limits(tmp_path: Path) -> None:
    with pytest.raises(mhd2.UsageError, match="listing_limits"):
        StaticFiles(tmp_path, listing_limits={"page_size": 10})  # type: ignore[arg-type]


def test_lru_keeps_both_bounds() -> None:
    lru: LRU[str, bytes] = LRU(3, 10, len)
    for key, value in [("a", b"1234"), ("b", b"1234"), ("c", b"12")]:
        lru.put(key, value)
    assert lru.get("a") == b"1234" and lru.total == 10
    lru.put("d", b"1")  # over the cost: "b" (least recently used) goes
    assert lru.get("b") is None and len(lru) == 3 and lru.total == 7
    lru.put("e", b"")  # over the count: "c" goes
    assert lru.get("c") is None and len(lru) == 3
    lru.put("big", b"x" * 11)  # more than the whole budget: not kept, nothing dropped
    assert lru.get("big") is None and len(lru) == 3
    lru.put("a", b"1")  # replaced: its old cost is returned
    assert lru.total == 2 and lru.pop("a") == b"1" and lru.total == 1


rows = st.lists(
    st.tuples(
        st.text(alphabet="ab\u00e9.", min_size=1, max_size=4), st.booleans(),
        st.integers(0, 5), st.integers(0, 5),
    ),
    max_size=60, unique_by=lambda t: t[0],
)


@settings(max_examples=60, deadline=None)
@given(rows, st.sampled_from(["name", "size", "date"]), st.sampled_from(["asc", "desc"]))
def test_sliced_sort_is_sort_entries(
    found: list[tuple[str, bool, int, int]], key: listing.SortKey, order: listing.SortOrder
) -> None:
    """The runs-and-merge sort in slices gives the order of the one-step sort
    (tiny runs and slices, so that every path of it is taken)."""
    entries = [listing.Entry(n, d, None if d else size, mtime) for n, d, size, mtime in found]
    builder = SnapshotBuilder((0, 0, 0, 0, 0), 0, 0.0, False)
    for e in entries:
        builder.add(e)
    snap = builder.snapshot(False)
    listings = Listings(ListingLimits(slice=1e-9), lambda e: None)

    async def main() -> list[listing.Entry]:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(pages, "_RUN", 3)
            order_ = await listings.order(snap, key, order)
        return [listing.Entry(*snap.entries[i]) for i in order_]

    assert trio.run(main) == listing.sort_entries(entries, key, order)


def test_snapshot_freshness() -> None:
    key = (1, 2, 3, 4, 5)
    snap = SnapshotBuilder(key, 0, 100.0, racy=False).snapshot(False)
    assert snap.fresh(key, 101.0, 2.0)
    assert not snap.fresh(key, 102.0, 2.0)  # too old
    assert not snap.fresh((1, 2, 4, 4, 5), 100.5, 2.0)  # the directory changed
    assert not snap.fresh(key, 100.0, 0.0)  # max_age 0: never kept
    racy = SnapshotBuilder(key, 0, 100.0, racy=True).snapshot(False)
    assert not racy.fresh(key, 100.0, 2.0)


async def test_single_flight_shares_one_run_and_survives_a_cancelled_runner() -> None:
    flights: SingleFlight[int] = SingleFlight()
    runs = 0
    release = trio.Event()
    results: list[int] = []
    leader = trio.CancelScope()

    async def work() -> int:
        nonlocal runs
        runs += 1
        await release.wait()
        return runs

    async def ask() -> None:
        results.append(await flights.run("k", work))

    async def ask_and_go_away() -> None:
        with leader:
            await ask()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask_and_go_away)  # runs the work
            await trio.testing.wait_all_tasks_blocked()
            for _ in range(3):
                nursery.start_soon(ask)  # wait for it
            await trio.testing.wait_all_tasks_blocked()
            assert runs == 1 and len(flights) == 1
            leader.cancel()  # its client went away: one waiter runs the work again
            await trio.testing.wait_all_tasks_blocked()
            assert runs == 2 and len(flights) == 1
            release.set()
    assert results == [2, 2, 2] and len(flights) == 0


async def test_single_flight_errors_reach_the_waiters() -> None:
    flights: SingleFlight[int] = SingleFlight()
    release = trio.Event()
    errors: list[BaseException] = []

    async def work() -> int:
        await release.wait()
        raise PermissionError(13, "denied")

    async def ask() -> None:
        try:
            await flights.run("k", work)
        except OSError as exc:
            errors.append(exc)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(ask)
            await trio.testing.wait_all_tasks_blocked()
            release.set()
    assert len(errors) == 3 and all(isinstance(e, PermissionError) for e in errors)
    assert len(flights) == 0


async def test_kept_rows_are_not_tracked_by_the_garbage_collector(tmp_path: Path) -> None:
    """A kept listing of many entries must not add them to every whole-heap
    collection (which stops the loop)."""
    for i in range(50):
        (tmp_path / f"f{i}").write_bytes(b"")
    files = StaticFiles(tmp_path)
    snap = await files.listings.snapshot(str(tmp_path), os.stat(tmp_path))
    await files.listings.order(snap, "size", "desc")
    gc.collect()
    assert len(snap.entries) == 50
    assert not any(gc.is_tracked(row) for row in snap.entries)
