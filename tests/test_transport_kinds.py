"""open_transport picks the kind by the stream, and each kind moves bytes whole.

The kinds differ only in overridden methods (mhd2.transport's package
docstring); these tests pin which stream gets which kind and what each kind
answers for the plain-socket-only operations.
"""

from __future__ import annotations

import socket
import ssl

import trio
import trio.testing
from conftest import WAIT

from mhd2.plain_stream import PlainSocketStream
from mhd2.transport import SocketTransport, StreamTransport, TLSTransport, open_transport


async def test_a_plain_socket_stream_gets_the_socket_transport() -> None:
    a, b = socket.socketpair()
    with b:
        transport = open_transport(PlainSocketStream(a), None)
        assert type(transport) is SocketTransport
        assert transport.is_plain and transport.tls is None
        assert transport.receive_now(10) is None  # nothing there yet
        assert transport.send_nowait(b"hi") == 2
        assert b.recv(10) == b"hi"
        await transport.close()
        await transport.close()  # once: the second is a no-op
        assert transport.fd == -1


async def test_a_memory_stream_gets_the_stream_transport_and_sends_in_slices() -> None:
    client, server = trio.testing.memory_stream_pair()
    transport = open_transport(server, None)
    assert type(transport) is StreamTransport
    assert not transport.is_plain and transport.tls is None and not transport.can_sendfile
    assert transport.receive_now(10) is None and transport.send_nowait(b"x") == 0
    assert not transport.set_cork(True)
    body = bytes(range(256)) * 1000  # 256 000 bytes: four slices
    got = bytearray()

    async def read_all() -> None:
        while len(got) < len(body):
            got.extend(await client.receive_some(1 << 16))

    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_all)
            await transport.send(body)
    assert bytes(got) == body and transport.bytes_sent == len(body)
    with trio.fail_after(WAIT):
        await transport.close()
        assert await client.receive_some(10) == b""


async def test_an_ssl_stream_gets_the_tls_transport() -> None:
    _, server = trio.testing.memory_stream_pair()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls = trio.SSLStream(server, context, server_side=True)
    transport = open_transport(tls, None)
    assert type(transport) is TLSTransport and isinstance(transport, StreamTransport)
    assert transport.tls is tls._ssl_object and not transport.is_plain
    with trio.fail_after(WAIT):
        await transport.close()  # bounded, although no handshake ever happened
