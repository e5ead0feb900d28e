"""Hostile HTTP/2, round 3 (issue 19): resets the client provokes, header blocks
that decode to nothing, the client's own GOAWAY, idle connections kept open by
control frames, floods of tiny frames, slow reads, and ``:authority``.

Each test talks to a real daemon over a real connection with a frame-level
client (:mod:`h2raw`); the attacks run under :func:`_harness.h2_attack`, so a
well-behaved client is served on its own connection meanwhile and the memory
the process allocates stays bounded.
"""

from __future__ import annotations

import logging
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing
from _harness import h2_attack, request_block, send_quietly
from conftest import WAIT, open_stream, running, text_response
from h2.errors import ErrorCodes
from h2raw import RawH2
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    WindowUpdateFrame,
)

import mhd2
from mhd2.http2.guard import MIN_RESETS

MB = 1024 * 1024
Ended = list[tuple[mhd2.Request, mhd2.RequestEndedCode]]


def fine_or(cb: Callable[[mhd2.Request], Any] | None = None) -> Callable[[mhd2.Request], Any]:
    """*cb*, except that ``/fine`` (the bystander's) is answered ``ok``."""

    def app(request: mhd2.Request) -> Any:
        if request.path == "/fine" or cb is None:
            return text_response(request)
        return cb(request)

    return app


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The ERROR (and worse) records of the ``mhd2`` logger."""
    return [r.getMessage() for r in caplog.records
            if r.name.startswith("mhd2") and r.levelno >= logging.ERROR]


# -- 1. CVE-2025-8671 "MadeYouReset" ---------------------------------------------------------


def _second_headers(client: RawH2, sid: int) -> bytes:
    """A second HEADERS (no END_STREAM) on a stream the client has half-closed:
    RFC 9113 §5.1 makes it a stream error (STREAM_CLOSED)."""
    return HeadersFrame(sid, data=request_block(client), flags=["END_HEADERS"]).serialize()


def _window_overflow(client: RawH2, sid: int) -> bytes:
    """A stream WINDOW_UPDATE past 2^31-1 (RFC 9113 §6.9.1: a stream error
    FLOW_CONTROL_ERROR)."""
    return WindowUpdateFrame(sid, window_increment=2**31 - 1).serialize()


def _data_after_end_stream(client: RawH2, sid: int) -> bytes:
    """DATA on a stream the client has half-closed (RFC 9113 §5.1: "If an endpoint
    receives additional frames, other than WINDOW_UPDATE, PRIORITY, or RST_STREAM,
    for a stream that is in this state, it MUST respond with a stream error
    (Section 5.4.2) of type STREAM_CLOSED")."""
    return DataFrame(sid, data=b"late").serialize()


@pytest.mark.parametrize("provoke", [_second_headers, _window_overflow, _data_after_end_stream],
                         ids=["second-headers", "window-overflow", "data-after-end-stream"])
async def test_resets_the_client_provokes_count_against_the_reset_rate(
        provoke: Callable[[RawH2, int], bytes]) -> None:
    """MadeYouReset: requests the server itself resets, 3000 of them -- the resets
    count as the client's own RST_STREAM would; GOAWAY(ENHANCE_YOUR_CALM), and the
    application saw a bounded number of requests."""
    calls: list[str] = []

    async def cb(request: mhd2.Request) -> mhd2.Action:
        calls.append(request.path)
        await trio.sleep_forever()  # still running when the reset comes
        raise AssertionError("not reached")

    async with h2_attack(fine_or(cb)) as attack:
        client = attack.client
        with trio.fail_after(WAIT):

            async def flood() -> None:
                for _ in range(3000 // 50):
                    if client.goaway is not None or client.closed:
                        return
                    sids = [client.request("/x") for _ in range(50)]
                    await send_quietly(client)
                    await send_quietly(client, b"".join(provoke(client, s) for s in sids))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood)
                goaway = await client.until_goaway()
                nursery.cancel_scope.cancel()
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert len(calls) <= 2 * MIN_RESETS


async def test_malformed_and_refused_streams_count_against_the_reset_rate() -> None:
    """Streams mhd2 resets itself (malformed: a connection-specific field) count too."""
    calls: list[str] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        calls.append(request.path)
        return text_response(request)

    async with h2_attack(fine_or(cb)) as attack:
        client = attack.client
        with trio.fail_after(WAIT):
            for _ in range(3000 // 50):
                if client.goaway is not None or client.closed:
                    break
                for _ in range(50):
                    client.request("/bad", headers=[("connection", "close")])
                await send_quietly(client)
                await client.receive()
            goaway = await client.until_goaway()
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert calls == []


async def test_uploads_refused_early_do_not_count_as_provoked_resets() -> None:
    """The counting is fair: 300 uploads answered 413 unread (then RST_STREAM(NO_ERROR),
    RFC 9113 §8.1), each followed by DATA the client had in flight, which h2
    answers with RST_STREAM(STREAM_CLOSED) -- more resets than the budget, but
    none for an error of the client's: no GOAWAY."""

    def cb(request: mhd2.Request) -> mhd2.Action:
        return text_response(request, b"too large", 413)

    async with running(cb) as daemon:
        with trio.fail_after(3 * WAIT):
            client = await RawH2.connect(daemon.port)
            statuses = []
            for _ in range(300):
                sid = client.request("/up", "POST", headers=[("content-length", "1000000")],
                                     end=False)
                reply = await client.response(sid)
                statuses.append(reply.status)
                # What was in flight when the answer and its reset came.
                await send_quietly(client, DataFrame(sid, data=b"u" * 16_000).serialize() * 2)
            await client.response(client.request("/last"))
            await client.aclose()
    closed = [f for f in client.frames
              if isinstance(f, RstStreamFrame) and f.error_code == ErrorCodes.STREAM_CLOSED]
    assert statuses == [413] * 300
    assert len(closed) > 2 * MIN_RESETS and client.goaway is None


# -- 2. and 5. Header blocks bounded before decoding -----------------------------------------


async def _settings_in(client: RawH2) -> None:
    """Take the server's SETTINGS (and ack them): nothing may then come between a
    HEADERS frame and its CONTINUATION frames."""
    await client.until(lambda: client.conn.remote_settings.max_concurrent_streams == 100)
    await client.flush()


async def test_a_header_block_of_size_updates_is_cut_before_decoding() -> None:
    """~1 MiB of HPACK dynamic table size updates (0x20, decoding to nothing) over
    HEADERS and 61 CONTINUATION frames: the encoded block is bounded by
    max_header_size (+ slack) before any of it is decoded."""
    async with h2_attack(fine_or()) as attack:
        client = attack.client
        with trio.fail_after(WAIT):
            await _settings_in(client)
            piece = b"\x20" * 16_000
            frames = [HeadersFrame(1, data=piece, flags=[]).serialize()]
            frames += [ContinuationFrame(1, data=piece, flags=[]).serialize() for _ in range(60)]
            frames.append(ContinuationFrame(1, data=piece + request_block(client),
                                            flags=["END_HEADERS"]).serialize()[:16_009])
            await send_quietly(client, b"".join(frames))
            goaway = await client.until_goaway()
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM


@pytest.mark.parametrize(("updates", "refused"), [(b"\x20\x3f\xe1\x1f", False),
                                                  (b"\x20\x20\x20", True)])
async def test_at_most_two_leading_table_size_updates(updates: bytes, refused: bool) -> None:
    """RFC 7541 §4.2: "at most two dynamic table size updates" start a block."""
    async with running(text_response) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)
            await _settings_in(client)
            await send_quietly(client, HeadersFrame(
                1, data=updates + request_block(client, "/ok"),
                flags=["END_HEADERS", "END_STREAM"]).serialize())
            # (The client's h2 does not know stream 1: the frames as parsed.)
            await client.until(lambda: any(isinstance(f, GoAwayFrame | HeadersFrame)
                                           for f in client.frames))
            await client.aclose()
    answer = next(f for f in client.frames if isinstance(f, GoAwayFrame | HeadersFrame))
    if refused:
        assert isinstance(answer, GoAwayFrame)
        # RFC 9113 §4.3: "A decoding error in a field block MUST be treated as a
        # connection error of type COMPRESSION_ERROR."
        assert answer.error_code == ErrorCodes.COMPRESSION_ERROR
    else:
        assert isinstance(answer, HeadersFrame) and answer.stream_id == 1


async def test_incomplete_header_blocks_hold_at_most_max_header_size_each() -> None:
    """Item 5: 40 connections each send 62 CONTINUATION frames of 16 KiB without
    END_HEADERS (40 MiB if kept): each is ended with GOAWAY(ENHANCE_YOUR_CALM)
    past max_header_size + slack, and the process's memory stays bounded."""
    async with h2_attack(fine_or(), max_header_size=16 * 1024) as attack:
        goaways: list[ErrorCodes | int | None] = []
        with trio.fail_after(WAIT):

            async def hold(client: RawH2) -> None:
                await client.until(lambda: client.conn.remote_settings.max_header_list_size
                                   == 16 * 1024)
                await client.flush()
                await send_quietly(client, HeadersFrame(1, data=b"\x82", flags=[]).serialize())
                frame = ContinuationFrame(1, data=b"\x40\x01a\x01b" * 3200).serialize()
                for _ in range(62):
                    await send_quietly(client, frame)
                    if client.closed or client.goaway is not None:
                        break
                goaways.append((await client.until_goaway()).error_code)
                await client.aclose()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(hold, attack.client)
                for _ in range(39):
                    nursery.start_soon(hold, await RawH2.connect(attack.daemon.port))
    assert goaways == [ErrorCodes.ENHANCE_YOUR_CALM] * 40


async def test_what_a_connection_holding_a_header_block_costs() -> None:
    """The per-connection budget of docs/http2.rst: a connection holding an
    incomplete header block just under max_header_size + 1 KiB costs about that
    much more than an idle one (measured over 30 connections of each kind),
    and is not ended for it."""
    limit = 16 * 1024
    count = 30
    block = (HeadersFrame(1, data=b"\x82", flags=[]).serialize()
             + ContinuationFrame(1, data=b"\x40\x01a\x01b" * 2700).serialize())  # 16.2 KB

    async def open_held(port: int, hold: bool) -> RawH2:
        client = await RawH2.connect(port)
        await client.until(lambda: client.conn.remote_settings.max_header_list_size == limit)
        # A PING in the same write: its ack says the server has read the block.
        client.conn.ping(b"in-step!")
        await send_quietly(client, block if hold else b"")
        await client.until(lambda: any(isinstance(f, PingFrame) and "ACK" in f.flags
                                       for f in client.frames))
        return client

    async with running(text_response, max_header_size=limit) as daemon:
        with trio.fail_after(WAIT):
            tracemalloc.start()
            try:
                growth = []
                clients: list[RawH2] = []
                for hold in (False, True):
                    before, _ = tracemalloc.get_traced_memory()
                    clients += [await open_held(daemon.port, hold) for _ in range(count)]
                    after, _ = tracemalloc.get_traced_memory()
                    growth.append((after - before) / count)
            finally:
                tracemalloc.stop()
            assert not any(c.closed or c.goaway is not None for c in clients)
            for client in clients:
                await client.aclose()
    idle, holding = growth
    print(f"per connection: idle {idle / 1024:.1f} KiB, holding a block {holding / 1024:.1f} KiB")
    assert holding - idle < 2 * (limit + 1024)


# -- 3. The client's GOAWAY ------------------------------------------------------------------


async def test_goaway_in_the_clients_first_write_closes_cleanly(
        caplog: pytest.LogCaptureFixture) -> None:
    """Preface, SETTINGS and GOAWAY in one write: the server answers with its own
    GOAWAY and closes, with no ERROR record."""
    caplog.set_level(logging.DEBUG, logger="mhd2")
    async with running(text_response) as daemon:
        with trio.fail_after(WAIT):
            stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
            client = RawH2(stream)
            client.conn.close_connection()
            await client.flush()
            await client.until_closed()
            await client.aclose()
            # The daemon serves on.
            other = await RawH2.connect(daemon.port)
            reply = await other.response(other.request("/after"))
            await other.aclose()
    assert any(isinstance(f, GoAwayFrame) and f.error_code == 0 for f in client.frames)
    assert reply.status == 200
    assert no_errors_logged(caplog) == []


async def test_goaway_while_a_stream_is_in_flight_still_answers_it(
        caplog: pytest.LogCaptureFixture) -> None:
    """RFC 9113 §6.8: the client's GOAWAY lets its open streams finish.  A 300 KB
    answer (larger than the client's window) arrives whole: the client's SETTINGS
    ack and WINDOW_UPDATEs sent after its GOAWAY are accepted; then the server
    sends GOAWAY(NO_ERROR) and closes, with no ERROR record."""
    caplog.set_level(logging.DEBUG, logger="mhd2")
    release = trio.Event()
    started = trio.Event()
    body = b"z" * 300_000

    async def cb(request: mhd2.Request) -> mhd2.Action:
        started.set()
        await release.wait()
        return text_response(request, body)

    async with running(cb) as daemon:
        with trio.fail_after(WAIT):
            stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
            client = RawH2(stream)
            sid = client.request("/slow")
            # The GOAWAY goes before the server's SETTINGS are read: the client's
            # SETTINGS ack (and every WINDOW_UPDATE) comes after it.
            await client.send_raw(GoAwayFrame(0, last_stream_id=0).serialize())
            await started.wait()
            release.set()
            reply = await client.response(sid)
            await client.until_closed()
            await client.aclose()
    assert reply.status == 200 and reply.body == body and reply.ended
    goaways = [f for f in client.frames if isinstance(f, GoAwayFrame)]
    assert [(f.error_code, f.last_stream_id) for f in goaways] == [(0, sid)]
    assert no_errors_logged(caplog) == []


# -- 9. :authority and Host ------------------------------------------------------------------


def _head(authority: bytes | None, hosts: list[bytes]) -> list[tuple[bytes, bytes]]:
    head = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/who")]
    if authority is not None:
        head.append((b":authority", authority))
    return head + [(b"host", h) for h in hosts]


@pytest.mark.parametrize(("authority", "hosts"), [
    (b"evil.com/x?y", []),
    (b"a b", []),
    (b"user@evil.com", []),
    (b"evil.com#frag", []),
    (None, [b"evil.com/x?y"]),
    (None, [b"a b"]),
    (None, [b"user@evil.com"]),
    (None, [b"example.com", b"evil.com"]),
    (None, [b"example.com", b"example.com"]),
    (b"example.com", [b"example.com", b"example.com"]),
    (b"example.com", [b"evil.com"]),
])
async def test_a_bad_authority_or_host_never_reaches_the_application(
        authority: bytes | None, hosts: list[bytes]) -> None:
    """The HTTP/1 rule (RFC 9112 §3.2, RFC 3986 host[:port], one Host line) holds
    for ``:authority`` and ``host`` over HTTP/2: RST_STREAM(PROTOCOL_ERROR)."""
    seen: list[str | None] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        seen.append(request.headers.get("Host"))
        return text_response(request)

    async with running(cb) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)
            sid = client.conn.get_next_available_stream_id()
            client.conn.send_headers(sid, _head(authority, hosts), end_stream=True)
            reply = await client.response(sid)
            good = await client.response(client.request("/after"))
            await client.aclose()
    assert reply.reset == ErrorCodes.PROTOCOL_ERROR and reply.status is None
    assert good.status == 200 and seen == ["localhost"]


@pytest.mark.parametrize(("authority", "hosts", "host"), [
    (None, [b"example.com:8080"], "example.com:8080"),
    (b"[::1]:443", [], "[::1]:443"),
    (b"example.com", [b"example.com"], "example.com"),
])
async def test_a_good_authority_or_host_is_served(authority: bytes | None, hosts: list[bytes],
                                                  host: str) -> None:
    seen: list[str | None] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        seen.append(request.headers.get("Host"))
        return text_response(request)

    async with running(cb) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)
            sid = client.conn.get_next_available_stream_id()
            client.conn.send_headers(sid, _head(authority, hosts), end_stream=True)
            reply = await client.response(sid)
            await client.aclose()
    assert reply.status == 200 and seen == [host]


# -- 6. Control frames are not activity ------------------------------------------------------


def _ping(client: RawH2, i: int) -> None:
    client.conn.ping(i.to_bytes(8, "big"))


def _settings(client: RawH2, i: int) -> None:
    client.conn.update_settings({0x4: 65535 + i})


@pytest.mark.parametrize("control", [_ping, _settings], ids=["ping", "settings"])
@pytest.mark.parametrize("served", [True, False], ids=["after-a-request", "before-any"])
async def test_control_frames_do_not_keep_an_idle_connection_open(
        control: Callable[[RawH2, int], None], served: bool, autojump_clock: trio.testing.MockClock) -> None:
    """A PING or SETTINGS every 0.1 s, each acknowledged: the connection still ends
    (GOAWAY, close) at keep_alive_timeout after the last answer (before any
    request: at timeout)."""
    async with running(text_response, timeout=0.6, keep_alive_timeout=0.6) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.over(await open_stream(daemon))
            if served:
                await client.response(client.request("/"))
            start = trio.current_time()

            async def chatter() -> None:
                for i in range(100):
                    control(client, i)
                    await send_quietly(client)
                    await trio.sleep(0.1)  # (the attack's pace, not a synchronisation)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(chatter)
                await client.until_closed()
                nursery.cancel_scope.cancel()
            lasted = trio.current_time() - start
            await client.aclose()
    assert client.goaway is not None and client.goaway.error_code == ErrorCodes.NO_ERROR
    assert 0.59 < lasted < 0.6 + 0.1, lasted  # virtual time: the timeout, not re-armed


# -- 7. Floods of tiny frames ----------------------------------------------------------------


async def _priority(client: RawH2) -> bytes:
    return PriorityFrame(1, depends_on=0, stream_weight=16).serialize()


async def _unknown_type(client: RawH2) -> bytes:
    # RFC 9113 §5.5: "Implementations MUST ignore unknown or unsupported values
    # in all extensible protocol elements" -- ignored, but not for free.
    return b"\x00\x00\x00\xfa\x00\x00\x00\x00\x00"


async def _empty_data(client: RawH2) -> bytes:
    sid = client.request("/upload", "POST", end=False)
    await client.flush()
    return DataFrame(sid, data=b"").serialize()


async def _window_update_on_a_closed_stream(client: RawH2) -> bytes:
    sid = client.request("/")
    await client.response(sid)
    return WindowUpdateFrame(sid, window_increment=1).serialize()


@pytest.mark.parametrize("make", [_priority, _unknown_type, _empty_data,
                                  _window_update_on_a_closed_stream],
                         ids=["priority", "unknown-type", "empty-data", "window-update-closed"])
async def test_a_flood_of_frames_that_carry_nothing_gets_enhance_your_calm(
        make: Callable[[RawH2], Any]) -> None:
    """CVE-2019-9518 / 9517: 200,000 frames that do nothing (2.8 MB or more):
    GOAWAY(ENHANCE_YOUR_CALM), and the bystander is served meanwhile."""

    async def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/upload":
            await trio.sleep_forever()  # reads nothing: the DATA waits
        return text_response(request)

    async with h2_attack(fine_or(cb)) as attack:
        client = attack.client
        with trio.fail_after(WAIT):
            frame = await make(client)

            async def flood() -> None:
                batch = frame * 1000
                for _ in range(200):
                    await send_quietly(client, batch)
                    if client.closed:
                        return

            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood)
                goaway = await client.until_goaway()
                nursery.cancel_scope.cancel()
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM


async def test_a_flood_of_tiny_frames_is_handled_in_bounded_turns() -> None:
    """300,000 connection WINDOW_UPDATEs of 1 byte (~4 MB of 13-byte frames, each
    with an effect, so not a flood the guard ends): the reader handles a bounded
    number per turn and yields between turns -- the event loop is never held for
    long, where one turn per 64 KiB read (~5,000 frames) held it for tens of ms."""
    gaps: list[float] = []
    # (No h2_attack: its tracemalloc would triple the cost of every frame.)
    async with running(text_response) as daemon:
        client = await RawH2.connect(daemon.port)
        with trio.fail_after(4 * WAIT):
            frame = WindowUpdateFrame(0, window_increment=1).serialize()
            flooding = True

            async def flood() -> None:
                nonlocal flooding
                batch = frame * 5000
                for _ in range(60):
                    await send_quietly(client, batch)
                flooding = False

            async def monitor() -> None:
                last = trio.current_time()
                while flooding:
                    await trio.sleep(0)
                    now = trio.current_time()
                    gaps.append(now - last)
                    last = now

            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood)
                nursery.start_soon(monitor)
            reply = await client.response(client.request("/fine"))
    assert reply.status == 200 and client.goaway is None
    gaps.sort()
    print(f"loop gaps: p50 {gaps[len(gaps) // 2] * 1000:.1f} ms, "
          f"p99 {gaps[len(gaps) * 99 // 100] * 1000:.1f} ms, max {gaps[-1] * 1000:.1f} ms")
    assert gaps[len(gaps) * 99 // 100] < 0.045


# -- 8. Slow read x stream limit -------------------------------------------------------------


async def test_a_window_opened_a_byte_at_a_time_resets_the_stream(ended: Ended) -> None:
    """A zero initial window, then 1-byte WINDOW_UPDATEs every 0.05 s on each of 10
    streams (each byte is progress, so ``timeout`` alone never cuts them):
    ``http2_min_send_rate`` resets every stream (CANCEL, TIMEOUT_REACHED) once
    the client grants less than the rate; a stream on a normal window on the
    same daemon gets its whole answer."""
    body = b"y" * 100_000

    def cb(request: mhd2.Request) -> mhd2.Action:
        return text_response(request, body)

    async with h2_attack(fine_or(cb), timeout=30, http2_min_send_rate=(1024, 0.5),
                         client_options={"window": 0, "auto_ack": False},
                         notify_request_ended=lambda r, c: ended.append((r, c))) as attack:
        client = attack.client
        with trio.fail_after(WAIT):
            sids = [client.request(f"/slow{i}") for i in range(10)]
            await client.flush()
            start = trio.current_time()

            async def trickle() -> None:
                while True:
                    for sid in sids:
                        if client.replies[sid].reset is None:
                            client.conn.increment_flow_control_window(1, stream_id=sid)
                    await send_quietly(client)
                    await trio.sleep(0.05)  # (the attack's pace)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(trickle)
                await client.until(lambda: all(client.replies[s].reset is not None for s in sids))
                nursery.cancel_scope.cancel()
            lasted = trio.current_time() - start
            other = await RawH2.connect(attack.daemon.port)
            good = await other.response(other.request("/big"))
            await other.aclose()
    assert [client.replies[s].reset for s in sids] == [ErrorCodes.CANCEL] * 10
    assert lasted < 5
    assert sorted(c for r, c in ended if r.path.startswith("/slow")) == \
        [mhd2.RequestEndedCode.TIMEOUT_REACHED] * 10
    assert good.status == 200 and good.body == body


async def test_min_send_rate_is_validated_and_can_be_disabled() -> None:
    with pytest.raises(mhd2.UsageError, match="http2_min_send_rate"):
        mhd2.Daemon(text_response, http2_min_send_rate=(0, 1.0))
    with pytest.raises(mhd2.UsageError, match="http2_min_send_rate"):
        mhd2.Daemon(text_response, http2_min_send_rate=5)
    assert mhd2.Daemon(text_response, http2_min_send_rate=None).options.http2_min_send_rate \
        is None
    assert mhd2.Daemon(text_response).options.http2_min_send_rate == (1024, 20.0)


# -- docs/http2.rst: PING for connections whose streams are all parked --------------------------


async def test_a_connection_with_parked_streams_is_pinged_and_closed_when_silent(
        ended: Ended, autojump_clock: trio.testing.MockClock) -> None:
    """``http2_ping_interval`` / ``http2_ping_timeout``: two clients park a request
    each. One answers the server's PINGs (its request stays parked, then is
    resumed and answered); the other reads nothing, like a peer that vanished
    without a FIN: its request ends TIMEOUT_REACHED and its connection closes."""
    parked: dict[str, mhd2.Request] = {}
    silent_ended = trio.Event()

    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.app_context:
            return text_response(request, b"resumed")
        request.app_context = "parked"
        parked[request.path] = request
        return mhd2.action_suspend(request)

    def on_end(request: mhd2.Request, code: mhd2.RequestEndedCode) -> None:
        ended.append((request, code))
        if request.path == "/silent":
            silent_ended.set()

    async with running(cb, http2_ping_interval=0.2, http2_ping_timeout=0.3,
                       notify_request_ended=on_end) as daemon:
        with trio.fail_after(WAIT):
            alive = await RawH2.over(await open_stream(daemon))
            silent = await RawH2.over(await open_stream(daemon))
            silent_sid = silent.request("/silent")
            await silent.flush()
            sid = alive.request("/alive")

            def pings() -> int:
                return sum(1 for f in alive.frames
                           if isinstance(f, PingFrame) and "ACK" not in f.flags)

            await alive.until(lambda: pings() >= 4 and silent_ended.is_set())
            assert "/alive" in parked and not alive.closed and alive.goaway is None
            mhd2.request_resume(parked["/alive"])
            reply = await alive.response(sid)
            # The silent client reads at last: its request was reset, then GOAWAY.
            await silent.until_closed()
            await alive.aclose()
            await silent.aclose()
    assert reply.status == 200 and reply.body == b"resumed"
    assert silent.replies[silent_sid].reset == ErrorCodes.CANCEL
    assert silent.goaway is not None and silent.goaway.error_code == ErrorCodes.NO_ERROR
    assert sorted((r.path, c) for r, c in ended) == [
        ("/alive", mhd2.RequestEndedCode.COMPLETED_OK),
        ("/silent", mhd2.RequestEndedCode.TIMEOUT_REACHED)]


async def test_ping_options_are_validated() -> None:
    assert mhd2.Daemon(text_response).options.http2_ping_interval == 60.0
    assert mhd2.Daemon(text_response).options.http2_ping_timeout == 20.0
    assert mhd2.Daemon(text_response, http2_ping_interval=None).options.http2_ping_interval \
        is None
    for bad in ({"http2_ping_interval": 0}, {"http2_ping_timeout": None},
                {"http2_ping_timeout": -1.0}):
        with pytest.raises(mhd2.UsageError, match="http2_ping"):
            mhd2.Daemon(text_response, **bad)
