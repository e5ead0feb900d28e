"""Byte-level checks of a chunked request body at strict levels >= 1.

h11 frames chunked bodies leniently: it accepts a bare LF where CRLF belongs
and obsolete line folding in the trailer section.  At strict levels >= 1 mhd2
refuses both, as it does in the head, so this small sans-IO checker reads the
same bytes h11 reads and says when they break the grammar.  It skips chunk
data by its declared length (no per-byte Python loop) and stops looking at
the end of the body.

RFC 9112 §7.1::

    chunked-body   = *chunk last-chunk trailer-section CRLF
    chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
    last-chunk     = 1*("0") [ chunk-ext ] CRLF
"""

from __future__ import annotations

__all__ = ["ChunkedChecker"]

_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)
#: A chunk-size line or trailer line longer than this is not looked at
#: further (h11 enforces its own limits on them).
_MAX_LINE = 64 * 1024


class ChunkedChecker:
    """Feed the raw body bytes; :attr:`problem` says what is wrong, if anything."""

    __slots__ = ("_left", "_line", "_state", "problem")

    def __init__(self) -> None:
        self._state = _SIZE
        self._left = 0
        self._line = b""
        self.problem: str | None = None

    @property
    def done(self) -> bool:
        """The whole body (and trailer section) has been seen, or it is broken."""
        return self._state == _DONE or self.problem is not None

    def feed(self, data: bytes) -> None:
        """Check the next bytes of the body."""
        pos = 0
        end = len(data)
        while pos < end and not self.done:
            if self._state == _DATA:
                step = min(self._left, end - pos)
                pos += step
                self._left -= step
                if not self._left:
                    self._state = _DATA_END
                continue
            newline = data.find(b"\n", pos)
            if newline < 0:
                self._line += data[pos:]
                if len(self._line) > _MAX_LINE:
                    self._state = _DONE
                return
            line = self._line + data[pos:newline + 1]
            self._line = b""
            pos = newline + 1
            self._line_done(line)

    def _line_done(self, line: bytes) -> None:
        # RFC 9112 §2.2: "a recipient MAY recognize a single LF as a line
        # terminator" -- a strict server does not.
        if not line.endswith(b"\r\n"):
            self.problem = "bare LF in the chunked body"
            return
        state = self._state
        if state == _DATA_END:
            if line != b"\r\n":
                self.problem = "chunk data longer than its size"
            self._state = _SIZE
        elif state == _SIZE:
            digits = line[:-2].split(b";", 1)[0].strip(b" \t")
            try:
                size = int(digits[:16], 16)
            except ValueError:
                self._state = _DONE  # h11 refuses it
                return
            if size:
                self._left = size
                self._state = _DATA
            else:
                self._state = _TRAILER
        elif state == _TRAILER:
            if line == b"\r\n":
                self._state = _DONE
            elif line[:1] in (b" ", b"\t"):
                # RFC 9112 §5.2: obs-fold is only tolerated in a message/http
                # container; a server "MUST either reject the message ... or
                # replace each received obs-fold with one or more SP octets".
                self.problem = "obsolete line folding in the trailer section"
