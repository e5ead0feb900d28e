"""WebSocket benchmarks: echo round trips/s and upgraded raw throughput.

    python bench/websocket.py [--seconds 5] [--clients 50] [--size 32]
    python bench/websocket.py --servers mhd2 --root /path/to/old/checkout --root . --reps 2

``--root PATH`` (repeatable) runs mhd2's echo from another checkout (its
``examples/ws_echo.py`` with its ``mhd2`` on ``PYTHONPATH``), named
``mhd2@PATH``, so that two versions are compared side by side in one run;
``--reps`` repeats the servers in alternating order.  Each row also gives the
server's CPU time per round trip (user + system of the server and its
children), which is far less sensitive to other load than the rate.

1. WebSocket echo, *clients* concurrent connections each sending a *size*-byte
   binary message and waiting for the echo, for *seconds*: mhd2
   (``examples/ws_echo.py``), hypercorn's trio worker (an ASGI WebSocket echo)
   and trio-websocket's ``serve_websocket``, each in its own process, in the
   same run.  Compression is not offered.  The target: mhd2 >= 2x hypercorn.
2. Upgraded raw echo (``Upgrade: echo`` on ``examples/ws_echo.py``): one
   connection streaming 64 KB writes while reading the echo back; MB/s of
   echoed data.  The target: >= 300 MB/s.

The load generator is a plain epoll loop over non-blocking sockets with the
frames masked in advance, pinned to CPU 1 with the server on CPU 0, so that the
client costs far less than the servers it measures.
"""

from __future__ import annotations

import argparse
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.run import process_cpu_seconds  # noqa: E402  (CPU of a process tree, from /proc)

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
    if name == "mhd2" or name.startswith("mhd2@"):
        root = Path(name.partition("@")[2] or REPO).resolve()
        env["PYTHONPATH"] = f"{root}{os.pathsep}{tmp}"
        cmd = [sys.executable, str(root / "examples" / "ws_echo.py"), "--port", str(port)]
    elif name == "hypercorn-trio":
        (tmp / "asgi_ws_echo.py").write_text(ASGI_ECHO)
        cmd = [sys.executable, "-m", "hypercorn", "--worker-class", "trio", "--bind",
               f"127.0.0.1:{port}", "--log-level", "warning", "asgi_ws_echo:app"]
    else:
        (tmp / "trio_ws_echo.py").write_text(TRIO_WS_ECHO)
        cmd = [sys.executable, str(tmp / "trio_ws_echo.py"), str(port)]
    # Server on CPU 0, this client on CPU 1 (see main), as in bench/run.py.
    cmd = ["taskset", "-c", "0", *cmd]
    # A session of its own, so that stopping it also stops hypercorn's worker.
    process = subprocess.Popen(cmd, start_new_session=True, stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=env, cwd=tmp)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port
        except OSError:
            time.sleep(0.05)
    _stop(process)
    raise RuntimeError(f"{name} did not start")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Kill the server and every process it started."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _handshake_blocking(port: int, upgrade: str = "websocket") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(
        (f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: Upgrade\r\n"
         f"Upgrade: {upgrade}\r\nSec-WebSocket-Version: 13\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError(f"handshake failed: {data!r}")
        data += chunk
    if not re.match(rb"HTTP/1.1 101 ", data):
        raise RuntimeError(f"handshake failed: {data!r}")
    return sock


def echo_rate(port: int, clients: int, size: int, seconds: float) -> float:
    """Round trips/s of *clients* connections, each sending one masked frame at a time.

    The load generator is a plain epoll loop over non-blocking sockets with
    the frame masked once in advance, so that it costs far less per round
    trip than the servers it measures (a trio client was the bottleneck).
    """
    payload = os.urandom(size)
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    assert size < 126
    frame = bytes((0x82, 0x80 | size)) + key + masked
    reply_len = 2 + size
    socks = [_handshake_blocking(port) for _ in range(clients)]
    pending = {}
    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        pending[sock] = 0
        sock.send(frame)
    count = 0
    start = time.perf_counter()
    stop = start + seconds
    while True:
        now = time.perf_counter()
        if now >= stop:
            break
        for key_, _ in selector.select(0.5):
            conn = key_.fileobj
            assert isinstance(conn, socket.socket)
            chunk = conn.recv(65536)
            if not chunk:
                raise RuntimeError("server closed")
            got = pending[conn] + len(chunk)
            while got >= reply_len:
                got -= reply_len
                count += 1
                conn.send(frame)
            pending[conn] = got
    elapsed = time.perf_counter() - start
    for sock in socks:
        selector.unregister(sock)
        sock.close()
    return count / elapsed


def raw_throughput(port: int, seconds: float, size: int = 65536) -> float:
    """MB/s echoed by an upgraded raw connection, writing *size*-byte blocks."""
    sock = _handshake_blocking(port, "echo")
    sock.setblocking(False)
    block = memoryview(os.urandom(size))
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
    received = 0
    offset = 0
    start = time.perf_counter()
    stop = start + seconds
    writing = True
    while True:
        if writing and time.perf_counter() >= stop:
            writing = False
            sock.shutdown(socket.SHUT_WR)
            selector.modify(sock, selectors.EVENT_READ)
        events = selector.select(1.0)
        if not events:
            break
        for _, mask in events:
            if mask & selectors.EVENT_READ:
                chunk = sock.recv(1 << 18)
                if not chunk:
                    elapsed = time.perf_counter() - start
                    sock.close()
                    return received / elapsed / 1e6
                received += len(chunk)
            if writing and mask & selectors.EVENT_WRITE:
                try:
                    offset += sock.send(block[offset:])
                except BlockingIOError:
                    pass
                if offset >= size:
                    offset = 0
    elapsed = time.perf_counter() - start
    sock.close()
    return received / elapsed / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--servers", default="mhd2,hypercorn-trio,trio-websocket")
    parser.add_argument("--root", action="append", default=[],
                        help="also run mhd2 from this checkout (repeatable)")
    parser.add_argument("--reps", type=int, default=1,
                        help="run the servers this often, in alternating order")
    args = parser.parse_args()
    import tempfile

    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})

    names = [n for n in args.servers.split(",") if n]
    names += [f"mhd2@{root}" for root in args.root]
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        for rep in range(args.reps):
            for name in names if rep % 2 == 0 else names[::-1]:
                process, port = start_server(name, Path(tmpdir))
                try:
                    before = process_cpu_seconds(process.pid)
                    start = time.monotonic()
                    rate = echo_rate(port, args.clients, args.size, args.seconds)
                    used = process_cpu_seconds(process.pid) - before
                    trips = rate * (time.monotonic() - start)
                    results.setdefault(name, []).append(rate)
                    print(f"{name:16s} WebSocket echo: {rate:9.0f} round trips/s "
                          f"({args.clients} clients, {args.size}-byte messages), "
                          f"{used / trips * 1e6:6.1f} us server CPU per round trip", flush=True)
                    if name == "mhd2":
                        mbps = raw_throughput(port, args.seconds)
                        print(f"{name:16s} upgraded raw echo, 64 KB writes: {mbps:7.0f} MB/s",
                              flush=True)
                finally:
                    _stop(process)
    best = {name: max(rates) for name, rates in results.items()}
    if "mhd2" in best and "hypercorn-trio" in best:
        print(f"mhd2 / hypercorn-trio: {best['mhd2'] / best['hypercorn-trio']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
