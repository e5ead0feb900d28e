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
from typing import TYPE_CHECKING

from h2.config import H2Configuration
from h2.connection import ConnectionInputs, H2Connection
from h2.frame_buffer import FrameBuffer
from h2.settings import SettingCodes, Settings
from h2.stream import StreamInputs
from hyperframe.frame import Frame, RstStreamFrame

from .hpack_out import StaticEncoder

if TYPE_CHECKING:
    from ..options import DaemonOptions

__all__ = ["EarlyFrameBuffer", "ServerH2", "connection_window", "new_h2"]

#: The connection-level receive window: this many streams' windows, at most
#: :data:`MAX_CONNECTION_WINDOW` (and never less than one stream's window).
CONNECTION_WINDOW_STREAMS = 16
MAX_CONNECTION_WINDOW = 16 * 1024 * 1024
#: RFC 9113 §6.9.2: "the initial value of the flow-control window is 65,535 octets".
DEFAULT_WINDOW = 65535


# RFC 9113 §4.1: "All frames begin with a fixed 9-octet header": Length (24),
# Type (8), Flags (8), Reserved (1), Stream Identifier (31).
_FRAME_HEAD = struct.Struct(">IBL")
_DATA = 0x00
_HEADERS = 0x01
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
    """``h2``'s frame buffer, refusing an oversized frame from its 9-byte header,
    and counting the client's ``RST_STREAM`` frames.

    ``h2`` checks a frame's length against ``SETTINGS_MAX_FRAME_SIZE`` only
    once the whole frame is buffered: one header announcing 2**24 - 1 bytes
    would make the connection hold 16 MB before the error.  RFC 9113 §4.2:
    "An endpoint MUST send an error code of FRAME_SIZE_ERROR if a frame
    exceeds the size defined in SETTINGS_MAX_FRAME_SIZE" -- here as soon as
    the header says so (``FrameTooLargeError``, a ``ProtocolError``: h2 queues
    ``GOAWAY(FRAME_SIZE_ERROR)``).

    :attr:`resets` counts every ``RST_STREAM`` frame, also those for streams
    already answered, which ``h2`` drops without an event: the rapid-reset
    rate (CVE-2023-44487) must hold whether a reset came before or after the
    answer.
    """

    def __init__(self, server: bool = False) -> None:
        super().__init__(server=server)
        #: ``RST_STREAM`` frames parsed since the connection last took the count.
        self.resets = 0

    def __next__(self) -> Frame:
        data = self._data
        if len(data) >= 9:
            self._validate_frame_length(int.from_bytes(data[:3], "big"))
        frame = super().__next__()
        if type(frame) is RstStreamFrame:
            self.resets += 1
        return frame


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
    h2.incoming_buffer = EarlyFrameBuffer(server=True)
    h2.encoder = StaticEncoder()
    h2.local_settings = Settings(client=False, initial_values={
        SettingCodes.MAX_CONCURRENT_STREAMS: options.http2_max_concurrent_streams,
        SettingCodes.INITIAL_WINDOW_SIZE: options.http2_initial_window_size,
        SettingCodes.MAX_HEADER_LIST_SIZE: options.max_header_size,
        SettingCodes.ENABLE_PUSH: 0,
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


