"""HAProxy's PROXY protocol, versions 1 and 2, as a sans-IO parser.

A proxy that speaks the PROXY protocol (HAProxy's ``send-proxy`` and
``send-proxy-v2``, nginx's ``proxy_protocol on``, AWS and GCP load balancers)
writes one header at the very start of the connection that says who the
client really is; the HTTP request follows it. The specification is HAProxy's
``doc/proxy-protocol.txt``; the rules below quote it.

Use :func:`parse_proxy_header` on everything received so far, or a
:class:`ProxyHeaderReader` that collects the bytes for you::

    reader = ProxyHeaderReader()
    while (result := reader.feed(await stream.receive_some(4096))) is NEED_DATA:
        pass
    # result is a ProxyHeader; reader.rest holds the first HTTP bytes

Both raise :class:`ProxyProtocolError` as soon as the bytes cannot be a valid
header (garbage, a v1 line over 107 bytes, a v2 length over the cap, a
truncated address block, malformed TLVs): the connection is then closed
before any HTTP byte is read. Nothing here reads a socket or waits.
"""

from __future__ import annotations

import enum
import ipaddress
import os
import struct
from dataclasses import dataclass
from typing import Final

__all__ = [
    "MAX_V1_LENGTH",
    "NEED_DATA",
    "V2_SIGNATURE",
    "Command",
    "Family",
    "NeedData",
    "ProxyHeader",
    "ProxyHeaderReader",
    "ProxyProtocolError",
    "parse_proxy_header",
]

#: "a 108-byte buffer is always enough to store all the line and a trailing
#: zero" -- so the line, CRLF included, is at most 107 bytes.
MAX_V1_LENGTH: Final = 107
#: The 12 bytes every v2 header starts with.
V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
_V1_PREFIX: Final = b"PROXY "
_V2_FIXED: Final = 16
#: Default cap on the v2 length field (address block plus TLVs). The spec
#: allows up to 65535; HAProxy's own headers (addresses, ALPN, authority,
#: unique id, SSL information) stay far below this.
DEFAULT_MAX_V2_LENGTH: Final = 4096

_ADDRESS_SIZES: Final = {1: 12, 2: 36, 3: 216}


class ProxyProtocolError(ValueError):
    """The bytes are not a valid PROXY protocol header; close the connection."""


class NeedData(enum.Enum):
    """The header is not complete yet: feed more bytes."""

    NEED_DATA = "NEED_DATA"


NEED_DATA: Final = NeedData.NEED_DATA


class Command(enum.Enum):
    """What the proxy says about the connection."""

    #: "the connection was established on purpose by the proxy without being
    #: relayed" (health checks): use the socket's own addresses.
    LOCAL = "LOCAL"
    #: "the connection was established on behalf of another node": the
    #: addresses are the client's (unless the family is UNSPEC).
    PROXY = "PROXY"


class Family(enum.Enum):
    """The address family of the original connection."""

    UNSPEC = "UNSPEC"  # v1 "UNKNOWN", v2 AF_UNSPEC: no usable address
    TCP4 = "TCP4"
    TCP6 = "TCP6"
    UNIX = "UNIX"


#: An IP address and port, or a Unix socket path (``str``).
Address = tuple[str, int] | str


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """One parsed PROXY protocol header.

    Attributes:
        version: 1 (text) or 2 (binary).
        command: :attr:`Command.PROXY`, or :attr:`Command.LOCAL` (v2 only).
        family: the original connection's family; for LOCAL and UNSPEC the
            addresses are ``None`` and the socket's own addresses apply.
        source: the client: ``(ip, port)`` for TCP4/TCP6 (the IP in its
            canonical text form), the path for UNIX, else ``None``.
        destination: the address the client connected to, same forms.
        tlvs: v2 type-length-value pairs ``(type, value)`` in order (skipped
            by mhd2, kept for the curious).
        consumed: bytes the header occupies; what follows is HTTP.
    """

    version: int
    command: Command
    family: Family
    source: Address | None
    destination: Address | None
    tlvs: tuple[tuple[int, bytes], ...]
    consumed: int

    @property
    def client_address(self) -> Address | None:
        """The address to use for the client, or ``None`` to keep the socket's peer."""
        if self.command is Command.LOCAL or self.family is Family.UNSPEC:
            return None
        return self.source


def parse_proxy_header(
    data: bytes | bytearray | memoryview, *, max_v2_length: int = DEFAULT_MAX_V2_LENGTH
) -> ProxyHeader | NeedData:
    """Parse the PROXY header at the start of *data* (all bytes received so far).

    Args:
        data: the connection's first bytes; may hold fewer or more bytes than
            the header (the rest, from ``result.consumed`` on, is HTTP).
        max_v2_length: the largest v2 length field accepted.

    Returns:
        :data:`NEED_DATA` while *data* is a valid beginning of a header, else
        the :class:`ProxyHeader`.

    Raises:
        ProxyProtocolError: *data* cannot start a valid header.
    """
    buf = bytes(data)
    if not buf:
        return NEED_DATA
    if buf[0] == V2_SIGNATURE[0]:
        if not buf.startswith(V2_SIGNATURE[: len(buf)]):
            raise ProxyProtocolError("not a PROXY protocol header (bad v2 signature)")
        return _parse_v2(buf, max_v2_length)
    if buf[0] == _V1_PREFIX[0]:
        if not buf.startswith(_V1_PREFIX[: len(buf)]):
            raise ProxyProtocolError("not a PROXY protocol header (expected 'PROXY ')")
        return _parse_v1(buf)
    raise ProxyProtocolError("not a PROXY protocol header")


class ProxyHeaderReader:
    """Collects a connection's first bytes until the PROXY header is complete.

    :meth:`feed` every chunk received; it returns :data:`NEED_DATA` until the
    header is complete and then the :class:`ProxyHeader`, after which
    :attr:`rest` holds the bytes after the header (the start of HTTP).
    Feeding ``b""`` (end of stream) before the header is complete raises.
    """

    def __init__(self, *, max_v2_length: int = DEFAULT_MAX_V2_LENGTH) -> None:
        self._buffer = bytearray()
        self._max_v2_length = max_v2_length
        self.header: ProxyHeader | None = None
        self.rest = b""

    def feed(self, data: bytes | bytearray | memoryview) -> ProxyHeader | NeedData:
        """Add *data*; the header once complete, else :data:`NEED_DATA`.

        Raises:
            ProxyProtocolError: invalid header, or the stream ended (``b""``)
                before the header was complete.
        """
        if self.header is not None:
            raise ProxyProtocolError("the PROXY header is already complete; read 'rest'")
        if not data:
            raise ProxyProtocolError("the connection ended inside the PROXY header")
        self._buffer += data
        result = parse_proxy_header(self._buffer, max_v2_length=self._max_v2_length)
        if isinstance(result, ProxyHeader):
            self.header = result
            self.rest = bytes(self._buffer[result.consumed :])
            self._buffer.clear()
        return result


# ------------------------------------------------------------------- v1


def _parse_v1(buf: bytes) -> ProxyHeader | NeedData:
    # "The maximum line lengths the receiver must support including the CRLF
    # are [...] 107 bytes" and "the receiver [...] must not try to parse the
    # header before it has found the CRLF, or it has reached 107 characters".
    end = buf.find(b"\n", 0, MAX_V1_LENGTH)
    if end < 0:
        if len(buf) >= MAX_V1_LENGTH:
            raise ProxyProtocolError("PROXY v1 line longer than 107 bytes")
        if b"\r" in buf[:-1] or any(not 0x20 <= b < 0x7F for b in buf.rstrip(b"\r")):
            raise ProxyProtocolError("PROXY v1 line holds a control or non-ASCII byte")
        return NEED_DATA
    if end == 0 or buf[end - 1] != 0x0D:
        raise ProxyProtocolError("PROXY v1 line must end with CRLF")
    line = buf[: end - 1]
    if any(not 0x20 <= b < 0x7F for b in line):
        raise ProxyProtocolError("PROXY v1 line holds a control or non-ASCII byte")
    consumed = end + 1
    text = line.decode("ascii")
    # "PROXY" SP protocol SP src SP dst SP sport SP dport CRLF; exactly one
    # space between fields.
    parts = text.split(" ")
    if len(parts) < 2 or parts[0] != "PROXY":
        raise ProxyProtocolError("malformed PROXY v1 line")
    proto = parts[1]
    if proto == "UNKNOWN":
        # "the receiver must ignore anything presented before the CRLF is found"
        return ProxyHeader(1, Command.PROXY, Family.UNSPEC, None, None, (), consumed)
    if proto not in ("TCP4", "TCP6") or len(parts) != 6:
        raise ProxyProtocolError(f"malformed PROXY v1 line (protocol {proto!r})")
    version = 4 if proto == "TCP4" else 6
    source_ip = _v1_ip(parts[2], version)
    destination_ip = _v1_ip(parts[3], version)
    source_port = _v1_port(parts[4])
    destination_port = _v1_port(parts[5])
    family = Family.TCP4 if version == 4 else Family.TCP6
    return ProxyHeader(
        1, Command.PROXY, family, (source_ip, source_port), (destination_ip, destination_port),
        (), consumed,
    )


def _v1_ip(text: str, version: int) -> str:
    try:
        if version == 4:
            return str(ipaddress.IPv4Address(text))
        if "%" in text:  # a scope id is not part of the grammar
            raise ValueError(text)
        return str(ipaddress.IPv6Address(text))
    except ValueError:
        raise ProxyProtocolError(f"PROXY v1: bad IPv{version} address {text!r}") from None


def _v1_port(text: str) -> int:
    # "a 16-bit unsigned integer [...] in decimal"
    if not text.isdigit() or not text.isascii() or len(text) > 5 or int(text) > 65535:
        raise ProxyProtocolError(f"PROXY v1: bad port {text!r}")
    return int(text)


# ------------------------------------------------------------------- v2


def _parse_v2(buf: bytes, max_length: int) -> ProxyHeader | NeedData:
    if len(buf) < _V2_FIXED:
        # checks that need only the bytes already here
        if len(buf) > 12 and buf[12] >> 4 != 2:
            raise ProxyProtocolError("PROXY v2: unsupported version")
        return NEED_DATA
    ver_cmd, fam, length = struct.unpack_from("!BBH", buf, 12)
    # "The highest four bits contains the version. [...] this field must
    # always be emitted as \x2 and the receiver must only accept this value"
    if ver_cmd >> 4 != 2:
        raise ProxyProtocolError("PROXY v2: unsupported version")
    cmd = ver_cmd & 0x0F
    # "Other values are unassigned and must not be emitted by senders.
    # Receivers must drop connections presenting unexpected values here."
    if cmd not in (0, 1):
        raise ProxyProtocolError(f"PROXY v2: unknown command {cmd}")
    if length > max_length:
        raise ProxyProtocolError(f"PROXY v2: header length {length} over the cap {max_length}")
    family_code, transport = fam >> 4, fam & 0x0F
    if family_code > 3 or transport > 2:
        raise ProxyProtocolError(f"PROXY v2: unknown address family/protocol 0x{fam:02x}")
    if len(buf) < _V2_FIXED + length:
        return NEED_DATA
    consumed = _V2_FIXED + length
    body = buf[_V2_FIXED:consumed]
    command = Command.LOCAL if cmd == 0 else Command.PROXY
    family = Family.UNSPEC
    source: Address | None = None
    destination: Address | None = None
    size = _ADDRESS_SIZES.get(family_code, 0)
    if len(body) < size:
        raise ProxyProtocolError("PROXY v2: address block shorter than its family needs")
    if command is Command.PROXY and family_code != 0:
        # "UNSPEC [...] the receiver should ignore address information"; a
        # datagram connection is nothing an HTTP server can serve.
        if transport != 1:
            raise ProxyProtocolError("PROXY v2: only STREAM connections can carry HTTP")
        source, destination, family = _v2_addresses(family_code, body)
    # With LOCAL "the receiver must accept this connection as valid and must
    # use the real connection endpoints and discard the protocol block
    # including the family"; with UNSPEC the block's layout is unknown, so
    # there are no TLVs to find either.
    tlvs = _v2_tlvs(body[size:]) if family is not Family.UNSPEC else ()
    return ProxyHeader(2, command, family, source, destination, tlvs, consumed)


def _v2_addresses(family_code: int, body: bytes) -> tuple[Address, Address, Family]:
    if family_code == 1:
        src, dst, sport, dport = struct.unpack_from("!4s4sHH", body)
        return (
            (str(ipaddress.IPv4Address(src)), sport),
            (str(ipaddress.IPv4Address(dst)), dport),
            Family.TCP4,
        )
    if family_code == 2:
        src, dst, sport, dport = struct.unpack_from("!16s16sHH", body)
        return (
            (str(ipaddress.IPv6Address(src)), sport),
            (str(ipaddress.IPv6Address(dst)), dport),
            Family.TCP6,
        )
    # "108 bytes [...] for the source" and destination, NUL padded
    return _unix_path(body[:108]), _unix_path(body[108:216]), Family.UNIX


def _unix_path(raw: bytes) -> str:
    if raw[:1] == b"\x00":  # Linux abstract namespace: keep it visible as "@name"
        return "@" + os.fsdecode(raw[1:].rstrip(b"\x00"))
    return os.fsdecode(raw.split(b"\x00", 1)[0])


def _v2_tlvs(data: bytes) -> tuple[tuple[int, bytes], ...]:
    # Each TLV is "uint8_t type; uint8_t length_hi; uint8_t length_lo;
    # uint8_t value[0];". "The receiver may choose to skip over and ignore
    # the TLVs it is not interested in"; one that overruns the header is a
    # broken header.
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 3:
            raise ProxyProtocolError("PROXY v2: truncated TLV")
        kind, length = struct.unpack_from("!BH", data, pos)
        pos += 3
        if pos + length > len(data):
            raise ProxyProtocolError("PROXY v2: TLV longer than the header")
        out.append((kind, data[pos : pos + length]))
        pos += length
    return tuple(out)
