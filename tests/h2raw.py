"""A frame-level HTTP/2 client for the tests: ``h2`` in client mode over a trio stream.

:class:`RawH2` sends what ``h2`` lets a client send and, through
:meth:`RawH2.send_raw`, frames that ``h2`` would refuse to make (hostile
input built with ``hyperframe`` and ``hpack``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio
from h2.config import H2Configuration
from h2.connection import ConnectionState, H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    InformationalResponseReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings
from hyperframe.frame import Frame, GoAwayFrame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
WAIT = 10.0


@dataclass
class Reply:
    """What came back on one stream."""

    status: int | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    informational: list[int] = field(default_factory=list)
    reset: int | None = None
    ended: bool = False

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class RawH2:
    """An HTTP/2 client connection for tests.

    Attributes:
        goaway: the ``ConnectionTerminated`` event once the server sent GOAWAY.
        closed: the server closed the connection.
    """

    def __init__(self, stream: trio.abc.Stream, *, window: int | None = None,
                 auto_ack: bool = True) -> None:
        self.stream = stream
        config = H2Configuration(client_side=True, header_encoding=None,
                                 validate_outbound_headers=False,
                                 normalize_outbound_headers=False)
        self.conn = H2Connection(config=config)
        self.replies: dict[int, Reply] = {}
        self.goaway: ConnectionTerminated | None = None
        self.closed = False
        self.auto_ack = auto_ack
        self.events: list[Event] = []
        self._send_lock = trio.Lock()
        #: Every frame received, as parsed independently of h2's state machine.
        self.frames: list[Frame] = []
        self._unparsed = bytearray()
        if window is not None:
            self.conn.local_settings = Settings(
                client=True, initial_values={SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.conn.initiate_connection()

    @classmethod
    async def connect(cls, port: int, **kwargs: object) -> RawH2:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        return await cls.over(stream, **kwargs)

    @classmethod
    async def over(cls, stream: trio.abc.Stream, **kwargs: object) -> RawH2:
        """A client on *stream* (e.g. ``conftest.open_stream(daemon)``, in memory,
        which tests on ``trio.testing.MockClock`` need), its preface sent."""
        client = cls(stream, **kwargs)  # type: ignore[arg-type]
        await client.flush()
        return client

    async def flush(self) -> None:
        async with self._send_lock:
            data = self.conn.data_to_send()
            if data:
                await self.stream.send_all(data)

    async def send_raw(self, data: bytes) -> None:
        async with self._send_lock:
            await self.stream.send_all(self.conn.data_to_send() + data)

    def request(self, path: str = "/", method: str = "GET",
                headers: list[tuple[str, str]] | None = None, *, end: bool = True,
                authority: str = "localhost") -> int:
        """Queue a request's HEADERS; return its stream id."""
        sid = self.conn.get_next_available_stream_id()
        fields = [(":method", method), (":scheme", "http"), (":authority", authority),
                  (":path", path), *(headers or [])]
        self.conn.send_headers(sid, [(k.encode(), v.encode()) for k, v in fields],
                               end_stream=end)
        self.replies[sid] = Reply()
        return sid

    async def receive(self) -> list[Event]:
        """Read once and process; [] and ``closed`` when the server closed."""
        try:
            data = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:
            data = b""
        if not data:
            self.closed = True
            return []
        frames = self._split(data)
        self.frames.extend(frame for frame, _ in frames)
        events: list[Event] = []
        for frame, raw in frames:
            try:
                got = self.conn.receive_data(raw)
            except ProtocolError:
                self.closed = True
                break
            for event in got:
                self._note(event)
            events.extend(got)
            if isinstance(frame, GoAwayFrame) and frame.error_code == 0:
                # h2 closes its state on any GOAWAY; RFC 9113 §6.8 lets the
                # streams up to the last id finish: read on.
                self.conn.state_machine.state = ConnectionState.CLIENT_OPEN
        try:
            await self.flush()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.closed = True
        self.events.extend(events)
        return events

    def _split(self, data: bytes | bytearray) -> list[tuple[Frame, bytes]]:
        """The whole frames received so far, each parsed and as it came (h2's own
        FrameBuffer would merge CONTINUATION frames into their HEADERS)."""
        self._unparsed += data
        frames = []
        while len(self._unparsed) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(bytes(self._unparsed[:9])))
            if len(self._unparsed) < 9 + length:
                break
            raw = bytes(self._unparsed[:9 + length])
            del self._unparsed[:9 + length]
            frame.parse_body(memoryview(raw)[9:])
            frames.append((frame, raw))
        return frames

    def _note(self, event: Event) -> None:
        sid = getattr(event, "stream_id", None)
        reply = self.replies.setdefault(sid, Reply()) if sid else None
        if isinstance(event, ResponseReceived) and reply is not None:
            reply.headers = list(event.headers)
            reply.status = int(dict(reply.headers)[b":status"])
        elif isinstance(event, InformationalResponseReceived) and reply is not None:
            reply.informational.append(int(dict(event.headers)[b":status"]))
        elif isinstance(event, DataReceived) and reply is not None:
            reply.body += event.data
            if self.auto_ack and event.stream_id is not None:
                self.conn.acknowledge_received_data(event.flow_controlled_length,
                                                    event.stream_id)
        elif isinstance(event, TrailersReceived) and reply is not None:
            reply.trailers = list(event.headers)
        elif isinstance(event, StreamEnded) and reply is not None:
            reply.ended = True
        elif isinstance(event, StreamReset) and reply is not None:
            reply.reset = int(event.error_code)
        elif isinstance(event, ConnectionTerminated):
            self.goaway = event

    async def until(self, done: object, timeout: float = WAIT) -> None:
        """Receive until ``done()`` is true (or the server closed)."""
        with trio.fail_after(timeout):
            while not done() and not self.closed:  # type: ignore[operator]
                await self.receive()

    async def response(self, sid: int, timeout: float = WAIT) -> Reply:
        """Receive until stream *sid* ended or was reset."""
        await self.flush()
        reply = self.replies.setdefault(sid, Reply())
        await self.until(lambda: reply.ended or reply.reset is not None, timeout)
        return reply

    async def until_goaway(self, timeout: float = WAIT) -> ConnectionTerminated:
        await self.until(lambda: self.goaway is not None, timeout)
        assert self.goaway is not None, "the server closed without GOAWAY"
        return self.goaway

    async def until_final_goaway(self, timeout: float = WAIT) -> GoAwayFrame:
        """A graceful stop's second GOAWAY (RFC 9113 §6.8): the first announces
        it with the highest stream id, the final one names the last stream taken."""
        def finals() -> list[GoAwayFrame]:
            return [f for f in self.frames
                    if isinstance(f, GoAwayFrame) and f.last_stream_id != 2**31 - 1]
        await self.until(lambda: bool(finals()), timeout)
        found = finals()
        assert found, "the server closed without a final GOAWAY"
        return found[0]

    async def until_closed(self, timeout: float = WAIT) -> None:
        with trio.fail_after(timeout):
            while not self.closed:
                await self.receive()

    async def aclose(self) -> None:
        await self.stream.aclose()


__all__ = ["PREFACE", "RawH2", "Reply", "SettingCodes"]
