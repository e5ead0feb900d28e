"""mhd2.http2.engine: the sans-IO HTTP/2 engine over plain bytes, in h11's style.

No sockets and no event loop: a client made with the ``h2`` library writes
bytes, :meth:`H2Engine.receive` turns them into events, and what the engine
queued (:meth:`H2Engine.data_to_send`) is read back by the client.  The flood
rates run on a clock the test moves by hand.
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import Frame, GoAwayFrame, PingFrame, PriorityFrame

import mhd2
from mhd2.enums import RequestEndedCode
from mhd2.http2.engine import ConnState, H2Engine
from mhd2.http2.events import (
    BodyEnded,
    DataReceived,
    Event,
    GoawayReceived,
    PingAnswered,
    RequestMalformed,
    RequestReceived,
    ShutdownAnswered,
    StreamCancelled,
    TrailersReceived,
    WindowOpened,
)
from mhd2.http2.guard import MAX_PINGS, MIN_RESETS, RATE_WINDOW
from mhd2.http2.machine import FRAMES_PER_TURN, connection_window

GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"example.org"),
       (b":path", b"/hello?x=1")]
POST = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"example.org"),
        (b":path", b"/up")]


class Pair:
    """An engine and an ``h2`` client, wired by hand (no I/O)."""

    def __init__(self, **options: Any) -> None:
        self.now = 0.0
        self.options = mhd2.DaemonOptions(**options)
        self.engine = H2Engine(self.options, lambda: self.now, "test-peer")
        config = h2.config.H2Configuration(client_side=True, header_encoding=None,
                                           validate_outbound_headers=False,
                                           normalize_outbound_headers=False)
        self.client = h2.connection.H2Connection(config=config)
        self.client.initiate_connection()

    def send(self, raw: bytes = b"") -> list[Event]:
        """Hand what the client queued (and *raw*) to the engine: the events."""
        return self.engine.receive(self.client.data_to_send() + raw)

    def answer(self) -> list[h2.events.Event]:
        """Hand what the engine queued to the client: the client's events."""
        return self.client.receive_data(self.engine.data_to_send())

    def handshake(self) -> None:
        # (The client's SETTINGS carry SETTINGS_INITIAL_WINDOW_SIZE: windows may open.)
        assert all(type(e) is WindowOpened for e in self.send())
        self.answer()
        assert self.send() == []  # the client's SETTINGS ack


def state_of(engine: H2Engine) -> ConnState:
    """(A call, so that mypy does not keep a state asserted before a receive.)"""
    return engine.state


def of(events: list[Any], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def test_server_preface_and_connection_window() -> None:
    pair = Pair(http2_max_concurrent_streams=7)
    assert state_of(pair.engine) is ConnState.OPEN
    assert [(type(e), e.stream_id) for e in pair.send()] == [(WindowOpened, 0)]
    client_events = pair.answer()
    settings = of(client_events, h2.events.RemoteSettingsChanged)[0].changed_settings
    assert settings[SettingCodes.MAX_CONCURRENT_STREAMS].new_value == 7
    # RFC 8441 §3: the server advertises extended CONNECT.
    assert settings[SettingCodes.ENABLE_CONNECT_PROTOCOL].new_value == 1
    # The connection's receive window is widened once the client's preface is in.
    updates = of(client_events, h2.events.WindowUpdated)
    assert [(u.stream_id, u.delta) for u in updates] == [(0, connection_window(pair.options))]


def test_get_is_one_event_and_a_whole_response_goes_back() -> None:
    pair = Pair()
    pair.handshake()
    pair.client.send_headers(1, GET, end_stream=True)
    # (END_STREAM on the HEADERS is in the event: no BodyEnded follows.)
    (event,) = pair.send()
    assert isinstance(event, RequestReceived)
    assert (event.stream_id, event.ended) == (1, True)
    assert (event.head.method, event.head.uri) == ("GET", "/hello?x=1")
    assert pair.engine.active == {1} and pair.engine.served == 1
    pair.engine.send_response(1, [(b":status", b"200"), (b"content-length", b"2")], b"hi")
    client_events = pair.answer()
    assert of(client_events, h2.events.ResponseReceived)[0].headers[0] == (b":status", b"200")
    assert of(client_events, h2.events.DataReceived)[0].data == b"hi"
    assert of(client_events, h2.events.StreamEnded)
    pair.engine.stream_closed(1)
    assert pair.engine.active == set()


def test_body_data_end_and_acknowledged_window() -> None:
    pair = Pair()
    pair.handshake()
    pair.client.send_headers(1, POST)
    body = b"x" * 40000
    pos = 0
    while pos < len(body):
        n = min(pair.client.max_outbound_frame_size, len(body) - pos)
        pair.client.send_data(1, body[pos:pos + n])
        pos += n
    pair.client.end_stream(1)
    events = pair.send()
    assert isinstance(events[0], RequestReceived) and not events[0].ended
    data = of(events, DataReceived)
    assert b"".join(d.data for d in data) == body
    assert sum(d.flow for d in data) == len(body)
    assert isinstance(events[-1], BodyEnded)
    # Nothing is given back until the bytes are consumed ...
    assert not of(pair.answer(), h2.events.WindowUpdated)
    assert pair.engine.acknowledge(1, len(body))
    # ... then the stream's window (h2 batches: past half of it).
    updates = of(pair.answer(), h2.events.WindowUpdated)
    assert [(u.stream_id, u.delta) for u in updates] == [(1, len(body))]


def test_streams_beyond_the_limit_are_refused_until_one_closes() -> None:
    pair = Pair(http2_max_concurrent_streams=2)
    # (Before the client has read the server's SETTINGS: it does not hold back.)
    for sid in (1, 3, 5):
        pair.client.send_headers(sid, GET, end_stream=True)
    events = pair.send()
    assert [e.stream_id for e in of(events, RequestReceived)] == [1, 3]
    resets = of(pair.answer(), h2.events.StreamReset)
    assert [(r.stream_id, r.error_code) for r in resets] == [(5, ErrorCodes.REFUSED_STREAM)]
    pair.engine.send_response(1, [(b":status", b"204")], b"")
    pair.answer()
    pair.engine.stream_closed(1)
    pair.client.send_headers(7, GET, end_stream=True)
    assert [e.stream_id for e in of(pair.send(), RequestReceived)] == [7]


def test_malformed_request_is_reset_and_reported_without_a_stream() -> None:
    pair = Pair()
    pair.handshake()
    pair.client.send_headers(1, [h for h in GET if h[0] != b":path"], end_stream=True)
    events = pair.send()
    assert [(type(e), e.stream_id) for e in events] == [(RequestMalformed, 1)]
    assert events[0].status == 400  # type: ignore[attr-defined]
    resets = of(pair.answer(), h2.events.StreamReset)
    assert [(r.stream_id, r.error_code) for r in resets] == [(1, ErrorCodes.PROTOCOL_ERROR)]
    assert pair.engine.active == set()


def test_client_reset_cancels_the_stream() -> None:
    pair = Pair()
    pair.handshake()
    pair.client.send_headers(1, POST)
    pair.send()
    pair.client.reset_stream(1, ErrorCodes.CANCEL)
    (event,) = pair.send()
    assert isinstance(event, StreamCancelled)
    assert (event.stream_id, event.code, event.by_client) == (1, RequestEndedCode.CLIENT_ABORT,
                                                              True)


def test_trailers_and_malformed_trailers() -> None:
    pair = Pair()
    pair.handshake()
    pair.client.send_headers(1, POST)
    pair.client.send_data(1, b"abc")
    pair.client.send_headers(1, [(b"x-sum", b"42")], end_stream=True)
    events = pair.send()
    assert [type(e) for e in events] == [RequestReceived, DataReceived, TrailersReceived,
                                         BodyEnded]
    assert events[2].fields == [("x-sum", "42")]  # type: ignore[attr-defined]
    # A pseudo-header in a trailer section: the stream is reset, the request ends.
    pair.client.send_headers(3, POST)
    pair.client.send_headers(3, [(b":path", b"/")], end_stream=True)
    events = pair.send()
    cancelled = of(events, StreamCancelled)
    assert [(c.stream_id, c.code, c.by_client) for c in cancelled] == [
        (3, RequestEndedCode.HTTP_PROTOCOL_ERROR, False)]
    # The caller resets the stream once the request's end is reported.
    assert of(pair.answer(), h2.events.StreamReset) == []
    assert pair.engine.reset(3, ErrorCodes.PROTOCOL_ERROR)
    resets = of(pair.answer(), h2.events.StreamReset)
    assert [(r.stream_id, r.error_code) for r in resets] == [(3, ErrorCodes.PROTOCOL_ERROR)]


def test_window_events() -> None:
    pair = Pair()
    pair.handshake()
    pair.client.send_headers(1, GET, end_stream=True)
    pair.send()
    room = pair.engine.room(1)
    assert room == min(65535, pair.engine.frame_size)
    pair.client.increment_flow_control_window(1000, stream_id=1)
    assert [(type(e), e.stream_id) for e in pair.send()] == [(WindowOpened, 1)]
    assert pair.engine.window(1) == 65535  # (the connection's window is the smaller)
    pair.client.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 100000})
    assert [(type(e), e.stream_id) for e in pair.send()] == [(WindowOpened, 0)]


def test_ping_answered_only_for_its_own_payload() -> None:
    pair = Pair()
    pair.handshake()
    assert pair.engine.ping(b"12345678")
    pair.answer()  # the client acks it (h2 answers PING itself)
    assert [type(e) for e in pair.send()] == [PingAnswered]
    # An ack nobody asked for is no answer.
    raw = b"\x00\x00\x08\x06\x01\x00\x00\x00\x00" + b"87654321"
    assert pair.engine.receive(raw) == []


def test_ping_flood_ends_the_connection_and_the_rate_window_moves_on() -> None:
    pair = Pair()
    pair.handshake()
    for _ in range(MAX_PINGS):
        pair.client.ping(b"\0" * 8)
    pair.send()
    assert state_of(pair.engine) is ConnState.OPEN
    pair.now += RATE_WINDOW  # a new window: the count starts again
    for _ in range(MAX_PINGS):
        pair.client.ping(b"\0" * 8)
    pair.send()
    assert state_of(pair.engine) is ConnState.OPEN
    pair.client.ping(b"\0" * 8)
    pair.send()
    assert state_of(pair.engine) is ConnState.FAILED and pair.engine.ending
    goaway = of(pair.answer(), h2.events.ConnectionTerminated)
    assert goaway[0].error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert pair.send() == []  # nothing more is received


def test_rapid_reset_ends_the_connection() -> None:
    pair = Pair()
    pair.handshake()
    sid = 1
    for _ in range(MIN_RESETS):
        pair.client.send_headers(sid, GET)
        pair.client.reset_stream(sid)
        for event in pair.send():
            if isinstance(event, StreamCancelled):
                pair.engine.stream_closed(event.stream_id)
        assert state_of(pair.engine) is ConnState.OPEN
        sid += 2
    pair.client.send_headers(sid, GET)
    pair.client.reset_stream(sid)
    events = pair.send()
    # The stream opened in the turn of the flood is still reported (the
    # caller ends it), and the connection is over.
    assert [type(e) for e in events] == [RequestReceived, StreamCancelled]
    assert state_of(pair.engine) is ConnState.FAILED
    goaway = of(pair.answer(), h2.events.ConnectionTerminated)
    assert goaway[0].error_code == ErrorCodes.ENHANCE_YOUR_CALM


def test_protocol_error_fails_the_connection() -> None:
    pair = Pair()
    pair.handshake()
    # RFC 9113 §6.1: DATA on stream 0 is a connection error (PROTOCOL_ERROR).
    assert pair.engine.receive(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x") == []
    assert state_of(pair.engine) is ConnState.FAILED
    goaway = of(pair.answer(), h2.events.ConnectionTerminated)
    assert goaway[0].error_code == ErrorCodes.PROTOCOL_ERROR


def test_frames_beyond_the_turn_budget_wait_for_the_next_turn() -> None:
    pair = Pair()
    pair.handshake()
    raw = b"".join(PriorityFrame(1, depends_on=0, stream_weight=16).serialize()
                   for _ in range(FRAMES_PER_TURN + 10))
    pair.client.send_headers(3, GET, end_stream=True)
    assert pair.engine.receive(raw) == []
    assert pair.engine.more
    # The request after them comes in the next turn.
    events = pair.send()
    assert not pair.engine.more
    assert [e.stream_id for e in of(events, RequestReceived)] == [3]


def test_graceful_goaway_once_then_new_streams_are_refused() -> None:
    pair = Pair()
    pair.handshake()
    pair.client.send_headers(1, GET, end_stream=True)
    pair.send()
    assert pair.engine.goaway()
    assert not pair.engine.goaway()
    assert state_of(pair.engine) is ConnState.GOING_AWAY and not pair.engine.ending
    # (The client opens stream 3 before it has read the GOAWAY.)
    pair.client.send_headers(3, GET, end_stream=True)
    assert pair.send() == []
    client_events = pair.answer()
    goaway = of(client_events, h2.events.ConnectionTerminated)
    assert (goaway[0].error_code, goaway[0].last_stream_id) == (ErrorCodes.NO_ERROR, 1)
    resets = of(client_events, h2.events.StreamReset)
    assert [(r.stream_id, r.error_code) for r in resets] == [(3, ErrorCodes.REFUSED_STREAM)]
    # The stream that was running still sends (h2's client would refuse it now).
    pair.engine.send_response(1, [(b":status", b"204")], b"")
    assert pair.engine.data_to_send()


def test_stopping_refuses_new_streams() -> None:
    pair = Pair()
    pair.handshake()
    pair.client.send_headers(1, GET, end_stream=True)
    assert pair.engine.receive(pair.client.data_to_send(), stopping=True) == []
    resets = of(pair.answer(), h2.events.StreamReset)
    assert [(r.stream_id, r.error_code) for r in resets] == [(1, ErrorCodes.REFUSED_STREAM)]


def test_a_stop_is_announced_streams_in_flight_are_taken_then_the_final_goaway() -> None:
    """RFC 9113 §6.8: GOAWAY(2^31-1) and a PING; a stream the client opens
    before it acknowledges the PING is taken even while the daemon stops;
    the ack is ShutdownAnswered; the final GOAWAY names the last stream."""
    pair = Pair()
    pair.handshake()
    assert pair.engine.announce_goaway()
    assert not pair.engine.announce_goaway()
    assert state_of(pair.engine) is ConnState.OPEN and pair.engine.announced
    # The client opens stream 1 before it has read the announcement.
    pair.client.send_headers(1, GET, end_stream=True)
    events = pair.engine.receive(pair.client.data_to_send(), stopping=True)
    assert [e.stream_id for e in of(events, RequestReceived)] == [1]
    frames = split_frames(pair.engine.data_to_send())
    assert [(f.error_code, f.last_stream_id) for f in frames
            if isinstance(f, GoAwayFrame)] == [(ErrorCodes.NO_ERROR, 2**31 - 1)]
    (ping,) = [f for f in frames if isinstance(f, PingFrame)]
    events = pair.engine.receive(PingFrame(0, opaque_data=ping.opaque_data,
                                           flags=["ACK"]).serialize())
    assert len(of(events, ShutdownAnswered)) == 1 and not of(events, PingAnswered)
    assert pair.engine.goaway()
    assert state_of(pair.engine) is ConnState.GOING_AWAY
    (final,) = [f for f in split_frames(pair.engine.data_to_send())
                if isinstance(f, GoAwayFrame)]
    assert (final.error_code, final.last_stream_id) == (ErrorCodes.NO_ERROR, 1)


def split_frames(data: bytes) -> list[Any]:
    """The frames in *data*, parsed with hyperframe (no state machine)."""
    frames = []
    view = memoryview(data)
    while view:
        frame, length = Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9:9 + length])
        frames.append(frame)
        view = view[9 + length:]
    return frames


def test_client_goaway_is_answered_with_ours() -> None:
    pair = Pair()
    pair.handshake()
    pair.client.send_headers(1, GET, end_stream=True)
    pair.send()
    pair.client.close_connection()
    assert [type(e) for e in pair.send()] == [GoawayReceived]
    assert state_of(pair.engine) is ConnState.GOING_AWAY
    raw = pair.engine.data_to_send()
    assert raw[3] == 0x07  # a GOAWAY frame (RFC 9113 §6.8: type 0x07)
    # The client's stream is still answered.
    pair.engine.send_response(1, [(b":status", b"204")], b"")
    assert pair.engine.has_output()


@pytest.mark.parametrize("limit", [1, 2])
def test_max_requests_per_connection_sends_goaway(limit: int) -> None:
    pair = Pair(max_requests_per_connection=limit)
    pair.handshake()
    for n, sid in enumerate((1, 3), start=1):
        pair.client.send_headers(sid, GET, end_stream=True)
        pair.send()
        expected = ConnState.GOING_AWAY if n >= limit else ConnState.OPEN
        assert state_of(pair.engine) is expected
        if n >= limit:
            break


def test_data_for_a_closed_stream_is_acknowledged_by_the_engine() -> None:
    pair = Pair()
    pair.handshake()
    pair.client.send_headers(1, POST)
    pair.send()
    pair.engine.stream_closed(1)  # (the caller is done with it, the client still sends)
    pair.client.send_data(1, b"y" * 16000)
    pair.client.send_data(1, b"y" * 16000)
    pair.client.send_data(1, b"y" * 16000)
    assert pair.send() == []
    updates = of(pair.answer(), h2.events.WindowUpdated)
    assert [(u.stream_id, u.delta) for u in updates] == [(1, 48000)]


def test_lost_engine_receives_and_acknowledges_nothing() -> None:
    pair = Pair()
    pair.handshake()
    pair.client.send_headers(1, POST)
    pair.send()
    pair.engine.lost()
    assert state_of(pair.engine) is ConnState.LOST and pair.engine.ending
    assert not pair.engine.goaway()
    pair.client.send_data(1, b"z")
    assert pair.send() == []
    assert not pair.engine.acknowledge(1, 1)
    assert "RequestReceived(" in repr(RequestReceived(1, None, True))  # type: ignore[arg-type]
