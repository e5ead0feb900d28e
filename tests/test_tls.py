"""TLS: server_context, protocol floor, client certificates, SNI, handshake limits.

Clients: httpx, Python's ``ssl`` sockets (in a worker thread), trio's
SSLStream, ``openssl s_client`` and ``curl``.
"""

from __future__ import annotations

import logging
import shutil
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
import trustme
from conftest import WAIT, read_until_close, running, settled, text_response

import mhd2
from mhd2.tls import certificate_details, server_context


@dataclass
class PKI:
    ca: trustme.CA
    server: trustme.LeafCert
    other: trustme.LeafCert
    client: trustme.LeafCert
    stranger: trustme.LeafCert  # from another CA

    def context(self, **kwargs: Any) -> ssl.SSLContext:
        return server_context(self.server.cert_chain_pems[0].bytes(),
                              self.server.private_key_pem.bytes(), **kwargs)

    def client_context(self, cert: trustme.LeafCert | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        if cert is not None:
            cert.configure_cert(ctx)
        return ctx


@pytest.fixture(scope="module")
def pki() -> PKI:
    ca = trustme.CA()
    return PKI(
        ca=ca,
        server=ca.issue_cert("localhost", "127.0.0.1", "a.example"),
        other=ca.issue_cert("b.example"),
        client=ca.issue_cert("alice@example.org", common_name="alice",
                             organization_name="Example Org"),
        stranger=trustme.CA().issue_cert("mallory@example.org", common_name="mallory"),
    )


def echo_connection(seen: list[mhd2.ConnectionInfo]) -> Any:
    def cb(request: mhd2.Request) -> mhd2.Action:
        seen.append(request.connection)
        return text_response(request, b"secure")
    return cb


def blocking_get(port: int, ctx: ssl.SSLContext, server_hostname: str | None = "localhost",
                 ) -> tuple[bytes, dict[str, Any] | None]:
    """One GET over a plain Python ssl socket; the response and the server's cert."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
            peer = tls.getpeercert()
            tls.sendall(b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
            return data, peer


def refused(port: int, ctx: ssl.SSLContext) -> bool:
    """Whether the server refuses this client (under TLS 1.3 the client may only
    see the refusal as an alert or a close after its handshake finished)."""
    try:
        data, _ = blocking_get(port, ctx)
    except (ssl.SSLError, ConnectionError):
        return True
    return data == b""


def san_dns(cert: dict[str, Any] | None) -> set[str]:
    assert cert is not None
    return {v for k, v in cert.get("subjectAltName", ()) if k == "DNS"}


async def test_httpx_https_and_connection_info(pki: PKI) -> None:
    seen: list[mhd2.ConnectionInfo] = []
    async with running(echo_connection(seen), tls=pki.context()) as daemon:
        with trio.fail_after(WAIT):
            async with httpx.AsyncClient(verify=pki.client_context()) as client:
                r = await client.get(f"https://localhost:{daemon.port}/")
                r2 = await client.get(f"https://localhost:{daemon.port}/again")
    assert (r.status_code, r.text, r2.status_code) == (200, "secure", 200)
    info = seen[0]
    assert info.tls_version in ("TLSv1.2", "TLSv1.3")
    assert info.cipher and ("GCM" in info.cipher or "CHACHA20" in info.cipher)
    assert info.alpn_protocol == "http/1.1"
    assert info.server_name == "localhost"
    assert info.peer_certificate is None and info.peer_subject is None
    assert seen[1].client_address == info.client_address  # keep-alive over TLS


async def test_plain_daemon_has_no_tls_info() -> None:
    seen: list[mhd2.ConnectionInfo] = []
    async with running(echo_connection(seen)) as daemon:
        async with httpx.AsyncClient() as client:
            with trio.fail_after(WAIT):
                assert (await client.get(f"http://127.0.0.1:{daemon.port}/")).status_code == 200
    assert seen[0].tls_version is None and seen[0].server_name is None


async def test_pem_from_files_and_encrypted_key(pki: PKI, tmp_path: Path) -> None:
    cert_file, key_file = tmp_path / "c.pem", tmp_path / "k.pem"
    pki.server.cert_chain_pems[0].write_to_path(str(cert_file))
    pki.server.private_key_pem.write_to_path(str(key_file))
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pki.server.private_key_pem.bytes(), None)
    encrypted = key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(b"s3cret"))
    with pytest.raises(ssl.SSLError):
        server_context(pki.server.cert_chain_pems[0].bytes(), encrypted, password="wrong")
    for ctx in (server_context(cert_file, key_file),
                server_context(str(cert_file), str(key_file)),
                server_context(pki.server.cert_chain_pems[0].bytes().decode(), encrypted,
                               password="s3cret")):
        async with running(echo_connection([]), tls=ctx) as daemon:
            data, _ = await trio.to_thread.run_sync(blocking_get, daemon.port,
                                                    pki.client_context())
        assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"secure")


async def test_tls12_floor_and_modern_ciphers(pki: PKI) -> None:
    ctx = pki.context()
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    names = {c["name"] for c in ctx.get_ciphers()}
    assert names and not any("CBC" in n or n.startswith("AES128-SHA") or "RC4" in n for n in names)
    assert all(c["protocol"] == "TLSv1.3" or "ECDHE" in c["name"] or "DHE" in c["name"]
               for c in ctx.get_ciphers())
    async with running(echo_connection([]), tls=ctx) as daemon:
        # a TLS 1.2 client is served ...
        c12 = pki.client_context()
        c12.maximum_version = ssl.TLSVersion.TLSv1_2
        data, _ = await trio.to_thread.run_sync(blocking_get, daemon.port, c12)
        assert data.startswith(b"HTTP/1.1 200 ")
        # ... an old-protocol client is refused (openssl s_client -tls1_1)
        if shutil.which("openssl"):
            proc = await run(["openssl", "s_client", "-connect", f"127.0.0.1:{daemon.port}",
                              "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"], stdin=b"")
            assert proc.returncode != 0 or b"Cipher is (NONE)" in proc.stdout


async def run(argv: list[str], stdin: bytes = b"") -> Any:
    with trio.fail_after(WAIT):
        return await trio.run_process(argv, stdin=stdin, capture_stdout=True,
                                      capture_stderr=True, check=False)


# -- client certificates ----------------------------------------------------------


async def test_client_certificate_required(pki: PKI) -> None:
    seen: list[mhd2.ConnectionInfo] = []
    ctx = pki.context(client_ca_pem=pki.ca.cert_pem.bytes())
    async with running(echo_connection(seen), tls=ctx) as daemon:
        data, _ = await trio.to_thread.run_sync(blocking_get, daemon.port,
                                                pki.client_context(pki.client))
        assert data.startswith(b"HTTP/1.1 200 ")
        for cert in (None, pki.stranger):  # no certificate, or one from another CA
            assert await trio.to_thread.run_sync(refused, daemon.port, pki.client_context(cert))
    assert len(seen) == 1
    info = seen[0]
    assert info.peer_subject is not None
    assert "CN=alice" in info.peer_subject and "O=Example Org" in info.peer_subject
    assert ("email", "alice@example.org") in info.peer_alt_names
    details = certificate_details(info.peer_certificate)
    assert details["subject"] == info.peer_subject
    assert details["issuer"] is not None and "trustme" in details["issuer"]
    expected_serial = pki.client.cert_chain_pems[0].bytes()
    from cryptography import x509

    parsed = x509.load_pem_x509_certificate(expected_serial)
    assert details["serial_number"] == parsed.serial_number
    now = datetime.now(UTC)
    assert details["not_before"] <= now <= details["not_after"]


async def test_client_certificate_optional(pki: PKI) -> None:
    seen: list[mhd2.ConnectionInfo] = []
    ctx = pki.context(client_ca_pem=pki.ca.cert_pem.bytes(), client_cert_optional=True)
    async with running(echo_connection(seen), tls=ctx) as daemon:
        for cert in (None, pki.client):
            data, _ = await trio.to_thread.run_sync(blocking_get, daemon.port,
                                                    pki.client_context(cert))
            assert data.startswith(b"HTTP/1.1 200 ")
        # a certificate that does not verify is still refused
        assert await trio.to_thread.run_sync(refused, daemon.port,
                                             pki.client_context(pki.stranger))
    assert seen[0].peer_certificate is None
    assert seen[1].peer_subject is not None and "CN=alice" in seen[1].peer_subject


async def test_connection_info_certificate_fields(pki: PKI) -> None:
    seen: list[mhd2.ConnectionInfo] = []
    ctx = pki.context(client_ca_pem=pki.ca.cert_pem.bytes())
    async with running(echo_connection(seen), tls=ctx) as daemon:
        await trio.to_thread.run_sync(blocking_get, daemon.port, pki.client_context(pki.client))
    info: Any = seen[0]
    assert "trustme" in info.peer_issuer
    assert isinstance(info.peer_serial, int)
    assert info.peer_not_before < info.peer_not_after


@pytest.mark.skipif(not shutil.which("curl"), reason="needs curl")
async def test_curl_client_certificate(pki: PKI, tmp_path: Path) -> None:
    ca_file, cert_file = tmp_path / "ca.pem", tmp_path / "client.pem"
    pki.ca.cert_pem.write_to_path(str(ca_file))
    pki.client.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    seen: list[mhd2.ConnectionInfo] = []
    ctx = pki.context(client_ca_pem=str(ca_file))
    async with running(echo_connection(seen), tls=ctx) as daemon:
        url = f"https://localhost:{daemon.port}/"
        ok = await run(["curl", "-sS", "--cacert", str(ca_file), "--cert", str(cert_file), url])
        refused = await run(["curl", "-sS", "--cacert", str(ca_file), url])
    assert (ok.returncode, ok.stdout) == (0, b"secure")
    assert refused.returncode != 0
    assert len(seen) == 1 and seen[0].peer_subject is not None
    assert "CN=alice" in seen[0].peer_subject


# -- SNI ---------------------------------------------------------------------------


def sni_pems(pki: PKI) -> dict[str, tuple[bytes, bytes]]:
    return {"b.example": (pki.other.cert_chain_pems[0].bytes(),
                          pki.other.private_key_pem.bytes())}


async def test_sni_mapping_and_default(pki: PKI) -> None:
    seen: list[mhd2.ConnectionInfo] = []
    async with running(echo_connection(seen), tls=pki.context(sni=sni_pems(pki))) as daemon:
        client = pki.client_context()
        client.check_hostname = False  # look at which certificate comes back
        results = {}
        for name in ("b.example", "B.Example", "a.example", "unknown.example"):
            data, cert = await trio.to_thread.run_sync(blocking_get, daemon.port, client, name)
            assert data.startswith(b"HTTP/1.1 200 ")
            results[name] = san_dns(cert)
    assert "b.example" in results["b.example"] and "b.example" in results["B.Example"]
    assert "a.example" in results["a.example"]
    assert "a.example" in results["unknown.example"]  # the default certificate
    assert [i.server_name for i in seen] == ["b.example", "B.Example", "a.example",
                                             "unknown.example"]


async def test_sni_strict_and_callable(pki: PKI) -> None:
    other = server_context(pki.other.cert_chain_pems[0].bytes(), pki.other.private_key_pem.bytes())
    asked: list[str] = []

    def choose(name: str) -> ssl.SSLContext | None:
        asked.append(name)
        return other if name == "b.example" else None

    ctx = pki.context(sni=choose, sni_strict=True)
    async with running(echo_connection([]), tls=ctx) as daemon:
        client = pki.client_context()
        client.check_hostname = False
        _, cert = await trio.to_thread.run_sync(blocking_get, daemon.port, client, "b.example")
        assert "b.example" in san_dns(cert)
        # the handshake fails (trio does not flush the unrecognized_name alert,
        # so the client may only see the close)
        with pytest.raises(ssl.SSLError):
            await trio.to_thread.run_sync(blocking_get, daemon.port, client, "nope.example")
        # no SNI at all: the default certificate
        _, cert = await trio.to_thread.run_sync(blocking_get, daemon.port, client, None)
        assert "a.example" in san_dns(cert)
    assert asked == ["b.example", "nope.example"]


@pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl")
async def test_openssl_s_client_sni_and_alpn(pki: PKI, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    pki.ca.cert_pem.write_to_path(str(ca_file))
    seen: list[mhd2.ConnectionInfo] = []
    async with running(echo_connection(seen), tls=pki.context(sni=sni_pems(pki))) as daemon:
        proc = await run(["openssl", "s_client", "-connect", f"127.0.0.1:{daemon.port}",
                          "-servername", "b.example", "-verify_hostname", "b.example", "-alpn", "http/1.1", "-CAfile",
                          str(ca_file), "-verify_return_error", "-quiet", "-ign_eof"],
                         stdin=b"GET / HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n")
    assert proc.stdout.startswith(b"HTTP/1.1 200 ") and proc.stdout.endswith(b"secure")
    assert b"verify error" not in proc.stderr  # the certificate for b.example came back
    assert seen[0].server_name == "b.example" and seen[0].alpn_protocol == "http/1.1"


async def test_tls_close_sends_close_notify(pki: PKI) -> None:
    def get_strict(port: int) -> bytes:
        ctx = pki.client_context()
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost",
                                 suppress_ragged_eofs=False) as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := tls.recv(65536):  # SSLEOFError without close_notify
                    data += chunk
                return data

    async with running(echo_connection([]), tls=pki.context()) as daemon:
        data = await trio.to_thread.run_sync(get_strict, daemon.port)
    assert data.endswith(b"secure")


# -- bad clients and load -------------------------------------------------------


async def test_plain_http_on_tls_port_is_closed_quietly(
    pki: PKI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mhd2")
    async with running(echo_connection([]), tls=pki.context()) as daemon:
        with trio.fail_after(WAIT):
            stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
            async with stream:
                await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                received = await read_until_close(stream)
        # nothing but (at most) a TLS alert record came back, then the close
        assert received == b"" or received.startswith(b"\x15\x03") or received.startswith(
            b"HTTP/1.1 400 ")
        # and the daemon still serves TLS clients
        data, _ = await trio.to_thread.run_sync(blocking_get, daemon.port, pki.client_context())
        assert data.startswith(b"HTTP/1.1 200 ")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_silent_client_is_cut_off_by_handshake_timeout(
        pki: PKI, autojump_clock: trio.testing.MockClock) -> None:
    """Real sockets on MockClock: the handshake timeout passes in virtual time."""
    async with running(echo_connection([]), tls=pki.context(), timeout=0.5) as daemon:
        stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
        async with stream:
            start = trio.current_time()
            with trio.fail_after(5):
                try:
                    assert await stream.receive_some(100) == b""
                except trio.BrokenResourceError:
                    pass
            assert trio.current_time() - start >= 0.4
            await settled()
            assert daemon.connection_count == 0


async def test_200_concurrent_tls_handshakes(pki: PKI) -> None:
    client = pki.client_context()
    done: list[bytes] = []

    async def one() -> None:
        tcp = await trio.open_tcp_stream("127.0.0.1", daemon.port)
        tls = trio.SSLStream(tcp, client, server_hostname="localhost")
        async with tls:
            await tls.send_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                try:
                    chunk = await tls.receive_some(65536)
                except trio.BrokenResourceError:
                    break
                if not chunk:
                    break
                data += chunk
            done.append(data)

    async with running(echo_connection([]), tls=pki.context()) as daemon:
        with trio.fail_after(25):
            async with trio.open_nursery() as nursery:
                for _ in range(200):
                    nursery.start_soon(one)
    assert len(done) == 200
    assert all(d.startswith(b"HTTP/1.1 200 ") and d.endswith(b"secure") for d in done)
