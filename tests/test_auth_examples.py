"""The authentication, TLS and session examples, run as the user would run them."""

from __future__ import annotations

import hashlib
import re
import shutil
import ssl
from pathlib import Path

import httpx
import pytest
import trio
import trustme
from test_examples import example, fetch

SECRET = b"<html><body>A secret.</body></html>"


async def test_basicauthentication() -> None:
    async with example("basicauthentication.py") as ex:
        r = await fetch(ex.url)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == 'Basic realm="admins", charset="UTF-8"'
        assert r.content == b"<html><body>Authorization required</body></html>"
        with trio.fail_after(10):
            async with httpx.AsyncClient() as client:
                ok = await client.get(ex.url, auth=("root", "pa$$w0rd"))
                wrong = await client.get(ex.url, auth=("root", "password"))
                broken = await client.get(ex.url, headers={"Authorization": "Basic %%%"})
                post = client.post(ex.url, auth=("root", "pa$$w0rd"), content=b"x")
                with pytest.raises(httpx.TransportError):  # non-GET: MHD_NO, aborted
                    await post
        assert (ok.status_code, ok.content) == (200, SECRET)
        assert wrong.status_code == 401
        assert wrong.content == b"<html><body>Wrong username or password</body></html>"
        assert broken.status_code == 401
        await ex.stdin.send_all(b"\n")
        with trio.fail_after(15):
            assert await ex.process.wait() == 0


async def test_tlsauthentication_with_generated_certificate(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    async with example("tlsauthentication.py", "--ca-out", str(ca_file)) as ex:
        assert ca_file.exists()
        url = f"https://localhost:{ex.port}/"
        with trio.fail_after(10):
            async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(ca_file))) \
                    as client:
                denied = await client.get(url)
                ok = await client.get(url, auth=("a legitimate user", "and his password"))
            async with httpx.AsyncClient() as plain:  # HTTP on the HTTPS port: 400, a hint
                wrong_scheme = await plain.get(f"http://127.0.0.1:{ex.port}/")
        assert wrong_scheme.status_code == 400 and "https://" in wrong_scheme.text
        assert denied.status_code == 401
        assert denied.headers["www-authenticate"] == 'Basic realm="Maintenance", charset="UTF-8"'
        assert (ok.status_code, ok.content) == (200, SECRET)
        assert ok.http_version == "HTTP/1.1"


@pytest.mark.skipif(not shutil.which("curl"), reason="needs curl")
async def test_tlsauthentication_with_certificate_files(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    cert, key, ca_file = tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    async with example("tlsauthentication.py", "--cert", str(cert), "--key", str(key)) as ex:
        with trio.fail_after(10):
            done = await trio.run_process(
                ["curl", "-sS", "--cacert", str(ca_file), "-u",
                 "a legitimate user:and his password", f"https://localhost:{ex.port}/"],
                capture_stdout=True, capture_stderr=True)
        assert done.stdout == SECRET
        context = ssl.create_default_context()
        ca.configure_trust(context)
        with trio.fail_after(10):
            async with httpx.AsyncClient(verify=context) as client:
                assert (await client.get(f"https://localhost:{ex.port}/")).status_code == 401


@pytest.mark.skipif(not shutil.which("curl"), reason="needs curl")
async def test_digestauth_with_curl_and_httpx() -> None:
    async with example("digestauth.py") as ex:
        with trio.fail_after(10):
            ok = await trio.run_process(["curl", "-sS", "--digest", "-u", "testuser:testpass",
                                         ex.url + "/private?x=1"],
                                        capture_stdout=True, capture_stderr=True)
            bad = await trio.run_process(["curl", "-sS", "-o", "/dev/null", "-w",
                                          "%{http_code}", "--digest", "-u", "testuser:nope",
                                          ex.url], capture_stdout=True, capture_stderr=True)
            async with httpx.AsyncClient(auth=httpx.DigestAuth("testuser", "testpass")) as c:
                r = await c.get(ex.url)
            plain = await fetch(ex.url)
        assert b"Access granted" in ok.stdout
        assert bad.stdout == b"401"
        assert r.status_code == 200 and b"Access granted" in r.content
        assert plain.status_code == 401
        headers = plain.headers.get_list("www-authenticate")
        assert [re.search(r"algorithm=([\w-]+)", h)[1] for h in headers  # type: ignore[index]
                ] == ["SHA-256", "MD5"]


@pytest.mark.skipif(not shutil.which("curl"), reason="needs curl")
async def test_digestauth_stores_userdigests_userhash_and_utf8_names() -> None:
    """The example keeps no passwords: users found by name or userhash, UTF-8 names work."""
    async with example("digestauth.py", "--userhash", "--algo", "md5") as ex:
        with trio.fail_after(10):
            results = []
            for user in ("testuser:testpass", "jürgen:geheim", "jürgen:testpass",
                         "nobody:testpass"):
                done = await trio.run_process(
                    ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--digest",
                     "-u", user, ex.url + "/x"], capture_stdout=True, capture_stderr=True)
                results.append(done.stdout)
            plain = await fetch(ex.url)
            # a well-formed answer by a known user (by userhash) with an algorithm
            # that was not offered: challenged again, not a crash
            nonce = re.search(r'nonce="(\w+)"', plain.headers["www-authenticate"])[1]  # type: ignore[index]
            uh = hashlib.sha256(b"testuser:test@example.com").hexdigest()
            other = await fetch(ex.url, [("Authorization", (
                f'Digest username="{uh}", userhash=true, realm="test@example.com", '
                f'nonce="{nonce}", uri="/", response="00", algorithm=SHA-256, qop=auth, '
                'nc=00000001, cnonce="c"'))])
    assert results == [b"200", b"200", b"401", b"401"]
    assert "userhash=true" in plain.headers["www-authenticate"]
    assert plain.headers["content-type"] == "text/html"
    assert other.status_code == 401


async def test_sessions_form_flow_and_expiry() -> None:
    async with example("sessions.py", "--session-timeout", "600") as ex:
        with trio.fail_after(15):
            async with httpx.AsyncClient(base_url=ex.url) as alice, \
                    httpx.AsyncClient(base_url=ex.url) as bob:
                first = await alice.get("/")
                assert first.status_code == 200 and 'name="v1" value=""' in first.text
                sid = alice.cookies["session"]
                assert len(sid) >= 40  # secrets.token_urlsafe(32)
                assert "HttpOnly" in first.headers["set-cookie"]
                r = await alice.post("/2", data={"v1": "Alice <3"})
                assert "Alice &lt;3, what is your job?" in r.text
                await bob.get("/")
                assert bob.cookies["session"] != sid
                r = await bob.post("/2", data={"v1": "Bob"})
                assert "Bob, what is your job?" in r.text
                r = await alice.post("/S", data={"v2": "engineer"})
                assert "Ready to submit?" in r.text
                again = await alice.get("/2")  # the session remembers both answers
                assert 'value="engineer"' in again.text and "Alice &lt;3" in again.text
                r = await alice.post("/F", data={"DONE": "yes"})
                assert r.text.endswith("Thank you.</body></html>")
                assert alice.cookies["session"] == sid
                assert (await alice.get("/nope")).status_code == 404
                assert (await alice.put("/", content=b"x")).status_code == 406
                # an unknown (or forged) cookie starts a fresh session
                async with httpx.AsyncClient(base_url=ex.url,
                                             cookies={"session": "forged"}) as mallory:
                    r = await mallory.get("/")
                assert "forged" not in r.headers["set-cookie"]
                # too large a form is refused, not crashed on
                r = await alice.post("/2", data={"v1": "x" * 5000})
                assert r.status_code == 413
        lines = await ex.lines_until(f"Session `{sid}' submitted `Alice <3', `engineer'")
        assert lines[-1].startswith("Session")


async def test_sessions_expire_when_idle() -> None:
    async with example("sessions.py", "--session-timeout", "0.000001") as ex:
        with trio.fail_after(15):
            async with httpx.AsyncClient(base_url=ex.url) as client:
                await client.get("/")
                sid = client.cookies["session"]
                await client.post("/2", data={"v1": "Carol"})
                r = await client.get("/")  # idle longer than the timeout: a new session
                assert client.cookies["session"] != sid
                assert 'value=""' in r.text


async def test_sessions_disable_cookies() -> None:
    async with example("sessions.py", "--disable-cookies") as ex:
        with trio.fail_after(15):
            async with httpx.AsyncClient(base_url=ex.url) as client:
                await client.get("/")
                sid = client.cookies["session"]
                await client.post("/2", data={"v1": "Dave"})
                r = await client.get("/2")
                assert "Dave" not in r.text  # the cookie is not seen: a new session
                assert client.cookies["session"] != sid
