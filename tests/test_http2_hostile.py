"""Hostile HTTP/2: each attack ends in RST_STREAM or GOAWAY, bounded, and the daemon serves on.

A frame-level client (``h2`` in client mode, plus hand-made frames) talks to a
real daemon in the test's own process (:func:`_harness.h2_attack`).  During
every attack a well-behaved httpx client on its own connection is served, and
after it once more; every attack is sized so that buffering it would take 50 MB
or more, and the memory the process allocates at the attack's peak
(``tracemalloc``) must stay under :data:`_harness.MEMORY_BOUND` (20 MiB).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import trio
from _harness import h2_attack, request_block, send_quietly
from conftest import WAIT, text_response
from h2.errors import ErrorCodes
from hpack.hpack import encode_integer
from hyperframe.frame import ContinuationFrame, DataFrame, Frame, HeadersFrame, RstStreamFrame

import mhd2
from mhd2.enums import RequestEndedCode
from mhd2.http2.guard import MIN_RESETS

Ended = list[tuple[mhd2.Request, mhd2.RequestEndedCode]]
MB = 1024 * 1024


def fine_or(cb: Callable[[mhd2.Request], Any] | None = None) -> Callable[[mhd2.Request], Any]:
    """*cb*, except that ``/fine`` (the bystander's) is answered ``ok``."""

    def app(request: mhd2.Request) -> Any:
        if request.path == "/fine" or cb is None:
            return text_response(request)
        return cb(request)

    return app


def literal_field(name: bytes, value: bytes) -> bytes:
    """An HPACK "literal header field without indexing -- new name", no Huffman
    (RFC 7541 §6.2.2): cheap to make and to decode, no change to either table."""
    return (b"\x00" + bytes(encode_integer(len(name), 7)) + name
            + bytes(encode_integer(len(value), 7)) + value)


#: A 6 KB field that every stream of the rapid reset carries.
PAD = literal_field(b"x-pad", b"p" * 6000)


def with_field(data: bytes, field: bytes) -> bytes:
    """The frames in *data*, with *field* appended to the block of each HEADERS frame."""
    out = []
    view = memoryview(data)
    while view:
        frame, length = Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9:9 + length])
        view = view[9 + length:]
        if isinstance(frame, HeadersFrame):
            frame.data += field
        out.append(frame.serialize())
    return b"".join(out)


def recording(calls: list[str]) -> Callable[[mhd2.Request], mhd2.Action]:
    """A callback answering ``ok`` that records each request's path in *calls*."""
    def cb(request: mhd2.Request) -> mhd2.Action:
        calls.append(request.path)
        return text_response(request)
    return cb


async def test_rapid_reset_is_bounded_and_ends_with_enhance_your_calm() -> None:
    """CVE-2023-44487: HEADERS then RST_STREAM in a loop -- 10,000 streams with a
    6 KB header each (60 MB if the streams were kept)."""
    calls: list[str] = []
    async with h2_attack(fine_or(recording(calls))) as attack:
        client = attack.client
        with trio.fail_after(WAIT):

            async def flood() -> None:
                batch: list[bytes] = []
                for i in range(10_000):
                    if client.goaway is not None or client.closed:
                        return
                    sid = client.request(f"/{i}")
                    client.conn.reset_stream(sid, ErrorCodes.CANCEL)
                    batch.append(with_field(client.conn.data_to_send(), PAD))
                    if len(batch) == 50:  # each HEADERS with its RST_STREAM, in one write
                        await send_quietly(client, b"".join(batch))
                        batch.clear()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood)
                goaway = await client.until_goaway()
                nursery.cancel_scope.cancel()
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    # Past the reset rate the connection ended; work the application saw is bounded.
    assert len(calls) <= 400


async def test_resets_after_each_answer_count_against_the_rate_too() -> None:
    """The rapid reset with each RST_STREAM sent after its stream was answered (h2
    drops those without an event): the connection still ends at the reset rate."""
    calls: list[str] = []
    async with h2_attack(fine_or(recording(calls))) as attack:
        client = attack.client
        with trio.fail_after(WAIT):
            for i in range(10_000):
                sid = client.request(f"/{i}")
                reply = await client.response(sid)
                if client.goaway is not None or client.closed:
                    break
                assert reply.status == 200
                # (h2 would refuse to reset a closed stream: the frame by hand.)
                await send_quietly(client, RstStreamFrame(sid, error_code=ErrorCodes.CANCEL)
                                   .serialize())
            goaway = await client.until_goaway()
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    # MIN_RESETS per window (200), then the GOAWAY: not 10,000 answers.
    assert len(calls) <= 2 * MIN_RESETS


async def test_continuation_flood_is_bounded_and_ends_the_connection() -> None:
    """CVE-2024-27316: CONTINUATION frames without END_HEADERS, forever (60 MB)."""
    async with h2_attack(fine_or()) as attack:
        client = attack.client
        with trio.fail_after(WAIT):
            # Take the server's SETTINGS (and acknowledge them) first: nothing
            # may come between HEADERS and its CONTINUATION frames.
            await client.until(lambda: client.conn.remote_settings.max_concurrent_streams == 100)
            await client.flush()
            await send_quietly(client, HeadersFrame(1, data=b"\x82", flags=[]).serialize())
            frame = ContinuationFrame(1, data=b"\x40\x01a\x01b" * 2000).serialize()

            async def flood() -> None:
                for _ in range(6000):  # 60 MB if the server kept it all
                    await send_quietly(client, frame)
                    if client.closed:
                        return

            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood)
                goaway = await client.until_goaway()
                nursery.cancel_scope.cancel()
    assert goaway.error_code in (ErrorCodes.PROTOCOL_ERROR, ErrorCodes.ENHANCE_YOUR_CALM)


async def test_hpack_bomb_is_refused() -> None:
    """A 20 KB header block that decodes to 64 MB: one 4 KB field in the dynamic
    table, then 16,000 one-byte references to it."""
    calls: list[str] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        calls.append(request.path)
        return text_response(request)

    async with h2_attack(fine_or(cb), max_header_size=8192) as attack:
        client = attack.client
        with trio.fail_after(WAIT):
            await client.until(lambda: client.conn.remote_settings.max_header_list_size == 8192)
            fields = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x"),
                      (b":path", b"/bomb"), *[(b"x-bomb", b"a" * 4000)] * 16_000]
            block = client.conn.encoder.encode(fields)
            assert len(block) < 24_000  # small on the wire: 64 MB decoded
            await send_quietly(client, HeadersFrame(1, data=block[:16_000]).serialize()
                               + ContinuationFrame(1, data=block[16_000:],
                                                   flags=["END_HEADERS"]).serialize())
            goaway = await client.until_goaway()
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert calls == []


async def test_settings_flood_gets_enhance_your_calm() -> None:
    """SETTINGS frames, each to be acknowledged, sent without reading the acks."""
    async with h2_attack(fine_or()) as attack:
        client = attack.client
        with trio.fail_after(WAIT):
            for i in range(300):
                client.conn.update_settings({0x4: 65535 + i})
                await send_quietly(client)
                if client.closed:
                    break
            goaway = await client.until_goaway()
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM


async def test_ping_flood_gets_enhance_your_calm() -> None:
    """PINGs sent without reading the answers."""
    async with h2_attack(fine_or()) as attack:
        client = attack.client
        with trio.fail_after(WAIT):
            for i in range(300):
                client.conn.ping(i.to_bytes(8, "big"))
                await send_quietly(client)
                if client.closed:
                    break
            goaway = await client.until_goaway()
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM


async def test_data_beyond_the_flow_control_window_is_a_connection_error() -> None:
    """A client that ignores flow control sends 50 MB of DATA to an application
    that reads none of it: FLOW_CONTROL_ERROR at the window, nothing buffered past it."""
    started = trio.Event()

    async def cb(request: mhd2.Request) -> mhd2.Action:
        started.set()
        await trio.sleep_forever()
        raise AssertionError("not reached")

    async with h2_attack(fine_or(cb)) as attack:
        client = attack.client
        with trio.fail_after(WAIT):
            sid = client.request("/upload", "POST", headers=[("content-length", str(50 * MB))],
                                 end=False)
            await client.flush()
            await started.wait()
            frame = DataFrame(sid, data=b"x" * 16_000).serialize()

            async def flood() -> None:
                try:
                    for _ in range(50 * MB // 16_000):
                        await client.send_raw(frame)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return  # the server closed: what is tested is how

            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood)
                goaway = await client.until_goaway()
                nursery.cancel_scope.cancel()
    # RFC 9113 §6.9: "A receiver MAY respond with a stream error or connection error
    # of type FLOW_CONTROL_ERROR if it is unable to accept a frame."
    assert goaway.error_code == ErrorCodes.FLOW_CONTROL_ERROR


async def test_streams_beyond_the_limit_are_refused(ended: Ended) -> None:
    parked: list[mhd2.Request] = []
    both_parked = trio.Event()

    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.app_context:
            return text_response(request)
        request.app_context = "parked once"
        parked.append(request)
        if len(parked) == 2:
            both_parked.set()
        return mhd2.action_suspend(request)

    async with h2_attack(fine_or(cb), http2_max_concurrent_streams=2,
                         notify_request_ended=lambda r, c: ended.append((r, c))) as attack:
        client = attack.client
        with trio.fail_after(WAIT):
            # Sent before the server's SETTINGS are read: the client does not
            # know the limit yet (or ignores it).
            sids = [client.request(f"/{i}") for i in range(3)]
            third = await client.response(sids[2])
            await both_parked.wait()
            for request in parked:
                mhd2.request_resume(request)
            first = await client.response(sids[0])
    assert third.reset == ErrorCodes.REFUSED_STREAM
    assert first.reset is None and sorted(r.path for r in parked) == ["/0", "/1"]
    assert sorted(r.path for r, _ in ended if r.path != "/fine") == ["/0", "/1"]


async def test_even_stream_id_is_a_protocol_error() -> None:
    async with h2_attack(fine_or()) as attack:
        client = attack.client
        with trio.fail_after(WAIT):
            block = request_block(client)
            await send_quietly(client, HeadersFrame(2, data=block,
                                                    flags=["END_HEADERS", "END_STREAM"]).serialize())
            goaway = await client.until_goaway()
    assert goaway.error_code == ErrorCodes.PROTOCOL_ERROR


async def test_stream_id_reuse_is_a_connection_error() -> None:
    async with h2_attack(fine_or()) as attack:
        client = attack.client
        with trio.fail_after(WAIT):
            await client.response(client.request("/a"))   # stream 1
            await client.response(client.request("/b"))   # stream 3
            block = request_block(client, "/again")
            await send_quietly(client, HeadersFrame(1, data=block,
                                                    flags=["END_HEADERS", "END_STREAM"]).serialize())
            goaway = await client.until_goaway()
    assert goaway.error_code in (ErrorCodes.PROTOCOL_ERROR, ErrorCodes.STREAM_CLOSED)


async def test_data_on_a_closed_stream() -> None:
    async with h2_attack(fine_or()) as attack:
        client = attack.client
        with trio.fail_after(WAIT):
            await client.response(client.request("/a"))
            await send_quietly(client, DataFrame(1, data=b"late").serialize())

            def resets() -> list[int]:
                return [int(f.error_code) for f in client.frames
                        if isinstance(f, RstStreamFrame) and f.stream_id == 1]

            await client.until(lambda: client.goaway is not None or resets())
            after = await client.response(client.request("/after"))
    # RFC 9113 §5.1: DATA in the "closed" state is a STREAM_CLOSED error (here a
    # stream error: the connection goes on).
    assert resets() == [ErrorCodes.STREAM_CLOSED] and client.goaway is None
    assert after.status == 200


async def test_frame_larger_than_max_frame_size() -> None:
    """A 16 MB DATA frame announced in its header: FRAME_SIZE_ERROR from the header alone."""
    async with h2_attack(fine_or()) as attack:
        client = attack.client
        with trio.fail_after(WAIT):
            sid = client.request("/", "POST", end=False)
            await client.flush()
            # Length 2**24 - 1, type DATA, no flags, the stream; then 20 KB of it.
            header = struct.pack(">I", 0xFFFFFF)[1:] + b"\x00\x00" + struct.pack(">I", sid)
            await send_quietly(client, header + b"x" * 20_000)
            goaway = await client.until_goaway()
    # RFC 9113 §4.2: "An endpoint MUST send an error code of FRAME_SIZE_ERROR if a
    # frame exceeds the size defined in SETTINGS_MAX_FRAME_SIZE".
    assert goaway.error_code == ErrorCodes.FRAME_SIZE_ERROR


async def test_zero_window_that_never_opens_is_cut_at_the_timeout(ended: Ended) -> None:
    """A 64 MB response from a content creator to a client whose window stays 0:
    the creator is not called ahead of the window, the stream is cut at the timeout."""
    calls: list[int] = []

    def creator(ctx: mhd2.DCCContext, pos: int, buf: memoryview) -> mhd2.DCCAction:
        calls.append(pos)
        buf[:] = b"z" * len(buf)
        return mhd2.dcc_action_continue(ctx, len(buf))

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_from_response(
            request, mhd2.Response.from_callback(200, 64 * MB, creator))

    async with h2_attack(fine_or(cb), timeout=0.5, client_options={"window": 0},
                         notify_request_ended=lambda r, c: ended.append((r, c))) as attack:
        client = attack.client
        with trio.fail_after(WAIT):
            sid = client.request("/big")
            start = trio.current_time()
            reply = await client.response(sid)
            cut_after = trio.current_time() - start
            goaway = await client.until_goaway()
    assert reply.status == 200 and reply.body == b"" and reply.reset == ErrorCodes.CANCEL
    assert 0.4 < cut_after < 3
    assert len(calls) <= 2
    assert [c for r, c in ended if r.path == "/big"] == [RequestEndedCode.TIMEOUT_REACHED]
    assert goaway.error_code == ErrorCodes.NO_ERROR


async def test_malformed_stream_does_not_disturb_its_neighbours() -> None:
    """A stream error (RST_STREAM) leaves the other streams of the connection running."""
    release = trio.Event()

    async def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/slow":
            await release.wait()
        return text_response(request, request.path.encode())

    async with h2_attack(cb) as attack:
        client = attack.client
        with trio.fail_after(WAIT):
            slow = client.request("/slow")
            bad = client.request("/bad", headers=[("connection", "close")])
            bad_reply = await client.response(bad)
            release.set()
            slow_reply = await client.response(slow)
    assert bad_reply.reset == ErrorCodes.PROTOCOL_ERROR
    assert (slow_reply.status, slow_reply.body) == (200, b"/slow")


async def test_malformed_trailers_reset_the_stream(ended: Ended) -> None:
    """A small unread body is read before the answer, so its trailers are checked:
    a pseudo-header in them (RFC 9113 §8.1) or a trailer HEADERS without
    END_STREAM is a stream error, and the request never ends as COMPLETED_OK."""
    async with h2_attack(text_response,
                         notify_request_ended=lambda r, c: ended.append((r, c))) as attack:
        client = attack.client
        with trio.fail_after(WAIT):
            sid = client.request("/t", "POST", end=False)
            client.conn.send_data(sid, b"body")
            await client.flush()
            trailer = client.conn.encoder.encode([(b":path", b"/x")])
            await send_quietly(client, HeadersFrame(sid, data=trailer,
                                                    flags=["END_HEADERS", "END_STREAM"]).serialize())
            reply = await client.response(sid)
            good = await client.response(client.request("/after"))
    assert reply.reset == ErrorCodes.PROTOCOL_ERROR and reply.status is None
    assert good.status == 200
    assert sorted((r.path, c) for r, c in ended if r.path != "/fine") == [
        ("/after", RequestEndedCode.COMPLETED_OK), ("/t", RequestEndedCode.HTTP_PROTOCOL_ERROR)]
