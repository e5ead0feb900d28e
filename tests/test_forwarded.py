"""RFC 7239 ``Forwarded`` and ``X-Forwarded-*``: parsing, trust, spoofing (sans-IO)."""

from __future__ import annotations

import ipaddress

import pytest

from mhd2._proxy.forwarded import (
    ForwardedElement,
    ForwardedResult,
    TrustedProxies,
    parse_forwarded,
    parse_x_forwarded_for,
    resolve_client,
    resolve_from_headers,
)
from mhd2.errors import UsageError

LOCAL = TrustedProxies()  # loopback + unix
LAN = TrustedProxies(("127.0.0.1", "::1", "10.0.0.0/8", "unix"))


# ------------------------------------------------------------------ TrustedProxies


def test_trusted_proxies_matching() -> None:
    assert ("127.0.0.1", 5000) in LAN
    assert "10.200.3.4" in LAN
    assert ("::1", 1) in LAN
    assert ("unix", 0) in LAN
    assert "/run/haproxy.sock" in LAN
    assert ipaddress.ip_address("10.0.0.1") in LAN
    assert ("::ffff:10.1.2.3", 80) in LAN  # dual-stack socket's view of an IPv4 peer
    assert ("11.0.0.1", 80) not in LAN
    assert ("127.0.0.2", 80) not in LAN
    assert ("unknown", 0) not in LAN
    assert ("_hidden", 0) not in LAN
    assert ("", 0) not in LAN
    assert ("fe80::1%eth0", 0) not in LAN
    assert ("unix", 0) not in TrustedProxies(["127.0.0.1"])
    assert ("203.0.113.9", 1) in TrustedProxies("*")


def test_trusted_proxies_from_a_comma_list() -> None:
    trusted = TrustedProxies("127.0.0.1, 10.0.0.0/8,unix,")
    assert trusted.entries == ("127.0.0.1", "10.0.0.0/8", "unix")
    assert "10.9.9.9" in trusted and ("unix", 0) in trusted


@pytest.mark.parametrize("bad", ["localhost", "10.0.0.0/33", "1.2.3", "unix:/x"])
def test_trusted_proxies_bad_entry(bad: str) -> None:
    with pytest.raises(UsageError, match="trusted_proxies entry"):
        TrustedProxies([bad])


def test_trusted_proxies_not_strings() -> None:
    with pytest.raises(UsageError, match="strings"):
        TrustedProxies([ipaddress.ip_network("10.0.0.0/8")])  # type: ignore[list-item]


# ------------------------------------------------------------------ Forwarded grammar


def test_parse_forwarded_rfc_examples() -> None:
    # RFC 7239 section 4 and 7.1 examples
    assert parse_forwarded(['for="_gazonk"']) == [ForwardedElement(for_="_gazonk")]
    assert parse_forwarded(['For="[2001:db8:cafe::17]:4711"']) == [
        ForwardedElement(for_="2001:db8:cafe::17", port=4711)
    ]
    assert parse_forwarded(["for=192.0.2.60;proto=http;by=203.0.113.43"]) == [
        ForwardedElement(for_="192.0.2.60", by="203.0.113.43", proto="http")
    ]
    assert parse_forwarded(["for=192.0.2.43, for=198.51.100.17"]) == [
        ForwardedElement(for_="192.0.2.43"),
        ForwardedElement(for_="198.51.100.17"),
    ]
    assert parse_forwarded(['for=unknown, for="_secret:_port";host="example.com"']) == [
        ForwardedElement(for_="unknown"),
        ForwardedElement(for_="_secret", host="example.com"),
    ]


def test_parse_forwarded_several_lines_and_quoting() -> None:
    assert parse_forwarded(['for="192.0.2.1:8080"', 'for=10.0.0.1;proto="HTTPS"']) == [
        ForwardedElement(for_="192.0.2.1", port=8080),
        ForwardedElement(for_="10.0.0.1", proto="https"),
    ]
    assert parse_forwarded(['host="a\\"b";for=1.2.3.4']) == [
        ForwardedElement(for_="1.2.3.4", host='a"b')
    ]
    # empty list elements are allowed by the #rule
    assert parse_forwarded([" , for=1.2.3.4 ,"]) == [ForwardedElement(for_="1.2.3.4")]


@pytest.mark.parametrize(
    "value",
    [
        "for=[2001:db8::1]",  # IPv6 must be quoted: '[' is no token character
        'for="2001:db8::1"',  # IPv6 needs brackets
        "for=192.0.2.1:80",  # ':' is no token character
        'for="192.0.2.1:99999"',
        'for="192.0.2.1:"',
        'for="[2001:db8::1"',
        'for="[1.2.3.4]"',
        "for=example.com",
        "for=1.2.3.4;for=5.6.7.8",  # a parameter twice in one element
        "for=1.2.3.4 proto=http",
        "for",
        'for="unterminated',
        "for=1.2.3.4;proto=ht/tp",
        "=1.2.3.4",
        "for=1.2.3.4;proto",
    ],
)
def test_parse_forwarded_garbage(value: str) -> None:
    assert parse_forwarded([value]) is None


def test_parse_x_forwarded_for() -> None:
    assert parse_x_forwarded_for(["203.0.113.9, 10.0.0.1", "::1"]) == [
        ("203.0.113.9", None), ("10.0.0.1", None), ("::1", None)]
    assert parse_x_forwarded_for(["203.0.113.9:4711, [2001:db8::1]:80, unknown"]) == [
        ("203.0.113.9", 4711), ("2001:db8::1", 80), ("unknown", None)]
    for bad in ["evil.example", "1.2.3.4,,5.6.7.8", "2001:db8::1:80x", "1.2.3.4:65536", ""]:
        assert parse_x_forwarded_for([bad]) is None, bad


# ------------------------------------------------------------------ resolve_client


def test_untrusted_peer_is_never_believed() -> None:
    # a client on the internet claims to be 127.0.0.1 behind "https"
    result = resolve_client(
        ("203.0.113.66", 5555), LAN, scheme="http",
        forwarded=["for=127.0.0.1;proto=https"],
        x_forwarded_for=["10.0.0.5"], x_forwarded_proto=["https"],
    )
    assert result == ForwardedResult(("203.0.113.66", 5555), "http", False)


def test_forwarded_from_a_trusted_proxy() -> None:
    result = resolve_client(
        ("127.0.0.1", 40000), LAN, scheme="http",
        forwarded=['for="203.0.113.9:4711";proto=https'],
    )
    assert result == ForwardedResult(("203.0.113.9", 4711), "https", True)


def test_right_most_untrusted_hop_wins() -> None:
    # the client forged "for=1.1.1.1"; our proxies 10.0.0.2 and 127.0.0.1 appended
    # what they saw: the client 198.51.100.7, then 10.0.0.2
    result = resolve_client(
        ("127.0.0.1", 40000), LAN, scheme="http",
        forwarded=["for=1.1.1.1;proto=https", "for=198.51.100.7;proto=http, for=10.0.0.2"],
    )
    assert result == ForwardedResult(("198.51.100.7", 0), "http", True)
    result = resolve_client(
        ("10.0.0.3", 1), LAN, scheme="https",
        x_forwarded_for=["1.1.1.1, 198.51.100.7, 10.0.0.2"],
    )
    assert result == ForwardedResult(("198.51.100.7", 0), "https", True)


def test_all_hops_trusted_takes_the_left_most() -> None:
    result = resolve_client(
        ("127.0.0.1", 1), LAN, scheme="http", x_forwarded_for=["10.0.0.9, 10.0.0.2"])
    assert result.client_address == ("10.0.0.9", 0)


def test_x_forwarded_proto() -> None:
    result = resolve_client(
        ("unix", 0), LAN, scheme="http", x_forwarded_for=["203.0.113.9"],
        x_forwarded_proto=["https"])
    assert result == ForwardedResult(("203.0.113.9", 0), "https", True)
    # one proto per hop: the chosen hop's
    result = resolve_client(
        ("127.0.0.1", 1), LAN, scheme="http", x_forwarded_for=["203.0.113.9, 10.0.0.2"],
        x_forwarded_proto=["https, http"])
    assert result.scheme == "https"
    # a proto that is not http/https is ignored
    result = resolve_client(
        ("127.0.0.1", 1), LAN, scheme="http", x_forwarded_for=["203.0.113.9"],
        x_forwarded_proto=["javascript"])
    assert result.scheme == "http"


def test_obfuscated_and_unknown_clients() -> None:
    result = resolve_client(("127.0.0.1", 1), LAN, scheme="http", forwarded=['for="_abc:_p"'])
    assert result == ForwardedResult(("_abc", 0), "http", True)
    result = resolve_client(("127.0.0.1", 1), LAN, scheme="http", forwarded=["for=unknown"])
    assert result.client_address == ("unknown", 0)


@pytest.mark.parametrize(
    "headers",
    [
        {"forwarded": ["for=[::1]"]},
        {"forwarded": ["for=1.2.3.4;for=5.6.7.8"]},
        {"forwarded": ["proto=https"]},  # the nearest element names no client
        {"x_forwarded_for": ["evil\r\nX-Injected: 1"]},
        {"x_forwarded_for": ["1.2.3.4, <script>"]},
    ],
)
def test_garbage_keeps_the_peer(headers: dict[str, list[str]]) -> None:
    result = resolve_client(("127.0.0.1", 9), LAN, scheme="http", **headers)  # type: ignore[arg-type]
    assert result == ForwardedResult(("127.0.0.1", 9), "http", False)


def test_choice_of_headers() -> None:
    fwd, xff = ["for=198.51.100.1"], ["198.51.100.2"]
    assert resolve_client(("::1", 1), LAN, scheme="http", forwarded=fwd,
                          x_forwarded_for=xff).client_address == ("198.51.100.1", 0)
    assert resolve_client(("::1", 1), LAN, scheme="http", use="x-forwarded", forwarded=fwd,
                          x_forwarded_for=xff).client_address == ("198.51.100.2", 0)
    # a proxy that sets X-Forwarded-For passes a client's Forwarded through:
    # with use="x-forwarded" the forged Forwarded is ignored
    forged = resolve_client(("::1", 1), LAN, scheme="http", use="x-forwarded",
                            forwarded=["for=1.1.1.1"], x_forwarded_for=["198.51.100.2"])
    assert forged.client_address == ("198.51.100.2", 0)
    only = resolve_client(("::1", 1), LAN, scheme="http", use="forwarded",
                          x_forwarded_for=["198.51.100.2"])
    assert only.from_headers is False
    with pytest.raises(UsageError):
        resolve_client(("::1", 1), LAN, scheme="http", use="both")  # type: ignore[arg-type]


def test_spoofed_trusted_address_in_the_header() -> None:
    # a client behind our proxy writes a trusted address itself, hoping to be
    # taken for one of our proxies: it is skipped, and the left-most hop (its
    # own forgery) is all that is left -- so the forgery must not help it
    # reach "127.0.0.1" status: the result is the forged value only when every
    # hop, the one our proxy saw included, is trusted.
    result = resolve_client(
        ("127.0.0.1", 1), LAN, scheme="http", x_forwarded_for=["127.0.0.1, 198.51.100.7"])
    assert result.client_address == ("198.51.100.7", 0)


def test_resolve_from_raw_headers() -> None:
    headers: list[tuple[str | bytes, str | bytes]] = [
        (b"Host", b"example.com"),
        (b"x-forwarded-for", b"1.1.1.1"),
        (b"X-Forwarded-For", b"198.51.100.7, 10.0.0.2"),  # a second line continues the list
        ("X-Forwarded-Proto", "https"),
    ]
    result = resolve_from_headers(("127.0.0.1", 1), LAN, headers, scheme="http")
    assert result == ForwardedResult(("198.51.100.7", 0), "https", True)
    untrusted = resolve_from_headers(("203.0.113.1", 7), LAN, headers, scheme="http")
    assert untrusted == ForwardedResult(("203.0.113.1", 7), "http", False)
    # a non-ASCII value is garbage: that header is ignored, the peer kept
    bad: list[tuple[str | bytes, str | bytes]] = [(b"Forwarded", "for=1.2.3.4\xe9".encode())]
    assert resolve_from_headers(("::1", 1), LAN, bad, scheme="http").from_headers is False
