"""h2spec (HTTP/2 conformance, RFC 9113 and RFC 7541) against a daemon that also
serves WebSockets over HTTP/2: announcing SETTINGS_ENABLE_CONNECT_PROTOCOL and
accepting ``:protocol`` must not cost a case.

Runs when an h2spec binary is found: ``MHD2_H2SPEC``, or where
``/work/shared/conformance/h2spec/setup.sh`` (``/tmp/h2spec-build/h2spec``)
or ``bench/h2spec/build.sh`` put it; skipped otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import trio
import trustme
from conftest import running, text_response

import mhd2
from mhd2.tls import server_context
from mhd2.websocket import WebSocket, action_websocket

CANDIDATES = [os.environ.get("MHD2_H2SPEC", ""), "/tmp/h2spec-build/h2spec",
              "/tmp/h2-h2spec/h2spec", shutil.which("h2spec") or ""]
H2SPEC = next((path for path in CANDIDATES if path and os.access(path, os.X_OK)), None)
#: The one known failure, on h2c only: a connection that does not start with
#: the HTTP/2 preface is served as HTTP/1 (answered 400 and closed), where
#: h2spec wants a GOAWAY (hypercorn fails it the same way).
KNOWN_H2C = {"http2/3.5 Sends invalid connection preface"}

pytestmark = pytest.mark.skipif(H2SPEC is None, reason="no h2spec binary (set MHD2_H2SPEC)")


async def echo(ws: WebSocket) -> None:
    while True:
        await ws.send(await ws.receive())


def cb(request: mhd2.Request) -> mhd2.Action:
    if request.path == "/ws":
        return action_websocket(request, echo)
    return text_response(request, b"hello h2spec\n")


def failures(report: Path) -> set[str]:
    """The failed cases of an h2spec JUnit report, as 'package title' (an
    ``<error>`` or a ``<failure>`` in the case)."""
    out = set()
    for case in re.finditer(r'<testcase package="([^"]*)" classname="([^"]*)"[^>]*?'
                            r'(?:/>|>(.*?)</testcase>)', report.read_text(), re.S):
        body = case.group(3) or ""
        if "<error" in body or "<failure" in body:
            out.add(f"{case.group(1)} {case.group(2)}")
    return out


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "h2-tls"])
async def test_h2spec_passes_with_extended_connect_on(tls: bool, tmp_path: Path) -> None:
    options = {}
    if tls:
        cert = trustme.CA().issue_cert("127.0.0.1")
        options["tls"] = server_context(cert.cert_chain_pems[0].bytes(),
                                        cert.private_key_pem.bytes())
    report = tmp_path / "h2spec.xml"
    async with running(cb, **options) as daemon:
        assert H2SPEC is not None
        args = [H2SPEC, "-h", "127.0.0.1", "-p", str(daemon.port), "-o", "3", "-j", str(report)]
        if tls:
            args += ["-t", "-k"]
        with trio.fail_after(240):
            result = await trio.run_process(args, capture_stdout=True, stderr=subprocess.STDOUT,
                                            check=False)
    summary = result.stdout.decode(errors="replace").strip().splitlines()[-1]
    counts = re.search(r"(\d+) tests, (\d+) passed", summary)
    assert counts is not None and int(counts.group(1)) >= 140, summary
    failed = failures(report)
    assert failed <= (set() if tls else KNOWN_H2C), (summary, failed)
    assert int(counts.group(1)) - int(counts.group(2)) == len(failed), (summary, failed)
