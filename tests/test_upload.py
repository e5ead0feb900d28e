"""Request bodies: the upload actions, ``Expect: 100-continue``, chunked uploads.

Everything runs over real sockets: httpx where a well-behaved client is
enough, raw sockets where the exact bytes (and their timing) matter, and
``curl`` for its own ``Expect: 100-continue`` handling.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from conftest import WAIT, exchange, open_stream, read_response, running, status_of, text_response

import mhd2

Code = mhd2.RequestEndedCode
Ended = list[tuple[mhd2.Request, mhd2.RequestEndedCode]]


def notify(ended: Ended) -> Callable[[mhd2.Request, mhd2.RequestEndedCode], None]:
    def cb(request: mhd2.Request, code: mhd2.RequestEndedCode) -> None:
        ended.append((request, code))

    return cb


async def until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Bounded polling: wait (yielding to the daemon) until *predicate* holds."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.005)


def codes(ended: Ended) -> list[mhd2.RequestEndedCode]:
    return [code for _, code in ended]


def page(request: mhd2.Request, body: bytes, status: int = 200) -> mhd2.UploadAction:
    response = mhd2.Response.from_buffer_copy(status, body)
    return mhd2.upload_action_from_response(request, response)


class Raw:
    """A raw client connection with a read buffer."""

    def __init__(self, stream: trio.abc.HalfCloseableStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def response(self) -> bytes:
        return await read_response(self.stream, self.buffer)

    async def read_until(self, marker: bytes) -> bytes:
        with trio.fail_after(WAIT):
            while marker not in self.buffer:
                chunk = await self.stream.receive_some(65536)
                if not chunk:
                    raise EOFError(bytes(self.buffer))
                self.buffer += chunk
            end = self.buffer.index(marker) + len(marker)
            out = bytes(self.buffer[:end])
            del self.buffer[:end]
            return out

    async def rest(self) -> bytes:
        """Everything until the server closes (a reset counts as a close)."""
        with trio.fail_after(WAIT):
            try:
                while chunk := await self.stream.receive_some(65536):
                    self.buffer += chunk
            except trio.BrokenResourceError:
                pass
        out = bytes(self.buffer)
        self.buffer.clear()
        return out


@asynccontextmanager
async def raw_connection(port: int | mhd2.Daemon) -> AsyncIterator[Raw]:
    """A raw connection: TCP to a port, in memory to a daemon (``conftest.open_stream``)."""
    with trio.fail_after(WAIT):
        stream = await open_stream(port)
    async with stream:
        yield Raw(stream)


def post_head(path: str = "/", length: int | None = None, extra: str = "") -> bytes:
    framing = "Transfer-Encoding: chunked\r\n" if length is None else f"Content-Length: {length}\r\n"
    return f"POST {path} HTTP/1.1\r\nHost: h\r\n{framing}{extra}\r\n".encode()


# -- action_process_upload_full ----------------------------------------------------


async def test_full_upload_gets_the_whole_body_once(ended: Ended) -> None:
    calls: list[bytes] = []
    body = bytes(range(256)) * 1000

    def full(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        calls.append(data)
        return page(request, b"got %d" % len(data))

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_process_upload_full(request, 1 << 20, full)

    async with running(cb, notify_request_ended=notify(ended)) as daemon:
        with trio.fail_after(WAIT):
            async with httpx.AsyncClient() as client:
                r = await client.post(f"http://127.0.0.1:{daemon.port}/", content=body)
                # and an async callback, on the same keep-alive connection
                r2 = await client.post(f"http://127.0.0.1:{daemon.port}/", content=b"x" * 10)
    assert (r.status_code, r.content) == (200, b"got 256000")
    assert (r2.status_code, r2.content) == (200, b"got 10")
    assert calls == [body, b"x" * 10]
    assert codes(ended) == [Code.COMPLETED_OK, Code.COMPLETED_OK]


async def test_full_upload_async_callback() -> None:
    async def full(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        await trio.sleep(0)
        return page(request, data[::-1])

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_process_upload_full(request, 100, full)

    async with running(cb) as daemon:
        answer = await exchange(daemon, post_head(length=5, extra="Connection: close\r\n")
                                + b"abcde")
    assert status_of(answer) == 200
    assert answer.endswith(b"edcba")


async def test_full_upload_too_large_is_413_at_once_without_reading(ended: Ended) -> None:
    called: list[bytes] = []

    def full(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        called.append(data)
        return page(request, b"no")

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_process_upload_full(request, 1 << 20, full)

    async with running(cb, notify_request_ended=notify(ended)) as daemon:
        # 2 GB declared, nothing sent: the 413 comes at once and the connection closes.
        async with raw_connection(daemon.port) as conn:
            await conn.send(post_head(length=2 * 1024**3))
            answer = await conn.rest()
        assert status_of(answer) == 413
        assert b"connection: close" in answer.lower()
        # With Expect: 100-continue there is no 100 either.
        async with raw_connection(daemon.port) as conn:
            await conn.send(post_head(length=2 * 1024**3, extra="Expect: 100-continue\r\n"))
            answer = await conn.rest()
        assert status_of(answer) == 413
        assert b"100 Continue" not in answer
        # The daemon keeps serving.
        ok = await exchange(daemon, post_head(length=3, extra="Connection: close\r\n") + b"abc")
        assert status_of(ok) == 200
    assert called == [b"abc"]
    assert codes(ended) == [Code.HTTP_PROTOCOL_ERROR, Code.HTTP_PROTOCOL_ERROR, Code.COMPLETED_OK]


async def test_full_upload_chunked_over_the_limit_is_413(ended: Ended) -> None:
    def full(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        raise AssertionError("never called")

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_process_upload_full(request, 10, full)

    async with running(cb, notify_request_ended=notify(ended)) as daemon:
        answer = await exchange(daemon, post_head() + b"8\r\n12345678\r\n8\r\n12345678\r\n")
    assert status_of(answer) == 413
    assert codes(ended) == [Code.HTTP_PROTOCOL_ERROR]


async def test_full_upload_pool_is_shared_second_upload_gets_413(ended: Ended) -> None:
    got: list[bytes] = []

    def full(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        got.append(data)
        return page(request, b"stored")

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_process_upload_full(request, 1000, full)

    async with running(cb, large_pool_size=1000, notify_request_ended=notify(ended)) as daemon:
        async with raw_connection(daemon.port) as first:
            # The first upload reserves its 800 bytes and is held open.
            await first.send(post_head(length=800) + b"a" * 100)
            # The daemon has read the head (and reserved) once the second one is refused;
            # poll until the pool shows it, with a bounded wait.
            await until(lambda: daemon._shared.large_pool.in_use == 800)
            second = await exchange(daemon, post_head(length=800) + b"b" * 800)
            assert status_of(second) == 413
            # A small one still fits in what is left.
            third = await exchange(daemon, post_head(length=200, extra="Connection: close\r\n")
                                   + b"c" * 200)
            assert status_of(third) == 200
            await first.send(b"a" * 700)
            assert (await first.response()).endswith(b"stored")
        # Everything was given back: a full-size upload fits again.
        fourth = await exchange(daemon, post_head(length=1000, extra="Connection: close\r\n")
                                + b"d" * 1000)
        assert status_of(fourth) == 200
        assert daemon._shared.large_pool.in_use == 0
    assert got == [b"c" * 200, b"a" * 800, b"d" * 1000]
    assert Code.NO_RESOURCES in codes(ended)


# -- action_process_upload_inc -------------------------------------------------------


async def test_incremental_pieces_add_up_to_the_body_then_final_empty_call(ended: Ended) -> None:
    pieces: list[bytes] = []
    body = b"".join(bytes([i]) * 70_000 for i in range(30))  # 2.1 MB: many reads

    def inc(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        pieces.append(data)
        if data:
            return mhd2.upload_action_continue(request)
        return page(request, b"%d bytes" % sum(len(p) for p in pieces))

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_process_upload_inc(request, inc)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 100_000):
            yield body[i : i + 100_000]

    async with running(cb, notify_request_ended=notify(ended)) as daemon:
        with trio.fail_after(WAIT):
            async with httpx.AsyncClient() as client:
                r = await client.post(f"http://127.0.0.1:{daemon.port}/", content=body)
                n_first = len(pieces)
                r2 = await client.post(f"http://127.0.0.1:{daemon.port}/", content=chunks())
    assert (r.status_code, r.content) == (200, b"2100000 bytes")
    first, second = pieces[:n_first], pieces[n_first:]
    for got in (first, second):
        assert got[-1] == b""
        assert b"" not in got[:-1]
        assert len(got) > 2  # really in pieces
        assert b"".join(got) == body
    assert r2.status_code == 200
    assert codes(ended) == [Code.COMPLETED_OK, Code.COMPLETED_OK]


async def test_incremental_empty_body_gets_only_the_final_call() -> None:
    pieces: list[bytes] = []

    def inc(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        pieces.append(data)
        return page(request, b"done") if not data else mhd2.upload_action_continue(request)

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_process_upload_inc(request, inc)

    async with running(cb) as daemon:
        answer = await exchange(daemon, post_head(length=0, extra="Connection: close\r\n"))
    assert answer.endswith(b"done")
    assert pieces == [b""]


async def test_incremental_suspend_and_resume_from_another_task(ended: Ended) -> None:
    seen: list[bytes] = []
    suspended = trio.Event()
    requests: list[mhd2.Request] = []

    def inc(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        seen.append(data)
        if len(seen) == 1:
            requests.append(request)
            suspended.set()
            return mhd2.upload_action_suspend(request)
        if data:
            return mhd2.upload_action_continue(request)
        return page(request, b"".join(seen))

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_process_upload_inc(request, inc)

    async with running(cb, notify_request_ended=notify(ended)) as daemon:
        async with raw_connection(daemon.port) as conn:
            await conn.send(post_head(length=10) + b"hello")
            with trio.fail_after(WAIT):
                await suspended.wait()
            await conn.send(b"world")
            # While suspended the daemon does not read on: no further call.
            await trio.testing.wait_all_tasks_blocked()
            assert seen == [b"hello"]
            async with trio.open_nursery() as nursery:

                async def resume() -> None:
                    mhd2.request_resume(requests[0])

                nursery.start_soon(resume)
            answer = await conn.response()
    assert answer.endswith(b"helloworld")
    assert seen == [b"hello", b"world", b""]
    assert codes(ended) == [Code.COMPLETED_OK]


async def test_full_upload_suspend_on_whole_body_then_resume() -> None:
    calls: list[bytes] = []
    parked: list[mhd2.Request] = []

    def full(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        calls.append(data)
        if len(calls) == 1:
            parked.append(request)
            return mhd2.upload_action_suspend(request)
        return page(request, b"after resume: " + data)

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_process_upload_full(request, 100, full)

    async with running(cb) as daemon:
        async with raw_connection(daemon.port) as conn:
            await conn.send(post_head(length=3) + b"abc")
            await until(lambda: bool(parked))
            mhd2.request_resume(parked[0])
            answer = await conn.response()
    assert answer.endswith(b"after resume: abc")
    assert calls == [b"abc", b"abc"]


async def test_from_response_mid_upload_small_rest_is_discarded_not_parsed(ended: Ended) -> None:
    paths: list[str] = []
    pieces: list[bytes] = []

    def inc(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        pieces.append(data)
        return page(request, b"early answer")

    def cb(request: mhd2.Request) -> mhd2.Action:
        paths.append(request.path)
        if request.method == "POST":
            return mhd2.action_process_upload_inc(request, inc)
        return text_response(request, b"next")

    hidden = b"GET /hidden HTTP/1.1\r\nHost: h\r\n\r\n"
    body = b"x" * 1000 + hidden + b"y" * 1000
    async with running(cb, notify_request_ended=notify(ended)) as daemon:
        async with raw_connection(daemon.port) as conn:
            await conn.send(post_head("/up", len(body)) + body[:500])
            first = await conn.response()
            assert status_of(first) == 200
            assert first.endswith(b"early answer")
            await conn.send(body[500:] + b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n")
            second = await conn.response()
            assert second.endswith(b"next")
    assert paths == ["/up", "/after"]
    assert len(pieces) == 1
    assert codes(ended) == [Code.COMPLETED_OK, Code.COMPLETED_OK]


async def test_from_response_mid_upload_large_rest_closes_the_connection(ended: Ended) -> None:
    paths: list[str] = []

    def inc(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        return page(request, b"stop sending", 403)

    def cb(request: mhd2.Request) -> mhd2.Action:
        paths.append(request.path)
        return mhd2.action_process_upload_inc(request, inc)

    hidden = b"GET /hidden HTTP/1.1\r\nHost: h\r\n\r\n"
    async with running(cb, notify_request_ended=notify(ended)) as daemon:
        async with raw_connection(daemon.port) as conn:
            await conn.send(post_head("/big", 100 * 1024**2) + b"z" * 1000)
            answer = await conn.response()
            assert status_of(answer) == 403
            assert b"connection: close" in answer.lower()
            try:
                await conn.send(hidden)
            except trio.BrokenResourceError:
                pass
            assert await conn.rest() == b""
    assert paths == ["/big"]
    assert codes(ended) == [Code.COMPLETED_OK]


async def test_upload_action_abort_request_closes_without_reply(ended: Ended) -> None:
    def inc(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        return mhd2.upload_action_abort_request(request)

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_process_upload_inc(request, inc)

    async with running(cb, notify_request_ended=notify(ended)) as daemon:
        answer = await exchange(daemon, post_head(length=5) + b"hello")
        assert answer == b""
        await until(lambda: bool(ended))
    assert codes(ended) == [Code.BY_APP_ABORT]


async def test_final_call_abort_and_none_abort(ended: Ended) -> None:
    def inc(request: mhd2.Request, data: bytes) -> mhd2.UploadAction | None:
        if data:
            return mhd2.upload_action_continue(request)
        return None  # like upload_action_abort_request

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_process_upload_inc(request, inc)

    async with running(cb, notify_request_ended=notify(ended)) as daemon:
        assert await exchange(daemon, post_head(length=5) + b"hello") == b""
        await until(lambda: bool(ended))
    assert codes(ended) == [Code.BY_APP_ABORT]


# -- action_process_upload: the automatic choice -------------------------------------


async def test_process_upload_chooses_full_or_incremental() -> None:
    log: list[tuple[str, bytes]] = []

    def full(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        log.append(("full", data))
        return page(request, b"full")

    def inc(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        log.append(("inc", data))
        return mhd2.upload_action_continue(request) if data else page(request, b"inc")

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_process_upload(request, 1000, full, inc)

    async with running(cb, large_pool_size=1500) as daemon:
        url = f"http://127.0.0.1:{daemon.port}/"
        with trio.fail_after(WAIT):
            async with httpx.AsyncClient() as client:
                small = await client.post(url, content=b"s" * 1000)
                big = await client.post(url, content=b"b" * 1001)
        # chunked (size unknown) goes to inc_cb
        chunked = await exchange(daemon, post_head(extra="Connection: close\r\n")
                                 + b"3\r\nabc\r\n0\r\n\r\n")
        # Fits large_buffer_size but not what is left of the pool: incremental, not 413.
        async with raw_connection(daemon.port) as holder:
            await holder.send(post_head(length=1000) + b"h")
            await until(lambda: daemon._shared.large_pool.in_use == 1000)
            squeezed = await exchange(daemon, post_head(length=600, extra="Connection: close\r\n")
                                      + b"q" * 600)
            await holder.send(b"h" * 999)
            assert (await holder.response()).endswith(b"full")
    assert (small.content, big.content) == (b"full", b"inc")
    assert chunked.endswith(b"inc")
    assert squeezed.endswith(b"inc")
    assert ("full", b"s" * 1000) in log
    assert b"".join(d for k, d in log if k == "inc") == b"b" * 1001 + b"abc" + b"q" * 600
    assert log[-1] == ("full", b"h" * 1000)


# -- chunked uploads and trailers ---------------------------------------------------------


async def test_chunked_upload_with_trailers_as_footer() -> None:
    seen: dict[str, Any] = {}

    def inc(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        seen.setdefault("data", []).append(data)
        if data:
            # trailers are not known yet while the body is arriving
            seen["early_footer"] = request.get_value(mhd2.ValueKind.FOOTER, "X-Checksum")
            return mhd2.upload_action_continue(request)
        seen["size"] = request.upload_size
        seen["footer"] = request.get_value(mhd2.ValueKind.FOOTER, "x-checksum")
        seen["footers"] = request.get_values(mhd2.ValueKind.FOOTER)
        return page(request, b"ok")

    def full(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        seen["full"] = (data, request.get_value(mhd2.ValueKind.FOOTER, "X-Checksum"))
        return page(request, b"ok")

    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/full":
            return mhd2.action_process_upload_full(request, 100, full)
        return mhd2.action_process_upload_inc(request, inc)

    body = b"5\r\nhello\r\n6;name=value\r\n world\r\n0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n"
    async with running(cb) as daemon:
        async with raw_connection(daemon.port) as conn:
            await conn.send(post_head("/inc") + body)
            assert status_of(await conn.response()) == 200
            await conn.send(post_head("/full") + body)
            assert status_of(await conn.response()) == 200
    assert b"".join(seen["data"]) == b"hello world"
    assert seen["data"][-1] == b""
    assert seen["size"] is None
    assert seen["early_footer"] is None
    assert seen["footer"] == "abc"
    assert seen["footers"] == [("X-Checksum", "abc"), ("X-Other", "1")]
    assert seen["full"] == (b"hello world", "abc")


async def test_chunk_extension_with_bare_lf_is_400_and_daemon_keeps_serving(ended: Ended) -> None:
    pieces: list[bytes] = []

    def inc(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        pieces.append(data)
        return mhd2.upload_action_continue(request) if data else page(request, b"ok")

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_process_upload_inc(request, inc)

    async with running(cb, notify_request_ended=notify(ended)) as daemon:
        bad = post_head() + b"5;ext=a\nb\r\nhello\r\n0\r\n\r\n"
        answer = await exchange(daemon, bad)
        assert status_of(answer) == 400
        good = await exchange(daemon, post_head(extra="Connection: close\r\n")
                              + b"5\r\nhello\r\n0\r\n\r\n")
        assert status_of(good) == 200
    assert b"".join(pieces) == b"hello"
    assert codes(ended) == [Code.HTTP_PROTOCOL_ERROR, Code.COMPLETED_OK]


# -- Expect: 100-continue ----------------------------------------------------------------


async def test_100_continue_only_when_the_body_is_asked_for(ended: Ended) -> None:
    def full(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        return page(request, b"got " + data)

    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/upload":
            return mhd2.action_process_upload_full(request, 100, full)
        return text_response(request, b"no thanks", 401)

    async with running(cb, notify_request_ended=notify(ended)) as daemon:
        async with raw_connection(daemon.port) as conn:
            await conn.send(post_head("/upload", 5, "Expect: 100-continue\r\n"))
            interim = await conn.read_until(b"\r\n\r\n")
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            await conn.send(b"hello")
            final = await conn.response()
            assert status_of(final) == 200
            assert final.endswith(b"got hello")
            # keep-alive: the next request with Expect, answered directly
            await conn.send(post_head("/direct", 5, "Expect: 100-continue\r\n"))
            answer = await conn.rest()
        assert answer.startswith(b"HTTP/1.1 401 ")
        assert b"100 Continue" not in answer
        assert answer.endswith(b"no thanks")
        assert b"connection: close" in answer.lower()
    assert codes(ended) == [Code.COMPLETED_OK, Code.COMPLETED_OK]


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_curl_expect_100_continue(tmp_path: Any) -> None:
    data = bytes(range(256)) * 200
    payload = tmp_path / "payload.bin"
    payload.write_bytes(data)

    def inc(request: mhd2.Request, piece: bytes) -> mhd2.UploadAction:
        request.app_context = (request.app_context or b"") + piece
        if piece:
            return mhd2.upload_action_continue(request)
        return page(request, b"%d" % len(request.app_context))

    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/up":
            return mhd2.action_process_upload_inc(request, inc)
        return text_response(request, b"refused", 403)

    async with running(cb) as daemon:
        results = []
        for path in ("/up", "/no"):
            with trio.fail_after(WAIT):
                done = await trio.run_process(
                    ["curl", "-sS", "-v", "--expect100-timeout", "5", "-H",
                     "Expect: 100-continue", "--data-binary", f"@{payload}",
                     f"http://127.0.0.1:{daemon.port}{path}"],
                    capture_stdout=True, capture_stderr=True, check=False,
                )
            results.append(done)
    up, no = results
    assert up.returncode == 0, up.stderr
    assert b"< HTTP/1.1 100 Continue" in up.stderr
    assert up.stdout == b"%d" % len(data)
    assert b"100 Continue" not in no.stderr
    assert b"< HTTP/1.1 403" in no.stderr
    assert no.stdout == b"refused"


# -- bad input: short and long bodies -----------------------------------------------------


@pytest.mark.parametrize("mode", ["inc", "full"])
async def test_client_closes_mid_body_is_client_abort_never_complete(
    mode: str, ended: Ended
) -> None:
    pieces: list[bytes] = []

    def upload(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        pieces.append(data)
        if data and mode == "inc":
            return mhd2.upload_action_continue(request)
        return page(request, b"complete?!")

    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.method == "GET":
            return text_response(request)
        if mode == "inc":
            return mhd2.action_process_upload_inc(request, upload)
        return mhd2.action_process_upload_full(request, 10_000, upload)

    async with running(cb, notify_request_ended=notify(ended)) as daemon:
        async with raw_connection(daemon.port) as conn:
            await conn.send(post_head(length=1000) + b"p" * 500)
            if mode == "inc":
                await until(lambda: bool(pieces))
            await conn.stream.send_eof()
            assert await conn.rest() == b""
        await until(lambda: bool(ended))
        # The daemon keeps serving.
        ok = await exchange(daemon, b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        assert status_of(ok) == 200
        assert daemon._shared.large_pool.in_use == 0  # a full upload's reservation is given back
    assert codes(ended)[0] == Code.CLIENT_ABORT
    if mode == "inc":
        assert b"".join(pieces) == b"p" * 500
        assert b"" not in pieces  # never told the body was complete
    else:
        assert pieces == []


async def test_body_longer_than_content_length_is_the_next_request(ended: Ended) -> None:
    pieces: list[bytes] = []

    def inc(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        pieces.append(data)
        return mhd2.upload_action_continue(request) if data else page(request, b"ok")

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_process_upload_inc(request, inc)

    async with running(cb, notify_request_ended=notify(ended)) as daemon:
        async with raw_connection(daemon.port) as conn:
            await conn.send(post_head(length=5) + b"helloEXTRA GARBAGE\r\n\r\n")
            first = await conn.response()
            assert status_of(first) == 200
            rest = await conn.rest()
        assert status_of(rest) == 400
        # and a valid request after the body really is one
        async with raw_connection(daemon.port) as conn:
            await conn.send(post_head(length=5) + b"world" + post_head(length=2) + b"!!")
            assert status_of(await conn.response()) == 200
            assert status_of(await conn.response()) == 200
    assert b"".join(pieces) == b"helloworld!!"
    assert pieces.count(b"") == 3
    # the garbage never became a request: it is reported as an unparsed one
    # (method and URI "-", the 400 sent), so that an access log sees the reply
    assert codes(ended) == [Code.COMPLETED_OK, Code.HTTP_PROTOCOL_ERROR, Code.COMPLETED_OK,
                            Code.COMPLETED_OK]
    garbage = ended[1][0]
    assert (garbage.method, garbage.uri, garbage.response_status) == ("-", "-", 400)


# -- misuse and failures ------------------------------------------------------------------


async def test_exception_in_upload_callback_is_500_by_app_error(
    ended: Ended, caplog: pytest.LogCaptureFixture
) -> None:
    def inc(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        raise RuntimeError("boom in upload")

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_process_upload_inc(request, inc)

    with caplog.at_level(logging.ERROR, logger="mhd2"):
        async with running(cb, notify_request_ended=notify(ended)) as daemon:
            answer = await exchange(daemon, post_head(length=5) + b"hello")
            await until(lambda: bool(ended))
    assert status_of(answer) == 500
    assert codes(ended) == [Code.BY_APP_ERROR]
    assert "boom in upload" in caplog.text


async def test_continue_on_the_final_call_is_a_usage_error_500(
    ended: Ended, caplog: pytest.LogCaptureFixture
) -> None:
    def inc(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        return mhd2.upload_action_continue(request)

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_process_upload_inc(request, inc)

    with caplog.at_level(logging.ERROR, logger="mhd2"):
        async with running(cb, notify_request_ended=notify(ended)) as daemon:
            answer = await exchange(daemon, post_head(length=5) + b"hello")
            await until(lambda: bool(ended))
    assert status_of(answer) == 500
    assert codes(ended) == [Code.BY_APP_ERROR]
    assert "upload_action_continue" in caplog.text


async def test_second_upload_action_in_one_call_is_a_usage_error() -> None:
    errors: list[mhd2.UsageError] = []

    def inc(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        first = page(request, b"first wins") if not data else mhd2.upload_action_continue(request)
        for second in (mhd2.upload_action_continue, mhd2.upload_action_abort_request,
                       mhd2.upload_action_suspend):
            try:
                second(request)
            except mhd2.UsageError as exc:
                errors.append(exc)
        try:
            mhd2.upload_action_from_response(request, mhd2.Response.from_empty(204))
        except mhd2.UsageError as exc:
            errors.append(exc)
        return first

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_process_upload_inc(request, inc)

    async with running(cb) as daemon:
        answer = await exchange(daemon, post_head(length=5, extra="Connection: close\r\n")
                                + b"hello")
    assert answer.endswith(b"first wins")
    assert len(errors) == 8  # 4 per call: one piece, one final call
    assert all(e.code is mhd2.StatusCode.ACTION_ALREADY_CREATED for e in errors)


async def test_upload_action_and_plain_action_usage_errors() -> None:
    errors: list[Exception] = []

    def nop(request: mhd2.Request, data: bytes) -> None:
        return None

    def cb(request: mhd2.Request) -> mhd2.Action:
        action = mhd2.action_process_upload_inc(request, nop)
        bads: list[Callable[[], object]] = [
            lambda: mhd2.action_process_upload_full(request, 10, nop),
            lambda: mhd2.action_from_response(request, mhd2.Response.from_empty(204)),
        ]
        for bad in bads:
            try:
                bad()
            except mhd2.UsageError as exc:
                errors.append(exc)
        return action

    def cb_bad_args(request: mhd2.Request) -> mhd2.Action:
        bads: list[Callable[[], object]] = [
            lambda: mhd2.action_process_upload_full(request, -1, nop),
            lambda: mhd2.action_process_upload_inc(request, "not callable"),  # type: ignore[arg-type]
            lambda: mhd2.action_process_upload(request, 10, nop, None),  # type: ignore[arg-type]
        ]
        for bad in bads:
            try:
                bad()
            except mhd2.UsageError as exc:
                errors.append(exc)
        return text_response(request)

    async with running(cb) as daemon:
        await exchange(daemon, post_head(length=1) + b"x")
    async with running(cb_bad_args) as daemon:
        assert status_of(await exchange(daemon, b"GET / HTTP/1.0\r\n\r\n")) == 200
    assert len(errors) == 5
    assert all(isinstance(e, mhd2.UsageError) for e in errors)


async def test_upload_callback_returning_a_foreign_object_is_500(ended: Ended) -> None:
    def inc(request: mhd2.Request, data: bytes) -> Any:
        return "continue"

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_process_upload_inc(request, inc)

    async with running(cb, notify_request_ended=notify(ended)) as daemon:
        answer = await exchange(daemon, post_head(length=5) + b"hello")
        await until(lambda: bool(ended))
    assert status_of(answer) == 500
    assert codes(ended) == [Code.BY_APP_ERROR]


async def test_upload_pieces_are_bytes() -> None:
    types: set[type] = set()

    def inc(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        types.add(type(data))
        return mhd2.upload_action_continue(request) if data else page(request, b"ok")

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_process_upload_inc(request, inc)

    async with running(cb) as daemon:
        answer = await exchange(daemon, post_head(length=5, extra="Connection: close\r\n")
                                + b"hello")
    assert status_of(answer) == 200
    assert types == {bytes}


async def test_client_leaving_a_suspended_upload_is_client_abort(ended: Ended) -> None:
    calls: list[bytes] = []

    def inc(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        calls.append(data)
        return mhd2.upload_action_suspend(request)  # never resumed

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_process_upload_inc(request, inc)

    async with running(cb, notify_request_ended=notify(ended)) as daemon:
        async with raw_connection(daemon.port) as conn:
            await conn.send(post_head(length=100) + b"first")
            await until(lambda: bool(calls))
        # the socket is closed; the daemon notices while the request is parked
        await until(lambda: bool(ended))
    assert codes(ended) == [Code.CLIENT_ABORT]
    assert calls == [b"first"]


async def test_body_trickling_past_the_timeout_is_timeout_reached(
        ended: Ended, autojump_clock: trio.testing.MockClock) -> None:
    pieces: list[bytes] = []

    def inc(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        pieces.append(data)
        return mhd2.upload_action_continue(request) if data else page(request, b"never")

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_process_upload_inc(request, inc)

    async with running(cb, timeout=0.4, notify_request_ended=notify(ended)) as daemon:
        async with raw_connection(daemon) as conn:
            await conn.send(post_head(length=100) + b"part")
            # nothing more is sent: the daemon gives up and closes
            assert await conn.rest() == b""
        await until(lambda: bool(ended))
    assert codes(ended) == [Code.TIMEOUT_REACHED]
    assert b"" not in pieces


async def test_small_chunked_full_upload_fits_although_large_buffer_size_exceeds_the_pool(
    ended: Ended,
) -> None:
    def full(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        return page(request, b"got " + data)

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_process_upload_full(request, 2000, full)

    async with running(cb, large_pool_size=1000, notify_request_ended=notify(ended)) as daemon:
        answer = await exchange(daemon, post_head(extra="Connection: close\r\n")
                                + b"5\r\nhello\r\n0\r\n\r\n")
    assert status_of(answer) == 200
    assert answer.endswith(b"got hello")
