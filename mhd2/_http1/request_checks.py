"""Rules a request head must pass that h11 does not enforce.

h11 parses the request line and fields and refuses most malformed input.  What
it leaves to the server (see docs/design.rst) is checked here, as pure
functions over the parsed head, each rule quoting the RFC sentence it obeys.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = [
    "HeadRejection",
    "check_head",
    "check_host",
    "check_raw_head",
    "has_length_conflict",
    "transfer_coding_status",
]

#: ``(status, reason)``: the 4xx/5xx to answer with, and why.
HeadRejection = tuple[int, str]

_TRANSFER_ENCODING = re.compile(rb"(?im)^transfer-encoding[ \t]*:[ \t]*([^\r\n]*)")
_ABSOLUTE_FORM = re.compile(rb"[A-Za-z][A-Za-z0-9+.\-]*://")
# RFC 9110 §7.2: Host = uri-host [ ":" port ], with RFC 3986 §3.2.2:
#   uri-host    = IP-literal / IPv4address / reg-name
#   IP-literal  = "[" ( IPv6address / IPvFuture  ) "]"
#   IPvFuture   = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
#   reg-name    = *( unreserved / pct-encoded / sub-delims )
# (an IPv4address is also a reg-name).
_HOST = re.compile(
    rb"(?:\[(?:[0-9A-Fa-f:.]+|[vV][0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+)\]"
    rb"|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)"
    rb"(?::[0-9]*)?"
)


def has_length_conflict(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """True when the head carries both ``Content-Length`` and ``Transfer-Encoding``.

    RFC 9112 §6.1: "A server MAY reject a request that contains both
    Content-Length and Transfer-Encoding or process such a request in
    accordance with the Transfer-Encoding alone.  Regardless, the server MUST
    close the connection after responding to such a request".
    """
    seen_cl = seen_te = False
    for name, _ in headers:
        if name == b"content-length":
            seen_cl = True
        elif name == b"transfer-encoding":
            seen_te = True
    return seen_cl and seen_te


def check_head(
    method: bytes,
    target: bytes,
    http_version: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    strict_level: int,
) -> HeadRejection | None:
    """Check a parsed request head.

    Args:
        method, target, http_version: the request line as h11 parsed it.
        headers: h11's ``(lower-case name, value)`` pairs.
        strict_level: the daemon's :class:`~mhd2.StrictLevel` as an int.

    Returns:
        ``None`` when the head is acceptable, else the status and reason to refuse it.
    """
    # RFC 9110 §15.6.6: 505 "indicates that the server does not support, or
    # refuses to support, the major version of HTTP that was used in the
    # request message."  h11 accepts any HTTP/d.d.
    if http_version != b"1.1" and http_version != b"1.0":
        return 505, "HTTP version not supported"
    # RFC 9112 §3.2: request-target = origin-form / absolute-form /
    # authority-form / asterisk-form.
    if target[:1] != b"/":
        if target == b"*":
            # RFC 9112 §3.2.4: "only used for a server-wide OPTIONS request"
            if method != b"OPTIONS":
                return 400, "the asterisk-form target is only for OPTIONS"
        elif method == b"CONNECT":
            pass  # RFC 9112 §3.2.3: authority-form, for CONNECT only
        elif not _ABSOLUTE_FORM.match(target):
            return 400, "malformed request target"
    if strict_level >= 0 and has_length_conflict(headers):
        return 400, "both Content-Length and Transfer-Encoding"
    return None


#: The last Host value found well-formed (checking it again is wasted work).
_last_good_host = b""


def check_host(values: Sequence[bytes]) -> HeadRejection | None:
    """Check the request's ``Host`` field lines (at every strict level).

    RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code
    to any HTTP/1.1 request message that lacks a Host header field and to any
    request message that contains more than one Host header field line or a
    Host header field with an invalid field value."  (h11 refuses a missing
    Host in HTTP/1.1.)
    """
    if not values:
        return None
    if len(values) > 1:
        return 400, "more than one Host field line"
    global _last_good_host
    value = values[0]
    if value != _last_good_host:  # most requests repeat the previous one's Host
        if _HOST.fullmatch(value) is None:
            return 400, "malformed Host field value"
        _last_good_host = value
    return None


def check_raw_head(raw_head: bytes) -> HeadRejection | None:
    """Check the head's raw bytes for lenient syntax (strict levels >= 1).

    RFC 9112 §2.2: "a recipient MAY recognize a single LF as a line terminator"
    -- a strict server does not.  RFC 9112 §5.2: "A server that receives an
    obs-fold in a request message ... MUST either reject the message by sending
    a 400 (Bad Request) ... or replace each received obs-fold with one or more
    SP octets".
    """
    if raw_head.count(b"\n") != raw_head.count(b"\r\n"):
        return 400, "bare LF line ending"
    if b"\n " in raw_head or b"\n\t" in raw_head:
        return 400, "obsolete line folding"
    return None


def transfer_coding_status(raw_head: bytes) -> int:
    """The status for a request whose ``Transfer-Encoding`` h11 refused.

    RFC 9112 §6.3: "If a Transfer-Encoding header field is present in a request
    and the chunked transfer coding is not the final encoding, the message body
    length cannot be determined reliably; the server MUST respond with the 400
    (Bad Request) status code and then close the connection."  Otherwise the
    coding is one mhd2 does not implement: RFC 9112 §6.1 "A server that
    receives a request message with a transfer coding it does not understand
    SHOULD respond with 501 (Not Implemented)."
    """
    codings = [c.strip().lower() for value in _TRANSFER_ENCODING.findall(raw_head)
               for c in value.split(b",") if c.strip()]
    if b"chunked" in codings and codings[-1] != b"chunked":
        return 400
    return 501
