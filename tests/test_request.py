"""What the application sees of a request (real sockets)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio
from conftest import exchange, open_stream, running, status_of, text_response

import mhd2

CLOSE = b"Connection: close\r\n"


async def capture(raw: bytes, **options: Any) -> mhd2.Request:
    """Send *raw* to a daemon and return the Request its callback saw."""
    seen: list[mhd2.Request] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        seen.append(request)
        return text_response(request)

    async with running(cb, **options) as daemon:
        reply = await exchange(daemon, raw)
    assert status_of(reply) == 200
    assert len(seen) == 1
    return seen[0]


async def test_request_line_values() -> None:
    request = await capture(b"GET /a%20b/c%2Fd?x=1&y=two+words&x=2 HTTP/1.1\r\nHost: h\r\n" + CLOSE + b"\r\n")
    assert request.method == "GET"
    assert request.http_method is mhd2.HTTPMethod.GET
    assert request.uri == "/a%20b/c%2Fd?x=1&y=two+words&x=2"
    assert request.path == "/a b/c/d"
    assert request.version == "HTTP/1.1"
    assert request.http_version is mhd2.HTTPVersion.HTTP_1_1
    assert request.upload_size == 0
    assert request.get_values(mhd2.ValueKind.GET_ARGUMENT) == [
        ("x", "1"), ("y", "two words"), ("x", "2")]
    assert request.get_value(mhd2.ValueKind.GET_ARGUMENT, "x") == "1"
    assert request.args == {"x": "1", "y": "two words"}
    assert request.client_address[0] == "127.0.0.1"
    assert request.connection.client_address == request.client_address


async def test_plus_in_query_kept_when_disabled() -> None:
    request = await capture(b"GET /?q=a+b HTTP/1.1\r\nHost: h\r\n" + CLOSE + b"\r\n",
                            uri_query_plus_as_space=False)
    assert request.args["q"] == "a+b"


async def test_extension_method_and_http10() -> None:
    request = await capture(b"PURGE /x HTTP/1.0\r\n\r\n")
    assert request.method == "PURGE"
    assert request.http_method is mhd2.HTTPMethod.OTHER
    assert request.version == "HTTP/1.0"


async def test_headers_in_order_case_kept_and_case_insensitive_lookup() -> None:
    request = await capture(b"GET / HTTP/1.1\r\nHost: h\r\nX-Multi: 1\r\nx-multi: 2\r\n"
                            b"User-Agent: test/1\r\n" + CLOSE + b"\r\n")
    assert request.get_values(mhd2.ValueKind.HEADER)[:3] == [
        ("Host", "h"), ("X-Multi", "1"), ("x-multi", "2")]
    assert request.get_value(mhd2.ValueKind.HEADER, "USER-AGENT") == "test/1"
    assert request.get_value(mhd2.ValueKind.HEADER, "missing") is None
    assert request.headers["x-MULTI"] == "1"
    assert request.headers.get_all("X-Multi") == ["1", "2"]
    assert "user-agent" in request.headers
    with pytest.raises(TypeError):
        request.headers["new"] = "x"  # type: ignore[index]


async def test_cookies() -> None:
    raw = b"GET / HTTP/1.1\r\nHost: h\r\nCookie: a=1; b=\"two\"\r\nCookie: c=3\r\n" + CLOSE + b"\r\n"
    request = await capture(raw)
    assert request.cookies == {"a": "1", "b": "two", "c": "3"}
    assert request.get_value(mhd2.ValueKind.COOKIE, "b") == "two"
    both = request.get_values(mhd2.ValueKind.COOKIE | mhd2.ValueKind.GET_ARGUMENT)
    assert ("c", "3") in both
    disabled = await capture(raw, disable_cookies=True)
    assert disabled.cookies == {}
    assert disabled.get_value(mhd2.ValueKind.COOKIE, "a") is None


async def test_upload_size_from_content_length_and_chunked() -> None:
    sized = await capture(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n" + CLOSE
                          + b"\r\nabc")
    assert sized.upload_size == 3
    chunked = await capture(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                            + CLOSE + b"\r\n3\r\nabc\r\n0\r\n\r\n")
    assert chunked.upload_size is None


async def test_app_context_and_early_uri_logger() -> None:
    logged: list[tuple[str, str]] = []

    def early(request: mhd2.Request, uri: str, method: str) -> None:
        logged.append((uri, method))
        request.app_context = {"seen_early": uri}

    contexts: list[Any] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        contexts.append(request.app_context)
        return text_response(request)

    async with running(cb, early_uri_logger=early) as daemon:
        await exchange(daemon, b"GET /p?q=%41 HTTP/1.1\r\nHost: h\r\n" + CLOSE + b"\r\n")
    assert logged == [("/p?q=%41", "GET")]
    assert contexts == [{"seen_early": "/p?q=%41"}]


async def test_request_ended_once_per_request_with_request_object() -> None:
    ended: list[tuple[str, mhd2.RequestEndedCode]] = []
    async with running(text_response,
                       notify_request_ended=lambda r, c: ended.append((r.path, c))) as daemon:
        stream = await open_stream(daemon)
        await stream.send_all(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n"
                              + CLOSE + b"\r\n")
        with trio.fail_after(5):
            while await stream.receive_some(65536):
                pass
        await stream.aclose()
    assert ended == [("/1", mhd2.RequestEndedCode.COMPLETED_OK),
                     ("/2", mhd2.RequestEndedCode.COMPLETED_OK)]


# -- raw_headers: the header lines as bytes ------------------------------------------


def _lowered(request: mhd2.Request) -> list[tuple[bytes, bytes]]:
    """What raw_headers must equal: get_values' pairs, names lower-cased, as bytes."""
    return [(name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in request.get_values(mhd2.ValueKind.HEADER)]


@pytest.mark.parametrize("head", [
    # the parser's fast path: names as sent, padding, a duplicate, a Latin-1 byte
    b"GET / HTTP/1.1\r\nHost: h\r\nX-Mixed-Case:  v1 \t\r\nx-mixed-case: v2\r\n"
    b"Accept: \xe9t\xe9\r\n" + CLOSE + b"\r\n",
    # a head the fast path refers to h11 (Transfer-Encoding, Expect, Upgrade)
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n" + CLOSE
    + b"\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: Foo\r\nConnection: Upgrade, close\r\n\r\n",
])
async def test_raw_headers_are_the_lines_as_bytes_with_lower_case_names(head: bytes) -> None:
    request = await capture(head)
    raw = request.raw_headers
    assert raw == _lowered(request)
    assert all(type(n) is bytes and type(v) is bytes and n == n.lower() for n, v in raw)
    assert raw[0] == (b"host", b"h")


async def test_raw_headers_keep_duplicates_and_give_a_new_list_each_time() -> None:
    request = await capture(b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\na: 3\r\n" + CLOSE
                            + b"\r\n")
    first = request.raw_headers
    assert first == [(b"host", b"h"), (b"a", b"1"), (b"b", b"2"), (b"a", b"3"),
                     (b"connection", b"close")]
    first.clear()
    assert len(request.raw_headers) == 5


async def test_raw_headers_over_http2() -> None:
    seen: list[mhd2.Request] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        seen.append(request)
        return text_response(request)

    async with running(cb) as daemon, httpx.AsyncClient(
            http1=False, http2=True, base_url=f"http://127.0.0.1:{daemon.port}") as client:
        reply = await client.get("/", headers={"X-Two": "2", "Cookie": "a=1"})
    assert reply.status_code == 200 and reply.http_version == "HTTP/2"
    request = seen[0]
    raw = request.raw_headers
    assert raw == _lowered(request)
    assert raw[0][0] == b"host" and (b"x-two", b"2") in raw and (b"cookie", b"a=1") in raw
