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
from .events import (
    DEFAULT_MAX_FIELDS,
    Event,
    FieldData,
    FieldEnd,
    FieldStart,
    FormParser,
    decode_text,
)

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


class UrlencodedParser(FormParser):
    """Incremental ``application/x-www-form-urlencoded`` parser.

    Args:
        max_name_size: a (raw) field name longer than this stops parsing with
            :attr:`~mhd2.PostParseResult.FAILED_NO_LARGE_BUF_MEM` (names are
            buffered whole, values never are).
        max_fields: see :class:`~mhd2._post.events.FormParser`.
    """

    def __init__(self, *, max_name_size: int = 16384, max_fields: int = DEFAULT_MAX_FIELDS) -> None:
        super().__init__(max_fields=max_fields)
        self._max_name = max_name_size
        self._in_value = False
        self._name = bytearray()  # raw name bytes so far (name state)
        self._tail = b""  # an incomplete escape held back (value state)

    def feed(self, data: bytes) -> list[Event]:
        """Parse the next piece of the body; return the events it completes."""
        events: list[Event] = []
        if self.result is not None:
            return events
        pos, end = 0, len(data)
        while pos < end:
            if not self._in_value:
                amp = data.find(b"&", pos)
                eq = data.find(b"=", pos, amp if amp >= 0 else end)
                stop = eq if eq >= 0 else amp
                if stop < 0:
                    self._name += data[pos:]
                    self._check_name()
                    break
                self._name += data[pos:stop]
                if not self._check_name():
                    break
                if eq >= 0:
                    if not self._start(events, FieldStart(decode_text(pct_decode(bytes(self._name))))):
                        break
                    self._in_value = True
                    self._tail = b""
                elif self._name:
                    # "If 0x3D (=) is not present, let name be bytes and value be
                    # the empty byte sequence."
                    if not self._start(events, FieldStart(decode_text(pct_decode(bytes(self._name))))):
                        break
                    events.append(FieldEnd())
                # else: "If bytes is the empty byte sequence, then continue."
                self._name.clear()
                pos = stop + 1
            else:
                amp = data.find(b"&", pos)
                stop = end if amp < 0 else amp
                chunk = self._tail + data[pos:stop]
                if amp < 0:
                    chunk, self._tail = split_escape_tail(chunk)
                else:
                    self._tail = b""
                if chunk:
                    events.append(FieldData(pct_decode(chunk)))
                if amp < 0:
                    break
                events.append(FieldEnd())
                self._in_value = False
                pos = amp + 1
        return events

    def close(self) -> list[Event]:
        """The body is complete: flush the last field and set :attr:`result` (``OK``)."""
        events: list[Event] = []
        if self.result is not None:
            return events
        if self._in_value:
            if self._tail:
                events.append(FieldData(pct_decode(self._tail)))
            events.append(FieldEnd())
        elif self._name and self._start(events, FieldStart(decode_text(pct_decode(bytes(self._name))))):
            events.append(FieldEnd())
        self._in_value = False
        self._name.clear()
        self._tail = b""
        if self.result is None:
            self.result = PostParseResult.OK
        return events

    def _check_name(self) -> bool:
        if len(self._name) > self._max_name:
            self.result = PostParseResult.FAILED_NO_LARGE_BUF_MEM
            self._name.clear()
            return False
        return True
