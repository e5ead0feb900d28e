"""End-to-end tests of action_parse_post through a real daemon (httpx, curl, raw sockets)."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from conftest import WAIT, exchange, open_stream, running, status_of

import mhd2
from mhd2 import PostEncoding, PostParseResult, ValueKind
from mhd2.post import action_parse_post


@dataclass
class Seen:
    """What the callbacks saw, for the test to check."""

    results: list[PostParseResult] = field(default_factory=list)
    # per streamed field: (name, filename, content_type) → list of (offset, len, final)
    calls: dict[str, list[tuple[int, int, bool]]] = field(default_factory=dict)
    meta: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    digests: dict[str, bytes] = field(default_factory=dict)


def make_app(
    seen: Seen,
    *,
    buffer_size: int = 4096,
    max_nonstream_size: int = 1024,
    encoding: PostEncoding = PostEncoding.OTHER,
    use_async: bool = False,
    **kwargs: Any,
) -> Any:
    """A request callback: parse POST; answer JSON of the POSTDATA values and the result."""

    def reader(request: mhd2.Request, name: str, filename: str | None, content_type: str | None,
               transfer_encoding: str | None, data: bytes, offset: int, final: bool) -> Any:
        calls = seen.calls.setdefault(name, [])
        expected = sum(n for _, n, _ in calls)
        assert offset == expected
        calls.append((offset, len(data), final))
        seen.meta[name] = (filename, content_type)
        seen.sizes[name] = offset + len(data)
        seen.digests[name] = seen.digests.get(name, b"")[-8:] + data[-8:]
        return mhd2.upload_action_continue(request)

    def done(request: mhd2.Request, result: PostParseResult) -> Any:
        seen.results.append(result)
        body = json.dumps({
            "result": result.name,
            "values": request.get_values(ValueKind.POSTDATA),
        }).encode()
        status = 200 if result.is_ok else 400
        return mhd2.upload_action_from_response(request, mhd2.Response.from_buffer_copy(status, body))

    async def areader(*args: Any) -> Any:
        await trio.sleep(0)
        return reader(*args)

    async def adone(*args: Any) -> Any:
        await trio.sleep(0)
        return done(*args)

    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.method != "POST":
            response = mhd2.Response.from_buffer_copy(200, b"alive")
            return mhd2.action_from_response(request, response)
        return action_parse_post(
            request, buffer_size, max_nonstream_size, encoding,
            areader if use_async else reader, adone if use_async else done, **kwargs,
        )

    return cb


@pytest.mark.parametrize("use_async", [False, True])
async def test_urlencoded_form_with_httpx(use_async: bool) -> None:
    seen = Seen()
    async with running(make_app(seen, use_async=use_async)) as daemon:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.port}") as client:
            with trio.fail_after(WAIT):
                r = await client.post("/", data={"name": "Jürgen M", "x": "1+1&2", "e": ""})
    assert r.status_code == 200
    assert r.json() == {"result": "OK", "values": [["name", "Jürgen M"], ["x", "1+1&2"], ["e", ""]]}
    assert seen.calls == {}


async def test_multipart_file_streams_through_the_reader() -> None:
    seen = Seen()
    payload = bytes(range(256)) * 4096  # 1 MiB
    async with running(make_app(seen, max_nonstream_size=1024)) as daemon:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.port}") as client:
            with trio.fail_after(WAIT):
                r = await client.post(
                    "/", data={"title": "holiday", "small": "x" * 1024},
                    files={"upload": ("photo.bin", payload, "application/octet-stream")},
                )
    assert r.status_code == 200, r.text
    assert r.json() == {"result": "OK", "values": [["title", "holiday"], ["small", "x" * 1024]]}
    calls = seen.calls["upload"]
    assert seen.sizes["upload"] == len(payload)
    assert seen.meta["upload"] == ("photo.bin", "application/octet-stream")
    assert [final for _, _, final in calls] == [False] * (len(calls) - 1) + [True]
    assert calls[0][0] == 0 and calls[-1][1] == 0
    assert len(calls) > 2  # really in pieces
    assert seen.digests["upload"][-8:] == payload[-8:]


async def test_small_file_field_is_collected_like_any_field() -> None:
    seen = Seen()
    async with running(make_app(seen, max_nonstream_size=1024)) as daemon:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.port}") as client:
            with trio.fail_after(WAIT):
                r = await client.post("/", files={"f": ("a.txt", b"tiny", "text/plain")})
    assert r.json() == {"result": "OK", "values": [["f", "tiny"]]}


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_curl_dash_f(tmp_path: Path) -> None:
    seen = Seen()
    upload = tmp_path / "data.bin"
    upload.write_bytes(b"\r\n--" + b"q" * 300_000 + b"\r\n")
    async with running(make_app(seen)) as daemon:
        with trio.fail_after(WAIT):
            result = await trio.run_process(
                ["curl", "-sS", "-F", "name=curl user", "-F", f"file=@{upload};type=text/x-test",
                 f"http://127.0.0.1:{daemon.port}/"],
                capture_stdout=True,
            )
    assert json.loads(result.stdout) == {"result": "OK", "values": [["name", "curl user"]]}
    assert seen.sizes["file"] == upload.stat().st_size
    assert seen.meta["file"] == ("data.bin", "text/x-test")


async def test_text_plain_form() -> None:
    seen = Seen()
    body = b"a=1 + %41\r\nb=two\r\n"
    async with running(make_app(seen)) as daemon:
        raw = await exchange(daemon, b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                             b"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    assert status_of(raw) == 200
    assert json.loads(raw.split(b"\r\n\r\n", 1)[1]) == {
        "result": "OK", "values": [["a", "1 + %41"], ["b", "two"]],
    }


async def test_chunked_urlencoded_with_explicit_encoding() -> None:
    seen = Seen()
    async with running(make_app(seen, encoding=PostEncoding.FORM_URLENCODED)) as daemon:
        raw = await exchange(daemon, b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n3\r\na=%\r\n4\r\n41&b\r\n0\r\n\r\n")
    assert json.loads(raw.split(b"\r\n\r\n", 1)[1]) == {"result": "OK", "values": [["a", "A"], ["b", ""]]}


def post(content_type: bytes | None, body: bytes) -> bytes:
    ct = b"Content-Type: " + content_type + b"\r\n" if content_type is not None else b""
    return (b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + ct
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        (None, b"a=1", PostParseResult.FAILED_NO_CNTN_TYPE),
        (b"application/json", b"{}", PostParseResult.FAILED_UNKNOWN_CNTN_TYPE),
        (b"multipart/form-data", b"--x\r\n", PostParseResult.FAILED_HEADER_NO_BOUNDARY),
        (b"multipart/form-data; boundary=" + b"x" * 71, b"--x\r\n", PostParseResult.FAILED_HEADER_MISFORMED),
        (b"multipart/form-data; boundary=B", b"no delimiter here",
         PostParseResult.FAILED_INVALID_POST_FORMAT),
        (b"multipart/form-data; boundary=B",
         b"--B\r\nContent-Disposition: form-data; name=a\r\n\r\nunterminated",
         PostParseResult.OK_BAD_TERMINATION),
        (b"multipart/form-data; boundary=B", b"--B\r\nContent-Disposition: form-data\r\n\r\nv\r\n--B--",
         PostParseResult.FAILED_INVALID_POST_FORMAT),
        (b"multipart/form-data; boundary=B",
         b"--B\r\nContent-Disposition: form-data; name=a\r\nX: " + b"p" * 5000 + b"\r\n\r\nv\r\n--B--",
         PostParseResult.FAILED_NO_LARGE_BUF_MEM),
        (b"multipart/form-data; boundary=B",
         b"--B\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n" * 10_000 + b"--B--",
         PostParseResult.FAILED_NO_POOL_MEM),
        (b"application/x-www-form-urlencoded", b"", PostParseResult.REQUEST_EMPTY),
    ],
)
async def test_malformed_bodies_reach_done_cb(
    content_type: bytes | None, body: bytes, expected: PostParseResult,
) -> None:
    seen = Seen()
    async with running(make_app(seen)) as daemon:
        raw = await exchange(daemon, post(content_type, body))
        assert status_of(raw) == (200 if expected.is_ok else 400)
        assert seen.results == [expected]
        # the daemon keeps serving
        again = await exchange(daemon, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert again.endswith(b"alive")


async def test_without_stream_reader_large_values_exhaust_the_buffer() -> None:
    seen = Seen()

    def done(request: mhd2.Request, result: PostParseResult) -> Any:
        seen.results.append(result)
        return mhd2.upload_action_from_response(request, mhd2.Response.from_empty(204))

    def cb(request: mhd2.Request) -> mhd2.Action:
        return action_parse_post(request, 1000, 10, PostEncoding.OTHER, None, done)

    async with running(cb) as daemon:
        raw = await exchange(daemon, post(b"application/x-www-form-urlencoded", b"a=" + b"v" * 999))
        assert status_of(raw) == 204 and seen.results == [PostParseResult.OK]
        raw = await exchange(daemon, post(b"application/x-www-form-urlencoded", b"a=" + b"v" * 1001))
        assert status_of(raw) == 204 and seen.results[-1] is PostParseResult.FAILED_NO_LARGE_BUF_MEM


async def test_shared_pool_exhausted() -> None:
    seen = Seen()
    async with running(make_app(seen, max_nonstream_size=100_000, buffer_size=100_000),
                       large_pool_size=1000) as daemon:
        raw = await exchange(daemon, post(b"application/x-www-form-urlencoded", b"a=" + b"v" * 2000))
        assert status_of(raw) == 400
        assert seen.results == [PostParseResult.FAILED_NO_LARGE_BUF_MEM]
        # the reservation was given back: a small form still fits
        raw = await exchange(daemon, post(b"application/x-www-form-urlencoded", b"a=" + b"v" * 900))
        assert status_of(raw) == 200
        assert daemon_pool_in_use(daemon) in (0, None)


def daemon_pool_in_use(daemon: mhd2.Daemon) -> int | None:
    pool = daemon._shared.large_pool
    return getattr(pool, "in_use", None)


async def test_reader_suspend_and_resume() -> None:
    parked: list[mhd2.Request] = []
    seen = Seen()

    def reader(request: mhd2.Request, name: str, filename: str | None, content_type: str | None,
               transfer_encoding: str | None, data: bytes, offset: int, final: bool) -> Any:
        seen.sizes[name] = offset + len(data)
        if offset == 0 and not final:
            parked.append(request)
            return mhd2.upload_action_suspend(request)
        return mhd2.upload_action_continue(request)

    def done(request: mhd2.Request, result: PostParseResult) -> Any:
        seen.results.append(result)
        return mhd2.upload_action_from_response(request, mhd2.Response.from_buffer_copy(200, b"done"))

    def cb(request: mhd2.Request) -> mhd2.Action:
        return action_parse_post(request, 4096, 16, PostEncoding.OTHER, reader, done)

    body = b"big=" + b"z" * 50_000 + b"&small=1"
    async with running(cb) as daemon:
        async with trio.open_nursery() as nursery:
            result: list[bytes] = []

            async def client() -> None:
                result.append(await exchange(daemon, post(b"application/x-www-form-urlencoded", body)))

            nursery.start_soon(client)
            # In memory: once every task waits, the request has parked and
            # stays so (nothing is left to run), not merely "after 0.1 s".
            with trio.fail_after(WAIT):
                await trio.testing.wait_all_tasks_blocked()
            assert parked
            assert seen.results == []  # parked
            mhd2.request_resume(parked[0])
    assert result[0].endswith(b"done")
    assert seen.results == [PostParseResult.OK]
    assert seen.sizes["big"] == 50_000


async def test_reader_response_ends_parsing_early() -> None:
    seen = Seen()

    def reader(request: mhd2.Request, *args: Any) -> Any:
        return mhd2.upload_action_from_response(request, mhd2.Response.from_buffer_copy(413, b"too big"))

    def done(request: mhd2.Request, result: PostParseResult) -> Any:
        seen.results.append(result)
        return mhd2.upload_action_from_response(request, mhd2.Response.from_empty(200))

    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.method != "POST":
            return mhd2.action_from_response(request, mhd2.Response.from_buffer_copy(200, b"alive"))
        return action_parse_post(request, 4096, 16, PostEncoding.OTHER, reader, done)

    async with running(cb) as daemon:
        raw = await exchange(daemon, post(b"application/x-www-form-urlencoded", b"f=" + b"x" * 100_000))
        assert status_of(raw) == 413 and seen.results == []
        again = await exchange(daemon, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert again.endswith(b"alive")


async def test_bad_arguments() -> None:
    def cb(request: mhd2.Request) -> mhd2.Action:
        with pytest.raises(mhd2.UsageError):
            action_parse_post(request, -1, 0, PostEncoding.OTHER, None, lambda *a: None)
        with pytest.raises(mhd2.UsageError):
            action_parse_post(request, 1, 0, "urlencoded", None, lambda *a: None)  # type: ignore[arg-type]
        return mhd2.action_from_response(request, mhd2.Response.from_empty(204))

    async with running(cb) as daemon:
        raw = await exchange(daemon, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status_of(raw) == 204


async def test_reader_exception_is_a_500_and_frees_the_pool() -> None:
    def reader(request: mhd2.Request, *args: Any) -> Any:
        raise RuntimeError("application bug")

    def done(request: mhd2.Request, result: PostParseResult) -> Any:
        return mhd2.upload_action_from_response(request, mhd2.Response.from_empty(200))

    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.method != "POST":
            return mhd2.action_from_response(request, mhd2.Response.from_buffer_copy(200, b"alive"))
        return action_parse_post(request, 4096, 100, PostEncoding.OTHER, reader, done)

    async with running(cb) as daemon:
        body = b"small=" + b"s" * 50 + b"&big=" + b"x" * 10_000
        raw = await exchange(daemon, post(b"application/x-www-form-urlencoded", body))
        assert status_of(raw) == 500
        again = await exchange(daemon, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert again.endswith(b"alive")
        assert daemon_pool_in_use(daemon) == 0


async def test_reader_returning_an_action_of_an_earlier_call_is_a_500() -> None:
    """Each reader call must return the upload action made in that call (Slot.call):
    one kept from the call before is a usage error (logged, 500), as for the
    request callback; the parser's pool share is given back."""
    kept: list[mhd2.UploadAction] = []
    errors: list[BaseException | None] = []

    def reader(request: mhd2.Request, *args: Any) -> Any:
        if kept:
            return kept[0]  # the stale action, not a new one
        kept.append(mhd2.upload_action_continue(request))
        return kept[0]

    def done(request: mhd2.Request, result: PostParseResult) -> Any:
        return mhd2.upload_action_from_response(request, mhd2.Response.from_empty(200))

    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.method != "POST":
            return mhd2.action_from_response(request, mhd2.Response.from_buffer_copy(200, b"alive"))
        return action_parse_post(request, 4096, 10, PostEncoding.OTHER, reader, done)

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            errors.append(record.exc_info[1] if record.exc_info else None)

    handler = Catch(logging.ERROR)
    logging.getLogger("mhd2").addHandler(handler)
    try:
        async with running(cb) as daemon:
            body = b"big=" + b"x" * 50 + b"&more=" + b"y" * 50
            # (Content-Length framing; the two fields reach the reader in two calls at least)
            raw = await exchange(daemon, post(b"application/x-www-form-urlencoded", body))
            assert status_of(raw) == 500
            again = await exchange(daemon, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert again.endswith(b"alive")
            assert daemon_pool_in_use(daemon) == 0
    finally:
        logging.getLogger("mhd2").removeHandler(handler)
    assert any(isinstance(e, mhd2.UsageError) and "'reader' must return an upload action" in str(e)
               for e in errors), errors


async def test_client_gone_mid_body_gives_the_pool_back() -> None:
    seen = Seen()
    async with running(make_app(seen, max_nonstream_size=100_000, buffer_size=100_000)) as daemon:
        with trio.fail_after(WAIT):
            stream = await open_stream(daemon)
            head = post(b"application/x-www-form-urlencoded", b"a=" + b"v" * 60_000)
            await stream.send_all(head[: len(head) - 30_000])
            await trio.testing.wait_all_tasks_blocked()  # in memory: the body was taken
            assert (daemon_pool_in_use(daemon) or 0) > 0
            await stream.aclose()
            await trio.testing.wait_all_tasks_blocked()
            # The parser's share is given back when the request ends
            # (CLIENT_ABORT), without waiting for garbage collection.
            assert daemon_pool_in_use(daemon) == 0
        assert seen.results == []
