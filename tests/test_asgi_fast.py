"""The bridge's fast paths give the same bytes as the slow ones.

A complete small response (``http.response.start`` and one last
``http.response.body``) is made once and reused (:func:`mhd2.asgi.responses.whole_response`):
every request, whatever its method, version or ``Connection`` wish, must get
what a freshly made response would have given it.
"""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest
import trio
from conftest import WAIT, exchange, open_stream

import mhd2
import mhd2.asgi
import mhd2.asgi.responses

Scope = dict[str, Any]
BODY = b"Hello, World!"


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    mhd2.asgi.responses._reply_cache.clear()
    mhd2.asgi.responses._reply_seen.clear()


def constant_app(body: Any = BODY, headers: Any = None, status: int = 200) -> Any:
    start = {"type": "http.response.start", "status": status,
             "headers": headers if headers is not None else
             [(b"content-type", b"text/plain"), (b"x-a", b"1")]}

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("no lifespan here")
        await send(dict(start))
        await send({"type": "http.response.body", "body": body})

    return app


def split(response: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    fields = dict(line.lower().split(b": ", 1) for line in lines)
    return status, fields, body


async def test_a_constant_response_is_made_once_and_answers_every_kind_of_request() -> None:
    async with mhd2.asgi.Daemon(constant_app(), port=0) as d:
        with trio.fail_after(WAIT):
            stream = await open_stream(d.port)
            async with stream:
                # keep-alive, then HEAD, then HTTP/1.0, then close, on one connection
                await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
                                      b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
                                      b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                                      b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := await stream.receive_some(65536):
                    data += chunk
    assert len(mhd2.asgi.responses._reply_cache) == 1
    parts = data.split(b"HTTP/1.1 200 OK\r\n")
    assert parts[0] == b"" and len(parts) == 5, data
    for i, part in enumerate(parts[1:]):
        _, fields, body = split(b"HTTP/1.1 200 OK\r\n" + part)
        assert fields[b"content-length"] == b"13"
        assert fields[b"content-type"] == b"text/plain" and fields[b"x-a"] == b"1"
        assert b"date" in fields
        assert body == (b"" if i == 1 else BODY)  # HEAD: the head only
        if i == 2:
            assert fields[b"connection"] == b"keep-alive"  # the HTTP/1.0 client asked
        if i == 3:
            assert fields[b"connection"] == b"close"


@pytest.mark.parametrize("body, headers", [
    (bytearray(BODY), None),                                  # not bytes: not cached
    (BODY * 100, None),                                       # too big: not cached
    (BODY, [[b"content-type", b"text/plain"], [b"x-a", b"1"]]),  # lists: not hashable
    (BODY, [(bytearray(b"content-type"), b"text/plain"), (b"x-a", b"1")]),
])
async def test_responses_that_are_not_cached_are_still_right(body: Any, headers: Any) -> None:
    async with mhd2.asgi.Daemon(constant_app(body, headers), port=0) as d:
        for _ in range(2):
            response = await exchange(
                d.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            status, fields, got = split(response)
            assert status == b"HTTP/1.1 200 OK"
            assert got == bytes(body) and fields[b"content-length"] == b"%d" % len(body)
            assert fields[b"content-type"] == b"text/plain" and fields[b"x-a"] == b"1"
    assert not mhd2.asgi.responses._reply_cache


async def test_a_response_that_differs_every_time_is_never_kept() -> None:
    counter = iter(range(1000))

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("no lifespan here")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"n=%d" % next(counter)})

    async with mhd2.asgi.Daemon(app, port=0) as d:
        for n in range(5):
            response = await exchange(
                d.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert split(response)[2] == b"n=%d" % n
    # (made once each: no reusable response is kept for any of them)
    assert not mhd2.asgi.responses._reply_cache


async def test_different_bodies_and_statuses_get_their_own_responses(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mhd2.asgi.responses, "REPLY_CACHE_SIZE", 3)

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("no lifespan here")
        n = int(scope["path"][1:])
        await send({"type": "http.response.start", "status": 200 + n % 2,
                    "headers": [(b"x-n", b"%d" % (n % 5))]})
        await send({"type": "http.response.body", "body": b"body %d" % (n % 7)})

    async with mhd2.asgi.Daemon(app, port=0) as d:
        for n in range(20):
            response = await exchange(
                d.port, b"GET /%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % n)
            status, fields, body = split(response)
            assert status.startswith(b"HTTP/1.1 %d " % (200 + n % 2))
            assert fields[b"x-n"] == b"%d" % (n % 5)
            assert body == b"body %d" % (n % 7)
            assert len(mhd2.asgi.responses._reply_cache) <= 3  # the bound holds


TARGETS = [
    b"/", b"/plain/path", b"/p?q=1&r=2", b"/p?", b"/?only=query", b"/a%20b?x=%41",
    b"/caf\xc3\xa9?x=\xc3\xa9", b"/a#frag", b"/a?b#c", b"//double//slash", b"/a/../b",
    b"http://example.com/abs?q=1", b"http://example.com", b"/%E2%82%AC/x%2Fy",
]


@pytest.mark.parametrize("target", TARGETS)
async def test_scope_path_raw_path_and_query_of_every_kind_of_target(target: bytes) -> None:
    """The scope's target keys agree with the request's own decoding, fast path or not."""
    seen: list[Scope] = []
    paths: list[tuple[str, str]] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        seen.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def cb(request: mhd2.Request) -> mhd2.Action:
        paths.append((request.path, request.uri))
        return mhd2.asgi.action_asgi(request, app)

    async with mhd2.Daemon(cb, port=0) as d:
        response = await exchange(
            d.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    if response.startswith(b"HTTP/1.1 400 "):
        assert not seen  # (raw non-ASCII in the target: refused before the app)
        return
    assert response.startswith(b"HTTP/1.1 200 "), response
    (scope,) = seen
    ((path, uri),) = paths
    raw = uri.encode("latin-1", "replace")
    raw_path, _, query = raw.partition(b"?")
    if raw_path.startswith(b"http://"):
        rest = raw_path[len(b"http://"):]
        raw_path = rest[rest.find(b"/"):] if b"/" in rest else b"/"
    assert scope["path"] == path  # the request's decoding (surrogate escapes and all)
    assert scope["raw_path"] == raw_path
    assert scope["query_string"] == query


def test_one_mounted_app_served_by_daemons_in_two_threads() -> None:
    """action_asgi's bridge is shared by two trio runs: a runner of one run is
    never lent to the other (each run's apps that wait, wait in their own run)."""
    import threading

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await trio.sleep(0)  # waits: a runner drives it from here
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body",
                    "body": threading.current_thread().name.encode()})

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.asgi.action_asgi(request, app)

    results: dict[str, list[bytes]] = {}
    errors: list[BaseException] = []

    def thread_main() -> None:
        async def main() -> None:
            async with mhd2.Daemon(cb, port=0) as d:
                got = []
                for _ in range(20):
                    response = await exchange(
                        d.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    got.append(response.partition(b"\r\n\r\n")[2])
                results[threading.current_thread().name] = got
        try:
            trio.run(main)
        except BaseException as exc:  # (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=thread_main, name=f"run{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 3)
    assert not errors, errors
    assert results == {name: [name.encode()] * 20 for name in ("run0", "run1")}


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_scope_client_and_server_are_host_port_pairs(host: str) -> None:
    """IPv6 socket addresses have four parts; the scope's have two (ASGI: ``[host, port]``)."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, 0))
    except OSError:
        pytest.skip(f"no {host} here")
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("no lifespan here")
        seen.append(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async with mhd2.asgi.Daemon(app, host=host, port=0) as d:
        port = d.port
        with trio.fail_after(WAIT):
            stream = await trio.open_tcp_stream(host, port)
            local_port = stream.socket.getsockname()[1]
            async with stream:
                await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := await stream.receive_some(65536):
                    data += chunk
    assert data.startswith(b"HTTP/1.1 204 ")
    (scope,) = seen
    assert scope["server"] == (host, port)
    assert scope["client"] == (host, local_port)


async def test_a_constant_response_is_shared_by_http1_and_http2_requests() -> None:
    """The cached response answers HTTP/2 streams too (GET and HEAD), interleaved with HTTP/1.1."""
    async with mhd2.asgi.Daemon(constant_app(), port=0) as d:
        port = d.port
        async with httpx.AsyncClient(http1=False, http2=True) as h2, httpx.AsyncClient() as h1:
            for _ in range(3):
                for client, version in ((h2, "HTTP/2"), (h1, "HTTP/1.1")):
                    r = await client.get(f"http://127.0.0.1:{port}/")
                    assert r.http_version == version
                    assert r.status_code == 200 and r.content == BODY
                    assert r.headers["content-length"] == "13"
                    assert r.headers["x-a"] == "1" and "date" in r.headers
                    r = await client.head(f"http://127.0.0.1:{port}/")
                    assert r.status_code == 200 and r.content == b""
                    assert r.headers["content-length"] == "13"
    assert len(mhd2.asgi.responses._reply_cache) == 1
