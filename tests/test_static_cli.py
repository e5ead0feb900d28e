"""``python -m mhd2 serve`` flags for the static server, on a real subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

REPO = Path(__file__).resolve().parents[1]
STARTUP = re.compile(rb"mhd2: serving .+ on http://127\.0\.0\.1:(\d+)/")


@asynccontextmanager
async def serve(args: Sequence[str]) -> AsyncIterator[str]:
    """Run ``python -m mhd2 serve ARGS --port 0``; yields its base URL."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "mhd2", "serve", *args, "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert process.stderr is not None
        seen = b""
        with trio.fail_after(15):
            while (match := STARTUP.search(seen)) is None:
                chunk = await process.stderr.receive_some(4096)
                if not chunk:
                    raise AssertionError(f"serve did not start: {seen!r}")
                seen += chunk
        yield f"http://127.0.0.1:{int(match[1])}"
    finally:
        if process.returncode is None:
            process.terminate()
        with trio.fail_after(10):
            await process.wait()


async def fetch(url: str, **headers: str) -> httpx.Response:
    with trio.fail_after(10):
        async with httpx.AsyncClient() as client:
            return await client.get(url, headers=headers)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    (root / "hello.txt").write_bytes(b"hello\n")
    (root / ".env").write_bytes(b"SECRET=1\n")
    (root / "docs").mkdir()
    (root / "docs" / "README.txt").write_bytes(b"readme\n")
    (root / "docs" / "home.htm").write_bytes(b"<p>home</p>")
    return root


async def test_defaults(site: Path) -> None:
    async with serve([str(site)]) as url:
        r = await fetch(url + "/hello.txt")
        assert r.headers["cache-control"] == "no-cache"  # the CLI's default
        assert (await fetch(url + "/.env")).status_code == 404
        listing = await fetch(url + "/")
        assert "hello.txt" in listing.text and ".env" not in listing.text
        assert "README.txt" in (await fetch(url + "/docs/")).text


async def test_flags(site: Path) -> None:
    args = [
        str(site), "--dotfiles", "allow", "--cache-control", "public, max-age=60",
        "--index", "index.html", "--index", "home.htm", "--no-listing",
    ]
    async with serve(args) as url:
        r = await fetch(url + "/.env")
        assert (r.status_code, r.content) == (200, b"SECRET=1\n")
        assert r.headers["cache-control"] == "public, max-age=60"
        assert (await fetch(url + "/docs/")).content == b"<p>home</p>"
        assert (await fetch(url + "/")).status_code == 404  # no index, no listing


async def test_listing_page_size(site: Path) -> None:
    for i in range(5):
        (site / f"n{i}.txt").write_bytes(b"")
    async with serve([str(site), "--listing-page-size", "2"]) as url:
        first = await fetch(url + "/")
        # docs/, hello.txt and n0..n4 (.env is not listed): 7 entries, 4 pages
        assert first.text.count("<tr><td><a href=") == 2  # the root has no ../ row
        assert "page 1 of 4" in first.text
        assert 'rel="next"' in first.text
        assert "page 4 of 4" in (await fetch(url + "/?page=4")).text
        assert (await fetch(url + "/?page=5")).status_code == 404


async def test_no_cache_control(site: Path) -> None:
    async with serve([str(site), "--cache-control", ""]) as url:
        assert "cache-control" not in (await fetch(url + "/hello.txt")).headers


@pytest.mark.parametrize(
    "args",
    [
        ["--dotfiles", "maybe"],
        ["--index", "a/b"],
        ["--cache-control", "x\x01"],
        ["--cache-control", "  "],
        ["--listing-page-size", "0"],
        ["--listing-page-size", "-3"],
        ["--listing-page-size", "lots"],
    ],
)
def test_bad_flags_exit_2(site: Path, args: list[str]) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-m", "mhd2", "serve", str(site), *args],
        capture_output=True, env=env, timeout=30, check=False,
    )
    assert done.returncode == 2
    assert b"usage:" in done.stderr
