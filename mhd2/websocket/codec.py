"""``WebSocketStream``: the sans-IO frame codec of ``libmicrohttpd_ws``.

For code that drives an upgraded handle itself, as the tutorial's
``websocket.c`` does: feed received bytes to :meth:`WebSocketStream.decode`
in a loop, send what the ``encode_*`` methods return.  Payloads are
``bytes`` (UTF-8 for text and close reasons), as in C.
"""

from __future__ import annotations

import codecs
import os
import struct
from enum import IntEnum, IntFlag

__all__ = [
    "CloseCode",
    "Fragmentation",
    "StreamFlags",
    "Validity",
    "WebSocketCodecError",
    "WebSocketStatus",
    "WebSocketStream",
]


class StreamFlags(IntFlag):
    """``MHD_WEBSOCKET_FLAG_*``: how a :class:`WebSocketStream` behaves."""

    SERVER = 0
    NO_FRAGMENTS = 0
    CLIENT = 1
    WANT_FRAGMENTS = 2
    GENERATE_CLOSE_FRAMES_ON_ERROR = 4


class Fragmentation(IntEnum):
    """``MHD_WEBSOCKET_FRAGMENTATION_*``: which part of a fragmented message to encode."""

    NONE = 0
    FIRST = 1
    FOLLOWING = 2
    LAST = 3


class WebSocketStatus(IntEnum):
    """``MHD_WEBSOCKET_STATUS_*``: errors are negative, frame types positive."""

    OK = 0
    TEXT_FRAME = 0x1
    BINARY_FRAME = 0x2
    CLOSE_FRAME = 0x8
    PING_FRAME = 0x9
    PONG_FRAME = 0xA
    TEXT_FIRST_FRAGMENT = 0x11
    BINARY_FIRST_FRAGMENT = 0x12
    TEXT_NEXT_FRAGMENT = 0x21
    BINARY_NEXT_FRAGMENT = 0x22
    TEXT_LAST_FRAGMENT = 0x41
    BINARY_LAST_FRAGMENT = 0x42
    PROTOCOL_ERROR = -1
    STREAM_BROKEN = -2
    MEMORY_ERROR = -3
    PARAMETER_ERROR = -4
    MAXIMUM_SIZE_EXCEEDED = -5
    UTF8_ENCODING_ERROR = -6
    NO_WEBSOCKET_HANDSHAKE_HEADER = -7


class Validity(IntEnum):
    """``MHD_WEBSOCKET_VALIDITY_*``: what :meth:`WebSocketStream.is_valid` reports."""

    INVALID = 0
    VALID = 1
    ONLY_VALID_FOR_CONTROL_FRAMES = 2


class CloseCode(IntEnum):
    """``MHD_WEBSOCKET_CLOSEREASON_*`` (RFC 6455 §7.4.1)."""

    NO_REASON = 0
    REGULAR = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATATYPE = 1003
    MALFORMED_UTF8 = 1007
    POLICY_VIOLATED = 1008
    MAXIMUM_ALLOWED_PAYLOAD_SIZE_EXCEEDED = 1009
    MISSING_EXTENSION = 1010
    UNEXPECTED_CONDITION = 1011


class WebSocketCodecError(ValueError):
    """An ``encode_*`` call failed; :attr:`status` is the ``WebSocketStatus`` of C."""

    def __init__(self, message: str, status: WebSocketStatus) -> None:
        super().__init__(message)
        self.status = status


_CONTINUATION, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0, 1, 2, 8, 9, 10
_KNOWN_OPCODES = frozenset((_CONTINUATION, _TEXT, _BINARY, _CLOSE, _PING, _PONG))
_STATUS_OF = {_CLOSE: WebSocketStatus.CLOSE_FRAME, _PING: WebSocketStatus.PING_FRAME,
              _PONG: WebSocketStatus.PONG_FRAME}


def valid_close_code(code: int) -> bool:
    """Whether *code* may appear in a close frame (RFC 6455 §7.4)."""
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _mask(data: bytes | bytearray, key: bytes) -> bytes:
    n = len(data)
    if not n:
        return b""
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")).to_bytes(n, "little")


def _utf8_pending(decoder: codecs.IncrementalDecoder) -> int:
    """How many bytes of an unfinished UTF-8 sequence *decoder* holds back."""
    return len(decoder.getstate()[0])


class WebSocketStream:
    """The state of one WebSocket connection for decoding and encoding (``MHD_WebSocketStream``).

    Args:
        flags: :class:`StreamFlags` — ``SERVER`` (expects masked frames, sends
            unmasked) or ``CLIENT``; ``WANT_FRAGMENTS`` delivers data frames
            fragment by fragment; ``GENERATE_CLOSE_FRAMES_ON_ERROR`` makes a
            failing :meth:`decode` return the close frame to send as payload.
        max_payload_size: the largest message (or, with ``WANT_FRAGMENTS``,
            frame) accepted; ``0`` means no limit.
    """

    def __init__(self, *, flags: StreamFlags | int = StreamFlags.SERVER,
                 max_payload_size: int = 0) -> None:
        if max_payload_size < 0:
            raise ValueError("max_payload_size must be >= 0")
        self.flags = StreamFlags(flags)
        self.max_payload_size = max_payload_size
        self._client = bool(self.flags & StreamFlags.CLIENT)
        self._want_fragments = bool(self.flags & StreamFlags.WANT_FRAGMENTS)
        self._validity = Validity.VALID
        # decoding
        self._head = bytearray()
        self._head_need = 2
        self._frame: tuple[bool, int, int, bytes | None] | None = None  # fin, opcode, length, mask
        self._payload = bytearray()
        self._msg_opcode: int | None = None  # opcode of the open fragmented message
        self._msg_first = True
        self._message = bytearray()
        self._utf8_in: codecs.IncrementalDecoder | None = None
        self._utf8_carry = b""
        # encoding
        self._out_fragment: int | None = None  # opcode of the message being encoded
        self._utf8_out: codecs.IncrementalDecoder | None = None

    # -- state ------------------------------------------------------------------------

    def is_valid(self) -> Validity:
        """``MHD_websocket_stream_is_valid``: whether the stream can still decode."""
        return self._validity

    # -- decoding ---------------------------------------------------------------------

    def decode(self, data: bytes | bytearray | memoryview) -> tuple[WebSocketStatus, bytes | None, int]:
        """Decode received bytes (``MHD_websocket_decode``).

        Returns:
            ``(status, payload, consumed)``: *status* is ``OK`` when more data
            is needed (everything was consumed), a frame type (``TEXT_FRAME``,
            ``CLOSE_FRAME`` ...; with ``WANT_FRAGMENTS`` also
            ``*_FIRST/NEXT/LAST_FRAGMENT``), or a negative error after which the
            stream is invalid.  *payload* is the frame's data (text fragments
            are cut only at whole UTF-8 sequences), or on an error with
            ``GENERATE_CLOSE_FRAMES_ON_ERROR`` the close frame to send.
            *consumed* is how many bytes of *data* were used: call again with
            the rest.
        """
        if self._validity is Validity.INVALID:
            return WebSocketStatus.STREAM_BROKEN, None, 0
        view = memoryview(data).cast("B")
        total = len(view)
        pos = 0
        while True:
            if self._frame is None:
                take = min(self._head_need - len(self._head), total - pos)
                self._head += view[pos:pos + take]
                pos += take
                if len(self._head) < self._head_need:
                    return WebSocketStatus.OK, None, pos
                if self._head_need == 2:
                    need = 2 + {126: 2, 127: 8}.get(self._head[1] & 0x7F, 0)
                    need += 4 if self._head[1] & 0x80 else 0
                    if need > 2:
                        self._head_need = need
                        continue
                error = self._parse_head()
                if error is not None:
                    return self._fail(error, pos)
            assert self._frame is not None
            fin, opcode, length, key = self._frame
            take = min(length - len(self._payload), total - pos)
            self._payload += view[pos:pos + take]
            pos += take
            if len(self._payload) < length:
                return WebSocketStatus.OK, None, pos
            payload = bytes(self._payload) if key is None else _mask(self._payload, key)
            self._payload = bytearray()
            self._frame = None
            self._head = bytearray()
            self._head_need = 2
            status, out = self._complete(fin, opcode, payload)
            if status < 0:
                return self._fail(status, pos)
            if status is not WebSocketStatus.OK:
                return status, out, pos
            if pos >= total:
                return WebSocketStatus.OK, None, pos

    def _parse_head(self) -> WebSocketStatus | None:
        head = self._head
        fin = bool(head[0] & 0x80)
        opcode = head[0] & 0x0F
        masked = bool(head[1] & 0x80)
        length = head[1] & 0x7F
        offset = 2
        if length == 126:
            length = struct.unpack_from("!H", head, 2)[0]
            offset = 4
        elif length == 127:
            length = struct.unpack_from("!Q", head, 2)[0]
            offset = 10
            if length >> 63:
                return WebSocketStatus.PROTOCOL_ERROR
        if head[0] & 0x70 or opcode not in _KNOWN_OPCODES or masked == self._client:
            return WebSocketStatus.PROTOCOL_ERROR
        if opcode >= 8:
            if not fin or length > 125:
                return WebSocketStatus.PROTOCOL_ERROR
        else:
            if self._validity is Validity.ONLY_VALID_FOR_CONTROL_FRAMES:
                return WebSocketStatus.PROTOCOL_ERROR
            if (opcode == _CONTINUATION) != (self._msg_opcode is not None):
                return WebSocketStatus.PROTOCOL_ERROR
            limit = self.max_payload_size
            if limit:
                already = 0 if self._want_fragments else len(self._message)
                if already + length > limit:
                    return WebSocketStatus.MAXIMUM_SIZE_EXCEEDED
        key = bytes(head[offset:offset + 4]) if masked else None
        self._frame = (fin, opcode, length, key)
        return None

    def _complete(self, fin: bool, opcode: int, payload: bytes) -> tuple[WebSocketStatus, bytes | None]:
        if opcode >= 8:
            if opcode == _CLOSE:
                if len(payload) == 1:
                    return WebSocketStatus.PROTOCOL_ERROR, None
                if payload:
                    (code,) = struct.unpack_from("!H", payload)
                    if not valid_close_code(code):
                        return WebSocketStatus.PROTOCOL_ERROR, None
                    try:
                        payload[2:].decode("utf-8")
                    except UnicodeDecodeError:
                        return WebSocketStatus.UTF8_ENCODING_ERROR, None
                self._validity = Validity.ONLY_VALID_FOR_CONTROL_FRAMES
            return _STATUS_OF[opcode], payload
        first = opcode != _CONTINUATION
        if first:
            self._msg_opcode = opcode
            self._msg_first = True
            self._utf8_in = codecs.getincrementaldecoder("utf-8")() if opcode == _TEXT else None
            self._utf8_carry = b""
        kind = self._msg_opcode
        assert kind is not None
        if self._utf8_in is not None:
            try:
                self._utf8_in.decode(payload, fin)
            except UnicodeDecodeError:
                return WebSocketStatus.UTF8_ENCODING_ERROR, None
        if fin:
            self._msg_opcode = None
        if self._want_fragments:
            if fin and self._msg_first:
                return WebSocketStatus(kind), payload
            if self._utf8_in is not None:  # cut only at whole UTF-8 sequences
                whole = self._utf8_carry + payload
                pending = 0 if fin else _utf8_pending(self._utf8_in)
                self._utf8_carry = whole[len(whole) - pending:] if pending else b""
                payload = whole[:len(whole) - pending]
            step = 0x10 if self._msg_first else (0x40 if fin else 0x20)
            self._msg_first = False
            return WebSocketStatus(kind | step), payload
        if fin and not self._message:
            return WebSocketStatus(kind), payload
        self._message += payload
        if not fin:
            return WebSocketStatus.OK, None
        message = bytes(self._message)
        self._message = bytearray()
        return WebSocketStatus(kind), message

    def _fail(self, status: WebSocketStatus, consumed: int) -> tuple[WebSocketStatus, bytes | None, int]:
        self._validity = Validity.INVALID
        close = None
        if self.flags & StreamFlags.GENERATE_CLOSE_FRAMES_ON_ERROR:
            code = {
                WebSocketStatus.MAXIMUM_SIZE_EXCEEDED: CloseCode.MAXIMUM_ALLOWED_PAYLOAD_SIZE_EXCEEDED,
                WebSocketStatus.UTF8_ENCODING_ERROR: CloseCode.MALFORMED_UTF8,
            }.get(status, CloseCode.PROTOCOL_ERROR)
            close = self._frame_bytes(True, _CLOSE, struct.pack("!H", code))
        return status, close, consumed

    # -- encoding ---------------------------------------------------------------------

    def _frame_bytes(self, fin: bool, opcode: int, payload: bytes) -> bytes:
        n = len(payload)
        first = (0x80 if fin else 0) | opcode
        mask_bit = 0x80 if self._client else 0
        if n < 126:
            head = bytes((first, mask_bit | n))
        elif n < 65536:
            head = struct.pack("!BBH", first, mask_bit | 126, n)
        else:
            head = struct.pack("!BBQ", first, mask_bit | 127, n)
        if self._client:
            key = os.urandom(4)
            return head + key + _mask(payload, key)
        return head + payload

    def _encode_data(self, opcode: int, payload: bytes, fragmentation: Fragmentation) -> bytes:
        fragmentation = Fragmentation(fragmentation)
        if fragmentation in (Fragmentation.NONE, Fragmentation.FIRST):
            if self._out_fragment is not None:
                raise WebSocketCodecError("a fragmented message is still being encoded",
                                          WebSocketStatus.PARAMETER_ERROR)
            if fragmentation is Fragmentation.FIRST:
                self._out_fragment = opcode
            return self._frame_bytes(fragmentation is Fragmentation.NONE, opcode, payload)
        if self._out_fragment != opcode:
            raise WebSocketCodecError("no fragmented message of this type was started",
                                      WebSocketStatus.PARAMETER_ERROR)
        last = fragmentation is Fragmentation.LAST
        if last:
            self._out_fragment = None
        return self._frame_bytes(last, _CONTINUATION, payload)

    def encode_text(self, text: str | bytes,
                    fragmentation: Fragmentation | int = Fragmentation.NONE) -> bytes:
        """A text frame (``MHD_websocket_encode_text``).

        *text* may be ``str`` or UTF-8 ``bytes``; fragments of ``bytes`` may
        split a UTF-8 sequence (it must be complete at ``LAST``).

        Raises:
            WebSocketCodecError: invalid UTF-8 (``UTF8_ENCODING_ERROR``) or a
                fragment out of order (``PARAMETER_ERROR``).
        """
        fragmentation = Fragmentation(fragmentation)
        if isinstance(text, str):
            payload = text.encode("utf-8", "surrogatepass")
        else:
            payload = bytes(text)
        decoder: codecs.IncrementalDecoder
        if fragmentation in (Fragmentation.NONE, Fragmentation.FIRST) or self._utf8_out is None:
            decoder = codecs.getincrementaldecoder("utf-8")()
        else:
            decoder = self._utf8_out
        final = fragmentation in (Fragmentation.NONE, Fragmentation.LAST)
        state = decoder.getstate()
        try:
            decoder.decode(payload, final)
        except UnicodeDecodeError:
            decoder.setstate(state)
            raise WebSocketCodecError("the text is not valid UTF-8",
                                      WebSocketStatus.UTF8_ENCODING_ERROR) from None
        frame = self._encode_data(_TEXT, payload, fragmentation)
        self._utf8_out = None if final else decoder
        return frame

    def encode_binary(self, data: bytes | bytearray | memoryview,
                      fragmentation: Fragmentation | int = Fragmentation.NONE) -> bytes:
        """A binary frame (``MHD_websocket_encode_binary``)."""
        return self._encode_data(_BINARY, bytes(data), Fragmentation(fragmentation))

    def _control(self, opcode: int, payload: bytes | bytearray | memoryview) -> bytes:
        data = bytes(payload)
        if len(data) > 125:
            raise WebSocketCodecError("a control frame carries at most 125 bytes",
                                      WebSocketStatus.MAXIMUM_SIZE_EXCEEDED)
        return self._frame_bytes(True, opcode, data)

    def encode_ping(self, payload: bytes | bytearray | memoryview = b"") -> bytes:
        """A ping frame (``MHD_websocket_encode_ping``); at most 125 bytes of payload."""
        return self._control(_PING, payload)

    def encode_pong(self, payload: bytes | bytearray | memoryview = b"") -> bytes:
        """A pong frame answering a ping with the same *payload* (``MHD_websocket_encode_pong``)."""
        return self._control(_PONG, payload)

    def encode_close(self, code: int = 0, reason: str | bytes = "") -> bytes:
        """A close frame (``MHD_websocket_encode_close``); ``code=0`` sends no code.

        Raises:
            WebSocketCodecError: a reason without a code or an invalid code
                (``PARAMETER_ERROR``), invalid UTF-8, or more than 123 bytes of
                reason (``MAXIMUM_SIZE_EXCEEDED``).
        """
        raw = reason.encode("utf-8") if isinstance(reason, str) else bytes(reason)
        if code == 0:
            if raw:
                raise WebSocketCodecError("a close reason needs a code",
                                          WebSocketStatus.PARAMETER_ERROR)
            return self._control(_CLOSE, b"")
        if code < 1000 or code > 4999:
            raise WebSocketCodecError(f"close code {code} is not valid",
                                      WebSocketStatus.PARAMETER_ERROR)
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise WebSocketCodecError("the close reason is not valid UTF-8",
                                      WebSocketStatus.UTF8_ENCODING_ERROR) from None
        return self._control(_CLOSE, struct.pack("!H", code) + raw)

    @staticmethod
    def split_close_reason(payload: bytes | None) -> tuple[int, str]:
        """``(code, reason)`` of a close frame's payload; ``(0, "")`` when it carries none."""
        if not payload or len(payload) < 2:
            return CloseCode.NO_REASON, ""
        (code,) = struct.unpack_from("!H", payload)
        return code, bytes(payload[2:]).decode("utf-8", "replace")
