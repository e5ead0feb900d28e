"""Request information of MHD2 API completeness: post_data, upload progress."""

from __future__ import annotations

import trio
from conftest import WAIT, exchange, open_stream, read_response, running, status_of

import mhd2


async def test_post_data_keeps_filename_content_type_and_transfer_encoding() -> None:
    fields: list[mhd2.PostField] = []

    def done(request: mhd2.Request, result: mhd2.PostParseResult) -> mhd2.UploadAction:
        fields.extend(request.post_data)
        return mhd2.upload_action_from_response(request, mhd2.Response.from_buffer_copy(200, b"ok"))

    def app(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_parse_post(request, 4096, 4096, mhd2.PostEncoding.OTHER, None, done)

    body = (b"--B\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\nhello\r\n"
            b"--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n"
            b"Content-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\nfile body\r\n"
            b"--B--\r\n")
    async with running(app) as d:
        reply = await exchange(d, b"POST / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                                  b"Content-Type: multipart/form-data; boundary=B\r\n"
                                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert status_of(reply) == 200
    assert fields == [
        mhd2.PostField("t", "hello"),
        mhd2.PostField("f", "file body", "a.txt", "text/plain", "8bit"),
    ]
    assert fields[1].filename == "a.txt"


async def test_upload_progress_is_visible_to_the_upload_callback() -> None:
    seen: list[tuple[int, int | None]] = []
    first_piece = trio.Event()

    def upload_cb(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        seen.append((request.upload_received, request.upload_remaining))
        first_piece.set()
        if data:
            return mhd2.upload_action_continue(request)
        return mhd2.upload_action_from_response(request, mhd2.Response.from_buffer_copy(200, b"ok"))

    def app(request: mhd2.Request) -> mhd2.Action:
        assert (request.upload_received, request.upload_remaining) in ((0, 10), (0, None))
        return mhd2.action_process_upload_inc(request, upload_cb)

    async with running(app) as d:
        stream = await open_stream(d)
        async with stream:
            await stream.send_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabcd")
            with trio.fail_after(WAIT):
                await first_piece.wait()
            await stream.send_all(b"efghij")
            assert status_of(await read_response(stream, bytearray())) == 200
            await stream.send_all(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                                  b"\r\n3\r\nabc\r\n0\r\n\r\n")
            assert status_of(await read_response(stream, bytearray())) == 200
    assert seen[:3] == [(4, 6), (10, 0), (10, 0)]
    assert seen[3:] == [(3, None), (3, 0)]
