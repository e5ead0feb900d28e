"""Developer tasks for mhd2.

    nox                       # tests, lint, docs (the defaults)
    nox -s tests -- -k upload # extra arguments go to pytest
    nox -s lint               # ruff check + mypy --strict
    nox -s docs               # Sphinx, warnings are errors
    nox -s bench              # benchmarks (needs wrk)
    nox -s browser            # the chat demo in headless Chromium (needs /usr/bin/chromium)
    nox -s conformance        # not available yet, see below

Every session builds a fresh virtualenv with Python 3.11 and installs mhd2
with the matching extra from pyproject.toml, so nothing installed by hand is
used.
"""

from __future__ import annotations

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
    """The chat demo in two headless Chromium pages (tests/browser; not a default session).

    Needs Debian's ``chromium`` (/usr/bin/chromium; .ci/run installs it).
    Playwright drives that browser: ``playwright install`` is never run.
    """
    session.install(".[test]", "playwright")
    session.run("pytest", "tests/browser", "-p", "no:cacheprovider", *session.posargs,
                env={"MHD2_BROWSER": "1"})


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run the benchmarks (bench/run.py) against mhd2 and its peers."""
    session.install(".[bench]")
    session.run("python", "bench/run.py", *session.posargs)


@nox.session(python=False)
def conformance(session: nox.Session) -> None:
    """WebSocket conformance (Autobahn); not wired up yet."""
    session.error(
        "WebSocket conformance arrives with the WebSocket issue; "
        "there is no conformance suite to run yet"
    )
