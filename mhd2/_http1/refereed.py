"""A fast head parser for plainly well-formed requests, with h11 as its referee.

Both fast backends -- llhttp (:mod:`.llhttp`) and pure Python (:mod:`.plain`)
-- share this class: the buffering, the byte-level checks that decide which
heads a fast path may parse at all, the one pass over the fields that both
refers the doubtful ones to h11 and builds the :class:`~.fields.FieldScan`,
``Content-Length`` framing of bodies, and the hand-over to an
:class:`~.parser.H11Parser` from the head's first byte.  A subclass only
splits a head it was given into request line and fields
(:meth:`RefereedParser._split_head`), or says it cannot.

The language of the fast path (on which h11 and the fast parsers agree; a test
compares them on every printable byte): CRLF line ends only, printable ASCII,
SP and HTAB only, no obs-fold, one request line ``METHOD SP target SP
HTTP/1.x`` with single spaces, ``HTTP/1.0`` or ``HTTP/1.1``, at most one
``Host`` (exactly one on 1.1), at most one ``Content-Length`` of 1 to 18 digits, no
``Transfer-Encoding``, no ``Expect``, no ``Upgrade``.  Any other request --
and anything the subclass refuses -- goes, from its first byte, to h11,
whose answer is final; the next request goes back to the fast path.  So the
bad-input answers are h11's by construction, and mhd2's own checks
(:mod:`.request_checks`) run on the result either way.

The byte-level checks run once per received chunk when the whole chunk
passes (its pipelined heads then need none of their own), else on each head
alone.
"""

from __future__ import annotations

from typing import Final

from .fields import FieldScan
from .parser import CLOSED, MERGE_BYTES, NEED_DATA, BodyEnd, H11Parser, Head, ParseError, _Marker

__all__ = ["RefereedParser", "SplitHead"]

# Anything but printable ASCII, SP, HTAB, CR and LF sends the head to h11:
# control bytes (h11 refuses them), DEL, and obs-text (h11 refuses it in the
# target and allows it in values; llhttp's rules differ).  Deleting these
# from a head leaves nothing when there is no other byte (faster than a regex).
_PLAIN_BYTES: Final = b"\t\r\n" + bytes(range(0x20, 0x7F))
_OWS: Final = (0x20, 0x09)

#: What :meth:`RefereedParser._split_head` returns: method, target, version
#: (``b"1.1"`` or ``b"1.0"``) and the fields as ``(name, value)`` (value
#: without leading OWS), or None to give the head to h11.
SplitHead = tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]]] | None


def _plain(data: bytes) -> bool:
    """*data* has CRLF line ends only, no obs-fold, and printable ASCII, SP or HTAB only."""
    crlf = data.count(b"\r\n")
    return not (data.count(b"\n") != crlf or data.count(b"\r") != crlf
                or b"\n " in data or b"\n\t" in data or data.translate(None, _PLAIN_BYTES))


class RefereedParser:
    """The requests of one connection: the fast path where h11 would agree, else h11.

    Same interface and results as :class:`~.parser.H11Parser`.  Subclasses
    implement :meth:`_split_head`, and may hook :meth:`_forget` and
    :meth:`_ended` to keep per-connection parser state.

    Args:
        max_head: the most bytes of an incomplete head kept before refusing it.
    """

    __slots__ = ("_clean", "_eof", "_head", "_head_len", "_max_head", "_pending", "_referee",
                 "_remaining", "_started")

    def __init__(self, max_head: int) -> None:
        self._max_head = max_head
        # Received, not yet handed out: the head being read, then body bytes
        # and whatever follows.
        self._pending = b""
        # Every byte of _pending passed the byte-level checks (what is cut
        # from its front keeps passing them): True; some did not: False;
        # not checked since bytes were fed: None.
        self._clean: bool | None = None
        self._eof = False
        # Bytes fed since the current request began.
        self._started = 0
        self._head_len = 0
        # The head's bytes, kept for the byte-level checks until stop_recording().
        self._head = b""
        # Body bytes still to come (Content-Length framing), once the head is parsed.
        self._remaining = 0
        # The h11 parser deciding the current request, if the fast path gave it up.
        self._referee: H11Parser | None = None

    # -- what a subclass provides ----------------------------------------------------

    def _split_head(self, head: bytes) -> SplitHead:
        """Split *head* (plain bytes, ending with CRLF CRLF) into line and fields, or None."""
        raise NotImplementedError

    def _forget(self) -> None:
        """The head went to h11: drop any state the fast parser was left in."""

    def _ended(self, kept: bool) -> None:
        """The head was parsed; *kept*: it is bodiless and the connection stays open."""

    # -- feeding -------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Give the parser bytes read from the client (``b""`` means end of input)."""
        referee = self._referee
        if referee is not None:
            referee.feed(data)
        elif data:
            if type(data) is not bytes:
                data = bytes(data)  # memory streams hand out bytearrays
            self._started += len(data)
            pending = self._pending
            self._pending = pending + data if pending else data
            self._clean = None
        if not data:
            self._eof = True

    @property
    def fed_count(self) -> int:
        """Bytes fed since the current request began (its head is at most this)."""
        referee = self._referee
        return self._started if referee is None else referee.fed_count

    def next_request(self) -> None:
        """The current request is done: parse what follows as the next one."""
        referee = self._referee
        if referee is not None:
            self._referee = None
            data, eof = referee.leftover()
            self._pending = data
            self._clean = None
            self._eof = eof
        # RFC 9112 §2.2: empty lines before a request line are ignored, as
        # by H11Parser.next_request.
        pending = self._pending
        if pending and (pending[0] == 0x0D or pending[0] == 0x0A):
            self._pending = pending = pending.lstrip(b"\r\n")
        self._started = len(pending)
        self._head_len = 0
        self._remaining = 0

    @property
    def has_next(self) -> bool:
        """Bytes of the next request were already received (pipelining)."""
        return bool(self._pending)

    @property
    def has_more(self) -> bool:
        """Once the body is read: bytes beyond this request were received (pipelining)."""
        referee = self._referee
        if referee is not None:
            return referee.has_more
        return not self._remaining and bool(self._pending)

    @property
    def at_eof(self) -> bool:
        """The client closed its sending side."""
        return self._eof

    # -- the head --------------------------------------------------------------

    def next_head(self) -> Head | ParseError | _Marker:
        """The request head, once complete."""
        if self._referee is not None:
            return self._referee.next_head()
        pending = self._pending
        # h11 refuses a head at once when its first byte is below 0x21 (an
        # empty line, a space, a control byte), before the head is complete.
        if pending and pending[0] < 0x21:
            return self._refer()
        end = pending.find(b"\r\n\r\n")
        if end < 0:
            # h11 also ends a head at LF LF or LF CR LF.
            if (self._eof or len(pending) > self._max_head or b"\n\n" in pending
                    or b"\n\r\n" in pending):
                return self._refer()
            return NEED_DATA
        end += 4
        head = pending[:end]
        # RFC 9112 §2.2: a bare CR or LF, obs-fold, a control byte or
        # obs-text: h11 rules on it.  Checked once per received chunk when
        # it passes (its pipelined heads then need no check of their own),
        # else on the head alone (the chunk may hold a body of any bytes).
        clean = self._clean
        if clean is not True:
            if clean is None and _plain(pending):
                self._clean = True
            else:
                # Not again for this chunk: a chunk of many small pipelined
                # requests with binary bodies is scanned once, not once per head.
                self._clean = False
                if not _plain(head):
                    return self._refer()
        split = self._split_head(head)
        if split is None:
            return self._refer()
        method, target, version, raw_fields = split
        # One pass over the fields: the checks that send the head to h11, and
        # what FieldScan says (as scan_items would, TE being h11's).
        fields = []
        lower_fields = []
        hosts = []
        upload_size = 0
        has_length = wants_close = wants_keep_alive = False
        for name, value in raw_fields:
            lower = name.lower()
            if value and value[-1] in _OWS:
                # RFC 9112 §5.1: OWS around the value is not part of it.
                value = value.rstrip(b" \t")
            if lower == b"host":
                hosts.append(value)
            elif lower == b"content-length":
                # Longer than 18 digits: h11's rules on lengths past 2**63 (llhttp refuses them).
                if has_length or not value.isdigit() or len(value) > 18:
                    return self._refer()
                has_length = True
                upload_size = int(value)
            elif lower == b"transfer-encoding" or lower == b"expect" or lower == b"upgrade":
                return self._refer()
            elif lower == b"connection":
                # RFC 9110 §7.6.1: Connection = #connection-option (case-insensitive)
                tokens = [t.strip() for t in value.lower().split(b",")]
                wants_close = wants_close or b"close" in tokens
                wants_keep_alive = wants_keep_alive or b"keep-alive" in tokens
            fields.append((name.decode("latin-1"), value.decode("latin-1")))
            lower_fields.append((lower, value))
        # RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status
        # code to any HTTP/1.1 request message that lacks a Host header field
        # and to any request message that contains more than one Host header
        # field line" -- h11 words that refusal.
        if len(hosts) > 1 or (not hosts and version == b"1.1"):
            return self._refer()
        self._ended(not (upload_size or wants_close
                         or (version == b"1.0" and not wants_keep_alive)))
        self._head_len = end
        self._head = head
        self._pending = pending[end:]
        self._remaining = upload_size
        scan = tuple.__new__(FieldScan, (fields, upload_size, False, has_length, wants_close,
                                         wants_keep_alive, hosts))
        return tuple.__new__(Head, (method, target, version, lower_fields, scan))

    def _refer(self) -> Head | ParseError | _Marker:
        """Give the current request, from its first byte, to h11."""
        self._forget()
        referee = H11Parser(self._max_head)
        if self._pending:
            referee.feed(self._pending)
        if self._eof:
            referee.feed(b"")
        self._pending = b""
        self._referee = referee
        return referee.next_head()

    def head_length(self) -> int:
        """How many of the bytes fed the head took (the rest is body or next request)."""
        referee = self._referee
        return self._head_len if referee is None else referee.head_length()

    def raw_head_bytes(self) -> bytes:
        """The bytes fed while the head was parsed (for byte-level head checks)."""
        referee = self._referee
        if referee is not None:
            return referee.raw_head_bytes()
        return self._head if self._head_len else self._pending

    def stop_recording(self) -> None:
        """The head is parsed: stop keeping copies of what is fed."""
        self._head = b""
        if self._referee is not None:
            self._referee.stop_recording()

    # -- the body --------------------------------------------------------------

    def next_body(self) -> bytes | BodyEnd | ParseError | _Marker:
        """The next piece of body, its end, or a marker."""
        referee = self._referee
        if referee is not None:
            return referee.next_body()
        remaining = self._remaining
        if not remaining:
            return BodyEnd([])
        pending = self._pending
        if not pending:
            return CLOSED if self._eof else NEED_DATA
        take = min(remaining, MERGE_BYTES)
        if len(pending) <= take:
            self._pending = b""
            self._remaining = remaining - len(pending)
            return pending
        self._pending = pending[take:]
        self._remaining = remaining - take
        return pending[:take]

    @property
    def expects_continue(self) -> bool:
        """The client sent ``Expect: 100-continue`` and waits for it."""
        referee = self._referee
        return referee is not None and referee.expects_continue

    def unparsed(self) -> bytes:
        """Bytes received but not parsed yet (after the head: body, or what follows)."""
        referee = self._referee
        return self._pending if referee is None else referee.unparsed()
