"""The httptools (llhttp) backend of the request parser, with h11 as its referee.

llhttp and h11 do not accept the same language: llhttp knows only registered
methods and refuses obs-fold, h11 accepts bare LF and any method token, they
differ on ``Transfer-Encoding`` lists, ``Content-Length`` lists, versions,
``Host`` rules and the bytes allowed in a target.  mhd2 promises one behaviour
whatever the backend (docs/design.rst, "Parser backends"), so this backend is built as a fast path
with a referee:

* llhttp parses the heads that are plainly well-formed (its field names are
  RFC 9110 tokens exactly, as h11's: a test checks every printable byte) -- CRLF line ends
  only, printable ASCII only, no obs-fold, one request line with single
  spaces, ``HTTP/1.0`` or ``HTTP/1.1``, at most one ``Host`` (exactly one on
  1.1), at most one all-digit ``Content-Length``, no ``Transfer-Encoding``,
  no ``Expect`` -- and this module frames their bodies by ``Content-Length``
  itself.  On that language h11 and llhttp agree, and mhd2's own checks
  (:mod:`.request_checks`, :mod:`.head_checks`) run on the result either way.
* Any other request -- and anything llhttp refuses or hands over as an
  upgrade (``CONNECT``, ``Connection: upgrade``) -- is given, from its first
  byte, to an :class:`~.parser.H11Parser`, whose answer is final.  The next
  request goes back to the fast path.

So the bad-input answers are h11's by construction, and the common request
(a GET, or a body with ``Content-Length``) never builds an h11 event.

One llhttp parser serves the connection, fed exactly each head's bytes, so
llhttp never runs ahead into a body or a pipelined request.  llhttp ends a
bodiless message with its head and then waits for the next one, so the parser
is kept while requests are bodiless and kept alive (the common case); after a
head with a body, a ``Connection: close``, an HTTP/1.0 head without
keep-alive, or anything it refused, it is dropped and the next head gets a
fresh one.  llhttp calls back once per field into the connection's collector,
and one pass over the fields makes both the checks above and the
:class:`~.fields.FieldScan`.  The byte-level checks run once per received chunk
when the whole chunk passes (its pipelined heads then need none of their own),
else on each head alone.
"""

from __future__ import annotations

from typing import Final

import httptools

from .fields import FieldScan
from .parser import CLOSED, MERGE_BYTES, NEED_DATA, BodyEnd, H11Parser, Head, ParseError, _Marker

__all__ = ["LlhttpParser"]

# Anything but printable ASCII, SP, HTAB, CR and LF sends the head to h11:
# control bytes (h11 refuses them), DEL, and obs-text (h11 refuses it in the
# target and allows it in values; llhttp's rules differ).  Deleting these
# from a head leaves nothing when there is no other byte (faster than a regex).
_PLAIN_BYTES: Final = b"\t\r\n" + bytes(range(0x20, 0x7F))
_OWS: Final = (0x20, 0x09)
_VERSIONS: Final = {b" HTTP/1.1": b"1.1", b" HTTP/1.0": b"1.0"}


def _plain(data: bytes) -> bool:
    """*data* has CRLF line ends only, no obs-fold, and printable ASCII, SP or HTAB only."""
    crlf = data.count(b"\r\n")
    return not (data.count(b"\n") != crlf or data.count(b"\r") != crlf
                or b"\n " in data or b"\n\t" in data or data.translate(None, _PLAIN_BYTES))


class _Collector:
    """llhttp's callbacks, per field, for the head being parsed: the target and the fields.

    One per connection, reset before each head.  It holds no reference back to
    the parser, so a connection's parser makes no reference cycle.
    """

    __slots__ = ("fields", "target")

    def __init__(self) -> None:
        self.target = b""
        self.fields: list[tuple[bytes, bytes]] = []

    def on_url(self, url: bytes) -> None:
        self.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name, value))


class LlhttpParser:
    """The requests of one connection, parsed with llhttp where h11 would agree.

    Same interface and results as :class:`~.parser.H11Parser`.

    Args:
        max_head: the most bytes of an incomplete head kept before refusing it.
    """

    __slots__ = ("_clean", "_collector", "_eof", "_head", "_head_len", "_llhttp", "_max_head",
                 "_pending", "_referee", "_remaining", "_started")

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
        # The connection's llhttp parser, made at the first head and kept
        # while each head it was fed ended its message (a bodiless request
        # kept alive); anything else drops it and the next head gets a fresh one.
        self._collector = _Collector()
        self._llhttp: httptools.HttpRequestParser | None = None

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
        collector = self._collector
        collector.target = b""
        collector.fields = []
        llhttp = self._llhttp
        if llhttp is None:
            llhttp = self._llhttp = httptools.HttpRequestParser(collector)
        try:
            llhttp.feed_data(head)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            self._llhttp = None
            return self._refer()
        # The request line exactly as llhttp read it, single spaces and all
        # (llhttp also takes HTTP/0.9 and 2.0, repeated spaces and more).
        line = head[:head.find(b"\r\n")]
        tail = line[-9:]
        version = _VERSIONS.get(tail)
        method = llhttp.get_method()
        target = collector.target
        if version is None or method + b" " + target + tail != line:
            self._llhttp = None
            return self._refer()
        # One pass over the fields: the checks that send the head to h11, and
        # what FieldScan says (as scan_items would, TE being h11's).
        fields = []
        lower_fields = []
        hosts = []
        upload_size = 0
        has_length = wants_close = wants_keep_alive = False
        for name, value in collector.fields:
            lower = name.lower()
            if value and value[-1] in _OWS:
                # RFC 9112 §5.1: OWS around the value is not part of it
                # (llhttp drops the leading OWS only).
                value = value.rstrip(b" \t")
            if lower == b"host":
                hosts.append(value)
            elif lower == b"content-length":
                if has_length or not value.isdigit():
                    self._llhttp = None
                    return self._refer()
                has_length = True
                upload_size = int(value)
            elif lower == b"transfer-encoding" or lower == b"expect":
                self._llhttp = None
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
            self._llhttp = None
            return self._refer()
        # llhttp ended the message with the head (no body) and stays ready for
        # the next one only if it keeps the connection: otherwise a fresh one.
        if upload_size or wants_close or (version == b"1.0" and not wants_keep_alive):
            self._llhttp = None
        self._head_len = end
        self._head = head
        self._pending = pending[end:]
        self._remaining = upload_size
        scan = tuple.__new__(FieldScan, (fields, upload_size, False, has_length, wants_close,
                                         wants_keep_alive, hosts))
        return Head(method, target, version, lower_fields, scan)

    def _refer(self) -> Head | ParseError | _Marker:
        """Give the current request, from its first byte, to h11."""
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
