"""The pure-Python fast path of the h11 backend, with h11 as its referee.

h11 is a complete, careful parser, and so costs ~15 µs per request head in
Python.  Most heads are plainly well-formed, and for those a few ``bytes``
splits give the same answer.  :class:`PlainParser` splits the heads of the
shared fast-path language (:mod:`.refereed`: CRLF line ends, printable ASCII,
no obs-fold, ...) and, on top of that, only those whose request line is
``token SP target SP HTTP/1.x`` with an origin-form target or ``*`` and no
``CONNECT``, and whose field lines are ``token ":" value``.  Everything else
-- and anything it is not sure about -- goes, from its first byte, to h11
exactly as with the h11 parser alone.
"""

from __future__ import annotations

from typing import Final

from .refereed import RefereedParser, SplitHead

__all__ = ["PlainParser"]

_PROTOCOLS: Final = {b"HTTP/1.1": b"1.1", b"HTTP/1.0": b"1.0"}
# RFC 9110 §5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-"
#   / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA.  Deleting these from
# a run of tokens leaves nothing.
_TCHAR: Final = (b"!#$%&'*+-.^_`|~0123456789"
                 b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


class PlainParser(RefereedParser):
    """The requests of one connection, split in Python where h11 would agree.

    Same interface and results as :class:`~.parser.H11Parser`.

    Args:
        max_head: the most bytes of an incomplete head kept before refusing it.
    """

    __slots__ = ()

    def _split_head(self, head: bytes) -> SplitHead:
        """The head as h11 reads it, if it is plainly well-formed; else None.

        *head* holds printable ASCII, SP and HTAB lines ending in CRLF only
        (the shared byte-level checks ran), and ends with CRLF CRLF.
        """
        lines = head.split(b"\r\n")
        line = lines[0]
        # RFC 9112 §3: request-line = method SP request-target SP HTTP-version
        parts = line.split(b" ")
        if len(parts) != 3:
            return None
        method, target, protocol = parts
        version = _PROTOCOLS.get(protocol)
        # RFC 9112 §3.2: origin-form = absolute-path [ "?" query ], or "*"
        # (asterisk-form); absolute- and authority-form (CONNECT) are h11's.
        if (version is None or not target or (target[0] != 0x2F and target != b"*")
                or b"\t" in line or method == b"CONNECT"):
            return None
        names = [method]
        fields = []
        # The head ends with CRLF CRLF: the last two pieces are empty.
        for field_line in lines[1:-2]:
            # RFC 9112 §5: field-line = field-name ":" OWS field-value OWS
            name, colon, value = field_line.partition(b":")
            if not colon:
                return None
            names.append(name)
            fields.append((name, value.lstrip(b" \t")))
        # RFC 9110 §9.1: method = token; §5.1: field-name = token.
        if b"" in names or b"".join(names).translate(None, _TCHAR):
            return None
        return method, target, version, fields
