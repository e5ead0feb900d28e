"""Hostile input against mhd2.static.StaticFiles (issue 9, items 14-16), over real sockets."""

from __future__ import annotations

import email.utils
import errno
import os
import resource
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from test_static import HELLO, SECRET, EventLog, Server, get, raw, status_of

import mhd2
from mhd2.static import StaticFiles

DATA = bytes(range(256)) * 4


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(SECRET)
    root = tmp_path / "root"
    root.mkdir()
    (root / "hello.txt").write_bytes(HELLO)
    (root / "data.bin").write_bytes(DATA)
    (root / ".env").write_bytes(b"PASSWORD=hunter2\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_bytes(b"[core]\n")
    (root / "sub").mkdir()
    (root / "sub" / ".hidden").write_bytes(b"hidden")
    (root / "sub" / "seen.txt").write_bytes(b"seen")
    (root / "list").mkdir()
    (root / "list" / "visible.txt").write_bytes(b"v")
    (root / "list" / ".secret-name").write_bytes(b"s")
    (root / "list" / "link_out").symlink_to(outside / "secret")
    (root / "list" / "dirlink_out").symlink_to(outside)
    (root / "list" / "link_in").symlink_to(root / "hello.txt")
    (root / "list" / "to_git").symlink_to(root / ".git")
    (root / "gitlink").symlink_to(root / ".git")
    return root


@pytest.fixture
async def server(tree: Path) -> AsyncIterator[Server]:
    log = EventLog()
    files = StaticFiles(tree, access_log=log)
    async with mhd2.Daemon(
        files.handle, host="127.0.0.1", port=0, notify_request_ended=files.request_ended
    ) as daemon:
        yield Server(daemon.port, tree, log)


# ------------------------------------------------ item 14: no header makes a parser raise

HUGE = "9" * 5000


@pytest.mark.parametrize(
    "spec",
    [
        f"bytes=0-{HUGE}",  # int() of more than 4,300 digits raised ValueError -> 500
        f"bytes={HUGE}-",
        f"bytes=-{HUGE}",
        f"bytes=0-1,{HUGE}-",
        "bytes=" + "0" * 5000 + "1-2",
    ],
)
async def test_huge_range_numbers_are_ignored(server: Server, spec: str) -> None:
    """RFC 9110 §14.2: "A server MAY ignore the Range header field" — a number
    longer than any file size could be is not parsed; the whole file is sent."""
    r = await get(server, "/data.bin", Range=spec)
    assert r.status_code == 200
    assert r.content == DATA
    assert "content-range" not in r.headers


async def test_too_many_ranges_send_the_whole_file(server: Server) -> None:
    spec = "bytes=" + ",".join(f"{i}-{i}" for i in range(200))
    r = await get(server, "/data.bin", Range=spec)
    assert r.status_code == 200
    assert r.content == DATA


async def test_overlapping_ranges_bigger_than_the_file_send_it_once(server: Server) -> None:
    r = await get(server, "/data.bin", Range="bytes=0-,0-,0-")
    assert r.status_code == 200
    assert r.content == DATA


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("If-Modified-Since", "Mon, 01 Jan 99999999999 00:00:00 GMT"),
        ("If-Unmodified-Since", "x" * 5000),
        ("If-Range", "Tue, 31 Feb 2024 25:61:61 GMT"),
        ("If-None-Match", 'W/"' + "a" * 5000),
        ("Accept-Encoding", "gzip;q=" + "9" * 5000 + ", br;q=nan"),
    ],
)
async def test_odd_conditionals_never_crash(server: Server, name: str, value: str) -> None:
    r = await get(server, "/data.bin", **{name: value, "Range": "bytes=0-3"})
    assert r.status_code in (200, 206)
    assert DATA.startswith(r.content)


# ------------------------------------------------ item 15: out of descriptors is 503


async def _read_until(stream: trio.SocketStream, done: bytes) -> bytes:
    data = b""
    with trio.fail_after(10):
        while not data.endswith(done):
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            data += chunk
    return data


async def test_out_of_descriptors_is_503_not_404(server: Server) -> None:
    """The connection exists before the process runs out of descriptors; the
    file (and a directory to list) cannot be opened then: 503 + Retry-After."""
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        await stream.send_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(await _read_until(stream, HELLO)) == 200
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
        hogs: list[int] = []
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, highest + 64), hard))
            while True:
                try:
                    hogs.append(os.open(os.devnull, os.O_RDONLY))
                except OSError as exc:
                    assert exc.errno == errno.EMFILE
                    break
            await stream.send_all(
                b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /list/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            answer = await _read_until(stream, b"\x00never")
        finally:
            for fd in hogs:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert answer.count(b"HTTP/1.1 503 ") == 2, answer
    assert answer.lower().count(b"\r\nretry-after: 1\r\n") == 2
    assert b"404" not in answer
    # and the server is fine afterwards
    assert (await get(server, "/hello.txt")).content == HELLO


# ------------------------------------------------ item 16: dot-files and links out


@pytest.mark.parametrize(
    "target",
    [
        b"/.env",
        b"/.git/config",
        b"/.git/",
        b"/.git",
        b"/sub/.hidden",
        b"/%2eenv",
        b"/%2Egit/config",
        b"/sub/./.hidden",
        b"/gitlink/config",  # a link to .git inside the tree does not open it
        b"/list/to_git/config",
        b"http://x/.env",
    ],
)
async def test_dotfiles_are_404_by_default(server: Server, target: bytes) -> None:
    answer = await raw(server.port, target)
    assert status_of(answer) == 404
    assert b"hunter2" not in answer and b"[core]" not in answer and b"hidden" not in answer


async def test_dot_names_and_links_out_are_not_listed(server: Server) -> None:
    page = (await get(server, "/")).text
    assert ".env" not in page and ".git" not in page
    listing = (await get(server, "/list/")).text
    assert "visible.txt" in listing and "link_in" in listing
    for hidden in (".secret-name", "link_out", "dirlink_out", "to_git"):
        assert hidden not in listing, hidden
    as_json = await get(server, "/list/", Accept="application/json")
    names = {e["name"] for e in as_json.json()["entries"]}
    assert names == {"visible.txt", "link_in"}
    sub = (await get(server, "/sub/")).text
    assert "seen.txt" in sub and ".hidden" not in sub


async def test_links_out_stay_404(server: Server) -> None:
    for target in (b"/list/link_out", b"/list/dirlink_out/secret"):
        answer = await raw(server.port, target)
        assert status_of(answer) == 404
        assert SECRET not in answer


async def test_dotfiles_allow(tree: Path) -> None:
    files = StaticFiles(tree, dotfiles="allow")
    async with mhd2.Daemon(files.handle, host="127.0.0.1", port=0) as daemon:
        server = Server(daemon.port, tree, EventLog())
        assert (await get(server, "/.env")).content == b"PASSWORD=hunter2\n"
        assert (await get(server, "/.git/config")).content == b"[core]\n"
        assert (await get(server, "/gitlink/config")).content == b"[core]\n"
        listing = (await get(server, "/list/")).text
        assert ".secret-name" in listing and "to_git" in listing
        assert "link_out" not in listing  # out of the tree: never
        assert status_of(await raw(daemon.port, b"/list/link_out")) == 404


def test_dotfiles_option_is_checked(tree: Path) -> None:
    with pytest.raises(mhd2.UsageError):
        StaticFiles(tree, dotfiles="yes")  # type: ignore[arg-type]


# ------------------------------------------------ odd modification times


@pytest.mark.parametrize("mtime", [2**40, -(2**40), "future"])
async def test_odd_modification_times(server: Server, mtime: int | str) -> None:
    """A file dated in year 36812 made formatdate() raise (500). RFC 9110
    §8.8.2.1: Last-Modified is never later than the response's Date."""
    path = server.root / "list" / "odd.txt"
    path.write_bytes(b"odd")
    when = int(time.time()) + 86_400 if mtime == "future" else int(mtime)
    try:
        os.utime(path, (when, when))
    except (OSError, OverflowError):
        pytest.skip(f"this file system cannot store mtime {when}")
    r = await get(server, "/list/odd.txt")
    assert (r.status_code, r.content) == (200, b"odd")
    lm = email.utils.parsedate_to_datetime(r.headers["last-modified"])
    assert lm <= email.utils.parsedate_to_datetime(r.headers["date"])
    if when < time.time():  # a future file's Last-Modified is "now", which moves on
        ims = r.headers["last-modified"]
        assert (await get(server, "/list/odd.txt", **{"If-Modified-Since": ims})).status_code == 304
    listing = await get(server, "/list/")
    assert listing.status_code == 200 and "odd.txt" in listing.text
