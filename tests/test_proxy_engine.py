"""The real client behind proxies (docs/deploying.rst, "Behind a proxy"): PROXY protocol and forwarded headers,
wired into the daemon (the parsers themselves: test_proxy_protocol.py, test_forwarded.py)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
import trio
from conftest import (
    WAIT,
    exchange,
    open_stream,
    read_until_close,
    running,
    settled,
    status_of,
    text_response,
)

import mhd2
from mhd2.static import StaticFiles


def who(request: mhd2.Request) -> mhd2.Action:
    peer = request.connection.peer_address
    assert peer is not None
    body = (f"{request.client_address[0]} {request.client_address[1]} "
            f"{request.connection.client_address[0]} {peer[0]} {request.scheme}")
    return text_response(request, body.encode())


GET = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
V1 = b"PROXY TCP4 203.0.113.9 10.0.0.1 4711 80\r\n"


def v2(src: str, dst: str, sport: int, dport: int, *, local: bool = False) -> bytes:
    signature = b"\r\n\r\n\x00\r\nQUIT\n"
    if local:
        return signature + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    addresses = (bytes(map(int, src.split("."))) + bytes(map(int, dst.split(".")))
                 + struct.pack("!HH", sport, dport))
    tlv = b"\x04\x00\x03abc"  # a NOOP TLV, skipped
    body = addresses + tlv
    return signature + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def body_of(reply: bytes) -> str:
    return reply.partition(b"\r\n\r\n")[2].decode()


async def test_proxy_v1_and_v2_set_the_client_address() -> None:
    seen: list[tuple[str, int]] = []

    def policy(address: tuple[str, int]) -> bool:
        seen.append(address)
        return True

    async with running(who, proxy_protocol=True, accept_policy=policy) as d:
        reply = await exchange(d.port, V1 + GET)
        assert body_of(reply) == "203.0.113.9 4711 203.0.113.9 127.0.0.1 http"
        reply = await exchange(d.port, v2("198.51.100.7", "10.0.0.1", 5555, 80) + GET)
        assert body_of(reply) == "198.51.100.7 5555 198.51.100.7 127.0.0.1 http"
        reply = await exchange(d.port, v2("", "", 0, 0, local=True) + GET)  # a health check
        assert body_of(reply).startswith("127.0.0.1 ")
    assert seen[:2] == [("203.0.113.9", 4711), ("198.51.100.7", 5555)]


async def test_proxy_header_split_across_writes() -> None:
    async with running(who, proxy_protocol=True) as d:
        stream = await open_stream(d.port)
        async with stream:
            for piece in (V1[:7], V1[7:20], V1[20:] + GET[:5], GET[5:]):
                await stream.send_all(piece)
                await trio.sleep(0.01)  # the workload: separate TCP segments
            with trio.fail_after(WAIT):
                reply = await read_until_close(stream)
    assert body_of(reply).startswith("203.0.113.9 4711 ")


@pytest.mark.parametrize("data", [
    GET,  # no header at all
    b"PROXY TCP4 not-an-ip 10.0.0.1 1 2\r\n" + GET,
    b"PROXY " + b"x" * 200 + b"\r\n" + GET,  # over v1's 107 bytes
    b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff" + GET,  # v2 length over the cap
])
async def test_bad_proxy_headers_close_without_a_reply(data: bytes) -> None:
    async with running(who, proxy_protocol=True) as d:
        assert await exchange(d.port, data) == b""
        assert status_of(await exchange(d.port, V1 + GET)) == 200  # still serving


async def test_proxy_header_from_an_untrusted_peer_closes() -> None:
    async with running(who, proxy_protocol=True, trusted_proxies=("10.0.0.0/8",)) as d:
        assert await exchange(d.port, V1 + GET) == b""


async def test_per_ip_limit_counts_the_proxied_client() -> None:
    async with running(text_response, proxy_protocol=True, per_ip_limit=1) as d:
        holder = await open_stream(d.port)
        await holder.send_all(V1)  # 203.0.113.9 holds its one connection
        await settled()
        assert d.connection_count == 1
        other = b"PROXY TCP4 192.0.2.1 10.0.0.1 1000 80\r\n"
        assert status_of(await exchange(d.port, other + GET)) == 200  # another client: fine
        reply = await exchange(d.port, V1 + GET)  # the same client again: over its limit
        assert reply.startswith(b"HTTP/1.1 503 ")
        await holder.aclose()


async def test_forwarded_headers_from_a_trusted_peer() -> None:
    async with running(who, forwarded_headers="x-forwarded") as d:
        reply = await exchange(d, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Forwarded-For: 192.0.2.60, "
                                  b"127.0.0.1\r\nX-Forwarded-Proto: https\r\n\r\n")
        assert body_of(reply) == "192.0.2.60 0 127.0.0.1 127.0.0.1 https"
    async with running(who, forwarded_headers="forwarded") as d:
        reply = await exchange(d, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nForwarded: for=\"[2001:db8::1]:"
                                  b"4711\";proto=https\r\n\r\n")
        assert body_of(reply) == "2001:db8::1 4711 127.0.0.1 127.0.0.1 https"


async def test_forwarded_headers_from_an_untrusted_peer_are_ignored() -> None:
    async with running(who, forwarded_headers="x-forwarded",
                       trusted_proxies=("10.0.0.0/8",)) as d:
        reply = await exchange(d, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Forwarded-For: 192.0.2.60\r\n"
                                  b"X-Forwarded-Proto: https\r\n\r\n")
        assert body_of(reply) == "127.0.0.1 50000 127.0.0.1 127.0.0.1 http"
    async with running(who) as d:  # off by default
        reply = await exchange(d, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Forwarded-For: 192.0.2.60\r\n\r\n")
        assert body_of(reply).startswith("127.0.0.1 ")


async def test_access_log_logs_the_real_client(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"x")
    log = io.StringIO()
    files = StaticFiles(str(tmp_path), access_log=log)
    async with running(files.handle, notify_request_ended=files.request_ended,
                       proxy_protocol=True) as d:
        assert status_of(await exchange(d.port, V1 + b"GET /a.txt HTTP/1.1\r\nHost: a\r\n"
                                                 b"Connection: close\r\n\r\n")) == 200
    assert log.getvalue().startswith("203.0.113.9 - - [")


def test_proxy_options_are_checked() -> None:
    with pytest.raises(mhd2.UsageError, match="trusted_proxies"):
        mhd2.Daemon(text_response, trusted_proxies=("not an address",))
    with pytest.raises(mhd2.UsageError, match="proxy_protocol"):
        mhd2.Daemon(text_response, proxy_protocol="yes")
    assert mhd2.Daemon(text_response, trusted_proxies="10.0.0.0/8, unix").options.trusted_proxies == (
        "10.0.0.0/8", "unix")
