"""A published message and the list :meth:`Topic.since` returns."""

from __future__ import annotations

from . import encode

__all__ = ["Message", "MessageList"]


class Message:
    """One message of a topic: ``Message(id, event, data)``.

    Attributes:
        id: its id, the cursor meaning "everything after this message".
        event: the event name given to ``publish`` (or ``None``).
        data: the payload (``bytes``).

    The wire bytes of each delivery kind (:meth:`sse`, :meth:`ws`,
    :meth:`json`) are made on first use and kept: every subscriber gets the
    same ``bytes`` object.
    """

    __slots__ = ("_json", "_sse", "_sse_chunk", "_ws", "data", "end", "event", "id", "key")

    def __init__(self, id: str, event: str | None, data: bytes, *, key: object = None,
                 end: int = 0) -> None:
        self.id = id
        self.event = event
        self.data = data
        #: The backend's sort key of :attr:`id`.
        self.key: object = id if key is None else key
        #: Bytes published on the topic up to and including this message
        #: (how far behind a subscriber is: see ``max_pending_bytes``).
        self.end = end
        self._sse: bytes | None = None
        self._sse_chunk: bytes | None = None
        self._ws: bytes | None = None
        self._json: bytes | None = None

    @property
    def text(self) -> str | None:
        """:attr:`data` as text if it is UTF-8, else ``None``."""
        return encode.as_text(self.data)

    def sse(self) -> bytes:
        """The server-sent event (made once)."""
        frame = self._sse
        if frame is None:
            frame = self._sse = encode.sse_frame(self.id, self.event, self.data)
        return frame

    def sse_chunk(self) -> bytes:
        """The server-sent event as one HTTP/1.1 chunk (made once): what an event
        stream's body carries on the wire, written as it is by direct delivery."""
        chunk = self._sse_chunk
        if chunk is None:
            frame = self.sse()
            # RFC 9112 §7.1: "chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF"
            chunk = self._sse_chunk = b"%x\r\n%s\r\n" % (len(frame), frame)
        return chunk

    def ws(self) -> bytes:
        """The whole WebSocket frame (made once)."""
        frame = self._ws
        if frame is None:
            frame = self._ws = encode.ws_frame(self.id, self.event, self.data)
        return frame

    def json(self) -> bytes:
        """The long-poll JSON item (made once)."""
        item = self._json
        if item is None:
            item = self._json = encode.json_item(self.id, self.event, self.data)
        return item

    def __repr__(self) -> str:
        return f"Message(id={self.id!r}, event={self.event!r}, data={self.data[:40]!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (self.id, self.event, self.data) == (other.id, other.event, other.data)

    def __hash__(self) -> int:
        return hash(self.id)


class MessageList(list[Message]):
    """The messages after a cursor, oldest first.

    Attributes:
        truncated: the cursor is older than the history (or unknown here):
            messages after it may be missing; what is retained is all there.
    """

    truncated: bool

    def __init__(self, messages: list[Message] | tuple[()] = (), truncated: bool = False) -> None:
        super().__init__(messages)
        self.truncated = truncated
