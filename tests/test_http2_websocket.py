"""RFC 8441: WebSocket (and action_upgrade) over HTTP/2 streams, with a raw h2 client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing
from conftest import WAIT, open_stream, running, text_response
from h2.settings import SettingCodes
from h2raw import RawH2, Reply
from h2ws import H2WebSocket, extended_connect
from hyperframe.frame import HeadersFrame, RstStreamFrame, SettingsFrame
from wsproto.events import CloseConnection, Ping, Pong, TextMessage

import mhd2
from mhd2.enums import RequestEndedCode
from mhd2.websocket import ConnectionClosed, WebSocket, action_websocket


def _app(handler: Callable[[WebSocket], Awaitable[Any]], **kwargs: Any) -> Any:
    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/ws":
            return action_websocket(request, handler, **kwargs)
        return text_response(request)
    return cb


async def echo(ws: WebSocket) -> None:
    while True:
        await ws.send(await ws.receive())


async def test_server_settings_enable_connect_protocol() -> None:
    async with running(_app(echo)) as daemon:
        client = await RawH2.connect(daemon.port)
        await client.until(lambda: any(isinstance(f, SettingsFrame) and "ACK" not in f.flags
                                       for f in client.frames))
        settings = next(f for f in client.frames
                        if isinstance(f, SettingsFrame) and "ACK" not in f.flags)
        # RFC 8441 §3: "SETTINGS_ENABLE_CONNECT_PROTOCOL (0x08)" = 1.
        assert settings.settings.get(SettingCodes.ENABLE_CONNECT_PROTOCOL) == 1
        await client.aclose()


async def test_handshake_is_200_without_accept_and_echoes_text_and_binary() -> None:
    seen: list[tuple[str, str, str | None]] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path != "/ws":
            return text_response(request)
        seen.append((request.method, request.version, request.headers.get("Upgrade")))
        return action_websocket(request, echo, subprotocols=["chat"])

    async with running(cb) as daemon:
        client = await RawH2.connect(daemon.port)
        ws = await H2WebSocket.open(client, headers=[("sec-websocket-version", "13"),
                                                     ("sec-websocket-protocol", "x, chat")])
        headers = dict(ws.reply.headers)
        # RFC 8441 §5: a 2xx, and "The Sec-WebSocket-Accept header field is not used".
        assert headers[b":status"] == b"200"
        assert b"sec-websocket-accept" not in headers
        assert headers[b"sec-websocket-protocol"] == b"chat"
        assert b"content-length" not in headers
        assert seen == [("GET", "HTTP/2", "websocket")]
        await ws.text("héllo")
        assert await ws.message() == "héllo"
        await ws.binary(b"\x00\x01\xff")
        assert await ws.message() == b"\x00\x01\xff"
        # Fragmented message: three frames, one message.
        await ws.send(TextMessage("ab", message_finished=False))
        await ws.send(TextMessage("cd", message_finished=False))
        await ws.send(TextMessage("ef", message_finished=True))
        assert await ws.message() == "abcdef"
        # Ping -> pong.
        await ws.send(Ping(b"p1"))
        event = await ws.event()
        assert isinstance(event, Pong) and event.payload == b"p1"
        # The client closes: the server answers with the same code, then ENDs the stream.
        await ws.send(CloseConnection(4000, "bye"))
        assert await ws.close_code() == 4000
        await client.until(lambda: ws.reply.ended or ws.reply.reset is not None)
        assert ws.reply.ended
        # The connection serves on.
        sid = client.request("/")
        reply = await client.response(sid)
        assert reply.status == 200 and reply.body == b"ok"
        await client.aclose()


async def test_handler_close_code_and_request_end_reported() -> None:
    ended: list[tuple[str, RequestEndedCode]] = []

    async def handler(ws: WebSocket) -> None:
        await ws.send("bye soon")
        await ws.close(4001, "done")

    async with running(_app(handler),
                       notify_request_ended=lambda r, c: ended.append((r.path, c))) as daemon:
        client = await RawH2.connect(daemon.port)
        ws = await H2WebSocket.open(client)
        assert await ws.message() == "bye soon"
        assert await ws.close_code() == 4001
        await ws.send(CloseConnection(4001))
        await ws.send_raw(b"", end=True)
        await client.until(lambda: ws.reply.ended or ws.reply.reset is not None)
        assert ws.reply.ended and ws.reply.reset is None
        assert ended == [("/ws", RequestEndedCode.COMPLETED_OK_UPGRADE)]
        await client.aclose()


async def test_many_websockets_share_one_connection() -> None:
    async with running(_app(echo)) as daemon:
        client = await RawH2.connect(daemon.port)
        sockets = [await H2WebSocket.open(client) for _ in range(30)]
        for i, ws in enumerate(sockets):
            await ws.text(f"m{i}")
        for i, ws in enumerate(sockets):
            assert await ws.message() == f"m{i}"
        assert daemon.connection_count == 1
        await client.aclose()


async def test_client_end_stream_and_reset_end_the_handler() -> None:
    results: list[str] = []
    done = trio.Event()

    async def handler(ws: WebSocket) -> None:
        try:
            await ws.receive()
        except ConnectionClosed as exc:
            results.append(f"closed {exc.reason.code}")
        if len(results) == 2:
            done.set()

    async with running(_app(handler)) as daemon:
        client = await RawH2.connect(daemon.port)
        a = await H2WebSocket.open(client)
        b = await H2WebSocket.open(client)
        # RFC 8441 §7: END_STREAM is the orderly TCP close, RST_STREAM the abortive one.
        await a.send_raw(b"", end=True)
        client.conn.reset_stream(b.sid, 8)
        await client.flush()
        with trio.fail_after(WAIT):
            await done.wait()
        assert sorted(results) == ["closed 1006", "closed 1006"]
        sid = client.request("/")
        assert (await client.response(sid)).status == 200
        await client.aclose()


@pytest.mark.parametrize("fields", [
    # :protocol on a method other than CONNECT (RFC 8441 §4, RFC 9113 §8.3).
    [(":method", "GET"), (":protocol", "websocket"), (":scheme", "http"), (":path", "/ws"),
     (":authority", "localhost")],
    # An extended CONNECT without :path, without :scheme, without :authority.
    [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
     (":authority", "localhost")],
    [(":method", "CONNECT"), (":protocol", "websocket"), (":path", "/ws"),
     (":authority", "localhost")],
    [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"), (":path", "/ws")],
    # :path not origin-form; :protocol empty or not a token; twice.
    [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"), (":path", "ws"),
     (":authority", "localhost")],
    [(":method", "CONNECT"), (":protocol", ""), (":scheme", "http"), (":path", "/ws"),
     (":authority", "localhost")],
    [(":method", "CONNECT"), (":protocol", "web socket"), (":scheme", "http"), (":path", "/ws"),
     (":authority", "localhost")],
    [(":method", "CONNECT"), (":protocol", "websocket"), (":protocol", "websocket"),
     (":scheme", "http"), (":path", "/ws"), (":authority", "localhost")],
    # A plain CONNECT (RFC 9113 §8.5) must not carry :scheme or :path.
    [(":method", "CONNECT"), (":scheme", "http"), (":path", "/ws"), (":authority", "localhost")],
])
async def test_malformed_extended_connect_is_reset_and_never_reaches_the_app(
        fields: list[tuple[str, str]]) -> None:
    called: list[str] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        called.append(request.path)
        return text_response(request)

    async with running(cb) as daemon:
        client = await RawH2.connect(daemon.port)
        sid = client.conn.get_next_available_stream_id()
        client.conn.send_headers(sid, [(k.encode(), v.encode()) for k, v in fields])
        client.replies[sid] = Reply()
        reply = await client.response(sid)
        # RFC 9113 §8.1.1: malformed -> stream error PROTOCOL_ERROR (0x1).
        assert reply.reset == 1 and reply.status is None
        ok = client.request("/")
        assert (await client.response(ok)).status == 200
        assert called == ["/"]
        await client.aclose()


async def test_plain_connect_reaches_the_app_as_connect() -> None:
    seen: list[tuple[str, str]] = []

    def cb(request: mhd2.Request) -> mhd2.Action:
        seen.append((request.method, request.uri))
        return text_response(request, b"no proxy here", 405)

    async with running(cb) as daemon:
        client = await RawH2.connect(daemon.port)
        sid = client.conn.get_next_available_stream_id()
        client.conn.send_headers(sid, [(b":method", b"CONNECT"), (b":authority", b"example:443")])
        client.replies[sid] = Reply()
        reply = await client.response(sid)
        assert reply.status == 405 and seen == [("CONNECT", "example:443")]
        await client.aclose()


async def test_websocket_handshake_errors_over_http2() -> None:
    async with running(_app(echo)) as daemon:
        client = await RawH2.connect(daemon.port)
        # Another :protocol than websocket: action_websocket answers 400.
        sid = extended_connect(client, protocol="chat")
        reply = await client.response(sid)
        assert reply.status == 400 and b"RFC 8441" in reply.body
        # Sec-WebSocket-Version missing: 400 with the version the server speaks.
        sid = extended_connect(client, headers=[])
        reply = await client.response(sid)
        assert reply.status == 400 and reply.header(b"sec-websocket-version") == b"13"
        # A plain GET to the endpoint (no extended CONNECT): 400, nothing hangs.
        sid = client.request("/ws")
        reply = await client.response(sid)
        assert reply.status == 400
        await client.aclose()


async def test_refused_extended_connect_gets_its_response_at_once() -> None:
    def cb(request: mhd2.Request) -> mhd2.Action:
        return text_response(request, b"go away", 403)

    async with running(cb) as daemon:
        client = await RawH2.connect(daemon.port)
        sid = extended_connect(client)
        # The tunnel's bytes are not a body to wait for: the 403 comes at once.
        reply = await client.response(sid, timeout=3)
        assert reply.status == 403 and reply.body == b"go away"
        await client.aclose()


async def test_action_upgrade_over_a_stream_echo_eof_and_timeouts() -> None:
    log: list[Any] = []
    finished = trio.Event()

    async def handler(request: mhd2.Request, urh: mhd2.UpgradeHandle) -> None:
        try:
            with pytest.raises(mhd2.UpgradedTimeout):
                await urh.upgraded_recv(10, timeout=0)
            with pytest.raises(mhd2.UpgradedTimeout):
                await urh.upgraded_recv(10, timeout=0.05)
            await urh.upgraded_send(b"ready")
            got = b""
            while True:
                data = await urh.upgraded_recv(4)  # smaller than what comes: split
                log.append(len(data))
                if not data:
                    break
                got += data
            await urh.upgraded_send(got[::-1])
            await urh.upgraded_close()
            with pytest.raises(mhd2.UpgradedHandleInvalid):
                await urh.upgraded_send(b"x")
        finally:
            finished.set()

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_upgrade(request, "echo", handler, [("X-Tunnel", "yes")])

    async with running(cb) as daemon:
        client = await RawH2.connect(daemon.port)
        sid = extended_connect(client, protocol="echo", headers=[])
        await client.flush()
        reply = client.replies[sid]
        await client.until(lambda: reply.body == b"ready")
        assert reply.status == 200 and reply.header(b"x-tunnel") == b"yes"
        client.conn.send_data(sid, b"0123456789", end_stream=True)
        await client.flush()
        await client.until(lambda: reply.ended)
        assert reply.body == b"ready" + b"9876543210" and reply.reset is None
        with trio.fail_after(WAIT):
            await finished.wait()
        assert log == [4, 4, 2, 0]
        await client.aclose()


async def test_flow_control_is_the_backpressure_both_ways(
        autojump_clock: trio.testing.MockClock) -> None:
    """A client that stops acknowledging stops the handler's sends (a timeout then
    reports a partial send), and a handler that stops reading closes the client's
    window instead of buffering (real sockets on MockClock: the send timeouts pass
    in virtual time)."""
    window = 1000
    results: dict[str, Any] = {}
    sent_some = trio.Event()
    may_read = trio.Event()

    async def handler(request: mhd2.Request, urh: mhd2.UpgradeHandle) -> None:
        results["partial"] = await urh.upgraded_send(b"x" * 5000, timeout=0.2)
        with pytest.raises(mhd2.UpgradedTimeout):
            await urh.upgraded_send(b"y", timeout=0.1)
        sent_some.set()
        await may_read.wait()
        got = 0
        while True:
            data = await urh.upgraded_recv(65536)
            if not data:
                break
            got += len(data)
        results["received"] = got
        await urh.upgraded_send(b"done")

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_upgrade(request, "raw", handler)

    async with running(cb, http2_initial_window_size=4096) as daemon:
        client = await RawH2.connect(daemon.port, window=window, auto_ack=False)
        sid = extended_connect(client, protocol="raw", headers=[])
        await client.flush()
        with trio.fail_after(WAIT):
            await sent_some.wait()
        # Only the client's window went out: the send was cut there by the timeout.
        assert results["partial"] == window
        reply = client.replies[sid]
        await client.until(lambda: len(reply.body) == window)
        # The handler does not read: the client can send the stream's window only.
        conn = client.conn
        with trio.fail_after(WAIT):
            while conn.local_flow_control_window(sid) > 0:
                room = min(conn.local_flow_control_window(sid), 1000)
                conn.send_data(sid, b"z" * room)
                await client.flush()
        assert conn.local_flow_control_window(sid) == 0
        sent = 4096
        may_read.set()
        # Reading opens the window again: the client finishes its 20000 bytes.
        with trio.fail_after(WAIT):
            while sent < 20000:
                room = min(conn.local_flow_control_window(sid), 20000 - sent,
                           conn.max_outbound_frame_size)
                if room <= 0:
                    await client.receive()
                    continue
                conn.send_data(sid, b"z" * room)
                sent += room
                await client.flush()
        conn.end_stream(sid)
        conn.acknowledge_received_data(window, sid)
        await client.flush()
        await client.until(lambda: reply.body.endswith(b"done"))
        assert results["received"] == 20000
        await client.aclose()


async def test_graceful_stop_closes_websockets_with_1001() -> None:
    opened = trio.Event()
    handler_saw: list[int] = []

    async def handler(ws: WebSocket) -> None:
        opened.set()
        try:
            while True:
                await ws.receive()
        except ConnectionClosed as exc:
            handler_saw.append(exc.reason.code)

    async with trio.open_nursery() as nursery:
        daemon = mhd2.Daemon(_app(handler), port=0)
        await nursery.start(daemon.serve)
        client = await RawH2.connect(daemon.port)
        ws = await H2WebSocket.open(client)
        with trio.fail_after(WAIT):
            await opened.wait()
        async with trio.open_nursery() as stopping:
            stopping.start_soon(daemon.stop, WAIT)
            # RFC 6455 §7.4.1: "1001 indicates that an endpoint is "going away""
            assert await ws.close_code() == 1001
            await ws.send(CloseConnection(1001))
            await ws.send_raw(b"", end=True)
            goaway = await client.until_goaway()
            assert goaway.error_code == 0
            await client.until_closed()
            await client.aclose()  # else the stop waits out the server's linger
    assert handler_saw == [1001]


async def test_large_messages_both_ways() -> None:
    async with running(_app(echo, max_message_size=4 << 20)) as daemon:
        client = await RawH2.connect(daemon.port)
        ws = await H2WebSocket.open(client)
        big = bytes(range(256)) * 4096  # 1 MiB: many windows' worth
        await ws.binary(big)
        assert await ws.message(timeout=WAIT * 2) == big
        await client.aclose()



async def test_client_vanishing_ends_every_handler_with_1006_not_a_cancellation() -> None:
    opened: list[int] = []
    all_open = trio.Event()
    outcomes: list[str] = []
    all_done = trio.Event()
    ended: list[RequestEndedCode] = []

    async def handler(ws: WebSocket) -> None:
        opened.append(1)
        if len(opened) == 3:
            all_open.set()
        try:
            await ws.receive()
        except ConnectionClosed as exc:
            outcomes.append(f"closed {exc.reason.code}")
        except trio.Cancelled:
            outcomes.append("cancelled")
            raise
        finally:
            if len(outcomes) == 3:
                all_done.set()

    async with running(_app(handler), notify_request_ended=lambda r, c: ended.append(c)) \
            as daemon:
        client = await RawH2.connect(daemon.port)
        for _ in range(3):
            await H2WebSocket.open(client)
        with trio.fail_after(WAIT):
            await all_open.wait()
        await client.aclose()  # no END_STREAM, no RST_STREAM, no GOAWAY: gone
        with trio.fail_after(WAIT):
            await all_done.wait()
            while daemon.connection_count:
                await trio.testing.wait_all_tasks_blocked()
        assert outcomes == ["closed 1006"] * 3
        assert ended == [RequestEndedCode.COMPLETED_OK_UPGRADE] * 3


async def test_keepalive_pings_over_a_stream_and_closes_1011_when_unanswered(
        autojump_clock: trio.testing.MockClock) -> None:
    async with running(_app(echo, ping_interval=0.2)) as daemon:
        client = await RawH2.over(await open_stream(daemon))
        ws = await H2WebSocket.open(client)
        # The helper answers pings: the WebSocket stays open across several.
        for _ in range(2):
            event = await ws.event()
            assert isinstance(event, Ping)
        await ws.text("still here")
        assert await ws.message() == "still here"
        # A client that does not answer (and sends nothing) is closed with 1011.
        quiet = await H2WebSocket.open(client)
        with trio.fail_after(WAIT):
            while True:
                quiet._feed()
                events = list(quiet.ws.events())
                if any(isinstance(e, CloseConnection) for e in events):
                    break
                await client.receive()
        assert next(e for e in events if isinstance(e, CloseConnection)).code == 1011
        await client.aclose()


async def test_websockets_beyond_max_concurrent_streams_are_refused() -> None:
    async with running(_app(echo), http2_max_concurrent_streams=4) as daemon:
        client = await RawH2.connect(daemon.port)
        await client.until(lambda: client.conn.remote_settings.max_concurrent_streams == 4)
        sockets = [await H2WebSocket.open(client) for _ in range(4)]
        # h2 (the client) keeps to the limit itself: send the fifth HEADERS raw.
        sid = 2 * len(sockets) + 1
        block = client.conn.encoder.encode([
            (b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"http"),
            (b":path", b"/ws"), (b":authority", b"localhost"), (b"sec-websocket-version", b"13")])
        await client.send_raw(HeadersFrame(sid, block, flags=["END_HEADERS"]).serialize())
        # (The client's h2 never opened the stream: it makes no event of the
        # answer, so the frame itself is looked for.)
        def answer() -> list[Any]:
            return [f for f in client.frames if f.stream_id == sid]
        await client.until(answer)
        # RFC 9113 §5.1.2: REFUSED_STREAM (0x7), the client may retry.
        assert [(type(f), getattr(f, "error_code", None)) for f in answer()] == [
            (RstStreamFrame, 7)]
        await sockets[0].text("the others go on")
        assert await sockets[0].message() == "the others go on"
        await client.aclose()


async def test_data_sent_right_behind_the_extended_connect_comes_first() -> None:
    async with running(_app(echo)) as daemon:
        client = await RawH2.connect(daemon.port)
        sid = extended_connect(client)
        ws = H2WebSocket(client, sid)
        # Frames queued with the HEADERS, before the 200 came back.
        await ws.text("early")
        assert await ws.message() == "early"
        assert ws.reply.status == 200
        await client.aclose()
