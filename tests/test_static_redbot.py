"""REDbot (https://redbot.org/) against a live ``python -m mhd2 serve``.

REDbot checks a response the way a careful HTTP reviewer would (caching,
validators, ranges, content negotiation, header syntax) and gives each
finding a level. Here it must find nothing ``BAD`` and nothing ``WARN`` for
the directory listing, a file (with a gzip sidecar), a missing file and a
range request. ``nox -s redbot`` installs REDbot and runs this file; without
REDbot the test is skipped.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
import trio
from test_static_cli import serve

HAVE_REDBOT = importlib.util.find_spec("redbot") is not None
if not HAVE_REDBOT and os.environ.get("MHD2_REDBOT"):  # nox -s redbot: a skip would hide it
    raise ImportError("MHD2_REDBOT is set but REDbot cannot be imported")
pytestmark = pytest.mark.skipif(
    not HAVE_REDBOT,
    reason="REDbot is not installed (pip install 'mhd2[redbot]', or run: nox -s redbot)",
)

#: Runs one REDbot check (its own event loop, thor) and prints the notes as JSON.
DRIVER = """
import json, sys
from configparser import ConfigParser
import thor
from redbot.resource import HttpResource

url, headers = sys.argv[1], json.loads(sys.argv[2])
config = ConfigParser()
config.read_dict({"redbot": {"enable_local_access": "True"}})
resource = HttpResource(config["redbot"])
resource.set_request(url, headers=headers)

@thor.events.on(resource)
def check_done():
    thor.stop()

resource.check()
thor.run()

def walk(notes):
    for note in notes:
        yield note
        yield from walk(getattr(note, "subnotes", []))

print(json.dumps({
    "status": resource.response.status_code,
    "error": str(resource.fetch_error) if resource.fetch_error else None,
    "notes": [
        {"id": type(n).__name__, "level": n.level.name if n.level else None,
         "summary": str(n.summary)}
        for n in walk(resource.response.notes)
    ],
}))
"""

CSS = b"".join(b".rule-%d { color: #%06x; margin: %dpx; }\n" % (i, i * 997, i) for i in range(200))


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    (root / "style.css").write_bytes(CSS)
    (root / "style.css.gz").write_bytes(gzip.compress(CSS))
    (root / "data.bin").write_bytes(os.urandom(4096))
    (root / "sub").mkdir()
    (root / "sub" / "notes.txt").write_bytes(b"notes\n" * 40)
    return root


async def redbot(url: str, headers: list[tuple[str, str]]) -> dict[str, object]:
    with trio.fail_after(60):
        done = await trio.run_process(
            [sys.executable, "-c", DRIVER, url, json.dumps(headers)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/", [], 200),
        ("/sub/", [], 200),
        ("/style.css", [], 200),
        ("/missing.txt", [], 404),
        ("/data.bin", [("Range", "bytes=100-299")], 206),
        ("/style.css", [("Range", "bytes=0-99"), ("Accept-Encoding", "gzip")], 206),
    ],
)
async def test_redbot_finds_nothing_bad(
    site: Path, path: str, headers: list[tuple[str, str]], status: int
) -> None:
    async with serve([str(site)]) as url:
        report = await redbot(url + path, headers)
    assert report["error"] is None
    assert report["status"] == status
    notes = report["notes"]
    assert isinstance(notes, list) and notes, report
    complaints = [n for n in notes if n["level"] in ("BAD", "WARN")]
    assert complaints == [], json.dumps(notes, indent=1)


@pytest.mark.parametrize("accept", ["text/html", "application/json"])
async def test_redbot_finds_nothing_bad_on_a_listing_page(site: Path, accept: str) -> None:
    """A middle page of a paginated listing (``Link`` to both neighbours)."""
    async with serve([str(site), "--listing-page-size", "1"]) as url:
        report = await redbot(url + "/?sort=size&order=desc&page=2", [("Accept", accept)])
    assert report["error"] is None and report["status"] == 200
    notes = report["notes"]
    assert isinstance(notes, list) and notes, report
    complaints = [n for n in notes if n["level"] in ("BAD", "WARN")]
    assert complaints == [], json.dumps(notes, indent=1)
