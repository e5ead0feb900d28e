"""mhd2.body's producers over plain values: no sockets, no daemon.

Each body source becomes a producer whose ``pull`` says what to send next
(bytes, SUSPENDED, or Ended with footers); the HTTP/1 and HTTP/2 writers
consume them.  Here the producers are pulled by hand, as a writer would.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

import mhd2
from mhd2 import dcc
from mhd2.body import (
    END,
    READ_SIZE,
    SUSPENDED,
    BodyAborted,
    BodyProducer,
    BufferProducer,
    CallbackProducer,
    Ended,
    FdProducer,
    IovecProducer,
    Piece,
    PipeProducer,
    producer_for,
)
from mhd2.body_source import BufferBody, CallbackBody, FdBody, IovecBody, PipeBody
from mhd2.enums import RequestEndedCode
from mhd2.request import Request


class _Exchange:
    """What ``dcc_action_suspend`` touches of a request's exchange."""

    suspended = False

    def mark_suspended(self) -> None:
        self.suspended = True


class _Request:
    """A stand-in request: a content creator's ``ctx.request`` (its exchange only)."""

    def __init__(self) -> None:
        self._x = _Exchange()


def _request() -> Request:
    return cast(Request, _Request())


async def _drain(producer: BodyProducer) -> tuple[list[bytes], Piece | None]:
    """Pull until done or an end: the data pieces (copied) and the end, if one was pulled."""
    pieces: list[bytes] = []
    while not producer.done:
        piece = await producer.pull()
        if isinstance(piece, Ended) or piece is SUSPENDED:
            return pieces, piece
        pieces.append(bytes(cast(bytes, piece)))
    return pieces, None


# -- in memory ------------------------------------------------------------------------------


async def test_buffer_is_one_piece_then_done() -> None:
    producer = BufferProducer(BufferBody(memoryview(b"hello")))
    assert producer.size == 5 and not producer.done
    assert bytes(cast(bytes, await producer.pull())) == b"hello"
    assert producer.done and producer.pos == 5
    assert await producer.pull() is END


async def test_empty_buffer_is_done_from_the_start() -> None:
    producer = BufferProducer(BufferBody(b""))
    assert producer.done and producer.size == 0


async def test_small_iovec_is_joined_large_one_piece_per_buffer() -> None:
    parts = [memoryview(b"ab"), memoryview(b""), memoryview(b"cd")]
    small = IovecProducer(IovecBody(parts, 4), join_up_to=4)
    assert await _drain(small) == ([b"abcd"], None)
    large = IovecProducer(IovecBody(parts, 4), join_up_to=3)
    assert await _drain(large) == ([b"ab", b"cd"], None)  # the empty buffer is skipped
    assert large.pos == 4


# -- files and pipes ------------------------------------------------------------------------


async def test_fd_reads_its_range_in_read_size_pieces(tmp_path: Path) -> None:
    path = tmp_path / "f"
    data = os.urandom(READ_SIZE + 100)
    path.write_bytes(b"xx" + data)
    fd = os.open(path, os.O_RDONLY)
    try:
        producer = FdProducer(FdBody(fd, 2, len(data)))
        pieces, end = await _drain(producer)
    finally:
        os.close(fd)
    assert end is None
    assert [len(p) for p in pieces] == [READ_SIZE, 100]
    assert b"".join(pieces) == data


async def test_a_short_file_aborts_with_file_error(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"12345")
    fd = os.open(path, os.O_RDONLY)
    try:
        producer = FdProducer(FdBody(fd, 0, 10))
        assert await producer.pull() == b"12345"
        with pytest.raises(BodyAborted) as info:
            await producer.pull()
    finally:
        os.close(fd)
    assert info.value.code is RequestEndedCode.FILE_ERROR


async def test_fd_advance_is_the_sendfile_bookkeeping() -> None:
    producer = FdProducer(FdBody(-1, 10, 8))
    producer.advance(5)
    assert (producer.offset, producer.left, producer.done) == (15, 3, False)
    producer.advance(3)
    assert producer.done
    with pytest.raises(BodyAborted):
        FdProducer(FdBody(-1, 0, 1)).advance(0)


async def test_pipe_until_end_of_file_and_the_applications_fd_stays_open() -> None:
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"data")
        os.close(write_end)
        producer = PipeProducer(PipeBody(read_end))
        assert producer.size is None
        try:
            pieces, end = await _drain(producer)
        finally:
            producer.close()
        assert pieces == [b"data"] and end is END and producer.done
        os.fstat(read_end)  # closing the producer closed its duplicate only
    finally:
        os.close(read_end)


# -- dynamic content creators ---------------------------------------------------------------


def _creator(script: Sequence[Callable[[dcc.DCCContext, memoryview], dcc.DCCAction | None]],
             calls: list[int]) -> Callable[[dcc.DCCContext, int, memoryview], Any]:
    def dyn_cont(ctx: dcc.DCCContext, pos: int, buf: memoryview) -> dcc.DCCAction | None:
        calls.append(pos)
        return script[len(calls) - 1](ctx, buf)
    return dyn_cont


def _write(data: bytes, ext: str | None = None) -> Callable[[dcc.DCCContext, memoryview], dcc.DCCAction]:
    def step(ctx: dcc.DCCContext, buf: memoryview) -> dcc.DCCAction:
        buf[:len(data)] = data
        return mhd2.dcc_action_continue(ctx, len(data), chunk_ext=ext)
    return step


async def test_creator_pieces_then_footers() -> None:
    calls: list[int] = []
    script = [_write(b"ab", "x=1"), _write(b"cde"),
              lambda ctx, buf: mhd2.dcc_action_finish(ctx, [("Digest", "d")])]
    producer = CallbackProducer(CallbackBody(_creator(script, calls), None), _request())
    first = await producer.pull()
    assert bytes(cast(bytes, first)) == b"ab" and producer.ext == "x=1"
    assert bytes(cast(bytes, await producer.pull())) == b"cde" and producer.ext is None
    end = await producer.pull()
    assert isinstance(end, Ended) and list(end.footers) == [("Digest", "d")]
    assert calls == [0, 2, 5] and producer.done
    producer.close()


async def test_a_known_size_ends_without_another_call() -> None:
    calls: list[int] = []
    producer = CallbackProducer(CallbackBody(_creator([_write(b"abc")], calls), 3), _request())
    assert await _drain(producer) == ([b"abc"], None)
    assert calls == [0]
    producer.close()


async def test_finishing_short_of_the_size_aborts() -> None:
    calls: list[int] = []
    producer = CallbackProducer(
        CallbackBody(_creator([lambda ctx, buf: mhd2.dcc_action_finish(ctx)], calls), 3),
        _request())
    with pytest.raises(BodyAborted) as info:
        await producer.pull()
    assert info.value.code is RequestEndedCode.BY_APP_ABORT
    producer.close()


async def test_none_and_abort_are_app_aborts() -> None:
    for step in (lambda ctx, buf: None, lambda ctx, buf: mhd2.dcc_action_abort(ctx)):
        producer = CallbackProducer(CallbackBody(_creator([step], []), None), _request())
        with pytest.raises(BodyAborted) as info:
            await producer.pull()
        assert info.value.code is RequestEndedCode.BY_APP_ABORT
        producer.close()


async def test_suspend_holds_no_buffer() -> None:
    request = _request()
    calls: list[int] = []
    script = [lambda ctx, buf: mhd2.dcc_action_suspend(ctx), _write(b"z"),
              lambda ctx, buf: mhd2.dcc_action_finish(ctx)]
    producer = CallbackProducer(CallbackBody(_creator(script, calls), None), request)
    assert await producer.pull() is SUSPENDED
    assert cast(Any, request)._x.suspended
    assert producer._buf is None  # a parked request holds no buffer
    assert bytes(cast(bytes, await producer.pull())) == b"z"
    assert producer._buf is not None  # held until the piece was sent (the next pull)
    assert await producer.pull() is END
    assert producer._buf is None


async def test_zero_copy_free_cb_after_the_piece_was_sent() -> None:
    freed: list[str] = []
    shared = b"event"
    script: list[Callable[[dcc.DCCContext, memoryview], dcc.DCCAction | None]] = [
        lambda ctx, buf: mhd2.dcc_action_continue_zc(ctx, 0, [shared],
                                                     free_cb=lambda: freed.append("1")),
        lambda ctx, buf: mhd2.dcc_action_continue_zc(ctx, 0, [shared],
                                                     free_cb=lambda: freed.append("2")),
    ]
    producer = CallbackProducer(CallbackBody(_creator(script, []), None), _request())
    piece = await producer.pull()
    assert bytes(cast(bytes, piece)) == b"event" and producer._buf is None
    assert freed == []  # not sent yet
    await producer.pull()
    assert freed == ["1"]
    producer.close()  # the last piece is let go of at the end, sent or not
    producer.close()
    assert freed == ["1", "2"]


async def test_a_foreign_action_is_a_usage_error() -> None:
    other = dcc.DCCContext(_request())
    wrong = mhd2.dcc_action_finish(other)
    producer = CallbackProducer(CallbackBody(_creator([lambda ctx, buf: wrong], []), None),
                                _request())
    with pytest.raises(mhd2.UsageError):
        await producer.pull()
    producer.close()
    assert producer._buf is None


async def test_a_coroutine_creator_is_awaited() -> None:
    async def dyn_cont(ctx: dcc.DCCContext, pos: int, buf: memoryview) -> dcc.DCCAction:
        if pos:
            return mhd2.dcc_action_finish(ctx)
        buf[:2] = b"ok"
        return mhd2.dcc_action_continue(ctx, 2)
    producer = CallbackProducer(CallbackBody(dyn_cont, None), _request())
    assert await _drain(producer) == ([b"ok"], END)
    producer.close()


def test_producer_for_picks_by_source() -> None:
    request = _request()
    assert type(producer_for(BufferBody(b"x"), request, join_up_to=0)) is BufferProducer
    assert type(producer_for(IovecBody([], 0), request, join_up_to=0)) is IovecProducer
    assert type(producer_for(FdBody(-1, 0, 0), request, join_up_to=0)) is FdProducer
    assert type(producer_for(PipeBody(-1), request, join_up_to=0)) is PipeProducer
    body = CallbackBody(lambda ctx, pos, buf: None, None)
    assert type(producer_for(body, request, join_up_to=0)) is CallbackProducer
