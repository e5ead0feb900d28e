"""The access log records what actually happened: bytes written and the duration."""

from __future__ import annotations

import io
import re
from pathlib import Path

import trio
from conftest import WAIT, open_stream

import mhd2
from mhd2.static import StaticFiles


async def test_aborted_download_logs_the_bytes_actually_sent(tmp_path: Path) -> None:
    size = 20_000_000
    (tmp_path / "big.bin").write_bytes(b"\0" * size)
    log = io.StringIO()
    files = StaticFiles(tmp_path, access_log=log)
    ended = trio.Event()

    def request_ended(request: mhd2.Request, code: mhd2.RequestEndedCode) -> None:
        files.request_ended(request, code)
        ended.set()

    async with mhd2.Daemon(files.handle, port=0, notify_request_ended=request_ended) as daemon:
        stream = await open_stream(daemon.port)
        await stream.send_all(b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
        got = 0
        with trio.fail_after(WAIT):
            while got < 1_000_000:
                got += len(await stream.receive_some(65536))
        await stream.aclose()  # the client gives up
        with trio.fail_after(WAIT):
            await ended.wait()
    line = log.getvalue().strip()
    match = re.search(r'"GET /big.bin HTTP/1.1" 200 (\d+) "-" "-" (\d+)$', line)
    assert match, line
    sent, micros = int(match[1]), int(match[2])
    assert got <= sent < size  # not the announced 20,000,000
    assert micros > 0


async def test_complete_response_logs_its_body_size_and_duration(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"hello")
    log = io.StringIO()
    files = StaticFiles(tmp_path, access_log=log)
    async with mhd2.Daemon(files.handle, port=0, notify_request_ended=files.request_ended) as d:
        stream = await open_stream(d)
        async with stream:
            await stream.send_all(b"GET /a.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                                  b"HEAD /a.txt HTTP/1.1\r\nHost: a\r\n\r\n")
            with trio.fail_after(WAIT):
                while await stream.receive_some(65536):
                    pass
    first = log.getvalue().splitlines()[0]
    assert re.search(r'"GET /a.txt HTTP/1.1" 200 5 "-" "-" \d+$', first), first
