"""Dynamic content creators (``Response.from_callback``) over real sockets."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest
import trio
from rawhttp import Counter, Ends, connect, daemon, fetch

import mhd2

WAIT = 10.0
Code = mhd2.RequestEndedCode





Creator = Callable[[mhd2.DCCContext, int, memoryview], Any]


def dcc_cb(size: int | None, creator: Creator, free_cb: Callable[[], Any] | None = None,
           ) -> Callable[[mhd2.Request], mhd2.Action]:
    """A request callback answering with ``from_callback(200, size, creator)``."""

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_from_response(
            request, mhd2.Response.from_callback(200, size, creator, free_cb))

    return cb


def pieces_creator(pieces: list[bytes], calls: list[tuple[int, int]],
                   exts: list[str | None] | None = None,
                   footers: list[tuple[str, str]] | None = None) -> Creator:
    """Yield *pieces* one per call (recording ``(pos, len(buf))``), then finish."""

    def creator(ctx: mhd2.DCCContext, pos: int, buf: memoryview) -> mhd2.DCCAction:
        calls.append((pos, len(buf)))
        offsets = [sum(len(p) for p in pieces[:i]) for i in range(len(pieces) + 1)]
        index = offsets.index(pos)
        if index >= len(pieces):
            return mhd2.dcc_action_finish(ctx, footers)
        data = pieces[index]
        buf[:len(data)] = data
        ext = exts[index] if exts else None
        return mhd2.dcc_action_continue(ctx, len(data), ext)

    return creator


# -- continue ---------------------------------------------------------------------------


async def test_known_size_content_length_and_no_call_after_size() -> None:
    calls: list[tuple[int, int]] = []

    def creator(ctx: mhd2.DCCContext, pos: int, buf: memoryview) -> mhd2.DCCAction:
        calls.append((pos, len(buf)))
        n = min(4, len(buf))
        buf[:n] = bytes(range(pos, pos + n))
        return mhd2.dcc_action_continue(ctx, n)

    ends = Ends()
    async with daemon(dcc_cb(10, creator), notify_request_ended=ends) as port:
        async with connect(port) as client:
            msg = await client.request()
            assert msg.head.get("content-length") == "10"
            assert msg.head.get("transfer-encoding") is None
            assert msg.body == bytes(range(10))
            again = await client.request()  # kept alive
            assert again.body == bytes(range(10))
        await ends.wait(2)
    # buf is at most the remaining size; never called once 10 bytes are out
    assert calls == [(0, 10), (4, 6), (8, 2)] * 2
    assert ends.codes == [Code.COMPLETED_OK] * 2


async def test_known_size_larger_than_the_buffer() -> None:
    size = 300_000
    data = bytes(range(256)) * (size // 256 + 1)
    positions: list[int] = []

    def creator(ctx: mhd2.DCCContext, pos: int, buf: memoryview) -> mhd2.DCCAction:
        positions.append(pos)
        assert 0 < len(buf) <= size - pos
        n = min(len(buf), 50_000)
        buf[:n] = data[pos:pos + n]
        return mhd2.dcc_action_continue(ctx, n)

    async with daemon(dcc_cb(size, creator)) as port:
        msg = await fetch(port)
    assert msg.head.get("content-length") == str(size)
    assert msg.body == data[:size]
    assert positions[0] == 0 and positions == sorted(set(positions))


async def test_unknown_size_chunked_and_pos() -> None:
    calls: list[tuple[int, int]] = []
    pieces = [b"hello ", b"dynamic ", b"world"]
    async with daemon(dcc_cb(None, pieces_creator(pieces, calls))) as port:
        async with connect(port) as client:
            msg = await client.request()
            assert msg.head.get("transfer-encoding") == "chunked"
            assert msg.head.get("content-length") is None
            assert msg.body == b"hello dynamic world"
            assert msg.size_lines == [b"6\r\n", b"8\r\n", b"5\r\n", b"0\r\n"]
            assert (await client.request()).body == b"hello dynamic world"
    assert [pos for pos, _ in calls[:4]] == [0, 6, 14, 19]


async def test_unknown_size_http10_close_delimited() -> None:
    calls: list[tuple[int, int]] = []
    creator = pieces_creator([b"abc", b"def"], calls, footers=[("X-Checksum", "abc")])
    async with daemon(dcc_cb(None, creator)) as port:
        async with connect(port) as client:
            msg = await client.request(version="1.0", headers=(("Connection", "keep-alive"),))
            assert msg.head.get("transfer-encoding") is None
            assert msg.head.get("connection") == "close"
            assert msg.body == b"abcdef"  # read to EOF: no trailers, no chunk framing


async def test_chunk_extension_on_the_wire() -> None:
    calls: list[tuple[int, int]] = []
    creator = pieces_creator([b"hello", b"x"], calls, exts=["foo=bar", None])
    async with daemon(dcc_cb(None, creator)) as port:
        msg = await fetch(port)
    assert msg.size_lines[:2] == [b"5;foo=bar\r\n", b"1\r\n"]
    assert msg.raw_body == b"5;foo=bar\r\nhello\r\n1\r\nx\r\n0\r\n\r\n"
    assert msg.body == b"hellox"


async def test_continue_zc_buf_first_then_iov() -> None:
    freed: list[int] = []
    positions: list[int] = []

    def creator(ctx: mhd2.DCCContext, pos: int, buf: memoryview) -> mhd2.DCCAction:
        positions.append(pos)
        if pos == 0:
            buf[:2] = b"AB"
            return mhd2.dcc_action_continue_zc(
                ctx, 2, [b"CD", memoryview(bytearray(b"EFG")), bytearray(b"H")],
                free_cb=lambda: freed.append(pos))
        if pos == 8:
            return mhd2.dcc_action_continue_zc(ctx, 0, [b"IJ"], chunk_ext="zc=1")
        return mhd2.dcc_action_finish(ctx)

    async with daemon(dcc_cb(None, creator)) as port:
        msg = await fetch(port)
    assert msg.body == b"ABCDEFGHIJ"
    assert msg.size_lines == [b"8\r\n", b"2;zc=1\r\n", b"0\r\n"]
    assert positions == [0, 8, 10]
    assert freed == [0]


async def test_continue_zc_known_size() -> None:
    freed = Counter()

    def creator(ctx: mhd2.DCCContext, pos: int, buf: memoryview) -> mhd2.DCCAction:
        buf[:3] = b"123"
        return mhd2.dcc_action_continue_zc(ctx, 3, [b"4567"], free_cb=freed)

    async with daemon(dcc_cb(7, creator)) as port:
        msg = await fetch(port)
        await freed.wait()
    assert msg.head.get("content-length") == "7"
    assert msg.body == b"1234567"
    assert freed.calls == 1


async def test_finish_with_footers_become_trailers() -> None:
    calls: list[tuple[int, int]] = []
    creator = pieces_creator([b"payload"], calls, footers=[("X-Checksum", "abc")])
    async with daemon(dcc_cb(None, creator)) as port:
        async with connect(port) as client:
            msg = await client.request()
            assert msg.body == b"payload"
            assert msg.trailers == [("X-Checksum", "abc")]
            assert msg.raw_body.endswith(b"\r\n0\r\nX-Checksum: abc\r\n\r\n")
            assert (await client.request()).trailers == [("X-Checksum", "abc")]


def test_bad_footer_refused() -> None:
    ctx = mhd2.DCCContext.__new__(mhd2.DCCContext)
    with pytest.raises(mhd2.UsageError):
        mhd2.dcc_action_finish(ctx, [("X-Bad", "a\r\nInjected: 1")])


# -- endings ---------------------------------------------------------------------------


async def test_finish_short_of_declared_size_closes() -> None:
    calls: list[tuple[int, int]] = []
    ends = Ends()
    async with daemon(dcc_cb(100, pieces_creator([b"only ten!!"], calls)),
                      notify_request_ended=ends) as port:
        async with connect(port) as client:
            await client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            head = await client.head()
            assert head.get("content-length") == "100"
            rest = await client.until_eof()
        codes = await ends.wait()
    assert rest == b"only ten!!"
    assert codes[0] is not Code.COMPLETED_OK


async def test_yielding_more_than_declared_closes_with_app_error(
        caplog: pytest.LogCaptureFixture) -> None:
    ends = Ends()

    def creator(ctx: mhd2.DCCContext, pos: int, buf: memoryview) -> mhd2.DCCAction:
        buf[:4] = b"data"
        if pos == 0:
            return mhd2.dcc_action_continue(ctx, 4)
        return mhd2.dcc_action_continue_zc(ctx, 4, [b"too much"])

    async with daemon(dcc_cb(10, creator), notify_request_ended=ends) as port:
        async with connect(port) as client:
            await client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            head = await client.head()
            assert head.get("content-length") == "10"
            rest = await client.until_eof()
        codes = await ends.wait()
    assert rest == b"data"
    assert codes == [Code.BY_APP_ERROR]
    logged = [r for r in caplog.records if r.name == "mhd2" and r.exc_info]
    assert logged and isinstance(logged[0].exc_info[1], mhd2.UsageError)  # type: ignore[index]


@pytest.mark.parametrize("how", ["abort", "none"])
async def test_abort_and_none_close_the_connection(how: str) -> None:
    ends = Ends()

    def creator(ctx: mhd2.DCCContext, pos: int, buf: memoryview) -> mhd2.DCCAction | None:
        if pos == 0:
            buf[:5] = b"start"
            return mhd2.dcc_action_continue(ctx, 5)
        return mhd2.dcc_action_abort(ctx) if how == "abort" else None

    async with daemon(dcc_cb(None, creator), notify_request_ended=ends) as port:
        async with connect(port) as client:
            await client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            head = await client.head()
            assert head.get("transfer-encoding") == "chunked"
            rest = await client.until_eof()
        codes = await ends.wait()
    assert rest == b"5\r\nstart\r\n"  # no last chunk: the body is visibly incomplete
    assert codes[0] is not Code.COMPLETED_OK


async def test_exception_after_head_closes_logs_and_app_error(
        caplog: pytest.LogCaptureFixture) -> None:
    ends = Ends()

    def creator(ctx: mhd2.DCCContext, pos: int, buf: memoryview) -> mhd2.DCCAction:
        if pos == 0:
            buf[:3] = b"abc"
            return mhd2.dcc_action_continue(ctx, 3)
        raise RuntimeError("creator exploded")

    with caplog.at_level(logging.ERROR, logger="mhd2"):
        async with daemon(dcc_cb(None, creator), notify_request_ended=ends) as port:
            async with connect(port) as client:
                await client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                head = await client.head()
                assert head.status == 200
                rest = await client.until_eof()
            codes = await ends.wait()
    assert rest == b"3\r\nabc\r\n"
    assert codes == [Code.BY_APP_ERROR]
    logged = [r for r in caplog.records if r.name == "mhd2" and r.exc_info]
    assert logged and "creator exploded" in str(logged[0].exc_info[1])  # type: ignore[index]


async def test_exception_before_head_sent_gives_500() -> None:
    ends = Ends()

    def creator(ctx: mhd2.DCCContext, pos: int, buf: memoryview) -> mhd2.DCCAction:
        raise RuntimeError("creator exploded at once")

    async with daemon(dcc_cb(None, creator), notify_request_ended=ends) as port:
        async with connect(port) as client:
            await client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            raw = await client.until_eof()
        codes = await ends.wait()
    assert codes == [Code.BY_APP_ERROR]
    assert raw.startswith(b"HTTP/1.1 500 ")


async def test_async_creator() -> None:
    async def creator(ctx: mhd2.DCCContext, pos: int, buf: memoryview) -> mhd2.DCCAction:
        await trio.lowlevel.checkpoint()
        if pos >= 6:
            return mhd2.dcc_action_finish(ctx, [("X-Done", "yes")])
        buf[:3] = b"abc" if pos == 0 else b"def"
        return mhd2.dcc_action_continue(ctx, 3)

    async with daemon(dcc_cb(None, creator)) as port:
        msg = await fetch(port)
    assert msg.body == b"abcdef"
    assert msg.trailers == [("X-Done", "yes")]


async def test_second_dcc_action_in_one_call_is_usage_error() -> None:
    errors: list[BaseException] = []

    def creator(ctx: mhd2.DCCContext, pos: int, buf: memoryview) -> mhd2.DCCAction:
        if pos:
            return mhd2.dcc_action_finish(ctx)
        buf[:2] = b"ok"
        action = mhd2.dcc_action_continue(ctx, 2)
        try:
            mhd2.dcc_action_finish(ctx)
        except mhd2.UsageError as exc:
            errors.append(exc)
        return action

    async with daemon(dcc_cb(None, creator)) as port:
        msg = await fetch(port)
    assert msg.body == b"ok"
    assert len(errors) == 1
    assert getattr(errors[0], "code", None) == mhd2.StatusCode.ACTION_ALREADY_CREATED


@pytest.mark.parametrize("ending", ["finish", "abort", "error"])
async def test_from_callback_free_cb_once(ending: str) -> None:
    freed = Counter()
    ends = Ends()

    def creator(ctx: mhd2.DCCContext, pos: int, buf: memoryview) -> mhd2.DCCAction:
        if pos == 0:
            buf[:1] = b"x"
            return mhd2.dcc_action_continue(ctx, 1)
        if ending == "finish":
            return mhd2.dcc_action_finish(ctx)
        if ending == "abort":
            return mhd2.dcc_action_abort(ctx)
        raise ValueError("boom")

    async with daemon(dcc_cb(None, creator, freed), notify_request_ended=ends) as port:
        async with connect(port) as client:
            await client.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            await client.until_eof()
        await ends.wait()
        await freed.wait()
    assert freed.calls == 1


async def test_head_request_does_not_call_creator() -> None:
    calls: list[tuple[int, int]] = []
    freed = Counter()
    async with daemon(dcc_cb(None, pieces_creator([b"abc"], calls), freed)) as port:
        async with connect(port) as client:
            head = await client.request(method="HEAD")
            assert head.head.get("transfer-encoding") == "chunked"
            assert (await client.request()).body == b"abc"  # kept alive, no stray bytes
        await freed.wait(2)
    assert calls == [(0, calls[0][1]), (3, calls[1][1])]


# -- suspend / resume -------------------------------------------------------------------


@pytest.mark.parametrize("from_thread", [False, True], ids=["task", "thread"])
async def test_suspend_and_resume_at_same_pos(from_thread: bool) -> None:
    positions: list[int] = []
    suspended = trio.Event()
    requests: list[mhd2.Request] = []
    threads: list[threading.Thread] = []

    def creator(ctx: mhd2.DCCContext, pos: int, buf: memoryview) -> mhd2.DCCAction:
        positions.append(pos)
        if pos == 0:
            buf[:3] = b"abc"
            return mhd2.dcc_action_continue(ctx, 3)
        if pos == 3 and not suspended.is_set():
            requests.append(ctx.request)
            suspended.set()
            return mhd2.dcc_action_suspend(ctx)
        if pos == 3:
            buf[:3] = b"def"
            return mhd2.dcc_action_continue(ctx, 3)
        return mhd2.dcc_action_finish(ctx)

    def resume_in_thread(request: mhd2.Request) -> None:
        threads.append(threading.current_thread())
        mhd2.request_resume(request)

    async with daemon(dcc_cb(None, creator)) as port:
        async with connect(port) as client:
            await client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            head = await client.head()
            assert head.get("transfer-encoding") == "chunked"
            with trio.fail_after(WAIT):
                await suspended.wait()
            assert await client.exact(8) == b"3\r\nabc\r\n"
            assert positions == [0, 3]
            if from_thread:
                await trio.to_thread.run_sync(resume_in_thread, requests[0])
            else:
                mhd2.request_resume(requests[0])
            body, _, _, _ = await client.chunked()
    assert body == b"def"
    assert positions == [0, 3, 3, 6]
    if from_thread:
        assert threads and threads[0] is not threading.main_thread()


async def test_termination_callback_gets_abort_code() -> None:
    term: list[mhd2.RequestEndedCode] = []
    ends = Ends()

    def creator(ctx: mhd2.DCCContext, pos: int, buf: memoryview) -> mhd2.DCCAction:
        return mhd2.dcc_action_abort(ctx)

    def cb(request: mhd2.Request) -> mhd2.Action:
        resp = mhd2.Response.from_callback(200, None, creator)
        resp.set_options(termination_callback=lambda r, c: term.append(c))
        return mhd2.action_from_response(request, resp)

    async with daemon(cb, notify_request_ended=ends) as port:
        async with connect(port) as client:
            await client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            await client.until_eof()
        codes = await ends.wait()
    assert codes == [Code.BY_APP_ABORT]
    assert term == [Code.BY_APP_ABORT]


# -- call_creator and dcc_step: the one validation both senders (HTTP/1 and HTTP/2) use ------------------


def _ctx() -> mhd2.DCCContext:
    from mhd2.request import Request

    class _Exchange:
        def mark_suspended(self) -> None:
            pass

    request = Request.__new__(Request)
    request._x = _Exchange()  # type: ignore[assignment]
    return mhd2.DCCContext(request)


def test_dcc_step_joins_buf_then_iov_and_checks_sizes() -> None:
    from mhd2.dcc import call_creator, dcc_step

    buf = memoryview(bytearray(b"abcdefgh"))
    ctx = _ctx()
    step = dcc_step(mhd2.dcc_action_continue_zc(ctx, 2, [b"XY"]), buf, 0, 10)
    assert (step.kind, bytes(step.data)) == ("data", b"abXY")
    ctx = _ctx()
    with pytest.raises(mhd2.UsageError, match="exceeds the buffer"):
        dcc_step(mhd2.dcc_action_continue(ctx, 9), buf, 0, None)
    ctx = _ctx()
    with pytest.raises(mhd2.UsageError, match="more than the declared size 10"):
        dcc_step(mhd2.dcc_action_continue(ctx, 4), buf, 8, 10)
    ctx = _ctx()
    with pytest.raises(mhd2.UsageError, match="its own ctx") as info:
        call_creator(lambda ctx, pos, buf: mhd2.dcc_action_continue(_ctx(), 1), ctx, 0, buf)
    assert info.value.code is mhd2.StatusCode.DCC_ACTION_INVALID


def test_dcc_step_ends_suspends_and_aborts() -> None:
    from mhd2.dcc import dcc_step

    buf = memoryview(bytearray(8))
    ctx = _ctx()
    step = dcc_step(mhd2.dcc_action_finish(ctx, [("X-Sum", "1")]), buf, 10, 10)
    assert step.kind == "finish" and step.action.footers == [("X-Sum", "1")]
    ctx = _ctx()
    short = dcc_step(mhd2.dcc_action_finish(ctx), buf, 4, 10)
    assert (short.kind, short.why) == ("abort", "the content creator finished at 4 of 10 bytes")
    ctx = _ctx()
    assert dcc_step(mhd2.dcc_action_suspend(ctx), buf, 0, None).kind == "suspend"
    ctx = _ctx()
    assert dcc_step(None, buf, 0, None).kind == "abort"
    assert dcc_step(mhd2.dcc_action_abort(ctx), buf, 0, None).why == "the content creator aborted"
