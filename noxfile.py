"""Developer tasks for mhd2.

    nox                       # tests, lint, docs (the defaults)
    nox -s tests -- -k upload # extra arguments go to pytest; runs on both parser backends
    nox -s "tests(parser='httptools')"   # one backend only
    nox -s lint               # ruff check + mypy --strict
    nox -s docs               # Sphinx, warnings are errors
    nox -s bench              # benchmarks (needs wrk)
    nox -s browser            # the chat demo in headless Chromium (needs /usr/bin/chromium)
    nox -s redbot             # REDbot against a live `python -m mhd2 serve`
    nox -s conformance        # Autobahn|Testsuite, all 517 cases (~12 min)
    nox -s deploy             # redis-server + HAProxy + mhd2 processes (apt-installs them)

Every session builds a fresh virtualenv with Python 3.11 and installs mhd2
with the matching extra from pyproject.toml, so nothing installed by hand is
used.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import nox

PYTHON = "3.11"

nox.options.sessions = ["tests", "lint", "docs"]
nox.options.reuse_existing_virtualenvs = False
# A missing interpreter must fail the run, not silently skip the session.
nox.options.error_on_missing_interpreters = True


@nox.session(python=PYTHON)
@nox.parametrize("parser", ["h11", "httptools"])
def tests(session: nox.Session, parser: str) -> None:
    """Run the test suite with pytest, once per parser backend (extra arguments go to pytest).

    ``tests(parser='h11')`` installs mhd2 without httptools, so ``parser="auto"``
    (what every test and example uses) is h11; ``tests(parser='httptools')``
    installs ``mhd2[speedups]``.  The test run checks it got the backend it was
    meant to (``MHD2_EXPECT_PARSER``, see tests/conftest.py).
    """
    session.install(".[test]" if parser == "h11" else ".[test,speedups]")
    # One pytest worker per core (pytest-xdist), whole files per worker: the
    # suite is mostly CPU (parity corpus, child processes, fuzzing), so this
    # halves it on two cores.  ``nox -s tests -- -n 0`` runs it serially.
    session.run("pytest", "-n", "auto", "--dist", "loadfile", *session.posargs,
                env={"MHD2_EXPECT_PARSER": parser})


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check, mypy --strict over mhd2, tests and examples, and the import layers."""
    session.install(".[lint]")
    session.run("ruff", "check", ".")
    # The layer contracts of docs/design.rst live in [tool.importlinter]; they
    # count the imports made only for type checking too.
    session.run("lint-imports")
    # Within mhd2.http2, this test looks for circles with its own search.
    session.run("pytest", "-q", "-p", "no:cacheprovider", "tests/test_http2_imports.py")
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
    the page at desktop and phone widths, checked for overflow and visible controls; a
    page opening 20 WebSockets over its one HTTP/2 connection (RFC 8441); and
    ``demo --redis``: pages on two demo processes in one room, one process restarted
    (needs ``redis-server``, which ``nox -s deploy`` installs; skipped without it).

    Needs Debian's ``chromium`` (/usr/bin/chromium; .ci/run installs it).
    Playwright drives that browser: ``playwright install`` is never run.
    Screenshots go to ``.browser-screenshots/`` (``MHD2_SCREENSHOTS`` overrides).
    """
    session.install(".[test]", "playwright")
    shots = os.environ.get("MHD2_SCREENSHOTS") or str(Path(".browser-screenshots").resolve())
    session.run("pytest", "tests/browser", "-p", "no:cacheprovider", *session.posargs,
                env={"MHD2_BROWSER": "1", "MHD2_SCREENSHOTS": shots})


@nox.session(python=PYTHON)
def redbot(session: nox.Session) -> None:
    """REDbot checks a live ``python -m mhd2 serve`` (tests/test_static_redbot.py).

    The listing, a file with a gzip sidecar, a missing file and range
    requests must get no BAD and no WARN note. Not a default session: REDbot
    and its dependencies come from PyPI.
    """
    session.install(".[test,redbot]")
    session.run("pytest", "tests/test_static_redbot.py", "-p", "no:cacheprovider", "-rs",
                *session.posargs, env={"MHD2_REDBOT": "1"})


#: Debian packages the deploy session needs, by the program it runs.
DEPLOY_PACKAGES = {"redis-server": "redis-server", "haproxy": "haproxy"}


def _which(program: str) -> str | None:
    # haproxy lives in /usr/sbin, which a non-root PATH may lack
    return shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin:/usr/bin")


@nox.session(python=PYTHON)
def deploy(session: nox.Session) -> None:
    """mhd2 deployed with real parts (tests/deploy): a real redis-server and a real
    HAProxy in front of ``python -m mhd2 demo --redis`` and ``serve`` processes.

    Installs Debian's ``redis-server`` and ``haproxy`` with apt-get when they are
    missing (as root, or through sudo); skips with a message only where there is
    no apt-get. Runs pytest on tests/deploy, and on the tests of ``Hub(redis=...)``
    and ``demo --redis`` against a real redis-server, with ``MHD2_DEPLOY=1``, so a
    part that is still missing fails the tests instead of skipping them.
    """
    missing = [package for program, package in DEPLOY_PACKAGES.items() if _which(program) is None]
    if missing:
        apt = shutil.which("apt-get")
        if apt is None:
            session.skip(f"needs {' and '.join(missing)} and there is no apt-get to install "
                         "them: install them with your package manager and run again")
        root: list[str] = []
        if os.geteuid() != 0:
            sudo = shutil.which("sudo")
            if sudo is None:
                session.error(f"need root or sudo to apt-get install {' '.join(missing)}")
            root = [sudo]
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        session.run(*root, apt, "update", external=True, env=env)
        session.run(*root, apt, "install", "-y", "--no-install-recommends", *missing,
                    external=True, env=env)
        still = [program for program in DEPLOY_PACKAGES if _which(program) is None]
        if still:
            session.error(f"apt-get install did not provide {' '.join(still)}")
    session.run(_which("redis-server") or "redis-server", "--version", external=True)
    session.run(_which("haproxy") or "haproxy", "-v", external=True)
    session.install(".[deploy]")
    session.run("pytest", "tests/deploy", "tests/test_fanout_redis.py", "tests/test_demo_redis.py",
                "-p", "no:cacheprovider", "-rs", *session.posargs, env={"MHD2_DEPLOY": "1"})


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run the benchmarks (bench/run.py) against mhd2 and its peers."""
    session.install(".[bench]")
    session.run("python", "bench/run.py", *session.posargs)


#: Autobahn|Testsuite harness: a directory with setup.sh and run.sh (see conformance()).
#: MHD2_AUTOBAHN names it; else ../shared/conformance/autobahn beside the checkout is used
#: when it exists (the development machine's CI has it there).
AUTOBAHN_SHARED = Path(__file__).resolve().parent.parent / "shared" / "conformance" / "autobahn"
#: The Autobahn|Testsuite Docker image (its fuzzing client, wstest, is Python 2.7 code).
AUTOBAHN_IMAGE = "crossbario/autobahn-testsuite"
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

    Autobahn|Testsuite is not part of this repository; where it is looked for
    (``MHD2_AUTOBAHN``, ``../shared/conformance/autobahn``, ``wstest`` on
    PATH, Docker) is in :func:`_autobahn_runner`.  Without any, the session
    is skipped with a message that says where to get it.
    """
    if "--quick" in session.posargs:
        exclude, expected = QUICK_EXCLUDE.split(","), 337
    else:
        exclude, expected = [], 517
    out = (Path(".conformance") / "autobahn").resolve()
    runner = _autobahn_runner(session, out, ["*"], exclude)
    session.install(".")
    python = str(Path(session.bin) / "python")
    server = subprocess.Popen(
        [python, "-u", "examples/ws_echo.py", "--port", "0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if match is None:
            session.error(f"the echo server did not start: {line!r}")
        runner(f"ws://127.0.0.1:{match[1]}/")
    finally:
        server.send_signal(signal.SIGTERM)  # the example stops gracefully
        try:
            server.wait(timeout=30)
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


def _autobahn_runner(session: nox.Session, out: Path, cases: list[str],
                     exclude: list[str]) -> Callable[[str], None]:
    """How to run Autobahn|Testsuite's fuzzing client here, or skip the session.

    In this order: the harness directory named by ``MHD2_AUTOBAHN`` (an error if it
    is not one), the one in ``../shared/conformance/autobahn``, ``wstest`` on PATH
    (the ``autobahntestsuite`` package, which needs Python 2.7), Docker's
    ``crossbario/autobahn-testsuite`` image.  None of these: skip, saying where to
    get one.  The report goes to *out* (``index.json``, ``index.html``).
    """
    named = os.environ.get("MHD2_AUTOBAHN")
    if named and not (Path(named) / "run.sh").exists():
        session.error(f"MHD2_AUTOBAHN={named} has no run.sh: point it at an Autobahn harness"
                      " directory (setup.sh + run.sh), or unset it")
    harness = Path(named) if named else AUTOBAHN_SHARED
    if (harness / "run.sh").exists():
        def run_harness(url: str) -> None:
            venv = Path(os.environ.get("AUTOBAHN_VENV",
                                       Path.home() / ".cache" / "autobahn-venv"))
            if not (venv / "bin" / "wstest").exists():
                session.run("bash", str(harness / "setup.sh"), external=True)
            args = ["--full"] if not exclude else ["--cases", ",".join(cases),
                                                   "--exclude", ",".join(exclude)]
            session.run("bash", str(harness / "run.sh"), url, str(out), *args,
                        "--timeout", "2400", external=True)
        return run_harness

    def spec(url: str, outdir: str) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        (out / "index.json").unlink(missing_ok=True)
        path = out / "spec.json"
        path.write_text(json.dumps({
            "outdir": outdir, "servers": [{"agent": "mhd2", "url": url}],
            "cases": cases, "exclude-cases": exclude, "exclude-agent-cases": {},
        }, indent=2))
        return path

    wstest = shutil.which("wstest")
    if wstest is not None:
        def run_wstest(url: str) -> None:
            session.run(wstest, "-m", "fuzzingclient", "-s", str(spec(url, str(out))),
                        external=True)
        return run_wstest
    docker = shutil.which("docker")
    docker_says = ""
    if docker is not None:
        try:  # installed is not enough: the daemon must answer
            info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=30)
            docker_says = "" if info.returncode == 0 else (info.stderr.strip().splitlines()
                                                           or ["docker info failed"])[-1]
        except (OSError, subprocess.TimeoutExpired) as exc:
            docker_says = str(exc)
    if docker is not None and not docker_says:
        def run_docker(url: str) -> None:
            spec(url, "/report")
            session.run(docker, "run", "--rm", "--network", "host",
                        "-v", f"{out}:/report", AUTOBAHN_IMAGE,
                        "wstest", "-m", "fuzzingclient", "-s", "/report/spec.json",
                        external=True)
        return run_docker
    session.skip(
        "no Autobahn|Testsuite found. It is not part of this repository: this session "
        "runs its fuzzing client, wstest, which comes as the PyPI package "
        "'autobahntestsuite' (Python 2.7 only: put a 2.7 virtualenv's wstest on PATH) or "
        f"as the Docker image {AUTOBAHN_IMAGE} (install Docker; the image is pulled"
        + (f"; docker is installed but not usable: {docker_says}" if docker_says else "")
        + "). Or set MHD2_AUTOBAHN to a harness directory with setup.sh and run.sh "
        f"(looked for {AUTOBAHN_SHARED})."
    )
    raise AssertionError("unreachable")  # session.skip raises
