"""What the ASGI bridge needed from the engine: request_on_end, action_websocket(headers=),
and a read that a cancellation does not lose."""

from __future__ import annotations

import httpx
import trio
from conftest import WAIT, exchange, running, status_of, text_response
from websockets.sync.client import connect

import mhd2
from mhd2.websocket import WebSocket, action_websocket


async def test_request_on_end_reports_each_end_once() -> None:
    codes: list[tuple[str, mhd2.RequestEndedCode]] = []
    parked: list[mhd2.Request] = []
    is_parked = trio.Event()

    def cb(request: mhd2.Request) -> mhd2.Action:
        if not any(r is request for r in parked):
            mhd2.request_on_end(request, lambda code: codes.append((request.path, code)))
        if request.path == "/park":
            parked.append(request)
            is_parked.set()
            return mhd2.action_suspend(request)
        return text_response(request)

    async with running(cb) as d, httpx.AsyncClient() as client:
        assert (await client.get(f"http://127.0.0.1:{d.port}/ok")).status_code == 200
        stream = await trio.open_tcp_stream("127.0.0.1", d.port)
        await stream.send_all(b"GET /park HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.fail_after(WAIT):
            await is_parked.wait()
            await stream.aclose()  # the client goes while its request is suspended
            while len(codes) < 2:
                await trio.testing.wait_all_tasks_blocked()
        late: list[mhd2.RequestEndedCode] = []
        mhd2.request_on_end(parked[0], late.append)  # already ended: called at once
    assert codes == [("/ok", mhd2.RequestEndedCode.COMPLETED_OK),
                     ("/park", mhd2.RequestEndedCode.CLIENT_ABORT)]
    assert late == [mhd2.RequestEndedCode.CLIENT_ABORT]


async def test_an_upload_resumed_at_once_loses_no_bytes() -> None:
    """A parked request's watcher has read body bytes when the resume cancels it.

    Regression: the plain stream read the bytes and was then cancelled at its
    checkpoint, dropping them; the body never completed (the request hung).
    """
    total = 300_000
    got: list[int] = []

    async def later(request: mhd2.Request) -> None:
        await trio.lowlevel.checkpoint()  # resume as soon as the daemon has parked
        mhd2.request_resume(request)

    async with trio.open_nursery() as nursery:
        def inc(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
            got.append(len(data))
            if not data:
                body = str(sum(got)).encode()
                return mhd2.upload_action_from_response(
                    request, mhd2.Response.from_buffer_copy(200, body))
            nursery.start_soon(later, request)
            return mhd2.upload_action_suspend(request)

        def cb(request: mhd2.Request) -> mhd2.Action:
            return mhd2.action_process_upload_inc(request, inc)

        async with running(cb) as d, httpx.AsyncClient(timeout=WAIT) as client:
            with trio.fail_after(WAIT):
                r = await client.post(f"http://127.0.0.1:{d.port}/", content=b"b" * total)
    assert r.text == str(total)


async def test_action_websocket_sends_extra_headers() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.send("hi")

    def cb(request: mhd2.Request) -> mhd2.Action:
        return action_websocket(request, handler, headers=[("Set-Cookie", "s=1")])

    async with running(cb) as d:
        port = d.port

        def client() -> str | None:
            with connect(f"ws://127.0.0.1:{port}/", open_timeout=WAIT) as ws:
                ws.recv(WAIT)
                assert ws.response is not None
                return ws.response.headers.get("set-cookie")

        with trio.fail_after(WAIT):
            assert await trio.to_thread.run_sync(client) == "s=1"
        # The handshake checks still read the request's headers.
        response = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                                        b"Connection: close\r\n\r\n")
        assert status_of(response) == 400
