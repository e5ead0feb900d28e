"""MHD2's auth API completeness (docs/libmicrohttpd.rst), over a real daemon with httpx and curl.

* ``request.digest_auth_info`` -- who the client claims to be, before checking;
* ``mhd2.digest_auth_calc_userdigest`` + ``request.digest_auth_check_digest`` --
  an application that stores hashes, never passwords, and finds users by name
  or by userhash;
* prepared, reusable 401 challenges (``response_add_auth_basic_challenge``,
  ``mhd2.DigestChallenge`` with a fresh nonce per send);
* issue 9 item 12: a Digest ``uri`` that ``urlsplit`` refuses is a 401, not a 500.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from typing import Any

import httpx
import pytest
import trio
from conftest import WAIT, exchange, running, status_of, text_response
from hypothesis import HealthCheck, given, settings
from test_auth_sansio import authorization_values

import mhd2
from mhd2 import DigestAuthAlgo as Algo
from mhd2 import DigestAuthResult as R
from mhd2._auth.common import parse_auth_params

REALM = "users@example.com"
RANDOM = b"r" * 32
needs_curl = pytest.mark.skipif(not shutil.which("curl"), reason="needs curl")


def challenges(response: httpx.Response) -> list[dict[str, str]]:
    return [parse_auth_params(v.removeprefix("Digest "))
            for v in response.headers.get_list("www-authenticate")]


def hand_answer(ch: dict[str, str], uri: str, user: str, password: str, nc: int = 1) -> str:
    """``Authorization: Digest`` for challenge *ch* computed by hand (SHA-256 or MD5)."""
    new = hashlib.sha256 if ch["algorithm"] == "SHA-256" else hashlib.md5

    def hh(text: str) -> str:
        return new(text.encode()).hexdigest()

    ha1 = hh(f"{user}:{ch['realm']}:{password}")
    resp = hh(f"{ha1}:{ch['nonce']}:{nc:08x}:cn:auth:{hh('GET:' + uri)}")
    return (f'Digest username="{user}", realm="{ch["realm"]}", nonce="{ch["nonce"]}", '
            f'uri="{uri}", response="{resp}", algorithm={ch["algorithm"]}, qop=auth, '
            f'nc={nc:08x}, cnonce="cn"')


async def curl(*args: str) -> tuple[int, bytes]:
    """Run curl; return (status, body)."""
    with trio.fail_after(WAIT):
        done = await trio.run_process(
            ["curl", "-sS", "-w", "\n%{http_code}", *args], capture_stdout=True,
            capture_stderr=True)
    body, _, status = done.stdout.rpartition(b"\n")
    return int(status), body


# -- issue 9 item 12 -------------------------------------------------------------------


async def test_digest_uri_that_urlsplit_refuses_is_a_401_not_a_500(
        caplog: pytest.LogCaptureFixture) -> None:
    results: list[R] = []

    def app(request: mhd2.Request) -> mhd2.Action:
        result = request.digest_auth_check(REALM, "root", "pw")
        results.append(result)
        if result is R.OK:
            return text_response(request, b"in")
        page = mhd2.Response.from_buffer_static(401, b"denied")
        return mhd2.action_digest_auth_challenge(request, REALM, page)

    async with running(app, digest_auth_random=RANDOM) as daemon:
        async with httpx.AsyncClient() as client:
            with trio.fail_after(WAIT):
                ch = challenges(await client.get(f"http://127.0.0.1:{daemon.port}/p"))[0]
        # Everything right (nonce, user, response for that uri) except that the
        # uri is an absolute URI with a broken IPv6 literal.
        value = hand_answer(ch, "http://[::1/", "root", "pw")
        raw = f"GET /p HTTP/1.1\r\nHost: x\r\nAuthorization: {value}\r\nConnection: close\r\n\r\n"
        reply = await exchange(daemon.port, raw.encode())
    assert status_of(reply) == 401, reply[:200]
    assert b"WWW-Authenticate: Digest" in reply
    assert results[-1] is R.WRONG_URI
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_each_daemon_has_its_own_nonce_registry() -> None:
    """Two daemons with equal options (even the same random) share no nonce state."""

    def app(request: mhd2.Request) -> mhd2.Action:
        result = request.digest_auth_check(REALM, "u", "p")
        if result is R.OK:
            return text_response(request, b"in")
        page = mhd2.Response.from_buffer_copy(401, result.name.encode())
        return mhd2.action_digest_auth_challenge(request, REALM, page, algo=Algo.SHA256)

    async with running(app, digest_auth_random=RANDOM) as a, \
            running(app, digest_auth_random=RANDOM) as b:
        async with httpx.AsyncClient() as client:
            with trio.fail_after(WAIT):
                ch = challenges(await client.get(f"http://127.0.0.1:{a.port}/"))[0]
                login = {"Authorization": hand_answer(ch, "/", "u", "p")}
                on_b = await client.get(f"http://127.0.0.1:{b.port}/", headers=login)
                on_a = await client.get(f"http://127.0.0.1:{a.port}/", headers=login)
    assert (on_b.status_code, on_b.text) == (401, "NONCE_STALE")  # b never issued it
    assert (on_a.status_code, on_a.text) == (200, "in")


# -- digest_auth_info ------------------------------------------------------------------


async def test_digest_auth_info_over_the_wire() -> None:
    seen: list[mhd2.DigestAuthInfo | None] = []

    def app(request: mhd2.Request) -> mhd2.Action:
        seen.append(request.digest_auth_info)
        return text_response(request)

    uh = mhd2.digest_auth_calc_userhash(Algo.SHA256, "alice", REALM)
    base = f'realm="{REALM}", nonce="n", uri="/x?y=1", response="r", cnonce="c"'
    values = [
        None,
        f'Digest username="alice", {base}, algorithm=SHA-256, qop=auth, nc=0000000a',
        f'Digest username="{uh}", userhash=true, {base}, algorithm=SHA-256, qop=auth, nc=1',
        f"Digest username*=UTF-8''j%C3%BCrgen, {base}, algorithm=MD5-sess, qop=auth, nc=2",
        f'Digest username="alice", {base}',                   # RFC 2069: no qop, MD5
        f'Digest username="alice", {base}, qop=auth',          # broken: qop without nc
        "Basic YTpi",
    ]
    async with running(app) as daemon:  # no digest_auth_random needed just to read
        for value in values:
            auth = f"Authorization: {value}\r\n" if value else ""
            raw = f"GET /x?y=1 HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
            assert status_of(await exchange(daemon.port, raw.encode())) == 200
    Info = mhd2.DigestAuthInfo
    assert seen == [
        None,
        Info("alice", None, REALM, Algo.SHA256, "auth", 10, "/x?y=1"),
        Info(None, uh, REALM, Algo.SHA256, "auth", 1, "/x?y=1"),
        Info("jürgen", None, REALM, None, "auth", 2, "/x?y=1"),
        Info("alice", None, REALM, Algo.MD5, "", None, "/x?y=1"),
        None,
        None,
    ]


# -- an application that stores only userdigests -----------------------------------------

PASSWORDS = {"alice": "wonder land", "bob": "b0b!", "jürgen": "pässwort"}
ALGOS = (Algo.SHA256, Algo.MD5, Algo.SHA512_256)


class UserDB:
    """What a multi-user application keeps: per user one userdigest per algorithm
    and an index by userhash -- never a password."""

    def __init__(self, passwords: dict[str, str]) -> None:
        self.digests = {name: {a: mhd2.digest_auth_calc_userdigest(a, name, REALM, pw)
                               for a in ALGOS}
                        for name, pw in passwords.items()}
        self.by_userhash = {(a, mhd2.digest_auth_calc_userhash(a, name, REALM)): name
                            for name in passwords for a in ALGOS}

    def find(self, info: mhd2.DigestAuthInfo) -> str | None:
        if info.algo is None:
            return None
        if info.userhash is not None:
            return self.by_userhash.get((info.algo, info.userhash))
        return info.username if info.username in self.digests else None


def multi_user_app(db: UserDB, challenge: mhd2.DigestChallenge,
                   log: list[tuple[str | None, R | None]]) -> Any:
    def app(request: mhd2.Request) -> mhd2.Action:
        info = request.digest_auth_info
        name = db.find(info) if info is not None else None
        result = None
        if info is not None and info.algo is not None and name is not None:
            result = request.digest_auth_check_digest(
                REALM, name, db.digests[name][info.algo], algo=info.algo)
            if result is R.OK:
                log.append((name, result))
                return text_response(request, f"hello {name}".encode())
        log.append((name, result))
        return challenge.action(request, stale=result is R.NONCE_STALE)
    return app


async def test_multi_user_app_with_httpx() -> None:
    db = UserDB(PASSWORDS)
    log: list[tuple[str | None, R | None]] = []
    challenge = mhd2.DigestChallenge(REALM, b"who are you?",
                                     headers=[("Content-Type", "text/plain")])
    async with running(multi_user_app(db, challenge, log), digest_auth_random=RANDOM) as daemon:
        url = f"http://127.0.0.1:{daemon.port}/home?x=1"
        got = {}
        for name in ("alice", "bob"):
            async with httpx.AsyncClient(auth=httpx.DigestAuth(name, PASSWORDS[name])) as c:
                with trio.fail_after(WAIT):
                    got[name] = [await c.get(url) for _ in range(3)]
        async with httpx.AsyncClient(auth=httpx.DigestAuth("alice", PASSWORDS["bob"])) as c:
            with trio.fail_after(WAIT):
                wrong = await c.get(url)
        async with httpx.AsyncClient(auth=httpx.DigestAuth("mallory", "x")) as c:
            with trio.fail_after(WAIT):
                unknown = await c.get(url)
    for name, responses in got.items():
        assert [(r.status_code, r.text) for r in responses] == [(200, f"hello {name}")] * 3
    assert (wrong.status_code, wrong.text) == (401, "who are you?")
    assert wrong.headers["content-type"] == "text/plain"
    assert unknown.status_code == 401
    assert ("alice", R.RESPONSE_WRONG) in log and ("mallory", None) not in log
    assert (None, None) in log  # mallory: not found, challenged without a check


@needs_curl
@pytest.mark.parametrize(("algo", "userhash"), [
    (Algo.SHA256, False), (Algo.MD5, False), (Algo.SHA256, True), (Algo.MD5, True)])
async def test_multi_user_app_with_curl(algo: Algo, userhash: bool) -> None:
    db = UserDB(PASSWORDS)
    log: list[tuple[str | None, R | None]] = []
    challenge = mhd2.DigestChallenge(REALM, b"denied", algo=algo, userhash=userhash)
    async with running(multi_user_app(db, challenge, log), digest_auth_random=RANDOM) as daemon:
        url = f"http://127.0.0.1:{daemon.port}/a/b?c=d"
        results = {name: await curl("--digest", "-u", f"{name}:{pw}", url)
                   for name, pw in PASSWORDS.items()}
        wrong = await curl("--digest", "-u", "bob:wonder land", url)
    for name, (status, body) in results.items():
        assert (status, body.decode()) == (200, f"hello {name}")
    assert wrong == (401, b"denied")
    found = {name for name, result in log if result is R.OK}
    assert found == set(PASSWORDS)  # jürgen too: by his UTF-8 name or by his userhash


async def test_check_digest_argument_errors() -> None:
    errors: list[str] = []
    digest = mhd2.digest_auth_calc_userdigest(Algo.MD5, "u", REALM, "p")

    def app(request: mhd2.Request) -> mhd2.Action:
        for kwargs in ({"algo": Algo.ANY}, {"algo": Algo.SHA256},
                       {"qop": "auth-int", "algo": Algo.MD5}):
            try:
                request.digest_auth_check_digest(REALM, "u", digest, **kwargs)
            except mhd2.UsageError as exc:
                errors.append(str(exc))
        return text_response(request)

    async with running(app, digest_auth_random=RANDOM) as daemon:
        await exchange(daemon.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert len(errors) == 3
    assert "single algorithm" in errors[0] and "16 bytes" not in errors[0]
    assert "SHA-256 userdigest has 32 bytes, not 16" in errors[1]
    assert "auth-int" in errors[2]


# -- prepared challenges -----------------------------------------------------------------


def test_response_add_auth_basic_challenge_refusals() -> None:
    ok = mhd2.Response.from_buffer_static(401, b"x")
    mhd2.response_add_auth_basic_challenge(ok, "r")
    with pytest.raises(mhd2.UsageError) as conflict:
        mhd2.response_add_auth_basic_challenge(ok, "r")
    assert conflict.value.code is mhd2.StatusCode.RESP_HEADERS_CONFLICT
    with pytest.raises(mhd2.UsageError) as not_401:
        mhd2.response_add_auth_basic_challenge(mhd2.Response.from_empty(403), "r")
    assert not_401.value.code is mhd2.StatusCode.RESP_HTTP_CODE_NOT_SUITABLE
    with pytest.raises(mhd2.UsageError):
        mhd2.response_add_auth_basic_challenge(mhd2.Response.from_empty(401), "a\nb")


async def test_prepared_basic_challenge_sent_many_times() -> None:
    page = mhd2.Response.from_buffer_static(401, b"login please")
    mhd2.response_add_auth_basic_challenge(page, "staff", prefer_utf8=True)
    page.set_options(reusable=True)
    too_late: list[mhd2.UsageError] = []

    def app(request: mhd2.Request) -> mhd2.Action:
        auth = request.basic_auth
        if auth is not None and auth.matches("ann", "pw"):
            return text_response(request, b"hi ann")
        try:
            mhd2.response_add_auth_basic_challenge(page, "other")
        except mhd2.UsageError as exc:  # frozen after the first send
            too_late.append(exc)
        return mhd2.action_from_response(request, page)

    async with running(app) as daemon:
        url = f"http://127.0.0.1:{daemon.port}/"
        async with httpx.AsyncClient() as client:
            denied: list[httpx.Response] = []

            async def one() -> None:
                denied.append(await client.get(url))

            with trio.fail_after(WAIT):
                async with trio.open_nursery() as nursery:
                    for _ in range(20):
                        nursery.start_soon(one)
                ok = await client.get(url, auth=("ann", "pw"))
    assert len(denied) == 20
    for r in denied:
        assert (r.status_code, r.text) == (401, "login please")
        assert r.headers.get_list("www-authenticate") == ['Basic realm="staff", charset="UTF-8"']
    assert (ok.status_code, ok.text) == (200, "hi ann")
    assert too_late and too_late[-1].code is mhd2.StatusCode.TOO_LATE
    page.destroy()


async def test_prepared_digest_challenge_fresh_nonce_each_use() -> None:
    challenge = mhd2.DigestChallenge(REALM, b"<p>denied</p>",
                                     headers=[("Content-Type", "text/html")],
                                     opaque="op", algo=Algo.SHA256)

    def app(request: mhd2.Request) -> mhd2.Action:
        result = request.digest_auth_check(REALM, "u", "p")
        if result is R.OK:
            return text_response(request, b"in")
        return challenge.action(request, stale=result is R.NONCE_STALE)

    async with running(app, digest_auth_random=RANDOM) as daemon:
        url = f"http://127.0.0.1:{daemon.port}/q"
        async with httpx.AsyncClient() as client:
            with trio.fail_after(WAIT):
                firsts = [await client.get(url) for _ in range(5)]
                chs = [challenges(r)[0] for r in firsts]
                # every nonce handed out works, once per nc
                oks = [await client.get(url, headers={
                    "Authorization": hand_answer(c, "/q", "u", "p")}) for c in chs]
                replay = await client.get(url, headers={
                    "Authorization": hand_answer(chs[0], "/q", "u", "p")})
    assert len({c["nonce"] for c in chs}) == 5  # a fresh nonce on every send
    for r, c in zip(firsts, chs, strict=True):
        assert (r.status_code, r.text, r.headers["content-type"]) == (
            401, "<p>denied</p>", "text/html")
        assert c["realm"] == REALM and c["opaque"] == "op" and "stale" not in c
    assert [r.status_code for r in oks] == [200] * 5
    assert replay.status_code == 401 and challenges(replay)[0]["stale"] == "true"
    assert challenges(replay)[0]["nonce"] not in {c["nonce"] for c in chs}


@needs_curl
async def test_prepared_digest_challenge_with_curl_and_httpx() -> None:
    challenge = mhd2.DigestChallenge(REALM, b"no", algo=Algo.SHA256 | Algo.MD5)

    def app(request: mhd2.Request) -> mhd2.Action:
        if request.digest_auth_check(REALM, "u", "p") is R.OK:
            return text_response(request, b"yes")
        return challenge.action(request)

    async with running(app, digest_auth_random=RANDOM) as daemon:
        url = f"http://127.0.0.1:{daemon.port}/z"
        by_curl = [await curl("--digest", "-u", "u:p", url) for _ in range(2)]
        async with httpx.AsyncClient(auth=httpx.DigestAuth("u", "p")) as client:
            with trio.fail_after(WAIT):
                by_httpx = [await client.get(url) for _ in range(2)]
    assert by_curl == [(200, b"yes")] * 2
    assert [(r.status_code, r.text) for r in by_httpx] == [(200, "yes")] * 2


async def test_prepared_digest_challenge_needs_digest_enabled() -> None:
    challenge = mhd2.DigestChallenge(REALM)
    errors: list[mhd2.UsageError] = []

    def app(request: mhd2.Request) -> mhd2.Action:
        try:
            return challenge.action(request)
        except mhd2.UsageError as exc:
            errors.append(exc)
            return text_response(request, b"", 500)

    async with running(app) as daemon:
        await exchange(daemon.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert len(errors) == 1 and "digest_auth_random" in str(errors[0])
    with pytest.raises(mhd2.ResponseHeaderError):
        mhd2.DigestChallenge(REALM, headers=[("Bad Name", "x")])


# -- fuzz: random Authorization values through a live daemon --------------------------------


def _fuzz_app(request: mhd2.Request) -> mhd2.Action:
    try:
        request.basic_auth  # noqa: B018  (raises AuthError when broken)
    except mhd2.AuthError:
        return text_response(request, b"broken", 400)
    request.digest_auth_info  # noqa: B018
    digest = mhd2.digest_auth_calc_userdigest(Algo.SHA256, "u", REALM, "p")
    results = {request.digest_auth_check(REALM, "u", "p", qop=("auth", "")),
               request.digest_auth_check_digest(REALM, "u", digest)}
    if R.OK in results:
        return text_response(request, b"in")
    page = mhd2.Response.from_buffer_static(401, b"no")
    return mhd2.action_digest_auth_challenge(request, REALM, page)


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")  # 70 kB reprs
@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=authorization_values())
async def test_fuzz_authorization_never_500(value: str, caplog: pytest.LogCaptureFixture) -> None:
    wire = value.encode("latin-1", "replace").translate(None, b"\r\n\0")
    # a large header limit, so that even the 70 kB values reach the auth code
    async with running(_fuzz_app, digest_auth_random=RANDOM, max_header_size=1 << 20) as daemon:
        reply = await exchange(daemon.port, b"GET /f?a=1 HTTP/1.1\r\nHost: x\r\nAuthorization: "
                               + wire + b"\r\nConnection: close\r\n\r\n")
    assert status_of(reply) in (400, 401), reply[:300]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_kept_name_digest_auth_check_is_the_request_method() -> None:
    """``mhd2.auth.digest_auth_check(request, ...)``, the name kept from before the
    sans-IO split, checks exactly as ``request.digest_auth_check(...)``."""
    from mhd2.auth import digest_auth_check

    assert digest_auth_check is mhd2.Request.digest_auth_check
    results: list[R] = []

    def app(request: mhd2.Request) -> mhd2.Action:
        result = digest_auth_check(request, REALM, "u", "p", qop="auth", algo=Algo.SHA256)
        results.append(result)
        if result is R.OK:
            return text_response(request, b"in")
        page = mhd2.Response.from_buffer_static(401, b"denied")
        return mhd2.action_digest_auth_challenge(request, REALM, page, algo=Algo.SHA256)

    async with running(app, digest_auth_random=RANDOM) as daemon:
        url = f"http://127.0.0.1:{daemon.port}/k"
        async with httpx.AsyncClient() as client:
            with trio.fail_after(WAIT):
                good = await client.get(url, auth=httpx.DigestAuth("u", "p"))
                bad = await client.get(url, auth=httpx.DigestAuth("u", "wrong"))
    assert (good.status_code, good.content) == (200, b"in")
    assert bad.status_code == 401
    assert results == [R.HEADER_MISSING, R.OK, R.HEADER_MISSING, R.RESPONSE_WRONG]
