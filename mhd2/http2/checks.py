"""The checks of an HTTP/2 request head that turn it into a request line and fields.

Sans-IO: a list of ``(name, value)`` byte pairs as HPACK decoded them in, a
:class:`RequestHead` or a :class:`Malformed` out.  RFC 9113 §8.1.1: "Malformed
requests or responses that are detected MUST be treated as a stream error
of type PROTOCOL_ERROR."
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .._http1.request_checks import check_host

__all__ = ["Malformed", "RequestHead", "check_request_head", "check_trailers", "strip_response_fields"]

#: RFC 9113 §8.2.2: "An endpoint MUST NOT generate an HTTP/2 message containing
#: connection-specific header fields ... Connection, Proxy-Connection,
#: Keep-Alive, Transfer-Encoding, Upgrade".
CONNECTION_SPECIFIC = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade",
})
#: RFC 8441 §4 adds ``:protocol`` (extended CONNECT; the server sends
#: SETTINGS_ENABLE_CONNECT_PROTOCOL = 1, see mhd2.http2.machine).
_REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path", b":protocol"})
#: RFC 9110 §5.1: field names are tokens; RFC 9113 §8.2.1 also refuses upper case.
_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
#: RFC 9113 §8.2.1: a value must not contain NUL, CR or LF, nor begin or end
#: with whitespace.
_BAD_VALUE = re.compile(rb"[\x00\r\n]|^[ \t]|[ \t]$")
_METHOD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class Malformed(Exception):
    """The request is malformed (RFC 9113 §8.1.1): reset its stream with PROTOCOL_ERROR."""


@dataclass(slots=True)
class RequestHead:
    """An HTTP/2 request head as the engine needs it."""

    method: str
    uri: str
    authority: str | None
    fields: list[tuple[str, str]]
    content_length: int | None
    expects_continue: bool
    #: The ``:protocol`` of an extended CONNECT (RFC 8441), else ``None``; the
    #: request is then presented as ``GET`` with ``upgrade: <protocol>``.
    protocol: str | None = None


def check_request_head(headers: list[tuple[bytes, bytes]]) -> RequestHead:
    """Validate the pseudo-header and regular fields of a request (RFC 9113 §8.2, §8.3).

    Returns:
        The head; ``Host`` comes first from ``:authority`` when the request
        has no ``Host`` field, and ``Cookie`` crumbs are joined (§8.2.3).

    Raises:
        Malformed: a rule below is broken.
    """
    pseudo: dict[bytes, bytes] = {}
    fields: list[tuple[str, str]] = []
    cookies: list[str] = []
    hosts: list[bytes] = []
    content_length: int | None = None
    expects_continue = False
    regular_seen = False
    for name, value in headers:
        if name[:1] == b":":
            # §8.3: "Pseudo-header fields MUST NOT appear in a trailer section",
            # "All pseudo-header fields MUST appear in a field block before all
            # regular field lines", no undefined ones, none twice.
            if regular_seen:
                raise Malformed(f"pseudo-header {name!r} after a regular field")
            if name not in _REQUEST_PSEUDO:
                raise Malformed(f"pseudo-header {name!r} is not defined for requests")
            if name in pseudo:
                raise Malformed(f"pseudo-header {name!r} appears twice")
            pseudo[name] = value
            continue
        regular_seen = True
        if not _NAME.fullmatch(name):
            # §8.2.1: "A field name MUST NOT contain characters in the ranges
            # 0x00-0x20, 0x41-0x5a, or 0x7f-0xff (all ranges inclusive)."
            raise Malformed(f"field name {name!r} is not a lowercase token")
        if _BAD_VALUE.search(value):
            raise Malformed(f"field value of {name!r} has NUL, CR, LF or outer whitespace")
        if name in CONNECTION_SPECIFIC:
            raise Malformed(f"connection-specific field {name!r}")
        if name == b"te" and value.lower() != b"trailers":
            # §8.2.2: "The only exception to this is the TE header field, which
            # MAY be present in an HTTP/2 request; when it is, it MUST NOT
            # contain any value other than "trailers"."
            raise Malformed("TE other than 'trailers'")
        text = value.decode("latin-1")
        if name == b"cookie":
            cookies.append(text)
            continue
        if name == b"host":
            hosts.append(value)
        elif name == b"content-length":
            if not value.isdigit() or (content_length is not None
                                       and content_length != int(value)):
                raise Malformed("invalid Content-Length")
            content_length = int(value)
        elif name == b"expect" and value.lower() == b"100-continue":
            expects_continue = True
        fields.append((name.decode("ascii"), text))
    method = pseudo.get(b":method")
    if method is None or not _METHOD.fullmatch(method):
        raise Malformed("missing or invalid :method")
    authority = pseudo.get(b":authority")
    protocol = pseudo.get(b":protocol")
    if protocol is not None:
        method, path = _check_extended_connect(method, protocol, pseudo, authority)
        # Presented as the HTTP/1.1 request it stands for (RFC 8441 §5: the
        # extended CONNECT replaces the GET with "Upgrade: websocket"): the
        # application and action_websocket see GET and an Upgrade field
        # carrying the :protocol token.  (A client's own Upgrade field was
        # refused above as connection-specific, so this one is the daemon's.)
        fields.append(("upgrade", protocol.decode("ascii")))
    elif method == b"CONNECT":
        # §8.5: "The :scheme and :path pseudo-header fields MUST be omitted."
        if b":scheme" in pseudo or b":path" in pseudo or authority is None:
            raise Malformed("CONNECT needs :authority and no :scheme or :path")
        path = authority
    if protocol is None and method != b"CONNECT":
        # §8.3.1: "All HTTP/2 requests MUST include exactly one valid value for
        # the :method, :scheme, and :path pseudo-header fields, unless they are
        # CONNECT requests"; ":path ... MUST NOT be empty for "http" or "https"
        # URIs"; "*" only for OPTIONS.
        path = pseudo.get(b":path", b"")
        if b":scheme" not in pseudo or not pseudo[b":scheme"] or not path:
            raise Malformed("missing :scheme or :path")
        if path[:1] != b"/" and not (path == b"*" and method == b"OPTIONS"):
            raise Malformed(":path is neither origin-form nor '*' for OPTIONS")
        if _BAD_VALUE.search(path) or b" " in path:
            raise Malformed(":path contains whitespace or control characters")
    if hosts and check_host(hosts) is not None:
        # The same rule as HTTP/1 (RFC 9112 §3.2): one Host field line, whose
        # value is RFC 3986 host[:port].
        raise Malformed("more than one Host field, or a malformed one")
    if authority is not None:
        if check_host([authority]) is not None:
            # §8.3.1: ":authority ... MUST NOT include the deprecated userinfo
            # subcomponent"; RFC 3986 §3.2: authority = [ userinfo "@" ] host
            # [ ":" port ] -- nothing else (no path, query, space).  The same
            # check as HTTP/1's Host.
            raise Malformed("invalid :authority")
        if hosts and hosts[0] != authority:
            # §8.3.1: "A server SHOULD treat a request as malformed if it contains
            # a Host header field that identifies an entity that differs from the
            # entity in the ":authority" pseudo-header field."
            raise Malformed("Host differs from :authority")
        if not hosts:
            fields.insert(0, ("host", authority.decode("latin-1")))
    if cookies:
        # §8.2.3: "these MUST be concatenated into a single octet string using
        # the two-octet delimiter of 0x3b, 0x20 (the ASCII string "; ")".
        fields.append(("cookie", "; ".join(cookies)))
    return RequestHead(
        method=method.decode("ascii"),
        uri=path.decode("latin-1"),
        authority=None if authority is None else authority.decode("latin-1"),
        fields=fields,
        content_length=content_length,
        expects_continue=expects_continue,
        protocol=None if protocol is None else protocol.decode("ascii"),
    )


def _check_extended_connect(method: bytes, protocol: bytes, pseudo: dict[bytes, bytes],
                            authority: bytes | None) -> tuple[bytes, bytes]:
    """The rules of an extended CONNECT (RFC 8441 §4); returns ``(b"GET", path)``.

    Raises:
        Malformed: ``:protocol`` on another method, not a token, or without
            ``:scheme``, ``:path`` or ``:authority``.
    """
    # RFC 8441 §4: "A new pseudo-header field :protocol MAY be included on
    # request HEADERS indicating the desired protocol to be spoken on the
    # tunnel created by CONNECT" -- on no other method (RFC 9113 §8.3: a
    # pseudo-header field not defined for the request makes it malformed).
    if method != b"CONNECT":
        raise Malformed(":protocol on a method other than CONNECT")
    if not _METHOD.fullmatch(protocol):
        raise Malformed(":protocol is not a token")
    # "On requests that contain the :protocol pseudo-header field, the
    # :scheme and :path pseudo-header fields of the target URI (see Section
    # 5) MUST also be included."
    path = pseudo.get(b":path", b"")
    if not pseudo.get(b":scheme") or not path or authority is None:
        raise Malformed("an extended CONNECT needs :scheme, :path and :authority")
    if path[:1] != b"/" or _BAD_VALUE.search(path) or b" " in path:
        raise Malformed(":path of an extended CONNECT is not origin-form")
    return b"GET", path


def check_trailers(headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """Validate a trailer section (§8.1: no pseudo-header fields in trailers)."""
    out: list[tuple[str, str]] = []
    for name, value in headers:
        if name[:1] == b":" or not _NAME.fullmatch(name) or _BAD_VALUE.search(value):
            raise Malformed(f"invalid trailer field {name!r}")
        if name in CONNECTION_SPECIFIC:
            raise Malformed(f"connection-specific trailer field {name!r}")
        out.append((name.decode("ascii"), value.decode("latin-1")))
    return out


#: Response fields mhd2 never sends on HTTP/2 (§8.2.2); ``content-length`` is
#: handled by the reply, which sends only an honest one.
_NEVER_SENT = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding",
                         "upgrade", "content-length"})


def strip_response_fields(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The application's response fields, lower-cased, without connection-specific ones.

    RFC 9113 §8.2.1: "A field value MUST NOT start or end with an ASCII
    whitespace character": outer spaces and tabs are stripped (the name and
    the rest of the value were checked when the application set them).
    """
    out = []
    for name, value in headers:
        lower = name.lower()
        if lower not in _NEVER_SENT:
            out.append((lower, value.strip(" \t")))
    return out
