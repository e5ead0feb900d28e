"""The ``h2`` state machine as mhd2 runs it.

Nothing here does I/O.  :func:`new_h2` makes a server connection with
mhd2's settings and its own parts: :class:`EarlyFrameBuffer` (an oversized
frame refused from its header), :class:`~mhd2.http2.hpack_out.StaticEncoder`
(HPACK without the dynamic table), and :class:`ServerH2`, which adds the
stream limit of RFC 9113 and a direct way to queue a small response whole.
:func:`connection_window` says how far to open the connection-level receive
window.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from h2.config import H2Configuration
from h2.connection import ConnectionInputs, ConnectionState, H2Connection
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated, Event
from h2.exceptions import DenialOfServiceError, ProtocolError
from h2.frame_buffer import FrameBuffer
from h2.settings import SettingCodes, Settings
from h2.stream import StreamInputs
from hpack import Decoder
from hpack.hpack import decode_integer
from hyperframe.frame import (
    DataFrame,
    ExtensionFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from .hpack_out import StaticEncoder

if TYPE_CHECKING:
    from h2._typing import Buffer

    from ..options import DaemonOptions

__all__ = ["FRAMES_PER_TURN", "HEADER_BLOCK_SLACK", "EarlyFrameBuffer", "GuardedDecoder",
           "HeaderBlockError", "ServerH2", "connection_window", "new_h2"]

#: The connection-level receive window: this many streams' windows, at most
#: :data:`MAX_CONNECTION_WINDOW` (and never less than one stream's window).
CONNECTION_WINDOW_STREAMS = 16
MAX_CONNECTION_WINDOW = 16 * 1024 * 1024
#: RFC 9113 §6.9.2: "the initial value of the flow-control window is 65,535 octets".
DEFAULT_WINDOW = 65535
#: Frames handled per turn of the reader; the rest of a read waits for the
#: next turn, after a checkpoint (a read of 64 KiB may hold ~7,000 tiny frames).
FRAMES_PER_TURN = 256
#: The encoded header block (HEADERS + CONTINUATION payload) may exceed
#: ``max_header_size`` by this much.  A field costs at least as much decoded
#: (name + value + 32, RFC 7541 §4.1) as encoded, except the two leading
#: dynamic table size updates (a few bytes each).
HEADER_BLOCK_SLACK = 1024
#: RFC 7541 §4.2: "... resulting in at most two dynamic table size updates".
MAX_SIZE_UPDATES = 2


# RFC 9113 §4.1: "All frames begin with a fixed 9-octet header": Length (24),
# Type (8), Flags (8), Reserved (1), Stream Identifier (31).
_FRAME_HEAD = struct.Struct(">IBL")
_DATA = 0x00
_HEADERS = 0x01
_CONTINUATION = 0x09
#: §6.1, §6.2: "END_STREAM (0x01)"; §6.2: "END_HEADERS (0x04)".
_END_STREAM = 0x01
_END_HEADERS = 0x04


def _frame_head(length: int, kind: int, flags: int, stream_id: int) -> bytes:
    return _FRAME_HEAD.pack(length << 8 | kind, flags, stream_id)


class ServerH2(H2Connection):
    """``h2``'s connection with mhd2's own stream limit and a direct way out for
    small responses.

    ``h2`` treats a stream beyond ``SETTINGS_MAX_CONCURRENT_STREAMS`` as a
    connection error; RFC 9113 §5.1.2 makes it a stream error ("MUST treat
    this as a stream error of type PROTOCOL_ERROR or REFUSED_STREAM"), which
    the connection answers with ``REFUSED_STREAM`` itself.
    """

    encoder: StaticEncoder
    incoming_buffer: EarlyFrameBuffer
    #: ``RST_STREAM`` frames ``h2`` queued while handling received frames (the
    #: stream errors the client provoked, CVE-2025-8671 "MadeYouReset", and the
    #: answers to frames on streams reset already); the connection takes the
    #: count after each turn.
    resets_sent = 0
    _receiving = False

    def receive_data(self, data: Buffer) -> list[Event]:
        """``h2``'s :meth:`~h2.connection.H2Connection.receive_data`, counting the
        stream resets it queues (:attr:`resets_sent`)."""
        self._receiving = True
        try:
            return super().receive_data(data)
        finally:
            self._receiving = False

    def _prepare_for_sending(self, frames: list[Frame]) -> None:
        if self._receiving:
            for frame in frames:
                if type(frame) is RstStreamFrame:
                    self.resets_sent += 1
        super()._prepare_for_sending(frames)

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> tuple[list[Frame], list[Event]]:
        """The client's ``GOAWAY``: an event, and the connection stays open.

        ``h2`` would close its state machine (refusing every frame after,
        the client's ``SETTINGS`` ack and ``WINDOW_UPDATE`` too) and drop
        the frames queued but not yet written.  RFC 9113 §6.8: "Receivers of
        a GOAWAY frame MUST NOT open additional streams on the connection"
        -- a server opens none -- and "Activity on streams numbered lower than
        or equal to the last stream identifier might still complete
        successfully": the client's own streams are still answered (the
        connection stops taking new ones and closes after the last).
        """
        machine = self.state_machine
        state = machine.state
        machine.process_input(ConnectionInputs.RECV_GOAWAY)  # (refuses what h2 refuses)
        if state is not ConnectionState.CLOSED:
            machine.state = state
        event = ConnectionTerminated()
        event.error_code = _error_code(frame.error_code)
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]

    @property
    def open_inbound_streams(self) -> int:
        super().open_inbound_streams  # noqa: B018 -- h2 forgets closed streams here
        return 0

    def send_whole_response(self, stream_id: int, headers: list[tuple[bytes, bytes]],
                            body: bytes) -> bool:
        """Queue a final response whole: a HEADERS frame, then a DATA frame if there
        is a *body*, END_STREAM on the last.

        The same state changes and flow-control accounting as ``send_headers``
        then ``send_data`` make, without building ``h2``'s frame objects (half
        the cost of a small response).  *headers* must be a final (non-1xx)
        response head.

        Returns:
            False, with nothing done, when the response does not fit this way:
            the header block is larger than one frame, the body larger than the
            windows or a frame, or the encoder owes the client a table size
            update.  The caller then uses ``send_headers`` and ``send_data``.
        """
        stream = self.streams.get(stream_id)
        size = len(body)
        limit = self.max_outbound_frame_size
        if stream is None or size > limit or self.encoder.owes_size_update:
            return False
        if size and size > self.local_flow_control_window(stream_id):
            return False
        block = self.encoder.encode(headers)
        if len(block) > limit:
            return False
        connection = self.state_machine
        machine = stream.state_machine
        connection.process_input(ConnectionInputs.SEND_HEADERS)
        machine.process_input(StreamInputs.SEND_HEADERS)
        if size:
            connection.process_input(ConnectionInputs.SEND_DATA)
            machine.process_input(StreamInputs.SEND_DATA)
        machine.process_input(StreamInputs.SEND_END_STREAM)
        if size:
            stream.outbound_flow_control_window -= size
            self.outbound_flow_control_window -= size
            self._data_to_send += b"".join((
                _frame_head(len(block), _HEADERS, _END_HEADERS, stream_id), block,
                _frame_head(size, _DATA, _END_STREAM, stream_id), body))
        else:
            self._data_to_send += _frame_head(len(block), _HEADERS, _END_HEADERS | _END_STREAM,
                                              stream_id) + block
        return True


class EarlyFrameBuffer(FrameBuffer):
    """``h2``'s frame buffer with mhd2's bounds and counts.

    * **An oversized frame is refused from its 9-byte header.**  ``h2``
      checks a frame's length against ``SETTINGS_MAX_FRAME_SIZE`` only once
      the whole frame is buffered: one header announcing 2**24 - 1 bytes
      would make the connection hold 16 MB before the error.  RFC 9113 §4.2:
      "An endpoint MUST send an error code of FRAME_SIZE_ERROR if a frame
      exceeds the size defined in SETTINGS_MAX_FRAME_SIZE" -- here as soon as
      the header says so (``FrameTooLargeError``, a ``ProtocolError``: h2
      queues ``GOAWAY(FRAME_SIZE_ERROR)``).
    * **An encoded header block is bounded before it is decoded**: HEADERS
      and CONTINUATION payload (padding included) past *header_block_limit*
      bytes, counted from each frame's header, end the connection (``DenialOfServiceError``: ``GOAWAY(ENHANCE_YOUR_CALM)``).
      A block must be decoded whole to keep the HPACK state in step, so it
      cannot be skipped; and one that decodes to nothing (table size
      updates) would cost the CPU of its size.
    * **At most :attr:`budget` frames per turn**: then iteration stops (``h2``
      returns the events so far) and :attr:`more` says frames may wait; the
      reader yields to the other tasks before it asks for them.
    * **Counts** for the flood guard, taken and zeroed by the connection:
      :attr:`resets` (every ``RST_STREAM``, also for streams already
      answered, which ``h2`` drops without an event: the rapid-reset rate of
      CVE-2023-44487 must hold whether a reset came before or after the
      answer), :attr:`idle` (frames that carry nothing: empty DATA without
      END_STREAM, PRIORITY, unknown types, ``PING`` and ``SETTINGS`` acks --
      CVE-2019-9518) and :attr:`window_updates`.

    Args:
        server: parse the client's connection preface first.
        header_block_limit: the largest encoded header block accepted.
    """

    def __init__(self, server: bool = False, header_block_limit: int = 2**31) -> None:
        super().__init__(server=server)
        self._block = 0
        self._block_limit = header_block_limit
        #: Frames left to handle in this turn.
        self.budget = FRAMES_PER_TURN
        #: The budget ran out (frames may be left in the buffer).
        self.more = False
        #: ``RST_STREAM`` frames parsed since the connection last took the count.
        self.resets = 0
        #: Frames that carry nothing, since the connection last took the count.
        self.idle = 0
        #: ``WINDOW_UPDATE`` frames since the connection last took the count.
        self.window_updates = 0

    def __next__(self) -> Frame:
        if self.budget <= 0:
            self.more = True
            raise StopIteration
        data = self._data
        if len(data) >= 9:
            length = int.from_bytes(data[:3], "big")
            self._validate_frame_length(length)
            kind_byte = data[3]
            if kind_byte in (_HEADERS, _CONTINUATION) and len(data) >= 9 + length:
                self._count_block(kind_byte, length)
        frame = super().__next__()
        self.budget -= 1
        kind = type(frame)
        if kind is not HeadersFrame:
            if kind is DataFrame:
                if not frame.data and "END_STREAM" not in frame.flags:  # type: ignore[attr-defined]
                    self.idle += 1
            elif kind is WindowUpdateFrame:
                self.window_updates += 1
            elif kind is RstStreamFrame:
                self.resets += 1
            elif kind is PriorityFrame or kind is ExtensionFrame or (
                    (kind is PingFrame or kind is SettingsFrame) and "ACK" in frame.flags):
                self.idle += 1
        return frame

    def _count_block(self, kind: int, length: int) -> None:
        """A whole HEADERS or CONTINUATION frame of *length* bytes is about to be
        parsed: add it to the header block's size (padding included: buffered
        all the same), refusing it past the limit."""
        self._block = length if kind == _HEADERS else self._block + length
        if self._block > self._block_limit:
            msg = (f"header block larger than {self._block_limit} bytes "
                   "(max_header_size + slack) before decoding")
            raise DenialOfServiceError(msg)


class GuardedDecoder(Decoder):
    """``hpack``'s decoder, refusing a block that starts with more than two
    dynamic table size updates.

    RFC 7541 §4.2: a change of the table size is signalled at the start of
    the next header block; "The final maximum size is always signaled,
    resulting in at most two dynamic table size updates."  (``hpack``
    already refuses one after a field.)  A block of a million updates would
    otherwise decode to nothing at the CPU cost of its size.
    """

    def decode(self, data: bytes, raw: bool = False) -> Any:
        if data and data[0] & 0xE0 == 0x20:
            _check_size_updates(data)
        return super().decode(data, raw)


class HeaderBlockError(ProtocolError):
    """A header block that cannot be decoded (RFC 9113 §4.3: "A decoding error in a
    field block MUST be treated as a connection error of type COMPRESSION_ERROR")."""

    error_code = ErrorCodes.COMPRESSION_ERROR


def _check_size_updates(data: bytes) -> None:
    """Raise :exc:`HeaderBlockError` if *data* starts with more than two size updates."""
    view = memoryview(data)
    pos = 0
    count = 0
    while pos < len(data) and data[pos] & 0xE0 == 0x20:
        # §6.3: "001" then the new maximum size, a 5-bit prefix integer.
        count += 1
        if count > MAX_SIZE_UPDATES:
            msg = "more than two dynamic table size updates at the start of a header block"
            raise HeaderBlockError(msg)
        pos += decode_integer(view[pos:], 5)[1]


def _error_code(code: int) -> ErrorCodes | int:
    try:
        return ErrorCodes(code)
    except ValueError:
        return code


def new_h2(options: DaemonOptions) -> ServerH2:
    """The server side of a connection, its SETTINGS queued (the server preface).

    Args:
        options: the daemon's options (``http2_max_concurrent_streams``,
            ``http2_initial_window_size``, ``max_header_size``).
    """
    # Inbound fields are checked by mhd2.http2.checks; outbound ones are made
    # by mhd2 already lower-case and valid (Response.add_header and the DCC
    # footers check them; checks.strip_response_fields lowers them): h2's own
    # passes over every header list cost ~5 % per request.
    config = H2Configuration(client_side=False, header_encoding=None,
                             validate_inbound_headers=False,
                             normalize_inbound_headers=False,
                             validate_outbound_headers=False,
                             normalize_outbound_headers=False)
    h2 = ServerH2(config=config)
    h2.incoming_buffer = EarlyFrameBuffer(
        server=True, header_block_limit=options.max_header_size + HEADER_BLOCK_SLACK)
    h2.decoder = GuardedDecoder()
    h2.encoder = StaticEncoder()
    h2.local_settings = Settings(client=False, initial_values={
        SettingCodes.MAX_CONCURRENT_STREAMS: options.http2_max_concurrent_streams,
        SettingCodes.INITIAL_WINDOW_SIZE: options.http2_initial_window_size,
        SettingCodes.MAX_HEADER_LIST_SIZE: options.max_header_size,
        SettingCodes.ENABLE_PUSH: 0,
        # RFC 8441 §3: "Upon receipt of SETTINGS_ENABLE_CONNECT_PROTOCOL with a
        # value of 1, a client MAY use the Extended CONNECT as defined in this
        # document when creating new streams" -- WebSocket over HTTP/2
        # (mhd2.http2.tunnel).
        SettingCodes.ENABLE_CONNECT_PROTOCOL: 1,
    })
    h2.initiate_connection()
    # The decoder's limit would only apply once the client acknowledged our
    # SETTINGS; an HPACK bomb in its first HEADERS must be cut too.
    h2.decoder.max_header_list_size = options.max_header_size
    return h2


def connection_window(options: DaemonOptions) -> int:
    """By how much to widen the connection's receive window past its initial 65,535."""
    window = options.http2_initial_window_size
    target = max(window, min(window * CONNECTION_WINDOW_STREAMS, MAX_CONNECTION_WINDOW))
    return max(0, target - DEFAULT_WINDOW)


