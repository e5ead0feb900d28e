"""The output half of the HTTP/2 engine: what is queued for the client.

:class:`H2Outbox` queues frames in mhd2's ``h2`` state machine -- a
stream's HEADERS and DATA, ``RST_STREAM``, the ``WINDOW_UPDATE`` due when
received data is consumed, ``PING`` -- next to the frames mhd2 builds by hand
(the server's ``GOAWAY``), and hands out the bytes for the caller to write
(:meth:`H2Outbox.data_to_send`).  It does the window arithmetic of sending:
how much one DATA frame of a stream may carry now (:meth:`H2Outbox.room`).

The input half -- frames in, events out, the streams taken, the flood
accounting and the connection's state -- is its subclass
:class:`~mhd2.http2.engine.H2Engine`.  No I/O here: the caller writes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError

if TYPE_CHECKING:
    from .machine import ServerH2

__all__ = ["H2Outbox"]


class H2Outbox:
    """The frames queued for the client on one connection (see the module docstring).

    Args:
        h2: the connection's ``h2`` state machine (its server preface queued).
    """

    __slots__ = ("_extra", "_ping_payload", "ending", "h2")

    def __init__(self, h2: ServerH2) -> None:
        #: The ``h2`` state machine.
        self.h2 = h2
        #: The connection is being torn down: nothing more is acknowledged (the
        #: engine's state is FAILED or LOST; kept apart: streams ask often).
        self.ending = False
        #: Frames built by hand, sent after ``h2``'s.
        self._extra: list[bytes] = []
        #: The payload of the last ``PING`` sent (its ack is expected).
        self._ping_payload = b""

    # -- bytes out ---------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Take the bytes queued for the client."""
        data = self.h2.data_to_send()
        if self._extra:
            data += b"".join(self._extra)
            self._extra.clear()
        return data

    def has_output(self) -> bool:
        """Bytes wait to be sent (without taking them).

        Looks at ``h2``'s outbound buffer; should a later ``h2`` not have it,
        the answer is always yes (correct, one write attempt more)."""
        return bool(getattr(self.h2, "_data_to_send", True)) or bool(self._extra)

    # -- stream output (window arithmetic) -----------------------------------------------

    def room(self, stream_id: int) -> int:
        """How many body bytes one DATA frame of *stream_id* may carry now (the
        stream's and the connection's windows, the peer's frame size)."""
        h2 = self.h2
        return min(h2.local_flow_control_window(stream_id), h2.max_outbound_frame_size)

    def window(self, stream_id: int) -> int:
        """The client's flow-control window for *stream_id* (and the connection)."""
        return self.h2.local_flow_control_window(stream_id)

    @property
    def frame_size(self) -> int:
        """The largest DATA payload the client accepts in one frame."""
        return self.h2.max_outbound_frame_size

    def send_headers(self, stream_id: int, headers: list[tuple[bytes, bytes]], *,
                     end: bool) -> None:
        """Queue a HEADERS block (raises ``h2``'s ``ProtocolError`` on a closed stream)."""
        self.h2.send_headers(stream_id, headers, end_stream=end)

    def send_data(self, stream_id: int, data: bytes, *, end: bool = False) -> None:
        """Queue one DATA frame (at most :meth:`room` bytes)."""
        self.h2.send_data(stream_id, data, end_stream=end)

    def end_stream(self, stream_id: int) -> None:
        """Queue an empty DATA frame with END_STREAM."""
        self.h2.end_stream(stream_id)

    def send_response(self, stream_id: int, headers: list[tuple[bytes, bytes]],
                      body: bytes) -> None:
        """Queue a final response whole (*body* at most :meth:`room` bytes), ending the
        stream: HEADERS and DATA built directly when they fit one frame each."""
        h2 = self.h2
        if not h2.send_whole_response(stream_id, headers, body):
            h2.send_headers(stream_id, headers, end_stream=not body)
            if body:
                h2.send_data(stream_id, body, end_stream=True)

    def reset(self, stream_id: int, code: ErrorCodes) -> bool:
        """Queue ``RST_STREAM``; whether it was (``False``: the stream is closed)."""
        try:
            self.h2.reset_stream(stream_id, code)
        except ProtocolError:
            return False
        return True

    def acknowledge(self, stream_id: int, size: int) -> bool:
        """*size* flow-controlled bytes of *stream_id* are consumed: queue what
        ``WINDOW_UPDATE`` is due (``h2`` batches them).

        Returns:
            Whether anything may have been queued.
        """
        if not size or self.ending:
            return False
        try:
            self.h2.acknowledge_received_data(size, stream_id)
        except ProtocolError:
            return False
        return True

    def ping(self, payload: bytes) -> bool:
        """Queue a ``PING`` with *payload* (8 bytes); its ack is a :class:`PingAnswered`.

        Returns:
            False if ``h2`` refused it (the connection is closing).
        """
        try:
            self.h2.ping(payload)
        except ProtocolError:
            return False
        self._ping_payload = payload
        return True
