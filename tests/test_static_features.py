"""mhd2.static.StaticFiles features of issue 14: precompressed sidecars,
multipart/byteranges, Cache-Control, and the directory listing (validator,
sizes and dates, sorting, JSON, index names) — over real connections."""

from __future__ import annotations

import email.parser
import email.policy
import gzip
import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from test_static import EventLog, Server, get, raw, status_of

import mhd2
from mhd2.static import StaticFiles

TEXT = b"body { color: red; }\n" * 50  # 1050 bytes
DATA = bytes(range(256)) * 4
MTIME = 1_700_000_000


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    (root / "style.css").write_bytes(TEXT)
    (root / "style.css.gz").write_bytes(gzip.compress(TEXT, mtime=0))
    (root / "style.css.br").write_bytes(b"BROTLI" + TEXT[:20])  # stands in for brotli output
    (root / "style.css.zst").write_bytes(b"ZSTD" + TEXT[:30])
    (root / "plain.txt").write_bytes(b"plain\n")
    (root / "stale.js").write_bytes(b"new();\n")
    (root / "stale.js.gz").write_bytes(gzip.compress(b"old();\n"))
    (root / "data.bin").write_bytes(DATA)
    (root / "files").mkdir()
    (root / "files" / "small.txt").write_bytes(b"x" * 10)
    (root / "files" / "big.bin").write_bytes(b"y" * 5000)
    (root / "files" / "mid.dat").write_bytes(b"z" * 300)
    (root / "files" / "zdir").mkdir()
    (root / "alt").mkdir()
    (root / "alt" / "default.htm").write_bytes(b"<p>default</p>")
    for p in root.rglob("*"):
        os.utime(p, (MTIME, MTIME))
    os.utime(root / "stale.js", (MTIME + 100, MTIME + 100))  # newer than its .gz
    os.utime(root / "files" / "small.txt", (MTIME + 200, MTIME + 200))
    os.utime(root / "files" / "big.bin", (MTIME - 200, MTIME - 200))
    return root


async def running(tree: Path, **options: object) -> AsyncIterator[Server]:
    files = StaticFiles(tree, **options)  # type: ignore[arg-type]
    async with mhd2.Daemon(files.handle, host="127.0.0.1", port=0) as daemon:
        yield Server(daemon.port, tree, EventLog())


@pytest.fixture
async def server(tree: Path) -> AsyncIterator[Server]:
    async for s in running(tree):
        yield s


# ---------------------------------------------------------------- sidecars


@pytest.mark.parametrize(
    ("accept", "coding"),
    [
        ("gzip", "gzip"),
        ("x-gzip", "gzip"),
        ("gzip, deflate, br, zstd", "br"),
        ("gzip;q=1, br;q=0.5", "gzip"),
        ("zstd, gzip;q=0.9", "zstd"),
        ("br;q=0, zstd;q=0, gzip", "gzip"),
        ("*", "br"),
        ("deflate", None),
        ("identity", None),
        ("gzip;q=0.5, identity", None),
        ("br;q=0, gzip;q=0", None),
        ("", None),
    ],
)
async def test_sidecar_is_chosen_by_accept_encoding(
    server: Server, accept: str, coding: str | None
) -> None:
    # raw bytes: an HTTP client library would decode the (fake) br and zstd bodies
    answer = await raw_get(server.port, b"/style.css", b"Accept-Encoding: " + accept.encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    assert status_of(answer) == 200
    assert header_of(head, b"content-type") == b"text/css; charset=utf-8"
    assert header_of(head, b"vary") == b"Accept-Encoding"  # on the identity answer too
    encoding = header_of(head, b"content-encoding") if b"content-encoding:" in head.lower() else None
    assert encoding == (coding.encode() if coding else None)
    expected = {
        None: TEXT,
        "gzip": (server.root / "style.css.gz").read_bytes(),
        "br": (server.root / "style.css.br").read_bytes(),
        "zstd": (server.root / "style.css.zst").read_bytes(),
    }[coding]
    assert body == expected


async def test_sidecar_bytes_and_distinct_etags(server: Server) -> None:
    etags = set()
    for accept in ("identity", "gzip", "br", "zstd"):
        r = await raw_get(server.port, b"/style.css", b"Accept-Encoding: " + accept.encode())
        head, _, body = r.partition(b"\r\n\r\n")
        etags.add(header_of(head, b"etag"))
        if accept == "gzip":
            assert gzip.decompress(body) == TEXT
    assert len(etags) == 4


async def test_no_sidecar_no_vary(server: Server) -> None:
    r = await get(server, "/plain.txt", **{"Accept-Encoding": "gzip, br"})
    assert r.status_code == 200
    assert "vary" not in r.headers and "content-encoding" not in r.headers


async def test_older_sidecar_is_not_used(server: Server) -> None:
    r = await raw_get(server.port, b"/stale.js", b"Accept-Encoding: gzip")
    assert r.partition(b"\r\n\r\n")[2] == b"new();\n"
    assert b"content-encoding" not in r.lower()


async def test_range_and_conditionals_apply_to_the_encoded_bytes(server: Server) -> None:
    encoded = (server.root / "style.css.gz").read_bytes()
    r = await raw_get(server.port, b"/style.css", b"Accept-Encoding: gzip", b"Range: bytes=0-9")
    head, _, body = r.partition(b"\r\n\r\n")
    assert status_of(r) == 206
    assert body == encoded[:10]
    assert header_of(head, b"content-range") == f"bytes 0-9/{len(encoded)}".encode()
    assert header_of(head, b"content-encoding") == b"gzip"
    etag = header_of(head, b"etag")
    again = await get(
        server, "/style.css", **{"Accept-Encoding": "gzip", "If-None-Match": etag.decode()}
    )
    assert again.status_code == 304
    assert again.headers["vary"] == "Accept-Encoding"
    # the gzip tag does not validate the identity representation
    plain = await get(
        server, "/style.css", **{"If-None-Match": etag.decode(), "Accept-Encoding": "identity"}
    )
    assert plain.status_code == 200 and plain.content == TEXT


async def test_sidecar_linked_out_of_the_tree_is_not_used(server: Server, tmp_path: Path) -> None:
    outside = tmp_path / "outside.gz"
    outside.write_bytes(b"OUTSIDE")
    (server.root / "plain.txt.gz").symlink_to(outside)
    answer = await raw_get(server.port, b"/plain.txt", b"Accept-Encoding: gzip")
    assert b"OUTSIDE" not in answer
    assert answer.partition(b"\r\n\r\n")[2] == b"plain\n"


async def test_unsatisfiable_range_of_a_sidecar(server: Server) -> None:
    answer = await raw_get(
        server.port, b"/style.css", b"Accept-Encoding: gzip", b"Range: bytes=99999-"
    )
    head = answer.partition(b"\r\n\r\n")[0]
    assert status_of(answer) == 416
    size = len((server.root / "style.css.gz").read_bytes())
    assert header_of(head, b"content-range") == f"bytes */{size}".encode()
    assert b"content-encoding" not in head.lower()  # no body to decode
    assert header_of(head, b"vary") == b"Accept-Encoding"


async def test_sidecars_can_be_turned_off(tree: Path) -> None:
    async for server in running(tree, precompressed=False):
        answer = await raw_get(server.port, b"/style.css", b"Accept-Encoding: gzip, br")
        assert answer.partition(b"\r\n\r\n")[2] == TEXT
        assert b"vary:" not in answer.lower()


# ---------------------------------------------------------------- multipart/byteranges


def parts_of(content_type: str, body: bytes) -> list[tuple[str, str, bytes]]:
    """(Content-Type, Content-Range, payload) of each part, parsed by the stdlib."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    assert message.is_multipart()
    parts = []
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        parts.append((str(part["Content-Type"]), str(part["Content-Range"]), payload))
    return parts


async def test_multipart_byteranges_with_curl(server: Server) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    with trio.fail_after(20):
        done = await trio.run_process(
            [curl, "--silent", "--show-error", "--include", "-r", "0-1,5-6",
             f"{server.url}/data.bin"],
            capture_stdout=True,
        )
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 206 ")
    ctype = header_of(head, b"content-type").decode()
    assert re.fullmatch(r"multipart/byteranges; boundary=[0-9a-f]{32}", ctype)
    assert int(header_of(head, b"content-length")) == len(body)
    assert b"content-range" not in head.lower()
    assert parts_of(ctype, body) == [
        ("application/octet-stream", "bytes 0-1/1024", DATA[0:2]),
        ("application/octet-stream", "bytes 5-6/1024", DATA[5:7]),
    ]


async def test_multipart_large_parts_and_head(server: Server) -> None:
    r = await get(server, "/data.bin", Range="bytes=-100, 10-409, 500-899")
    assert r.status_code == 206
    parts = parts_of(r.headers["content-type"], r.content)
    assert [p[2] for p in parts] == [DATA[-100:], DATA[10:410], DATA[500:900]]
    h = await get(server, "/data.bin", "HEAD", Range="bytes=-100, 10-409, 500-899")
    assert h.status_code == 206 and h.content == b""
    assert h.headers["content-length"] == r.headers["content-length"]


async def test_unsatisfiable_ranges_are_dropped(server: Server) -> None:
    r = await get(server, "/data.bin", Range="bytes=5000-6000, 4-7")
    assert r.status_code == 206  # one satisfiable range left: a plain 206
    assert r.headers["content-range"] == "bytes 4-7/1024"
    assert r.content == DATA[4:8]
    r = await get(server, "/data.bin", Range="bytes=5000-6000, 2000-")
    assert r.status_code == 416
    assert r.headers["content-range"] == "bytes */1024"


async def test_range_cap_is_an_option(tree: Path) -> None:
    async for server in running(tree, max_ranges=2):
        assert (await get(server, "/data.bin", Range="bytes=0-0,2-2")).status_code == 206
        r = await get(server, "/data.bin", Range="bytes=0-0,2-2,4-4")
        assert (r.status_code, r.content) == (200, DATA)


# ---------------------------------------------------------------- Cache-Control


async def test_cache_control_option(tree: Path) -> None:
    async for server in running(tree, cache_control="public, max-age=3600"):
        r = await get(server, "/plain.txt")
        assert r.headers["cache-control"] == "public, max-age=3600"
        again = await get(server, "/plain.txt", **{"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304
        assert again.headers["cache-control"] == "public, max-age=3600"
        assert (await get(server, "/data.bin", Range="bytes=0-1")).headers[
            "cache-control"
        ] == "public, max-age=3600"
        assert (await get(server, "/files/")).headers["cache-control"] == "no-cache"


async def test_no_cache_control_by_default(server: Server) -> None:
    assert "cache-control" not in (await get(server, "/plain.txt")).headers


@pytest.mark.parametrize("value", ["", "a\r\nSet-Cookie: x", "\u00e9"])
def test_cache_control_is_checked(tree: Path, value: str) -> None:
    with pytest.raises(mhd2.UsageError):
        StaticFiles(tree, cache_control=value)


# ---------------------------------------------------------------- listing


async def test_listing_has_a_validator(server: Server) -> None:
    r = await get(server, "/files/")
    assert r.status_code == 200
    etag = r.headers["etag"]
    assert r.headers["cache-control"] == "no-cache"
    assert "last-modified" in r.headers
    assert r.headers["vary"] == "Accept"
    again = await get(server, "/files/", **{"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    (server.root / "files" / "new.txt").write_bytes(b"n")
    changed = await get(server, "/files/", **{"If-None-Match": etag})
    assert changed.status_code == 200 and "new.txt" in changed.text
    assert changed.headers["etag"] != etag
    # the JSON form is another representation: another tag
    as_json = await get(server, "/files/", Accept="application/json")
    assert as_json.headers["etag"] not in (etag, changed.headers["etag"])


async def test_listing_shows_size_and_date_with_inline_style(server: Server) -> None:
    page = (await get(server, "/files/")).text
    assert "<style>" in page and "<script" not in page and "src=" not in page
    assert re.findall(r"<link [^>]*>", page) == ['<link rel="icon" href="data:,">']
    assert 'title="5000 bytes"' in page and "4.9 KiB" in page
    assert 'title="10 bytes"' in page and "10 B" in page
    assert '<time datetime="2023-11-14T22:13:20Z">2023-11-14 22:13</time>' in page


def names_in(page: str) -> list[str]:
    return re.findall(r'<td><a href="([^"]+)">', page)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["zdir/", "big.bin", "mid.dat", "small.txt"]),
        ("?sort=name&order=desc", ["zdir/", "small.txt", "mid.dat", "big.bin"]),
        ("?sort=size", ["zdir/", "small.txt", "mid.dat", "big.bin"]),
        ("?sort=size&order=desc", ["zdir/", "big.bin", "mid.dat", "small.txt"]),
        ("?sort=date", ["zdir/", "big.bin", "mid.dat", "small.txt"]),
        ("?sort=date&order=desc", ["zdir/", "small.txt", "mid.dat", "big.bin"]),
        ("?sort=bogus&order=sideways", ["zdir/", "big.bin", "mid.dat", "small.txt"]),
    ],
)
async def test_listing_sorts(server: Server, query: str, expected: list[str]) -> None:
    page = (await get(server, "/files/" + query)).text
    assert names_in(page) == ["../", *expected]


async def test_listing_header_links_flip_the_order(server: Server) -> None:
    page = (await get(server, "/files/?sort=size&order=asc")).text
    assert 'href="?sort=size&amp;order=desc"' in page
    assert 'href="?sort=name&amp;order=asc"' in page


async def test_listing_as_json(server: Server) -> None:
    r = await get(server, "/files/?sort=size&order=desc", Accept="application/json")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.headers["vary"] == "Accept"
    doc = json.loads(r.content)
    assert doc["path"] == "/files/"
    assert doc["entries"][0] == {
        "name": "zdir", "href": "zdir/", "type": "directory", "size": None,
        "modified": "2023-11-14T22:13:20Z",
    }
    assert [(e["name"], e["size"]) for e in doc["entries"][1:]] == [
        ("big.bin", 5000), ("mid.dat", 300), ("small.txt", 10),
    ]
    for accept in ("text/html,application/xhtml+xml,*/*;q=0.8", "*/*", "application/json;q=0"):
        r = await get(server, "/files/", Accept=accept)
        assert r.headers["content-type"] == "text/html; charset=utf-8", accept


async def test_index_names(tree: Path) -> None:
    async for server in running(tree, index=["index.html", "default.htm"]):
        assert (await get(server, "/alt/")).content == b"<p>default</p>"
    async for server in running(tree):
        assert "default.htm" in (await get(server, "/alt/")).text  # a listing


async def test_no_listing_is_404(tree: Path) -> None:
    async for server in running(tree, listing=False, index="default.htm"):
        assert status_of(await raw(server.port, b"/files/")) == 404
        assert (await get(server, "/alt/")).content == b"<p>default</p>"


@pytest.mark.parametrize("name", ["", "a/b", ".."])
def test_index_names_are_checked(tree: Path, name: str) -> None:
    with pytest.raises(mhd2.UsageError):
        StaticFiles(tree, index=name)


# ---------------------------------------------------------------- helpers


async def raw_get(port: int, target: bytes, *headers: bytes) -> bytes:
    extra = b"".join(h + b"\r\n" for h in headers)
    request = b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"Connection: close\r\n\r\n"
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(request)
            chunks = []
            while chunk := await stream.receive_some(65536):
                chunks.append(chunk)
    return b"".join(chunks)


def header_of(head: bytes, name: bytes) -> bytes:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    raise KeyError(name)
