"""mhd2.static.StaticFiles against a real daemon on 127.0.0.1."""

from __future__ import annotations

import email.utils
import io
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

import mhd2
from mhd2._accesslog import escape, format_line
from mhd2._static.conditionals import etags
from mhd2._static.ranges import parse_ranges
from mhd2.static import StaticFiles

SECRET = b"TOP-SECRET-f00dfeed-outside-the-root"
HELLO = b"Hello, world!\n"
DATA = bytes(range(256)) * 4  # 1024 bytes
MTIME = 1_700_000_000  # 2023-11-14T22:13:20Z


class EventLog(io.StringIO):
    """A log stream whose writes can be awaited (no sleeping in tests)."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = trio.Event()

    def write(self, s: str) -> int:
        n = super().write(s)
        self.changed.set()
        self.changed = trio.Event()
        return n

    async def wait_for(self, needle: str) -> str:
        with trio.fail_after(5):
            while True:
                for line in self.getvalue().splitlines():
                    if needle in line:
                        return line
                await self.changed.wait()


@dataclass
class Server:
    port: int
    root: Path
    log: EventLog

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(SECRET)
    (tmp_path / "secret").write_bytes(SECRET)
    root = tmp_path / "root"
    root.mkdir()
    (root / "hello.txt").write_bytes(HELLO)
    (root / "data.bin").write_bytes(DATA)
    (root / "empty.txt").write_bytes(b"")
    (root / "page.html").write_bytes(b"<p>page</p>")
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "archive.tar.gz").write_bytes(b"\x1f\x8b")
    (root / "noext").write_bytes(b"?")
    (root / "dir").mkdir()
    (root / "dir" / "index.html").write_bytes(b"<h1>index</h1>")
    listing = root / "list"
    listing.mkdir()
    (listing / "<script>.txt").write_bytes(b"x")
    (listing / "a b&c.txt").write_bytes(b"y")
    (listing / "sub").mkdir()
    (root / "a").mkdir()
    (root / "link_out").symlink_to(outside / "secret")
    (root / "dirlink_out").symlink_to(outside)
    (root / "link_in").symlink_to(root / "hello.txt")
    for p in root.rglob("*"):
        if not p.is_symlink():
            os.utime(p, (MTIME, MTIME))
    return root


@pytest.fixture
async def server(tree: Path) -> AsyncIterator[Server]:
    log = EventLog()
    files = StaticFiles(tree, access_log=log)
    async with mhd2.Daemon(
        files.handle, host="127.0.0.1", port=0, notify_request_ended=files.request_ended
    ) as daemon:
        yield Server(daemon.port, tree, log)


async def get(server: Server, path: str, method: str = "GET", **headers: str) -> httpx.Response:
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=server.url) as client:
            return await client.request(method, path, headers=headers)


async def raw(port: int, target: bytes, method: bytes = b"GET") -> bytes:
    """Send one request exactly as given; the whole answer, up to EOF."""
    request = method + b" " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(request)
            chunks = []
            while chunk := await stream.receive_some(65536):
                chunks.append(chunk)
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


# ---------------------------------------------------------------- plain GET / HEAD


async def test_get_file(server: Server) -> None:
    r = await get(server, "/hello.txt")
    assert r.status_code == 200
    assert r.content == HELLO
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.headers["content-length"] == str(len(HELLO))
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["etag"].startswith('"') and r.headers["etag"].endswith('"')
    assert r.headers["last-modified"] == email.utils.formatdate(MTIME, usegmt=True)


async def test_head_has_get_headers_and_no_body(server: Server) -> None:
    g = await get(server, "/data.bin")
    h = await get(server, "/data.bin", "HEAD")
    assert h.status_code == 200
    assert h.content == b""
    for name in ("content-length", "content-type", "etag", "last-modified", "accept-ranges"):
        assert h.headers[name] == g.headers[name], name
    assert h.headers["content-length"] == str(len(DATA))


async def test_head_over_raw_socket_sends_no_body(server: Server) -> None:
    answer = await raw(server.port, b"/hello.txt", b"HEAD")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert status_of(answer) == 200
    assert b"Content-Length: 14" in head or b"content-length: 14" in head.lower()
    assert body == b""


@pytest.mark.parametrize(
    ("path", "ctype"),
    [
        ("/page.html", "text/html; charset=utf-8"),
        ("/image.png", "image/png"),
        ("/noext", "application/octet-stream"),
        ("/data.bin", "application/octet-stream"),
        ("/archive.tar.gz", "application/gzip"),
    ],
)
async def test_mime_types(server: Server, path: str, ctype: str) -> None:
    r = await get(server, path)
    assert r.status_code == 200
    assert r.headers["content-type"] == ctype


async def test_empty_file(server: Server) -> None:
    r = await get(server, "/empty.txt")
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["content-length"] == "0"


async def test_symlink_inside_root_is_served(server: Server) -> None:
    r = await get(server, "/link_in")
    assert r.status_code == 200
    assert r.content == HELLO


async def test_missing_file_is_404(server: Server) -> None:
    r = await get(server, "/nope.txt")
    assert r.status_code == 404


async def test_query_string_is_ignored(server: Server) -> None:
    r = await get(server, "/hello.txt?x=1&y=../../secret")
    assert r.status_code == 200
    assert r.content == HELLO


async def test_percent_encoded_name(server: Server) -> None:
    r = await get(server, "/list/a%20b%26c.txt")
    assert r.status_code == 200
    assert r.content == b"y"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
async def test_other_methods_are_405(server: Server, method: str) -> None:
    r = await get(server, "/hello.txt", method)
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD"


# ---------------------------------------------------------------- conditional GET


async def test_if_none_match(server: Server) -> None:
    etag = (await get(server, "/hello.txt")).headers["etag"]
    for value in (etag, f'"zzz", {etag}', f"W/{etag}", "*", f'"a",W/{etag} , "b"'):
        r = await get(server, "/hello.txt", **{"If-None-Match": value})
        assert r.status_code == 304, value
        assert r.content == b""
        assert r.headers["etag"] == etag
    r = await get(server, "/hello.txt", **{"If-None-Match": '"other", W/"x"'})
    assert r.status_code == 200
    assert r.content == HELLO


async def test_if_none_match_on_head(server: Server) -> None:
    etag = (await get(server, "/hello.txt", "HEAD")).headers["etag"]
    r = await get(server, "/hello.txt", "HEAD", **{"If-None-Match": etag})
    assert r.status_code == 304


async def test_if_modified_since(server: Server) -> None:
    same = email.utils.formatdate(MTIME, usegmt=True)
    later = email.utils.formatdate(MTIME + 3600, usegmt=True)
    earlier = email.utils.formatdate(MTIME - 1, usegmt=True)
    assert (await get(server, "/hello.txt", **{"If-Modified-Since": same})).status_code == 304
    assert (await get(server, "/hello.txt", **{"If-Modified-Since": later})).status_code == 304
    r = await get(server, "/hello.txt", **{"If-Modified-Since": earlier})
    assert r.status_code == 200
    assert r.content == HELLO
    r = await get(server, "/hello.txt", **{"If-Modified-Since": "not a date"})
    assert r.status_code == 200


async def test_if_none_match_takes_precedence_over_if_modified_since(server: Server) -> None:
    etag = (await get(server, "/hello.txt")).headers["etag"]
    later = email.utils.formatdate(MTIME + 3600, usegmt=True)
    earlier = email.utils.formatdate(MTIME - 3600, usegmt=True)
    # the tag does not match: 200 although the date alone would say 304
    r = await get(server, "/hello.txt", **{"If-None-Match": '"x"', "If-Modified-Since": later})
    assert r.status_code == 200
    # the tag matches: 304 although the date alone would say 200
    r = await get(server, "/hello.txt", **{"If-None-Match": etag, "If-Modified-Since": earlier})
    assert r.status_code == 304


async def test_if_match_and_if_unmodified_since(server: Server) -> None:
    etag = (await get(server, "/hello.txt")).headers["etag"]
    assert (await get(server, "/hello.txt", **{"If-Match": etag})).status_code == 200
    assert (await get(server, "/hello.txt", **{"If-Match": '"x"'})).status_code == 412
    assert (await get(server, "/hello.txt", **{"If-Match": f"W/{etag}"})).status_code == 412
    earlier = email.utils.formatdate(MTIME - 10, usegmt=True)
    r = await get(server, "/hello.txt", **{"If-Unmodified-Since": earlier})
    assert r.status_code == 412


async def test_etag_changes_when_file_changes(server: Server) -> None:
    before = (await get(server, "/hello.txt")).headers["etag"]
    (server.root / "hello.txt").write_bytes(b"changed!")
    r = await get(server, "/hello.txt", **{"If-None-Match": before})
    assert r.status_code == 200
    assert r.content == b"changed!"
    assert r.headers["etag"] != before


# ---------------------------------------------------------------- ranges


async def test_range_first_last(server: Server) -> None:
    r = await get(server, "/data.bin", Range="bytes=10-19")
    assert r.status_code == 206
    assert r.content == DATA[10:20]
    assert r.headers["content-range"] == f"bytes 10-19/{len(DATA)}"
    assert r.headers["content-length"] == "10"


async def test_range_suffix(server: Server) -> None:
    r = await get(server, "/data.bin", Range="bytes=-5")
    assert r.status_code == 206
    assert r.content == DATA[-5:]
    assert r.headers["content-range"] == f"bytes {len(DATA) - 5}-{len(DATA) - 1}/{len(DATA)}"
    r = await get(server, "/data.bin", Range="bytes=-5000")  # more than the file
    assert r.status_code == 206
    assert r.content == DATA


async def test_range_open_ended(server: Server) -> None:
    r = await get(server, "/data.bin", Range="bytes=1000-")
    assert r.status_code == 206
    assert r.content == DATA[1000:]
    assert r.headers["content-range"] == f"bytes 1000-1023/{len(DATA)}"


async def test_range_end_is_clipped(server: Server) -> None:
    r = await get(server, "/data.bin", Range="bytes=1020-99999")
    assert r.status_code == 206
    assert r.content == DATA[1020:]
    assert r.headers["content-range"] == "bytes 1020-1023/1024"


@pytest.mark.parametrize("spec", ["bytes=1024-", "bytes=5000-6000", "bytes=-0"])
async def test_range_unsatisfiable(server: Server, spec: str) -> None:
    r = await get(server, "/data.bin", Range=spec)
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{len(DATA)}"
    assert DATA[:16] not in r.content


@pytest.mark.parametrize("spec", ["bytes=0-1000,5-600", "lines=1-2", "bytes=x-y", "bytes=5-2"])
async def test_range_ignored_serves_whole_file(server: Server, spec: str) -> None:
    r = await get(server, "/data.bin", Range=spec)
    assert r.status_code == 200
    assert r.content == DATA


async def test_range_on_head(server: Server) -> None:
    r = await get(server, "/data.bin", "HEAD", Range="bytes=0-9")
    assert r.status_code == 206
    assert r.headers["content-length"] == "10"
    assert r.content == b""


async def test_if_range(server: Server) -> None:
    first = await get(server, "/data.bin")
    etag, last_modified = first.headers["etag"], first.headers["last-modified"]
    r = await get(server, "/data.bin", Range="bytes=0-3", **{"If-Range": etag})
    assert (r.status_code, r.content) == (206, DATA[:4])
    r = await get(server, "/data.bin", Range="bytes=0-3", **{"If-Range": last_modified})
    assert (r.status_code, r.content) == (206, DATA[:4])
    for stale in ('"old"', f"W/{etag}", email.utils.formatdate(MTIME - 60, usegmt=True)):
        r = await get(server, "/data.bin", Range="bytes=0-3", **{"If-Range": stale})
        assert (r.status_code, r.content) == (200, DATA), stale


# ---------------------------------------------------------------- directories


async def test_directory_redirect(server: Server) -> None:
    answer = await raw(server.port, b"/dir?a=1")
    assert status_of(answer) == 301
    assert b"\r\nlocation: /dir/?a=1\r\n" in answer.lower()


async def test_index_html(server: Server) -> None:
    r = await get(server, "/dir/")
    assert r.status_code == 200
    assert r.content == b"<h1>index</h1>"
    assert r.headers["content-type"] == "text/html; charset=utf-8"


async def test_listing_escapes_names(server: Server) -> None:
    r = await get(server, "/list/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    page = r.text
    assert "<script>" not in page
    assert "&lt;script&gt;.txt" in page
    assert 'href="%3Cscript%3E.txt"' in page
    assert 'href="a%20b%26c.txt"' in page
    assert "a b&amp;c.txt" in page
    assert 'href="sub/"' in page
    # and the links work
    linked = await get(server, "/list/%3Cscript%3E.txt")
    assert linked.content == b"x"


async def test_root_listing(server: Server) -> None:
    r = await get(server, "/")
    assert r.status_code == 200
    assert 'href="hello.txt"' in r.text
    assert 'href="list/"' in r.text


async def test_listing_can_be_turned_off(tree: Path) -> None:
    files = StaticFiles(tree, listing=False, index=None)
    async with mhd2.Daemon(files.handle, host="127.0.0.1", port=0) as daemon:
        assert status_of(await raw(daemon.port, b"/list/")) == 404
        assert status_of(await raw(daemon.port, b"/dir/")) == 404
        assert status_of(await raw(daemon.port, b"/hello.txt")) == 200


# ---------------------------------------------------------------- no way out


@pytest.mark.parametrize(
    "target",
    [
        b"/../secret",
        b"/../outside/secret",
        b"/%2e%2e/secret",
        b"/%2E%2E/outside/secret",
        b"/a/%2E%2E/%2e%2e/secret",
        b"/a/../../secret",
        b"/dir/..%2f..%2fsecret",
        b"/..%5csecret",
        b"/a%5c..%5c..%5csecret",
        b"/hello.txt%00.png",
        b"/%00",
        b"/link_out",
        b"/dirlink_out/secret",
        b"/dirlink_out/",
        b"/dirlink_out",
        b"//../secret",
        b"http://x/../secret",
        b"http://x/%2e%2e/secret",
    ],
)
async def test_no_path_escapes_the_root(server: Server, target: bytes) -> None:
    answer = await raw(server.port, target)
    assert SECRET not in answer
    assert b"secret" not in answer.partition(b"\r\n\r\n")[2]
    assert status_of(answer) in (400, 404)


async def test_symlinked_secret_never_leaks_through_ranges(server: Server) -> None:
    r = await get(server, "/link_out", Range="bytes=0-3")
    assert r.status_code == 404
    assert SECRET[:4] not in r.content


async def test_fifo_is_not_served(server: Server) -> None:
    os.mkfifo(server.root / "fifo")
    with trio.fail_after(10):
        r = await get(server, "/fifo")
    assert r.status_code == 404


def test_root_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        StaticFiles(tmp_path / "missing")


# ---------------------------------------------------------------- access log


async def test_access_log_line(server: Server) -> None:
    await get(server, "/hello.txt?q=1", **{"User-Agent": "tester/1.0"})
    line = await server.log.wait_for("/hello.txt?q=1")
    assert line.startswith("127.0.0.1 - - [")
    assert '"GET /hello.txt?q=1 HTTP/1.1" 200 14 "-" "tester/1.0"' in line
    await get(server, "/missing")
    line = await server.log.wait_for("/missing")
    assert '"GET /missing HTTP/1.1" 404 ' in line
    await get(server, "/hello.txt", "HEAD")
    line = await server.log.wait_for('"HEAD /hello.txt')
    assert '"HEAD /hello.txt HTTP/1.1" 200 - ' in line


async def test_access_log_escapes_control_characters(server: Server) -> None:
    request = (
        b"GET /hello.txt?evil HTTP/1.1\r\nHost: x\r\n"
        b'User-Agent: a\x1b[31mred\x07"q"\\\xff\r\nConnection: close\r\n\r\n'
    )
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(request)
            while await stream.receive_some(65536):
                pass
    line = await server.log.wait_for("/hello.txt?evil")
    assert "\x1b" not in line and "\x07" not in line
    assert '"a\\x1b[31mred\\x07\\"q\\"\\\\\\xff"' in line
    assert line.isprintable() and line.isascii()


def test_escape() -> None:
    assert escape("plain text/1.0") == "plain text/1.0"
    assert escape("\x1b[2J\r\n") == "\\x1b[2J\\x0d\\x0a"
    assert escape('"\\') == '\\"\\\\'
    assert escape("\x7f\xff") == "\\x7f\\xff"
    assert escape("é") == "\\xe9"
    assert escape("€") == "\\xe2\\x82\\xac"
    assert escape("\udcff") == "\\xff"


def test_format_line() -> None:
    line = format_line(
        "::1", "GET", "/x", "HTTP/1.0", 304, 0, None, "ua", timestamp="01/Jan/2024:00:00:00 +0000"
    )
    assert line == '::1 - - [01/Jan/2024:00:00:00 +0000] "GET /x HTTP/1.0" 304 - "-" "ua"'


# ---------------------------------------------------------------- parsers


@pytest.mark.parametrize(
    ("value", "size", "expected"),
    [
        ("bytes=0-0", 10, [(0, 0)]),
        ("bytes=0-", 10, [(0, 9)]),
        ("bytes=9-", 10, [(9, 9)]),
        ("bytes=10-", 10, False),
        ("bytes=-1", 10, [(9, 9)]),
        ("bytes=-10", 10, [(0, 9)]),
        ("bytes=-11", 10, [(0, 9)]),
        ("bytes=-0", 10, False),
        ("bytes=0-", 0, False),
        ("bytes=-1", 0, False),
        ("BYTES = 2-3", 10, [(2, 3)]),
        ("bytes=3-2", 10, None),
        ("bytes=1-2,4-5", 10, [(1, 2), (4, 5)]),
        ("bytes=-", 10, None),
        ("bytes=a-", 10, None),
        ("bytes=\u00b2-", 10, None),
        ("items=0-1", 10, None),
        ("bytes", 10, None),
    ],
)
def test_parse_range(value: str, size: int, expected: object) -> None:
    assert parse_ranges(value, size) == expected


def test_etag_list_parser() -> None:
    assert list(etags('"a", W/"b",,"c,d"')) == [(False, '"a"'), (True, '"b"'), (False, '"c,d"')]
    assert list(etags('junk, "a"')) == [(False, '"a"')]
    assert list(etags('"unterminated')) == []


@given(
    st.lists(
        st.sampled_from(["a", "..", ".", "%2e%2e", "%2E.", "%2f", "%5c", "\\", "%00", "", "b c"]),
        max_size=8,
    )
)
def test_segments_never_climb(parts: list[str]) -> None:
    target = "/" + "/".join(parts)
    parsed = StaticFiles._segments(target)
    if parsed is not None:
        segments, _ = parsed
        root = "/srv/root"
        joined = os.path.normpath(os.path.join(root, *segments))
        assert os.path.commonpath([root, joined]) == root
        assert all(s not in ("..", ".", "") and "\x00" not in s for s in segments)
