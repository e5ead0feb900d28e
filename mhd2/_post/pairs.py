"""The loop shared by the two ``name=value`` encodings: urlencoded and ``text/plain``.

Both are a list of pairs, each ended by a separator byte (``&`` or LF), and in
each the name runs up to the first ``=`` and the value from there to the
separator; a pair without ``=`` is a name with an empty value.  They differ
only in how a name is decoded, what a value piece must hold back (a cut
percent escape, a CR that may belong to a CR LF) and whether a body may end
without a separator.  :class:`PairParser` is that loop, with those three
differences as hooks.
"""

from __future__ import annotations

from ..enums import PostParseResult
from .events import DEFAULT_MAX_FIELDS, Event, FieldData, FieldEnd, FieldStart, FormParser

__all__ = ["PairParser"]


class PairParser(FormParser):
    """Incremental parser of ``name=value`` pairs ended by :attr:`SEPARATOR`.

    A name is buffered whole (up to *max_name_size*); a value never is: its
    pieces come out as :class:`~mhd2._post.events.FieldData` as each body piece
    arrives, less what :meth:`_value_piece` holds back.

    Args:
        max_name_size: a (raw) field name longer than this stops parsing with
            :attr:`~mhd2.PostParseResult.FAILED_NO_LARGE_BUF_MEM`.
        max_fields: see :class:`~mhd2._post.events.FormParser`.
    """

    #: The byte that ends a pair.
    SEPARATOR: bytes
    #: Bytes dropped from the end of a name that has no ``=``; what is left
    #: empty is skipped, not a field.
    BARE_NAME_STRIP: bytes
    #: The result of a body whose last pair has no separator after it.
    UNTERMINATED: PostParseResult

    def __init__(self, *, max_name_size: int = 16384, max_fields: int = DEFAULT_MAX_FIELDS) -> None:
        super().__init__(max_fields=max_fields)
        self._max_name = max_name_size
        self._in_value = False
        self._name = bytearray()  # raw name bytes so far (name state)

    # -- hooks -------------------------------------------------------------------

    def _field_name(self, raw: bytes) -> str:  # pragma: no cover - abstract
        """Decode a raw field name."""
        raise NotImplementedError

    def _value_piece(self, raw: bytes, ended: bool) -> bytes:  # pragma: no cover - abstract
        """Decode the next raw bytes of a value; *ended*: the separator follows them.

        Returns:
            The value data to hand out now (may be ``b""``).  Bytes the next
            piece may change the meaning of are held back unless *ended*.
        """
        raise NotImplementedError

    def _value_rest(self) -> bytes:  # pragma: no cover - abstract
        """The body ended inside a value: return what was held back, as value data."""
        raise NotImplementedError

    # -- the loop ----------------------------------------------------------------

    def _feed(self, data: bytes, events: list[Event]) -> None:
        sep = self.SEPARATOR
        name = self._name
        pos, end = 0, len(data)
        while pos < end:
            if not self._in_value:
                cut = data.find(sep, pos)
                eq = data.find(b"=", pos, cut if cut >= 0 else end)
                stop = eq if eq >= 0 else cut
                if stop < 0:
                    name += data[pos:]
                    self._check_name()
                    return
                name += data[pos:stop]
                if not self._check_name():
                    return
                if eq >= 0:
                    if not self._start(events, FieldStart(self._field_name(bytes(name)))):
                        return
                    self._in_value = True
                else:
                    # A pair without "=": a name with an empty value (nothing
                    # left of it: no pair at all).
                    bare = name.rstrip(self.BARE_NAME_STRIP)
                    if bare:
                        if not self._start(events, FieldStart(self._field_name(bytes(bare)))):
                            return
                        events.append(FieldEnd())
                name.clear()
                pos = stop + 1
            else:
                cut = data.find(sep, pos)
                if cut < 0:
                    chunk = self._value_piece(data[pos:], False)
                    if chunk:
                        events.append(FieldData(chunk))
                    return
                chunk = self._value_piece(data[pos:cut], True)
                if chunk:
                    events.append(FieldData(chunk))
                events.append(FieldEnd())
                self._in_value = False
                pos = cut + 1

    def _close(self, events: list[Event]) -> PostParseResult:
        result = PostParseResult.OK
        if self._in_value:
            chunk = self._value_rest()
            if chunk:
                events.append(FieldData(chunk))
            events.append(FieldEnd())
            self._in_value = False
            result = self.UNTERMINATED
        else:
            bare = self._name.rstrip(self.BARE_NAME_STRIP)
            if bare:
                result = self.UNTERMINATED
                if self._start(events, FieldStart(self._field_name(bytes(bare)))):
                    events.append(FieldEnd())
        self._name.clear()
        return result

    def _check_name(self) -> bool:
        """Whether the name so far is within the limit; if not, stop parsing."""
        if len(self._name) > self._max_name:
            self.result = PostParseResult.FAILED_NO_LARGE_BUF_MEM
            self._name.clear()
            return False
        return True
