"""Request: what the client asked for, as the application sees it.

A :class:`Request` is created for each request head the daemon accepts and is
passed to the request callback.  Values (headers, cookies, query arguments) are
decoded lazily, on first use, so a request that only looks at its path costs
little.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import trio

from ._auth import basic as _basic
from ._auth import digest as _digest
from ._auth.basic import BasicAuth
from ._auth.digest import DigestAuthInfo
from ._auth.nonces import registry_for
from ._http1.values import parse_cookies, parse_query, split_target
from .connection_info import ConnectionInfo
from .enums import DigestAuthAlgo, DigestAuthResult, HTTPMethod, HTTPVersion, ValueKind
from .pool import LargePool

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .actions import Action
    from .options import DaemonOptions

__all__ = ["HeaderView", "Request", "request_resume"]


class HeaderView(Mapping[str, str]):
    """Read-only, case-insensitive view of request header (or trailer) lines.

    ``view["content-type"]`` is the first value; :meth:`get_all` gives every
    value of a name; iteration yields each name once, as first sent.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Sequence[tuple[str, str]]) -> None:
        self._items = items

    def __getitem__(self, name: str) -> str:
        lower = name.lower()
        for key, value in self._items:
            if key.lower() == lower:
                return value
        raise KeyError(name)

    def get_all(self, name: str) -> list[str]:
        """Every value sent under *name*, in arrival order."""
        lower = name.lower()
        return [v for k, v in self._items if k.lower() == lower]

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for key, _ in self._items:
            if key.lower() not in seen:
                seen.add(key.lower())
                yield key

    def __len__(self) -> int:
        return len({k.lower() for k, _ in self._items})

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(k.lower() == name.lower() for k, _ in self._items)

    def __repr__(self) -> str:
        return f"HeaderView({list(self._items)!r})"


class Request:
    """One HTTP request (``struct MHD_Request``).

    Attributes:
        method: the method as sent, e.g. ``"GET"``.
        uri: the raw request target, e.g. ``"/a%20b?x=1"``.
        version: ``"HTTP/1.0"`` or ``"HTTP/1.1"``.
        upload_size: body length: ``0`` for none, an ``int`` from
            ``Content-Length``, ``None`` for a chunked body (size unknown).
        app_context: a free slot for the application, kept for the life of
            the request (also across suspend/resume).
        connection: the :class:`~mhd2.ConnectionInfo` of the connection.
    """

    __slots__ = (
        "_action",
        "_args",
        "_body_read",
        "_cookies",
        "_daemon_options",
        "_ended",
        "_footers",
        "_headers",
        "_large_pool",
        "_on_end",
        "_path",
        "_postdata",
        "_query",
        "_resume_pending",
        "_resume_scope",
        "_suspended",
        "_token",
        "_upload_action",
        "app_context",
        "connection",
        "method",
        "upload_size",
        "uri",
        "version",
    )

    def __init__(
        self,
        method: str,
        uri: str,
        version: str,
        raw_headers: list[tuple[str, str]],
        upload_size: int | None,
        connection: ConnectionInfo,
        options: DaemonOptions,
        token: trio.lowlevel.TrioToken | None,
        large_pool: LargePool,
    ) -> None:
        self.method = method
        self.uri = uri
        self.version = version
        self._headers = raw_headers
        self.upload_size = upload_size
        self.connection = connection
        self._daemon_options = options
        self._token = token
        self.app_context: Any = None
        self._action: Action | None = None
        self._path: str | None = None
        self._query = ""
        self._args: list[tuple[str, str]] | None = None
        self._cookies: list[tuple[str, str]] | None = None
        self._footers: list[tuple[str, str]] = []
        self._postdata: list[tuple[str, str]] = []
        self._resume_scope: trio.CancelScope | None = None
        self._resume_pending = False
        self._suspended = False
        self._upload_action: Any = None
        self._large_pool = large_pool
        self._body_read = upload_size == 0
        #: Called once when the request ends, however it ends (library hooks).
        self._on_end: list[Callable[[], object]] = []
        self._ended = False

    # -- request line -------------------------------------------------------

    @property
    def http_method(self) -> HTTPMethod:
        """The method as an :class:`~mhd2.HTTPMethod` (``OTHER`` for extension methods)."""
        return HTTPMethod.from_str(self.method)

    @property
    def http_version(self) -> HTTPVersion:
        """The version as an :class:`~mhd2.HTTPVersion`."""
        return HTTPVersion.from_str(self.version)

    @property
    def path(self) -> str:
        """The path without the query, percent-decoded (non-UTF-8 bytes as surrogate escapes)."""
        if self._path is None:
            self._path, self._query = split_target(self.uri)
        return self._path

    @property
    def client_address(self) -> tuple[str, int]:
        """``(host, port)`` of the client."""
        return self.connection.client_address

    # -- values ---------------------------------------------------------------

    def get_values(self, kind: ValueKind) -> list[tuple[str, str]]:
        """All ``(name, value)`` pairs of the given kinds, in arrival order.

        Args:
            kind: a :class:`~mhd2.ValueKind`; several may be combined with ``|``
                (headers, then cookies, then query arguments, then POST data,
                then trailers).
        """
        out: list[tuple[str, str]] = []
        if kind & ValueKind.HEADER:
            out.extend(self._headers)
        if kind & ValueKind.COOKIE:
            out.extend(self._cookie_pairs())
        if kind & ValueKind.GET_ARGUMENT:
            out.extend(self._arg_pairs())
        if kind & ValueKind.POSTDATA:
            out.extend(self._postdata)
        if kind & ValueKind.FOOTER:
            out.extend(self._footers)
        return out

    def get_value(self, kind: ValueKind, key: str) -> str | None:
        """The first value named *key* among the given kinds, or ``None``.

        Header and trailer names compare case-insensitively; cookie, argument
        and POST field names exactly.
        """
        if kind & ValueKind.HEADER:
            lower = key.lower()
            for name, value in self._headers:
                if name.lower() == lower:
                    return value
        for flag, pairs in (
            (ValueKind.COOKIE, self._cookie_pairs),
            (ValueKind.GET_ARGUMENT, self._arg_pairs),
        ):
            if kind & flag:
                for name, value in pairs():
                    if name == key:
                        return value
        if kind & ValueKind.POSTDATA:
            for name, value in self._postdata:
                if name == key:
                    return value
        if kind & ValueKind.FOOTER:
            lower = key.lower()
            for name, value in self._footers:
                if name.lower() == lower:
                    return value
        return None

    @property
    def headers(self) -> HeaderView:
        """The request's header lines as a read-only, case-insensitive mapping."""
        return HeaderView(self._headers)

    @property
    def footers(self) -> HeaderView:
        """The request's trailer lines (after a chunked body was read)."""
        return HeaderView(self._footers)

    @property
    def cookies(self) -> Mapping[str, str]:
        """Cookies as a read-only mapping (first value of a name wins).

        Empty when the daemon was made with ``disable_cookies=True``.
        """
        return MappingProxyType(_first_wins(self._cookie_pairs()))

    @property
    def args(self) -> Mapping[str, str]:
        """Query arguments as a read-only mapping (first value of a name wins)."""
        return MappingProxyType(_first_wins(self._arg_pairs()))

    def _cookie_pairs(self) -> list[tuple[str, str]]:
        if self._cookies is None:
            if self._daemon_options.disable_cookies:
                self._cookies = []
            else:
                lines = [v for k, v in self._headers if k.lower() == "cookie"]
                self._cookies = parse_cookies(lines) if lines else []
        return self._cookies

    def _arg_pairs(self) -> list[tuple[str, str]]:
        if self._args is None:
            self.path  # noqa: B018  (splits the target)
            self._args = parse_query(
                self._query, plus_as_space=self._daemon_options.uri_query_plus_as_space
            )
        return self._args

    # -- authentication -------------------------------------------------------------

    @property
    def basic_auth(self) -> BasicAuth | None:
        """The Basic credentials of the ``Authorization`` header (RFC 7617), or ``None``.

        Raises:
            AuthError: the header says ``Basic`` but is malformed (bad base64,
                no colon ...); answer 400 or challenge again.
        """
        return _basic.parse_basic(self.headers.get_all("authorization"))

    @property
    def digest_auth_info(self) -> DigestAuthInfo | None:
        """What the Digest ``Authorization`` header claims (user or userhash, realm ...).

        Nothing is verified: use it to find the user, then call
        :meth:`digest_auth_check` or :meth:`digest_auth_check_digest`.
        ``None`` when there is no Digest header or it is broken.
        """
        return _digest.digest_info(self.headers.get_all("authorization"))

    def digest_auth_check(
        self,
        realm: str,
        username: str,
        password: str,
        *,
        max_nc: int = 0,
        qop: str | Collection[str] = "auth",
        algo: DigestAuthAlgo = DigestAuthAlgo.ANY,
    ) -> DigestAuthResult:
        """Check the request's Digest ``Authorization`` (RFC 7616) against a password.

        Args:
            realm: the protection space the credentials must be for.
            username: the expected user.
            password: the user's password.
            max_nc: the highest nonce count accepted (``0``: the daemon's
                ``digest_auth_max_nc``).
            qop: the quality of protection accepted.
            algo: the algorithms accepted.

        Returns:
            A :class:`~mhd2.DigestAuthResult`; ``OK`` only for a valid, fresh,
            not replayed response.  See :doc:`/auth`.

        Raises:
            UsageError: digest auth is off (no ``digest_auth_random``), or a
                bad *qop* / *algo*.
        """
        return self._digest_check(realm, username, _digest.password_digest(
            username, realm, password), max_nc, qop, algo)

    def digest_auth_check_digest(
        self,
        realm: str,
        username: str,
        userdigest: bytes,
        *,
        max_nc: int = 0,
        qop: str | Collection[str] = "auth",
        algo: DigestAuthAlgo = DigestAuthAlgo.SHA256,
    ) -> DigestAuthResult:
        """As :meth:`digest_auth_check`, with a stored userdigest instead of the password.

        Args:
            userdigest: ``mhd2.digest_auth_calc_userdigest(algo, username,
                realm, password)``, stored in place of the password.
            algo: the single algorithm *userdigest* was made with; an answer
                with another algorithm is ``WRONG_ALGO``.

        Raises:
            UsageError: digest auth is off, *algo* is not a single
                algorithm, or *userdigest* is not that algorithm's size.
        """
        digest, single = _digest.stored_digest(userdigest, algo)
        return self._digest_check(realm, username, digest, max_nc, qop, single)

    def _digest_check(self, realm: str, username: str,
                      userdigest: Callable[[DigestAuthAlgo], bytes], max_nc: int,
                      qop: str | Collection[str], algo: DigestAuthAlgo) -> DigestAuthResult:
        return _digest.check(
            self.headers.get_all("authorization"), method=self.method, request_uri=self.uri,
            target_matches=self._digest_target_matches, registry=registry_for(self),
            realm=realm, username=username, userdigest=userdigest, max_nc=max_nc, qop=qop,
            algo=algo)

    def _digest_target_matches(self, target: str) -> bool:
        """Whether the origin-form *target* (a Digest ``uri``) names this request's target."""
        path, query = split_target(target)
        plus = self._daemon_options.uri_query_plus_as_space
        return path == self.path and parse_query(query, plus_as_space=plus) == self._arg_pairs()

    def __repr__(self) -> str:
        return f"<mhd2.Request {self.method} {self.uri} {self.version}>"


def _first_wins(pairs: list[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in pairs:
        out.setdefault(name, value)
    return out


def request_resume(request: Request) -> None:
    """Resume a suspended request (``MHD_request_resume``).

    Safe to call from any trio task of the daemon's run and from any other
    thread.  Resuming a request that is not suspended (or has ended) does nothing.
    """
    token = request._token
    try:
        current: trio.lowlevel.TrioToken | None = trio.lowlevel.current_trio_token()
    except RuntimeError:
        current = None
    if token is not None and current is not token:
        # Another thread (or another trio run): hop into the daemon's run.
        try:
            token.run_sync_soon(_resume_in_run, request)
        except trio.RunFinishedError:
            pass
        return
    _resume_in_run(request)


def _resume_in_run(request: Request) -> None:
    """Resume *request*; runs in the daemon's trio run."""
    if request._ended or not request._suspended:
        return
    scope = request._resume_scope
    if scope is None:
        # Suspended by an action that the daemon has not started waiting on
        # yet (resume called from the callback itself): remember it.
        request._resume_pending = True
        return
    scope.cancel()

