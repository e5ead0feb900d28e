"""RFC 7239 ``Forwarded`` and ``X-Forwarded-*``: parsing, trust, spoofing.

The sans-IO parsers and :func:`resolve_client` first; then the daemon over real
connections (HTTP/1.1 and HTTP/2), where a request looks the way a proxy
forwards it: what the client wrote, then the line the proxy appended. Issue 19
item 4: a client must not choose its own address or scheme with the family
the proxy does not set, nor with garbage left of the proxy's hop.
"""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Sequence

import pytest
import trio
from conftest import WAIT, exchange, running, text_response
from h2raw import RawH2
from hypothesis import given, settings
from hypothesis import strategies as st

import mhd2
from mhd2._cli.options import _engine_options
from mhd2._proxy.forwarded import (
    ForwardedFamily,
    ForwardedResult,
    check_forwarded_headers,
    resolve_client,
    resolve_from_headers,
)
from mhd2._proxy.rfc7239 import ForwardedElement, parse_forwarded
from mhd2._proxy.trusted import TrustedProxies
from mhd2._proxy.x_forwarded import parse_x_forwarded_for
from mhd2.cli import build_parser, main
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
    # "*": every peer is a proxy, but no hop named in a header is one by that
    assert not TrustedProxies("*").is_proxy_hop("203.0.113.9")
    assert TrustedProxies("*,10.0.0.0/8").is_proxy_hop(("10.1.1.1", 0))


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

XF: ForwardedFamily = "x-forwarded"
FW: ForwardedFamily = "forwarded"


def test_untrusted_peer_is_never_believed() -> None:
    # a client on the internet claims to be 127.0.0.1 behind "https"
    for use in (XF, FW):
        result = resolve_client(
            ("203.0.113.66", 5555), LAN, scheme="http", use=use,
            forwarded=["for=127.0.0.1;proto=https"],
            x_forwarded_for=["10.0.0.5"], x_forwarded_proto=["https"],
        )
        assert result == ForwardedResult(("203.0.113.66", 5555), "http", False)


def test_forwarded_from_a_trusted_proxy() -> None:
    result = resolve_client(
        ("127.0.0.1", 40000), LAN, scheme="http", use=FW,
        forwarded=['for="203.0.113.9:4711";proto=https'],
    )
    assert result == ForwardedResult(("203.0.113.9", 4711), "https", True)


def test_right_most_untrusted_hop_wins() -> None:
    # the client forged "for=1.1.1.1"; our proxies 10.0.0.2 and 127.0.0.1 appended
    # what they saw: the client 198.51.100.7, then 10.0.0.2
    result = resolve_client(
        ("127.0.0.1", 40000), LAN, scheme="http", use=FW,
        forwarded=["for=1.1.1.1;proto=https", "for=198.51.100.7;proto=http, for=10.0.0.2"],
    )
    assert result == ForwardedResult(("198.51.100.7", 0), "http", True)
    result = resolve_client(
        ("10.0.0.3", 1), LAN, scheme="https", use=XF,
        x_forwarded_for=["1.1.1.1, 198.51.100.7, 10.0.0.2"],
    )
    assert result == ForwardedResult(("198.51.100.7", 0), "https", True)


def test_star_trusts_every_peer_but_no_hop() -> None:
    # with "*", a client behind the proxy must not win by writing the left-most hop
    star = TrustedProxies("*")
    for use, lines in ((XF, {"x_forwarded_for": ["127.0.0.1, 6.6.6.6", "203.0.113.7"]}),
                       (FW, {"forwarded": ["for=127.0.0.1, for=6.6.6.6", "for=203.0.113.7"]})):
        result = resolve_client(("198.51.100.1", 1), star, scheme="http", use=use,
                                **lines)
        assert result == ForwardedResult(("203.0.113.7", 0), "http", True)
    result = resolve_client(("198.51.100.1", 1), TrustedProxies("*,10.0.0.0/8"), scheme="http",
                            use=XF, x_forwarded_for=["6.6.6.6, 203.0.113.7, 10.0.0.2"])
    assert result.client_address == ("203.0.113.7", 0)


def test_all_hops_trusted_takes_the_left_most() -> None:
    result = resolve_client(
        ("127.0.0.1", 1), LAN, scheme="http", use=XF, x_forwarded_for=["10.0.0.9, 10.0.0.2"])
    assert result.client_address == ("10.0.0.9", 0)


def test_x_forwarded_proto() -> None:
    result = resolve_client(
        ("unix", 0), LAN, scheme="http", use=XF, x_forwarded_for=["203.0.113.9"],
        x_forwarded_proto=["https"])
    assert result == ForwardedResult(("203.0.113.9", 0), "https", True)
    # one proto per hop: the chosen hop's
    result = resolve_client(
        ("127.0.0.1", 1), LAN, scheme="http", use=XF, x_forwarded_for=["203.0.113.9, 10.0.0.2"],
        x_forwarded_proto=["https, http"])
    assert result.scheme == "https"
    # a proto that is not http/https is ignored
    result = resolve_client(
        ("127.0.0.1", 1), LAN, scheme="http", use=XF, x_forwarded_for=["203.0.113.9"],
        x_forwarded_proto=["javascript"])
    assert result.scheme == "http"
    # neither one per hop nor one for all: no telling whose is whose
    result = resolve_client(
        ("127.0.0.1", 1), LAN, scheme="http", use=XF,
        x_forwarded_for=["1.1.1.1, 203.0.113.9, 10.0.0.2"],
        x_forwarded_proto=["https", "https"])
    assert result == ForwardedResult(("203.0.113.9", 0), "http", True)
    # X-Forwarded-Proto without X-Forwarded-For: nobody forwarded anything
    result = resolve_client(("127.0.0.1", 1), LAN, scheme="http", use=XF,
                            x_forwarded_proto=["https"])
    assert result == ForwardedResult(("127.0.0.1", 1), "http", False)


def test_obfuscated_and_unknown_clients() -> None:
    result = resolve_client(("127.0.0.1", 1), LAN, scheme="http", use=FW,
                            forwarded=['for="_abc:_p"'])
    assert result == ForwardedResult(("_abc", 0), "http", True)
    result = resolve_client(("127.0.0.1", 1), LAN, scheme="http", use=FW,
                            forwarded=["for=unknown"])
    assert result.client_address == ("unknown", 0)
    result = resolve_client(("127.0.0.1", 1), LAN, scheme="http", use=XF,
                            x_forwarded_for=["UNKNOWN"])
    assert result.client_address == ("unknown", 0)


@pytest.mark.parametrize(
    ("use", "headers"),
    [
        (FW, {"forwarded": ["for=[::1]"]}),
        (FW, {"forwarded": ["for=1.2.3.4;for=5.6.7.8"]}),
        (FW, {"forwarded": ['for="[::1]";proto=https"']}),
        (FW, {"forwarded": ['for="\\"']}),
        (FW, {"forwarded": [", ,"]}),
        (XF, {"x_forwarded_for": ["evil\r\nX-Injected: 1"]}),
        (XF, {"x_forwarded_for": ["1.2.3.4, <script>"]}),
        (XF, {"x_forwarded_for": ["127.0.0.1, _hidden"]}),
        (XF, {"x_forwarded_for": ["\u0661\u0662\u0667.0.0.1"]}),  # Arabic-Indic digits
        (XF, {"x_forwarded_for": ["127.000.0.1"]}),
        (XF, {"x_forwarded_for": ["2130706433"]}),
        (XF, {"x_forwarded_for": ["fe80::1%eth0"]}),
        (XF, {"x_forwarded_for": ["2001:db8::1]:80"]}),
        (XF, {"x_forwarded_for": [" , "]}),
        (XF, {"x_forwarded_for": ["[192.0.2.1]"]}),  # brackets are for IPv6
        (XF, {"x_forwarded_for": ["[192.0.2.1]:80"]}),
    ],
)
def test_a_broken_client_hop_is_unknown_never_the_proxy(
        use: ForwardedFamily, headers: dict[str, list[str]]) -> None:
    """The hop that should name the client breaks its grammar: the client is
    "unknown". Keeping the peer instead would make it the (trusted, loopback)
    proxy -- which a client behind the proxy could then pick at will."""
    result = resolve_client(("127.0.0.1", 9), LAN, scheme="http", use=use,
                            x_forwarded_proto=["https"], **headers)
    assert result == ForwardedResult(("unknown", 0), "http", True)


@pytest.mark.parametrize(
    "client_wrote",
    ['for="unterminated', "for=1.2.3.4;for=5.6.7.8", 'for="[::1]', "for=6.6.6.6 proto=https",
     "\xe9\xff", "=", '"', 'for=_x;host="a\\"', "for=127.0.0.1;proto=https,", ";;,,;"],
)
def test_garbage_left_of_the_proxys_element_is_never_read(client_wrote: str) -> None:
    # the proxy (nginx's $proxy_add_forwarded style) appends to the client's line,
    # or adds a line of its own: either way its element is the right-most
    for lines in ([client_wrote + ", for=203.0.113.7;proto=http"],
                  [client_wrote, 'for="203.0.113.7:4711";proto=http']):
        result = resolve_client(("127.0.0.1", 9), LAN, scheme="http", use=FW, forwarded=lines)
        assert result.client_address[0] == "203.0.113.7" and result.scheme == "http", lines


@pytest.mark.parametrize(
    "client_wrote",
    ["nonsense", "[::1", "127.0.0.1:99999", "\xe9", "6.6.6.6,,", "unknown, 127.0.0.1",
     "1.2.3.4 5.6.7.8", "_hidden", "127.0.0.1, ::1"],
)
def test_garbage_left_of_the_proxys_hop_is_never_read(client_wrote: str) -> None:
    for lines in ([client_wrote + ", 203.0.113.7"], [client_wrote, "203.0.113.7"]):
        result = resolve_client(("127.0.0.1", 9), LAN, scheme="http", use=XF,
                                x_forwarded_for=lines)
        assert result == ForwardedResult(("203.0.113.7", 0), "http", True), lines


#: What a client may write: anything, weighted towards the characters that matter.
CLIENT_TEXT = st.lists(st.one_of(
    st.sampled_from(list(',;="\\[]:_ \t')),
    st.sampled_from(["for=", "proto=https", "127.0.0.1", "::1", "unknown", "6.6.6.6"]),
    st.characters(max_codepoint=0xFF)), max_size=20).map("".join)


@settings(max_examples=400, deadline=None, database=None)
@given(client_wrote=CLIENT_TEXT, own_line=st.booleans())
def test_whatever_the_client_writes_the_proxys_hop_names_it(client_wrote: str,
                                                             own_line: bool) -> None:
    """Any text left of the hop a trusted proxy appended -- on its own line or
    on the same one after ``", "`` -- leaves the client the proxy's hop, and
    the scheme the proxy's (``X-Forwarded-Proto`` set, replacing the client's)."""
    if own_line:
        xff, fwd = [client_wrote, "203.0.113.7"], [client_wrote, "for=203.0.113.7;proto=http"]
    else:
        xff = [client_wrote + ", 203.0.113.7"]
        fwd = [client_wrote + ", for=203.0.113.7;proto=http"]
    for use, lines in ((XF, {"x_forwarded_for": xff}), (FW, {"forwarded": fwd})):
        result = resolve_client(("127.0.0.1", 9), LAN, scheme="https", use=use,
                                x_forwarded_proto=["http"], **lines)
        assert result == ForwardedResult(("203.0.113.7", 0), "http", True), (use, lines)


def test_ipv6_brackets_and_ports() -> None:
    def xff(value: str) -> tuple[str, int]:
        return resolve_client(("127.0.0.1", 9), LAN, scheme="http", use=XF,
                              x_forwarded_for=[value]).client_address

    def fwd(value: str) -> tuple[str, int]:
        return resolve_client(("127.0.0.1", 9), LAN, scheme="http", use=FW,
                              forwarded=[value]).client_address

    assert xff("2001:DB8::7") == ("2001:db8::7", 0)
    assert xff("[2001:db8::7]") == ("2001:db8::7", 0)
    assert xff("[2001:db8::7]:4711") == ("2001:db8::7", 4711)
    assert xff("203.0.113.7:4711") == ("203.0.113.7", 4711)
    assert xff("[::1]:80, [2001:db8::7]:443") == ("2001:db8::7", 443)
    assert xff("::ffff:203.0.113.7") == ("203.0.113.7", 0)  # IPv4-mapped: the IPv4 address
    assert xff("[::ffff:127.0.0.1]:80, 10.0.0.1") == ("127.0.0.1", 80)  # all trusted: left-most
    assert fwd('for="[2001:DB8::7]:4711"') == ("2001:db8::7", 4711)
    assert fwd('FOR="[2001:db8::7]:_port"') == ("2001:db8::7", 0)
    assert fwd('for="_gazonk:4711"') == ("_gazonk", 4711)
    assert fwd('for="[::ffff:10.0.0.1]", for="[::1]"') == ("10.0.0.1", 0)
    assert fwd('for=192.0.2.1, for="[::1]:80"') == ("192.0.2.1", 0)


def test_only_the_named_family_is_read() -> None:
    fwd, xff = ["for=198.51.100.1;proto=https"], ["198.51.100.2"]
    by_xff = resolve_client(("::1", 1), LAN, scheme="http", use=XF, forwarded=fwd,
                            x_forwarded_for=xff)
    assert by_xff == ForwardedResult(("198.51.100.2", 0), "http", True)
    by_fwd = resolve_client(("::1", 1), LAN, scheme="http", use=FW, forwarded=["for=198.51.100.1"],
                            x_forwarded_for=xff, x_forwarded_proto=["https"])
    assert by_fwd == ForwardedResult(("198.51.100.1", 0), "http", True)
    # the family the proxy sets is missing: the other one is not a fallback
    only = resolve_client(("::1", 1), LAN, scheme="http", use=FW, x_forwarded_for=xff,
                          x_forwarded_proto=["https"])
    assert only == ForwardedResult(("::1", 1), "http", False)
    only = resolve_client(("::1", 1), LAN, scheme="http", use=XF, forwarded=fwd)
    assert only == ForwardedResult(("::1", 1), "http", False)
    for bad in ("auto", "both", True):
        with pytest.raises(UsageError, match="x-forwarded"):
            resolve_client(("::1", 1), LAN, scheme="http", use=bad)  # type: ignore[arg-type]
        with pytest.raises(UsageError, match="x-forwarded"):
            resolve_from_headers(("::1", 1), LAN, [], scheme="http",
                                 use=bad)  # type: ignore[arg-type]


def test_spoofed_trusted_address_in_the_header() -> None:
    # a client behind our proxy writes a trusted address itself, hoping to be
    # taken for one of our proxies: the hop our proxy appended is untrusted,
    # so it is the client, and the forgery left of it is never looked at
    result = resolve_client(
        ("127.0.0.1", 1), LAN, scheme="http", use=XF, x_forwarded_for=["127.0.0.1, 198.51.100.7"])
    assert result.client_address == ("198.51.100.7", 0)
    result = resolve_client(
        ("127.0.0.1", 1), LAN, scheme="http", use=FW,
        forwarded=["for=127.0.0.1;proto=https", "for=198.51.100.7"])
    assert result == ForwardedResult(("198.51.100.7", 0), "http", True)


def test_resolve_from_raw_headers() -> None:
    headers: list[tuple[str | bytes, str | bytes]] = [
        (b"Host", b"example.com"),
        (b"x-forwarded-for", b"1.1.1.1"),
        (b"X-Forwarded-For", b"198.51.100.7, 10.0.0.2"),  # a second line continues the list
        ("X-Forwarded-Proto", "https"),
        (b"Forwarded", b"for=6.6.6.6;proto=https"),
    ]
    result = resolve_from_headers(("127.0.0.1", 1), LAN, headers, scheme="http", use=XF)
    assert result == ForwardedResult(("198.51.100.7", 0), "https", True)
    result = resolve_from_headers(("127.0.0.1", 1), LAN, headers, scheme="http", use=FW)
    assert result == ForwardedResult(("6.6.6.6", 0), "https", True)
    untrusted = resolve_from_headers(("203.0.113.1", 7), LAN, headers, scheme="http", use=XF)
    assert untrusted == ForwardedResult(("203.0.113.1", 7), "http", False)
    # a byte that is not ASCII breaks its hop only, not the whole field
    left: list[tuple[str | bytes, str | bytes]] = [
        (b"Forwarded", "for=1.2.3.4\xe9, for=6.6.6.6".encode())]
    assert resolve_from_headers(("::1", 1), LAN, left, scheme="http",
                                use=FW).client_address == ("6.6.6.6", 0)
    right: list[tuple[str | bytes, str | bytes]] = [
        (b"Forwarded", "for=6.6.6.6, for=1.2.3.4\xe9".encode())]
    assert resolve_from_headers(("::1", 1), LAN, right, scheme="http",
                                use=FW).client_address == ("unknown", 0)


# ------------------------------------------------------------------ the option and the CLI


def test_forwarded_headers_option() -> None:
    assert check_forwarded_headers(False) is False
    assert check_forwarded_headers("X-Forwarded") == "x-forwarded"
    assert check_forwarded_headers("forwarded") == "forwarded"
    with pytest.raises(UsageError, match='forwarded_headers="x-forwarded" if your proxy sets'):
        check_forwarded_headers(True)
    for bad in ("auto", "x-forwarded-for", 1, None, ""):
        with pytest.raises(UsageError, match="the family your proxy sets"):
            check_forwarded_headers(bad)
    with pytest.raises(UsageError, match="Daemon option forwarded_headers=True is ambiguous"):
        mhd2.Daemon(text_response, forwarded_headers=True)
    assert mhd2.Daemon(text_response).options.forwarded_headers is False
    assert mhd2.Daemon(text_response, forwarded_headers="Forwarded").options.forwarded_headers \
        == "forwarded"


def _options(argv: Sequence[str]) -> dict[str, object]:
    args: argparse.Namespace = build_parser().parse_args(argv)
    return _engine_options(args)


def test_cli_forwarded_headers_flag() -> None:
    assert _options(["serve", "--forwarded-headers", "x-forwarded"]) == {
        "forwarded_headers": "x-forwarded"}
    assert _options(["run", "m:a", "--forwarded-headers", "Forwarded",
                     "--forwarded-allow-ips", "10.0.0.0/8,unix"]) == {
        "forwarded_headers": "forwarded", "trusted_proxies": ("10.0.0.0/8", "unix")}
    # with the PROXY protocol the list says whose PROXY headers are believed
    assert _options(["serve", "--proxy-protocol", "--forwarded-allow-ips", "10.0.0.1"]) == {
        "proxy_protocol": True, "trusted_proxies": ("10.0.0.1",)}
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["serve", "--forwarded-headers", "auto"])
    assert info.value.code == 2


@pytest.mark.parametrize("command", [["serve"], ["demo"], ["run", "m:a"]])
def test_cli_allow_ips_alone_is_an_error(command: list[str],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """``--forwarded-allow-ips`` used to believe either family; alone it now
    stops with exit status 2 and says what to add (before importing or binding
    anything)."""
    with pytest.raises(SystemExit) as info:
        main([*command, "--port", "0", "--forwarded-allow-ips", "127.0.0.1"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--forwarded-allow-ips needs --forwarded-headers x-forwarded" in err
    assert "--forwarded-headers forwarded" in err


# ------------------------------------------------------------------ over real connections


def who(request: mhd2.Request) -> mhd2.Action:
    host, port = request.client_address
    return text_response(request, f"{host} {port} {request.scheme}".encode())


async def ask(port: int, *fields: bytes) -> str:
    """One HTTP/1.1 request from 127.0.0.1 (a trusted peer by default) with
    these raw header lines; the ``who`` answer."""
    head = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n" + b"".join(
        field + b"\r\n" for field in fields) + b"\r\n"
    reply = await exchange(port, head)
    assert reply.startswith(b"HTTP/1.1 200 "), reply
    return reply.partition(b"\r\n\r\n")[2].decode()


#: (family the daemon believes, raw lines as the proxy forwards them, expected answer).
#: Each request carries what a client can write (the other family, a loopback
#: address, garbage), then -- where the proxy adds one -- the proxy's own line.
SPOOFS: list[tuple[ForwardedFamily, list[bytes], str]] = [
    # the three, behind a proxy that sets X-Forwarded-For (HAProxy option forwardfor)
    (XF, [b"Forwarded: for=6.6.6.6;proto=https", b"X-Forwarded-For: 203.0.113.7"],
     "203.0.113.7 0 http"),
    (XF, [b"Forwarded: for=127.0.0.1", b"X-Forwarded-For: 203.0.113.7"], "203.0.113.7 0 http"),
    (XF, [b"Forwarded: for=6.6.6.6;proto=https"], "127.0.0.1 {port} http"),  # no XFF: the peer
    # ... and behind a proxy that sets Forwarded
    (FW, [b"X-Forwarded-Proto: https", b"Forwarded: for=203.0.113.7"], "203.0.113.7 0 http"),
    (FW, [b"X-Forwarded-For: 6.6.6.6", b"X-Forwarded-Proto: https"], "127.0.0.1 {port} http"),
    (FW, [b"X-Forwarded-For: 127.0.0.1", b"Forwarded: for=203.0.113.7;proto=http"],
     "203.0.113.7 0 http"),
    # more than one line, names in any case, a comma list, the client's loopback claim
    (XF, [b"x-FORWARDED-for: 6.6.6.6, 127.0.0.1", b"X-Forwarded-For: 203.0.113.7"],
     "203.0.113.7 0 http"),
    (XF, [b"X-Forwarded-For: 127.0.0.1", b"X-FORWARDED-FOR: 127.0.0.1, 203.0.113.7:4711"],
     "203.0.113.7 4711 http"),
    (FW, [b"FORWARDED: For=127.0.0.1;Proto=https, for=\"[::1]\"",
          b"forwarded: for=\"[2001:db8::7]:4711\";proto=http"], "2001:db8::7 4711 http"),
    # garbage the client wrote left of the proxy's hop: never the proxy's own address
    (XF, [b"X-Forwarded-For: nonsense, [::1", b"X-Forwarded-For: 203.0.113.7"],
     "203.0.113.7 0 http"),
    (XF, [b"X-Forwarded-For: \xe9\xff, 203.0.113.7"], "203.0.113.7 0 http"),
    (XF, [b"X-Forwarded-For: _hidden"], "unknown 0 http"),
    (FW, [b"Forwarded: for=\"unterminated, for=203.0.113.7;proto=https"],
     "203.0.113.7 0 https"),
    (FW, [b"Forwarded: for=1.2.3.4;for=5.6.7.8", b"Forwarded: for=\"_hidden\""],
     "_hidden 0 http"),
    (FW, [b"Forwarded: for=6.6.6.6, proto=https"], "unknown 0 https"),  # no for= in ours
    (FW, [b"Forwarded: for=\"[::1\""], "unknown 0 http"),
    # IPv6 with brackets, and ports
    (XF, [b"X-Forwarded-For: [2001:db8::7]:443", b"X-Forwarded-Proto: https"],
     "2001:db8::7 443 https"),
    (FW, [b"Forwarded: for=\"[2001:db8::7]:_obf\";proto=HTTPS"], "2001:db8::7 0 https"),
]


@pytest.mark.parametrize(("use", "fields", "expected"), SPOOFS)
async def test_spoofing_headers_over_http1(use: ForwardedFamily, fields: list[bytes],
                                           expected: str) -> None:
    async with running(who, forwarded_headers=use) as daemon:
        with trio.fail_after(WAIT):
            stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
            async with stream:
                port = stream.socket.getsockname()[1]
                head = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n" + b"".join(
                    field + b"\r\n" for field in fields) + b"\r\n"
                await stream.send_all(head)
                reply = b""
                while chunk := await stream.receive_some(65536):
                    reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 "), reply
    assert reply.partition(b"\r\n\r\n")[2].decode() == expected.format(port=port)


@pytest.mark.parametrize(("use", "fields", "expected"),
                         [case for case in SPOOFS if b"\xe9" not in b"".join(case[1])])
async def test_spoofing_headers_over_http2(use: ForwardedFamily, fields: list[bytes],
                                           expected: str) -> None:
    seen: list[mhd2.Request] = []

    def remember(request: mhd2.Request) -> mhd2.Action:
        seen.append(request)
        return who(request)

    headers = [(name.strip().lower(), value.strip())
               for name, _, value in (field.decode("latin-1").partition(":") for field in fields)]
    async with running(remember, forwarded_headers=use) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port)
            reply = await client.response(client.request("/", headers=headers))
            await client.aclose()
    assert reply.status == 200
    port = seen[0].connection.client_address[1]
    assert reply.body.decode() == expected.format(port=port)


async def test_off_by_default_and_untrusted_peers_are_ignored() -> None:
    fields = (b"X-Forwarded-For: 203.0.113.7", b"X-Forwarded-Proto: https",
              b"Forwarded: for=203.0.113.8;proto=https")
    async with running(who) as daemon:
        assert (await ask(daemon.port, *fields)).startswith("127.0.0.1 ")
        assert (await ask(daemon.port, *fields)).endswith(" http")
    for use in (XF, FW):
        async with running(who, forwarded_headers=use, trusted_proxies=("10.0.0.0/8",)) as daemon:
            answer = await ask(daemon.port, *fields)
            assert answer.startswith("127.0.0.1 ") and answer.endswith(" http")


async def test_star_does_not_let_the_left_most_hop_win() -> None:
    async with running(who, forwarded_headers="x-forwarded", trusted_proxies="*") as daemon:
        answer = await ask(daemon.port, b"X-Forwarded-For: 127.0.0.1",
                           b"X-Forwarded-For: 203.0.113.7")
    assert answer == "203.0.113.7 0 http"
    async with running(who, forwarded_headers="forwarded", trusted_proxies="*") as daemon:
        answer = await ask(daemon.port, b"Forwarded: for=127.0.0.1;proto=https",
                           b"Forwarded: for=203.0.113.7")
    assert answer == "203.0.113.7 0 http"
