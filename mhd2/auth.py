"""HTTP authentication actions: Basic (RFC 7617) and Digest (RFC 7616), as in MHD2.

The parsing, hashing, checking and nonce bookkeeping are sans-IO code in
:mod:`mhd2._auth` and are reached from the request (``request.basic_auth``,
``request.digest_auth_info``, ``request.digest_auth_check``,
``request.digest_auth_check_digest``).  This module holds the thin layer that
turns a challenge into an action or a response:

* :func:`action_basic_auth_challenge` / :func:`action_digest_auth_challenge`:
  answer 401 with ``WWW-Authenticate`` on a fresh response;
* :func:`response_add_auth_basic_challenge`: put a Basic challenge on a
  response once, so that a reusable response can be sent many times;
* :class:`DigestChallenge`: a Digest challenge prepared once and sent many
  times -- each send with a fresh nonce (a nonce must never be reused).

The names this module had before the split (``basic_auth_of``,
``digest_auth_check``, ``DigestNonceRegistry`` ...) are kept.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from ._auth.basic import BasicAuth, basic_challenge
from ._auth.challenge import DigestChallengeHeader
from ._auth.common import constant_time_equals, parse_auth_params
from ._auth.digest import DEFAULT_CHALLENGE_ALGO, DigestAuthInfo
from ._auth.digest import calc_userdigest as digest_auth_calc_userdigest
from ._auth.digest import calc_userhash as digest_auth_calc_userhash
from ._auth.nonces import NonceRegistry, registry_for
from .actions import Action, action_from_response
from .body_source import Buffer
from .enums import DigestAuthAlgo, HTTPStatus, StatusCode, reason_phrase
from .errors import AuthError, UsageError
from .request import Request, exchange_view
from .response import Response

__all__ = [
    "DEFAULT_CHALLENGE_ALGO",
    "BasicAuth",
    "DigestAuthInfo",
    "DigestChallenge",
    "DigestNonceRegistry",
    "action_basic_auth_challenge",
    "action_digest_auth_challenge",
    "basic_auth_check",
    "basic_auth_of",
    "constant_time_equals",
    "digest_auth_calc_userdigest",
    "digest_auth_calc_userhash",
    "digest_auth_check",
    "parse_auth_params",
    "response_add_auth_basic_challenge",
]

#: The per-daemon nonce registry (the name it had before the sans-IO split).
DigestNonceRegistry = NonceRegistry


# -- reading credentials (kept names; the request methods are the API) --------------


def basic_auth_of(request: Request) -> BasicAuth | None:
    """``request.basic_auth``: the Basic credentials, ``None``, or :class:`~mhd2.AuthError`."""
    return request.basic_auth


def basic_auth_check(request: Request, username: str, password: str) -> bool:
    """Whether *request* carries Basic credentials equal to these (constant time).

    A missing or broken header is simply ``False``.
    """
    try:
        auth = request.basic_auth
    except AuthError:
        return False
    return auth is not None and auth.matches(username, password)


#: ``digest_auth_check(request, realm, username, password, *, max_nc=0, qop="auth",
#: algo=DigestAuthAlgo.ANY)`` is :meth:`Request.digest_auth_check
#: <mhd2.Request.digest_auth_check>` itself (the method, taken from the class), so
#: the kept name cannot drift from it.
digest_auth_check = Request.digest_auth_check


# -- challenges as actions ------------------------------------------------------------


def _challenge(request: Request, response: Response, values: list[str]) -> Action:
    if response is None:
        raise UsageError("an auth challenge needs a response (its body is the 401 page)")
    if response._frozen or response._destroyed:
        raise UsageError(
            "an auth challenge needs a fresh response: this one was already used or "
            "destroyed (the WWW-Authenticate header is added to it); for a challenge sent "
            "many times use response_add_auth_basic_challenge or mhd2.DigestChallenge",
            StatusCode.TOO_LATE)
    for value in values:
        response.add_header("WWW-Authenticate", value)
    if response.status != HTTPStatus.UNAUTHORIZED:
        # MHD2 sends the response as given, with status 401.
        response.status = int(HTTPStatus.UNAUTHORIZED)
        response.reason = reason_phrase(response.status)
    return action_from_response(request, response)


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
    return _challenge(request, response, [basic_challenge(realm, prefer_utf8)])


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
    header = DigestChallengeHeader(realm, opaque=opaque, domain=domain, qop=qop, algo=algo,
                                   userhash=userhash, prefer_utf8=prefer_utf8)
    nonce = registry_for(exchange_view(request).nonces).new_nonce(realm)
    return _challenge(request, response, header.values(nonce, stale=stale))


# -- prepared (reusable) challenges --------------------------------------------------------


def response_add_auth_basic_challenge(response: Response, realm: str, *,
                                      prefer_utf8: bool = False) -> None:
    """Add ``WWW-Authenticate: Basic realm=…`` to a 401 *response* (MHD2's function).

    Do it once, before the first send; make the response reusable
    (``response.set_options(reusable=True)``) and answer every unauthorised
    request with ``action_from_response(request, response)``.

    Raises:
        UsageError: the response is not 401 (``RESP_HTTP_CODE_NOT_SUITABLE``),
            already has a Basic challenge (``RESP_HEADERS_CONFLICT``), is
            frozen or destroyed (``TOO_LATE``), or the realm cannot be sent.
    """
    if not isinstance(response, Response):
        raise UsageError("response_add_auth_basic_challenge needs an mhd2.Response")
    response._check_mutable("response_add_auth_basic_challenge")  # TOO_LATE once sent
    if response.status != HTTPStatus.UNAUTHORIZED:
        raise UsageError(
            f"a Basic challenge goes on a 401 response, not {response.status}: make it with "
            "status 401 (or use action_basic_auth_challenge, which sets it)",
            StatusCode.RESP_HTTP_CODE_NOT_SUITABLE)
    if any(k.lower() == "www-authenticate" and v[:6].lower() == "basic "
           for k, v in response.headers):
        raise UsageError("this response already has a Basic challenge",
                         StatusCode.RESP_HEADERS_CONFLICT)
    response.add_header("WWW-Authenticate", basic_challenge(realm, prefer_utf8))


class DigestChallenge:
    """A Digest 401 challenge prepared once, sent any number of times.

    MHD2's ``MHD_response_add_auth_digest_challenge`` puts the challenge on
    a response and the daemon makes a new nonce each time the response is
    used.  A nonce is single-use state, so here the prepared object holds the
    constant parts -- the page, its headers and the checked, pre-formatted
    challenge text -- and :meth:`action` makes the per-send 401 response with
    a fresh nonce from the daemon.  The page bytes are not copied per send.

    Args:
        realm: the protection space.
        body: the page shown when the user cancels (kept, not copied per send).
        headers: ``(name, value)`` header lines of the page (e.g. ``Content-Type``),
            checked now.
        opaque, domain, qop, algo, userhash, prefer_utf8: as for
            :func:`action_digest_auth_challenge`.

    Raises:
        UsageError: bad *algo*/*qop*, or a header or value that cannot be sent.
    """

    __slots__ = ("_body", "_header", "_headers")

    # Declared boilerplate (issue 21): the settings below repeat those of
    # DigestChallengeHeader.__init__ (and of action_digest_auth_challenge) on
    # purpose -- a public signature lists every option and its default, for
    # help(), the docs and type checkers; the values are passed on unchanged.
    def __init__(
        self,
        realm: str,
        body: Buffer = b"",
        *,
        headers: Sequence[tuple[str, str]] = (),
        opaque: str | None = None,
        domain: str | None = None,
        qop: str | Collection[str] = "auth",
        algo: DigestAuthAlgo = DEFAULT_CHALLENGE_ALGO,
        userhash: bool = False,
        prefer_utf8: bool = False,
    ) -> None:
        self._header = DigestChallengeHeader(realm, opaque=opaque, domain=domain, qop=qop,
                                             algo=algo, userhash=userhash,
                                             prefer_utf8=prefer_utf8)
        self._body = bytes(body)
        self._headers = [(str(k), str(v)) for k, v in headers]
        trial = Response.from_empty(HTTPStatus.UNAUTHORIZED)  # refuses bad headers now
        for name, value in self._headers:
            trial.add_header(name, value)

    @property
    def realm(self) -> str:
        """The realm this challenge is for."""
        return self._header.realm

    def response(self, request: Request, *, stale: bool = False) -> Response:
        """A new 401 response carrying this challenge with a fresh nonce.

        Raises:
            UsageError: digest auth is not enabled (no ``digest_auth_random``).
        """
        nonce = registry_for(exchange_view(request).nonces).new_nonce(self._header.realm)
        response = Response.from_buffer_static(HTTPStatus.UNAUTHORIZED, self._body)
        for name, value in self._headers:
            response.add_header(name, value)
        for value in self._header.values(nonce, stale=stale):
            response.add_header("WWW-Authenticate", value)
        return response

    def action(self, request: Request, *, stale: bool = False) -> Action:
        """Answer *request* with this challenge (``stale=True`` after ``NONCE_STALE``)."""
        return action_from_response(request, self.response(request, stale=stale))
