"""Every response constructor, header rule, option and framing rule over real sockets."""

from __future__ import annotations

import email.utils
import os
import re
import time
from pathlib import Path

import pytest
import trio
from rawhttp import Counter, Ends, Message, connect, daemon, fetch, serve

import mhd2

WAIT = 10.0
Code = mhd2.RequestEndedCode




def assert_fd_closed(fd: int) -> None:
    with pytest.raises(OSError):
        os.fstat(fd)


# -- constructors ---------------------------------------------------------------------


async def test_from_buffer_free_cb_once_after_sending() -> None:
    big = b"x" * (32 << 20)  # far more than the socket buffers: the send is in progress
    freed = Counter()
    ends = Ends()
    calls_at_action: list[int] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        action = mhd2.action_from_response(request, mhd2.Response.from_buffer(200, big, freed))
        calls_at_action.append(freed.calls)
        return action

    async with daemon(cb, notify_request_ended=ends) as port:
        async with connect(port) as client:
            await client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            head = await client.head()
            assert head.get("content-length") == str(len(big))
            first = await client.exact(65536)
            assert freed.calls == 0  # still sending
            rest = await client.exact(len(big) - len(first))
            assert first + rest == big
            await freed.wait()
            assert await ends.wait() == [Code.COMPLETED_OK]
            # the connection is still usable, and nothing is freed twice
            await client.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            msg = await client.response()
            assert len(msg.body) == len(big)
            await freed.wait(2)
    assert calls_at_action == [0, 1]
    assert freed.calls == 2


async def test_reusable_free_cb_once_after_destroy_with_sends_in_flight() -> None:
    big = b"y" * (16 << 20)
    freed = Counter()
    ends = Ends()
    response = mhd2.Response.from_buffer(200, big, freed)
    response.set_options(reusable=True)

    async with daemon(serve(lambda r: response), notify_request_ended=ends) as port:
        async with connect(port) as a, connect(port) as b:
            for c in (a, b):
                await c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                head = await c.head()
                assert head.status == 200
                await c.exact(1024)
            response.destroy()
            assert freed.calls == 0  # two sends in flight
            assert await a.exact(len(big) - 1024) == big[1024:]
            assert await b.exact(len(big) - 1024) == big[1024:]
            await ends.wait(2)
            await freed.wait()
            # destroyed: a new request cannot use it any more -> 500
            await a.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            msg = await a.response()
            assert msg.head.status == 500
    assert freed.calls == 1
    assert ends.codes[:2] == [Code.COMPLETED_OK, Code.COMPLETED_OK]


async def test_from_buffer_static() -> None:
    data = b"static body\n"
    async with daemon(serve(lambda r: mhd2.Response.from_buffer_static(200, data))) as port:
        msg = await fetch(port)
    assert msg.head.status == 200
    assert msg.head.get("content-length") == str(len(data))
    assert msg.body == data


async def test_from_buffer_copy_is_a_copy() -> None:
    source = bytearray(b"original")
    view = memoryview(bytearray(b"view-data"))
    responses = [mhd2.Response.from_buffer_copy(200, source),
                 mhd2.Response.from_buffer_copy(200, view)]
    source[:] = b"CHANGED!"
    view[:4] = b"XXXX"
    async with daemon(serve(lambda r: responses.pop(0))) as port:
        first = await fetch(port)
        second = await fetch(port)
    assert first.body == b"original"
    assert second.body == b"view-data"


async def test_from_empty_content_length_zero_and_keep_alive() -> None:
    async with daemon(serve(lambda r: mhd2.Response.from_empty(200))) as port:
        async with connect(port) as client:
            for _ in range(2):
                msg = await client.request()
                assert msg.head.status == 200
                assert msg.head.get("content-length") == "0"
                assert msg.head.get("transfer-encoding") is None
                assert msg.body == b""


@pytest.mark.parametrize("scale", [1, 1000], ids=["small", "over-16KiB"])
async def test_from_iovec_concatenates(scale: int) -> None:
    parts: list[bytes | bytearray | memoryview] = [
        b"ab" * scale,
        memoryview(b"cdef" * scale),
        bytearray(b"g" * scale),
        memoryview(bytes(range(256)) * scale)[3:],
        b"",
    ]
    expected = b"".join(bytes(p) for p in parts)
    assert (len(expected) > 16 * 1024) == (scale > 1)
    freed = Counter()
    ends = Ends()
    async with daemon(serve(lambda r: mhd2.Response.from_iovec(200, parts, freed)),
                      notify_request_ended=ends) as port:
        msg = await fetch(port)
        await ends.wait()
        await freed.wait()
    assert msg.head.get("content-length") == str(len(expected))
    assert msg.body == expected
    assert freed.calls == 1


async def test_from_iovec_chunked_option() -> None:
    parts: list[bytes | bytearray | memoryview] = [b"a" * 20000, memoryview(b"b" * 100)]

    def make(r: mhd2.Request) -> mhd2.Response:
        resp = mhd2.Response.from_iovec(200, parts)
        resp.set_options(chunked=True)
        return resp

    async with daemon(serve(make)) as port:
        msg = await fetch(port)
    assert msg.head.get("transfer-encoding") == "chunked"
    assert msg.head.get("content-length") is None
    assert msg.body == b"a" * 20000 + b"b" * 100


@pytest.fixture
def data_file(tmp_path: Path) -> tuple[Path, bytes]:
    data = os.urandom(3 << 20)  # 3 MiB: sendfile in several rounds
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return path, data


@pytest.mark.parametrize(("offset", "size"), [(0, None), (1000, 5000), (123, None), (0, 0)])
async def test_from_fd_ranges(data_file: tuple[Path, bytes], offset: int, size: int | None) -> None:
    path, data = data_file
    fds: list[int] = []
    ends = Ends()

    def make(r: mhd2.Request) -> mhd2.Response:
        fd = os.open(path, os.O_RDONLY)
        fds.append(fd)
        return mhd2.Response.from_fd(200, fd, offset, size)

    async with daemon(serve(make), notify_request_ended=ends) as port:
        msg = await fetch(port)
        await ends.wait()
        assert_fd_closed(fds[0])
    expected = data[offset:] if size is None else data[offset:offset + size]
    assert msg.head.get("content-length") == str(len(expected))
    assert msg.body == expected
    assert ends.codes == [Code.COMPLETED_OK]


async def test_from_fd_chunked_and_http10(data_file: tuple[Path, bytes]) -> None:
    path, data = data_file

    def make(r: mhd2.Request) -> mhd2.Response:
        resp = mhd2.Response.from_fd(200, os.open(path, os.O_RDONLY), 10, 100_000)
        resp.set_options(chunked=True)
        return resp

    async with daemon(serve(make)) as port:
        chunked = await fetch(port)
        old = await fetch(port, version="1.0")
    assert chunked.head.get("transfer-encoding") == "chunked"
    assert chunked.body == data[10:100_010]
    assert old.head.get("transfer-encoding") is None
    assert old.head.get("content-length") == "100000"
    assert old.body == data[10:100_010]


def test_from_fd_refuses_pipe_and_closes_it() -> None:
    r, w = os.pipe()
    try:
        with pytest.raises(mhd2.UsageError):
            mhd2.Response.from_fd(200, r)
        assert_fd_closed(r)
    finally:
        os.close(w)


def test_from_fd_refuses_directory_and_closes_it(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY)
    with pytest.raises(mhd2.UsageError):
        mhd2.Response.from_fd(200, fd)
    assert_fd_closed(fd)


def test_unused_from_fd_destroy_closes(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    resp = mhd2.Response.from_fd(200, fd)
    resp.destroy()
    assert_fd_closed(fd)


@pytest.mark.parametrize("version", ["1.1", "1.0"])
async def test_from_pipe_small(version: str) -> None:
    fds: list[int] = []
    ends = Ends()

    def make(req: mhd2.Request) -> mhd2.Response:
        r, w = os.pipe()
        os.write(w, b"from a pipe\n")
        os.close(w)
        fds.append(r)
        return mhd2.Response.from_pipe(200, r)

    async with daemon(serve(make), notify_request_ended=ends) as port:
        async with connect(port) as client:
            msg = await client.request(version=version)
            assert msg.body == b"from a pipe\n"
            assert msg.head.get("content-length") is None
            if version == "1.1":
                assert msg.head.get("transfer-encoding") == "chunked"
                # keep-alive: a second request on the same connection
                again = await client.request()
                assert again.body == b"from a pipe\n"
            else:
                assert msg.head.get("transfer-encoding") is None
                assert msg.head.get("connection") == "close"
        await ends.wait(len(fds))
        for fd in fds:
            assert_fd_closed(fd)


async def test_from_pipe_large_written_by_a_thread() -> None:
    payload = os.urandom(1 << 20)
    fds: list[int] = []
    writer_done = trio.Event()

    def write_all(w: int) -> None:
        with os.fdopen(w, "wb") as f:
            f.write(payload)

    async def cb(req: mhd2.Request) -> mhd2.Action:
        r, w = os.pipe()
        fds.append(r)

        async def writer() -> None:
            await trio.to_thread.run_sync(write_all, w)
            writer_done.set()

        nursery.start_soon(writer)
        return mhd2.action_from_response(req, mhd2.Response.from_pipe(200, r))

    async with trio.open_nursery() as nursery:
        async with daemon(cb) as port:
            msg = await fetch(port)
            with trio.fail_after(WAIT):
                await writer_done.wait()
    assert msg.head.get("transfer-encoding") == "chunked"
    assert msg.body == payload


def test_from_pipe_cannot_be_reusable() -> None:
    r, w = os.pipe()
    os.close(w)
    resp = mhd2.Response.from_pipe(200, r)
    with pytest.raises(mhd2.UsageError):
        resp.set_options(reusable=True)
    resp.destroy()
    assert_fd_closed(r)


# -- header rules ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["X Bad", "X:Bad", "X(Bad)", "", "X-Ä", "X\tBad", "X\r\nY"])
def test_header_name_invalid(name: str) -> None:
    resp = mhd2.Response.from_empty(200)
    with pytest.raises(mhd2.ResponseHeaderError) as info:
        resp.add_header(name, "v")
    assert info.value.code == mhd2.StatusCode.RESP_HEADER_NAME_INVALID
    assert isinstance(info.value, mhd2.UsageError)


@pytest.mark.parametrize("value", ["a\rb", "a\nb", "a\tb", "a\r\nX-Injected: 1"])
def test_header_value_invalid(value: str) -> None:
    resp = mhd2.Response.from_empty(200)
    with pytest.raises(mhd2.ResponseHeaderError) as info:
        resp.add_header("X-Test", value)
    assert info.value.code == mhd2.StatusCode.RESP_HEADER_VALUE_INVALID
    assert resp.headers == []


def test_response_header_error_is_usage_error() -> None:
    assert issubclass(mhd2.ResponseHeaderError, mhd2.UsageError)


@pytest.mark.parametrize(
    ("name", "value"),
    [("Transfer-Encoding", "gzip"), ("Connection", "upgrade"), ("Content-Length", "3")],
)
def test_header_not_allowed(name: str, value: str) -> None:
    resp = mhd2.Response.from_empty(200)
    with pytest.raises(mhd2.ResponseHeaderError):
        resp.add_header(name, value)


async def test_transfer_encoding_chunked_forces_chunked() -> None:
    def make(r: mhd2.Request) -> mhd2.Response:
        resp = mhd2.Response.from_buffer_copy(200, b"hello")
        resp.add_header("Transfer-Encoding", "chunked")
        return resp

    async with daemon(serve(make)) as port:
        msg = await fetch(port)
    assert msg.head.count("transfer-encoding") == 1
    assert msg.head.get("transfer-encoding") == "chunked"
    assert msg.head.get("content-length") is None
    assert msg.body == b"hello"
    assert msg.size_lines == [b"5\r\n", b"0\r\n"]


async def test_connection_close_header_closes() -> None:
    def make(r: mhd2.Request) -> mhd2.Response:
        resp = mhd2.Response.from_buffer_copy(200, b"bye")
        resp.add_header("Connection", "close")
        return resp

    async with daemon(serve(make)) as port:
        async with connect(port) as client:
            msg = await client.request()
            assert msg.body == b"bye"
            assert msg.head.count("connection") == 1
            assert msg.head.get("connection") == "close"
            assert await client.at_eof()


async def test_content_length_only_with_insanity_option() -> None:
    def make(r: mhd2.Request) -> mhd2.Response:
        resp = mhd2.Response.from_buffer_copy(200, b"abc")
        with pytest.raises(mhd2.ResponseHeaderError):
            resp.add_header("Content-Length", "3")
        resp.set_options(insanity_header_content_length=True)
        resp.add_header("Content-Length", "3")
        return resp

    async with daemon(serve(make)) as port:
        msg = await fetch(port)
    assert msg.head.count("content-length") == 1
    assert msg.head.get("content-length") == "3"
    assert msg.body == b"abc"


async def test_predefined_header() -> None:
    def make(r: mhd2.Request) -> mhd2.Response:
        resp = mhd2.Response.from_empty(200)
        resp.add_predef_header(mhd2.PredefinedHeader.ACCEPT_LANGUAGE, "en")
        resp.add_header("X-Custom", "  spaced value")
        return resp

    async with daemon(serve(make)) as port:
        msg = await fetch(port)
    assert b"\r\nAccept-Language: en\r\n" in msg.head.raw
    assert msg.head.get("x-custom") == "spaced value"


# -- options ---------------------------------------------------------------------------


async def test_reusable_concurrent_and_sequential() -> None:
    ends = Ends()
    term: list[mhd2.RequestEndedCode] = []
    response = mhd2.Response.from_buffer_copy(200, b"shared " * 1000)
    response.set_options(reusable=True, termination_callback=lambda r, c: term.append(c))
    results: list[Message] = []

    async def one() -> None:
        results.append(await fetch(port))

    async with daemon(serve(lambda r: response), notify_request_ended=ends) as port:
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(one)
        async with connect(port) as client:
            for _ in range(5):
                results.append(await client.request())
        await ends.wait(25)
    response.destroy()
    assert len(results) == 25
    assert all(m.head.status == 200 and m.body == b"shared " * 1000 for m in results)
    assert term == [Code.COMPLETED_OK] * 25


async def test_not_reusable_second_use_is_usage_error() -> None:
    response = mhd2.Response.from_buffer_copy(200, b"once")
    errors: list[BaseException] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        try:
            return mhd2.action_from_response(request, response)
        except mhd2.UsageError as exc:
            errors.append(exc)
            raise

    async with daemon(cb) as port:
        first = await fetch(port)
        second = await fetch(port)
    assert first.head.status == 200 and first.body == b"once"
    assert second.head.status == 500
    assert len(errors) == 1


async def test_head_only_option() -> None:
    def make(r: mhd2.Request) -> mhd2.Response:
        resp = mhd2.Response.from_buffer_copy(200, b"twelve bytes")
        resp.set_options(head_only=True)
        return resp

    async with daemon(serve(make)) as port:
        async with connect(port) as client:
            await client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            head = await client.head()
            assert head.get("content-length") == "12"
            # no body: the next bytes are the next response's status line
            await client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            again = await client.head()
            assert again.status == 200
            assert again.get("content-length") == "12"


@pytest.mark.parametrize("version", ["1.1", "1.0"])
async def test_chunked_option(version: str) -> None:
    def make(r: mhd2.Request) -> mhd2.Response:
        resp = mhd2.Response.from_buffer_copy(200, b"known size")
        resp.set_options(chunked=True)
        return resp

    async with daemon(serve(make)) as port:
        msg = await fetch(port, version=version)
    assert msg.body == b"known size"
    if version == "1.1":
        assert msg.head.get("transfer-encoding") == "chunked"
        assert msg.head.get("content-length") is None
    else:
        assert msg.head.get("transfer-encoding") is None
        assert msg.head.get("content-length") == "10"


async def test_conn_close_option() -> None:
    def make(r: mhd2.Request) -> mhd2.Response:
        resp = mhd2.Response.from_buffer_copy(200, b"closing")
        resp.set_options(conn_close=True)
        return resp

    async with daemon(serve(make)) as port:
        async with connect(port) as client:
            msg = await client.request(headers=(("Connection", "keep-alive"),))
            assert msg.head.get("connection") == "close"
            assert msg.body == b"closing"
            assert await client.at_eof()


async def test_http10_compatible_strict() -> None:
    def make(r: mhd2.Request) -> mhd2.Response:
        if r.path == "/pipe":
            rfd, wfd = os.pipe()
            os.write(wfd, b"unknown size")
            os.close(wfd)
            resp = mhd2.Response.from_pipe(200, rfd)
        else:
            resp = mhd2.Response.from_buffer_copy(200, b"known")
        resp.set_options(http10_compatible_strict=True)
        return resp

    async with daemon(serve(make)) as port:
        async with connect(port) as client:
            msg = await client.request("/pipe")
            assert msg.head.get("transfer-encoding") is None
            assert msg.head.get("content-length") is None
            assert msg.head.get("connection") == "close"
            assert msg.body == b"unknown size"  # close-delimited
        async with connect(port) as client:
            msg = await client.request("/known")
            assert msg.head.get("content-length") == "5"
            assert msg.head.get("connection") == "close"
            assert msg.body == b"known"
            assert await client.at_eof()


def _http10_server_response(r: mhd2.Request) -> mhd2.Response:
    resp = mhd2.Response.from_buffer_copy(200, b"old")
    resp.set_options(http10_server=True)
    return resp


async def test_http10_server_closes_unless_asked() -> None:
    async with daemon(serve(_http10_server_response)) as port:
        async with connect(port) as client:
            msg = await client.request()
            assert msg.head.version == "HTTP/1.0"
            assert msg.head.get("transfer-encoding") is None
            assert msg.head.get("connection") == "close"
            assert msg.body == b"old"
            assert await client.at_eof()


async def test_http10_server_keep_alive_when_asked() -> None:
    async with daemon(serve(_http10_server_response)) as port:
        async with connect(port) as client:
            for _ in range(2):
                msg = await client.request(headers=(("Connection", "keep-alive"),))
                assert msg.head.version == "HTTP/1.0"
                assert msg.body == b"old"
                assert msg.head.get("connection") == "keep-alive"


async def test_http10_server_http10_client_keep_alive() -> None:
    async with daemon(serve(_http10_server_response)) as port:
        async with connect(port) as client:
            for _ in range(2):
                msg = await client.request(version="1.0", headers=(("Connection", "keep-alive"),))
                assert msg.head.version == "HTTP/1.0"
                assert msg.head.get("connection") == "keep-alive"
                assert msg.body == b"old"


async def test_termination_callback_once_per_request() -> None:
    calls: list[tuple[str, mhd2.RequestEndedCode]] = []
    ends = Ends()

    def make(r: mhd2.Request) -> mhd2.Response:
        resp = mhd2.Response.from_buffer_copy(200, b"t")
        resp.set_options(termination_callback=lambda req, code: calls.append((req.path, code)))
        return resp

    async with daemon(serve(make), notify_request_ended=ends) as port:
        async with connect(port) as client:
            await client.request("/a")
            await client.request("/b")
        await ends.wait(2)
    assert calls == [("/a", Code.COMPLETED_OK), ("/b", Code.COMPLETED_OK)]


async def test_frozen_after_use() -> None:
    errors: list[type[BaseException]] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        resp = mhd2.Response.from_buffer_copy(200, b"frozen")
        action = mhd2.action_from_response(request, resp)
        try:
            resp.add_header("X-Late", "1")
        except mhd2.UsageError as exc:
            errors.append(type(exc))
        try:
            resp.set_options(conn_close=True)
        except mhd2.UsageError as exc:
            errors.append(type(exc))
        return action

    async with daemon(cb) as port:
        async with connect(port) as client:
            msg = await client.request()
            assert msg.head.get("x-late") is None
            assert msg.head.get("connection") is None
            assert (await client.request()).body == b"frozen"  # still kept alive
    assert errors == [mhd2.UsageError] * 4


# -- framing rules ---------------------------------------------------------------------


async def test_head_same_headers_as_get_no_body_and_reusable() -> None:
    def make(r: mhd2.Request) -> mhd2.Response:
        resp = mhd2.Response.from_buffer_copy(200, b"0123456789")
        resp.add_header("Content-Type", "text/plain")
        return resp

    async with daemon(serve(make)) as port:
        async with connect(port) as client:
            get = await client.request()
            head = await client.request(method="HEAD")
            assert head.head.status == 200
            assert client.buf == b""  # no body bytes after the HEAD head
            again = await client.request()
            assert again.body == b"0123456789"
    strip = [h for h in get.head.headers if h[0] != "date"]
    assert [h for h in head.head.headers if h[0] != "date"] == strip
    assert head.head.get("content-length") == "10"


@pytest.mark.parametrize("status", [204, 304])
async def test_no_body_statuses(status: int) -> None:
    async with daemon(serve(lambda r: mhd2.Response.from_buffer_copy(status, b"ignored"))) as port:
        async with connect(port) as client:
            msg = await client.request()
            assert msg.head.status == status
            assert msg.head.get("content-length") is None
            assert msg.head.get("transfer-encoding") is None
            follow = await client.request()  # no stray body bytes in between
            assert follow.head.status == status


async def test_1xx_has_no_body_and_no_length() -> None:
    cb = serve(lambda r: mhd2.Response.from_buffer_copy(103, b"ignored"))
    async with daemon(cb) as port:
        async with connect(port) as client:
            await client.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            raw = await client.until_eof()
    assert raw.startswith(b"HTTP/1.1 103 ")
    assert raw.endswith(b"\r\n\r\n")
    assert b"content-length" not in raw.lower()
    assert b"ignored" not in raw


async def test_unknown_size_framing_by_version() -> None:
    def make(req: mhd2.Request) -> mhd2.Response:
        r, w = os.pipe()
        os.write(w, b"abc")
        os.close(w)
        return mhd2.Response.from_pipe(200, r)

    async with daemon(serve(make)) as port:
        new = await fetch(port)
        old = await fetch(port, version="1.0", headers=(("Connection", "keep-alive"),))
    assert new.head.get("transfer-encoding") == "chunked"
    assert new.body == b"abc"
    assert old.head.get("transfer-encoding") is None
    assert old.head.get("connection") == "close"  # close-delimited despite keep-alive
    assert old.body == b"abc"


_DATE = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT")


async def test_date_header_format_and_suppression() -> None:
    cb = serve(lambda r: mhd2.Response.from_empty(200))
    async with daemon(cb) as port:
        msg = await fetch(port)
    date = msg.head.get("date")
    assert date is not None and _DATE.fullmatch(date), date
    assert abs(email.utils.parsedate_to_datetime(date).timestamp() - time.time()) < 60
    async with daemon(cb, suppress_date_header=True) as port:
        msg = await fetch(port)
    assert msg.head.get("date") is None


async def test_app_date_header_replaces_the_daemons() -> None:
    def make(r: mhd2.Request) -> mhd2.Response:
        resp = mhd2.Response.from_empty(200)
        resp.add_header("Date", "Sun, 06 Nov 1994 08:49:37 GMT")
        return resp

    async with daemon(serve(make)) as port:
        msg = await fetch(port)
    assert msg.head.count("date") == 1
    assert msg.head.get("date") == "Sun, 06 Nov 1994 08:49:37 GMT"


async def test_http10_client_keep_alive_only_when_asked() -> None:
    cb = serve(lambda r: mhd2.Response.from_buffer_copy(200, b"ten"))
    async with daemon(cb) as port:
        async with connect(port) as client:
            msg = await client.request(version="1.0")
            assert msg.head.get("connection") == "close"
            assert msg.head.get("content-length") == "3"
            assert await client.at_eof()
        async with connect(port) as client:
            for _ in range(2):
                msg = await client.request(version="1.0", headers=(("Connection", "keep-alive"),))
                assert msg.head.get("connection") == "keep-alive"
                assert msg.body == b"ten"


async def test_from_fd_range_past_end_of_file(tmp_path: Path) -> None:
    (tmp_path / "short").write_bytes(b"0123456789")
    fd = os.open(tmp_path / "short", os.O_RDONLY)
    with pytest.raises(mhd2.UsageError):
        mhd2.Response.from_fd(200, fd, 5, 100)
    assert_fd_closed(fd)


async def test_reusable_from_fd_concurrent_then_closed_on_destroy(
        data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    fd = os.open(path, os.O_RDONLY)
    response = mhd2.Response.from_fd(200, fd, 7, 500_000)
    response.set_options(reusable=True)
    ends = Ends()
    results: list[Message] = []

    async def one() -> None:
        results.append(await fetch(port))

    async with daemon(serve(lambda r: response), notify_request_ended=ends) as port:
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(one)
        await ends.wait(5)
        os.fstat(fd)  # still open: the response was not destroyed
        response.destroy()
        assert_fd_closed(fd)
    assert [m.body == data[7:500_007] for m in results] == [True] * 5


@pytest.mark.parametrize("how", ["none", "raise"])
async def test_action_made_then_dropped_frees_once(how: str) -> None:
    freed = Counter()
    ends = Ends()

    def cb(request: mhd2.Request) -> mhd2.Action | None:
        mhd2.action_from_response(request, mhd2.Response.from_buffer(200, b"dropped", freed))
        if how == "raise":
            raise RuntimeError("changed my mind")
        return None

    async with daemon(cb, notify_request_ended=ends) as port:
        async with connect(port) as client:
            await client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            raw = await client.until_eof()
        codes = await ends.wait()
        await freed.wait()
    if how == "raise":
        assert raw.startswith(b"HTTP/1.1 500 ")
        assert codes == [Code.BY_APP_ERROR]
    else:
        assert raw == b""
        assert codes == [Code.BY_APP_ABORT]
    assert freed.calls == 1


async def test_head_with_unknown_size_keeps_connection_and_closes_pipe() -> None:
    fds: list[int] = []
    ends = Ends()

    def make(req: mhd2.Request) -> mhd2.Response:
        r, w = os.pipe()
        os.write(w, b"pipe")
        os.close(w)
        fds.append(r)
        return mhd2.Response.from_pipe(200, r)

    async with daemon(serve(make), notify_request_ended=ends) as port:
        async with connect(port) as client:
            head = await client.request(method="HEAD")
            assert head.head.get("transfer-encoding") == "chunked"
            assert (await client.request()).body == b"pipe"
        await ends.wait(2)
        for fd in fds:
            assert_fd_closed(fd)


async def test_from_fd_file_shrunk_after_construction_closes(tmp_path: Path) -> None:
    path = tmp_path / "shrinks"
    path.write_bytes(b"x" * 1000)
    ends = Ends()

    def make(r: mhd2.Request) -> mhd2.Response:
        resp = mhd2.Response.from_fd(200, os.open(path, os.O_RDONLY))
        os.truncate(path, 10)
        return resp

    async with daemon(serve(make), notify_request_ended=ends) as port:
        async with connect(port) as client:
            await client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            head = await client.head()
            assert head.get("content-length") == "1000"
            rest = await client.until_eof()
        codes = await ends.wait()
    assert rest == b"x" * 10
    assert codes == [Code.FILE_ERROR]
