"""Property-based fuzzing of the request parser with hypothesis.

One daemon per test function runs in a background thread (its own
``trio.run``); each hypothesis example is a fresh ``trio.run`` in the test's
thread that throws bytes at it over a raw socket.  Properties, per example:

* the connection ends (a response and/or a close) within a bound;
* whatever comes back starts as an HTTP/1.1 response with a sane status;
* a good request on a fresh connection right after gets ``200``;
* nothing escapes into the daemon: no ``internal error`` is logged on ``mhd2``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import trio
from _harness import BOUND, Harness, daemon_thread, send_in_pieces
from conftest import read_until_close, text_response
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mhd2

GOOD = b"GET /good HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
#: Statuses the daemon may legitimately answer random input with.
SANE = {200, 400, 408, 413, 414, 431, 501, 505}
_STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r\n]*\r\n")

FUZZ_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- the daemon in a thread, and what it logs -------------------------------------------


def _app(request: mhd2.Request) -> mhd2.Action:
    return text_response(request, f"{request.method} {request.path}".encode("utf-8", "replace"))


# -- one example -------------------------------------------------------------------------


async def _send_and_read(
    port: int, data: bytes, *, half_close: bool, cuts: tuple[int, ...] = ()
) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await send_in_pieces(stream, data, cuts, half_close=half_close)
        return await read_until_close(stream)


async def _one_example(port: int, data: bytes, cuts: tuple[int, ...]) -> tuple[bytes, bytes]:
    with trio.fail_after(BOUND):
        answer = await _send_and_read(port, data, half_close=True, cuts=cuts)
    with trio.fail_after(BOUND):
        good = await _send_and_read(port, GOOD, half_close=False)
    return answer, good


def check_example(harness: Harness, data: bytes, cuts: tuple[int, ...] = ()) -> None:
    """Send *data* (in pieces split at *cuts*) and check the properties."""
    harness.check_alive()
    answer, good = trio.run(_one_example, harness.port, data, cuts)
    if answer and data.startswith(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"):
        # The connection preface makes it HTTP/2 (h2c with prior knowledge): the
        # answer is frames, the first the server's SETTINGS (RFC 9113 §3.4).
        assert answer[3] == 0x04, answer[:300]
    elif answer:
        match = _STATUS_LINE.match(answer)
        assert match is not None, answer[:300]
        assert int(match.group(1)) in SANE, answer[:300]
    assert good.startswith(b"HTTP/1.1 200 "), good[:300]
    assert good.endswith(b"\r\n\r\nGET /good"), good[-300:]
    errors = harness.collector.internal_errors()
    assert not errors, errors
    harness.check_alive()


# -- strategies --------------------------------------------------------------------------

VALID = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /a/b?c=d&e=f HTTP/1.1\r\nHost: example.com:80\r\nAccept: */*\r\nCookie: a=b; c=d\r\n\r\n",
    b"HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: v\r\n\r\n",
    b"GET /10 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"PUT /u HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
]

_METHODS = st.sampled_from(
    [
        b"GET",
        b"POST",
        b"HEAD",
        b"OPTIONS",
        b"CONNECT",
        b"TRACE",
        b"PRI",
        b"get",
        b"G\x00T",
        b"",
        b"M" * 300,
        b"GET GET",
    ]
)
_VERSIONS = st.sampled_from(
    [
        b"HTTP/1.1",
        b"HTTP/1.0",
        b"HTTP/0.9",
        b"HTTP/2.0",
        b"HTTP/3.0",
        b"HTTP/9.9",
        b"HTTP/1.10",
        b"HTTP/11",
        b"http/1.1",
        b"HTTP/1.1 ",
        b"",
        b"HTTP/\xff.1",
    ]
)
_NUMBERS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(lambda n: str(n).encode()),
    st.integers(min_value=1, max_value=12_000).map(lambda n: b"9" * n),
    st.sampled_from([b"0x10", b"1e3", b"+5", b" 5", b"5 5", b"5,5", b"ffffffffffffffff"]),
)
_SEPARATORS = st.sampled_from(
    [b"\r\n", b"\n", b"\r", b"\r\n\r\n", b"\x00", b" ", b"\t", b":", b";", b",", b"\r\n "]
)


@st.composite
def mutated_request(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        op = draw(
            st.sampled_from(
                [
                    "insert",
                    "delete",
                    "replace",
                    "dup-header",
                    "crlf",
                    "number",
                    "method",
                    "version",
                    "header",
                ]
            )
        )
        pos = draw(st.integers(min_value=0, max_value=len(data)))
        if op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=20))
        elif op == "delete":
            data[pos : pos + draw(st.integers(min_value=1, max_value=20))] = b""
        elif op == "replace" and data:
            data[min(pos, len(data) - 1)] = draw(st.integers(min_value=0, max_value=255))
        elif op == "dup-header":
            lines = bytes(data).split(b"\r\n")
            if len(lines) > 2:
                i = draw(st.integers(min_value=1, max_value=len(lines) - 2))
                lines.insert(i, lines[i])
                data = bytearray(b"\r\n".join(lines))
        elif op == "crlf":
            data[pos:pos] = draw(_SEPARATORS)
        elif op == "number":
            digits = re.search(rb"\d+", bytes(data[pos:]))
            if digits is not None:
                start, end = pos + digits.start(), pos + digits.end()
                data[start:end] = draw(_NUMBERS)
        elif op == "method":
            space = bytes(data).find(b" ")
            if space >= 0:
                data[:space] = draw(_METHODS)
        elif op == "version":
            line_end = bytes(data).find(b"\r\n")
            line_start = bytes(data).rfind(b" ", 0, line_end) + 1 if line_end > 0 else -1
            if line_start > 0:
                data[line_start:line_end] = draw(_VERSIONS)
        elif op == "header":
            name = draw(
                st.sampled_from(
                    [
                        b"Content-Length",
                        b"Transfer-Encoding",
                        b"Host",
                        b"Connection",
                        b"Expect",
                        b"Upgrade",
                        b"X-Fuzz",
                    ]
                )
            )
            value = draw(
                st.one_of(
                    _NUMBERS,
                    st.binary(max_size=30),
                    st.sampled_from(
                        [
                            b"chunked",
                            b"gzip",
                            b"close",
                            b"identity",
                            b"chunked, chunked",
                            b"100-continue",
                        ]
                    ),
                )
            )
            head_end = bytes(data).find(b"\r\n")
            if head_end >= 0:
                data[head_end + 2 : head_end + 2] = name + b": " + value + b"\r\n"
    return bytes(data)


# -- the tests ---------------------------------------------------------------------------

OPTIONS: dict[str, Any] = {"timeout": 2.0, "max_header_size": 4096}


def test_fuzz_random_bytes() -> None:
    with daemon_thread(_app, **OPTIONS) as harness:

        @settings(FUZZ_SETTINGS, max_examples=500)
        @given(
            st.one_of(
                st.binary(max_size=600),
                st.binary(max_size=300).map(lambda b: b"GET / HTTP/1.1\r\n" + b),
            )
        )
        def check(data: bytes) -> None:
            check_example(harness, data)

        check()


def test_fuzz_mutated_requests() -> None:
    with daemon_thread(_app, **OPTIONS) as harness:

        @settings(FUZZ_SETTINGS, max_examples=800)
        @given(mutated_request())
        def check(data: bytes) -> None:
            check_example(harness, data)

        check()


def test_fuzz_mutated_requests_in_pieces() -> None:
    """The same inputs arriving in several writes exercise incremental parsing."""
    with daemon_thread(_app, **OPTIONS) as harness:

        @settings(FUZZ_SETTINGS, max_examples=300)
        @given(mutated_request(), st.lists(st.integers(min_value=0, max_value=10_000), max_size=4))
        def check(data: bytes, cuts: list[int]) -> None:
            check_example(harness, data, tuple(cuts))

        check()


def test_fuzz_mutated_requests_strict() -> None:
    with daemon_thread(_app, **OPTIONS, strict_level=2) as harness:

        @settings(FUZZ_SETTINGS, max_examples=300)
        @given(mutated_request())
        def check(data: bytes) -> None:
            check_example(harness, data)

        check()


def test_fuzz_mutated_requests_lenient() -> None:
    with daemon_thread(_app, **OPTIONS, strict_level=-3) as harness:

        @settings(FUZZ_SETTINGS, max_examples=300)
        @given(mutated_request())
        def check(data: bytes) -> None:
            check_example(harness, data)

        check()


# -- chunked request bodies ---------------------------------------------------------------


def _upload_app(request: mhd2.Request) -> mhd2.Action:
    """Reads every body (full upload) and answers with its length."""
    if request.upload_size == 0:
        return _app(request)

    def done(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        return mhd2.upload_action_from_response(
            request, mhd2.Response.from_buffer_copy(200, b"len=%d" % len(data)))

    return mhd2.action_process_upload_full(request, 65536, done)


@st.composite
def chunked_request(draw: st.DrawFn) -> tuple[bytes, int | None]:
    """A chunked POST, well-formed or mutated, and the body length if well-formed."""
    pieces = draw(st.lists(st.binary(min_size=1, max_size=40), max_size=8))
    body = bytearray()
    for piece in pieces:
        ext = draw(st.sampled_from([b"", b";a=b", b';q="x;y"', b";" + b"e" * 50]))
        body += b"%x%s\r\n%s\r\n" % (len(piece), ext, piece)
    trailers = draw(st.sampled_from([b"", b"X-T: 1\r\n", b"A: 1\r\nB: 2\r\n"]))
    body += b"0\r\n" + trailers + b"\r\n"
    expected: int | None = sum(len(p) for p in pieces)
    mutations = draw(st.lists(st.tuples(
        st.sampled_from(["flip", "drop", "insert", "lf"]),
        st.integers(min_value=0, max_value=10_000),
        st.sampled_from([b"\n", b"\r", b" ", b"\t", b";", b"0", b"f" * 17, b"-1", b"\x00",
                         b"\r\n \r\n", b"\r\n\r\n"]),
    ), max_size=3))
    for kind, where, junk in mutations:
        if not body:
            break
        at = where % len(body)
        if kind == "flip":
            body[at] ^= 0x20
        elif kind == "drop":
            del body[at]
        elif kind == "insert":
            body[at:at] = junk
        else:
            line_end = body.find(b"\r\n", at)
            if line_end >= 0:
                del body[line_end]  # a bare LF where CRLF belongs
        expected = None
    head = b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    return head + bytes(body) + b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", expected


def _check_chunked(harness: Harness, example: tuple[bytes, int | None], cuts: list[int]) -> None:
    data, expected = example
    check_example(harness, data, tuple(cuts))
    if expected is not None:
        answer, _ = trio.run(_one_example, harness.port, data, ())
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
        assert b"\r\n\r\nlen=%d" % expected in answer, answer[:300]
        assert answer.endswith(b"GET /next"), answer[-300:]


@pytest.mark.parametrize("level", [0, 1])
def test_fuzz_chunked_bodies(level: int) -> None:
    """Chunked bodies, well-formed or broken, read by the application: the
    daemon answers sanely, never smuggles, and a well-formed body arrives whole
    with the pipelined request after it served."""
    with daemon_thread(_upload_app, **OPTIONS, strict_level=level) as harness:

        @settings(FUZZ_SETTINGS, max_examples=250)
        @given(chunked_request(), st.lists(st.integers(min_value=0, max_value=2_000), max_size=3))
        def check(example: tuple[bytes, int | None], cuts: list[int]) -> None:
            _check_chunked(harness, example, cuts)

        check()
