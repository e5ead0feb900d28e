"""Basic authentication (RFC 7617) over header values."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import NamedTuple

from ..errors import AuthError, UsageError
from .common import authorization_params, constant_time_equals, quote, wire

__all__ = ["BasicAuth", "basic_challenge", "parse_basic"]


class BasicAuth(NamedTuple):
    """Credentials from ``Authorization: Basic`` (``MHD_BasicAuthInfo``)."""

    username: str
    password: str

    def matches(self, username: str, password: str) -> bool:
        """Whether both parts equal the given ones, compared in constant time."""
        user_ok = constant_time_equals(self.username, username)
        pass_ok = constant_time_equals(self.password, password)
        return user_ok & pass_ok


def parse_basic(authorization: Iterable[str]) -> BasicAuth | None:
    """The Basic credentials among the ``Authorization`` header *values*.

    RFC 7617 §2: ``credentials = "Basic" SP token68`` where the token is the
    base64 of ``user-id ":" password``.  The bytes are decoded as UTF-8 (the
    only charset RFC 7617 §2.1 names), falling back to Latin-1 for old
    clients that send that.

    Returns:
        ``None`` when no value uses the Basic scheme.

    Raises:
        AuthError: the Basic value is broken: not base64, or no colon.
    """
    token = authorization_params(authorization, "basic")
    if token is None:
        return None
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


def basic_challenge(realm: str, prefer_utf8: bool = False) -> str:
    """The ``WWW-Authenticate`` value ``Basic realm="…"`` (RFC 7617 §2).

    Args:
        realm: the protection space.
        prefer_utf8: add ``charset="UTF-8"`` (RFC 7617 §2.1) and send the realm
            as UTF-8.

    Raises:
        UsageError: *realm* is not a ``str``.
    """
    if not isinstance(realm, str):
        raise UsageError("realm must be a str")
    value = "Basic realm=" + quote(wire(realm, prefer_utf8))
    if prefer_utf8:
        value += ', charset="UTF-8"'
    return value
