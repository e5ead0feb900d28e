"""Developer tasks for mhd2.

    nox                       # tests, lint, docs (the defaults)
    nox -s tests -- -k upload # extra arguments go to pytest
    nox -s lint               # ruff check + mypy --strict
    nox -s docs               # Sphinx, warnings are errors
    nox -s bench              # benchmarks (needs wrk)
    nox -s browser            # the chat demo in headless Chromium (needs /usr/bin/chromium)
    nox -s conformance        # Autobahn|Testsuite, all 517 cases (~12 min)

Every session builds a fresh virtualenv with Python 3.11 and installs mhd2
with the matching extra from pyproject.toml, so nothing installed by hand is
used.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import Counter
from pathlib import Path

import nox

PYTHON = "3.11"

nox.options.sessions = ["tests", "lint", "docs"]
nox.options.reuse_existing_virtualenvs = False
# A missing interpreter must fail the run, not silently skip the session.
nox.options.error_on_missing_interpreters = True


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite with pytest (extra arguments are passed on)."""
    session.install(".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check, then mypy --strict over mhd2, tests and examples."""
    session.install(".[lint]")
    session.run("ruff", "check", ".")
    # Which files, and the per-module settings, live in [tool.mypy].
    session.run("mypy", "--strict", *session.posargs)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the HTML documentation; any Sphinx warning fails the build."""
    session.install(".[docs]")
    session.run(
        "sphinx-build",
        "-W",
        "--keep-going",
        "-b",
        "html",
        "docs",
        "docs/_build/html",
        *session.posargs,
    )


@nox.session(python=PYTHON)
def browser(session: nox.Session) -> None:
    """The demo and the WebSocket chat example in headless Chromium (tests/browser; not a
    default session): the three modes talking, a restart of the demo, and screenshots of
    the page at desktop and phone widths, checked for overflow and visible controls.

    Needs Debian's ``chromium`` (/usr/bin/chromium; .ci/run installs it).
    Playwright drives that browser: ``playwright install`` is never run.
    Screenshots go to ``.browser-screenshots/`` (``MHD2_SCREENSHOTS`` overrides).
    """
    session.install(".[test]", "playwright")
    shots = os.environ.get("MHD2_SCREENSHOTS") or str(Path(".browser-screenshots").resolve())
    session.run("pytest", "tests/browser", "-p", "no:cacheprovider", *session.posargs,
                env={"MHD2_BROWSER": "1", "MHD2_SCREENSHOTS": shots})


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run the benchmarks (bench/run.py) against mhd2 and its peers."""
    session.install(".[bench]")
    session.run("python", "bench/run.py", *session.posargs)


#: Autobahn|Testsuite harness (setup.sh, run.sh); MHD2_AUTOBAHN overrides.
AUTOBAHN = os.environ.get(
    "MHD2_AUTOBAHN",
    str(Path(__file__).resolve().parent.parent / "shared" / "conformance" / "autobahn"),
)
#: --quick: everything without compression plus the first deflate groups.
QUICK_EXCLUDE = ",".join([f"12.{i}.*" for i in range(2, 6)] + [f"13.{i}.*" for i in range(2, 8)])
PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}


@nox.session(python=PYTHON)
def conformance(session: nox.Session) -> None:
    """WebSocket conformance: Autobahn|Testsuite against examples/ws_echo.py.

    ``nox -s conformance`` runs all 517 cases (permessage-deflate 12.* and
    13.* included, ~12 min); ``nox -s conformance -- --quick`` runs the 301
    cases without compression plus 12.1.* and 13.1.* (337 cases).  Fails
    unless every case is OK, NON-STRICT or INFORMATIONAL (UNIMPLEMENTED fails:
    compression must be negotiated).  The report goes to
    ``.conformance/autobahn`` (``index.html``).
    """
    session.install(".")
    harness = Path(AUTOBAHN)
    if not (harness / "run.sh").exists():
        session.error(f"no Autobahn harness at {harness} (set MHD2_AUTOBAHN)")
    venv = Path(os.environ.get("AUTOBAHN_VENV", Path.home() / ".cache" / "autobahn-venv"))
    if not (venv / "bin" / "wstest").exists():
        session.run("bash", str(harness / "setup.sh"), external=True)
    quick = "--quick" in session.posargs
    if quick:
        args, expected = ["--cases", "*", "--exclude", QUICK_EXCLUDE], 337
    else:
        args, expected = ["--full"], 517
    out = Path(".conformance") / "autobahn"
    python = str(Path(session.bin) / "python")
    server = subprocess.Popen(
        [python, "-u", "examples/ws_echo.py", "--port", "0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if match is None:
            session.error(f"the echo server did not start: {line!r}")
        url = f"ws://127.0.0.1:{match[1]}/"
        session.run("bash", str(harness / "run.sh"), url, str(out), *args,
                    "--timeout", "2400", external=True)
    finally:
        try:
            server.communicate("\n", timeout=30)  # Enter stops the example
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    report = json.loads((out / "index.json").read_text())
    cases = next(iter(report.values()))
    counts = Counter(case["behavior"] for case in cases.values())
    bad = sorted(cid for cid, case in cases.items() if case["behavior"] not in PASSING)
    session.log(f"Autobahn: {len(cases)} cases: {dict(counts)}")
    if bad:
        session.error(f"cases not OK/NON-STRICT/INFORMATIONAL: {' '.join(bad[:40])}")
    if len(cases) != expected:
        session.error(f"{len(cases)} cases ran, expected {expected}")
