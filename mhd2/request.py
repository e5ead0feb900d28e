"""Request: what the client asked for, as the application sees it.

A :class:`Request` is created for each request head the daemon accepts and is
passed to the request callback.  Values (headers, cookies, query arguments) are
decoded lazily, on first use, so a request that only looks at its path costs
little.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Mapping
from operator import attrgetter
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ._auth import basic as _basic
from ._auth import digest as _digest
from ._auth.basic import BasicAuth
from ._auth.digest import DigestAuthInfo
from ._auth.nonces import registry_for
from ._http1.values import parse_cookies, parse_query, split_target
from .connection_info import ConnectionInfo
from .enums import DigestAuthAlgo, DigestAuthResult, HTTPMethod, HTTPVersion, ValueKind
from .exchange_view import ExchangeView
from .post_field import PostField

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .options import DaemonOptions

__all__ = ["ExchangeView", "HeaderView", "Request", "exchange_view"]


#: ``exchange_view(request)``: the engine state behind *request*, as
#: :class:`ExchangeView` shows it (for the library's own modules; applications
#: use the request's properties).  (An ``attrgetter``: called for every action
#: made, it costs less than a function of ours.)
exchange_view: Callable[[Request], ExchangeView] = attrgetter("_x")

#: ``ValueKind.HEADER``, looked up once (an enum member costs an attribute
#: lookup on the enum class each time; get_values runs for every ASGI request).
_HEADER = ValueKind.HEADER


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
        "__weakref__",
        "_args",
        "_cookies",
        "_headers",
        "_path",
        "_query",
        "_raw_headers",
        "_x",
        "app_context",
        "connection",
        "method",
        "upload_size",
        "uri",
        "version",
    )

    def __init__(
        self,
        exchange: ExchangeView,
        method: str,
        uri: str,
        version: str,
        raw_headers: list[tuple[str, str]],
        upload_size: int | None,
        connection: ConnectionInfo,
        header_bytes: Sequence[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self._x = exchange
        self.method = method
        self.uri = uri
        self.version = version
        self._headers = raw_headers
        self._raw_headers = header_bytes
        self.upload_size = upload_size
        self.connection = connection
        self.app_context: Any = None
        self._path: str | None = None
        self._query = ""
        self._args: list[tuple[str, str]] | None = None
        self._cookies: list[tuple[str, str]] | None = None

    @property
    def _daemon_options(self) -> DaemonOptions:
        return self._x.options

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
        """``(host, port)`` of the client.

        The real client: after a PROXY protocol header and, with
        ``forwarded_headers="x-forwarded"`` (or ``"forwarded"``), after the
        ``X-Forwarded-For`` (or ``Forwarded``) header of a trusted proxy.  The connection's own
        view is ``request.connection.client_address`` (after PROXY only) and
        ``request.connection.peer_address`` (the socket's peer).
        """
        return self._x.client_address or self.connection.client_address

    @property
    def scheme(self) -> str:
        """``"https"`` or ``"http"``: TLS, or what a trusted proxy said it was."""
        return self._x.scheme

    # -- progress and per-connection settings ----------------------------------------

    @property
    def upload_received(self) -> int:
        """Bytes of the request body received so far (``UPLOAD_SIZE_RECIEVED``)."""
        return self._x.upload_received

    @property
    def upload_remaining(self) -> int | None:
        """Bytes of the body still to come (``None`` when the size is unknown)."""
        if self.upload_size is None:
            return None if not self._x.body_read else 0
        return max(0, self.upload_size - self._x.upload_received)

    @property
    def bytes_sent(self) -> int:
        """Bytes of the response body written to the client so far.

        Counted as written, not as announced: a download the client aborts
        shows what it actually got (chunked framing bytes included).
        """
        return self._x.body_bytes_sent

    @property
    def response_status(self) -> int | None:
        """The status code of the response sent, or ``None`` before its head left."""
        return self._x.status

    @property
    def duration(self) -> float:
        """Seconds since the request's head was parsed."""
        return time.monotonic() - self._x.started_at

    @property
    def post_data(self) -> list[PostField]:
        """The form fields the POST parser kept in memory (``MHD_request_get_post_data_list``).

        Each is a :class:`~mhd2.PostField` with its name, value, and -- for file
        fields -- filename, content type and transfer encoding.
        """
        return list(self._x.post_fields)

    @property
    def connection_timeout(self) -> float | None:
        """The inactivity timeout of this request's connection (``MHD_C_O_TIMEOUT``).

        Setting it overrides the daemon's ``timeout`` for this connection only
        (``None`` disables it); it applies from the next wait on.  On HTTP/2
        it is the limit of this request's stream (see :doc:`/http2`).
        """
        return self._x.connection_timeout

    @connection_timeout.setter
    def connection_timeout(self, seconds: float | None) -> None:
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float)
                                    or not seconds > 0):
            from .errors import UsageError

            raise UsageError(f"connection_timeout must be seconds > 0 or None, not {seconds!r}")
        self._x.set_connection_timeout(seconds)

    # -- values ---------------------------------------------------------------

    def get_values(self, kind: ValueKind) -> list[tuple[str, str]]:
        """All ``(name, value)`` pairs of the given kinds, in arrival order.

        Args:
            kind: a :class:`~mhd2.ValueKind`; several may be combined with ``|``
                (headers, then cookies, then query arguments, then POST data,
                then trailers).
        """
        if kind is _HEADER:
            # The common call, without five flag tests (an IntFlag '&' is slow).
            return list(self._headers)
        out: list[tuple[str, str]] = []
        if kind & ValueKind.HEADER:
            out.extend(self._headers)
        if kind & ValueKind.COOKIE:
            out.extend(self._cookie_pairs())
        if kind & ValueKind.GET_ARGUMENT:
            out.extend(self._arg_pairs())
        if kind & ValueKind.POSTDATA:
            out.extend((f.name, f.value) for f in self._x.post_fields)
        if kind & ValueKind.FOOTER:
            out.extend(self._x.footers)
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
            for field in self._x.post_fields:
                if field.name == key:
                    return field.value
        if kind & ValueKind.FOOTER:
            lower = key.lower()
            for name, value in self._x.footers:
                if name.lower() == lower:
                    return value
        return None

    @property
    def headers(self) -> HeaderView:
        """The request's header lines as a read-only, case-insensitive mapping."""
        return HeaderView(self._headers)

    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """The header lines as bytes: ``(lower-case name, value)`` pairs in arrival order.

        The form ASGI's ``scope["headers"]`` and h11 use: the names
        lower-cased, the values as received (surrounding whitespace removed,
        as in :attr:`headers`), duplicates kept.  Each access returns a new
        list.  On HTTP/1 these are the bytes the parser saw; on HTTP/2 the
        fields as :meth:`get_values` gives them (``host`` from
        ``:authority``, the ``cookie`` lines joined), encoded as Latin-1.
        """
        known = self._raw_headers
        if known is not None:
            return list(known)
        return [(name.lower().encode("latin-1", "replace"), value.encode("latin-1", "replace"))
                for name, value in self._headers]

    @property
    def footers(self) -> HeaderView:
        """The request's trailer lines (after a chunked body was read)."""
        return HeaderView(self._x.footers)

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
            target_matches=self._digest_target_matches, registry=registry_for(self._x.nonces),
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
