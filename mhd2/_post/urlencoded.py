"""``application/x-www-form-urlencoded`` (WHATWG URL Standard, §5 "application/x-www-form-urlencoded").

The WHATWG parser, streamed:

    "Let sequences be the result of splitting input on 0x26 (&).  For each byte
    sequence bytes in sequences: If bytes is the empty byte sequence, then
    continue.  If bytes contains a 0x3D (=), then let name be the bytes from the
    start of bytes up to but excluding its first 0x3D (=), and let value be the
    bytes, if any, after the first 0x3D (=) up to the end of bytes.  If 0x3D (=)
    is not present, let name be bytes and value be the empty byte sequence.
    Replace any 0x2B (+) in name and value with 0x20 (SP).  Let nameString and
    valueString be the result of running UTF-8 decode without BOM on the
    percent-decoding of name and value, respectively."

Invalid percent escapes: the WHATWG percent-decoder keeps them literally —
"If byte is 0x25 (%) and the next two bytes after byte in input are not in the
ranges 0x30 (0) to 0x39 (9), 0x41 (A) to 0x46 (F), and 0x61 (a) to 0x66 (f),
all inclusive, append byte to output" — and so does libmicrohttpd (its
"lenient" percent-decoding).  ``a=%zz&b=%4`` therefore gives ``a = "%zz"`` and
``b = "%4"`` and the result stays ``OK``.

Values are bytes (the application decides on the charset); names are decoded
as UTF-8 with surrogate escapes.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from ..enums import PostParseResult
from .events import DEFAULT_MAX_FIELDS, decode_text
from .pairs import PairParser

__all__ = ["UrlencodedParser", "pct_decode", "split_escape_tail"]


def pct_decode(raw: bytes) -> bytes:
    """``+`` → space, then WHATWG percent-decoding (invalid escapes kept literally)."""
    if b"+" in raw:
        raw = raw.replace(b"+", b" ")
    if b"%" not in raw:
        return raw
    return unquote_to_bytes(raw)


def split_escape_tail(chunk: bytes) -> tuple[bytes, bytes]:
    """Split off a ``%`` or ``%X`` at the end that the next piece may complete."""
    i = chunk.rfind(b"%", max(0, len(chunk) - 2))
    if i < 0:
        return chunk, b""
    return chunk[:i], chunk[i:]


class UrlencodedParser(PairParser):
    """Incremental ``application/x-www-form-urlencoded`` parser.

    "Let sequences be the result of splitting input on 0x26 (&) [...] If
    bytes is the empty byte sequence, then continue."  A body may end without
    a ``&`` (the result is ``OK``).

    Args:
        max_name_size: a (raw) field name longer than this stops parsing with
            :attr:`~mhd2.PostParseResult.FAILED_NO_LARGE_BUF_MEM` (names are
            buffered whole, values never are).
        max_fields: see :class:`~mhd2._post.events.FormParser`.
    """

    SEPARATOR = b"&"
    BARE_NAME_STRIP = b""
    UNTERMINATED = PostParseResult.OK

    def __init__(self, *, max_name_size: int = 16384, max_fields: int = DEFAULT_MAX_FIELDS) -> None:
        super().__init__(max_name_size=max_name_size, max_fields=max_fields)
        self._tail = b""  # an incomplete escape held back (value state)

    def _field_name(self, raw: bytes) -> str:
        return decode_text(pct_decode(raw))

    def _value_piece(self, raw: bytes, ended: bool) -> bytes:
        if self._tail:
            raw = self._tail + raw
            self._tail = b""
        if not ended:
            raw, self._tail = split_escape_tail(raw)
        return pct_decode(raw)

    def _value_rest(self) -> bytes:
        tail, self._tail = self._tail, b""
        return pct_decode(tail)
