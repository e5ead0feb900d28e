"""Suspend and resume: ``action_suspend``, ``dcc_action_suspend``, ``request_resume``.

Real daemons on 127.0.0.1, raw sockets.  Every wait is bounded; "no timeout
while suspended" is shown by letting more than the timeout pass.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing
from conftest import WAIT, exchange, open_stream, read_response, running, status_of, text_response

import mhd2
from mhd2 import RequestEndedCode

GET = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"
Ended = list[tuple[mhd2.Request, RequestEndedCode]]


def task_count() -> int:
    """All tasks of this trio run (the daemon's connection tasks included)."""

    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(t) for n in task.child_nurseries for t in n.child_tasks)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return walk(root)


async def until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll *predicate* (every 10 ms) until it holds; fail after *timeout*."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


class Parker:
    """A request callback that suspends each request once, then answers its app_context."""

    def __init__(self) -> None:
        self.parked: list[mhd2.Request] = []
        self.calls: list[tuple[str, Any]] = []

    def __call__(self, request: mhd2.Request) -> mhd2.Action:
        self.calls.append((request.path, request.app_context))
        if request.app_context is None:
            request.app_context = f"ctx:{request.path}"
            self.parked.append(request)
            return mhd2.action_suspend(request)
        return text_response(request, f"resumed {request.app_context}".encode())


def recorder(ended: Ended) -> Callable[[mhd2.Request, RequestEndedCode], None]:
    return lambda request, code: ended.append((request, code))


# -- action_suspend ------------------------------------------------------------------


async def test_suspended_request_does_not_time_out_and_is_called_again(
        ended: Ended, autojump_clock: trio.testing.MockClock) -> None:
    app = Parker()
    async with running(app, timeout=0.2, notify_request_ended=recorder(ended)) as daemon:
        async with await open_stream(daemon) as stream:
            await stream.send_all(b"GET /one HTTP/1.1\r\nHost: h\r\n\r\n")
            await until(lambda: len(app.parked) == 1)
            await trio.sleep(0.6)  # virtual time: three timeouts pass, still parked, nothing ended
            assert ended == []
            mhd2.request_resume(app.parked[0])
            response = await read_response(stream, bytearray())
            assert status_of(response) == 200
            assert response.endswith(b"resumed ctx:/one")
            # the connection is kept alive after a resumed request
            await stream.send_all(b"GET /two HTTP/1.1\r\nHost: h\r\n\r\n")
            await until(lambda: len(app.parked) == 2)
            mhd2.request_resume(app.parked[1])
            assert (await read_response(stream, bytearray())).endswith(b"resumed ctx:/two")
    assert app.calls == [("/one", None), ("/one", "ctx:/one"), ("/two", None), ("/two", "ctx:/two")]
    assert [code for _, code in ended] == [RequestEndedCode.COMPLETED_OK] * 2


async def test_async_callback_may_suspend_and_resume_itself_early() -> None:
    """A resume before the daemon starts waiting (even from the callback) is not lost."""
    calls: list[int] = []

    async def cb(request: mhd2.Request) -> mhd2.Action:
        calls.append(1)
        if len(calls) == 1:
            await trio.lowlevel.checkpoint()
            action = mhd2.action_suspend(request)
            mhd2.request_resume(request)  # not parked yet: remembered
            return action
        return text_response(request, b"second call")

    async with running(cb) as daemon:
        response = await exchange(daemon, b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert response.endswith(b"second call")
    assert calls == [1, 1]


async def test_resume_from_many_threads_at_once() -> None:
    app = Parker()
    n = 40
    async with running(app) as daemon:
        streams = []
        for i in range(n):
            stream = await open_stream(daemon)
            await stream.send_all(b"GET /t%d HTTP/1.1\r\nHost: h\r\n\r\n" % i)
            streams.append(stream)
        await until(lambda: len(app.parked) == n)
        threads = [threading.Thread(target=mhd2.request_resume, args=(r,)) for r in app.parked]
        for thread in threads:
            thread.start()
        for i, stream in enumerate(streams):
            assert (await read_response(stream, bytearray())).endswith(b"resumed ctx:/t%d" % i)
            await stream.aclose()
        for thread in threads:
            await trio.to_thread.run_sync(thread.join)


async def test_resume_of_a_request_that_is_not_suspended_does_nothing(ended: Ended) -> None:
    seen: list[mhd2.Request] = []
    calls = 0

    def cb(request: mhd2.Request) -> mhd2.Action:
        nonlocal calls
        calls += 1
        mhd2.request_resume(request)  # running, not suspended: no effect
        seen.append(request)
        return text_response(request, b"plain")

    async with running(cb, notify_request_ended=recorder(ended)) as daemon:
        async with await open_stream(daemon) as stream:
            await stream.send_all(GET)
            assert (await read_response(stream, bytearray())).endswith(b"plain")
            mhd2.request_resume(seen[0])  # ended: no effect
            await trio.to_thread.run_sync(mhd2.request_resume, seen[0])
            await stream.send_all(GET)
            assert (await read_response(stream, bytearray())).endswith(b"plain")
    assert calls == 2
    assert [code for _, code in ended] == [RequestEndedCode.COMPLETED_OK] * 2


# -- limits ---------------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["connection_limit", "per_ip_limit"])
async def test_suspended_requests_count_against_limits(limit: str) -> None:
    app = Parker()
    async with running(app, **{limit: 2}) as daemon:
        first = await open_stream(daemon)
        second = await open_stream(daemon)
        await first.send_all(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n")
        await second.send_all(b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n")
        await until(lambda: len(app.parked) == 2)
        assert daemon.connection_count == 2
        # A third connection is over the limit while both are parked.
        third = await exchange(daemon, b"GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        assert b"resumed" not in third
        assert len(app.parked) == 2
        mhd2.request_resume(app.parked[0])
        assert (await read_response(first, bytearray())).endswith(b"resumed ctx:/a")
        await first.aclose()
        await until(lambda: daemon.connection_count == 1)
        # Room again: a new request is served (it parks too, then is resumed).
        async with await open_stream(daemon) as fourth:
            await fourth.send_all(b"GET /d HTTP/1.1\r\nHost: h\r\n\r\n")
            await until(lambda: len(app.parked) == 3)
            mhd2.request_resume(app.parked[2])
            assert (await read_response(fourth, bytearray())).endswith(b"resumed ctx:/d")
        mhd2.request_resume(app.parked[1])
        assert (await read_response(second, bytearray())).endswith(b"resumed ctx:/b")
        await second.aclose()


# -- clients that go away -------------------------------------------------------------


async def test_client_gone_while_suspended_is_noticed_without_a_resume(ended: Ended) -> None:
    app = Parker()
    async with running(app, notify_request_ended=recorder(ended)) as daemon:
        stream = await open_stream(daemon)
        await stream.send_all(GET)
        await until(lambda: len(app.parked) == 1)
        await stream.aclose()
        await until(lambda: len(ended) == 1, timeout=2.0)  # promptly, no resume needed
        assert ended == [(app.parked[0], RequestEndedCode.CLIENT_ABORT)]
        await until(lambda: daemon.connection_count == 0, timeout=2.0)
        # resuming now does nothing: the callback is not called again
        mhd2.request_resume(app.parked[0])
        await trio.to_thread.run_sync(mhd2.request_resume, app.parked[0])
        await trio.testing.wait_all_tasks_blocked()  # whatever the resume would do, done
        assert app.calls == [("/x", None)]
    assert len(ended) == 1


async def test_hundreds_of_clients_vanishing_leave_nothing_behind(ended: Ended) -> None:
    app = Parker()
    n = 300
    async with running(app, notify_request_ended=recorder(ended)) as daemon:
        baseline = task_count()
        streams = []
        for _ in range(n):
            stream = await open_stream(daemon)
            await stream.send_all(GET)
            streams.append(stream)
        await until(lambda: len(app.parked) == n)
        assert task_count() >= baseline + n  # one task per connection, no more
        assert task_count() <= baseline + n + 5
        for stream in streams:
            await stream.aclose()
        await until(lambda: len(ended) == n)
        await until(lambda: daemon.connection_count == 0)
        await until(lambda: task_count() == baseline)
        assert {code for _, code in ended} == {RequestEndedCode.CLIENT_ABORT}
        assert len({id(r) for r, _ in ended}) == n  # each request ended exactly once
        for request in app.parked:
            mhd2.request_resume(request)
        await trio.testing.wait_all_tasks_blocked()  # whatever the resume would do, done
        assert len(app.calls) == n and len(ended) == n


async def test_client_gone_while_dcc_suspended_is_noticed(ended: Ended) -> None:
    requests: list[mhd2.Request] = []
    calls: list[int] = []

    def creator(ctx: mhd2.DCCContext, pos: int, buf: memoryview) -> mhd2.DCCAction:
        calls.append(pos)
        if pos == 0:
            buf[:6] = b"first\n"
            return mhd2.dcc_action_continue(ctx, 6)
        requests.append(ctx.request)
        return mhd2.dcc_action_suspend(ctx)

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_from_response(request, mhd2.Response.from_callback(200, None, creator))

    async with running(cb, notify_request_ended=recorder(ended)) as daemon:
        stream = await open_stream(daemon)
        await stream.send_all(GET)
        await until(lambda: len(requests) == 1)
        await stream.aclose()
        await until(lambda: len(ended) == 1, timeout=2.0)
        assert ended == [(requests[0], RequestEndedCode.CLIENT_ABORT)]
        mhd2.request_resume(requests[0])
        await trio.testing.wait_all_tasks_blocked()  # whatever the resume would do, done
        assert calls == [0, 6]


# -- dcc_action_suspend -----------------------------------------------------------------


async def test_dcc_suspend_between_events_like_server_sent_events(
        autojump_clock: trio.testing.MockClock) -> None:
    """An event stream: the creator suspends when it has nothing; each resume sends one event."""
    queue: list[bytes] = []
    streams: list[mhd2.Request] = []
    positions: list[int] = []

    def creator(ctx: mhd2.DCCContext, pos: int, buf: memoryview) -> mhd2.DCCAction:
        positions.append(pos)
        if queue:
            event = queue.pop(0)
            if event == b"":
                return mhd2.dcc_action_finish(ctx)
            buf[: len(event)] = event
            return mhd2.dcc_action_continue(ctx, len(event))
        return mhd2.dcc_action_suspend(ctx)

    def cb(request: mhd2.Request) -> mhd2.Action:
        streams.append(request)
        response = mhd2.Response.from_callback(200, None, creator)
        response.add_header("Content-Type", "text/event-stream")
        return mhd2.action_from_response(request, response)

    async with running(cb, timeout=0.3) as daemon:
        async with await open_stream(daemon) as stream:
            await stream.send_all(GET)
            got = b""
            sent = b""
            for i in range(3):
                await until(lambda i=i: len(positions) == 2 * i + 1)  # type: ignore[misc]
                if i == 1:
                    await trio.sleep(0.5)  # virtual time, longer than the timeout: none while suspended
                event = b"data: %d\n\n" % i
                queue.append(event)
                sent += event
                mhd2.request_resume(streams[0])
                with trio.fail_after(WAIT):
                    while not got.endswith(b"%x\r\n%s\r\n" % (len(event), event)):
                        got += await stream.receive_some(65536)
            assert b"transfer-encoding: chunked" in got.lower()
            assert b"text/event-stream" in got
            queue.append(b"")
            mhd2.request_resume(streams[0])
            with trio.fail_after(WAIT):
                while not got.endswith(b"0\r\n\r\n"):
                    got += await stream.receive_some(65536)
    # Called again at the same pos after each resume.
    expected = [0]
    pos = 0
    for i in range(3):
        pos += len(b"data: %d\n\n" % i)
        expected += [expected[-1], pos]
    assert positions == [*expected, pos]
    assert len(sent) == pos


# -- disallow_suspend_resume -------------------------------------------------------------


async def test_disallow_suspend_resume_makes_both_suspends_usage_errors() -> None:
    errors: list[BaseException] = []

    def creator(ctx: mhd2.DCCContext, pos: int, buf: memoryview) -> mhd2.DCCAction:
        try:
            return mhd2.dcc_action_suspend(ctx)
        except mhd2.UsageError as exc:
            errors.append(exc)
            return mhd2.dcc_action_abort(ctx)

    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/dcc":
            return mhd2.action_from_response(request, mhd2.Response.from_callback(200, None, creator))
        try:
            return mhd2.action_suspend(request)
        except mhd2.UsageError as exc:
            errors.append(exc)
            return text_response(request, b"refused", 409)

    async with running(cb, disallow_suspend_resume=True) as daemon:
        close = b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        assert status_of(await exchange(daemon, close)) == 409
        raw = await exchange(daemon, b"GET /dcc HTTP/1.1\r\nHost: h\r\n\r\n")
        assert not raw.endswith(b"0\r\n\r\n")  # the stream was aborted, not finished
    assert len(errors) == 2
    assert all(isinstance(e, mhd2.UsageError) for e in errors)
    assert all(e.code is mhd2.StatusCode.FEATURE_DISABLED for e in errors)  # type: ignore[attr-defined]


# -- graceful stop ---------------------------------------------------------------------------


async def test_graceful_stop_answers_suspended_requests_503(ended: Ended) -> None:
    app = Parker()
    streams: list[mhd2.Request] = []

    def creator(ctx: mhd2.DCCContext, pos: int, buf: memoryview) -> mhd2.DCCAction:
        if pos == 0:
            buf[:3] = b"hi\n"
            return mhd2.dcc_action_continue(ctx, 3)
        streams.append(ctx.request)
        return mhd2.dcc_action_suspend(ctx)

    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/stream":
            return mhd2.action_from_response(request, mhd2.Response.from_callback(200, None, creator))
        return app(request)

    daemon = mhd2.Daemon(cb, port=0, notify_request_ended=recorder(ended))
    async with daemon:
        poll = await open_stream(daemon)
        sse = await open_stream(daemon)
        await poll.send_all(GET)
        await sse.send_all(b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\n")
        await until(lambda: len(app.parked) == 1 and len(streams) == 1)
        start = trio.current_time()
        with trio.fail_after(WAIT):
            await daemon.stop(grace=30)  # suspended requests do not hold the stop up
        assert trio.current_time() - start < 5
    response = await read_response(poll, bytearray())
    assert status_of(response) == 503
    assert b"connection: close" in response.lower()
    got = b""
    with trio.fail_after(WAIT):
        while chunk := await sse.receive_some(65536):
            got += chunk
    assert got.startswith(b"HTTP/1.1 200 ")
    assert got.endswith(b"3\r\nhi\n\r\n")  # closed mid-stream, no terminating chunk
    codes = sorted((r.path, c.name) for r, c in ended)
    assert codes == [("/stream", "DAEMON_SHUTDOWN"), ("/x", "DAEMON_SHUTDOWN")]
    await poll.aclose()
    await sse.aclose()


# -- known gaps (core) -------------------------------------------------------------------------


async def test_tls_client_gone_while_suspended_is_noticed(ended: Ended) -> None:
    import ssl

    import trustme

    import mhd2.tls

    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    context = mhd2.tls.server_context(cert.private_key_and_cert_chain_pem.bytes(),
                                      cert.private_key_pem.bytes())
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    app = Parker()
    async with running(app, tls=context, notify_request_ended=recorder(ended)) as daemon:
        tcp = await open_stream(daemon.port)
        stream = trio.SSLStream(tcp, client_ctx, server_hostname="localhost")
        await stream.send_all(GET)
        await until(lambda: len(app.parked) == 1)
        await trio.aclose_forcefully(stream)
        with trio.move_on_after(2.0):
            await until(lambda: len(ended) == 1, timeout=2.0)
        assert [code for _, code in ended] == [RequestEndedCode.CLIENT_ABORT]


async def test_pipelining_client_gone_while_suspended_is_noticed(ended: Ended) -> None:
    app = Parker()
    async with running(app, notify_request_ended=recorder(ended)) as daemon:
        stream = await open_stream(daemon.port)
        await stream.send_all(GET)
        await until(lambda: len(app.parked) == 1)
        await stream.send_all(GET)  # pipelined while the first is parked: left unread
        await stream.aclose()
        with trio.move_on_after(2.0):
            await until(lambda: len(ended) == 1, timeout=2.0)
        assert [code for _, code in ended] == [RequestEndedCode.CLIENT_ABORT]
