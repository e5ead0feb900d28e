"""The sans-IO PROXY protocol parser (HAProxy's proxy-protocol.txt, v1 and v2)."""

from __future__ import annotations

import socket
import ssl
import struct

import pytest
import trio
import trio.testing

from mhd2._proxy.protocol import (
    NEED_DATA,
    V2_SIGNATURE,
    Command,
    Family,
    ProxyHeader,
    ProxyHeaderReader,
    ProxyProtocolError,
    parse_proxy_header,
)
from mhd2._proxy.receive import peer_address, proxied_client_address, receive_proxy_header
from mhd2._proxy.trusted import TrustedProxies

HTTP = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def v2(cmd: int, fam: int, body: bytes, *, length: int | None = None) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | cmd, fam]) + struct.pack(
        "!H", len(body) if length is None else length
    ) + body


def tcp4_body(src: str, dst: str, sport: int, dport: int) -> bytes:
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)


def tcp6_body(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (
        socket.inet_pton(socket.AF_INET6, src)
        + socket.inet_pton(socket.AF_INET6, dst)
        + struct.pack("!HH", sport, dport)
    )


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!BH", kind, len(value)) + value


def parsed(data: bytes) -> ProxyHeader:
    result = parse_proxy_header(data)
    assert isinstance(result, ProxyHeader), result
    return result


# ------------------------------------------------------------------ v1


def test_v1_tcp4() -> None:
    header = b"PROXY TCP4 203.0.113.9 192.0.2.1 4711 80\r\n"
    result = parsed(header + HTTP)
    assert result == ProxyHeader(
        1, Command.PROXY, Family.TCP4, ("203.0.113.9", 4711), ("192.0.2.1", 80), (), len(header)
    )
    assert result.client_address == ("203.0.113.9", 4711)
    assert (header + HTTP)[result.consumed :] == HTTP


def test_v1_tcp6() -> None:
    header = b"PROXY TCP6 2001:db8:0::1 ::1 65535 8080\r\n"
    result = parsed(header)
    assert result.family is Family.TCP6
    assert result.source == ("2001:db8::1", 65535)
    assert result.destination == ("::1", 8080)
    assert result.consumed == len(header)


def test_v1_unknown_ignores_the_rest_of_the_line() -> None:
    header = b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"
    result = parsed(header + HTTP)
    assert (result.family, result.source, result.client_address) == (Family.UNSPEC, None, None)
    assert result.consumed == len(header)
    assert parsed(b"PROXY UNKNOWN\r\n").consumed == 15


def test_v1_longest_line_is_accepted() -> None:
    # the spec's worst case: 107 bytes including the CRLF
    header = (b"PROXY UNKNOWN " + b"f" * 91 + b"\r\n")
    assert len(header) == 107
    assert parsed(header).consumed == 107


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP4 203.0.113.9 192.0.2.1 4711 80\n",  # no CR
        b"PROXY TCP4 203.0.113.9 192.0.2.1 4711\r\n",  # a field short
        b"PROXY TCP4 203.0.113.9 192.0.2.1 4711 80 1\r\n",  # a field too many
        b"PROXY TCP4  203.0.113.9 192.0.2.1 4711 80\r\n",  # two spaces
        b"PROXY TCP4 203.0.113.256 192.0.2.1 4711 80\r\n",  # bad IPv4
        b"PROXY TCP4 010.0.0.1 192.0.2.1 4711 80\r\n",  # leading zero: ambiguous
        b"PROXY TCP4 ::1 ::1 4711 80\r\n",  # IPv6 under TCP4
        b"PROXY TCP6 127.0.0.1 127.0.0.1 4711 80\r\n",  # IPv4 under TCP6
        b"PROXY TCP6 fe80::1%eth0 ::1 4711 80\r\n",  # scope id
        b"PROXY TCP4 203.0.113.9 192.0.2.1 65536 80\r\n",  # port too big
        b"PROXY TCP4 203.0.113.9 192.0.2.1 -1 80\r\n",  # negative port
        b"PROXY TCP4 203.0.113.9 192.0.2.1 +80 80\r\n",
        b"PROXY UDP4 203.0.113.9 192.0.2.1 4711 80\r\n",  # unknown protocol
        b"PROXY tcp4 203.0.113.9 192.0.2.1 4711 80\r\n",  # case matters
        b"PROXY TCP4 203.0.113.9 192.0.2.1 4711 8\x000\r\n",  # control byte
        b"PROXY TCP4 203.0.113.9 192.0.2.1 4711 80\r\r\n",
        b"PROXY \r\n",
    ],
)
def test_v1_malformed(line: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        parse_proxy_header(line + HTTP)


def test_v1_oversized_without_crlf() -> None:
    assert parse_proxy_header(b"PROXY UNKNOWN " + b"x" * 92) is NEED_DATA  # 106 bytes
    with pytest.raises(ProxyProtocolError, match="107"):
        parse_proxy_header(b"PROXY UNKNOWN " + b"x" * 93)  # 107 bytes, no LF
    with pytest.raises(ProxyProtocolError, match="107"):
        parse_proxy_header(b"PROXY UNKNOWN " + b"x" * 92 + b"\r\n")  # 108 bytes with CRLF


def test_v1_garbage_is_refused_early() -> None:
    # a control byte is refused before the line is complete
    with pytest.raises(ProxyProtocolError):
        parse_proxy_header(b"PROXY TCP4 1\x00")


# ------------------------------------------------------------------ v2


def test_v2_tcp4() -> None:
    data = v2(1, 0x11, tcp4_body("203.0.113.9", "192.0.2.1", 4711, 443)) + HTTP
    result = parsed(data)
    assert (result.version, result.command, result.family) == (2, Command.PROXY, Family.TCP4)
    assert (result.source, result.destination) == (("203.0.113.9", 4711), ("192.0.2.1", 443))
    assert result.consumed == 16 + 12
    assert data[result.consumed :] == HTTP


def test_v2_tcp6() -> None:
    result = parsed(v2(1, 0x21, tcp6_body("2001:db8::7", "2001:db8::1", 1, 65535)))
    assert result.family is Family.TCP6
    assert result.client_address == ("2001:db8::7", 1)
    assert result.destination == ("2001:db8::1", 65535)
    assert result.consumed == 16 + 36


def test_v2_unix() -> None:
    body = b"/run/client.sock".ljust(108, b"\x00") + b"/run/mhd2.sock".ljust(108, b"\x00")
    result = parsed(v2(1, 0x31, body))
    assert (result.family, result.source, result.destination) == (
        Family.UNIX, "/run/client.sock", "/run/mhd2.sock")
    abstract = b"\x00hidden".ljust(108, b"\x00") + b"\x00" * 108
    assert parsed(v2(1, 0x31, abstract)).source == "@hidden"


def test_v2_local_uses_the_socket_addresses() -> None:
    # health check: LOCAL, AF_UNSPEC, no addresses
    result = parsed(v2(0, 0x00, b"") + HTTP)
    assert (result.command, result.family, result.client_address) == (
        Command.LOCAL, Family.UNSPEC, None)
    assert result.consumed == 16
    # LOCAL with an address block: "discard the protocol block including the family"
    result = parsed(v2(0, 0x11, tcp4_body("1.2.3.4", "5.6.7.8", 1, 2)))
    assert (result.source, result.client_address) == (None, None)
    assert result.consumed == 28


def test_v2_proxy_unspec_keeps_the_socket_address() -> None:
    result = parsed(v2(1, 0x00, b"\x01\x02\x03"))
    assert (result.command, result.family, result.client_address) == (
        Command.PROXY, Family.UNSPEC, None)
    assert result.consumed == 19


def test_v2_tlvs_are_skipped() -> None:
    tlvs = tlv(0x01, b"h2") + tlv(0x02, b"example.com") + tlv(0x04, b"") + tlv(0xE0, b"x" * 300)
    data = v2(1, 0x11, tcp4_body("203.0.113.9", "192.0.2.1", 4711, 443) + tlvs) + HTTP
    result = parsed(data)
    assert result.source == ("203.0.113.9", 4711)
    assert result.tlvs == ((0x01, b"h2"), (0x02, b"example.com"), (0x04, b""), (0xE0, b"x" * 300))
    assert data[result.consumed :] == HTTP


@pytest.mark.parametrize(
    "data",
    [
        # TLV header cut short / TLV value longer than the header
        v2(1, 0x11, tcp4_body("1.2.3.4", "5.6.7.8", 1, 2) + b"\x01\x00"),
        v2(1, 0x11, tcp4_body("1.2.3.4", "5.6.7.8", 1, 2) + b"\x01\x00\x05abc"),
        # address block shorter than the family needs
        v2(1, 0x11, b"\x01\x02\x03\x04"),
        v2(1, 0x21, tcp4_body("1.2.3.4", "5.6.7.8", 1, 2)),
        v2(1, 0x31, b"/x".ljust(108, b"\x00")),
        # unknown command, version, family, transport; datagram
        v2(2, 0x11, tcp4_body("1.2.3.4", "5.6.7.8", 1, 2)),
        V2_SIGNATURE + b"\x11\x11\x00\x0c" + tcp4_body("1.2.3.4", "5.6.7.8", 1, 2),
        v2(1, 0x41, b"\x00" * 12),
        v2(1, 0x13, tcp4_body("1.2.3.4", "5.6.7.8", 1, 2)),
        v2(1, 0x12, tcp4_body("1.2.3.4", "5.6.7.8", 1, 2)),
    ],
)
def test_v2_malformed(data: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        parse_proxy_header(data + HTTP)


def test_v2_length_cap() -> None:
    body = tcp4_body("1.2.3.4", "5.6.7.8", 1, 2) + tlv(0xE0, b"x" * 5000)
    # refused from the fixed 16 bytes alone, before the body arrives
    with pytest.raises(ProxyProtocolError, match="cap"):
        parse_proxy_header(v2(1, 0x11, body)[:16])
    assert parsed(v2(1, 0x11, body[:12])).consumed == 28
    result = parse_proxy_header(v2(1, 0x11, body), max_v2_length=6000)
    assert isinstance(result, ProxyHeader) and result.consumed == 16 + len(body)


def test_v2_truncated_needs_data() -> None:
    data = v2(1, 0x11, tcp4_body("1.2.3.4", "5.6.7.8", 1, 2))
    for cut in range(len(data)):
        assert parse_proxy_header(data[:cut]) is NEED_DATA


# ------------------------------------------------------------------ neither


@pytest.mark.parametrize(
    "data",
    [
        HTTP,
        b"\x16\x03\x01\x02\x00",  # a TLS ClientHello
        b"PRI * HTTP/2.0\r\n",  # an h2c preface
        b"\r\n\r\n\x00\r\nQUIZ\n" + b"\x21\x11\x00\x00",  # signature off by one byte
        b"\r\n\r\nGET",
        b"PROXX TCP4",
        b"\x00",
    ],
)
def test_garbage(data: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        parse_proxy_header(data)


def test_empty_needs_data() -> None:
    assert parse_proxy_header(b"") is NEED_DATA


# ------------------------------------------------------------------ feeding


SAMPLES = [
    b"PROXY TCP4 203.0.113.9 192.0.2.1 4711 80\r\n",
    b"PROXY TCP6 2001:db8::7 2001:db8::1 4711 80\r\n",
    b"PROXY UNKNOWN\r\n",
    v2(1, 0x11, tcp4_body("203.0.113.9", "192.0.2.1", 4711, 443) + tlv(1, b"h2")),
    v2(1, 0x21, tcp6_body("2001:db8::7", "2001:db8::1", 4711, 443)),
    v2(1, 0x31, b"/a".ljust(108, b"\x00") + b"/b".ljust(108, b"\x00")),
    v2(0, 0x00, b""),
]


@pytest.mark.parametrize("header", SAMPLES)
def test_split_at_every_byte(header: bytes) -> None:
    whole = parsed(header + HTTP)
    data = header + HTTP
    for cut in range(1, len(data)):
        reader = ProxyHeaderReader()
        first = reader.feed(data[:cut])
        if cut < len(header):
            assert first is NEED_DATA
            assert reader.feed(data[cut:]) == whole
        else:
            assert first == whole
            assert reader.rest == data[len(header) : cut]
            continue
        assert reader.rest == HTTP


@pytest.mark.parametrize("header", SAMPLES)
def test_one_byte_at_a_time(header: bytes) -> None:
    reader = ProxyHeaderReader()
    results = [reader.feed(bytes([b])) for b in header]
    assert all(r is NEED_DATA for r in results[:-1])
    assert isinstance(results[-1], ProxyHeader)
    assert results[-1].consumed == len(header)
    assert reader.rest == b""
    with pytest.raises(ProxyProtocolError, match="already complete"):
        reader.feed(b"x")


def test_end_of_stream_inside_the_header() -> None:
    reader = ProxyHeaderReader()
    assert reader.feed(b"PROXY TCP4 1.2") is NEED_DATA
    with pytest.raises(ProxyProtocolError, match="ended"):
        reader.feed(b"")


# ------------------------------------------------------------------ off a real socket


async def tcp_pair() -> tuple[socket.socket, trio.SocketStream]:
    """(server side: a non-blocking stdlib socket as the daemon accepts it, client stream)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = await trio.open_tcp_stream("127.0.0.1", listener.getsockname()[1])
        server, _ = listener.accept()
    server.setblocking(False)
    return server, client


async def test_receive_leaves_the_http_bytes_in_the_socket() -> None:
    header = v2(1, 0x11, tcp4_body("203.0.113.9", "192.0.2.1", 4711, 80) + tlv(1, b"h2"))
    server, client = await tcp_pair()
    with server:
        async with client:
            await client.send_all(header + HTTP)
            with trio.fail_after(10):
                result = await receive_proxy_header(server)
                assert result.client_address == ("203.0.113.9", 4711)
                rest = b""
                while len(rest) < len(HTTP):
                    await trio.lowlevel.wait_readable(server)
                    rest += server.recv(65536)
    assert rest == HTTP


@pytest.mark.parametrize("header", SAMPLES)
async def test_receive_a_byte_at_a_time(header: bytes) -> None:
    server, client = await tcp_pair()
    with server:
        async with client, trio.open_nursery() as nursery:
            results: list[ProxyHeader] = []

            async def read() -> None:
                results.append(await receive_proxy_header(server))

            nursery.start_soon(read)
            with trio.fail_after(20):
                for i in range(len(header)):
                    await trio.testing.wait_all_tasks_blocked()
                    assert not results  # still waiting, not spinning
                    await client.send_all(header[i : i + 1])
                await client.send_all(HTTP)
        assert results[0] == parse_proxy_header(header)
        server.setblocking(True)
        server.settimeout(10)
        assert server.recv(65536) == HTTP


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (HTTP, "not a PROXY protocol header"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "CRLF"),
        (b"PROXY TCP4 1.2.3", "ended inside"),  # then the peer closes
    ],
)
async def test_receive_refuses(data: bytes, message: str) -> None:
    server, client = await tcp_pair()
    with server:
        async with client:
            await client.send_all(data)
            await client.send_eof()
            with trio.fail_after(10), pytest.raises(ProxyProtocolError, match=message):
                await receive_proxy_header(server)


async def test_receive_before_tls() -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    header = v2(1, 0x21, tcp6_body("2001:db8::7", "2001:db8::1", 4711, 443))
    server, client = await tcp_pair()
    async with trio.open_nursery() as nursery:

        async def client_side() -> None:
            # HAProxy's send-proxy-v2: the header, then at once the ClientHello
            await client.send_all(header)
            tls = trio.SSLStream(client, client_ctx, server_hostname="127.0.0.1")
            await tls.send_all(b"ping")
            assert await tls.receive_some(10) == b"pong"
            await tls.aclose()

        nursery.start_soon(client_side)
        with trio.fail_after(20):
            result = await receive_proxy_header(server)
            assert result.source == ("2001:db8::7", 4711)
            stream = trio.SSLStream(
                trio.SocketStream(trio.socket.from_stdlib_socket(server)), server_ctx,
                server_side=True)
            assert await stream.receive_some(10) == b"ping"
            await stream.send_all(b"pong")
            await trio.aclose_forcefully(stream)


async def test_proxied_client_address() -> None:
    trusted = TrustedProxies()
    header = b"PROXY TCP4 203.0.113.9 192.0.2.1 4711 80\r\n"
    server, client = await tcp_pair()
    with server:
        async with client:
            await client.send_all(header + HTTP)
            with trio.fail_after(10):
                address = await proxied_client_address(
                    server, server.getpeername(), trusted, timeout=5)
    assert address == ("203.0.113.9", 4711)


async def test_proxied_client_address_local_keeps_the_peer() -> None:
    server, client = await tcp_pair()
    with server:
        async with client:
            await client.send_all(v2(0, 0x00, b""))
            peer = server.getpeername()
            with trio.fail_after(10):
                address = await proxied_client_address(server, peer, TrustedProxies(), timeout=5)
    assert address == peer


async def test_proxied_client_address_untrusted_peer_reads_nothing() -> None:
    server, client = await tcp_pair()
    with server:
        async with client:
            await client.send_all(b"PROXY TCP4 127.0.0.1 127.0.0.1 1 2\r\n")
            with pytest.raises(ProxyProtocolError, match="not a trusted proxy"):
                await proxied_client_address(server, server.getpeername(),
                                             TrustedProxies(["10.0.0.0/8"]), timeout=5)
            await trio.lowlevel.wait_readable(server)
            assert server.recv(100).startswith(b"PROXY TCP4")  # still unread


async def test_proxied_client_address_timeout() -> None:
    server, client = await tcp_pair()
    with server:
        async with client:
            await client.send_all(b"PROXY TCP4 1.2.3.4 ")  # and then nothing
            with trio.fail_after(10), pytest.raises(ProxyProtocolError, match=r"within 0\.2 s"):
                await proxied_client_address(server, server.getpeername(), TrustedProxies(),
                                             timeout=0.2)


async def test_proxied_client_address_over_a_unix_socket() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        a.setblocking(False)
        assert peer_address(a.getpeername()) == ("unix", 0)
        unix_header = v2(1, 0x31, b"/run/c".ljust(108, b"\x00") + b"/run/s".ljust(108, b"\x00"))
        b.sendall(unix_header + v2(1, 0x21, tcp6_body("2001:db8::9", "::1", 5, 6)))
        with trio.fail_after(10):
            first = await proxied_client_address(a, a.getpeername(), TrustedProxies(), timeout=5)
            second = await proxied_client_address(a, "", TrustedProxies(), timeout=5)
        assert (first, second) == (("unix", 0), ("2001:db8::9", 5))
        with pytest.raises(ProxyProtocolError, match="not a trusted proxy"):
            await proxied_client_address(a, "", TrustedProxies(["127.0.0.1"]), timeout=5)
