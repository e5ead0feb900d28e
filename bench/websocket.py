"""WebSocket benchmarks: echo round trips/s and upgraded raw throughput.

    python bench/websocket.py [--seconds 5] [--clients 50] [--size 32]

1. WebSocket echo, *clients* concurrent connections each sending a *size*-byte
   binary message and waiting for the echo, for *seconds*: mhd2
   (``examples/ws_echo.py``), hypercorn's trio worker (an ASGI WebSocket echo)
   and trio-websocket's ``serve_websocket``, each in its own process, in the
   same run.  Compression is not offered.  The target: mhd2 >= 2x hypercorn.
2. Upgraded raw echo (``Upgrade: echo`` on ``examples/ws_echo.py``): one
   connection streaming 64 KB writes while reading the echo back; MB/s of
   echoed data.  The target: >= 300 MB/s.

The load generator is one trio process with a minimal hand-rolled client
(pre-masked frames), so that the client costs as little as possible.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import trio

REPO = Path(__file__).resolve().parents[1]

ASGI_ECHO = textwrap.dedent('''
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "websocket":
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
            else:
                await send({"type": "websocket.send", "text": message["text"]})
''')

TRIO_WS_ECHO = textwrap.dedent('''
    import sys, trio
    from trio_websocket import serve_websocket, ConnectionClosed

    async def handler(request):
        ws = await request.accept()
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except ConnectionClosed:
            pass

    async def main():
        print("listening", flush=True)
        await serve_websocket(handler, "127.0.0.1", int(sys.argv[1]), ssl_context=None,
                              max_message_size=1 << 20)

    trio.run(main)
''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(name: str, tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(tmp))
    if name == "mhd2":
        cmd = [sys.executable, str(REPO / "examples" / "ws_echo.py"), "--port", str(port)]
    elif name == "hypercorn-trio":
        (tmp / "asgi_ws_echo.py").write_text(ASGI_ECHO)
        cmd = [sys.executable, "-m", "hypercorn", "--worker-class", "trio", "--bind",
               f"127.0.0.1:{port}", "--log-level", "warning", "asgi_ws_echo:app"]
    else:
        (tmp / "trio_ws_echo.py").write_text(TRIO_WS_ECHO)
        cmd = [sys.executable, str(tmp / "trio_ws_echo.py"), str(port)]
    process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=env, cwd=tmp)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{name} did not start")


async def _handshake(port: int, upgrade: str = "websocket") -> trio.SocketStream:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(
        (f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: Upgrade\r\n"
         f"Upgrade: {upgrade}\r\nSec-WebSocket-Version: 13\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(4096)
        if not chunk:
            raise RuntimeError(f"handshake failed: {data!r}")
        data += chunk
    if not re.match(rb"HTTP/1.1 101 ", data):
        raise RuntimeError(f"handshake failed: {data!r}")
    return stream


async def echo_rate(port: int, clients: int, size: int, seconds: float) -> float:
    payload = os.urandom(size)
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    assert size < 126
    frame = bytes((0x82, 0x80 | size)) + key + masked
    reply_len = 2 + size
    counts = [0] * clients
    streams = [await _handshake(port) for _ in range(clients)]
    stop = trio.current_time() + seconds

    async def client(i: int) -> None:
        stream = streams[i]
        while trio.current_time() < stop:
            await stream.send_all(frame)
            got = 0
            while got < reply_len:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    raise RuntimeError("server closed")
                got += len(chunk)
            counts[i] += 1

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for i in range(clients):
            nursery.start_soon(client, i)
    elapsed = trio.current_time() - start
    for stream in streams:
        await stream.aclose()
    return sum(counts) / elapsed


async def raw_throughput(port: int, seconds: float, size: int = 65536) -> float:
    stream = await _handshake(port, "echo")
    block = os.urandom(size)
    received = 0
    stop = trio.current_time() + seconds

    async def writer() -> None:
        while trio.current_time() < stop:
            await stream.send_all(block)
        await stream.send_eof()

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        while True:
            chunk = await stream.receive_some(1 << 18)
            if not chunk:
                break
            received += len(chunk)
    elapsed = trio.current_time() - start
    await stream.aclose()
    return received / elapsed / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--servers", default="mhd2,hypercorn-trio,trio-websocket")
    args = parser.parse_args()
    import tempfile

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        for name in args.servers.split(","):
            process, port = start_server(name, Path(tmpdir))
            try:
                results[name] = trio.run(echo_rate, port, args.clients, args.size, args.seconds)
                print(f"{name:16s} WebSocket echo: {results[name]:9.0f} round trips/s "
                      f"({args.clients} clients, {args.size}-byte messages)", flush=True)
                if name == "mhd2":
                    mbps = trio.run(raw_throughput, port, args.seconds)
                    print(f"{name:16s} upgraded raw echo, 64 KB writes: {mbps:7.0f} MB/s",
                          flush=True)
            finally:
                process.kill()
                process.wait()
    if "mhd2" in results and "hypercorn-trio" in results:
        print(f"mhd2 / hypercorn-trio: {results['mhd2'] / results['hypercorn-trio']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
