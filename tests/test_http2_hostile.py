"""Hostile HTTP/2: each attack ends in RST_STREAM or GOAWAY, bounded, and the daemon serves on.

A frame-level client (``h2`` in client mode, plus hand-made frames) talks to a
real daemon over TCP; after every attack a well-behaved httpx client on a new
connection still gets its answer.
"""

from __future__ import annotations

import httpx
import trio
from conftest import WAIT, running, text_response
from h2.errors import ErrorCodes
from h2raw import RawH2
from hyperframe.frame import ContinuationFrame, DataFrame, HeadersFrame, RstStreamFrame

import mhd2
from mhd2.enums import RequestEndedCode

Ended = list[tuple[mhd2.Request, mhd2.RequestEndedCode]]


async def assert_still_serves(port: int) -> None:
    async with httpx.AsyncClient(http1=False, http2=True) as client:
        with trio.fail_after(WAIT):
            r = await client.get(f"http://127.0.0.1:{port}/fine")
    assert r.status_code == 200 and r.http_version == "HTTP/2"


async def send_quietly(client: RawH2, data: bytes = b"") -> None:
    """Send; the server may already have closed (that is what is tested)."""
    try:
        await client.send_raw(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        client.closed = True


def request_block(client: RawH2, path: str = "/") -> bytes:
    """An HPACK block for a GET, encoded by the client's own encoder (tables stay in step)."""
    return client.conn.encoder.encode([(b":method", b"GET"), (b":scheme", b"http"),
                                       (b":authority", b"localhost"), (b":path", path.encode())])


async def test_rapid_reset_is_bounded_and_ends_with_enhance_your_calm() -> None:
    """CVE-2023-44487: HEADERS then RST_STREAM in a loop."""
    calls: list[str] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        calls.append(request.path)
        return text_response(request)

    async with running(cb) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)

            async def flood() -> None:
                for i in range(5000):
                    if client.goaway is not None or client.closed:
                        return
                    sid = client.request(f"/{i}")
                    client.conn.reset_stream(sid, ErrorCodes.CANCEL)
                    if i % 100 == 99:
                        await send_quietly(client)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood)
                goaway = await client.until_goaway()
                nursery.cancel_scope.cancel()
            await client.aclose()
        await assert_still_serves(daemon.port)
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    # Past the reset rate the connection ended; work the application saw is bounded.
    assert len(calls) <= 400


async def test_continuation_flood_is_bounded_and_ends_the_connection() -> None:
    """CVE-2024-27316: CONTINUATION frames without END_HEADERS, forever."""
    async with running(text_response) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)
            # Take the server's SETTINGS (and acknowledge them) first: nothing
            # may come between HEADERS and its CONTINUATION frames.
            await client.until(lambda: client.conn.remote_settings.max_concurrent_streams == 100)
            await client.flush()
            await send_quietly(client, HeadersFrame(1, data=b"\x82", flags=[]).serialize())
            frame = ContinuationFrame(1, data=b"\x40\x01a\x01b" * 2000).serialize()

            async def flood() -> None:
                for _ in range(2000):  # ~20 MB if the server kept it all
                    await send_quietly(client, frame)
                    if client.closed:
                        return

            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood)
                goaway = await client.until_goaway()
                nursery.cancel_scope.cancel()
            await client.aclose()
        await assert_still_serves(daemon.port)
    assert goaway.error_code in (ErrorCodes.PROTOCOL_ERROR, ErrorCodes.ENHANCE_YOUR_CALM)


async def test_hpack_bomb_is_refused() -> None:
    """A small header block that decodes to far more than max_header_size."""
    calls: list[str] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        calls.append(request.path)
        return text_response(request)

    async with running(cb, max_header_size=8192) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)
            await client.until(lambda: client.conn.remote_settings.max_header_list_size == 8192)
            fields = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x"),
                      (b":path", b"/bomb"), *[(b"x-bomb", b"a" * 4000)] * 500]
            block = client.conn.encoder.encode(fields)
            assert len(block) < 8192  # tiny on the wire: ~2 MB decoded
            await send_quietly(client, HeadersFrame(1, data=block,
                                                    flags=["END_HEADERS", "END_STREAM"]).serialize())
            goaway = await client.until_goaway()
            await client.aclose()
        await assert_still_serves(daemon.port)
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert calls == ["/fine"]


async def test_settings_flood_gets_enhance_your_calm() -> None:
    async with running(text_response) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)
            for i in range(300):
                client.conn.update_settings({0x4: 65535 + i})
                await send_quietly(client)
                if client.closed:
                    break
            goaway = await client.until_goaway()
            await client.aclose()
        await assert_still_serves(daemon.port)
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM


async def test_ping_flood_gets_enhance_your_calm() -> None:
    async with running(text_response) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)
            for i in range(300):
                client.conn.ping(i.to_bytes(8, "big"))
                await send_quietly(client)
                if client.closed:
                    break
            goaway = await client.until_goaway()
            await client.aclose()
        await assert_still_serves(daemon.port)
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM


async def test_streams_beyond_the_limit_are_refused(ended: Ended) -> None:
    parked: list[mhd2.Request] = []
    both_parked = trio.Event()

    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/fine" or request.app_context:
            return text_response(request)
        request.app_context = "parked once"
        parked.append(request)
        if len(parked) == 2:
            both_parked.set()
        return mhd2.action_suspend(request)

    async with running(cb, http2_max_concurrent_streams=2,
                       notify_request_ended=lambda r, c: ended.append((r, c))) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)
            # Sent before the server's SETTINGS are read: the client does not
            # know the limit yet (or ignores it).
            sids = [client.request(f"/{i}") for i in range(3)]
            third = await client.response(sids[2])
            await both_parked.wait()
            for request in parked:
                mhd2.request_resume(request)
            first = await client.response(sids[0])
            await client.aclose()
        await assert_still_serves(daemon.port)
    assert third.reset == ErrorCodes.REFUSED_STREAM
    assert first.reset is None and sorted(r.path for r in parked) == ["/0", "/1"]
    assert sorted(r.path for r, _ in ended) == ["/0", "/1", "/fine"]


async def test_even_stream_id_is_a_protocol_error() -> None:
    async with running(text_response) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)
            block = request_block(client)
            await send_quietly(client, HeadersFrame(2, data=block,
                                                    flags=["END_HEADERS", "END_STREAM"]).serialize())
            goaway = await client.until_goaway()
            await client.aclose()
        await assert_still_serves(daemon.port)
    assert goaway.error_code == ErrorCodes.PROTOCOL_ERROR


async def test_stream_id_reuse_is_a_connection_error() -> None:
    async with running(text_response) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)
            await client.response(client.request("/a"))   # stream 1
            await client.response(client.request("/b"))   # stream 3
            block = request_block(client, "/again")
            await send_quietly(client, HeadersFrame(1, data=block,
                                                    flags=["END_HEADERS", "END_STREAM"]).serialize())
            goaway = await client.until_goaway()
            await client.aclose()
        await assert_still_serves(daemon.port)
    assert goaway.error_code in (ErrorCodes.PROTOCOL_ERROR, ErrorCodes.STREAM_CLOSED)


async def test_data_on_a_closed_stream() -> None:
    async with running(text_response) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)
            await client.response(client.request("/a"))
            await send_quietly(client, DataFrame(1, data=b"late").serialize())

            def resets() -> list[int]:
                return [int(f.error_code) for f in client.frames
                        if isinstance(f, RstStreamFrame) and f.stream_id == 1]

            await client.until(lambda: client.goaway is not None or resets())
            after = await client.response(client.request("/after"))
            await client.aclose()
        await assert_still_serves(daemon.port)
    # RFC 9113 §5.1: DATA in the "closed" state is a STREAM_CLOSED error (here a
    # stream error: the connection goes on).
    assert resets() == [ErrorCodes.STREAM_CLOSED] and client.goaway is None
    assert after.status == 200


async def test_frame_larger_than_max_frame_size() -> None:
    async with running(text_response) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)
            sid = client.request("/", "POST", end=False)
            await client.flush()
            await send_quietly(client, DataFrame(sid, data=b"x" * 20000).serialize())
            goaway = await client.until_goaway()
            await client.aclose()
        await assert_still_serves(daemon.port)
    # RFC 9113 §4.2: "An endpoint MUST send an error code of FRAME_SIZE_ERROR if a
    # frame exceeds the size defined in SETTINGS_MAX_FRAME_SIZE".
    assert goaway.error_code == ErrorCodes.FRAME_SIZE_ERROR


async def test_zero_window_that_never_opens_is_cut_at_the_timeout(ended: Ended) -> None:
    async def cb(request: mhd2.Request) -> mhd2.Action:
        return text_response(request, b"z" * 100_000)

    async with running(cb, timeout=0.5,
                       notify_request_ended=lambda r, c: ended.append((r, c))) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port, window=0)
            sid = client.request("/big")
            start = trio.current_time()
            reply = await client.response(sid)
            cut_after = trio.current_time() - start
            goaway = await client.until_goaway()
            await client.aclose()
        await assert_still_serves(daemon.port)
    assert reply.status == 200 and reply.body == b"" and reply.reset == ErrorCodes.CANCEL
    assert 0.4 < cut_after < 3
    assert [c for _, c in ended][:1] == [RequestEndedCode.TIMEOUT_REACHED]
    assert goaway.error_code == ErrorCodes.NO_ERROR


async def test_malformed_stream_does_not_disturb_its_neighbours() -> None:
    """A stream error (RST_STREAM) leaves the other streams of the connection running."""
    release = trio.Event()

    async def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/slow":
            await release.wait()
        return text_response(request, request.path.encode())

    async with running(cb) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)
            slow = client.request("/slow")
            bad = client.request("/bad", headers=[("connection", "close")])
            bad_reply = await client.response(bad)
            release.set()
            slow_reply = await client.response(slow)
            await client.aclose()
    assert bad_reply.reset == ErrorCodes.PROTOCOL_ERROR
    assert (slow_reply.status, slow_reply.body) == (200, b"/slow")


async def test_malformed_trailers_reset_the_stream(ended: Ended) -> None:
    """A small unread body is read before the answer, so its trailers are checked:
    a pseudo-header in them (RFC 9113 §8.1) or a trailer HEADERS without
    END_STREAM is a stream error, and the request never ends as COMPLETED_OK."""
    async with running(text_response,
                       notify_request_ended=lambda r, c: ended.append((r, c))) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)
            sid = client.request("/t", "POST", end=False)
            client.conn.send_data(sid, b"body")
            await client.flush()
            trailer = client.conn.encoder.encode([(b":path", b"/x")])
            await send_quietly(client, HeadersFrame(sid, data=trailer,
                                                    flags=["END_HEADERS", "END_STREAM"]).serialize())
            reply = await client.response(sid)
            good = await client.response(client.request("/after"))
            await client.aclose()
    assert reply.reset == ErrorCodes.PROTOCOL_ERROR and reply.status is None
    assert good.status == 200
    assert sorted((r.path, c) for r, c in ended) == [
        ("/after", RequestEndedCode.COMPLETED_OK), ("/t", RequestEndedCode.HTTP_PROTOCOL_ERROR)]
