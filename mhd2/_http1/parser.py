"""The request parser behind one small interface, and its h11 backend.

The HTTP/1 connection loop (:mod:`mhd2.http1`) needs four things from a
parser: the next request head, the next piece of its body, what was left over
after it, and whether the client waits for ``100 Continue``.  Everything else
-- the checks h11 does not make, framing decisions, writing -- lives in the
other modules of this package, so a second backend (llhttp through httptools)
is one more class here, not a change to the loop.

Results are plain values, never exceptions: a :class:`Head`, bytes of body, a
:class:`BodyEnd`, :data:`NEED_DATA`, :data:`CLOSED`, or a :class:`ParseError`
carrying the status to answer with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple, Protocol

import h11

from .fields import FieldScan, scan_fields
from .request_checks import transfer_coding_status

__all__ = [
    "CLOSED",
    "NEED_DATA",
    "BodyEnd",
    "H11Parser",
    "Head",
    "ParseError",
    "Parser",
]


class _Marker:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: The parser needs more bytes to say anything.
NEED_DATA: Final = _Marker("NEED_DATA")
#: The client closed the connection (between requests, or mid-message).
CLOSED: Final = _Marker("CLOSED")

#: Body pieces are merged up to this many bytes before they are returned ...
MERGE_BYTES = 256 * 1024
#: ... or this many parser events, so one read full of tiny chunks neither
#: calls the application once per chunk nor keeps the daemon busy unbroken.
MERGE_EVENTS = 512


class Head(NamedTuple):
    """A parsed request head.

    (A tuple: the fast path makes one per request with ``tuple.__new__``,
    without a Python ``__init__`` call.)

    Attributes:
        method, target, version: the request line (``version`` as ``b"1.1"``).
        lower_fields: ``(lower-case name, value)`` pairs, as the checks want them.
        scan: what :func:`~.fields.scan_fields` found.
    """

    method: bytes
    target: bytes
    version: bytes
    lower_fields: Sequence[tuple[bytes, bytes]]
    scan: FieldScan


@dataclass(slots=True)
class BodyEnd:
    """The body is complete; *trailers* as ``(name as sent, value)`` strings."""

    trailers: list[tuple[str, str]]


@dataclass(slots=True)
class ParseError:
    """The request is malformed: answer *status*, then close.

    ``detail`` is for the debug log only; it is never sent to the client.
    """

    status: int
    detail: str


class Parser(Protocol):
    """What the HTTP/1 loop needs of a backend (:class:`H11Parser` is the reference).

    One parser serves one connection, request after request.
    """

    @property
    def fed_count(self) -> int:
        """Bytes fed since the current request began (its head is at most this)."""

    def feed(self, data: bytes) -> None:
        """Give the parser bytes read from the client (``b""`` means end of input)."""

    def next_request(self) -> None:
        """The current request is done: parse what follows as the next one."""

    @property
    def has_next(self) -> bool:
        """Bytes of the next request were already received (pipelining)."""

    @property
    def at_eof(self) -> bool:
        """The client closed its sending side."""

    @property
    def has_more(self) -> bool:
        """Once the body is read: bytes beyond this request were received (pipelining)."""

    def raw_head_bytes(self) -> bytes:
        """The bytes fed while the head was parsed (for byte-level head checks)."""

    def next_head(self) -> Head | ParseError | _Marker:
        """The request head once complete, a :class:`ParseError`, or a marker."""

    def head_length(self) -> int:
        """How many of the bytes fed the head took."""

    def stop_recording(self) -> None:
        """The head is parsed: stop keeping copies of what is fed."""

    def next_body(self) -> bytes | BodyEnd | ParseError | _Marker:
        """The next piece of body, its end, or a marker."""

    @property
    def expects_continue(self) -> bool:
        """The client sent ``Expect: 100-continue`` and waits for it."""

    def unparsed(self) -> bytes:
        """Bytes received but not parsed yet (after the head: body, or what follows)."""


class H11Parser:
    """The requests of one connection, parsed with h11.

    One parser serves a connection; :meth:`next_request` moves it to the next
    request.  Underneath, each request gets a fresh :class:`h11.Connection`
    (about 1 µs), which only parses (mhd2 writes its responses itself); bytes
    of the next pipelined request are carried over to it.

    Args:
        max_head: the most bytes h11 buffers for an incomplete head.
    """

    __slots__ = (
        "_carried",
        "_eof",
        "_fed",
        "_h11",
        "_max_head",
        "_pending",
        "_recording",
        "fed_count",
    )

    def __init__(self, max_head: int) -> None:
        self._max_head = max_head
        # Made on first use: an idle kept-alive connection holds no h11
        # state machine (about 900 bytes each).
        self._h11: h11.Connection | None = None
        # Copies of what is fed, kept only while a head is being parsed.
        self._fed: list[bytes] = []
        self._recording = True
        self._carried = 0
        self._eof = False
        #: Bytes fed since the current request began (its head is at most this).
        self.fed_count = 0
        # A result found while merging body pieces, returned by the next call.
        self._pending: BodyEnd | ParseError | _Marker | None = None

    @property
    def _conn(self) -> h11.Connection:
        conn = self._h11
        if conn is None:
            conn = self._h11 = h11.Connection(h11.SERVER,
                                              max_incomplete_event_size=self._max_head)
        return conn

    def feed(self, data: bytes) -> None:
        """Give the parser bytes read from the client (``b""`` means end of input)."""
        self._conn.receive_data(data)
        if data:
            self.fed_count += len(data)
            if self._recording:
                self._fed.append(data)

    def next_request(self) -> None:
        """The current request is done: parse what follows as the next one."""
        data, eof = self._conn.trailing_data
        # RFC 9112 §2.2: "a server that is expecting to receive and parse a
        # request-line SHOULD ignore at least one empty line (CRLF) received
        # prior to the request-line" -- also between pipelined requests.
        data = bytes(data).lstrip(b"\r\n")
        self._h11 = None
        self._fed = []
        self._recording = True
        self.fed_count = 0
        self._pending = None
        self._carried = len(data)
        self._eof = eof
        if data:
            self.feed(bytes(data))
        if eof:
            self._conn.receive_data(b"")

    @property
    def has_next(self) -> bool:
        """Bytes of the next request were already received (pipelining)."""
        return self._carried > 0

    @property
    def has_more(self) -> bool:
        """Once the body is read: bytes beyond this request were received (pipelining)."""
        return bool(self._conn.trailing_data[0])

    def leftover(self) -> tuple[bytes, bool]:
        """After the request: the bytes received beyond it, and whether input ended."""
        data, eof = self._conn.trailing_data
        return bytes(data), eof

    @property
    def at_eof(self) -> bool:
        """The client closed its sending side."""
        return self._eof

    def raw_head_bytes(self) -> bytes:
        """The bytes fed while the head was parsed (for byte-level head checks)."""
        return b"".join(self._fed)

    def next_head(self) -> Head | ParseError | _Marker:
        """The request head, once complete."""
        conn = self._conn
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            if conn.their_state is h11.ERROR and conn.trailing_data[1]:
                return CLOSED  # the client closed mid-head: nobody to answer
            status = exc.error_status_hint
            if status == 501:
                status = transfer_coding_status(self.raw_head_bytes())
            return ParseError(status, str(exc))
        if event is h11.NEED_DATA:
            return NEED_DATA
        if type(event) is h11.Request:
            headers = event.headers
            return Head(event.method, event.target, event.http_version, headers,
                        scan_fields(headers))
        return CLOSED

    def head_length(self) -> int:
        """How many of the bytes fed the head took (the rest is body or next request)."""
        return self.fed_count - len(self._conn.trailing_data[0])

    def stop_recording(self) -> None:
        """The head is parsed: stop keeping copies of what is fed."""
        self._recording = False
        self._fed = []

    def next_body(self) -> bytes | BodyEnd | ParseError | _Marker:
        """The next piece of body (adjacent pieces merged), its end, or a marker."""
        pending = self._pending
        if pending is not None:
            self._pending = None
            return pending
        conn = self._conn
        pieces: list[bytes] = []
        size = 0
        for _ in range(MERGE_EVENTS):
            result: BodyEnd | ParseError | _Marker
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                result = CLOSED if conn.trailing_data[1] else ParseError(
                    exc.error_status_hint, str(exc))
            else:
                if type(event) is h11.Data:
                    pieces.append(event.data)
                    size += len(event.data)
                    if size >= MERGE_BYTES:
                        break
                    continue
                if type(event) is h11.EndOfMessage:
                    result = _body_end(event)
                elif event is h11.NEED_DATA:
                    result = NEED_DATA
                else:
                    result = CLOSED
            if not pieces:
                return result
            if result is not NEED_DATA:
                self._pending = result  # hand over the data first
            break
        return bytes(pieces[0]) if len(pieces) == 1 else b"".join(pieces)

    @property
    def expects_continue(self) -> bool:
        """The client sent ``Expect: 100-continue`` and waits for it."""
        return bool(self._conn.they_are_waiting_for_100_continue)

    def unparsed(self) -> bytes:
        """Bytes received but not parsed yet (after the head: body, or what follows)."""
        return bytes(self._conn.trailing_data[0])


def _body_end(event: h11.EndOfMessage) -> BodyEnd:
    headers = event.headers
    if not headers:
        return BodyEnd([])
    return BodyEnd([(name.decode("latin-1"), value.decode("latin-1"))
                    for name, value in headers.raw_items()])
