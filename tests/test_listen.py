"""Where connections come from: Unix-domain sockets and ``Daemon.serve_stream``."""

from __future__ import annotations

import shutil
import socket
import stat
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing
from conftest import WAIT, read_until_close, running, status_of, text_response

import mhd2


def client_echo(request: mhd2.Request) -> mhd2.Action:
    host, port = request.client_address
    return text_response(request, f"{host} {port}".encode())


# -- Unix-domain sockets ------------------------------------------------------------------


async def test_unix_socket_with_httpx_and_file_handling(tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    path.touch()  # not a socket: binding must fail, not delete the file
    with pytest.raises(mhd2.DaemonStartError, match=r"app\.sock"):
        async with running(client_echo, unix_path=str(path)):
            pass
    path.unlink()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # a stale socket file left by a crashed server is replaced
    stale.close()
    async with running(client_echo, unix_path=str(path), unix_mode=0o660) as daemon:
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
        assert daemon.addresses == [("unix", 0)]
        transport = httpx.AsyncHTTPTransport(uds=str(path))
        with trio.fail_after(WAIT):
            async with httpx.AsyncClient(transport=transport) as client:
                for _ in range(3):
                    response = await client.get("http://app/")
                    assert response.status_code == 200
                    assert response.text == "unix 0"
    assert not path.exists()  # removed at stop


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_unix_socket_with_curl(tmp_path: Path) -> None:
    path = tmp_path / "curl.sock"
    async with running(client_echo, unix_path=str(path)):
        with trio.fail_after(WAIT):
            result = await trio.run_process(
                ["curl", "--silent", "--show-error", "--unix-socket", str(path), "http://x/"],
                capture_stdout=True)
    assert result.stdout == b"unix 0"


async def test_unix_listen_socket_does_not_kill_the_daemon(tmp_path: Path) -> None:
    """A pre-bound AF_UNIX listen_socket (systemd) serves, its peers are ("unix", 0)."""
    path = str(tmp_path / "fd.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen()
    async with running(client_echo, listen_socket=listener):
        for _ in range(2):
            sock = trio.socket.socket(socket.AF_UNIX)
            await sock.connect(path)
            stream = trio.SocketStream(sock)
            async with stream:
                await stream.send_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                with trio.fail_after(WAIT):
                    reply = await read_until_close(stream)
            assert status_of(reply) == 200
            assert reply.endswith(b"unix 0")


def test_unix_options_are_checked() -> None:
    with pytest.raises(mhd2.UsageError, match="unix_path"):
        mhd2.Daemon(text_response, unix_path="")
    with pytest.raises(mhd2.UsageError, match="unix_mode"):
        mhd2.Daemon(text_response, unix_path="/tmp/x.sock", unix_mode=-1)


# -- serve_stream -----------------------------------------------------------------------------


async def test_serve_stream_serves_a_memory_stream_with_the_given_address() -> None:
    ended: list[mhd2.RequestEndedCode] = []
    async with running(client_echo, notify_request_ended=lambda r, c: ended.append(c)) as daemon:
        client, server = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: daemon.serve_stream(server, client_address=("203.0.113.9", 4711)))
            await client.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" * 2)
            await client.send_eof()
            with trio.fail_after(WAIT):
                reply = await read_until_close(client)
        assert daemon.connection_count == 0  # serve_stream returned: the connection ended
    assert reply.count(b"HTTP/1.1 200 OK") == 2
    assert reply.endswith(b"203.0.113.9 4711")
    assert ended == [mhd2.RequestEndedCode.COMPLETED_OK] * 2


async def test_serve_stream_needs_a_running_daemon_and_counts_against_limits() -> None:
    daemon = mhd2.Daemon(text_response)
    _, server = trio.testing.memory_stream_pair()
    with pytest.raises(mhd2.UsageError, match="running daemon"):
        await daemon.serve_stream(server)
    async with running(text_response, connection_limit=1) as daemon:
        async with trio.open_nursery() as nursery:
            first_client, first = trio.testing.memory_stream_pair()
            nursery.start_soon(daemon.serve_stream, first)
            await trio.testing.wait_all_tasks_blocked()  # in memory: the connection is open
            assert daemon.connection_count == 1
            second_client, second = trio.testing.memory_stream_pair()
            with trio.fail_after(WAIT):
                await daemon.serve_stream(second)  # over the limit: closed at once
                assert await read_until_close(second_client) == b""
            await first_client.aclose()


async def test_graceful_stop_ends_serve_stream_connections() -> None:
    async with running(text_response) as daemon:
        client, server = trio.testing.memory_stream_pair()
        done = trio.Event()

        async def serve() -> None:
            await daemon.serve_stream(server)
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            await client.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            await trio.testing.wait_all_tasks_blocked()  # in memory: the connection is open
            assert daemon.connection_count == 1
            with trio.fail_after(WAIT):
                await daemon.stop(grace=1)
                await done.wait()  # the idle kept-alive connection was closed


async def test_replies_after_quiesce_close_their_connection() -> None:
    from conftest import open_stream, read_response

    async with running(text_response) as daemon:
        stream = await open_stream(daemon.port)
        async with stream:
            buffer = bytearray()
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            first = await read_response(stream, buffer)
            assert b"Connection: close" not in first
            daemon.quiesce()
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            second = await read_response(stream, buffer)
            assert status_of(second) == 200
            assert b"\r\nConnection: close\r\n" in second
            with trio.fail_after(WAIT):
                assert await read_until_close(stream) == b""
