"""Events of the form parsers and their common base class."""

from __future__ import annotations

from dataclasses import dataclass

from ..enums import PostParseResult

__all__ = ["DEFAULT_MAX_FIELDS", "Event", "FieldData", "FieldEnd", "FieldStart", "FormParser"]

#: Default cap on the number of fields (parts) of one body.
DEFAULT_MAX_FIELDS = 1000


@dataclass(frozen=True, slots=True)
class FieldStart:
    """A new field begins.

    Attributes:
        name: the field name (decoded; bytes that are not UTF-8 become
            surrogate escapes, as in ``request.path``).
        filename: the file name of a ``multipart/form-data`` file field, else ``None``.
        content_type: the part's ``Content-Type`` (multipart only), else ``None``.
        transfer_encoding: the part's ``Content-Transfer-Encoding`` (multipart
            only; reported, not decoded), else ``None``.
    """

    name: str
    filename: str | None = None
    content_type: str | None = None
    transfer_encoding: str | None = None


@dataclass(frozen=True, slots=True)
class FieldData:
    """A piece of the current field's value (already decoded); never empty."""

    data: bytes


@dataclass(frozen=True, slots=True)
class FieldEnd:
    """The current field is complete."""


Event = FieldStart | FieldData | FieldEnd


def decode_text(raw: bytes) -> str:
    """Bytes of a name or header value as ``str`` (UTF-8, surrogate escapes otherwise)."""
    return raw.decode("utf-8", "surrogateescape")


class FormParser:
    """Common state of the form parsers: the result, and the field count limit.

    Args:
        max_fields: more fields than this stop parsing with
            :attr:`~mhd2.PostParseResult.FAILED_NO_POOL_MEM` (MHD2 keeps each
            field's record in the connection's memory pool, and that is the
            result it reports when the pool runs out).
    """

    def __init__(self, *, max_fields: int = DEFAULT_MAX_FIELDS) -> None:
        if max_fields < 1:
            raise ValueError("max_fields must be >= 1")
        self.result: PostParseResult | None = None
        #: Number of fields started so far.
        self.fields = 0
        self._max_fields = max_fields

    def feed(self, data: bytes) -> list[Event]:
        """Parse the next piece of the body; return the events it completes.

        Args:
            data: the next bytes of the body (any size, may be empty).

        Returns:
            The events *data* completes (``[]`` once :attr:`result` is set:
            after an error or :meth:`close`, input is ignored).
        """
        events: list[Event] = []
        if self.result is None:
            self._feed(data, events)
        return events

    def close(self) -> list[Event]:
        """The body is complete: return the last events and set :attr:`result`.

        Returns:
            The events of a field the end of the body completes or cuts off
            (``[]`` if :attr:`result` was already set, which it then keeps).
        """
        events: list[Event] = []
        if self.result is None:
            result = self._close(events)
            if self.result is None:  # (unless the last field hit a limit)
                self.result = result
        return events

    # -- for subclasses ----------------------------------------------------------

    def _feed(self, data: bytes, events: list[Event]) -> None:  # pragma: no cover - abstract
        """Parse *data* (no :attr:`result` yet), appending to *events*."""
        raise NotImplementedError

    def _close(self, events: list[Event]) -> PostParseResult:  # pragma: no cover - abstract
        """End the body (no :attr:`result` yet), appending to *events*; return the result."""
        raise NotImplementedError

    def _start(self, events: list[Event], start: FieldStart) -> bool:
        """Append *start* unless the field limit is hit; return whether it was."""
        if self.fields >= self._max_fields:
            self.result = PostParseResult.FAILED_NO_POOL_MEM
            return False
        self.fields += 1
        events.append(start)
        return True

    def _invalid(self) -> None:
        """Stop at malformed data: ``PARTIAL_…`` if some field was seen, else ``FAILED_…``."""
        self.result = (
            PostParseResult.PARTIAL_INVALID_POST_FORMAT
            if self.fields
            else PostParseResult.FAILED_INVALID_POST_FORMAT
        )
