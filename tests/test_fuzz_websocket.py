"""Property-based fuzzing of WebSocket frames with hypothesis, against a live daemon.

One daemon (a WebSocket echo on ``/ws``) runs in a background thread with its
own ``trio.run``; each hypothesis example is a fresh ``trio.run`` in the test's
thread.  After a valid handshake (sometimes offering permessage-deflate) the
example sends random and mutated frames, in random pieces, then shuts its
sending side.  Properties, per example:

* the connection ends (the daemon closes it) within a bound;
* everything after the ``101`` head is a sequence of well-formed server
  frames (unmasked, known opcodes, control frames short and unfragmented);
  a close frame, if any, is the last frame and carries a valid code and, when
  the daemon chose it, a fixed short reason;
* a second client right after gets its message echoed;
* nothing escapes into the daemon: no ERROR is logged on ``mhd2``.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import trio
from _harness import BOUND, Harness, daemon_thread, send_in_pieces
from conftest import read_until_close, text_response
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_websocket import _handshake

import mhd2
from mhd2.websocket import WebSocket, action_websocket

#: Close reasons the daemon itself may send (RFC 6455 §7.4.1 codes, fixed texts).
DAEMON_REASONS = {"", "going away", "protocol error", "unsupported data", "invalid UTF-8",
                  "policy violation", "message too big", "extension required",
                  "internal error"}

FUZZ_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- the daemon in a thread ---------------------------------------------------------------


async def _echo(ws: WebSocket) -> None:
    while True:
        await ws.send(await ws.receive())


def _app(request: mhd2.Request) -> mhd2.Action:
    if request.path == "/ws":
        return action_websocket(request, _echo, max_message_size=4096, max_fragments=64)
    return text_response(request)


# -- frames ---------------------------------------------------------------------------------


def _frame(fin: bool, rsv: int, opcode: int, payload: bytes, masked: bool, wide: int) -> bytes:
    """A client frame; *wide* forces the 16-bit (1) or 64-bit (2) length form."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    mask_bit = 0x80 if masked else 0
    if n < 126 and not wide:
        head = bytes((first, mask_bit | n))
    elif n < 65536 and wide != 2:
        head = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + body


_TEXT = st.text(max_size=40).map(lambda t: t.encode("utf-8"))
_PAYLOAD = st.one_of(_TEXT, st.binary(max_size=200),
                     st.builds(lambda c, r: struct.pack("!H", c) + r,
                               st.integers(0, 65535), _TEXT))
_FRAME = st.builds(
    _frame,
    fin=st.booleans(),
    rsv=st.sampled_from([0, 0, 0, 0, 1, 2, 4, 7]),
    opcode=st.sampled_from([0, 1, 1, 2, 2, 8, 9, 10, 3, 7, 11, 15]),
    payload=_PAYLOAD,
    masked=st.sampled_from([True, True, True, True, False]),
    wide=st.sampled_from([0, 0, 0, 1, 2]),
)


@st.composite
def _stream(draw: st.DrawFn) -> bytes:
    data = b"".join(draw(st.lists(_FRAME, max_size=8)))
    if data and draw(st.booleans()):
        # Mutate: flip, drop or insert a few bytes.
        buf = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            op = draw(st.sampled_from(["flip", "drop", "insert"]))
            pos = draw(st.integers(0, max(0, len(buf) - 1)))
            if op == "flip" and buf:
                buf[pos] ^= 1 << draw(st.integers(0, 7))
            elif op == "drop" and buf:
                del buf[pos]
            else:
                buf.insert(pos, draw(st.integers(0, 255)))
        data = bytes(buf)
    return data


# -- checking what came back -----------------------------------------------------------------


def _check_server_frames(data: bytes, deflate: bool) -> None:
    """Walk the server's frames: each well-formed; a close frame comes last."""
    pos = 0
    while pos < len(data):
        assert len(data) - pos >= 2, f"truncated frame head at {pos}: {data[pos:pos + 20]!r}"
        first, second = data[pos], data[pos + 1]
        opcode, rsv = first & 0x0F, (first >> 4) & 0x7
        assert not second & 0x80, "a server frame is never masked"
        assert opcode in (0, 1, 2, 8, 9, 10), opcode
        assert rsv == 0 or (deflate and rsv == 4 and opcode in (0, 1, 2)), rsv
        n, pos = second & 0x7F, pos + 2
        if n == 126:
            (n,), pos = struct.unpack_from("!H", data, pos), pos + 2
        elif n == 127:
            (n,), pos = struct.unpack_from("!Q", data, pos), pos + 8
        assert pos + n <= len(data), "truncated payload"
        payload = data[pos:pos + n]
        pos += n
        if opcode >= 8:
            assert first & 0x80 and n <= 125, "control frames are short and unfragmented"
        if opcode == 8:
            assert pos == len(data), "nothing follows a close frame"
            if n:
                assert n >= 2
                code = struct.unpack_from("!H", payload)[0]
                assert code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011) or (
                    3000 <= code <= 4999), code
                reason = payload[2:].decode("utf-8")
                if code != 1000 and code < 3000:
                    assert reason in DAEMON_REASONS, reason


async def _one_example(port: int, offer: str, data: bytes, cuts: tuple[int, ...]) -> tuple[bytes, bytes]:
    with trio.fail_after(BOUND):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(_handshake(extra=offer))
            await send_in_pieces(stream, data, cuts, half_close=True)
            answer = await read_until_close(stream)
    with trio.fail_after(BOUND):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(_handshake() + _frame(True, 0, 1, b"still here", True, 0))
            good = b""
            while not good.endswith(b"\x81\x0astill here"):
                chunk = await stream.receive_some(65536)
                assert chunk, good
                good += chunk
    return answer, good


def check_example(harness: Harness, offer: str, data: bytes, cuts: tuple[int, ...]) -> None:
    harness.check_alive()
    answer, good = trio.run(_one_example, harness.port, offer, data, cuts)
    assert answer.startswith(b"HTTP/1.1 101 "), answer[:300]
    head, _, frames = answer.partition(b"\r\n\r\n")
    _check_server_frames(frames, deflate=b"permessage-deflate" in head)
    assert good.startswith(b"HTTP/1.1 101 ")
    errors = harness.collector.messages()
    assert not errors, errors
    harness.check_alive()


_OFFER = st.sampled_from([
    "", "", "Sec-WebSocket-Extensions: permessage-deflate\r\n",
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
])


def test_fuzz_websocket_frames() -> None:
    with daemon_thread(_app, name="mhd2-ws-fuzz-daemon") as harness:

        @FUZZ_SETTINGS
        @given(offer=_OFFER, data=_stream(),
               cuts=st.lists(st.integers(0, 2000), max_size=3).map(tuple))
        def run(offer: str, data: bytes, cuts: tuple[int, ...]) -> None:
            check_example(harness, offer, data, cuts)

        run()


def test_fuzz_harness_sees_a_daemon_reply() -> None:
    """The properties are not vacuous: a valid text frame is echoed, a bad one closed."""
    seen: dict[str, Any] = {}
    with daemon_thread(_app, name="mhd2-ws-fuzz-daemon") as harness:
        answer, _ = trio.run(_one_example, harness.port, "",
                             _frame(True, 0, 1, b"hi", True, 0) + _frame(True, 0, 3, b"", True, 0),
                             ())
        seen["answer"] = answer.partition(b"\r\n\r\n")[2]
    assert seen["answer"] == b"\x81\x02hi" + b"\x88\x10\x03\xeaprotocol error"
