"""``WWW-Authenticate: Digest`` values (RFC 7616 §3.3), prepared once.

:class:`DigestChallengeHeader` validates the challenge's settings and formats
everything but the nonce once; :meth:`~DigestChallengeHeader.values` then
makes the header values for one fresh nonce.  That split is what lets a
prepared (reusable) challenge still send a new nonce every time.
"""

from __future__ import annotations

from collections.abc import Collection

from ..enums import DigestAuthAlgo, StatusCode
from ..errors import UsageError
from .basic import basic_challenge
from .common import quote, wire
from .digest import DEFAULT_CHALLENGE_ALGO, algo_list, qop_set

__all__ = ["DigestChallengeHeader", "basic_challenge"]


def _header_text(what: str, value: str) -> str:
    """*value* if it can go into a header line, else :class:`UsageError`."""
    # The same rule as Response.add_header: no CR, LF, TAB or other control
    # character, nothing beyond Latin-1 -- checked here so that a prepared
    # challenge fails when it is made, not at its first send.
    if any(ord(c) < 32 or ord(c) == 127 or ord(c) > 255 for c in value):
        raise UsageError(f"{what} {value!r} cannot be sent in a header: it has a control "
                         "character or a character beyond Latin-1 (use prefer_utf8=True for "
                         "a non-Latin-1 realm)", StatusCode.RESP_HEADER_VALUE_INVALID)
    return value


class DigestChallengeHeader:
    """The settings of a Digest challenge, checked and formatted once.

    Args:
        realm: the protection space (also bound into each nonce).
        opaque: echoed back by clients; not checked.
        domain: space-separated URIs of the protection space.
        qop: ``"auth"`` (the only protection MHD2 supports); include ``""``
            to also accept RFC 2069 clients.
        algo: :class:`~mhd2.DigestAuthAlgo` flags: one header value each, in
            the order SHA-256, SHA-512-256, MD5 (clients use the first one
            they support; RFC 7616 §3.7: "the server SHOULD send the
            WWW-Authenticate header fields in order of preference").
        userhash: let the client send ``H(username:realm)`` instead of the name.
        prefer_utf8: add ``charset=UTF-8`` (RFC 7616 §3.3) and send the realm
            as UTF-8.

    Raises:
        UsageError: bad *algo* or *qop*, or a value that cannot be sent.
    """

    __slots__ = ("_parts", "algos", "realm")

    # Declared boilerplate (issue 21): mhd2.auth's public signatures repeat
    # these settings and their defaults (see DigestChallenge.__init__).
    def __init__(
        self,
        realm: str,
        *,
        opaque: str | None = None,
        domain: str | None = None,
        qop: str | Collection[str] = "auth",
        algo: DigestAuthAlgo = DEFAULT_CHALLENGE_ALGO,
        userhash: bool = False,
        prefer_utf8: bool = False,
    ) -> None:
        if not isinstance(realm, str):
            raise UsageError("realm must be a str")
        qops = qop_set(qop)
        self.algos = algo_list(algo)
        self.realm = realm
        head = "realm=" + quote(_header_text("realm", wire(realm, prefer_utf8)))
        if "auth" in qops:
            head += ', qop="auth"'
        tail = ""
        if opaque is not None:
            tail += ", opaque=" + quote(_header_text("opaque", opaque))
        if domain is not None:
            tail += ", domain=" + quote(_header_text("domain", domain))
        extra = (", charset=UTF-8" if prefer_utf8 else "") + (", userhash=true" if userhash else "")
        # Per algorithm: (text before the nonce, text after it without stale, extra).
        self._parts = [(f"Digest {head}, algorithm={a.token}, nonce=\"", f"\"{tail}", extra)
                       for a in self.algos]

    def values(self, nonce: str, *, stale: bool = False) -> list[str]:
        """The ``WWW-Authenticate`` values for one fresh *nonce*.

        Args:
            nonce: from :meth:`NonceRegistry.new_nonce <mhd2._auth.nonces.NonceRegistry.new_nonce>`
                for :attr:`realm`.
            stale: RFC 7616 §3.3: "a flag indicating that the previous request
                from the client was rejected because the nonce value was
                stale" -- the client retries without asking the user.
        """
        flag = ", stale=true" if stale else ""
        return [before + nonce + after + flag + extra for before, after, extra in self._parts]

