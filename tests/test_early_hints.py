"""``103 Early Hints`` (RFC 8297) over real connections: the engine call
``mhd2.request_send_early_hints`` and the ASGI ``http.response.early_hint``
extension, on HTTP/1.1 (h11 client, httpx, curl), HTTP/2 (raw frames) and
HTTP/1.0 (never a 1xx).
"""

from __future__ import annotations

import shutil
import subprocess
from functools import partial
from typing import Any, cast

import h11
import httpx
import pytest
import trio
from conftest import WAIT, exchange, running, text_response
from h2raw import RawH2

import mhd2
import mhd2.asgi

LINK = "</style.css>; rel=preload; as=style"
LINK2 = "</app.js>; rel=preload; as=script"


async def hinting(request: mhd2.Request) -> mhd2.Action:
    """Two 103s (the second with two links), then a 200."""
    sent = await mhd2.request_send_early_hints(request, [("Link", LINK)])
    sent2 = await mhd2.request_send_early_hints(request, [("Link", LINK), ("Link", LINK2)])
    return text_response(request, b"sent=%d,%d" % (sent, sent2))


async def h11_get(port: int, path: str = "/") -> list[Any]:
    """GET with h11 on a fresh connection; every event up to the end of the response."""
    conn = h11.Connection(h11.CLIENT)
    events: list[Any] = []
    with trio.fail_after(WAIT):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(conn.send(h11.Request(
                method="GET", target=path, headers=[("Host", "x")])) or b"")
            await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                    continue
                events.append(event)
                if isinstance(event, h11.EndOfMessage):
                    return events


def check_h11_events(events: list[Any], body: bytes) -> None:
    informational = [e for e in events if isinstance(e, h11.InformationalResponse)]
    assert [e.status_code for e in informational] == [103, 103]
    assert informational[0].headers == [(b"link", LINK.encode())]
    assert informational[1].headers == [(b"link", LINK.encode()), (b"link", LINK2.encode())]
    final = [e for e in events if isinstance(e, h11.Response)]
    assert len(final) == 1 and final[0].status_code == 200
    # The 103s came before the final response.
    assert events.index(final[0]) > events.index(informational[-1])
    assert b"".join(e.data for e in events if isinstance(e, h11.Data)) == body


# -- the engine call ------------------------------------------------------------------


async def test_http11_client_sees_103s_then_200() -> None:
    async with running(hinting) as d:
        check_h11_events(await h11_get(d.port), b"sent=1,1")
        # The connection stays usable (keep-alive after the interim heads).
        async with httpx.AsyncClient() as client:
            for _ in range(2):
                r = await client.get(f"http://127.0.0.1:{d.port}/")
                assert r.status_code == 200 and r.text == "sent=1,1"


async def test_http10_client_gets_no_103() -> None:
    async with running(hinting) as d:
        raw = await exchange(d.port, b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    assert raw.startswith(b"HTTP/1.0 200 ") or raw.startswith(b"HTTP/1.1 200 ")
    assert b" 103 " not in raw and b"Link:" not in raw
    assert raw.endswith(b"sent=0,0")


async def test_http2_client_sees_headers_103_then_200() -> None:
    async with running(hinting) as d:
        client = await RawH2.connect(d.port)
        reply = await client.response(client.request("/"))
        assert reply.informational == [103, 103]
        assert reply.status == 200 and reply.body == b"sent=1,1"
        # Raw frames: HEADERS(:status 103) without END_STREAM came first.
        headers = [f for f in client.frames if type(f).__name__ == "HeadersFrame"]
        assert len(headers) == 3
        assert all("END_STREAM" not in f.flags for f in headers[:2])
        await client.stream.aclose()


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_curl_gets_the_final_response() -> None:
    async with running(hinting) as d:
        url = f"http://127.0.0.1:{d.port}/"
        for extra in ([], ["--http2-prior-knowledge"]):
            command = ["curl", "-s", "-i", *extra, url]
            result = await trio.to_thread.run_sync(partial(
                subprocess.run, command, capture_output=True, timeout=WAIT))
            out = cast(bytes, result.stdout)
            assert b" 103" in out.split(b"\r\n", 1)[0], out[:200]
            assert b" 200" in out and out.endswith(b"sent=1,1")


async def test_bad_fields_refused() -> None:
    async def cb(request: mhd2.Request) -> mhd2.Action:
        for bad in ([("Link", "a\r\nX: y")], [("Content-Length", "3")], [("Bad Name", "v")],
                    [("Link", "x" * (mhd2.early_hints.MAX_EARLY_HINTS_SIZE + 1))]):
            with pytest.raises(mhd2.ResponseHeaderError):
                await mhd2.request_send_early_hints(request, bad)
        return text_response(request)

    async with running(cb) as d, httpx.AsyncClient() as client:
        r = await client.get(f"http://127.0.0.1:{d.port}/")
        assert r.status_code == 200 and r.text == "ok"


async def test_suspended_request_hint_from_another_task() -> None:
    """A 103 sent from another task while the request is suspended (how a library
    serving the request from its own task uses it), then the resumed 200."""
    parked: list[mhd2.Request] = []
    got = trio.Event()

    def cb(request: mhd2.Request) -> mhd2.Action:
        if not parked:
            parked.append(request)
            got.set()
            return mhd2.action_suspend(request)
        return text_response(request, b"resumed")

    async with running(cb) as d, trio.open_nursery() as nursery:
        results: list[Any] = []

        async def client() -> None:
            results.extend(await h11_get(d.port))

        nursery.start_soon(client)
        with trio.fail_after(WAIT):
            await got.wait()
        assert await mhd2.request_send_early_hints(parked[0], [("Link", LINK)])
        mhd2.request_resume(parked[0])
    informational = [e for e in results if isinstance(e, h11.InformationalResponse)]
    assert [e.status_code for e in informational] == [103]
    assert [e.status_code for e in results if isinstance(e, h11.Response)] == [200]
    # Too late now: the request has ended.
    assert not await mhd2.request_send_early_hints(parked[0], [("Link", LINK)])


# -- the ASGI extension -----------------------------------------------------------------


async def asgi_hinting(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        raise RuntimeError("no lifespan here")
    advertised = "http.response.early_hint" in scope["extensions"]
    if advertised:
        await send({"type": "http.response.early_hint", "links": [LINK.encode()]})
        await send({"type": "http.response.early_hint",
                    "links": [LINK.encode(), LINK2.encode()]})
    body = b"advertised=%d" % advertised
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


async def test_asgi_early_hint_http11_and_http2() -> None:
    with trio.fail_after(WAIT * 3):
        async with mhd2.asgi.Daemon(asgi_hinting, port=0) as d:
            check_h11_events(await h11_get(d.port), b"advertised=1")
            client = await RawH2.connect(d.port)
            reply = await client.response(client.request("/"))
            assert reply.informational == [103, 103]
            assert reply.status == 200 and reply.body == b"advertised=1"
            await client.stream.aclose()
            async with httpx.AsyncClient() as http:
                r = await http.get(f"http://127.0.0.1:{d.port}/")
                assert r.status_code == 200 and r.text == "advertised=1"


async def test_asgi_early_hint_not_advertised_to_http10() -> None:
    with trio.fail_after(WAIT * 3):
        async with mhd2.asgi.Daemon(asgi_hinting, port=0) as d:
            raw = await exchange(d.port, b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    assert b" 103 " not in raw and raw.endswith(b"advertised=0")


async def test_asgi_early_hint_then_100_continue_then_200() -> None:
    """The interim heads of one request leave whole and in order: 103, 100, 200."""
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("no lifespan here")
        await send({"type": "http.response.early_hint", "links": [LINK.encode()]})
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"got " + body})

    with trio.fail_after(WAIT * 3):
        async with mhd2.asgi.Daemon(app, port=0) as d:
            stream = await trio.open_tcp_stream("127.0.0.1", d.port)
            async with stream:
                await stream.send_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                      b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
                seen = b""
                while b"100 Continue\r\n\r\n" not in seen:
                    chunk = await stream.receive_some(65536)
                    assert chunk, seen
                    seen += chunk
                await stream.send_all(b"hello")
                while True:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        break
                    seen += chunk
    assert seen.startswith(b"HTTP/1.1 103 Early Hints\r\nLink: " + LINK.encode() + b"\r\n\r\n"
                           b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 ")
    assert seen.endswith(b"got hello")
