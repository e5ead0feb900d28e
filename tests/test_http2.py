"""HTTP/2 end to end: every action over streams, with httpx, a frame-level client, curl, nghttp.

The daemon speaks HTTP/2 with prior knowledge (h2c) on plain TCP and after
ALPN ``h2`` with TLS; each stream drives the same exchange as an HTTP/1
request.
"""

from __future__ import annotations

import logging
import os
import shutil
import ssl
import subprocess
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import trio
import trio.testing
import trustme
from conftest import WAIT, open_stream, read_until_close, running, text_response
from h2raw import RawH2
from hyperframe.frame import GoAwayFrame, PingFrame, SettingsFrame
from test_auth import PASSWORD, RANDOM, USER, basic_app, digest_app

import mhd2
from mhd2.enums import RequestEndedCode
from mhd2.http2.idle import IDLE_SLACK
from mhd2.tls import server_context

Ended = list[tuple[mhd2.Request, mhd2.RequestEndedCode]]


def h2_client(port: int, **kwargs: Any) -> httpx.AsyncClient:
    """httpx speaking HTTP/2 with prior knowledge to 127.0.0.1:*port*."""
    return httpx.AsyncClient(http1=False, http2=True, base_url=f"http://127.0.0.1:{port}",
                             **kwargs)


def echo_request(request: mhd2.Request) -> mhd2.Action:
    body = (f"{request.version} {request.method} {request.path} "
            f"{sorted(request.args.items())} {request.headers.get('host')}").encode()
    return text_response(request, body)


# -- the protocol is picked ----------------------------------------------------------------


async def test_prior_knowledge_on_plain_tcp_and_http1_beside_it() -> None:
    async with running(echo_request) as daemon:
        async with h2_client(daemon.port) as client:
            with trio.fail_after(WAIT):
                r = await client.get("/a%20b/c?x=1&y=two")
        async with httpx.AsyncClient() as client:
            with trio.fail_after(WAIT):
                r1 = await client.get(f"http://127.0.0.1:{daemon.port}/h1")
        port = daemon.port
    assert r.http_version == "HTTP/2"
    assert r.text == f"HTTP/2 GET /a b/c [('x', '1'), ('y', 'two')] 127.0.0.1:{port}"
    assert r.headers["content-length"] == str(len(r.content))
    assert r1.http_version == "HTTP/1.1" and r1.text.startswith("HTTP/1.1 GET /h1")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_pair(ca: trustme.CA) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert = ca.issue_cert("localhost", "127.0.0.1")
    server = server_context(cert.cert_chain_pems[0].bytes(), cert.private_key_pem.bytes())
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


async def test_tls_alpn_offers_h2_then_http11(ca: trustme.CA) -> None:
    server, client_ctx = tls_pair(ca)
    seen: list[mhd2.Request] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        seen.append(request)
        return echo_request(request)

    async with running(cb, tls=server) as daemon:
        url = f"https://127.0.0.1:{daemon.port}/x?q=1"
        async with httpx.AsyncClient(http2=True, verify=client_ctx) as client:
            with trio.fail_after(WAIT):
                r2 = await client.get(url)
        async with httpx.AsyncClient(verify=client_ctx) as client:
            with trio.fail_after(WAIT):
                r1 = await client.get(url)
    assert r2.http_version == "HTTP/2" and r2.text.startswith("HTTP/2 GET /x")
    assert r1.http_version == "HTTP/1.1"
    assert [r.connection.alpn_protocol for r in seen] == ["h2", "http/1.1"]


async def test_http2_false_turns_off_prior_knowledge_and_alpn(ca: trustme.CA) -> None:
    async with running(echo_request, http2=False) as daemon:
        with trio.fail_after(WAIT):
            stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
            async with stream:
                await stream.send_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                answer = await read_until_close(stream)
    assert answer.startswith(b"HTTP/1.1 505 ")
    server, client_ctx = tls_pair(ca)
    async with running(echo_request, tls=server, http2=False) as daemon:
        async with httpx.AsyncClient(http2=True, verify=client_ctx) as client:
            with trio.fail_after(WAIT):
                r = await client.get(f"https://127.0.0.1:{daemon.port}/")
    assert r.http_version == "HTTP/1.1"


async def test_preface_in_pieces_is_recognised() -> None:
    async with running(echo_request) as daemon:
        with trio.fail_after(WAIT):
            stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
            client = RawH2(stream)
            data = client.conn.data_to_send()
            for i in range(0, 24, 5):  # the 24-byte preface, trickled
                await stream.send_all(data[i:min(i + 5, 24)])
                await trio.sleep(0.01)
            await stream.send_all(data[24:])
            sid = client.request("/p")
            reply = await client.response(sid)
            await client.aclose()
    assert reply.status == 200 and reply.body.startswith(b"HTTP/2 GET /p")


# -- responses ------------------------------------------------------------------------------


def kinds_app(tmp_file: str) -> Any:
    def cb(request: mhd2.Request) -> mhd2.Action:
        path = request.path
        if path == "/iovec":
            response = mhd2.Response.from_iovec(200, [b"a" * 40000, b"b" * 50000, b"c"])
        elif path == "/fd":
            fd = os.open(tmp_file, os.O_RDONLY)
            response = mhd2.Response.from_fd(200, fd, 10, 200000)
        elif path == "/pipe":
            r, w = os.pipe()
            os.write(w, b"through a pipe " * 1000)
            os.close(w)
            response = mhd2.Response.from_pipe(200, r)
        elif path == "/callback":
            def dyn(ctx: mhd2.DCCContext, pos: int, buf: memoryview) -> mhd2.DCCAction:
                if pos >= 100000:
                    return mhd2.dcc_action_finish(ctx, [("X-Checksum", "abc"), ("Connection", "x")])
                if pos == 1000:
                    return mhd2.dcc_action_continue_zc(ctx, 0, [b"z" * 999])
                buf[:1000] = b"y" * 1000
                return mhd2.dcc_action_continue(ctx, 1000)
            response = mhd2.Response.from_callback(200, None, dyn)
        elif path == "/chunked":
            response = mhd2.Response.from_buffer_copy(200, b"framed by the stream")
            response.add_header("Transfer-Encoding", "chunked")
            response.add_header("Connection", "close")
            response.add_header("X-Kept", "yes")
        elif path == "/empty":
            response = mhd2.Response.from_empty(204)
        else:
            response = mhd2.Response.from_buffer_copy(200, b"buffer " * 20000)
        return mhd2.action_from_response(request, response)
    return cb


async def test_every_response_kind_over_streams_concurrently(tmp_path: Any) -> None:
    data = os.urandom(300000)
    file = tmp_path / "f.bin"
    file.write_bytes(data)
    async with running(kinds_app(str(file))) as daemon:
        async with h2_client(daemon.port) as client:
            results: dict[str, httpx.Response] = {}

            async def get(path: str) -> None:
                results[path] = await client.get(path)

            with trio.fail_after(WAIT):
                async with trio.open_nursery() as nursery:
                    for path in ("/buffer", "/iovec", "/fd", "/pipe", "/callback", "/chunked",
                                 "/empty"):
                        nursery.start_soon(get, path)
                head = await client.head("/buffer")
    assert results["/buffer"].content == b"buffer " * 20000
    assert results["/iovec"].content == b"a" * 40000 + b"b" * 50000 + b"c"
    assert results["/fd"].content == data[10:200010]
    assert results["/pipe"].content == b"through a pipe " * 1000
    assert len(results["/callback"].content) == 100999
    assert results["/callback"].content.startswith(b"y" * 1000 + b"z" * 999)
    chunked = results["/chunked"]
    assert chunked.content == b"framed by the stream" and chunked.headers["x-kept"] == "yes"
    for r in results.values():
        # RFC 9113 §8.2.2: no connection-specific fields on HTTP/2.
        assert "connection" not in r.headers and "transfer-encoding" not in r.headers
        assert r.http_version == "HTTP/2"
    assert results["/empty"].status_code == 204 and "content-length" not in results["/empty"].headers
    assert head.content == b"" and head.headers["content-length"] == str(7 * 20000)


async def test_dcc_footers_are_trailers_and_suspend_resumes() -> None:
    parked: list[mhd2.Request] = []
    suspended = trio.Event()

    def cb(request: mhd2.Request) -> mhd2.Action:
        state = {"n": 0}

        def dyn(ctx: mhd2.DCCContext, pos: int, buf: memoryview) -> mhd2.DCCAction:
            state["n"] += 1
            if state["n"] == 2:
                parked.append(ctx.request)
                suspended.set()
                return mhd2.dcc_action_suspend(ctx)
            if pos >= 6:
                return mhd2.dcc_action_finish(ctx, [("X-Sum", "42"), ("Transfer-Encoding", "x")])
            buf[:3] = b"abc"
            return mhd2.dcc_action_continue(ctx, 3)
        return mhd2.action_from_response(request, mhd2.Response.from_callback(200, None, dyn))

    async with running(cb) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)
            sid = client.request("/t", headers=[("te", "trailers")])
            await client.flush()
            await suspended.wait()
            mhd2.request_resume(parked[0])
            reply = await client.response(sid)
            await client.aclose()
    assert reply.status == 200 and reply.body == b"abcabc"
    assert reply.trailers == [(b"x-sum", b"42")]


async def test_action_suspend_and_resume_from_a_thread_on_many_streams() -> None:
    parked: list[mhd2.Request] = []
    all_parked = trio.Event()

    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.app_context is None:
            request.app_context = "resumed"
            parked.append(request)
            if len(parked) == 10:
                all_parked.set()
            return mhd2.action_suspend(request)
        return text_response(request, request.path.encode())

    async with running(cb) as daemon:
        async with h2_client(daemon.port) as client:
            results: list[httpx.Response] = []

            async def get(i: int) -> None:
                results.append(await client.get(f"/{i}"))

            with trio.fail_after(WAIT):
                async with trio.open_nursery() as nursery:
                    for i in range(10):
                        nursery.start_soon(get, i)
                    await all_parked.wait()
                    for request in parked:
                        await trio.to_thread.run_sync(mhd2.request_resume, request)
    assert sorted(r.text for r in results) == sorted(f"/{i}" for i in range(10))


# -- uploads ------------------------------------------------------------------------------


async def test_full_and_incremental_uploads() -> None:
    pieces: list[int] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/full":
            def full(req: mhd2.Request, data: bytes) -> mhd2.UploadAction:
                return mhd2.upload_action_from_response(
                    req, mhd2.Response.from_buffer_copy(200, b"%d %d" % (len(data), sum(data))))
            return mhd2.action_process_upload_full(request, 4 * 1024 * 1024, full)

        total = [0]

        def inc(req: mhd2.Request, data: bytes) -> mhd2.UploadAction:
            if data:
                pieces.append(len(data))
                total[0] += len(data)
                return mhd2.upload_action_continue(req)
            return mhd2.upload_action_from_response(
                req, mhd2.Response.from_buffer_copy(200, b"%d" % total[0]))
        return mhd2.action_process_upload_inc(request, inc)

    body = os.urandom(1_000_000)
    async with running(cb) as daemon:
        async with h2_client(daemon.port) as client:
            with trio.fail_after(WAIT):
                full = await client.post("/full", content=body)
                inc = await client.post("/inc", content=body)
        with trio.fail_after(WAIT):
            # (httpx waits for window forever when a response comes before the
            # whole body is sent: the raw client shows the early answer.)
            raw = await RawH2.connect(daemon.port)
            sid = raw.request("/full", "POST", [("content-length", str(5 * 1024 * 1024))],
                              end=False)
            raw.conn.send_data(sid, b"x" * 16384)
            too_big = await raw.response(sid)
            after = await raw.response(raw.request("/inc", "POST"))
            await raw.aclose()
    assert full.text == f"{len(body)} {sum(body)}"
    assert inc.text == str(len(body)) and sum(pieces) == len(body)
    # The early answer, then RST_STREAM(NO_ERROR) for the rest of the body (RFC 9113 §8.1).
    assert too_big.status == 413 and too_big.ended and too_big.reset in (None, 0)
    assert after.status == 200 and after.body == b"0"


async def test_slow_application_stops_the_window_instead_of_buffering(
        autojump_clock: trio.testing.MockClock) -> None:
    """Flow control is the backpressure: a suspended upload callback gets no more
    than the stream's window, and the client's window stays closed.

    On MockClock (real sockets): the client's bounded waits for a WINDOW_UPDATE
    end only once every task is blocked, so "none came" means the daemon had
    done all it could."""
    got = [0]
    parked_in, parked_out = trio.open_memory_channel[mhd2.Request](100)

    def cb(request: mhd2.Request) -> mhd2.Action:
        def inc(req: mhd2.Request, data: bytes) -> mhd2.UploadAction:
            if not data:
                return mhd2.upload_action_from_response(
                    req, mhd2.Response.from_buffer_copy(200, b"%d" % got[0]))
            got[0] += len(data)
            parked_in.send_nowait(req)
            return mhd2.upload_action_suspend(req)
        return mhd2.action_process_upload_inc(request, inc)

    async def resume_all() -> None:
        async for request in parked_out:
            mhd2.request_resume(request)

    body = b"u" * 300_000
    async with running(cb, http2_initial_window_size=16384) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)
            await client.until(lambda: client.conn.remote_settings.initial_window_size == 16384)
            sid = client.request("/", "POST", end=False)
            n = client.conn.local_flow_control_window(sid)
            client.conn.send_data(sid, body[:n])
            await client.flush()
            first = await parked_out.receive()
            # The application holds the first piece and has not consumed it:
            # no WINDOW_UPDATE, the client can send nothing more.
            for _ in range(3):
                with trio.move_on_after(0.1):
                    await client.receive()
            assert client.conn.local_flow_control_window(sid) == 0 and got[0] == n == 16384
            sent = n
            async with trio.open_nursery() as nursery:
                nursery.start_soon(resume_all)
                mhd2.request_resume(first)
                while sent < len(body):
                    window = client.conn.local_flow_control_window(sid)
                    n = min(window, client.conn.max_outbound_frame_size, len(body) - sent)
                    if n == 0:
                        await client.receive()
                        continue
                    client.conn.send_data(sid, body[sent:sent + n])
                    sent += n
                    await client.flush()
                client.conn.end_stream(sid)
                reply = await client.response(sid)
                nursery.cancel_scope.cancel()
            await client.aclose()
    assert reply.body == b"%d" % len(body)


async def test_trickled_body_is_cut_with_408_and_the_connection_serves_on(
        ended: list[tuple[mhd2.Request, RequestEndedCode]],
        autojump_clock: trio.testing.MockClock) -> None:
    """``min_body_rate`` on HTTP/2: a stream whose DATA trickles below the rate
    is answered 408 (then RST_STREAM(NO_ERROR) for the rest of the body), as
    HTTP/1 answers 408; the connection's other streams are not affected."""
    def app(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_process_upload_full(
            request, 1000, lambda r, data: mhd2.upload_action_from_response(
                r, mhd2.Response.from_buffer_copy(200, b"got %d" % len(data))))

    async with running(app, min_body_rate=(100, 0.5), timeout=30,
                       notify_request_ended=lambda r, c: ended.append((r, c))) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.over(await open_stream(daemon))
            sid = client.request("/slow", "POST", [("content-length", "100")], end=False)
            reply = client.replies[sid]
            start = trio.current_time()
            while reply.status is None and reply.reset is None:
                client.conn.send_data(sid, b"a")  # 1 byte per 0.1 s: far below 100 per 0.5 s
                await client.flush()
                with trio.move_on_after(0.1):
                    await client.receive()
            cut_after = trio.current_time() - start
            await client.response(sid)
            fast = client.request("/fast", "POST", [("content-length", "100")], end=False)
            client.conn.send_data(fast, b"b" * 100, end_stream=True)
            fast_reply = await client.response(fast)
            await client.aclose()
    assert reply.status == 408 and reply.ended
    assert 0.4 < cut_after < 5
    assert (fast_reply.status, fast_reply.body) == (200, b"got 100")
    assert [(r.path, c) for r, c in ended] == [
        ("/slow", RequestEndedCode.HTTP_PROTOCOL_ERROR), ("/fast", RequestEndedCode.COMPLETED_OK)]


async def test_post_form_over_http2() -> None:
    from test_post import Seen, make_app

    seen = Seen()
    async with running(make_app(seen)) as daemon:
        async with h2_client(daemon.port) as client:
            with trio.fail_after(WAIT):
                r = await client.post("/", data={"name": "Jürgen", "x": "1+1"})
    assert r.status_code == 200 and r.http_version == "HTTP/2"
    assert r.json()["values"] == [["name", "Jürgen"], ["x", "1+1"]]


async def test_expect_100_continue_when_the_app_asks_for_the_body() -> None:
    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/no":
            return text_response(request, b"not wanted", 403)

        def full(req: mhd2.Request, data: bytes) -> mhd2.UploadAction:
            return mhd2.upload_action_from_response(req, mhd2.Response.from_buffer_copy(200, data))
        return mhd2.action_process_upload_full(request, 1000, full)

    async with running(cb) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)
            sid = client.request("/yes", "POST", [("expect", "100-continue")], end=False)
            await client.flush()
            await client.until(lambda: client.replies[sid].informational)
            client.conn.send_data(sid, b"the body", end_stream=True)
            yes = await client.response(sid)
            sid2 = client.request("/no", "POST", [("expect", "100-continue")], end=False)
            no = await client.response(sid2)
            await client.aclose()
    assert yes.informational == [100] and (yes.status, yes.body) == (200, b"the body")
    assert no.informational == [] and no.status == 403


# -- request semantics ------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    [("connection", "keep-alive")],
    [("keep-alive", "5")],
    [("proxy-connection", "x")],
    [("transfer-encoding", "chunked")],
    [("upgrade", "websocket")],
    [("te", "gzip")],
    [("X-Upper", "1")],
    [("x-bad", " padded")],
])
async def test_connection_specific_and_malformed_fields_reset_the_stream(
        headers: list[tuple[str, str]]) -> None:
    calls: list[str] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        calls.append(request.path)
        return text_response(request)

    async with running(cb) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)
            bad = await client.response(client.request("/bad", headers=headers))
            good = await client.response(client.request("/good", headers=[("te", "trailers")]))
            await client.aclose()
    assert bad.reset == 1  # PROTOCOL_ERROR, a stream error: the connection goes on
    assert good.status == 200 and calls == ["/good"]


@pytest.mark.parametrize("fields", [
    [(":method", "GET"), (":scheme", "http"), (":authority", "a")],              # no :path
    [(":method", "GET"), (":path", "/"), (":authority", "a")],                   # no :scheme
    [(":scheme", "http"), (":path", "/"), (":authority", "a")],                  # no :method
    [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":path", "/")],   # twice
    [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":status", "200")],
    [(":method", "GET"), (":scheme", "http"), ("x", "1"), (":path", "/")],       # after regular
    [(":method", "GET"), (":scheme", "http"), (":path", "no-slash")],
    [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a"),
     ("host", "b")],
])
async def test_pseudo_headers_are_validated(fields: list[tuple[str, str]]) -> None:
    async with running(text_response) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)
            sid = client.conn.get_next_available_stream_id()
            client.conn.send_headers(sid, [(k.encode(), v.encode()) for k, v in fields],
                                     end_stream=True)
            reply = await client.response(sid)
            await client.aclose()
    assert reply.reset == 1 and reply.status is None


async def test_host_from_authority_and_cookies_joined() -> None:
    seen: list[mhd2.Request] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        seen.append(request)
        return text_response(request)

    async with running(cb) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)
            await client.response(client.request(
                "/c?a=1", headers=[("cookie", "a=1"), ("cookie", "b=2")], authority="ex.org:8"))
            await client.aclose()
    request = seen[0]
    assert request.version == "HTTP/2" and request.http_version is mhd2.HTTPVersion.HTTP_2
    assert request.headers["Host"] == "ex.org:8" and request.uri == "/c?a=1"
    assert dict(request.cookies) == {"a": "1", "b": "2"}


async def test_request_ended_once_per_stream_and_client_reset_is_client_abort(
        ended: Ended) -> None:
    parked = trio.Event()

    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/park":
            parked.set()
            return mhd2.action_suspend(request)
        return text_response(request)

    both_ended = trio.Event()

    def on_end(request: mhd2.Request, code: mhd2.RequestEndedCode) -> None:
        ended.append((request, code))
        if len(ended) == 2:
            both_ended.set()

    async with running(cb, notify_request_ended=on_end) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)
            park = client.request("/park")
            ok = client.request("/ok")
            await client.response(ok)
            await parked.wait()
            client.conn.reset_stream(park, 8)  # CANCEL
            await client.flush()
            await both_ended.wait()
            await client.aclose()
    assert sorted((r.path, c) for r, c in ended) == [
        ("/ok", RequestEndedCode.COMPLETED_OK), ("/park", RequestEndedCode.CLIENT_ABORT)]


async def test_upgrade_on_an_http2_stream_is_refused_with_501(
        caplog: pytest.LogCaptureFixture) -> None:
    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_upgrade(request, "websocket", lambda req, urh: None)

    async with running(cb) as daemon:
        async with h2_client(daemon.port) as client:
            with caplog.at_level(logging.ERROR, "mhd2"), trio.fail_after(WAIT):
                r = await client.get("/ws")
    assert r.status_code == 501
    assert "HTTP/2 has no Upgrade" in caplog.text


async def test_basic_and_digest_challenges_work_unchanged() -> None:
    async with running(basic_app) as daemon:
        async with h2_client(daemon.port) as client:
            with trio.fail_after(WAIT):
                r1 = await client.get("/")
                r2 = await client.get("/", auth=(USER, PASSWORD))
    assert r1.status_code == 401 and r1.headers["www-authenticate"].startswith("Basic realm=")
    assert (r2.status_code, r2.text) == (200, "hello root")
    async with running(digest_app(), digest_auth_random=RANDOM) as daemon:
        async with h2_client(daemon.port, auth=httpx.DigestAuth(USER, PASSWORD)) as client:
            with trio.fail_after(WAIT):
                r = await client.get("/s/1?q=1")
    assert (r.status_code, r.text, r.http_version) == (200, "welcome", "HTTP/2")


# -- graceful stop and idle timeout ---------------------------------------------------------------


async def test_graceful_stop_sends_goaway_and_lets_running_streams_finish(ended: Ended) -> None:
    release = trio.Event()
    started = trio.Event()

    async def cb(request: mhd2.Request) -> mhd2.Action:
        started.set()
        await release.wait()
        return text_response(request, b"finished")

    daemon = mhd2.Daemon(cb, port=0, notify_request_ended=lambda r, c: ended.append((r, c)))
    async with daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)
            sid = client.request("/slow")
            await client.flush()
            await started.wait()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(daemon.stop, 5.0)
                # RFC 9113 §6.8: first a GOAWAY with 2^31-1 (and a PING), then,
                # once the PING is answered, one naming the last stream taken.
                announced = await client.until_goaway()
                assert announced.error_code == 0 and announced.last_stream_id == 2**31 - 1
                final = await client.until_final_goaway()
                assert final.error_code == 0 and final.last_stream_id == sid
                release.set()
                reply = await client.response(sid)
                await client.until_closed()
                await client.aclose()  # else the stop waits out the server's linger
    assert (reply.status, reply.body) == (200, b"finished")
    assert [c for _, c in ended] == [RequestEndedCode.COMPLETED_OK]


async def read_unanswered(client: RawH2, done: Callable[[], bool]) -> None:
    """Read frames into ``client.frames`` without h2 seeing them (so a PING
    is not acknowledged) until ``done()``."""
    while not done():
        data = await client.stream.receive_some(65536)
        assert data, "the server closed"
        client.frames.extend(frame for frame, _ in client._split(data))


def announcing_ping(client: RawH2) -> PingFrame | None:
    return next((f for f in client.frames
                 if isinstance(f, PingFrame) and "ACK" not in f.flags), None)


async def test_a_request_in_flight_when_the_stop_is_announced_is_served(ended: Ended) -> None:
    """A fresh connection's first request that crosses the stop's announcement
    is taken and answered (RFC 9113 §6.8: the first GOAWAY has 2^31-1; the
    final one, after the PING round trip, names the last stream taken)."""
    async with running(text_response,
                       notify_request_ended=lambda r, c: ended.append((r, c))) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)
            await client.until(lambda: any(isinstance(f, SettingsFrame) for f in client.frames))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(daemon.stop, 5.0)
                await read_unanswered(client, lambda: announcing_ping(client) is not None)
                announced = [f for f in client.frames if isinstance(f, GoAwayFrame)]
                assert [(f.last_stream_id, f.error_code) for f in announced] == [(2**31 - 1, 0)]
                # Sent before the client acknowledges the PING: still taken.
                sid = client.request("/first")
                await client.flush()
                ping = announcing_ping(client)
                assert ping is not None
                await client.send_raw(PingFrame(0, opaque_data=ping.opaque_data,
                                                flags=["ACK"]).serialize())
                reply = await client.response(sid)
                final = await client.until_final_goaway()
                await client.until_closed()
                await client.aclose()
    assert (reply.status, reply.body, final.last_stream_id) == (200, b"ok", sid)
    assert [c for _, c in ended] == [RequestEndedCode.COMPLETED_OK]


async def test_an_unanswered_announcement_ends_within_its_bound(
        autojump_clock: trio.testing.MockClock) -> None:
    """A client that never answers the announcing PING gets the final GOAWAY
    after ANNOUNCE_SECONDS, and the idle connection closes."""
    from mhd2.http2.stop import ANNOUNCE_SECONDS

    async with running(text_response) as daemon:
        with trio.fail_after(WAIT * 10):
            client = await RawH2.over(await open_stream(daemon))
            reply = await client.response(client.request("/"))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(daemon.stop, 30.0)
                await read_unanswered(client, lambda: announcing_ping(client) is not None)
                start = trio.current_time()
                await read_unanswered(client, lambda: any(
                    isinstance(f, GoAwayFrame) and f.last_stream_id == 1 for f in client.frames))
                waited = trio.current_time() - start
                await client.aclose()
    assert reply.status == 200
    assert ANNOUNCE_SECONDS <= waited <= ANNOUNCE_SECONDS + 0.5, waited


async def test_idle_connection_gets_goaway_at_the_keep_alive_timeout(
        autojump_clock: trio.testing.MockClock) -> None:
    """In memory on virtual time: the GOAWAY comes at keep_alive_timeout (not at
    the longer timeout), give or take the idle check's slack."""
    async with running(text_response, timeout=60, keep_alive_timeout=20) as daemon:
        with trio.fail_after(WAIT * 10):
            client = await RawH2.over(await open_stream(daemon))
            reply = await client.response(client.request("/"))
            start = trio.current_time()
            goaway = await client.until_goaway(timeout=WAIT * 10)
            idle_for = trio.current_time() - start
            await client.until_closed()
            await client.aclose()  # else the daemon's exit waits out the server's linger
    assert reply.status == 200 and goaway.error_code == 0 and goaway.last_stream_id == 1
    assert 20 <= idle_for <= 20 + IDLE_SLACK, idle_for


# -- real clients ---------------------------------------------------------------------------------


async def run_tool(*args: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(30):
        return await trio.run_process(list(args), capture_stdout=True, capture_stderr=True,
                                      check=False)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_prior_knowledge_and_tls(ca: trustme.CA, tmp_path: Any) -> None:
    async with running(echo_request) as daemon:
        done = await run_tool("curl", "-s", "--http2-prior-knowledge", "-w", "\n%{http_version}",
                              f"http://127.0.0.1:{daemon.port}/c?x=1")
        port = daemon.port
    assert done.stdout.decode().splitlines() == [
        f"HTTP/2 GET /c [('x', '1')] 127.0.0.1:{port}", "2"]
    server, _ = tls_pair(ca)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with running(echo_request, tls=server) as daemon:
        done = await run_tool("curl", "-s", "--http2", "--cacert", str(ca_file), "-w",
                              "\n%{http_version}", f"https://localhost:{daemon.port}/t")
        port = daemon.port
    assert done.stdout.decode().splitlines() == [
        f"HTTP/2 GET /t [] localhost:{port}", "2"]


NGHTTP = shutil.which("nghttp")
H2LOAD = shutil.which("h2load")


@pytest.mark.skipif(NGHTTP is None or H2LOAD is None,
                    reason="nghttp/h2load not found: apt-get install -y nghttp2-client")
async def test_nghttp_and_h2load(ended: Ended) -> None:
    body = b"x" * 100_000
    async with running(lambda r: text_response(r, body),
                       notify_request_ended=lambda r, c: ended.append((r, c))) as daemon:
        url = f"http://127.0.0.1:{daemon.port}/n"
        nghttp = await run_tool("nghttp", "-s", url, url + "?2", url + "?3")
        load = await run_tool("h2load", "-n", "400", "-c", "4", "-m", "10", url)
    assert nghttp.returncode == 0, nghttp.stderr
    assert load.returncode == 0, load.stderr
    out = load.stdout.decode()
    assert "400 succeeded, 0 failed, 0 errored" in out, out
    assert "status codes: 400 2xx" in out
    assert len(ended) == 403 and {c for _, c in ended} == {RequestEndedCode.COMPLETED_OK}


async def test_stop_wakes_parked_streams_with_503_and_refuses_new_ones(ended: Ended) -> None:
    parked = trio.Event()

    def cb(request: mhd2.Request) -> mhd2.Action:
        parked.set()
        return mhd2.action_suspend(request)

    daemon = mhd2.Daemon(cb, port=0, notify_request_ended=lambda r, c: ended.append((r, c)))
    async with daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)
            sid = client.request("/parked")
            await client.flush()
            await parked.wait()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(daemon.stop, 5.0)
                goaway = await client.until_final_goaway()
                reply = await client.response(sid)
                await client.until_closed()
                await client.aclose()  # else the stop waits out the server's linger
    assert goaway.last_stream_id == sid and reply.status == 503
    assert [c for _, c in ended] == [RequestEndedCode.DAEMON_SHUTDOWN]


async def test_max_requests_per_connection_sends_goaway() -> None:
    async with running(text_response, max_requests_per_connection=2) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)
            first = await client.response(client.request("/1"))
            second = await client.response(client.request("/2"))
            goaway = await client.until_goaway()
            await client.until_closed()
            await client.aclose()  # else the daemon's exit waits out the server's linger
    assert first.status == second.status == 200
    assert goaway.error_code == 0 and goaway.last_stream_id == 3


async def test_the_last_answers_are_not_cut_when_the_connection_ends_mid_write(
        ended: Ended) -> None:
    """The stream that reaches max_requests_per_connection ends the connection's reading
    while the reader writes 16 MB of answers to a client that does not read yet:
    the write is finished, not cut -- every answer arrives whole, then GOAWAY."""
    count = 1000
    body = b"b" * 16000

    def cb(request: mhd2.Request) -> mhd2.Action:
        return text_response(request, body)

    all_answered = trio.Event()

    def on_end(request: mhd2.Request, code: mhd2.RequestEndedCode) -> None:
        ended.append((request, code))
        if len(ended) == count:
            all_answered.set()

    async with running(cb, max_requests_per_connection=count, http2_max_concurrent_streams=2000,
                       notify_request_ended=on_end) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)
            async with client.stream:
                client.conn.increment_flow_control_window(2**30 - 65535)
                await client.until(lambda: client.conn.remote_settings.max_concurrent_streams
                                   == 2000)
                sids = [client.request(f"/{i}") for i in range(count)]
                await client.flush()  # all the HEADERS in one write
                await all_answered.wait()  # all answers queued: the reader is writing
                goaway = await client.until_goaway()
                await client.until_closed()
    assert all(client.replies[sid].body == body and client.replies[sid].ended for sid in sids)
    assert goaway.error_code == 0 and goaway.last_stream_id == sids[-1]


async def test_connection_timeout_is_per_stream(ended: Ended,
        autojump_clock: trio.testing.MockClock) -> None:
    """request.connection_timeout sets the limit of the request's own stream:
    a stream waiting for a body that does not come is cut, its neighbour is not."""
    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/short":
            request.connection_timeout = 0.3

        def full(req: mhd2.Request, data: bytes) -> mhd2.UploadAction:
            return mhd2.upload_action_from_response(req, mhd2.Response.from_buffer_copy(200, data))
        return mhd2.action_process_upload_full(request, 1000, full)

    async with running(cb, timeout=30,
                       notify_request_ended=lambda r, c: ended.append((r, c))) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.over(await open_stream(daemon))
            short = client.request("/short", "POST", end=False)
            long = client.request("/long", "POST", end=False)
            cut = await client.response(short)
            client.conn.send_data(long, b"late but fine", end_stream=True)
            fine = await client.response(long)
            await client.aclose()
    assert cut.reset == 8 and fine.body == b"late but fine"
    assert [(r.path, c) for r, c in ended] == [
        ("/short", RequestEndedCode.TIMEOUT_REACHED), ("/long", RequestEndedCode.COMPLETED_OK)]


async def test_prior_knowledge_over_serve_stream(ended: Ended) -> None:
    """The preface is recognised on any transport, e.g. a memory stream handed to
    serve_stream; the connection counts and its streams end once each."""
    async with running(echo_request,
                       notify_request_ended=lambda r, c: ended.append((r, c))) as daemon:
        with trio.fail_after(WAIT):
            stream = await open_stream(daemon)
            client = RawH2(stream)
            await client.flush()
            replies = [await client.response(client.request(f"/m{i}")) for i in range(3)]
            assert daemon.connection_count == 1
            await client.aclose()
    assert [r.body.split(b" ")[:3] for r in replies] == [
        [b"HTTP/2", b"GET", f"/m{i}".encode()] for i in range(3)]
    assert [c for _, c in ended] == [RequestEndedCode.COMPLETED_OK] * 3


async def test_forwarded_headers_apply_to_streams() -> None:
    seen: list[mhd2.Request] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        seen.append(request)
        return text_response(request)

    async with running(cb, forwarded_headers="x-forwarded") as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)
            await client.response(client.request("/f", headers=[
                ("x-forwarded-for", "203.0.113.9"), ("x-forwarded-proto", "https")]))
            await client.aclose()
    assert seen[0].client_address[0] == "203.0.113.9" and seen[0].scheme == "https"
    assert seen[0].connection.client_address[0] == "127.0.0.1"


# -- answers made in the reader and in stream tasks ------------------------------------------


async def test_reader_answers_and_task_answers_share_one_connection(ended: Ended) -> None:
    """Small answers are queued by the connection's reader, everything else by stream
    tasks; on one connection, in one burst, every stream gets its own answer whole."""
    parked: list[mhd2.Request] = []
    all_parked = trio.Event()
    big = bytes(range(256)) * 400  # 102,400 B: more than a stream's window

    async def async_cb(request: mhd2.Request) -> mhd2.Action:
        await trio.lowlevel.checkpoint()
        return text_response(request, b"async " + request.path.encode())

    def cb(request: mhd2.Request) -> mhd2.Action | Any:
        kind = request.path.split("/")[1]
        if kind == "async":
            return async_cb(request)
        if kind == "park" and request.app_context is None:
            request.app_context = "resumed"
            parked.append(request)
            if len(parked) == 10:
                all_parked.set()
            return mhd2.action_suspend(request)
        if kind == "big":
            return text_response(request, big)
        if kind == "hdr":
            response = mhd2.Response.from_buffer_copy(200, b"long head")
            response.add_header("X-Long", "h" * 20000)  # a block beyond one frame
            return mhd2.action_from_response(request, response)
        if kind == "none":
            return mhd2.action_from_response(request, mhd2.Response.from_buffer_copy(204, b""))
        return text_response(request, request.path.encode())

    async with running(cb, notify_request_ended=lambda r, c: ended.append((r, c))) as daemon:
        client = await RawH2.connect(daemon.port)
        async with client.stream:
            paths = [f"/{kind}/{i}" for i in range(10)
                     for kind in ("now", "async", "park", "big", "hdr", "none")]
            sids = {client.request(path, method="HEAD" if path == "/now/3" else "GET"): path
                    for path in paths}
            await client.flush()
            with trio.fail_after(WAIT):
                await all_parked.wait()
                for request in parked:
                    mhd2.request_resume(request)
                await client.until(lambda: all(client.replies[s].ended for s in sids))
    for sid, path in sids.items():
        reply = client.replies[sid]
        kind = path.split("/")[1]
        assert reply.reset is None, path
        if kind == "big":
            assert reply.body == big
        elif kind == "async":
            assert reply.body == b"async " + path.encode()
        elif kind == "hdr":
            assert reply.header(b"x-long") == b"h" * 20000 and reply.body == b"long head"
        elif kind == "none":
            assert reply.status == 204 and reply.body == b""
        elif path == "/now/3":
            assert reply.body == b"" and reply.header(b"content-length") == b"6"
        else:
            assert reply.body == path.encode()
        if kind != "none":
            assert reply.status == 200
    # Each request ended once, completed.
    assert sorted(r.path for r, _ in ended) == sorted(paths)
    assert {c for _, c in ended} == {RequestEndedCode.COMPLETED_OK}
    # The 20 KB head went out as HEADERS + CONTINUATION; the small answers whole,
    # END_STREAM on their DATA frame.
    kinds = {type(f).__name__ for f in client.frames}
    assert "ContinuationFrame" in kinds
    now = next(s for s, p in sids.items() if p == "/now/1")
    frames = [f for f in client.frames if f.stream_id == now]
    assert [type(f).__name__ for f in frames] == ["HeadersFrame", "DataFrame"]
    assert "END_HEADERS" in frames[0].flags and "END_STREAM" not in frames[0].flags
    assert "END_STREAM" in frames[1].flags
