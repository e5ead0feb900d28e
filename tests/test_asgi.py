"""The ASGI bridge with raw ASGI apps over real sockets: every scope key, every event type.

The cases follow the ASGI HTTP / lifespan spec 2.4 (and the kinds of checks
uvicorn's and hypercorn's protocol tests make, written anew here).
"""

from __future__ import annotations

import os
import socket
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from conftest import WAIT, exchange, open_stream, read_until_close, status_of
from h2raw import RawH2

import mhd2
import mhd2.asgi
import mhd2.asgi.cycle
from mhd2.asgi import LifespanFailed

Scope = dict[str, Any]


@pytest.fixture(autouse=True)
def no_park_rescue(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lost wake-up must hang (and fail), not be rescued by the slow-app sweeper."""
    monkeypatch.setattr(mhd2.asgi.cycle, "PARK_AFTER", 1000.0)


@asynccontextmanager
async def serve(app: Any, **options: Any) -> AsyncIterator[mhd2.asgi.Daemon]:
    if "unix_path" not in options:
        options.setdefault("port", 0)
    with trio.fail_after(WAIT * 3):
        async with mhd2.asgi.Daemon(app, **options) as daemon:
            yield daemon


async def read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        assert message["type"] == "http.request"
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return bytes(body)


async def reply(send: Any, body: bytes = b"ok", status: int = 200,
                headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": headers or [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


def scope_recorder() -> tuple[list[Scope], Any]:
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            raise RuntimeError("no lifespan here")
        scopes.append(scope)
        await read_body(receive)
        await reply(send)

    return scopes, app


# -- the scope ---------------------------------------------------------------------------


async def test_http_scope_keys() -> None:
    scopes, app = scope_recorder()
    async with serve(app) as d, httpx.AsyncClient() as client:
        port = d.port
        r = await client.get(f"http://127.0.0.1:{d.port}/a%20b/c%2Fd?x=1&y=%20",
                             headers=[("X-Twice", "1"), ("X-Twice", "2"), ("X-Case", "Val")])
        assert r.status_code == 200
    scope = scopes[0]
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/a b/c/d"
    assert scope["raw_path"] == b"/a%20b/c%2Fd"
    assert scope["query_string"] == b"x=1&y=%20"
    assert scope["root_path"] == ""
    headers = scope["headers"]
    assert all(isinstance(n, bytes) and n == n.lower() and isinstance(v, bytes)
               for n, v in headers)
    assert [v for n, v in headers if n == b"x-twice"] == [b"1", b"2"]
    assert (b"x-case", b"Val") in headers
    assert scope["client"][0] == "127.0.0.1" and scope["client"][1] > 0
    assert tuple(scope["server"]) == ("127.0.0.1", port)
    assert "http.response.trailers" in scope["extensions"]
    assert "http.response.pathsend" in scope["extensions"]
    assert "http.response.early_hint" in scope["extensions"]  # (not on HTTP/1.0)
    assert scope["state"] == {}  # the app has no lifespan: an empty state


async def test_scope_client_port_is_the_clients() -> None:
    scopes, app = scope_recorder()
    async with serve(app) as d:
        with socket.create_connection(("127.0.0.1", d.port)) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            local = sock.getsockname()
            await trio.to_thread.run_sync(sock.recv, 4096)
    assert tuple(scopes[0]["client"]) == (local[0], local[1])


async def test_http_version_1_0_and_2() -> None:
    scopes, app = scope_recorder()
    async with serve(app) as d:
        port = d.port
        response = await exchange(d.port, b"GET /old HTTP/1.0\r\nHost: x\r\n\r\n")
        assert status_of(response) == 200
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            r = await client.get(f"http://127.0.0.1:{d.port}/h2?q=2")
            assert r.status_code == 200 and r.http_version == "HTTP/2"
    assert scopes[0]["http_version"] == "1.0"
    assert scopes[1]["http_version"] == "2"
    assert scopes[1]["path"] == "/h2" and scopes[1]["query_string"] == b"q=2"
    assert (b"host", f"127.0.0.1:{port}".encode()) in scopes[1]["headers"]


async def test_scheme_and_client_from_trusted_forwarded_headers() -> None:
    scopes, app = scope_recorder()
    async with serve(app, forwarded_headers="x-forwarded") as d, httpx.AsyncClient() as client:
        r = await client.get(f"http://127.0.0.1:{d.port}/",
                             headers={"X-Forwarded-For": "203.0.113.7",
                                      "X-Forwarded-Proto": "https"})
        assert r.status_code == 200
    assert scopes[0]["scheme"] == "https"
    assert scopes[0]["client"][0] == "203.0.113.7"


async def test_client_and_server_from_proxy_protocol() -> None:
    scopes, app = scope_recorder()
    async with serve(app, proxy_protocol=True) as d:
        port = d.port
        response = await exchange(
            d.port, b"PROXY TCP4 198.51.100.2 192.0.2.80 40000 443\r\n"
                    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status_of(response) == 200
    assert tuple(scopes[0]["client"]) == ("198.51.100.2", 40000)
    # "server: ... where host is the listening address for this server": the
    # socket's own, not the proxy's destination.
    assert tuple(scopes[0]["server"]) == ("127.0.0.1", port)


async def test_root_path_is_prefixed_behind_a_proxy() -> None:
    scopes, app = scope_recorder()
    async with serve(app, root_path="/app/") as d, httpx.AsyncClient() as client:
        assert (await client.get(f"http://127.0.0.1:{d.port}/items/1")).status_code == 200
    assert scopes[0]["root_path"] == "/app"
    assert scopes[0]["path"] == "/app/items/1"
    assert scopes[0]["raw_path"] == b"/app/items/1"


async def test_action_asgi_mounts_an_app_under_a_prefix() -> None:
    scopes, app = scope_recorder()

    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path.startswith("/api/"):
            return mhd2.asgi.action_asgi(request, app, root_path="/api")
        response = mhd2.Response.from_buffer_static(200, b"plain mhd2")
        return mhd2.action_from_response(request, response)

    async with mhd2.Daemon(cb, port=0) as d, httpx.AsyncClient() as client:
        r = await client.post(f"http://127.0.0.1:{d.port}/api/users?a=b", content=b"x" * 70000)
        assert (r.status_code, r.text) == (200, "ok")
        r = await client.get(f"http://127.0.0.1:{d.port}/other")
        assert r.text == "plain mhd2"
    assert scopes[0]["root_path"] == "/api"
    assert scopes[0]["path"] == "/api/users"
    assert scopes[0]["query_string"] == b"a=b"
    assert scopes[0]["method"] == "POST"


# -- lifespan and state ------------------------------------------------------------------


def lifespan_app(log: list[str], *, fail: str | None = None) -> Any:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            assert message["type"] == "lifespan.startup"
            assert scope["asgi"]["version"] == "3.0"
            if fail is not None:
                await send({"type": "lifespan.startup.failed", "message": fail})
                return
            scope["state"]["db"] = "connected"
            log.append("startup")
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            assert message["type"] == "lifespan.shutdown"
            log.append("shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return
        log.append(f"request {scope['state']['db']}")
        scope["state"]["db"] = "changed by a request"  # a copy: the next one sees the original
        await read_body(receive)
        await reply(send)

    return app


async def test_lifespan_runs_once_around_serving_and_state_reaches_scopes() -> None:
    log: list[str] = []
    async with serve(lifespan_app(log)) as d:
        assert log == ["startup"]
        assert d.state == {"db": "connected"}
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{d.port}/")
            await client.get(f"http://127.0.0.1:{d.port}/")
        assert log == ["startup", "request connected", "request connected"]
    assert log[-1] == "shutdown"


async def test_failed_startup_raises_with_the_apps_message_and_serves_nothing() -> None:
    log: list[str] = []
    daemon = mhd2.asgi.Daemon(lifespan_app(log, fail="no database"), port=0)
    with pytest.raises(LifespanFailed, match="no database"):
        async with daemon:
            pytest.fail("served after a failed startup")


async def test_an_app_without_lifespan_is_served_in_auto_mode() -> None:
    _scopes, app = scope_recorder()
    async with serve(app) as d, httpx.AsyncClient() as client:
        assert (await client.get(f"http://127.0.0.1:{d.port}/")).status_code == 200
    with pytest.raises(LifespanFailed):
        async with mhd2.asgi.Daemon(app, port=0, lifespan="on"):
            pass


# -- the request body --------------------------------------------------------------------


async def test_body_in_pieces_and_chunked() -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError
        while True:
            message = await receive()
            seen.append(message)
            if not message.get("more_body"):
                break
        await reply(send, str(sum(len(m["body"]) for m in seen)).encode())

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"y" * 1000

    async with serve(app) as d, httpx.AsyncClient() as client:
        r = await client.post(f"http://127.0.0.1:{d.port}/", content=b"x" * 300_000)
        assert r.text == "300000"
        assert len(seen) > 1 and all(m["type"] == "http.request" for m in seen)
        assert seen[-1]["more_body"] is False
        seen.clear()
        r = await client.post(f"http://127.0.0.1:{d.port}/", content=chunks())
        assert r.text == "5000"


async def test_an_upload_the_app_does_not_read_is_not_buffered() -> None:
    """Backpressure: the client's sends block while the app reads nothing; memory stays flat."""
    total = 24 * 1024 * 1024
    may_read = trio.Event()
    got: list[int] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError
        await may_read.wait()
        size = 0
        while True:
            message = await receive()
            size += len(message["body"])
            if not message["more_body"]:
                break
        got.append(size)
        await reply(send)

    def push(port: int) -> tuple[int, bytes]:
        block = memoryview(bytes(1024 * 1024))
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n"
                         "Connection: close\r\n\r\n".encode())
            sent = 0
            sock.setblocking(False)
            try:
                while sent < total:
                    sent += sock.send(block[: min(len(block), total - sent)])
            except BlockingIOError:
                pass  # the kernel buffers are full: the server is not reading
            stalled_at = sent
            trio.from_thread.run_sync(may_read.set)
            sock.setblocking(True)
            sock.settimeout(WAIT)
            while sent < total:
                sent += sock.send(block[: min(len(block), total - sent)])
            return stalled_at, sock.recv(4096)

    async with serve(app) as d:
        tracemalloc.start()
        try:
            stalled_at, response = await trio.to_thread.run_sync(push, d.port)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert stalled_at < total // 2, "the server read the upload although the app did not"
    assert got == [total]
    assert response.startswith(b"HTTP/1.1 200")
    # The upload went through the app's receive() piece by piece: never whole.
    assert peak < 4 * 1024 * 1024


async def test_an_app_that_falls_behind_mid_upload_stops_the_reading() -> None:
    """The daemon reads on while the app keeps up; once the app stops taking
    pieces, at most two wait for it and the client's sends block."""
    total = 48 * 1024 * 1024
    first_taken = trio.Event()
    may_read = trio.Event()
    got: list[int] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError
        message = await receive()
        size = len(message["body"])
        first_taken.set()
        await may_read.wait()
        while message["more_body"]:
            message = await receive()
            size += len(message["body"])
        got.append(size)
        await reply(send)

    def push(port: int) -> tuple[int, bytes]:
        block = memoryview(bytes(1024 * 1024))
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n"
                         "Connection: close\r\n\r\n".encode())
            sent = 0
            sock.setblocking(False)
            try:
                while sent < total:
                    sent += sock.send(block[: min(len(block), total - sent)])
            except BlockingIOError:
                pass  # the kernel buffers are full: the server stopped reading
            stalled_at = sent
            trio.from_thread.run_sync(may_read.set)
            sock.setblocking(True)
            sock.settimeout(WAIT)
            while sent < total:
                sent += sock.send(block[: min(len(block), total - sent)])
            return stalled_at, sock.recv(4096)

    async with serve(app) as d:
        tracemalloc.start()
        try:
            stalled_at, response = await trio.to_thread.run_sync(push, d.port)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert first_taken.is_set()
    assert stalled_at < total // 2, "the server read on although the app fell behind"
    assert got == [total]
    assert response.startswith(b"HTTP/1.1 200")
    assert peak < 4 * 1024 * 1024


async def test_expect_100_continue_is_sent_only_when_the_app_reads() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError
        if scope["path"] == "/read":
            body = await read_body(receive)
            await reply(send, body)
        else:
            await reply(send, b"no thanks", 413)

    async with serve(app) as d:
        for path, expect_continue in (("/read", True), ("/refuse", False)):
            stream = await trio.open_tcp_stream("127.0.0.1", d.port)
            async with stream:
                await stream.send_all(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                      "Expect: 100-continue\r\n\r\n".encode())
                with trio.fail_after(WAIT):
                    first = await stream.receive_some(4096)
                assert first.startswith(b"HTTP/1.1 100 Continue") is expect_continue
                if expect_continue:
                    await stream.send_all(b"hello")
                    rest = b""
                    with trio.fail_after(WAIT):
                        while b"hello" not in rest:
                            rest += await stream.receive_some(4096)
                    assert b"200 OK" in rest


async def test_http_disconnect_when_the_client_goes() -> None:
    disconnected = trio.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError
        await read_body(receive)
        message = await receive()  # nothing more comes: waits for the client to go
        assert message == {"type": "http.disconnect"}
        disconnected.set()
        with pytest.raises(OSError):
            await reply(send)

    async with serve(app) as d:
        stream = await trio.open_tcp_stream("127.0.0.1", d.port)
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await trio.testing.wait_all_tasks_blocked()
        await stream.aclose()
        with trio.fail_after(WAIT):
            await disconnected.wait()


async def test_receive_after_the_response_is_disconnect() -> None:
    after: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError
        await read_body(receive)
        await reply(send)
        after.append(await receive())

    async with serve(app) as d, httpx.AsyncClient() as client:
        assert (await client.get(f"http://127.0.0.1:{d.port}/")).text == "ok"
        with trio.fail_after(WAIT):
            while not after:
                await trio.testing.wait_all_tasks_blocked()
    assert after == [{"type": "http.disconnect"}]


# -- the response -----------------------------------------------------------------------


async def test_streamed_response_leaves_chunk_by_chunk() -> None:
    go_on = trio.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError
        await send({"type": "http.response.start", "status": 201,
                    "headers": [(b"x-stream", b"yes")]})
        await send({"type": "http.response.body", "body": b"first,", "more_body": True})
        await go_on.wait()  # the client has the first chunk before the second exists
        await send({"type": "http.response.body", "body": b"second", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async with serve(app) as d, httpx.AsyncClient() as client:
        async with client.stream("GET", f"http://127.0.0.1:{d.port}/") as r:
            assert r.status_code == 201 and r.headers["x-stream"] == "yes"
            assert r.headers["transfer-encoding"] == "chunked"
            parts = r.aiter_raw()
            with trio.fail_after(WAIT):
                assert await parts.__anext__() == b"first,"
            go_on.set()
            rest = b"".join([chunk async for chunk in parts])
            assert rest == b"second"


async def test_declared_content_length_streams_without_chunking() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"10")]})
        await send({"type": "http.response.body", "body": b"01234", "more_body": True})
        await send({"type": "http.response.body", "body": b"56789"})

    async with serve(app) as d, httpx.AsyncClient() as client:
        r = await client.get(f"http://127.0.0.1:{d.port}/")
        assert r.headers["content-length"] == "10" and "transfer-encoding" not in r.headers
        assert r.text == "0123456789"
        r = await client.head(f"http://127.0.0.1:{d.port}/")
        assert r.headers["content-length"] == "10" and r.content == b""


async def test_trailers_extension() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError
        assert "http.response.trailers" in scope["extensions"]
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": [(b"trailer", b"x-checksum")]})
        await send({"type": "http.response.body", "body": b"data"})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")],
                    "more_trailers": False})

    async with serve(app) as d:
        response = await exchange(d.port, b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n"
                                          b"Connection: close\r\n\r\n")
        assert b"transfer-encoding: chunked" in response.lower()
        assert response.endswith(b"4\r\ndata\r\n0\r\nx-checksum: abc\r\n\r\n")
        client = await RawH2.connect(d.port)
        reply_ = await client.response(client.request("/"))
        assert reply_.body == b"data" and (b"x-checksum", b"abc") in reply_.trailers
        await client.stream.aclose()


async def test_pathsend_extension_sends_the_file(tmp_path: Any) -> None:
    data = os.urandom(300_000)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        await send({"type": "http.response.pathsend", "path": str(path)})

    async with serve(app) as d, httpx.AsyncClient() as client:
        r = await client.get(f"http://127.0.0.1:{d.port}/")
        assert r.headers["content-length"] == str(len(data))
        assert r.content == data


async def test_early_hint_after_start_is_dropped_not_an_error() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError
        await send({"type": "http.response.start", "status": 200, "headers": []})
        # After the start the hint would come with the response: dropped.
        await send({"type": "http.response.early_hint",
                    "links": [b"</style.css>; rel=preload; as=style"]})
        await send({"type": "http.response.body", "body": b"ok"})

    async with serve(app) as d:
        response = await exchange(d.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert response.startswith(b"HTTP/1.1 200 ") and b" 103 " not in response


async def test_app_raising_before_start_gets_500() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError
        raise ValueError("boom")

    async with serve(app) as d, httpx.AsyncClient() as client:
        r = await client.get(f"http://127.0.0.1:{d.port}/")
        assert r.status_code == 500
        # The connection stays usable.
        assert (await client.get(f"http://127.0.0.1:{d.port}/")).status_code == 500


async def test_app_returning_without_a_response_gets_500() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError

    async with serve(app) as d, httpx.AsyncClient() as client:
        assert (await client.get(f"http://127.0.0.1:{d.port}/")).status_code == 500


def failing_mid_body(after: int) -> Any:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(after):
            await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise ValueError("broken mid-response")

    return app


@pytest.mark.parametrize("after", [0, 1])
async def test_app_raising_after_start_closes_the_connection(after: int) -> None:
    async with serve(failing_mid_body(after)) as d:
        response = await exchange(d.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        # Never a complete response: no 500 after a 200, no final chunk.
        assert b"500" not in response.split(b"\r\n", 1)[0]
        assert not response.endswith(b"0\r\n\r\n")


async def test_app_raising_after_start_resets_the_http2_stream() -> None:
    async with serve(failing_mid_body(1)) as d:
        client = await RawH2.connect(d.port)
        reply_ = await client.response(client.request("/"))
        assert reply_.reset is not None
        # The connection goes on: another stream is served.
        assert (await client.response(client.request("/"))).reset is not None
        await client.stream.aclose()


async def test_send_errors_out_of_order() -> None:
    errors: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError
        try:
            await send({"type": "http.response.body", "body": b"x"})
        except RuntimeError as exc:
            errors.append(str(exc))
        try:
            await send({"type": "websocket.accept"})
        except RuntimeError as exc:
            errors.append(str(exc))
        await reply(send)

    async with serve(app) as d, httpx.AsyncClient() as client:
        assert (await client.get(f"http://127.0.0.1:{d.port}/")).status_code == 200
    assert len(errors) == 2 and "before http.response.start" in errors[0]


# -- graceful stop -----------------------------------------------------------------------


async def test_graceful_stop_lets_a_request_in_flight_finish() -> None:
    started = trio.Event()
    finish = trio.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError
        started.set()
        await finish.wait()
        await reply(send, b"finished")

    async with trio.open_nursery() as nursery:
        daemon = mhd2.asgi.Daemon(app, port=0)
        await nursery.start(daemon.serve)
        results: list[bytes] = []

        async def client() -> None:
            results.append(await exchange(daemon.port,
                                          b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))

        nursery.start_soon(client)
        with trio.fail_after(WAIT):
            await started.wait()
            async with trio.open_nursery() as stopping:
                stopping.start_soon(daemon.stop, WAIT)
                await trio.testing.wait_all_tasks_blocked()
                finish.set()
    assert results[0].startswith(b"HTTP/1.1 200 ")
    assert results[0].endswith(b"finished")


async def test_graceful_stop_tells_a_waiting_app_disconnect_after_the_grace() -> None:
    seen: list[dict[str, Any]] = []
    waiting = trio.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError
        await read_body(receive)
        waiting.set()
        seen.append(await receive())

    async with trio.open_nursery() as nursery:
        daemon = mhd2.asgi.Daemon(app, port=0)
        await nursery.start(daemon.serve)
        stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.fail_after(WAIT):
            await waiting.wait()
            await daemon.stop(grace=0.2)
            rest = await read_until_close(stream)
    assert seen == [{"type": "http.disconnect"}]
    assert b"200" not in rest


# -- HTTP/2, slow apps, stops in the middle of an upload ----------------------------------


def body_counter() -> Any:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError
        size = 0
        while True:
            message = await receive()
            size += len(message["body"])
            if not message["more_body"]:
                break
        await reply(send, str(size).encode())

    return app


async def test_http2_upload_streams_through_the_bridge() -> None:
    async with serve(body_counter()) as d, \
            httpx.AsyncClient(http1=False, http2=True, timeout=WAIT) as client:
        r = await client.post(f"http://127.0.0.1:{d.port}/", content=b"z" * 1_000_000)
        assert r.http_version == "HTTP/2" and r.text == "1000000"
        rs = await client.get(f"http://127.0.0.1:{d.port}/")
        assert rs.text == "0"


async def test_a_slow_app_is_suspended_and_still_answers(
        monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock) -> None:
    """After PARK_AFTER the request is suspended (watched, no inactivity timeout)."""
    monkeypatch.setattr(mhd2.asgi.cycle, "PARK_AFTER", 0.02)
    parked = trio.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError
        await parked.wait()
        body = await read_body(receive)
        await reply(send, b"late " + body)

    ended: list[mhd2.RequestEndedCode] = []
    async with serve(app, timeout=0.3,
                     notify_request_ended=lambda r, code: ended.append(code)) as d:
        stream = await open_stream(d)
        async with stream:
            await stream.send_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
            await trio.sleep(0.6)  # virtual time, twice the inactivity timeout: suspended, not cut
            parked.set()
            with trio.fail_after(WAIT):
                data = b""
                while not data.endswith(b"late abc"):
                    chunk = await stream.receive_some(4096)
                    assert chunk, data
                    data += chunk
    assert data.startswith(b"HTTP/1.1 200 ")
    assert ended == [mhd2.RequestEndedCode.COMPLETED_OK]


async def test_graceful_stop_lets_an_upload_in_flight_finish() -> None:
    half = trio.Event()
    total = 2_000_000

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError
        size = 0
        while True:
            message = await receive()
            size += len(message["body"])
            if size >= total // 2:
                half.set()
            if not message["more_body"]:
                break
        await reply(send, str(size).encode())

    async with trio.open_nursery() as nursery:
        daemon = mhd2.asgi.Daemon(app, port=0)
        await nursery.start(daemon.serve)
        port = daemon.port
        results: list[bytes] = []
        may_finish = trio.Event()

        async def client() -> None:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(b"POST / HTTP/1.1\r\nHost: x\r\n"
                                      b"Content-Length: %d\r\n\r\n" % total)
                await stream.send_all(b"u" * (total // 2 + 1))
                await may_finish.wait()
                await stream.send_all(b"u" * (total - total // 2 - 1))
                results.append(await read_until_close(stream))

        nursery.start_soon(client)
        with trio.fail_after(WAIT):
            await half.wait()
            async with trio.open_nursery() as stopping:
                stopping.start_soon(daemon.stop, WAIT)
                await trio.testing.wait_all_tasks_blocked()
                may_finish.set()
    assert results[0].startswith(b"HTTP/1.1 200 ")
    assert results[0].endswith(str(total).encode())


# -- TLS and Unix-domain sockets ----------------------------------------------------------


async def test_https_scope_over_tls_with_http2(tmp_path: Any) -> None:
    import ssl

    import trustme

    from mhd2.tls import server_context

    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    context = server_context(leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes(),
                             alpn=("h2", "http/1.1"))
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    scopes, app = scope_recorder()
    async with serve(app, tls=context) as d:
        for http2 in (False, True):
            async with httpx.AsyncClient(verify=client_context, http2=http2) as client:
                r = await client.get(f"https://127.0.0.1:{d.port}/secure")
                assert r.status_code == 200
    assert [s["scheme"] for s in scopes] == ["https", "https"]
    assert [s["http_version"] for s in scopes] == ["1.1", "2"]


async def test_unix_socket_client_is_none(tmp_path: Any) -> None:
    scopes, app = scope_recorder()
    path = str(tmp_path / "app.sock")
    async with serve(app, unix_path=path):
        transport = httpx.AsyncHTTPTransport(uds=path)
        async with httpx.AsyncClient(transport=transport) as client:
            assert (await client.get("http://localhost/u")).status_code == 200
    assert scopes[0]["client"] is None
    assert scopes[0]["path"] == "/u"


async def test_failed_shutdown_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.failed", "message": "could not flush"})

    async with serve(app):
        pass
    assert "the app's shutdown failed: could not flush" in caplog.text


async def test_lifespan_around_a_plain_daemon_with_action_asgi() -> None:
    log: list[str] = []
    app = lifespan_app(log)

    async with mhd2.asgi.Lifespan(app) as state:
        assert state == {"db": "connected"}

        def cb(request: mhd2.Request) -> mhd2.Action:
            return mhd2.asgi.action_asgi(request, app, state=state)

        async with mhd2.Daemon(cb, port=0) as d, httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{d.port}/")).status_code == 200
    assert log == ["startup", "request connected", "shutdown"]


async def test_concurrent_http2_streams_run_their_apps_concurrently() -> None:
    count = 20
    arrived = 0
    all_in = trio.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        nonlocal arrived
        if scope["type"] != "http":
            raise RuntimeError
        arrived += 1
        if arrived == count:
            all_in.set()
        await all_in.wait()  # every stream's app runs at once, or none answers
        await reply(send, scope["path"].encode())

    async with serve(app) as d, httpx.AsyncClient(http1=False, http2=True) as client:
        results: dict[int, str] = {}

        async def one(i: int) -> None:
            results[i] = (await client.get(f"http://127.0.0.1:{d.port}/{i}")).text

        with trio.fail_after(WAIT):
            async with trio.open_nursery() as nursery:
                for i in range(count):
                    nursery.start_soon(one, i)
    assert results == {i: f"/{i}" for i in range(count)}


@pytest.mark.parametrize("start", [
    {"status": 200, "headers": [(b"x-injected", b"a\r\nSet-Cookie: evil=1")]},
    {"status": 200, "headers": [(b"bad name", b"v")]},
    {"status": 200, "headers": [(b"transfer-encoding", b"gzip")]},
    {"status": 200, "headers": [(b"content-length", b"ten")]},
    {"status": "200", "headers": []},
])
async def test_a_bad_response_from_the_app_never_reaches_the_wire(
        start: dict[str, Any]) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError
        await send({"type": "http.response.start", **start})
        await send({"type": "http.response.body", "body": b"body"})

    async with serve(app) as d:
        for _ in range(2):  # and the daemon goes on serving
            response = await exchange(d.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            # The app failed after http.response.start: the connection is closed
            # and nothing of the bad response reached the wire.
            assert response == b""
