"""``multipart/form-data`` (RFC 7578 on top of the RFC 2046 §5.1 multipart syntax).

The body is searched for the delimiter ``CRLF "--" boundary`` with
``bytes.find``; part data is handed out as soon as it cannot be the start of a
delimiter (at most ``len(boundary) + 3`` bytes are held back), so a part is
never held whole.  Part headers are buffered up to ``max_header_size``.

Rules obeyed (quoted):

* RFC 2046 §5.1.1: "The boundary delimiter MUST occur at the beginning of a
  line, i.e., following a CRLF, and the initial CRLF is considered to be
  attached to the boundary delimiter line rather than part of the preceding
  part."  (The first delimiter may open the body: a CRLF is assumed before it.)
* RFC 2046 §5.1.1: ``delimiter transport-padding CRLF`` and
  ``close-delimiter := delimiter "--"`` — white space may follow a delimiter;
  the preamble before the first and the epilogue after the last are ignored.
* RFC 7578 §4.2: "Each part MUST contain a Content-Disposition header field
  where the disposition type is "form-data".  The Content-Disposition header
  field MUST also contain an additional parameter of "name"" — a part without
  it stops parsing (``…_INVALID_POST_FORMAT``).
* RFC 7578 §4.4: "Each part MAY have an (optional) "Content-Type" header
  field, which defaults to "text/plain"" — reported as sent (``None`` if absent).
* RFC 7578 §4.7: "Content-Transfer-Encoding" is deprecated; it is reported,
  not decoded.
* ``filename*`` (RFC 5987 / RFC 8187 ``charset'lang'pct-encoded``) is decoded
  and preferred over ``filename`` when both are sent, as RFC 6266 §4.3 asks
  of recipients (RFC 7578 §4.2 forbids senders to use it, but some do).

Results: a body that ends inside a part or before the close-delimiter →
``OK_BAD_TERMINATION`` (what was parsed is kept, "the last field may be
wrong"); no delimiter at all → ``FAILED_INVALID_POST_FORMAT``; part headers
over the limit → ``FAILED_NO_LARGE_BUF_MEM``; more parts than ``max_fields`` →
``FAILED_NO_POOL_MEM``.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from ..enums import PostParseResult
from .content_type import MAX_BOUNDARY
from .events import (
    DEFAULT_MAX_FIELDS,
    Event,
    FieldData,
    FieldEnd,
    FieldStart,
    FormParser,
    decode_text,
)

__all__ = ["MultipartParser", "parse_part_headers"]

_PREAMBLE, _AFTER_DELIM, _HEADERS, _BODY, _EPILOGUE = range(5)

_HEADER_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_DISPOSITION = re.compile(r"\s*([!#$%&'*+\-.^_`|~0-9A-Za-z]+)\s*")
_DISP_PARAM = re.compile(
    r';\s*([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)'
)
_EXT_VALUE = re.compile(r"([!#$%&+\-^_`{}~0-9A-Za-z]*)'[^']*'(.*)", re.DOTALL)


def _unquote(raw: str) -> str:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        # Only \" and \\ are unescaped: browsers send Windows paths with bare
        # backslashes (and percent-encode quotes, WHATWG "multipart/form-data
        # encoding algorithm"), so other backslashes stay as they are.
        return raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return raw


def _ext_value(raw: str) -> str | None:
    """Decode an RFC 8187 ``ext-value`` (``UTF-8''%e2%82%ac.txt``); ``None`` if unusable."""
    m = _EXT_VALUE.fullmatch(raw.strip())
    if m is None:
        return None
    charset = m.group(1).lower()
    if charset not in ("utf-8", "iso-8859-1"):
        return None
    data = unquote_to_bytes(m.group(2).encode("ascii", "surrogateescape"))
    if charset == "iso-8859-1":
        return data.decode("latin-1")
    return decode_text(data)


def parse_part_headers(block: bytes) -> FieldStart | None:
    """Parse a part's header block (without the empty line) into a :class:`FieldStart`.

    Returns ``None`` for a malformed block: a line that is not ``name: value``,
    or no ``Content-Disposition: form-data`` with a ``name`` parameter.
    """
    headers: dict[str, str] = {}
    last: str | None = None
    for line in block.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            # obs-fold (RFC 5322 §2.2.3 unfolding); a fold before any header is malformed
            if last is None:
                return None
            headers[last] += " " + decode_text(line.strip())
            continue
        name, sep, value = line.partition(b":")
        if not sep or not _HEADER_NAME.fullmatch(name):
            return None  # a header line without a name (or without a colon)
        key = name.decode("ascii").lower()
        if key not in headers:
            headers[key] = decode_text(value.strip(b" \t"))
            last = key
        else:
            last = None  # a repeated header: the first one counts
    disposition = headers.get("content-disposition")
    if disposition is None:
        return None
    m = _DISPOSITION.match(disposition)
    if m is None or m.group(1).lower() != "form-data":
        return None
    params: dict[str, str] = {}
    for p in _DISP_PARAM.finditer(disposition, m.end()):
        params.setdefault(p.group(1).lower(), p.group(2))
    if "name" not in params:
        return None
    filename: str | None = None
    if "filename*" in params:
        filename = _ext_value(params["filename*"])
    if filename is None and "filename" in params:
        filename = _unquote(params["filename"])
    return FieldStart(
        name=_unquote(params["name"]),
        filename=filename,
        content_type=headers.get("content-type"),
        transfer_encoding=headers.get("content-transfer-encoding"),
    )


class MultipartParser(FormParser):
    """Incremental ``multipart/form-data`` parser.

    Args:
        boundary: the ``boundary`` parameter of the request's ``Content-Type``
            (1–70 bytes, no CR, LF or NUL).
        max_header_size: the most bytes of one part's header block (and of
            the white space after a delimiter); more stops parsing with
            ``FAILED_NO_LARGE_BUF_MEM``.
        max_fields: the most parts; more stop parsing with ``FAILED_NO_POOL_MEM``.

    Raises:
        ValueError: the boundary is empty, too long or has a CR, LF or NUL.
    """

    def __init__(
        self, boundary: bytes, *, max_header_size: int = 16384, max_fields: int = DEFAULT_MAX_FIELDS
    ) -> None:
        super().__init__(max_fields=max_fields)
        if not 0 < len(boundary) <= MAX_BOUNDARY or any(c in boundary for c in b"\r\n\0"):
            raise ValueError(f"invalid multipart boundary {boundary!r}")
        self._delim = b"\r\n--" + boundary
        self._max_header = max_header_size
        self._state = _PREAMBLE
        # The CRLF that RFC 2046 attaches to the first delimiter line is
        # assumed, so that a body opening with "--boundary" is found too.
        self._buf = bytearray(b"\r\n")
        self._in_part = False

    def _feed(self, data: bytes, events: list[Event]) -> None:
        if self._state == _EPILOGUE:
            return  # "implementations must ignore" the epilogue
        buf = self._buf
        buf += data
        delim = self._delim
        while self.result is None:
            state = self._state
            if state == _BODY:
                i = buf.find(delim)
                if i >= 0:
                    if i:
                        events.append(FieldData(bytes(buf[:i])))
                    events.append(FieldEnd())
                    self._in_part = False
                    del buf[: i + len(delim)]
                    self._state = _AFTER_DELIM
                    continue
                # Hold back what could be the start of a delimiter: from the
                # first CR among the last len(delim) - 1 bytes.
                cr = buf.find(b"\r", max(0, len(buf) - len(delim) + 1))
                cut = len(buf) if cr < 0 else cr
                if cut:
                    events.append(FieldData(bytes(buf[:cut])))
                    del buf[:cut]
                break
            if state == _PREAMBLE:
                i = buf.find(delim)
                if i < 0:
                    del buf[: max(0, len(buf) - len(delim) + 1)]
                    break
                del buf[: i + len(delim)]
                self._state = _AFTER_DELIM
            elif state == _AFTER_DELIM:
                if len(buf) < 2:
                    break
                if buf[:2] == b"--":
                    # close-delimiter: the rest is the epilogue
                    self._state = _EPILOGUE
                    buf.clear()
                    break
                j = buf.find(b"\r\n")
                # (a CR at the very end may be the first half of the CRLF)
                padding = buf[:j] if j >= 0 else buf.removesuffix(b"\r")
                if padding.strip(b" \t"):
                    # "--boundary" followed by other text: the boundary
                    # occurs inside the data, which RFC 2046 forbids.
                    self._invalid()
                    break
                if j < 0:
                    if len(buf) > self._max_header:
                        self.result = PostParseResult.FAILED_NO_LARGE_BUF_MEM
                    break
                del buf[: j + 2]
                self._state = _HEADERS
            elif state == _HEADERS:
                if len(buf) < 2:
                    break
                if buf[:2] == b"\r\n":
                    self._invalid()  # no header at all, so no Content-Disposition
                    break
                end = buf.find(b"\r\n\r\n")
                if end < 0 and len(buf) <= self._max_header:
                    break
                if end < 0 or end + 4 > self._max_header:
                    self.result = PostParseResult.FAILED_NO_LARGE_BUF_MEM
                    break
                start = parse_part_headers(bytes(buf[:end]))
                if start is None:
                    self._invalid()
                    break
                if not self._start(events, start):
                    break
                self._in_part = True
                del buf[: end + 4]
                self._state = _BODY
            else:  # _EPILOGUE
                buf.clear()
                break
        if self.result is not None:
            buf.clear()

    def _close(self, events: list[Event]) -> PostParseResult:
        state = self._state
        if state == _BODY:
            # An unterminated part: hand out what was held back and end it.
            if self._buf:
                events.append(FieldData(bytes(self._buf)))
            events.append(FieldEnd())
            self._in_part = False
        self._buf.clear()
        if state == _EPILOGUE:
            return PostParseResult.OK
        if state == _PREAMBLE:
            # Not a single delimiter: this is not multipart data at all.
            return PostParseResult.FAILED_INVALID_POST_FORMAT
        return PostParseResult.OK_BAD_TERMINATION
