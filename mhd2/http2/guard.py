"""The ``h2`` state machine as mhd2 configures it, and the flood accounting of a connection.

Nothing here does I/O: :func:`new_h2` makes the state machine with mhd2's
settings, :class:`FloodGuard` counts the frames a client may send only so
often (``PING``, ``SETTINGS``, stream resets -- CVE-2023-44487 "rapid
reset"), and :func:`connection_window` says how far to open the
connection-level receive window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.frame_buffer import FrameBuffer
from h2.settings import SettingCodes, Settings
from hyperframe.frame import Frame

if TYPE_CHECKING:
    from ..options import DaemonOptions

__all__ = [
    "MAX_PINGS",
    "MAX_SETTINGS",
    "MIN_RESETS",
    "RATE_WINDOW",
    "EarlyFrameBuffer",
    "FloodGuard",
    "ServerH2",
    "connection_window",
    "new_h2",
]

#: The window for the rates below, in seconds.
RATE_WINDOW = 10.0
#: PING frames a client may send per window.
MAX_PINGS = 100
#: SETTINGS frames a client may send per window.
MAX_SETTINGS = 100
#: Stream resets by the client per window: at least this many, or twice the
#: stream limit.
MIN_RESETS = 200
#: The connection-level receive window: this many streams' windows, at most
#: :data:`MAX_CONNECTION_WINDOW` (and never less than one stream's window).
CONNECTION_WINDOW_STREAMS = 16
MAX_CONNECTION_WINDOW = 16 * 1024 * 1024
#: RFC 9113 §6.9.2: "the initial value of the flow-control window is 65,535 octets".
DEFAULT_WINDOW = 65535


class ServerH2(H2Connection):
    """``h2``'s connection with mhd2's own stream limit.

    ``h2`` treats a stream beyond ``SETTINGS_MAX_CONCURRENT_STREAMS`` as a
    connection error; RFC 9113 §5.1.2 makes it a stream error ("MUST treat
    this as a stream error of type PROTOCOL_ERROR or REFUSED_STREAM"), which
    the connection answers with ``REFUSED_STREAM`` itself.
    """

    @property
    def open_inbound_streams(self) -> int:
        super().open_inbound_streams  # noqa: B018 -- h2 forgets closed streams here
        return 0


class EarlyFrameBuffer(FrameBuffer):
    """``h2``'s frame buffer, refusing an oversized frame from its 9-byte header.

    ``h2`` checks a frame's length against ``SETTINGS_MAX_FRAME_SIZE`` only
    once the whole frame is buffered: one header announcing 2**24 - 1 bytes
    would make the connection hold 16 MB before the error.  RFC 9113 §4.2:
    "An endpoint MUST send an error code of FRAME_SIZE_ERROR if a frame
    exceeds the size defined in SETTINGS_MAX_FRAME_SIZE" -- here as soon as
    the header says so (``FrameTooLargeError``, a ``ProtocolError``: h2 queues
    ``GOAWAY(FRAME_SIZE_ERROR)``).
    """

    def __next__(self) -> Frame:
        data = self._data
        if len(data) >= 9:
            self._validate_frame_length(int.from_bytes(data[:3], "big"))
        return super().__next__()


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


class Rate:
    """Counts events in fixed windows of :data:`RATE_WINDOW` seconds."""

    __slots__ = ("_count", "_limit", "_start")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._count = 0
        self._start = trio.current_time()

    def over(self) -> bool:
        """Count one; True when the limit of this window is passed."""
        now = trio.current_time()
        if now - self._start >= RATE_WINDOW:
            self._start = now
            self._count = 0
        self._count += 1
        return self._count > self._limit


class FloodGuard:
    """The frames a client may send only so often, per connection.

    Each method counts one frame and returns why the connection is to end
    (``GOAWAY`` ENHANCE_YOUR_CALM), or ``None``.
    """

    __slots__ = ("_pings", "_resets", "_settings")

    def __init__(self, max_concurrent_streams: int) -> None:
        self._pings = Rate(MAX_PINGS)
        self._settings = Rate(MAX_SETTINGS)
        self._resets = Rate(max(MIN_RESETS, 2 * max_concurrent_streams))

    def ping(self) -> str | None:
        """A ``PING`` arrived."""
        return "PING flood" if self._pings.over() else None

    def settings(self) -> str | None:
        """A ``SETTINGS`` frame arrived."""
        return "SETTINGS flood" if self._settings.over() else None

    def reset(self) -> str | None:
        """The client reset a stream (CVE-2023-44487, "rapid reset")."""
        return "too many stream resets" if self._resets.over() else None
