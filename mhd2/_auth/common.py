"""Header syntax shared by Basic and Digest, and constant-time comparison.

Header values reach this package as ``str`` whose code points are the bytes
on the wire (the HTTP/1 layer decodes fields as Latin-1).  :func:`wire_bytes`
gets those bytes back, :func:`text_of` reads them as UTF-8 where they are
UTF-8, and nothing here raises on any ``str`` except where it says so.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

__all__ = [
    "TOKEN_CHARS",
    "authorization_params",
    "constant_time_equals",
    "parse_auth_params",
    "quote",
    "split_scheme",
    "text_of",
    "utf8",
    "wire",
    "wire_bytes",
]

#: ``tchar`` of RFC 9110 §5.6.2.
TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                        "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def utf8(text: str) -> bytes:
    """UTF-8 bytes of *text*; surrogate escapes map back to their bytes.

    Never raises (a lone surrogate that is not an escape is passed through).
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def wire_bytes(value: str) -> bytes:
    """The bytes a header *value* was received as (its Latin-1 code points).

    A value with code points above 255 (not from the wire) is taken as UTF-8.
    """
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return utf8(value)


def text_of(value: str) -> str:
    """A received header *value* read as UTF-8 when it is valid UTF-8, else as is.

    Clients send user names as raw UTF-8 (RFC 7616 §4 with ``charset=UTF-8``).
    """
    raw = wire_bytes(value)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return value


def wire(value: str, utf8_wanted: bool) -> str:
    """Header text for *value*: with *utf8_wanted*, its UTF-8 bytes as Latin-1 code points."""
    return utf8(value).decode("latin-1") if utf8_wanted else value


def constant_time_equals(a: str | bytes, b: str | bytes) -> bool:
    """Compare two secrets in time that depends on neither content nor length.

    Both sides are hashed (SHA-256) first, so not even the length leaks.
    """
    ab = utf8(a) if isinstance(a, str) else bytes(a)
    bb = utf8(b) if isinstance(b, str) else bytes(b)
    return hmac.compare_digest(hashlib.sha256(ab).digest(), hashlib.sha256(bb).digest())


def quote(value: str) -> str:
    """A quoted-string (RFC 9110 §5.6.4): ``"`` and ``\\`` escaped with ``\\``."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def split_scheme(value: str) -> tuple[str, str]:
    """Split ``credentials = auth-scheme [ 1*SP ( token68 / #auth-param ) ]``.

    Returns:
        ``(scheme lowercased, the rest stripped)``.
    """
    value = value.strip(" \t")
    scheme, _, rest = value.partition(" ")
    if "\t" in scheme:
        scheme, _, more = scheme.partition("\t")
        rest = more + " " + rest
    return scheme.lower(), rest.strip(" \t")


def authorization_params(values: Iterable[str], scheme: str) -> str | None:
    """The part after *scheme* of the first ``Authorization`` value using it, or ``None``."""
    for value in values:
        found, rest = split_scheme(value)
        if found == scheme:
            return rest
    return None


def parse_auth_params(text: str) -> dict[str, str]:
    """Parse ``name=value, name="quoted", …`` (RFC 9110 §11.2 auth-params).

    RFC 9110 §11.2: "Each auth-param is a name/value pair … a parameter
    name MUST NOT occur more than once per challenge" -- so a repeated name is
    an error.  Names are lowercased; quoted values are unescaped.

    Raises:
        ValueError: bad syntax, an unterminated quoted string, or a
            parameter given twice.  Nothing else.
    """
    out: dict[str, str] = {}
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in " \t,":
            i += 1
        if i >= n:
            return out
        start = i
        while i < n and text[i] in TOKEN_CHARS:
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
            while i < n and text[i] in TOKEN_CHARS:
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
