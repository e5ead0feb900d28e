"""The action model: one action per call, sync/async callbacks, errors, abort, suspend."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
import trio
import trio.testing
from conftest import (
    exchange,
    open_stream,
    read_response,
    running,
    settled,
    status_of,
    text_response,
)

import mhd2

GET = b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"


async def test_async_callback() -> None:
    async def cb(request: mhd2.Request) -> mhd2.Action:
        await trio.sleep(0)
        return text_response(request, b"async")

    async with running(cb) as daemon:
        assert (await exchange(daemon, GET)).endswith(b"async")


async def test_second_action_raises_usage_error_and_request_gets_500(
    caplog: pytest.LogCaptureFixture, ended: list[Any]
) -> None:
    errors: list[mhd2.UsageError] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        first = text_response(request)
        try:
            mhd2.action_abort_request(request)
        except mhd2.UsageError as exc:
            errors.append(exc)
        return first

    async with running(cb) as daemon:
        assert status_of(await exchange(daemon, GET)) == 200
    assert errors and errors[0].code == mhd2.StatusCode.ACTION_ALREADY_CREATED
    assert "return that action" in str(errors[0])

    def twice(request: mhd2.Request) -> mhd2.Action:
        text_response(request)
        return text_response(request)  # raises UsageError

    with caplog.at_level(logging.ERROR, logger="mhd2"):
        async with running(twice, notify_request_ended=lambda r, c: ended.append(c)) as daemon:
            assert status_of(await exchange(daemon, GET)) == 500
            assert status_of(await exchange(daemon, GET)) == 500
    assert ended == [mhd2.RequestEndedCode.BY_APP_ERROR] * 2
    assert any("UsageError" in (r.exc_text or "") for r in caplog.records)


async def test_action_made_after_the_callback_returned_raises_usage_error() -> None:
    """The slot lets go of the returned action (no reference cycle), but an action
    made later, e.g. from a task the callback started, still raises UsageError."""
    kept: list[mhd2.Request] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        kept.append(request)
        return text_response(request)

    async with running(cb) as daemon:
        assert status_of(await exchange(daemon, GET)) == 200
    with pytest.raises(mhd2.UsageError, match="after the request callback had returned") as info:
        mhd2.action_abort_request(kept[0])
    assert info.value.code == mhd2.StatusCode.ACTION_ALREADY_CREATED


async def test_exception_gives_500_logged_and_daemon_keeps_serving(
    caplog: pytest.LogCaptureFixture, ended: list[Any]
) -> None:
    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/boom":
            raise ValueError("kaboom")
        return text_response(request)

    with caplog.at_level(logging.ERROR, logger="mhd2"):
        async with running(cb, notify_request_ended=lambda r, c: ended.append(c)) as daemon:
            reply = await exchange(daemon, b"GET /boom HTTP/1.1\r\nHost: h\r\n\r\n")
            assert status_of(reply) == 500 and b"Connection: close" in reply
            assert status_of(await exchange(daemon, GET)) == 200
    assert ended == [mhd2.RequestEndedCode.BY_APP_ERROR, mhd2.RequestEndedCode.COMPLETED_OK]
    assert any(r.name == "mhd2" and "kaboom" in (r.exc_text or "") for r in caplog.records)


async def test_none_and_abort_close_without_reply(ended: list[Any]) -> None:
    def cb(request: mhd2.Request) -> mhd2.Action | None:
        if request.path == "/none":
            return None
        if request.path == "/null-response":
            return mhd2.action_from_response(request, None)
        return mhd2.action_abort_request(request)

    async with running(cb, notify_request_ended=lambda r, c: ended.append(c)) as daemon:
        for path in (b"/none", b"/abort", b"/null-response"):
            reply = await exchange(daemon, b"GET %s HTTP/1.1\r\nHost: h\r\n\r\n" % path)
            assert reply == b""
    assert ended == [mhd2.RequestEndedCode.BY_APP_ABORT] * 3


async def test_returning_something_else_is_an_app_error() -> None:
    other: list[mhd2.Action] = []

    def cb(request: mhd2.Request) -> Any:
        if request.path == "/first":
            other.append(text_response(request))
            return other[0]
        if request.path == "/foreign":
            return other[0]  # an action made for another request
        return "not an action"

    async with running(cb) as daemon:
        assert status_of(await exchange(daemon, b"GET /first HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")) == 200
        assert status_of(await exchange(daemon, b"GET /foreign HTTP/1.1\r\nHost: h\r\n\r\n")) == 500
        assert status_of(await exchange(daemon, GET)) == 500


async def test_used_response_cannot_be_reused_without_option() -> None:
    shared = mhd2.Response.from_buffer_static(200, b"x")

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_from_response(request, shared)

    async with running(cb) as daemon:
        assert status_of(await exchange(daemon, GET)) == 200
        assert status_of(await exchange(daemon, GET)) == 500
    with pytest.raises(mhd2.UsageError, match=r"frozen|destroyed"):
        shared.add_header("X", "y")


async def test_suspend_and_resume_from_task_and_thread(
        ended: list[Any], autojump_clock: trio.testing.MockClock) -> None:
    parked: list[mhd2.Request] = []
    calls: list[Any] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        calls.append(request.app_context)
        if request.app_context is None:
            request.app_context = "parked"
            parked.append(request)
            return mhd2.action_suspend(request)
        return text_response(request, b"resumed")

    async with running(cb, notify_request_ended=lambda r, c: ended.append(c), timeout=0.3) as d:
        stream = await open_stream(d)
        await stream.send_all(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n")
        await settled()
        assert len(parked) == 1
        await trio.sleep(0.5)  # virtual time, past the timeout: a suspended request does not time out
        mhd2.request_resume(parked[0])
        assert (await read_response(stream, bytearray())).endswith(b"resumed")
        # A thread is not a trio task: while it runs, the clock must not jump.
        autojump_clock.autojump_threshold = float("inf")
        autojump_clock.rate = 1.0
        # from another thread
        await stream.send_all(b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n")
        await settled()
        assert len(parked) == 2
        thread = threading.Thread(target=mhd2.request_resume, args=(parked[1],))
        thread.start()
        assert (await read_response(stream, bytearray())).endswith(b"resumed")
        await trio.to_thread.run_sync(thread.join)
        mhd2.request_resume(parked[1])  # not suspended any more: nothing happens
        await stream.aclose()
    assert calls == [None, "parked", None, "parked"]
    assert ended[:2] == [mhd2.RequestEndedCode.COMPLETED_OK] * 2


async def test_disallow_suspend_resume() -> None:
    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_suspend(request)

    async with running(cb, disallow_suspend_resume=True) as daemon:
        assert status_of(await exchange(daemon, GET)) == 500
