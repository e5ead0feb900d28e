"""mhd2.tls_stream.TLSSocketStream: the server side of TLS over a plain socket.

The client is trio's own SSLStream (or a raw socket for the cases it would
not make), over a real socket pair; the certificates come from trustme.
What is checked is what trio's stream promises and mhd2 relies on: data
intact in both directions at once, a cancelled receive loses nothing, a cut
write breaks the stream, clean and ragged ends, close_notify on close, and
the handshake errors mhd2 reads.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trustme

from mhd2.plain_stream import PlainSocketStream
from mhd2.tls import server_context
from mhd2.tls_stream import TLSSocketStream

WAIT = 10


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def contexts(ca: trustme.CA) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    leaf = ca.issue_cert("localhost")
    server = server_context(leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes(),
                            alpn=("h2", "http/1.1"))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    client.set_alpn_protocols(["h2"])
    return server, client


@asynccontextmanager
async def tls_pair(ca: trustme.CA) -> AsyncIterator[tuple[TLSSocketStream, trio.SSLStream[trio.SocketStream]]]:
    """A handshaken (server, client) pair over a socket pair."""
    server_ctx, client_ctx = contexts(ca)
    a, b = socket.socketpair()
    server = TLSSocketStream(PlainSocketStream(a), server_ctx)
    client = trio.SSLStream(trio.SocketStream(trio.socket.from_stdlib_socket(b)), client_ctx,
                            server_hostname="localhost")
    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.do_handshake)
            nursery.start_soon(client.do_handshake)
    try:
        yield server, client
    finally:
        server.close()
        await trio.aclose_forcefully(client)


async def receive_exactly(stream: trio.abc.ReceiveStream, size: int) -> bytes:
    got = bytearray()
    while len(got) < size:
        data = await stream.receive_some(65536)
        assert data, f"end of input after {len(got)} of {size} bytes"
        got += data
    return bytes(got)


async def test_data_is_intact_in_both_directions_at_once(ca: trustme.CA) -> None:
    """A large upload and a large download at the same time, with the
    server's sender and receiver in two tasks (as the HTTP/2 loop has)."""
    up, down = os.urandom(3_000_000), os.urandom(3_000_000)
    async with tls_pair(ca) as (server, client):
        assert server.ssl_object.selected_alpn_protocol() == "h2"
        results: dict[str, bytes] = {}

        async def save(key: str, stream: trio.abc.ReceiveStream, size: int) -> None:
            results[key] = await receive_exactly(stream, size)

        with trio.fail_after(WAIT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.send_all, up)
                nursery.start_soon(server.send_all, down)
                nursery.start_soon(save, "server", server, len(up))
                nursery.start_soon(save, "client", client, len(down))
        assert results["server"] == up and results["client"] == down


async def test_a_cancelled_receive_loses_nothing(ca: trustme.CA) -> None:
    """Cancelling a wait for data (how mhd2.fanout wakes a WebSocket
    subscriber) leaves the stream whole: the next receive gets the bytes."""
    async with tls_pair(ca) as (server, client):
        with trio.move_on_after(0.05) as scope:
            await server.receive_some(100)
        assert scope.cancelled_caught
        # A record that arrives in two pieces, with a cancellation between them.
        with trio.fail_after(WAIT):
            await client.send_all(b"first")
            assert await server.receive_some(100) == b"first"
            await client.send_all(b"second")
            assert await server.receive_some(100) == b"second"


async def test_a_clean_end_is_empty_and_a_ragged_one_is_broken(ca: trustme.CA) -> None:
    async with tls_pair(ca) as (server, client):
        await client.send_all(b"bye")
        await client.aclose()  # sends close_notify
        with trio.fail_after(WAIT):
            assert await server.receive_some(100) == b"bye"
            assert await server.receive_some(100) == b""
            assert await server.receive_some(100) == b""
    async with tls_pair(ca) as (server, client):
        # The client's socket closes without close_notify.
        client.transport_stream.socket.close()
        with trio.fail_after(WAIT), pytest.raises(trio.BrokenResourceError) as info:
            await server.receive_some(100)
        assert isinstance(info.value.__cause__, ssl.SSLEOFError)
        with pytest.raises(trio.BrokenResourceError):
            await server.send_all(b"x")


async def test_close_sends_close_notify(ca: trustme.CA) -> None:
    async with tls_pair(ca) as (server, client):
        await server.send_all(b"last words")
        await server.aclose()
        with trio.fail_after(WAIT):
            assert await receive_exactly(client, 10) == b"last words"
            # trio's client raises on an end without close_notify: this one is clean.
            assert await client.receive_some(100) == b""
        with pytest.raises(trio.ClosedResourceError):
            await server.receive_some(100)
        await server.aclose()  # a second close is harmless


async def test_a_cancelled_write_breaks_the_stream(ca: trustme.CA) -> None:
    """Records cut in the middle cannot be continued: the stream is broken."""
    async with tls_pair(ca) as (server, _client):
        with trio.move_on_after(0.2) as scope:
            while True:  # the client never reads: the socket buffers fill up
                await server.send_all(b"x" * 65536)
        assert scope.cancelled_caught
        with pytest.raises(trio.BrokenResourceError):
            await server.send_all(b"more")
        with pytest.raises(trio.BrokenResourceError):
            await server.receive_some(100)


async def test_two_senders_at_once_are_refused(ca: trustme.CA) -> None:
    async with tls_pair(ca) as (server, _client):
        with trio.move_on_after(0.2):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.send_all, b"x" * 50_000_000)
                await trio.testing.wait_all_tasks_blocked()
                with pytest.raises(trio.BusyResourceError):
                    await server.send_all(b"y")


async def test_plain_http_to_the_tls_port_is_named_by_the_cause(ca: trustme.CA) -> None:
    """mhd2 answers a plain HTTP request on its TLS port (the cause's reason
    is OpenSSL's HTTP_REQUEST); any failed handshake breaks the stream."""
    server_ctx, _ = contexts(ca)
    a, b = socket.socketpair()
    server = TLSSocketStream(PlainSocketStream(a), server_ctx)
    b.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with trio.fail_after(WAIT), pytest.raises(trio.BrokenResourceError) as info:
        await server.do_handshake()
    cause = info.value.__cause__
    assert isinstance(cause, ssl.SSLError) and cause.reason == "HTTP_REQUEST"
    with pytest.raises(trio.BrokenResourceError):
        await server.receive_some(10)
    await server.aclose()
    b.close()


async def test_an_end_of_input_during_the_handshake_breaks_it(ca: trustme.CA) -> None:
    server_ctx, _ = contexts(ca)
    a, b = socket.socketpair()
    server = TLSSocketStream(PlainSocketStream(a), server_ctx)
    b.sendall(b"\x16\x03\x01")  # the start of a ClientHello record, then nothing
    b.shutdown(socket.SHUT_WR)
    with trio.fail_after(WAIT), pytest.raises(trio.BrokenResourceError):
        await server.do_handshake()
    await server.aclose()
    b.close()
