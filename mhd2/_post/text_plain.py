"""``text/plain`` form data (HTML Living Standard, "text/plain encoding algorithm").

    "For each name → value of pairs: Append name, a single U+003D EQUALS SIGN
    character (=), value, a U+000D CARRIAGE RETURN (CR) U+000A LINE FEED (LF)
    character pair to result."

So a body is ``name=value\\r\\n`` lines; nothing is escaped (the format is
ambiguous by design: a value containing CR LF cannot be told from a new line).
A bare LF also ends a line.  A last line without its CR LF is parsed but the
result is ``OK_BAD_TERMINATION``, as MHD2 does.  A non-empty line without
``=`` is a field with an empty value; empty lines are skipped.
"""

from __future__ import annotations

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

__all__ = ["TextPlainParser"]


class TextPlainParser(FormParser):
    """Incremental ``text/plain`` form parser.

    Args:
        max_name_size: a field name longer than this stops parsing with
            :attr:`~mhd2.PostParseResult.FAILED_NO_LARGE_BUF_MEM`.
        max_fields: see :class:`~mhd2._post.events.FormParser`.
    """

    def __init__(self, *, max_name_size: int = 16384, max_fields: int = DEFAULT_MAX_FIELDS) -> None:
        super().__init__(max_fields=max_fields)
        self._max_name = max_name_size
        self._in_value = False
        self._name = bytearray()
        self._cr = False  # value state: a CR was held back at the end of the last piece

    def feed(self, data: bytes) -> list[Event]:
        """Parse the next piece of the body; return the events it completes."""
        events: list[Event] = []
        if self.result is not None:
            return events
        pos, end = 0, len(data)
        while pos < end:
            if not self._in_value:
                lf = data.find(b"\n", pos)
                eq = data.find(b"=", pos, lf if lf >= 0 else end)
                stop = eq if eq >= 0 else lf
                if stop < 0:
                    self._name += data[pos:]
                    self._check_name()
                    break
                self._name += data[pos:stop]
                if not self._check_name():
                    break
                if eq >= 0:
                    if not self._start(events, FieldStart(decode_text(bytes(self._name)))):
                        break
                    self._in_value = True
                    self._cr = False
                else:
                    line = self._name.rstrip(b"\r")
                    if line:
                        if not self._start(events, FieldStart(decode_text(bytes(line)))):
                            break
                        events.append(FieldEnd())
                self._name.clear()
                pos = stop + 1
            else:
                lf = data.find(b"\n", pos)
                stop = end if lf < 0 else lf
                chunk = data[pos:stop]
                if self._cr:
                    chunk = b"\r" + chunk
                    self._cr = False
                if chunk.endswith(b"\r"):
                    # The CR of a CR LF pair (when the LF is here) or maybe one
                    # (when the piece ends here): not value data.
                    chunk = chunk[:-1]
                    self._cr = lf < 0
                if chunk:
                    events.append(FieldData(chunk))
                if lf < 0:
                    break
                events.append(FieldEnd())
                self._in_value = False
                pos = lf + 1
        return events

    def close(self) -> list[Event]:
        """The body is complete: flush the last field and set :attr:`result`."""
        events: list[Event] = []
        if self.result is not None:
            return events
        result = PostParseResult.OK
        if self._in_value:
            events.append(FieldEnd())
            result = PostParseResult.OK_BAD_TERMINATION
        else:
            line = self._name.rstrip(b"\r")
            if line:
                result = PostParseResult.OK_BAD_TERMINATION
                if self._start(events, FieldStart(decode_text(bytes(line)))):
                    events.append(FieldEnd())
        self._in_value = False
        self._name.clear()
        if self.result is None:
            self.result = result
        return events

    def _check_name(self) -> bool:
        if len(self._name) > self._max_name:
            self.result = PostParseResult.FAILED_NO_LARGE_BUF_MEM
            self._name.clear()
            return False
        return True
