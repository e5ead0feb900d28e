"""HTTP authentication: Basic (RFC 7617) and Digest (RFC 7616), as in MHD2.

Basic:
    :func:`basic_auth_of` reads ``Authorization: Basic …`` (``request.basic_auth``);
    :func:`action_basic_auth_challenge` answers 401 with ``WWW-Authenticate: Basic``;
    :func:`basic_auth_check` / :meth:`BasicAuth.matches` compare credentials in
    constant time.

Digest:
    :func:`action_digest_auth_challenge` answers 401 with one
    ``WWW-Authenticate: Digest`` line per allowed algorithm, all with one fresh
    nonce; :func:`digest_auth_check` (``request.digest_auth_check``) checks the
    client's answer and returns a :class:`~mhd2.DigestAuthResult`.

Nonces are made and checked by the daemon's :class:`DigestNonceRegistry`:
``hex(time) + hex(salt) + hex(HMAC(digest_auth_random, time|salt|realm))``, so
only this daemon (with its random) can make them; they expire after
``digest_auth_nonce_timeout`` seconds; each issued nonce has an entry in a
bounded map (``digest_auth_map_size``, oldest evicted first) that records the
nonce counts (``nc``) already used, so a replayed ``nc`` is refused.  A nonce
that is too old, evicted from the map, replayed or used with an ``nc`` above the
limit gives :attr:`~mhd2.DigestAuthResult.NONCE_STALE`: answer it with a new
challenge with ``stale=True`` and the client retries without asking the user.

Everything here is synchronous and runs in the daemon's trio run, so checking
and recording a nonce count is atomic.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import unquote, urlsplit

from ._http1.values import parse_query, split_target
from .enums import DigestAuthAlgo, DigestAuthResult, HTTPStatus, StatusCode, reason_phrase
from .errors import AuthError, UsageError

if TYPE_CHECKING:
    from .actions import Action
    from .options import DaemonOptions
    from .request import Request
    from .response import Response

__all__ = [
    "DEFAULT_CHALLENGE_ALGO",
    "BasicAuth",
    "DigestNonceRegistry",
    "action_basic_auth_challenge",
    "action_digest_auth_challenge",
    "basic_auth_check",
    "basic_auth_of",
    "constant_time_equals",
    "digest_auth_calc_userhash",
    "digest_auth_check",
]

#: Algorithms offered by :func:`action_digest_auth_challenge` by default.
DEFAULT_CHALLENGE_ALGO = DigestAuthAlgo.SHA256 | DigestAuthAlgo.MD5
#: A single parameter value longer than this gives ``TOO_LARGE`` (as MHD2).
MAX_PARAM_SIZE = 64 * 1024

# -- helpers ----------------------------------------------------------------


def constant_time_equals(a: str | bytes, b: str | bytes) -> bool:
    """Compare two secrets in time that depends on neither content nor length.

    Both sides are hashed (SHA-256) first, so not even the length leaks.
    """
    ab = a.encode("utf-8", "surrogatepass") if isinstance(a, str) else bytes(a)
    bb = b.encode("utf-8", "surrogatepass") if isinstance(b, str) else bytes(b)
    return hmac.compare_digest(hashlib.sha256(ab).digest(), hashlib.sha256(bb).digest())


def _authorization_values(request: Request) -> list[str]:
    return [v for k, v in request._headers if k.lower() == "authorization"]


def _split_scheme(value: str) -> tuple[str, str]:
    value = value.strip(" \t")
    scheme, _, rest = value.partition(" ")
    if "\t" in scheme:
        scheme, _, more = scheme.partition("\t")
        rest = more + " " + rest
    return scheme.lower(), rest.strip(" \t")


def _quote(value: str) -> str:
    """A quoted-string (RFC 9110 §5.6.4)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _wire(value: str, utf8: bool) -> str:
    """Header text for *value*; with *utf8* its UTF-8 bytes go out as they are."""
    return value.encode("utf-8").decode("latin-1") if utf8 else value


def _challenge(request: Request, response: Response, lines: list[str]) -> Action:
    from .actions import action_from_response

    if response is None:
        raise UsageError("an auth challenge needs a response (its body is the 401 page)")
    if response._frozen or response._destroyed:
        raise UsageError(
            "an auth challenge needs a fresh response: this one was already used or "
            "destroyed (the WWW-Authenticate header is added to it)", StatusCode.TOO_LATE)
    for line in lines:
        response.add_header("WWW-Authenticate", line)
    if response.status != HTTPStatus.UNAUTHORIZED:
        # MHD2 sends the response as given, with status 401.
        response.status = int(HTTPStatus.UNAUTHORIZED)
        response.reason = reason_phrase(response.status)
    return action_from_response(request, response)


# -- Basic ------------------------------------------------------------------


class BasicAuth(NamedTuple):
    """Credentials from ``Authorization: Basic`` (``MHD_BasicAuthInfo``)."""

    username: str
    password: str

    def matches(self, username: str, password: str) -> bool:
        """Whether both parts equal the given ones, compared in constant time."""
        user_ok = constant_time_equals(self.username, username)
        pass_ok = constant_time_equals(self.password, password)
        return user_ok & pass_ok


def basic_auth_of(request: Request) -> BasicAuth | None:
    """The Basic credentials of *request* (``request.basic_auth``).

    The ``user-id:password`` bytes are decoded as UTF-8 (RFC 7617's only
    charset), falling back to Latin-1 for old clients that send that.

    Returns:
        ``None`` when there is no ``Authorization: Basic`` header.

    Raises:
        AuthError: the header is there but broken: not base64, or no colon.
    """
    for value in _authorization_values(request):
        scheme, token = _split_scheme(value)
        if scheme != "basic":
            continue
        if not token or " " in token or "\t" in token:
            raise AuthError("Authorization: Basic without a valid token68 value")
        try:
            raw = base64.b64decode(token.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise AuthError("Authorization: Basic value is not valid base64") from None
        user, colon, password = raw.partition(b":")
        if not colon:
            raise AuthError("Authorization: Basic credentials have no ':'")
        try:
            return BasicAuth(user.decode("utf-8"), password.decode("utf-8"))
        except UnicodeDecodeError:
            return BasicAuth(user.decode("latin-1"), password.decode("latin-1"))
    return None


def basic_auth_check(request: Request, username: str, password: str) -> bool:
    """Whether *request* carries Basic credentials equal to these (constant time).

    A missing or broken header is simply ``False``.
    """
    try:
        auth = basic_auth_of(request)
    except AuthError:
        return False
    return auth is not None and auth.matches(username, password)


def action_basic_auth_challenge(
    request: Request, realm: str, response: Response, *, prefer_utf8: bool = False
) -> Action:
    """Send *response* with status 401 and ``WWW-Authenticate: Basic realm=…``.

    Args:
        realm: the protection space shown to the user.
        response: a fresh response; its body is the page shown when the user
            cancels.  Whatever status it was made with, it is sent as 401 (as MHD2).
        prefer_utf8: add ``charset="UTF-8"`` (RFC 7617 §2.1), asking the client to
            send UTF-8 credentials; the realm is then sent as UTF-8 too.

    Raises:
        UsageError: the response was already used, or the realm cannot be sent.
    """
    if not isinstance(realm, str):
        raise UsageError("realm must be a str")
    line = "Basic realm=" + _quote(_wire(realm, prefer_utf8))
    if prefer_utf8:
        line += ', charset="UTF-8"'
    return _challenge(request, response, [line])


# -- Digest: hashing ----------------------------------------------------------

_HASHES: dict[DigestAuthAlgo, Callable[[bytes], str]] = {
    DigestAuthAlgo.MD5: lambda b: hashlib.md5(b, usedforsecurity=False).hexdigest(),
    DigestAuthAlgo.SHA256: lambda b: hashlib.sha256(b).hexdigest(),
    DigestAuthAlgo.SHA512_256: lambda b: hashlib.new("sha512_256", b).hexdigest(),
}
_ALGO_BY_TOKEN = {
    "md5": DigestAuthAlgo.MD5,
    "sha-256": DigestAuthAlgo.SHA256,
    "sha-512-256": DigestAuthAlgo.SHA512_256,
}
#: Preferred first (clients take the first challenge they support): SHA-256
#: before SHA-512-256 because curl before 8.8 hashes "SHA-512-256" with SHA-256
#: and so fails a login that it would pass with SHA-256.
_ALGO_ORDER = (DigestAuthAlgo.SHA256, DigestAuthAlgo.SHA512_256, DigestAuthAlgo.MD5)


def _h(algo: DigestAuthAlgo, text: str) -> str:
    return _HASHES[algo](text.encode("utf-8", "surrogateescape"))


def digest_auth_calc_userhash(algo: DigestAuthAlgo, username: str, realm: str) -> str:
    """``H(username ":" realm)`` in hex: the ``userhash`` form of a username."""
    return _h(_single_algo(algo), f"{username}:{realm}")


def _single_algo(algo: DigestAuthAlgo) -> DigestAuthAlgo:
    if algo not in _HASHES:
        raise UsageError(f"{algo!r} is not a single digest algorithm (MD5, SHA256, SHA512_256)",
                         StatusCode.AUTH_DIGEST_ALGO_NOT_SUPPORTED)
    return algo


def _qop_set(qop: str | Collection[str] | None) -> frozenset[str]:
    values = {qop} if isinstance(qop, str) or qop is None else set(qop)
    out = frozenset("" if v is None else v.lower() for v in values)
    if not out or not out <= {"auth", ""}:
        raise UsageError(
            f"qop={qop!r} is not supported: use 'auth' (or '' to also allow RFC 2069 "
            "clients that send no qop); 'auth-int' is not supported, as in MHD2",
            StatusCode.AUTH_DIGEST_QOP_NOT_SUPPORTED)
    return out


def _algo_flags(algo: DigestAuthAlgo) -> list[DigestAuthAlgo]:
    if not isinstance(algo, DigestAuthAlgo):
        raise UsageError(f"algo must be an mhd2.DigestAuthAlgo, not {algo!r}")
    chosen = [a for a in _ALGO_ORDER if a & algo]
    if not chosen:
        raise UsageError("algo names no digest algorithm", StatusCode.AUTH_DIGEST_ALGO_NOT_SUPPORTED)
    return chosen


# -- Digest: nonces -----------------------------------------------------------

_TS_HEX = 12
_SALT_HEX = 16
_MAC_HEX = 32
_NONCE_LEN = _TS_HEX + _SALT_HEX + _MAC_HEX
#: How far ahead of the clock a nonce's time may be (clock steps) before it is wrong.
_FUTURE_SLACK_MS = 2000
#: Nonce counts below the highest seen that are still remembered (out-of-order use).
_NC_WINDOW = 64


class DigestNonceRegistry:
    """Per-daemon nonce state: the key, the timeout and the ``nc`` replay map.

    Args:
        random: the daemon's ``digest_auth_random`` (the HMAC key).
        nonce_timeout: seconds a nonce stays valid.
        map_size: how many issued nonces are tracked at once; issuing one more
            evicts the oldest (whose clients then get ``NONCE_STALE``).
        max_nc: the default largest ``nc`` accepted.
        clock: time source in seconds (tests may pass their own).
    """

    __slots__ = ("_clock", "_key", "_map", "map_size", "max_nc", "nonce_timeout")

    def __init__(self, random: bytes, *, nonce_timeout: float = 300.0, map_size: int = 1000,
                 max_nc: int = 1000, clock: Callable[[], float] = time.time) -> None:
        if not random:
            raise UsageError("digest auth needs the daemon option digest_auth_random "
                             "(e.g. secrets.token_bytes(32))", StatusCode.AUTH_DIGEST_UNSUPPORTED)
        self._key = bytes(random)
        self.nonce_timeout = nonce_timeout
        self.map_size = map_size
        self.max_nc = max_nc
        self._clock = clock
        # nonce -> [highest nc used, bitmask of the _NC_WINDOW counts below it]
        self._map: OrderedDict[str, list[int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._map)

    def _mac(self, ts_salt: str, realm: str) -> str:
        msg = ts_salt.encode("ascii") + b"\x00" + realm.encode("utf-8", "surrogateescape")
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:_MAC_HEX]

    def new_nonce(self, realm: str) -> str:
        """Make a fresh nonce for *realm* and start tracking it."""
        now_ms = int(self._clock() * 1000)
        ts_salt = f"{now_ms & 0xFFFFFFFFFFFF:012x}{secrets.token_hex(_SALT_HEX // 2)}"
        nonce = ts_salt + self._mac(ts_salt, realm)
        expired_before = now_ms - int(self.nonce_timeout * 1000)
        while self._map:
            oldest = next(iter(self._map))
            if len(self._map) < self.map_size and int(oldest[:_TS_HEX], 16) >= expired_before:
                break
            del self._map[oldest]
        self._map[nonce] = [0, 0]
        return nonce

    def check(self, nonce: str, realm: str, nc: int | None, max_nc: int) -> DigestAuthResult:
        """Whether *nonce* with count *nc* may be used now (nothing is recorded).

        Returns ``OK``, ``NONCE_WRONG`` (not made by this daemon for this realm)
        or ``NONCE_STALE`` (expired, evicted, ``nc`` too large or already used).
        """
        if len(nonce) != _NONCE_LEN or any(c not in "0123456789abcdef" for c in nonce):
            return DigestAuthResult.NONCE_WRONG
        if not hmac.compare_digest(nonce[_TS_HEX + _SALT_HEX:],
                                   self._mac(nonce[:_TS_HEX + _SALT_HEX], realm)):
            return DigestAuthResult.NONCE_WRONG
        now_ms = int(self._clock() * 1000) & 0xFFFFFFFFFFFF
        age = now_ms - int(nonce[:_TS_HEX], 16)
        if age < -_FUTURE_SLACK_MS:
            return DigestAuthResult.NONCE_WRONG
        if age > self.nonce_timeout * 1000:
            return DigestAuthResult.NONCE_STALE
        state = self._map.get(nonce)
        if state is None:
            return DigestAuthResult.NONCE_STALE
        if nc is None:  # RFC 2069: no nc, so a nonce is good for one use only
            return DigestAuthResult.OK if state[0] == 0 else DigestAuthResult.NONCE_STALE
        if nc > max_nc:
            return DigestAuthResult.NONCE_STALE
        highest, mask = state
        if nc > highest:
            return DigestAuthResult.OK
        if nc == highest:
            return DigestAuthResult.NONCE_STALE
        back = highest - nc - 1
        if back >= _NC_WINDOW or mask >> back & 1:
            return DigestAuthResult.NONCE_STALE
        return DigestAuthResult.OK

    def record(self, nonce: str, nc: int | None) -> None:
        """Mark *nc* of *nonce* as used (after a successful check)."""
        state = self._map.get(nonce)
        if state is None:
            return
        nc = 1 if nc is None else nc
        highest, mask = state
        if nc > highest:
            shift = nc - highest
            if highest:
                mask = (mask << shift) | (1 << (shift - 1))
            state[0], state[1] = nc, mask & ((1 << _NC_WINDOW) - 1)
        else:
            state[1] = mask | (1 << (highest - nc - 1))


_REGISTRIES: dict[int, tuple[Callable[[], object], DigestNonceRegistry]] = {}


def _registry_lookup(options: DaemonOptions) -> DigestNonceRegistry:
    """The :class:`DigestNonceRegistry` of the daemon that has *options*.

    One per daemon, made on first use, keyed by the options object's identity
    and dropped with it when the options can be weakly referenced (otherwise
    kept for the life of the process).
    """
    key = id(options)
    entry = _REGISTRIES.get(key)
    if entry is not None and entry[0]() is options:
        return entry[1]
    if options.digest_auth_random is None:
        raise UsageError(
            "digest auth is disabled: start the Daemon with digest_auth_random="
            "secrets.token_bytes(32) (MHD2's MHD_D_O_RANDOM_ENTROPY)",
            StatusCode.AUTH_DIGEST_UNSUPPORTED)
    registry = DigestNonceRegistry(
        options.digest_auth_random, nonce_timeout=options.digest_auth_nonce_timeout,
        map_size=options.digest_auth_map_size, max_nc=options.digest_auth_max_nc)
    owner: Callable[[], object]
    try:
        owner = weakref.ref(options)
        weakref.finalize(options, _REGISTRIES.pop, key, None)
    except TypeError:  # not weakly referenceable: keep the options alive with it

        def owner() -> object:
            return options

    _REGISTRIES[key] = (owner, registry)
    return registry


# -- Digest: challenge --------------------------------------------------------


def action_digest_auth_challenge(
    request: Request,
    realm: str,
    response: Response,
    *,
    opaque: str | None = None,
    domain: str | None = None,
    stale: bool = False,
    qop: str | Collection[str] = "auth",
    algo: DigestAuthAlgo = DEFAULT_CHALLENGE_ALGO,
    userhash: bool = False,
    prefer_utf8: bool = False,
) -> Action:
    """Send *response* with status 401 and one ``WWW-Authenticate: Digest`` per algorithm.

    All lines carry the same fresh nonce, in the order SHA-256, SHA-512-256,
    MD5 (clients use the first one they support).

    Args:
        realm: the protection space (also bound into the nonce).
        response: a fresh response: its body is what the user sees on cancel;
            it is sent with status 401 whatever status it was made with.
        opaque: echoed back by clients; not checked.
        domain: space-separated URIs of the protection space.
        stale: tell the client its last nonce was only stale (after
            ``NONCE_STALE``), so it retries without asking the user.
        qop: ``"auth"`` (the only protection MHD2 supports); include ``""``
            to also accept RFC 2069 clients.
        algo: :class:`~mhd2.DigestAuthAlgo` flags; default SHA-256 and MD5.
        userhash: let the client send ``H(username:realm)`` instead of the name.
        prefer_utf8: add ``charset=UTF-8``.

    Raises:
        UsageError: digest auth is not enabled (no ``digest_auth_random``),
            bad *algo*/*qop*, or the response was already used.
    """
    qops = _qop_set(qop)
    algos = _algo_flags(algo)
    nonce = _registry_lookup(request._daemon_options).new_nonce(realm)
    common = "realm=" + _quote(_wire(realm, prefer_utf8))
    if "auth" in qops:
        common += ', qop="auth"'
    lines = []
    for a in algos:
        line = f"Digest {common}, algorithm={a.token}, nonce={_quote(nonce)}"
        if opaque is not None:
            line += ", opaque=" + _quote(opaque)
        if domain is not None:
            line += ", domain=" + _quote(domain)
        if stale:
            line += ", stale=true"
        if prefer_utf8:
            line += ", charset=UTF-8"
        if userhash:
            line += ", userhash=true"
        lines.append(line)
    return _challenge(request, response, lines)


# -- Digest: parsing the client's answer ---------------------------------------

_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                         "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


class _Broken(Exception):
    pass


def parse_auth_params(text: str) -> dict[str, str]:
    """Parse ``name=value, name="quoted", …`` (RFC 9110 §11.2 auth-params).

    Names are lowercased.

    Raises:
        ValueError: bad syntax, an unterminated quoted string, or a
            parameter given twice.
    """
    out: dict[str, str] = {}
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in " \t,":
            i += 1
        if i >= n:
            return out
        start = i
        while i < n and text[i] in _TOKEN_CHARS:
            i += 1
        name = text[start:i].lower()
        if not name:
            raise ValueError(f"expected a parameter name at {start}")
        while i < n and text[i] in " \t":
            i += 1
        if i >= n or text[i] != "=":
            raise ValueError(f"parameter {name!r} has no '='")
        i += 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            i += 1
            chars = []
            while True:
                if i >= n:
                    raise ValueError(f"unterminated quoted string for {name!r}")
                c = text[i]
                if c == "\\":
                    if i + 1 >= n:
                        raise ValueError(f"unterminated quoted string for {name!r}")
                    chars.append(text[i + 1])
                    i += 2
                    continue
                if c == '"':
                    i += 1
                    break
                chars.append(c)
                i += 1
            value = "".join(chars)
        else:
            start = i
            while i < n and text[i] in _TOKEN_CHARS:
                i += 1
            value = text[start:i]
            if not value:
                raise ValueError(f"parameter {name!r} has no value")
        if name in out:
            raise ValueError(f"parameter {name!r} given twice")
        out[name] = value
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] != ",":
            raise ValueError(f"expected ',' after parameter {name!r}")


def _ext_value(value: str) -> str:
    """Decode an RFC 8187 ext-value (``UTF-8''%c3%a4``)."""
    charset, sep1, rest = value.partition("'")
    _lang, sep2, encoded = rest.partition("'")
    if not sep1 or not sep2 or charset.lower() not in ("utf-8", "iso-8859-1"):
        raise _Broken
    return unquote(encoded, encoding=charset.lower(), errors="strict")


def _same_uri(request: Request, uri: str) -> bool:
    """Whether the digest ``uri`` names the request's target (path and arguments)."""
    if uri == request.uri:
        return True
    if not uri.startswith("/"):
        parts = urlsplit(uri)
        if not parts.scheme or not parts.netloc:
            return False
        uri = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    path, query = split_target(uri)
    if path != request.path:
        return False
    plus = request._daemon_options.uri_query_plus_as_space
    return parse_query(query, plus_as_space=plus) == request._arg_pairs()


# -- Digest: check -------------------------------------------------------------


def digest_auth_check(
    request: Request,
    realm: str,
    username: str,
    password: str,
    *,
    max_nc: int = 0,
    qop: str | Collection[str] = "auth",
    algo: DigestAuthAlgo = DigestAuthAlgo.ANY,
) -> DigestAuthResult:
    """Check the request's ``Authorization: Digest`` (``request.digest_auth_check``).

    Args:
        realm, username, password: what the client must have used.
        max_nc: the largest nonce count accepted; ``0`` takes the daemon's
            ``digest_auth_max_nc``.
        qop: ``"auth"`` (and ``""`` to accept RFC 2069 answers without qop).
        algo: the algorithms accepted (default: any the daemon offers).

    Returns:
        :attr:`~mhd2.DigestAuthResult.OK` only when everything matches: then
        the answer's ``nc`` is recorded and can never be used again.  On
        ``NONCE_STALE`` send a new challenge with ``stale=True``.

    Raises:
        UsageError: digest auth is not enabled (no ``digest_auth_random``).
    """
    qops = _qop_set(qop)
    allowed = DigestAuthAlgo(0)
    for a in _algo_flags(algo):
        allowed |= a
    registry = _registry_lookup(request._daemon_options)
    text = None
    for value in _authorization_values(request):
        scheme, rest = _split_scheme(value)
        if scheme == "digest":
            text = rest
            break
    if text is None:
        return DigestAuthResult.HEADER_MISSING
    try:
        params = parse_auth_params(text)
    except ValueError:
        return DigestAuthResult.HEADER_BROKEN
    if any(len(v) > MAX_PARAM_SIZE for v in params.values()):
        return DigestAuthResult.TOO_LARGE
    try:
        return _check(request, registry, params, realm, username, password,
                      max_nc or registry.max_nc, qops, allowed)
    except _Broken:
        return DigestAuthResult.HEADER_BROKEN


def _check(request: Request, registry: DigestNonceRegistry, p: dict[str, str], realm: str,
           username: str, password: str, max_nc: int, qops: frozenset[str],
           allowed: DigestAuthAlgo) -> DigestAuthResult:
    for required in ("realm", "nonce", "uri", "response"):
        if required not in p:
            raise _Broken
    if ("username" in p) == ("username*" in p):
        raise _Broken
    # algorithm
    algo_token = p.get("algorithm", "MD5").lower()
    found = _ALGO_BY_TOKEN.get(algo_token)
    if found is None or not found & allowed:
        return DigestAuthResult.WRONG_ALGO
    algo = found
    # qop, nc, cnonce
    qop = p.get("qop", "").lower()
    if qop not in qops:
        return DigestAuthResult.WRONG_QOP
    nc: int | None = None
    if qop:
        if "nc" not in p or "cnonce" not in p:
            raise _Broken
        nc_text = p["nc"]
        if not 1 <= len(nc_text) <= 16 or any(c not in "0123456789abcdefABCDEF" for c in nc_text):
            raise _Broken
        nc = int(nc_text, 16)
        if nc == 0:
            raise _Broken
    # userhash
    userhash_text = p.get("userhash", "false").lower()
    if userhash_text not in ("true", "false"):
        raise _Broken
    userhash = userhash_text == "true"
    # realm, then username
    if not constant_time_equals(p["realm"], realm):
        return DigestAuthResult.WRONG_REALM
    if "username*" in p:
        if userhash:
            raise _Broken
        try:
            sent_user = _ext_value(p["username*"])
        except (UnicodeDecodeError, LookupError):
            raise _Broken from None
    else:
        sent_user = p["username"]
    expected_user = digest_auth_calc_userhash(algo, username, realm) if userhash else username
    if not constant_time_equals(sent_user.lower() if userhash else sent_user, expected_user):
        return DigestAuthResult.WRONG_USERNAME
    # nonce and nc
    nonce = p["nonce"]
    state = registry.check(nonce, realm, nc, max_nc)
    if state is not DigestAuthResult.OK:
        return state
    # uri
    uri = p["uri"]
    if not _same_uri(request, uri):
        return DigestAuthResult.WRONG_URI
    # response
    ha1 = _h(algo, f"{username}:{realm}:{password}")
    ha2 = _h(algo, f"{request.method}:{uri}")
    if qop:
        expected = _h(algo, f"{ha1}:{nonce}:{p['nc']}:{p['cnonce']}:{qop}:{ha2}")
    else:
        expected = _h(algo, f"{ha1}:{nonce}:{ha2}")
    if not constant_time_equals(p["response"].lower(), expected):
        return DigestAuthResult.RESPONSE_WRONG
    registry.record(nonce, nc)
    return DigestAuthResult.OK
