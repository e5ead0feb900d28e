"""Digest authentication (RFC 7616) over header values: hashing, parsing, checking.

The check is a function of the ``Authorization`` values, the request's method
and target, what the application expects (realm, user, password or
userdigest) and the daemon's :class:`~.nonces.NonceRegistry`.  Every way a
header can be wrong ends as a :class:`~mhd2.DigestAuthResult`; the only
exceptions are :class:`~mhd2.UsageError` for the application's own mistakes
(a bad ``algo``/``qop``/``userdigest`` argument).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from ..enums import DigestAuthAlgo, DigestAuthResult, StatusCode
from ..errors import UsageError
from .common import authorization_params, constant_time_equals, parse_auth_params, text_of, utf8
from .common import wire_bytes as wb
from .nonces import NonceRegistry

__all__ = [
    "DEFAULT_CHALLENGE_ALGO",
    "MAX_PARAM_SIZE",
    "DigestAuthInfo",
    "algo_list",
    "calc_userdigest",
    "calc_userhash",
    "check",
    "digest_info",
    "origin_form",
    "qop_set",
]

#: Algorithms offered by a challenge by default.
DEFAULT_CHALLENGE_ALGO = DigestAuthAlgo.SHA256 | DigestAuthAlgo.MD5
#: A single parameter value longer than this gives ``TOO_LARGE`` (as MHD2).
MAX_PARAM_SIZE = 64 * 1024

_HASHES: dict[DigestAuthAlgo, Callable[[bytes], hashlib._Hash]] = {
    DigestAuthAlgo.MD5: lambda b: hashlib.md5(b, usedforsecurity=False),
    DigestAuthAlgo.SHA256: hashlib.sha256,
    DigestAuthAlgo.SHA512_256: lambda b: hashlib.new("sha512_256", b),
}
#: Digest size in bytes of each algorithm (the size of a userdigest).
DIGEST_SIZE = {DigestAuthAlgo.MD5: 16, DigestAuthAlgo.SHA256: 32, DigestAuthAlgo.SHA512_256: 32}
_ALGO_BY_TOKEN = {
    "md5": DigestAuthAlgo.MD5,
    "sha-256": DigestAuthAlgo.SHA256,
    "sha-512-256": DigestAuthAlgo.SHA512_256,
}
#: Preferred first (clients take the first challenge they support): SHA-256
#: before SHA-512-256 because curl before 8.8 hashes "SHA-512-256" with SHA-256
#: and so fails a login that it would pass with SHA-256.
ALGO_ORDER = (DigestAuthAlgo.SHA256, DigestAuthAlgo.SHA512_256, DigestAuthAlgo.MD5)
_HEX = frozenset("0123456789abcdefABCDEF")


# -- hashing ---------------------------------------------------------------------


def _h(algo: DigestAuthAlgo, data: bytes) -> str:
    return _HASHES[algo](data).hexdigest()


def single_algo(algo: DigestAuthAlgo) -> DigestAuthAlgo:
    """*algo* if it names exactly one algorithm.

    Raises:
        UsageError: *algo* is a combination, empty, or not a DigestAuthAlgo.
    """
    if not isinstance(algo, DigestAuthAlgo) or algo not in _HASHES:
        raise UsageError(f"{algo!r} is not a single digest algorithm: pass DigestAuthAlgo.MD5, "
                         ".SHA256 or .SHA512_256", StatusCode.AUTH_DIGEST_ALGO_NOT_SUPPORTED)
    return algo


def calc_userhash(algo: DigestAuthAlgo, username: str, realm: str) -> str:
    """``H(username ":" realm)`` in hex: the ``userhash`` form of a name (RFC 7616 §3.4.4)."""
    return _h(single_algo(algo), utf8(f"{username}:{realm}"))


def calc_userdigest(algo: DigestAuthAlgo, username: str, realm: str, password: str) -> bytes:
    """``H(username ":" realm ":" password)`` as bytes (``MHD_digest_auth_calc_userdigest``).

    RFC 7616 §3.4.2 calls this ``A1`` hashed: everything a server needs to
    check a Digest answer, so an application may store it instead of the
    password.  It is 16 bytes for MD5, 32 for SHA-256 and SHA-512/256.

    Raises:
        UsageError: *algo* is not a single algorithm.
    """
    return _HASHES[single_algo(algo)](utf8(f"{username}:{realm}:{password}")).digest()


def qop_set(qop: str | Collection[str] | None) -> frozenset[str]:
    """The accepted ``qop`` values: ``{"auth"}``, optionally with ``""`` (RFC 2069).

    Raises:
        UsageError: anything else (``auth-int`` is not supported, as in MHD2).
    """
    values = {qop} if isinstance(qop, str) or qop is None else set(qop)
    out = frozenset("" if v is None else str(v).lower() for v in values)
    if not out or not out <= {"auth", ""}:
        raise UsageError(
            f"qop={qop!r} is not supported: use 'auth' (or '' to also allow RFC 2069 "
            "clients that send no qop); 'auth-int' is not supported, as in MHD2",
            StatusCode.AUTH_DIGEST_QOP_NOT_SUPPORTED)
    return out


def algo_list(algo: DigestAuthAlgo) -> list[DigestAuthAlgo]:
    """The single algorithms in the flags *algo*, most preferred first.

    Raises:
        UsageError: *algo* is not a DigestAuthAlgo, or names none.
    """
    if not isinstance(algo, DigestAuthAlgo):
        raise UsageError(f"algo must be an mhd2.DigestAuthAlgo, not {algo!r}")
    chosen = [a for a in ALGO_ORDER if a & algo]
    if not chosen:
        raise UsageError("algo names no digest algorithm", StatusCode.AUTH_DIGEST_ALGO_NOT_SUPPORTED)
    return chosen


# -- parsing ---------------------------------------------------------------------


class DigestAuthInfo(NamedTuple):
    """What the client's ``Authorization: Digest`` claims, before any check.

    ``MHD_REQUEST_INFO_DYNAMIC_AUTH_DIGEST_INFO``: a multi-user application
    reads it to find the user (by :attr:`username`, or by :attr:`userhash`)
    and then checks the answer with that user's password or userdigest.
    Nothing here is verified yet.

    Attributes:
        username: the claimed user name (``username`` or RFC 8187
            ``username*``, read as UTF-8), or ``None`` when the client sent a
            userhash instead.
        userhash: the lowercase hex ``H(username:realm)`` when the client sent
            ``userhash=true``, else ``None``.
        realm: the realm the client answered for.
        algo: the algorithm used, or ``None`` when it is one mhd2 does not
            support (e.g. a ``-sess`` variant).
        qop: ``"auth"``, ``""`` (RFC 2069, no qop) or whatever other value was
            sent (lowercased).
        nc: the nonce count, ``None`` without qop.
        uri: the ``uri`` parameter as sent.
    """

    username: str | None
    userhash: str | None
    realm: str
    algo: DigestAuthAlgo | None
    qop: str
    nc: int | None
    uri: str


class _Broken(Exception):
    """The header is malformed (``HEADER_BROKEN``)."""


class _Answer(NamedTuple):
    params: dict[str, str]
    info: DigestAuthInfo


def _ext_value(value: str) -> str:
    """Decode an RFC 8187 ext-value (``UTF-8''%c3%a4``).

    Raises:
        _Broken: not an ext-value, an unknown charset, or bad bytes.
    """
    charset, sep1, rest = value.partition("'")
    _lang, sep2, encoded = rest.partition("'")
    if not sep1 or not sep2 or charset.lower() not in ("utf-8", "iso-8859-1"):
        raise _Broken
    try:
        return unquote(encoded, encoding=charset.lower(), errors="strict")
    except (UnicodeDecodeError, LookupError):
        raise _Broken from None


def _parse(text: str) -> _Answer:
    """Parse and validate the syntax of the parameters after ``Digest``.

    Raises:
        _Broken: anything RFC 7616 §3.4 makes malformed.
    """
    try:
        p = parse_auth_params(text)
    except ValueError:
        raise _Broken from None
    # RFC 7616 §3.4: username (or username*), realm, nonce, uri and response
    # are required in every answer.
    for required in ("realm", "nonce", "uri", "response"):
        if required not in p:
            raise _Broken
    # §3.4.4: "The username and username* parameters MUST NOT be used in a
    # single WWW-Authenticate header field."
    if ("username" in p) == ("username*" in p):
        raise _Broken
    algo = _ALGO_BY_TOKEN.get(p.get("algorithm", "MD5").lower())
    qop = p.get("qop", "").lower()
    nc: int | None = None
    if qop:
        # §3.4: cnonce and nc "MUST" be sent when qop is.
        if "nc" not in p or "cnonce" not in p:
            raise _Broken
        nc_text = p["nc"]
        if not 1 <= len(nc_text) <= 16 or not _HEX.issuperset(nc_text):
            raise _Broken
        nc = int(nc_text, 16)
        if nc == 0:
            raise _Broken
    userhash_text = p.get("userhash", "false").lower()
    if userhash_text not in ("true", "false"):
        raise _Broken
    username: str | None
    userhash: str | None = None
    if "username*" in p:
        # §3.4.4: username* is for names that cannot be sent plainly; it is
        # never a hash.
        if userhash_text == "true":
            raise _Broken
        username = _ext_value(p["username*"])
    elif userhash_text == "true":
        username, userhash = None, p["username"].lower()
        if not userhash or not _HEX.issuperset(userhash):
            raise _Broken
    else:
        username = text_of(p["username"])
    info = DigestAuthInfo(username, userhash, text_of(p["realm"]), algo, qop, nc, p["uri"])
    return _Answer(p, info)


def _answer(authorization: Iterable[str]) -> _Answer | DigestAuthResult:
    text = authorization_params(authorization, "digest")
    if text is None:
        return DigestAuthResult.HEADER_MISSING
    if len(text) > 8 * MAX_PARAM_SIZE:
        return DigestAuthResult.TOO_LARGE
    try:
        answer = _parse(text)
    except _Broken:
        return DigestAuthResult.HEADER_BROKEN
    if any(len(v) > MAX_PARAM_SIZE for v in answer.params.values()):
        return DigestAuthResult.TOO_LARGE
    return answer


def digest_info(authorization: Iterable[str]) -> DigestAuthInfo | None:
    """The :class:`DigestAuthInfo` of the ``Authorization`` *values*.

    Returns:
        ``None`` when there is no Digest value, or it is broken or too large.
    """
    answer = _answer(authorization)
    return None if isinstance(answer, DigestAuthResult) else answer.info


def origin_form(uri: str) -> str | None:
    """The origin-form (``/path?query``) of a Digest ``uri`` parameter.

    RFC 7616 §3.4: the ``uri`` is "the Effective Request URI … duplicated
    here because proxies are allowed to change the Request-Line"; so it may
    be absolute (``http://host/path``).

    Returns:
        ``None`` when *uri* is neither origin-form nor a parsable absolute
        URI (``urlsplit`` refuses e.g. ``http://[::1/``).
    """
    if uri.startswith("/"):
        return uri
    try:
        parts = urlsplit(uri)
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return (parts.path or "/") + ("?" + parts.query if parts.query else "")


# -- checking --------------------------------------------------------------------


def check(
    authorization: Iterable[str],
    *,
    method: str,
    request_uri: str,
    target_matches: Callable[[str], bool],
    registry: NonceRegistry,
    realm: str,
    username: str,
    userdigest: Callable[[DigestAuthAlgo], bytes],
    max_nc: int,
    qop: str | Collection[str],
    algo: DigestAuthAlgo,
) -> DigestAuthResult:
    """Check an ``Authorization: Digest`` answer (RFC 7616 §3.4).

    Args:
        authorization: the request's ``Authorization`` header values.
        method: the request method (part of ``A2``).
        request_uri: the raw request target.
        target_matches: whether an origin-form target names the request's
            target (path and arguments, as the request decodes them).
        registry: the daemon's nonces.
        realm, username: what the client must have used.
        userdigest: ``H(username:realm:password)`` for an algorithm.
        max_nc: the largest ``nc`` accepted; ``0`` takes the registry's.
        qop: accepted qop values (see :func:`qop_set`).
        algo: accepted algorithms (flags).

    Returns:
        ``OK`` only when everything matches; then the ``nc`` is recorded.

    Raises:
        UsageError: bad *qop* or *algo*.
    """
    qops = qop_set(qop)
    allowed = DigestAuthAlgo(0)
    for a in algo_list(algo):
        allowed |= a
    answer = _answer(authorization)
    if isinstance(answer, DigestAuthResult):
        return answer
    p, info = answer
    if info.algo is None or not info.algo & allowed:
        return DigestAuthResult.WRONG_ALGO
    used = info.algo
    if info.qop not in qops:
        return DigestAuthResult.WRONG_QOP
    if not constant_time_equals(info.realm, realm):
        return DigestAuthResult.WRONG_REALM
    if info.userhash is not None:
        user_ok = constant_time_equals(info.userhash, calc_userhash(used, username, realm))
    else:
        user_ok = constant_time_equals(info.username or "", username)
    if not user_ok:
        return DigestAuthResult.WRONG_USERNAME
    nonce = p["nonce"]
    state = registry.check(nonce, realm, info.nc, max_nc or registry.max_nc)
    if state is not DigestAuthResult.OK:
        return state
    if info.uri != request_uri:
        target = origin_form(info.uri)
        if target is None or not target_matches(target):
            return DigestAuthResult.WRONG_URI
    # RFC 7616 §3.4.1: response = KD(H(A1), nonce ":" nc ":" cnonce ":" qop ":" H(A2))
    # with A2 = Method ":" request-uri; RFC 2069 (no qop): KD(H(A1), nonce ":" H(A2)).
    ha1 = userdigest(used).hex().encode("ascii")
    ha2 = _h(used, wb(method) + b":" + wb(info.uri)).encode("ascii")
    if info.qop:
        data = b":".join((ha1, wb(nonce), wb(p["nc"]), wb(p["cnonce"]), wb(info.qop), ha2))
    else:
        data = b":".join((ha1, wb(nonce), ha2))
    if not constant_time_equals(p["response"].lower(), _h(used, data)):
        return DigestAuthResult.RESPONSE_WRONG
    registry.record(nonce, info.nc)
    return DigestAuthResult.OK


def password_digest(username: str, realm: str, password: str) -> Callable[[DigestAuthAlgo], bytes]:
    """The *userdigest* argument of :func:`check` for a clear-text password."""
    return lambda algo: calc_userdigest(algo, username, realm, password)


def stored_digest(userdigest: bytes, algo: DigestAuthAlgo) -> tuple[
        Callable[[DigestAuthAlgo], bytes], DigestAuthAlgo]:
    """The *userdigest* and *algo* arguments of :func:`check` for a stored digest.

    Raises:
        UsageError: *algo* is not a single algorithm, or *userdigest* has not
            that algorithm's size.
    """
    if not isinstance(algo, DigestAuthAlgo) or algo not in _HASHES:
        raise UsageError(
            f"digest_auth_check_digest needs the single algorithm the userdigest was made "
            f"with (algo=DigestAuthAlgo.SHA256, .MD5 or .SHA512_256), not {algo!r}: store one "
            "userdigest per algorithm and pick it by request.digest_auth_info.algo",
            StatusCode.AUTH_DIGEST_ALGO_NOT_SUPPORTED)
    if not isinstance(userdigest, bytes | bytearray | memoryview):
        raise UsageError("userdigest must be bytes from mhd2.digest_auth_calc_userdigest, "
                         f"not {type(userdigest).__name__}")
    digest = bytes(userdigest)
    if len(digest) != DIGEST_SIZE[algo]:
        raise UsageError(f"a {algo.token} userdigest has {DIGEST_SIZE[algo]} bytes, not "
                         f"{len(digest)}: make it with mhd2.digest_auth_calc_userdigest")
    return (lambda _used: digest), algo
