"""The inputs of the parser-parity suite (``test_parser_parity.py``).

Every :class:`Case` is a byte sequence a client sends on one connection, made
systematically (a request template times a list of variants) so that a whole
class of divergence between the h11 and the httptools backends shows up, not
one example of it.  The categories follow RFC 9112's sections: the request
line (§3), line endings (§2.2), field lines (§5), message framing (§6-7),
``Expect`` (RFC 9110 §10.1.1), ``Connection`` and ``Upgrade`` (RFC 9110
§7.6.1, §7.8), pipelining (RFC 9112 §9.3.2).

The daemons of the suite run with :data:`MAX_HEADER_SIZE`, so the limits
(414, 431) are reached with small inputs.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator
from dataclasses import dataclass

#: ``max_header_size`` of the daemons under test.
MAX_HEADER_SIZE = 4096


@dataclass(frozen=True)
class Case:
    """What one connection sends.

    Attributes:
        name: a short unique description (shown in mismatch reports).
        parts: the bytes, sent part after part; the server has processed each
            part (all tasks idle) before the next is sent.
        half_close: after the last part the client shuts its sending side.
    """

    name: str
    parts: tuple[bytes, ...]
    half_close: bool = False

    @property
    def data(self) -> bytes:
        """All bytes of the case."""
        return b"".join(self.parts)


def case(name: str, data: bytes, *, half_close: bool = False) -> Case:
    """A case sending *data* in one piece."""
    return Case(name, (data,), half_close)


def get(target: bytes = b"/", *, headers: bytes = b"Host: h\r\n", version: bytes = b"HTTP/1.1",
        method: bytes = b"GET") -> bytes:
    """A request head with CRLF line ends."""
    return method + b" " + target + b" " + version + b"\r\n" + headers + b"\r\n"


# -- request line (RFC 9112 §3) ---------------------------------------------------

METHODS = [
    b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE", b"PURGE",
    b"PROPFIND", b"MKCOL", b"M-SEARCH", b"SOURCE", b"QUERY", b"LINK", b"REPORT", b"FOO",
    b"X-CUSTOM", b"get", b"Get", b"G.E_T~!", b"GE\x00T", b"GE\x7fT", b"G(T", b"GE T",
    b"G\xc9T", b"", b"A" * 100, b"GET\t", b"1", b"*",
]

TARGETS = [
    b"/", b"/a/b", b"/a%20b", b"/%zz", b"/%", b"/%2", b"/%00", b"/%ff%fe", b"/%c3%a9",
    b"/a?x=1&y=2", b"/?a+b=c+d", b"/?%2B=%20", b"/?a=1&a=2", b"/?a", b"/?=x", b"/?&&",
    b"/?a=%zz", b"/?a=%", b"/?%C3%A9=%e2%82%ac", b"/?a=b=c", b"/#frag", b"/a?b#c", b"/a#b?c",
    b"http://example.com/x?y=1", b"http://[::1]:80/", b"HTTP://EXAMPLE.COM", b"https://e/",
    b"http://e", b"example.com:443", b"*", b"//double", b"/../etc", b"/a;b", b"/a\"b",
    b"/<>", b"/{}", b"/|", b"/\\", b"/^", b"/`", b"/~!$&'()*+,;=:@", b"?a=1", b"a",
    b"/a b", b"/" + b"x" * 1000,
]

VERSIONS = [
    b"HTTP/1.0", b"HTTP/1.1", b"HTTP/2.0", b"HTTP/1.2", b"HTTP/1.9", b"HTTP/2", b"HTTP/3.0",
    b"HTTP/0.9", b"http/1.1", b"Http/1.1", b"HTTP/01.1", b"HTTP/1.01", b"HTTP/1", b"HTTP/1.",
    b"HTTP/ 1.1", b"HTTPS/1.1", b"HTTP/1.1 ", b"HTTP/1.1\t", b"HTTP/11", b"HTTP/1.1x",
    b"HTTP/a.b", b"",
]


def request_lines() -> Iterator[Case]:
    """Method tokens, targets, every byte in a target, versions, spacing, 0.9 form."""
    for method in METHODS:
        yield case(f"method {method!r}", get(method=method))
        yield case(f"method {method!r} 1.0", get(method=method, version=b"HTTP/1.0",
                                                  headers=b""))
    for target in TARGETS:
        yield case(f"target {target[:60]!r}", get(target))
    for method, target in [(b"CONNECT", b"example.com:443"), (b"CONNECT", b"/"),
                           (b"CONNECT", b"[::1]:80"), (b"CONNECT", b"example.com"),
                           (b"OPTIONS", b"*"), (b"GET", b"*"), (b"OPTIONS", b"/"),
                           (b"POST", b"*")]:
        yield case(f"{method!r} {target!r}", get(target, method=method))
    for byte in range(256):
        yield case(f"target byte {byte:#04x}", get(b"/a" + bytes([byte]) + b"b"))
        if byte < 0x21 or byte >= 0x7f:
            yield case(f"query byte {byte:#04x}", get(b"/?k=" + bytes([byte])))
    for version in VERSIONS:
        yield case(f"version {version!r}", get(version=version))
        yield case(f"version {version!r} no Host", get(version=version, headers=b""))
    for line in [b"GET  / HTTP/1.1", b"GET /  HTTP/1.1", b"GET\t/\tHTTP/1.1", b"GET\t/ HTTP/1.1",
                 b" GET / HTTP/1.1", b"\tGET / HTTP/1.1", b"GET / HTTP/1.1 ", b"GET /",
                 b"GET / ", b"GET", b"GET / HTTP/1.1 extra", b"/ HTTP/1.1", b"GET HTTP/1.1",
                 b"", b" ", b"GET /\x00 HTTP/1.1"]:
        yield case(f"line {line!r}", line + b"\r\nHost: h\r\n\r\n")
    # h11 refuses a head whose first byte is < 0x21 at once, before its end
    # arrives ("cheap sanity check", e.g. a TLS ClientHello on a plain port).
    for byte in range(0x22):
        start = bytes([byte])
        yield case(f"incomplete head starting {byte:#04x}", start + b"GET / HTTP/1.1\r\nHost: h")
        yield case(f"pipelined incomplete head starting {byte:#04x}",
                   get(b"/first") + start + b"GET / HTTP/1.1\r\nHost: h")
    yield case("TLS ClientHello on the plain port",
               b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(32)))
    yield case("HTTP/0.9 simple request", b"GET /\r\n")
    yield case("HTTP/0.9 simple request, half-close", b"GET /\r\n", half_close=True)
    yield case("HTTP/0.9 simple request + blank", b"GET /\r\n\r\n")
    for length in (MAX_HEADER_SIZE - 200, MAX_HEADER_SIZE - 30, MAX_HEADER_SIZE - 20,
                   MAX_HEADER_SIZE, MAX_HEADER_SIZE + 10, 2 * MAX_HEADER_SIZE,
                   5 * MAX_HEADER_SIZE):
        yield case(f"target of {length} bytes", get(b"/" + b"t" * length))
        yield case(f"target of {length} bytes, no line end", b"GET /" + b"t" * length)
        whole = get(b"/" + b"t" * length)
        yield Case(f"target of {length} bytes, in 1000-byte parts",
                   tuple(whole[i:i + 1000] for i in range(0, len(whole), 1000)))
    yield case("lone method, half-close", b"GET", half_close=True)
    yield case("partial line, half-close", b"GET / HTT", half_close=True)
    yield case("partial line, open", b"GET / HTT")
    yield case("whole line, no headers end", b"GET / HTTP/1.1\r\nHost: h\r\n")
    yield case("whole line, no headers end, half-close", b"GET / HTTP/1.1\r\nHost: h\r\n",
               half_close=True)


# -- line endings (RFC 9112 §2.2) ------------------------------------------------------

ENDINGS = {"CRLF": b"\r\n", "LF": b"\n", "CR": b"\r", "LFCR": b"\n\r", "CRCRLF": b"\r\r\n",
           "SPCRLF": b" \r\n"}


def line_endings() -> Iterator[Case]:
    """Bare LF, bare CR and mixes at every line end of a small head, and leading blanks."""
    lines = [b"GET /le HTTP/1.1", b"Host: h", b"X-A: 1", b""]
    for style, end in ENDINGS.items():
        yield case(f"all line ends {style}", end.join(lines) + end)
    for position in range(len(lines)):
        for style, end in ENDINGS.items():
            if style == "CRLF":
                continue
            ends = [b"\r\n"] * len(lines)
            ends[position] = end
            data = b"".join(line + e for line, e in zip(lines, ends, strict=True))
            yield case(f"line {position} ends {style}", data)
            yield case(f"line {position} ends {style}, then GET", data + get(b"/next"))
    for lead in [b"\r\n", b"\n", b"\r\n\r\n", b"\n\n", b"\r", b" \r\n", b"\t\r\n", b"\r\n" * 50]:
        yield case(f"leading {lead[:8]!r}", lead + get(b"/lead"))
        # RFC 9112 §2.2: "a server that is expecting to receive and parse a
        # request-line SHOULD ignore at least one empty line (CRLF) received
        # prior to the request-line" -- also between pipelined requests, and
        # after a POST body (old clients add a CRLF there).
        yield case(f"trailing {lead[:8]!r}", get(b"/trail") + lead)
        yield case(f"trailing {lead[:8]!r}, half-close", get(b"/trail") + lead, half_close=True)
        yield case(f"trailing {lead[:8]!r}, then GET", get(b"/trail") + lead + get(b"/next"))
        yield Case(f"trailing {lead[:8]!r}, GET later", (get(b"/trail") + lead, get(b"/next")))
        yield case(f"after a POST body {lead[:8]!r}",
                   b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nok" + lead)
    yield case("LF-only POST with body", b"POST /le HTTP/1.1\nHost: h\nContent-Length: 3\n\nabc")
    yield case("LF-only chunked", b"POST /le HTTP/1.1\nHost: h\nTransfer-Encoding: chunked\n\n"
               b"3\nabc\n0\n\n")


# -- field lines (RFC 9112 §5, RFC 9110 §5) ----------------------------------------------

FIELD_LINES = [
    b"X: v", b"X:v", b"X : v", b"X\t: v", b"X:  v  ", b"X:\tv\t", b"X:\t\tv \t", b"X: a\tb",
    b"X: a  b", b"X:", b"X: ", b"X:\t", b": v", b":", b" : v", b"X", b"X v", b"X: v\r\n w",
    b"X: v\r\n\tw", b"X: v\r\n \r\n", b"X: v\r\n  ", b"X-Y_Z: 1", b"x-lower: 1", b"X-UPPER: 1",
    b"X(Y: 1", b"X Y: 1", b"X/Y: 1", b"X@Y: 1", b"X,Y: 1", b"X\"Y: 1", b"X{Y: 1", b"X=Y: 1",
    b"X;Y: 1", b"X?Y: 1", b"X[Y: 1", b"X!#$%&'*+.^_`|~Y: 1", b"X: " + b"v" * 2000,
    b"X" * 300 + b": v", b"X: a:b:c", b"X: \"quoted\"", b"X: a, b,, c", b"X: =?utf-8?q?a?=",
    b"Cookie: a=1; b=2", b"Cookie: a=1; a=2", b"Cookie: a=1\r\nCookie: b=2", b"Cookie: =x; ;a",
    b"Cookie: a=\"q\"; b=%20", b"Cookie:", b"Cookie: a", b"Cookie: a=1;b=2;  c = 3 ",
    b"x-dup: 1\r\nX-Dup: 2\r\nX-DUP: 3", b"Accept: a\r\nAccept: b", b"Content-Type: text/x",
    b"Authorization: Basic dTpw", b"Host: h", b"Content-Length: 0", b"Transfer-Encoding:",
    b"Expect:", b"Upgrade: foo", b"Connection:", b"TE: trailers", b"Trailer: X-T",
]

HOST_HEADERS = [
    b"", b"Host: h", b"Host: h\r\nHost: h", b"Host: a\r\nHost: b", b"Host:", b"Host: ",
    b"Host: a b", b"Host: a:80", b"Host: a:x", b"Host: a:", b"Host: [::1]:8080", b"Host: [::1",
    b"Host: a@b", b"Host: a/b", b"Host: a:99999", b"Host: a\\b", b"host: h", b"HOST: h",
    b"Host: h\r\nhost: h", b"Host: xn--bcher-kva.example", b"Host: a,b", b"Host: 1.2.3.4",
    b"Host: a_b", b"Host: a%20b", b"Host:\th\t", b"Host: h\r\n h2",
]


def field_lines() -> Iterator[Case]:
    """Field line syntax, bytes in names and values, Host rules, many and big fields."""
    for line in FIELD_LINES:
        yield case(f"field {line[:60]!r}", get(b"/f", headers=b"Host: h\r\n" + line + b"\r\n"))
    yield case("obs-fold on the first field line", b"GET /f HTTP/1.1\r\n X: v\r\nHost: h\r\n\r\n")
    yield case("obs-fold tab on the first line", b"GET /f HTTP/1.1\r\n\tX: v\r\nHost: h\r\n\r\n")
    for byte in [*range(0x20), 0x7f, 0x80, 0x9f, 0xa0, 0xc3, 0xe9, 0xff]:
        b = bytes([byte])
        yield case(f"value byte {byte:#04x}", get(b"/f", headers=b"Host: h\r\nX: a" + b + b"b\r\n"))
        yield case(f"value ends {byte:#04x}", get(b"/f", headers=b"Host: h\r\nX: a" + b + b"\r\n"))
        yield case(f"name byte {byte:#04x}", get(b"/f", headers=b"Host: h\r\nX" + b + b"Y: 1\r\n"))
    yield case("value UTF-8", get(b"/f", headers="Host: h\r\nX: ü€\r\n".encode()))
    for host in HOST_HEADERS:
        headers = host + b"\r\n" if host else b""
        yield case(f"host {host!r} 1.1", get(b"/h", headers=headers))
        yield case(f"host {host!r} 1.0", get(b"/h", headers=headers, version=b"HTTP/1.0"))
        yield case(f"host {host!r} absolute-form",
                   get(b"http://other/h", headers=headers))
    for count in (50, 100, 200, 400):
        many = b"".join(b"X-%d: %d\r\n" % (i, i) for i in range(count))
        yield case(f"{count} fields", get(b"/many", headers=b"Host: h\r\n" + many))
    base = len(get(b"/big", headers=b"Host: h\r\nX: \r\n"))
    for total in (MAX_HEADER_SIZE - 1, MAX_HEADER_SIZE, MAX_HEADER_SIZE + 1,
                  MAX_HEADER_SIZE + 100, 3 * MAX_HEADER_SIZE):
        filler = b"v" * (total - base)
        data = get(b"/big", headers=b"Host: h\r\nX: " + filler + b"\r\n")
        assert len(data) == total
        yield case(f"head of {total} bytes", data)
        yield Case(f"head of {total} bytes, last byte apart", (data[:-1], data[-1:]))
        yield Case(f"head of {total} bytes, in halves", (data[:total // 2], data[total // 2:]))
        yield case(f"head of {total} bytes, incomplete", data[:-2])


# -- framing (RFC 9112 §6-7) ------------------------------------------------------------

CONTENT_LENGTHS = [
    b"5", b"+5", b"-1", b"5, 5", b"5, 6", b"5,5", b" 5 ", b"5 ", b"05", b"0005", b"0x5", b"5.0",
    b"1e1", b"", b"5 5", b"\t5", b"99999999999999999999999", b"18446744073709551616",
    b"9223372036854775807", b"a",
]
TRANSFER_CODINGS = [
    b"chunked", b"Chunked", b"CHUNKED", b"gzip, chunked", b"chunked, gzip", b"chunked, chunked",
    b"identity", b"gzip", b"chunked,", b",chunked", b" chunked ", b"\tchunked", b"chunked;q=1",
    b"chunked\r\nTransfer-Encoding: chunked", b"gzip\r\nTransfer-Encoding: chunked",
    b"chunked\r\nTransfer-Encoding: gzip", b"identity, chunked", b"chunke", b"x-chunked",
    b"chunked , gzip",
]
CHUNKED_BODIES = [
    b"5\r\nhello\r\n0\r\n\r\n", b"A\r\n0123456789\r\n0\r\n\r\n", b"a\r\n0123456789\r\n0\r\n\r\n",
    b"0005\r\nhello\r\n0\r\n\r\n", b"5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n", b"0\r\n\r\n",
    b"000\r\n\r\n", b"fffffffffffffffffff\r\nx\r\n0\r\n\r\n", b"-1\r\nx\r\n0\r\n\r\n",
    b"+5\r\nhello\r\n0\r\n\r\n", b"0x5\r\nhello\r\n0\r\n\r\n", b"5;a=b\r\nhello\r\n0\r\n\r\n",
    b"5; a\r\nhello\r\n0\r\n\r\n", b"5;a=\"q\"\r\nhello\r\n0\r\n\r\n",
    b"5;a=\"q;\\\"x\"\r\nhello\r\n0\r\n\r\n", b"5 ;a=b\r\nhello\r\n0\r\n\r\n",
    b"5\t;a\r\nhello\r\n0\r\n\r\n", b"5;\r\nhello\r\n0\r\n\r\n", b"5;=\r\nhello\r\n0\r\n\r\n",
    b"5;a=b c\r\nhello\r\n0\r\n\r\n", b"5 \r\nhello\r\n0\r\n\r\n", b" 5\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhelloXX0\r\n\r\n", b"5\r\nhello0\r\n\r\n", b"5\r\nhell\r\n0\r\n\r\n",
    b"5\nhello\n0\n\n", b"5\r\nhello\n0\r\n\r\n", b"5\nhello\r\n0\r\n\r\n",
    b"5\rhello\r\n0\r\n\r\n", b"5\r\nhello\r\n0\n\n", b"5\r\nhello\r\n0\r\n\n",
    b"0\r\nX-T: 1\r\n\r\n", b"0\r\nX-T: 1\r\nY-T: 2\r\n\r\n", b"0\r\nbad trailer\r\n\r\n",
    b"0\r\nX: a\r\n b\r\n\r\n", b"0\r\n: x\r\n\r\n", b"0\r\nContent-Length: 5\r\n\r\n",
    b"0\r\nX-T: 1\n\n", b"0\r\nX-T:\x01\r\n\r\n", b"0\r\nx-t: 1\r\nX-T: 2\r\n\r\n",
    b"0;ext\r\n\r\n", b"0;ext=1\r\nX-T: 1\r\n\r\n", b"0\r\n", b"5\r\nhel", b"5\r\nhello",
    b"5\r\nhello\r\n", b"", b"\r\n5\r\nhello\r\n0\r\n\r\n", b"g\r\nhello\r\n0\r\n\r\n",
    b"1000000000\r\nabc", b"5\r\nhello\r\n0\r\n\r\nGET /after HTTP/1.1\r\nHost: h\r\n\r\n",
]


def post(path: bytes, headers: bytes, body: bytes, *, version: bytes = b"HTTP/1.1") -> bytes:
    """A POST with the given framing field lines and body bytes."""
    return b"POST " + path + b" " + version + b"\r\nHost: h\r\n" + headers + b"\r\n" + body


def framing() -> Iterator[Case]:
    """Content-Length and Transfer-Encoding variants, chunked bodies, truncation."""
    for path in (b"/echo", b"/noread"):
        for value in CONTENT_LENGTHS:
            data = post(path, b"Content-Length: " + value + b"\r\n", b"hello")
            yield case(f"{path!r} CL {value!r}", data)
            yield case(f"{path!r} CL {value!r}, half-close", data, half_close=True)
        for first, second in [(b"5", b"5"), (b"5", b"6"), (b"5", b"")]:
            data = post(path, b"Content-Length: %s\r\nContent-Length: %s\r\n" % (first, second),
                        b"hello")
            yield case(f"{path!r} two CL {first!r} {second!r}", data)
        yield case(f"{path!r} CL short", post(path, b"Content-Length: 3\r\n", b"hello"))
        yield case(f"{path!r} CL long, open", post(path, b"Content-Length: 9\r\n", b"hello"))
        yield case(f"{path!r} CL long, half-close", post(path, b"Content-Length: 9\r\n", b"hello"),
                   half_close=True)
        for coding in TRANSFER_CODINGS:
            data = post(path, b"Transfer-Encoding: " + coding + b"\r\n",
                        b"5\r\nhello\r\n0\r\n\r\n")
            yield case(f"{path!r} TE {coding!r}", data)
            yield case(f"{path!r} TE {coding!r}, half-close", data, half_close=True)
        for headers in [b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                        b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                        b"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
                        b"Content-Length: 22\r\nTransfer-Encoding: gzip, chunked\r\n"]:
            yield case(f"{path!r} CL+TE {headers!r}", post(path, headers,
                                                            b"5\r\nhello\r\n0\r\n\r\n"))
        for version in (b"HTTP/1.0", b"HTTP/1.1"):
            yield case(f"{path!r} TE on {version!r}",
                       post(path, b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n",
                            version=version))
        for body in CHUNKED_BODIES:
            data = post(path, b"Transfer-Encoding: chunked\r\n", body)
            yield case(f"{path!r} chunked {body[:50]!r}", data)
            yield case(f"{path!r} chunked {body[:50]!r}, half-close", data, half_close=True)
    yield case("GET with CL body", get(b"/echo", headers=b"Host: h\r\nContent-Length: 2\r\n")
               + b"hi")
    yield case("HEAD with CL body", get(b"/echo", method=b"HEAD",
                                        headers=b"Host: h\r\nContent-Length: 2\r\n") + b"hi")
    yield case("1.0 POST without length, half-close",
               post(b"/echo", b"", b"abc", version=b"HTTP/1.0"), half_close=True)
    yield case("1.1 POST without length", post(b"/echo", b"", b"abc"))
    yield case("big CL body", post(b"/echo", b"Content-Length: 70000\r\n", b"z" * 70000))
    big = b"".join(b"%x\r\n%s\r\n" % (n, b"c" * n) for n in (1, 100, 30000, 40000)) + b"0\r\n\r\n"
    yield case("big chunked body", post(b"/echo", b"Transfer-Encoding: chunked\r\n", big))
    tiny = b"1\r\nx\r\n" * 3000 + b"0\r\n\r\n"
    yield case("3000 one-byte chunks", post(b"/echo", b"Transfer-Encoding: chunked\r\n", tiny))


# -- Expect, Connection, Upgrade --------------------------------------------------------


def expect() -> Iterator[Case]:
    """``Expect: 100-continue`` with and without the body, on 1.0, unread by the app."""
    for path in (b"/echo", b"/noread"):
        for value in (b"100-continue", b"100-Continue", b"foo", b"", b"100-continue, foo"):
            headers = b"Content-Length: 5\r\nExpect: " + value + b"\r\n"
            yield case(f"{path!r} Expect {value!r} + body", post(path, headers, b"hello"))
            yield case(f"{path!r} Expect {value!r}, body withheld", post(path, headers, b""))
            yield Case(f"{path!r} Expect {value!r}, body after the 100",
                       (post(path, headers, b""), b"hello"))
        yield case(f"{path!r} Expect on 1.0",
                   post(path, b"Content-Length: 5\r\nExpect: 100-continue\r\n", b"hello",
                        version=b"HTTP/1.0"))
        yield case(f"{path!r} Expect, chunked",
                   post(path, b"Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n", b""))
        yield case(f"{path!r} Expect on a GET", get(path, headers=b"Host: h\r\n"
                                                    b"Expect: 100-continue\r\n"))


CONNECTION_VALUES = [b"close", b"Close", b"CLOSE", b"keep-alive", b"Keep-Alive", b"upgrade",
                     b"close, upgrade", b"keep-alive, close", b"close, keep-alive", b"foo",
                     b"close\r\nConnection: keep-alive", b"keep-alive\r\nConnection: close",
                     b"", b" close ", b"te, close", b"closed"]


def connection() -> Iterator[Case]:
    """``Connection`` options on 1.0 and 1.1, each followed by a second request."""
    for version in (b"HTTP/1.0", b"HTTP/1.1"):
        for value in CONNECTION_VALUES:
            first = get(b"/c1", version=version, headers=b"Host: h\r\nConnection: " + value
                        + b"\r\n")
            yield case(f"Connection {value!r} {version!r}", first + get(b"/c2"))


WS_KEY = base64.b64encode(b"0123456789abcdef")


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client WebSocket frame (RFC 6455 §5.2), payload < 126 bytes."""
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


def upgrade() -> Iterator[Case]:
    """WebSocket handshakes and frames, raw upgrades, h2c, upgrades with bodies."""
    ws_head = (b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
               b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + WS_KEY + b"\r\n\r\n")
    frames = ws_frame(0x1, b"hello") + ws_frame(0x2, b"\x00\xff") + ws_frame(0x8, b"\x03\xe8")
    yield case("websocket handshake", ws_head)
    yield case("websocket handshake + frames", ws_head + frames)
    yield Case("websocket handshake, then frames", (ws_head, frames))
    yield case("websocket handshake, half-close", ws_head, half_close=True)
    yield case("websocket on 1.0", ws_head.replace(b"HTTP/1.1", b"HTTP/1.0"))
    yield case("websocket, Connection: keep-alive, Upgrade",
               ws_head.replace(b"Connection: Upgrade", b"Connection: keep-alive, Upgrade"))
    yield case("websocket without Connection",
               ws_head.replace(b"Connection: Upgrade\r\n", b""))
    yield case("websocket with a body", ws_head.replace(b"\r\n\r\n",
                                                        b"\r\nContent-Length: 3\r\n\r\nabc"))
    yield case("websocket POST", ws_head.replace(b"GET", b"POST"))
    raw = b"GET /up HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: echo\r\n"
    yield case("raw upgrade", raw + b"\r\n")
    yield case("raw upgrade + bytes", raw + b"\r\nsome bytes")
    yield Case("raw upgrade, then bytes", (raw + b"\r\n", b"later bytes"))
    yield case("raw upgrade + bytes, half-close", raw + b"\r\nbye", half_close=True)
    yield case("raw upgrade with CL body", raw + b"Content-Length: 5\r\n\r\nhelloafter")
    yield case("raw upgrade with chunked body",
               raw + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nafter")
    yield case("upgrade not asked for by the app", get(b"/echo", headers=b"Host: h\r\n"
               b"Connection: upgrade\r\nUpgrade: foo\r\n") + get(b"/next"))
    yield case("h2c upgrade", get(b"/echo", headers=b"Host: h\r\nConnection: Upgrade, "
               b"HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n")
               + get(b"/next"))
    yield case("CONNECT to /up", b"CONNECT /up HTTP/1.1\r\nHost: h\r\n\r\ntunnel")
    yield case("CONNECT authority + bytes", b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\nxyz")
    yield case("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    yield case("PRI as a method", b"PRI * HTTP/1.1\r\nHost: h\r\n\r\n")


def app_paths() -> Iterator[Case]:
    """What the parser hands on after the head: upgrade leftovers, parked requests,
    bodies the application never reads (RFC 9112 §9.3: not a next request)."""
    up = b"GET /up HTTP/1.1\r\nHost: h\r\n"
    yield case("upgrade without Upgrade field + bytes", up + b"\r\nextra bytes")
    yield Case("upgrade without Upgrade field, then bytes", (up + b"\r\n", b"later"))
    yield case("upgrade after CL body + bytes", up + b"Content-Length: 3\r\n\r\nabcextra")
    yield Case("upgrade after CL body in parts", (up + b"Content-Length: 3\r\n\r\na",
                                                  b"bcextra"))
    yield case("upgrade on 1.0 + bytes", up.replace(b"1.1", b"1.0") + b"\r\nextra")
    yield case("upgrade + pipelined request", up + b"\r\n" + get(b"/next"))
    parked = get(b"/suspend")
    yield case("suspend", parked)
    yield case("suspend + pipelined", parked + get(b"/next"))
    yield Case("suspend, next request while parked", (parked, get(b"/next")))
    yield Case("suspend, bad request while parked", (parked, b"GET /x HTTP/1.1\r\n\r\n"))
    yield Case("suspend, half-close while parked", (parked,), half_close=True)
    for name, framing, body in [("CL", b"Content-Length: 5\r\n", b"hello"),
                                ("chunked", b"Transfer-Encoding: chunked\r\n",
                                 b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
                                ("Expect", b"Content-Length: 5\r\nExpect: 100-continue\r\n",
                                 b"hello")]:
        head = post(b"/suspend", framing, b"")
        yield case(f"suspend, {name} body with the head", head + body)
        yield Case(f"suspend, {name} body while parked", (head, body))
        yield Case(f"suspend, {name} body + next while parked", (head, body + get(b"/next")))
        yield Case(f"suspend, {name} half the body while parked", (head, body[:3]),
                   half_close=True)
    for size in (0, 5, 99_999, 100_000, 100_001, 150_000):
        body = b"f" * size
        yield case(f"full upload CL {size}",
                   post(b"/full", b"Content-Length: %d\r\n" % size, body) + get(b"/next"))
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (size, body) if size else b"0\r\n\r\n"
        yield case(f"full upload chunked {size}",
                   post(b"/full", b"Transfer-Encoding: chunked\r\n", chunked) + get(b"/next"))
    yield case("full upload, Expect, too large",
               post(b"/full", b"Content-Length: 200000\r\nExpect: 100-continue\r\n", b""))
    for size, sent in [(200_000, 100), (300_000, 100), (300_000, 300_000), (262_144, 10),
                       (262_145, 10), (262_144 + 12, 12)]:
        data = post(b"/noread", b"Content-Length: %d\r\n" % size, b"n" * sent) + get(b"/next")
        yield case(f"unread CL {size} body, {sent} sent", data)
        yield Case(f"unread CL {size} body, {sent} sent later", (data[:200], data[200:]))


# -- pipelining (RFC 9112 §9.3.2) ---------------------------------------------------------

GOOD = [
    get(b"/p-get"),
    get(b"/p-head", method=b"HEAD"),
    post(b"/echo", b"Content-Length: 3\r\n", b"abc"),
    post(b"/echo", b"Transfer-Encoding: chunked\r\n", b"3\r\nabc\r\n0\r\nX-T: t\r\n\r\n"),
    post(b"/noread", b"Content-Length: 3\r\n", b"abc"),
    post(b"/noread", b"Transfer-Encoding: chunked\r\n", b"3\r\nabc\r\n0\r\n\r\n"),
    get(b"/p10", version=b"HTTP/1.0", headers=b"Connection: keep-alive\r\n"),
]
BAD = [
    post(b"/echo", b"Content-Length: 3\r\nContent-Length: 4\r\n", b"abcd"),
    post(b"/echo", b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
    post(b"/echo", b"Transfer-Encoding: gzip\r\n", b"abc"),
    post(b"/echo", b"Transfer-Encoding: chunked\r\n", b"zz\r\nabc\r\n0\r\n\r\n"),
    b"GET /bad\rX HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /bad HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
    b"GET /bad HTTP/1.1\r\nHost: h\r\n X: fold\r\n\r\n",
    b"GET /bad HTTP/1.1\nHost: h\n\n",
    b"GET /bad HTTP/9.9\r\nHost: h\r\n\r\n",
    b"GET /bad HTTP/1.1\r\n\r\n",
    b"G@T /bad HTTP/1.1\r\nHost: h\r\n\r\n",
    post(b"/noread", b"Content-Length: -1\r\n", b"abc"),
]
SMUGGLED = get(b"/smuggled")


def pipelining() -> Iterator[Case]:
    """2-5 requests in one send; a bad one in the middle must end the connection."""
    for count in range(2, 6):
        for start in range(len(GOOD)):
            chosen = [GOOD[(start + i) % len(GOOD)] for i in range(count)]
            yield case(f"pipeline of {count} from #{start}", b"".join(chosen))
    for index, bad in enumerate(BAD):
        yield case(f"pipeline good, bad #{index}, good", GOOD[0] + bad + SMUGGLED)
        yield case(f"pipeline bad #{index} first", bad + SMUGGLED)
        yield case(f"pipeline bad #{index} after chunked", GOOD[3] + bad + SMUGGLED)
    yield case("100 pipelined GETs", get(b"/p") * 100)
    yield case("60 pipelined CL POSTs", b"".join(
        post(b"/echo", b"Content-Length: %d\r\n" % (i % 7), b"x" * (i % 7)) for i in range(60)))
    yield case("40 pipelined chunked POSTs, unread", post(
        b"/noread", b"Transfer-Encoding: chunked\r\n", b"2\r\nab\r\n0\r\n\r\n") * 40)
    yield case("pipeline after Connection: close",
               get(b"/last", headers=b"Host: h\r\nConnection: close\r\n") + SMUGGLED)
    yield case("pipeline, half-close", b"".join(GOOD), half_close=True)
    yield case("pipeline, Expect in the middle", GOOD[0] + post(
        b"/echo", b"Content-Length: 2\r\nExpect: 100-continue\r\n", b"ok") + GOOD[0])
    yield case("pipeline, CRLF between requests", GOOD[0] + b"\r\n" + GOOD[0])
    yield case("pipeline, LF between requests", GOOD[0] + b"\n" + GOOD[0])
    yield case("pipeline, junk after the last", GOOD[0] + b"junk")
    yield case("pipeline, junk after the last, half-close", GOOD[0] + b"junk", half_close=True)


# -- half-close ------------------------------------------------------------------------


def half_close() -> Iterator[Case]:
    """The client shuts its sending side right after a complete request."""
    for index, data in enumerate(GOOD):
        yield case(f"good #{index}, half-close", data, half_close=True)
    yield case("nothing, half-close", b"", half_close=True)
    yield case("CRLF only, half-close", b"\r\n", half_close=True)


def corpus() -> list[Case]:
    """Every systematic case (names are unique)."""
    cases = [*request_lines(), *line_endings(), *field_lines(), *framing(), *expect(),
             *connection(), *upgrade(), *app_paths(), *pipelining(), *half_close()]
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), [n for n in names if names.count(n) > 1][:5]
    return cases


# -- queries, for uri_query_plus_as_space both ways ------------------------------------

QUERIES = [b"a+b=c+d", b"a%2Bb=c%2bd", b"+=+", b"a=%20+%20", b"%2B+%2B", b"a=1+&b=+2",
           b"q=a+b%20c+%2B", b"x=%zz+", b"+", b"a=b+c=d", b"a&b=+&c"]


def queries() -> list[Case]:
    """Query strings where ``+`` decoding matters."""
    return [case(f"query {q!r}", get(b"/q?" + q)) for q in QUERIES]


# -- byte-boundary splits -------------------------------------------------------------------

SPLIT_REQUESTS = {
    "GET": get(b"/s?a=1", headers=b"Host: h\r\nCookie: c=1\r\nX-A:  v \r\n"),
    "POST CL": post(b"/echo", b"Content-Length: 5\r\n", b"hello"),
    "POST chunked + trailer": post(b"/echo", b"Transfer-Encoding: chunked\r\n",
                                   b"5;e=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
    "two pipelined": get(b"/one") + post(b"/echo", b"Content-Length: 2\r\n", b"hi"),
    "Expect": post(b"/echo", b"Content-Length: 2\r\nExpect: 100-continue\r\n", b"hi"),
    "bad CL": post(b"/echo", b"Content-Length: 1, 2\r\n", b"hi"),
}


def splits(name: str) -> list[Case]:
    """:data:`SPLIT_REQUESTS` [*name*] split in two at every byte boundary, and byte by byte."""
    data = SPLIT_REQUESTS[name]
    out = [Case(f"{name} split at {k}", (data[:k], data[k:])) for k in range(1, len(data))]
    out.append(Case(f"{name} byte by byte", tuple(data[i:i + 1] for i in range(len(data)))))
    return out


# -- seeded random mutations of valid heads ---------------------------------------------------

MUTATION_BYTES = b"\x00\t\n\r \"#%+,:;<>?@[\\]^`{|}\x7f\x80\xff-./0129AZaz"
VALID_HEADS = [SPLIT_REQUESTS["GET"], SPLIT_REQUESTS["POST CL"],
               SPLIT_REQUESTS["POST chunked + trailer"], GOOD[6]]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to three random byte edits (replace, insert, delete, duplicate a slice)."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(buf) + 1)
        op = rng.randrange(4)
        byte = MUTATION_BYTES[rng.randrange(len(MUTATION_BYTES))]
        if op == 0 and at < len(buf):
            buf[at] = byte
        elif op == 1:
            buf.insert(at, byte)
        elif op == 2 and at < len(buf):
            del buf[at]
        else:
            end = min(len(buf), at + rng.randint(1, 8))
            buf[at:at] = buf[at:end]
    return bytes(buf)


def mutations(count: int, seed: int = 20261125) -> list[Case]:
    """*count* seeded mutations of :data:`VALID_HEADS`, each followed by a good request."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        data = mutate(VALID_HEADS[i % len(VALID_HEADS)], rng)
        out.append(case(f"mutation #{i} {data[:80]!r}", data + SMUGGLED))
    return out


def assembled(count: int, seed: int = 11) -> list[Case]:
    """*count* seeded requests assembled from the corpus' own pieces: a request line
    (method, spacing, target, version), up to five field lines, a body, mixed line
    ends, often a pipelined request after it, cut into up to four parts."""
    rng = random.Random(seed)
    ends = [*ENDINGS.values(), *[b"\r\n"] * 12]
    fields = [*FIELD_LINES, *HOST_HEADERS, *(b"Content-Length: " + v for v in CONTENT_LENGTHS),
              *(b"Transfer-Encoding: " + v for v in TRANSFER_CODINGS),
              *(b"Connection: " + v for v in CONNECTION_VALUES),
              *[b"Expect: 100-continue", b"Upgrade: websocket", b"Host: h"] * 5]
    bodies = [*CHUNKED_BODIES, b"hello", b"", b"abc", b"\r\n"]
    spaces = [*[b" "] * 8, b"  ", b"\t", b""]
    out = []
    for i in range(count):
        data = (rng.choice(METHODS[:20] * 3 + METHODS) + rng.choice(spaces)
                + rng.choice([b"/echo", b"/noread", b"/up", b"/full", *TARGETS]) + rng.choice(spaces)
                + rng.choice(VERSIONS[:2] * 8 + VERSIONS) + rng.choice(ends))
        for _ in range(rng.randint(0, 5)):
            data += rng.choice(fields) + rng.choice(ends)
        data += rng.choice(ends) + rng.choice(bodies)
        if rng.random() < 0.7:
            data += rng.choice([*GOOD, SMUGGLED])
        cuts = sorted({rng.randrange(1, len(data)) for _ in range(rng.choice([0, 0, 1, 2, 3]))})
        parts = tuple(data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True))
        out.append(Case(f"assembled #{i} {data[:80]!r}", parts, rng.random() < 0.3))
    return out
