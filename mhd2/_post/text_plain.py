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
from .events import DEFAULT_MAX_FIELDS, decode_text
from .pairs import PairParser

__all__ = ["TextPlainParser"]


class TextPlainParser(PairParser):
    """Incremental ``text/plain`` form parser.

    Args:
        max_name_size: a field name longer than this stops parsing with
            :attr:`~mhd2.PostParseResult.FAILED_NO_LARGE_BUF_MEM`.
        max_fields: see :class:`~mhd2._post.events.FormParser`.
    """

    SEPARATOR = b"\n"
    BARE_NAME_STRIP = b"\r"  # an empty line (LF or CR LF) is skipped
    UNTERMINATED = PostParseResult.OK_BAD_TERMINATION

    def __init__(self, *, max_name_size: int = 16384, max_fields: int = DEFAULT_MAX_FIELDS) -> None:
        super().__init__(max_name_size=max_name_size, max_fields=max_fields)
        self._cr = False  # value state: a CR was held back at the end of the last piece

    def _field_name(self, raw: bytes) -> str:
        return decode_text(raw)

    def _value_piece(self, raw: bytes, ended: bool) -> bytes:
        if self._cr:
            raw = b"\r" + raw
            self._cr = False
        if raw.endswith(b"\r"):
            # The CR of a CR LF pair (when the LF is here) or maybe one
            # (when the piece ends here): not value data.
            raw = raw[:-1]
            self._cr = not ended
        return raw

    def _value_rest(self) -> bytes:
        # A CR held back at the very end is dropped, as one before the LF would be.
        self._cr = False
        return b""
