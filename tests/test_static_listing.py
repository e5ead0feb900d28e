"""Large directory listings (issue 19, item 10), over real connections.

A listing of a 50,000-entry directory used to be built in one step of the
request callback: ~1 s per request with the whole daemon stopped, so that a
bystander's small file waited seconds while three clients looped on the
listing. Now the listing is built in slices with checkpoints, cached by the
directory's validator, and paginated.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytest
import trio
from _harness import daemon_thread
from rawhttp import connect, fetch

from mhd2.static import StaticFiles

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
