"""SIGHUP, with and without ``--workers``: new code, fresh TLS files, no lost request."""

from __future__ import annotations

import os
import signal
import socket
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from test_cli import running, start

SOURCE = """
import os
import sys
import trio
import mhd2

VERSION = {version!r}

async def handle(request):
    if request.path == "/slow":
        print("slow request started", file=sys.stderr, flush=True)
        # Held until the test creates the file "release": in flight across the
        # reload for sure.  (Another process's file: nothing to wait on but it.)
        release = os.path.join(os.path.dirname(__file__), "release")
        with trio.fail_after(30):
            while not os.path.exists(release):
                await trio.sleep(0.01)
    body = f"{{VERSION}} {{os.getpid()}}".encode()
    return mhd2.action_from_response(request, mhd2.Response.from_buffer_copy(200, body))
"""


async def test_sighup_without_workers_reexecs_on_the_same_socket(tmp_path: Path) -> None:
    module = tmp_path / "hup_app.py"
    module.write_text(SOURCE.format(version="one"))
    argv = ["run", "hup_app:handle", "--port", "0", "--no-access-log"]
    statuses: list[int] = []
    bodies: list[str] = []
    async with running(argv, tmp_path) as (process, stderr, port):
        url = f"http://127.0.0.1:{port}"
        done = trio.Event()
        slow: list[httpx.Response] = []

        async def load() -> None:
            async with httpx.AsyncClient(headers={"Connection": "close"}) as client:
                while not done.is_set():
                    r = await client.get(url + "/")
                    statuses.append(r.status_code)
                    bodies.append(r.text)

        async def in_flight(started: trio.Event) -> None:
            async with httpx.AsyncClient() as client:
                request = client.get(url + "/slow")
                started.set()
                slow.append(await request)

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for _ in range(2):
                    nursery.start_soon(load)
                started = trio.Event()
                nursery.start_soon(in_flight, started)
                await started.wait()
                await stderr.until("slow request started")
                module.write_text(SOURCE.format(version="two"))
                process.send_signal(signal.SIGHUP)
                await stderr.until("SIGHUP, reloading")
                (tmp_path / "release").touch()  # the reload began: let /slow end
                await stderr.until("mhd2: running hup_app:handle")
                while not bodies or not bodies[-1].startswith("two "):
                    await trio.sleep(0.05)
                done.set()
        assert slow[0].status_code == 200 and slow[0].text.startswith("one ")
        assert process.returncode is None  # SIGHUP did not kill it
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(40):
            assert await process.wait() == 0
    assert set(statuses) == {200}
    assert bodies[0] == f"one {process.pid}" and bodies[-1] == f"two {process.pid}"


trustme = pytest.importorskip("trustme")


def write_pair(cert: Any, directory: Path) -> None:
    cert.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    cert.private_key_pem.write_to_path(str(directory / "key.pem"))


def served_certificate(port: int, ca: Any) -> str:
    """The serial number of the certificate a TLS client is shown now."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        cert = tls.getpeercert()
        assert cert is not None
        return str(cert["serialNumber"])


async def test_sighup_with_workers_reads_the_tls_files_again(tmp_path: Path) -> None:
    (tmp_path / "hup_app.py").write_text(SOURCE.format(version="one"))
    ca = trustme.CA()
    first, second = ca.issue_cert("127.0.0.1"), ca.issue_cert("127.0.0.1")
    write_pair(first, tmp_path)
    argv = ["run", "hup_app:handle", "--port", "0", "--workers", "2", "--no-access-log",
            "--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem")]
    process, stderr = await start(argv, cwd=tmp_path)
    try:
        line = await stderr.until("mhd2: running", timeout=30)
        port = int(line.split(":")[-1].split("/")[0])
        before = await trio.to_thread.run_sync(served_certificate, port, ca)
        write_pair(second, tmp_path)  # a renewed certificate, as certbot leaves it
        process.send_signal(signal.SIGHUP)
        await stderr.until("reload done", timeout=60)
        # "reload done" comes once the old workers are gone, not before
        replaced = [line for line in stderr.seen if "stopped (replaced)" in line]
        assert len(replaced) == 2, stderr.seen
        after = await trio.to_thread.run_sync(served_certificate, port, ca)
        assert before != after
        for _ in range(5):  # every worker: each new connection may reach either
            assert await trio.to_thread.run_sync(served_certificate, port, ca) == after

        # bad new files: one sentence, and the workers serving now go on
        (tmp_path / "key.pem").write_text("garbage\n")
        process.send_signal(signal.SIGHUP)
        refused = await stderr.until("reload refused", timeout=30)
        assert str(tmp_path / "key.pem") in refused
        assert await trio.to_thread.run_sync(served_certificate, port, ca) == after
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(40):
            assert await process.wait() == 0
        rest = await stderr.rest()
        assert "reload done" not in rest and "SIGHUP: reloading" not in rest
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_sighup_without_workers_bad_tls_keeps_serving(tmp_path: Path) -> None:
    (tmp_path / "hup_app.py").write_text(SOURCE.format(version="one"))
    ca = trustme.CA()
    write_pair(ca.issue_cert("127.0.0.1"), tmp_path)
    argv = ["run", "hup_app:handle", "--port", "0", "--no-access-log",
            "--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem")]
    process, stderr = await start(argv, cwd=tmp_path)
    try:
        line = await stderr.until("mhd2: running", timeout=30)
        port = int(line.split(":")[-1].split("/")[0])
        before = await trio.to_thread.run_sync(served_certificate, port, ca)
        os.unlink(tmp_path / "cert.pem")
        process.send_signal(signal.SIGHUP)
        refused = await stderr.until("reload refused", timeout=30)
        assert "cert.pem" in refused and "No such file" in refused
        assert await trio.to_thread.run_sync(served_certificate, port, ca) == before
        write_pair(ca.issue_cert("127.0.0.1"), tmp_path)
        process.send_signal(signal.SIGHUP)
        await stderr.until("mhd2: running", timeout=30)
        assert await trio.to_thread.run_sync(served_certificate, port, ca) != before
    finally:
        if process.returncode is None:
            process.kill()
        with trio.fail_after(10):
            await process.wait()
