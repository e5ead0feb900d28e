"""What the shared body producers (mhd2.body) change on the wire, over real sockets.

* HTTP/2: a body of known size ends the stream on its last DATA frame --
  also a content creator's -- with no empty DATA frame after it, and an
  empty body ends it on the HEADERS frame.
* A zero-copy piece's ``free_cb`` is called once the daemon no longer
  needs it, also when the client left while the piece was being sent.
"""

from __future__ import annotations

import os
from typing import Any

import trio
from conftest import running
from h2raw import RawH2
from hyperframe.frame import DataFrame, HeadersFrame
from rawhttp import Counter, Ends, connect, daemon

import mhd2

WAIT = 10.0


def _sized_app(tmp_file: str) -> Any:
    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/callback":
            def dyn(ctx: mhd2.DCCContext, pos: int, buf: memoryview) -> mhd2.DCCAction:
                buf[:1000] = b"y" * 1000
                return mhd2.dcc_action_continue(ctx, 1000)
            response = mhd2.Response.from_callback(200, 3000, dyn)
        elif request.path == "/empty-file":
            response = mhd2.Response.from_fd(200, os.open(tmp_file, os.O_RDONLY), 0, 0)
        else:
            response = mhd2.Response.from_iovec(200, [b"a" * 20000, b"b" * 50000])
        return mhd2.action_from_response(request, response)
    return cb


async def test_http2_bodies_of_known_size_end_on_their_last_data_frame(tmp_path: Any) -> None:
    file = tmp_path / "empty"
    file.write_bytes(b"")
    async with running(_sized_app(str(file))) as d:
        client = await RawH2.connect(d.port)
        try:
            sids = {path: client.request(path) for path in ("/callback", "/iovec", "/empty-file")}
            for path, sid in sids.items():
                reply = await client.response(sid)
                assert reply.status == 200 and reply.ended, path
        finally:
            await client.stream.aclose()
    bodies = {"/callback": b"y" * 3000, "/iovec": b"a" * 20000 + b"b" * 50000}
    for path, body in bodies.items():
        sid = sids[path]
        assert client.replies[sid].body == body
        data = [f for f in client.frames if isinstance(f, DataFrame) and f.stream_id == sid]
        assert all(f.data for f in data), f"{path}: an empty DATA frame was sent"
        assert "END_STREAM" in data[-1].flags
    sid = sids["/empty-file"]
    assert not [f for f in client.frames if isinstance(f, DataFrame) and f.stream_id == sid]
    heads = [f for f in client.frames if isinstance(f, HeadersFrame) and f.stream_id == sid]
    assert "END_STREAM" in heads[0].flags


async def test_zero_copy_free_cb_is_called_when_the_client_leaves_mid_piece() -> None:
    piece = b"z" * (4 << 20)  # more than the socket buffers hold: the send waits
    given: list[int] = []
    freed = Counter()
    sending = trio.Event()

    def dyn(ctx: mhd2.DCCContext, pos: int, buf: memoryview) -> mhd2.DCCAction:
        given.append(pos)
        sending.set()
        return mhd2.dcc_action_continue_zc(ctx, 0, [piece], free_cb=freed)

    def cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_from_response(request, mhd2.Response.from_callback(200, None, dyn))

    ends = Ends()
    async with daemon(cb, notify_request_ended=ends) as port:
        async with connect(port) as client:
            await client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            await client.head()
            with trio.fail_after(WAIT):
                await sending.wait()
        # The client is gone with most of the first piece unsent.
        await ends.wait()
        await freed.wait(len(given))
    assert freed.calls == len(given) >= 1
