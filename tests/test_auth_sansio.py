"""The sans-IO auth code (mhd2._auth) on its own: header values in, results out, no socket."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mhd2
from mhd2 import DigestAuthAlgo as Algo
from mhd2 import DigestAuthResult as R
from mhd2._auth.basic import BasicAuth, basic_challenge, parse_basic
from mhd2._auth.challenge import DigestChallengeHeader
from mhd2._auth.common import parse_auth_params, text_of
from mhd2._auth.digest import (
    DigestAuthInfo,
    calc_userdigest,
    calc_userhash,
    check,
    digest_info,
    origin_form,
    password_digest,
    stored_digest,
)
from mhd2._auth.nonces import NonceRegistry
from mhd2._http1.values import parse_query, split_target

REALM, USER, PASSWORD = "realm", "root", "pa$$w0rd"
RANDOM = b"k" * 32
_HASH: dict[str, Callable[[bytes], hashlib._Hash]] = {
    "MD5": hashlib.md5, "SHA-256": hashlib.sha256,
    "SHA-512-256": lambda b: hashlib.new("sha512_256", b),
}


def h(algo: str, data: str) -> str:
    return _HASH[algo](data.encode()).hexdigest()


def answer(nonce: str, *, uri: str = "/p?a=1", method: str = "GET", algo: str = "SHA-256",
           user: str = USER, password: str = PASSWORD, realm: str = REALM, nc: int = 1,
           drop: tuple[str, ...] = (), **override: str | None) -> str:
    """A client's ``Authorization: Digest`` value, computed by hand (RFC 7616 §3.4.1)."""
    ha1 = h(algo, f"{user}:{realm}:{password}")
    response = h(algo, f"{ha1}:{nonce}:{nc:08x}:cn:auth:{h(algo, f'{method}:{uri}')}")
    params: dict[str, str | None] = {
        "username": user, "realm": realm, "nonce": nonce, "uri": uri, "response": response,
        "algorithm": algo, "qop": "auth", "nc": f"{nc:08x}", "cnonce": "cn"}
    params.update(override)
    return "Digest " + ", ".join(
        f"{k}={v}" if k in ("algorithm", "qop", "nc") else f'{k}="{v}"'
        for k, v in params.items() if v is not None and k not in drop)


def star(value: str) -> dict[str, Any]:
    """``username*`` (not a Python identifier) as keyword arguments."""
    return {"username*": value}


def target_matches_for(request_uri: str) -> Callable[[str], bool]:
    """What the request does: compare decoded path and arguments."""
    path, query = split_target(request_uri)
    args = parse_query(query, plus_as_space=True)

    def matches(target: str) -> bool:
        other_path, other_query = split_target(target)
        return other_path == path and parse_query(other_query, plus_as_space=True) == args
    return matches


def run_check(registry: NonceRegistry, value: str, *, request_uri: str = "/p?a=1",
              userdigest: Callable[[Algo], bytes] | None = None, algo: Algo = Algo.ANY,
              qop: str | tuple[str, ...] = "auth", max_nc: int = 0) -> R:
    return check([value], method="GET", request_uri=request_uri,
                 target_matches=target_matches_for(request_uri), registry=registry,
                 realm=REALM, username=USER,
                 userdigest=userdigest or password_digest(USER, REALM, PASSWORD),
                 max_nc=max_nc, qop=qop, algo=algo)


# -- Basic --------------------------------------------------------------------------


def test_parse_basic() -> None:
    token = base64.b64encode(b"u:p:q").decode()
    assert parse_basic([]) is None
    assert parse_basic(["Bearer x"]) is None
    assert parse_basic(["Bearer x", f"basic {token}"]) == BasicAuth("u", "p:q")
    for bad in ("Basic", "Basic a b", "Basic !!", "Basic " + base64.b64encode(b"x").decode(),
                "Basic é"):
        with pytest.raises(mhd2.AuthError):
            parse_basic([bad])
    assert basic_challenge("a\"b") == 'Basic realm="a\\"b"'
    assert basic_challenge("ä", prefer_utf8=True) == 'Basic realm="Ã¤", charset="UTF-8"'
    with pytest.raises(mhd2.UsageError):
        basic_challenge(b"r")  # type: ignore[arg-type]


# -- hashing ------------------------------------------------------------------------


@pytest.mark.parametrize(("algo", "name", "size"), [
    (Algo.MD5, "MD5", 16), (Algo.SHA256, "SHA-256", 32), (Algo.SHA512_256, "SHA-512-256", 32)])
def test_userdigest_and_userhash(algo: Algo, name: str, size: int) -> None:
    digest = mhd2.digest_auth_calc_userdigest(algo, "jürgen", REALM, "pw")
    assert isinstance(digest, bytes) and len(digest) == size
    assert digest.hex() == h(name, f"jürgen:{REALM}:pw")
    assert mhd2.digest_auth_calc_userhash(algo, USER, REALM) == h(name, f"{USER}:{REALM}")
    with pytest.raises(mhd2.UsageError):
        calc_userdigest(Algo.ANY, USER, REALM, "pw")
    with pytest.raises(mhd2.UsageError):
        calc_userhash(Algo(0), USER, REALM)


def test_stored_digest_arguments() -> None:
    good = calc_userdigest(Algo.MD5, USER, REALM, PASSWORD)
    fn, algo = stored_digest(good, Algo.MD5)
    assert algo is Algo.MD5 and fn(Algo.MD5) == good
    for digest, bad_algo in ((good, Algo.ANY), (good, Algo.SHA256), (good.hex(), Algo.MD5)):
        with pytest.raises(mhd2.UsageError):
            stored_digest(digest, bad_algo)  # type: ignore[arg-type]


# -- parsing ------------------------------------------------------------------------


def test_digest_info() -> None:
    reg = NonceRegistry(RANDOM)
    n = reg.new_nonce(REALM)
    assert digest_info([]) is None and digest_info(["Basic eDp5"]) is None
    assert digest_info([answer(n)]) == DigestAuthInfo(USER, None, REALM, Algo.SHA256, "auth", 1,
                                                      "/p?a=1")
    uh = calc_userhash(Algo.SHA256, USER, REALM).upper()
    info = digest_info([answer(n, username=uh, userhash="true", nc=3)])
    assert info is not None
    assert (info.username, info.userhash, info.nc) == (None, uh.lower(), 3)
    info = digest_info([answer(n, username=None, **star("UTF-8''j%C3%BCrgen"))])
    assert info is not None and info.username == "jürgen"
    # a raw UTF-8 name arrives as Latin-1 code points and is read as UTF-8
    raw = "jürgen".encode().decode("latin-1")
    info = digest_info([answer(n, username=raw)])
    assert info is not None and info.username == "jürgen"
    info = digest_info([answer(n, algorithm="SHA-256-sess", drop=("qop", "nc", "cnonce"))])
    assert info is not None and (info.algo, info.qop, info.nc) == (None, "", None)
    for broken in (
        answer(n, username=None),                                  # no username
        answer(n, **star("UTF-8''x")),                    # both
        answer(n, username=None, **star("x")),             # not an ext-value
        answer(n, username=None, **star("UTF-8''%ff")),    # not UTF-8
        answer(n, username=None, **star("UTF-8''x"), userhash="true"),
        answer(n, userhash="maybe"),
        answer(n, username="not hex", userhash="true"),
        answer(n, nc=0),
        answer(n, drop=("nc",)),                                    # qop without nc
        answer(n, drop=("cnonce",)),
        answer(n, drop=("uri",)), answer(n, drop=("realm",)), answer(n, drop=("nonce",)),
        answer(n, response=None),
        answer(n).replace("nc=00000001", "nc=0x1"),
        answer(n).replace("nc=00000001", "nc=" + "1" * 17),
        'Digest username="a", realm="unterminated',
        "Digest " + "a" * 9 * 64 * 1024,
        answer(n, opaque="x" * (64 * 1024 + 1)),
    ):
        assert digest_info([broken]) is None, broken


def test_origin_form_never_raises() -> None:
    assert origin_form("/a?b") == "/a?b"
    assert origin_form("http://h:8/a?b") == "/a?b"
    assert origin_form("https://h") == "/"
    for bad in ("http://[::1/", "http://[", "a?b", "", "*", "http:///x", "http://]/"):
        assert origin_form(bad) is None, bad


def test_text_of() -> None:
    assert text_of("é".encode().decode("latin-1")) == "é"
    assert text_of("\xff") == "\xff"  # not UTF-8: left as Latin-1
    assert text_of("€") == "€"  # not from the wire at all


# -- checking -----------------------------------------------------------------------


def test_check_results() -> None:
    reg = NonceRegistry(RANDOM, max_nc=10)
    n = reg.new_nonce(REALM)
    assert run_check(reg, "Basic x") is R.HEADER_MISSING
    assert run_check(reg, answer(n, nc=1)) is R.OK
    assert run_check(reg, answer(n, nc=1)) is R.NONCE_STALE  # replay
    assert run_check(reg, answer(n, nc=11)) is R.NONCE_STALE  # above max_nc
    assert run_check(reg, answer(n, nc=11), max_nc=20) is R.OK
    cases: tuple[tuple[int, dict[str, Any], R], ...] = (
        (2, {"password": "x"}, R.RESPONSE_WRONG),
        (2, {"user": "x"}, R.WRONG_USERNAME),
        (2, {"realm": "x"}, R.WRONG_REALM),
        (2, {"qop": "auth-int"}, R.WRONG_QOP),
        (2, {"uri": "/p?a=2"}, R.WRONG_URI),
            # issue 9 item 12: an absolute uri that urlsplit refuses is WRONG_URI, not a crash
        (2, {"uri": "http://[::1/"}, R.WRONG_URI),
        (2, {"uri": "http://x/p?a=1"}, R.OK),
        (3, {"algo": "SHA-512-256"}, R.OK),
        (4, {"algo": "MD5"}, R.OK))
    for nc, kwargs, expected in cases:
        assert run_check(reg, answer(n, nc=nc, **kwargs)) is expected, kwargs
    assert run_check(reg, answer(n, nc=5, algo="MD5"), algo=Algo.SHA256) is R.WRONG_ALGO
    assert run_check(reg, answer("0" * 60, nc=5)) is R.NONCE_WRONG


def test_check_with_stored_userdigest_and_userhash() -> None:
    reg = NonceRegistry(RANDOM)
    n = reg.new_nonce(REALM)
    fn, algo = stored_digest(calc_userdigest(Algo.SHA256, USER, REALM, PASSWORD), Algo.SHA256)
    assert run_check(reg, answer(n, nc=1), userdigest=fn, algo=algo) is R.OK
    assert run_check(reg, answer(n, nc=2, algo="MD5"), userdigest=fn, algo=algo) is R.WRONG_ALGO
    uh = calc_userhash(Algo.SHA256, USER, REALM)
    assert run_check(reg, answer(n, nc=3, username=uh, userhash="true"), userdigest=fn,
                     algo=algo) is R.OK
    wrong = stored_digest(calc_userdigest(Algo.SHA256, USER, REALM, "nope"), Algo.SHA256)[0]
    assert run_check(reg, answer(n, nc=4), userdigest=wrong, algo=algo) is R.RESPONSE_WRONG


def test_raw_utf8_username_logs_in() -> None:
    reg = NonceRegistry(RANDOM)
    n = reg.new_nonce(REALM)
    name = "jürgen"
    value = answer(n, user=name).encode().decode("latin-1")  # as it arrives from the wire
    result = check([value], method="GET", request_uri="/p?a=1",
                   target_matches=target_matches_for("/p?a=1"), registry=reg, realm=REALM,
                   username=name, userdigest=password_digest(name, REALM, PASSWORD), max_nc=0,
                   qop="auth", algo=Algo.ANY)
    assert result is R.OK


# -- challenges and the registry ---------------------------------------------------------


def test_challenge_header_values() -> None:
    header = DigestChallengeHeader(REALM, opaque="o", domain="/a /b", algo=Algo.ANY,
                                   userhash=True, prefer_utf8=True)
    first, second = header.values("N1"), header.values("N2", stale=True)
    assert [parse_auth_params(v.removeprefix("Digest "))["algorithm"] for v in first] == [
        "SHA-256", "SHA-512-256", "MD5"]
    for value in first:
        p = parse_auth_params(value.removeprefix("Digest "))
        assert p == {"realm": REALM, "qop": "auth", "algorithm": p["algorithm"], "nonce": "N1",
                     "opaque": "o", "domain": "/a /b", "charset": "UTF-8", "userhash": "true"}
    assert all(parse_auth_params(v.removeprefix("Digest "))["stale"] == "true"
               and "N2" in v for v in second)
    legacy = DigestChallengeHeader(REALM, qop="", algo=Algo.MD5).values("N")
    assert legacy == ['Digest realm="realm", algorithm=MD5, nonce="N"']
    for bad in ({"opaque": "a\r\nX: y"}, {"domain": "\x00"}, {"opaque": "a\tb"},
                {"qop": "auth-int"}, {"algo": Algo(0)}):
        with pytest.raises(mhd2.UsageError):
            DigestChallengeHeader(REALM, **bad)
    with pytest.raises(mhd2.UsageError):
        DigestChallengeHeader("€uro")  # beyond Latin-1 without prefer_utf8
    assert "â\x82¬uro" in DigestChallengeHeader("€uro", prefer_utf8=True).values("N")[0]


def test_registry_from_options() -> None:
    options = mhd2.DaemonOptions(digest_auth_random=RANDOM, digest_auth_map_size=7,
                                 digest_auth_max_nc=9, digest_auth_nonce_timeout=5)
    reg = NonceRegistry.from_options(options)
    assert reg is not None
    assert (reg.map_size, reg.max_nc, reg.nonce_timeout) == (7, 9, 5)
    assert NonceRegistry.from_options(mhd2.DaemonOptions()) is None
    with pytest.raises(mhd2.UsageError, match="digest_auth_random"):
        NonceRegistry(b"")


# -- fuzz: nothing but the documented results escapes ---------------------------------------

_NAMES = st.sampled_from(["username", "username*", "realm", "nonce", "uri", "response",
                          "algorithm", "qop", "nc", "cnonce", "userhash", "opaque", "x"])
_VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["http://[::1/", "http://[", "http://]", "//x", "/p?a=1", "*",
                     "UTF-8''%ff%fe", "UTF-8''j%C3%BCrgen", "iso-8859-1''%e4", "x''y", "'",
                     "auth", "auth-int", "SHA-256", "sha-512-256", "MD5-sess", "true",
                     "00000001", "0" * 17, "ffffffffffffffff", "0", "-1", "\\", '"',
                     "€", "\udcff", "\x00", "a" * 70_000]),
    st.from_regex(r"[0-9a-fA-F]{0,20}", fullmatch=True),
)


@st.composite
def authorization_values(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["Digest", "digest", "Basic", "DIGEST\t", "Bearer", ""]))
    if draw(st.booleans()):
        return scheme + " " + draw(st.text(max_size=80))
    params = draw(st.lists(st.tuples(_NAMES, _VALUES, st.booleans()), max_size=12))
    sep = draw(st.sampled_from([", ", ",", " , ", ",,", " "]))
    body = sep.join(f'{n}="{v}"' if quoted else f"{n}={v}" for n, v, quoted in params)
    return f"{scheme} {body}"


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")  # 70 kB reprs
@settings(max_examples=600, deadline=None, database=None)
@given(values=st.lists(authorization_values(), max_size=3), use_nonce=st.booleans())
def test_fuzz_parsers_raise_nothing_undocumented(values: list[str], use_nonce: bool) -> None:
    reg = NonceRegistry(RANDOM)
    nonce = reg.new_nonce(REALM)
    if use_nonce:
        values = [v.replace("nonce=", f'nonce="{nonce}", x{len(v)}=') for v in values]
    try:
        parse_basic(values)
    except mhd2.AuthError:
        pass
    info = digest_info(values)
    assert info is None or isinstance(info, DigestAuthInfo)
    for algo in (Algo.ANY, Algo.SHA256):
        result = run_check(reg, values[0] if values else "", qop=("auth", ""), algo=algo)
        assert isinstance(result, R)
        assert result is not R.OK  # nobody guesses the response
    for value in values:
        try:
            parse_auth_params(value)
        except ValueError:
            pass
        origin_form(value)
