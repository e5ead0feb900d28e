"""WebSocketStream (the libmicrohttpd_ws codec) and the handshake helpers, against RFC 6455."""

from __future__ import annotations

import pytest

from mhd2.websocket import (
    Fragmentation,
    StreamFlags,
    Validity,
    WebSocketCodecError,
    WebSocketStatus,
    WebSocketStream,
    check_connection_header,
    check_http_version,
    check_upgrade_header,
    check_version_header,
    create_accept_header,
)

S = WebSocketStatus
# RFC 6455 §5.7 examples.
HELLO_UNMASKED = bytes.fromhex("810548656c6c6f")
HELLO_MASKED = bytes.fromhex("818537fa213d7f9f4d5158")
FRAGMENTED = bytes.fromhex("010348656c") + bytes.fromhex("80026c6f")
PING_UNMASKED = bytes.fromhex("890548656c6c6f")
PONG_MASKED = bytes.fromhex("8a8537fa213d7f9f4d5158")


def decode_all(ws: WebSocketStream, data: bytes) -> list[tuple[WebSocketStatus, bytes | None]]:
    out: list[tuple[WebSocketStatus, bytes | None]] = []
    while data:
        status, payload, used = ws.decode(data)
        data = data[used:]
        if status != S.OK:
            out.append((status, payload))
        if status < 0:
            break
    return out


def test_handshake_helpers_rfc_example() -> None:
    # RFC 6455 §1.3
    assert create_accept_header("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    for bad in (None, "", "abc", "dGhlIHNhbXBsZSBub25j", "not base64 at all!!!!!!!"):
        with pytest.raises(ValueError):
            create_accept_header(bad)
    assert check_http_version("HTTP/1.1") and check_http_version("HTTP/2.0")
    assert not check_http_version("HTTP/1.0") and not check_http_version(None)
    assert check_connection_header("keep-alive, Upgrade") and not check_connection_header("close")
    assert not check_connection_header(None)
    assert check_upgrade_header("WebSocket") and check_upgrade_header("h2c, websocket")
    assert not check_upgrade_header("h2c") and not check_upgrade_header(None)
    assert check_version_header("13") and not check_version_header("8")
    assert not check_version_header(None)


def test_decode_rfc_examples() -> None:
    server = WebSocketStream()
    assert decode_all(server, HELLO_MASKED) == [(S.TEXT_FRAME, b"Hello")]
    assert decode_all(server, PONG_MASKED) == [(S.PONG_FRAME, b"Hello")]
    client = WebSocketStream(flags=StreamFlags.CLIENT)
    assert decode_all(client, HELLO_UNMASKED + PING_UNMASKED) == [
        (S.TEXT_FRAME, b"Hello"), (S.PING_FRAME, b"Hello")]
    assert decode_all(client, FRAGMENTED) == [(S.TEXT_FRAME, b"Hello")]  # joined
    big = bytes(range(256))
    assert decode_all(client, b"\x82\x7e\x01\x00" + big) == [(S.BINARY_FRAME, big)]
    huge = b"\x07" * 65536
    frame = b"\x82\x7f" + (65536).to_bytes(8, "big") + huge
    # byte by byte: OK (need more) until the frame completes
    statuses = [client.decode(frame[i:i + 1])[0] for i in range(len(frame))]
    assert statuses[:-1] == [S.OK] * (len(frame) - 1) and statuses[-1] == S.BINARY_FRAME


def test_decode_fragments_on_request_cut_at_whole_utf8_sequences() -> None:
    ws = WebSocketStream(flags=StreamFlags.CLIENT | StreamFlags.WANT_FRAGMENTS)
    assert decode_all(ws, FRAGMENTED) == [(S.TEXT_FIRST_FRAGMENT, b"Hel"),
                                          (S.TEXT_LAST_FRAGMENT, b"lo")]
    euro = "€".encode()  # 3 bytes, split over fragments
    frames = (b"\x01\x02a" + euro[:1]) + (b"\x00\x01" + euro[1:2]) + (b"\x80\x02" + euro[2:] + b"b")
    assert decode_all(ws, frames) == [(S.TEXT_FIRST_FRAGMENT, b"a"),
                                      (S.TEXT_NEXT_FRAGMENT, b""),
                                      (S.TEXT_LAST_FRAGMENT, euro + b"b")]
    bins = b"\x02\x01x\x00\x01y\x80\x01z"
    assert decode_all(ws, bins) == [(S.BINARY_FIRST_FRAGMENT, b"x"), (S.BINARY_NEXT_FRAGMENT, b"y"),
                                    (S.BINARY_LAST_FRAGMENT, b"z")]
    # a control frame between fragments
    mixed = b"\x01\x01a" + b"\x89\x00" + b"\x80\x01b"
    assert decode_all(ws, mixed) == [(S.TEXT_FIRST_FRAGMENT, b"a"), (S.PING_FRAME, b""),
                                     (S.TEXT_LAST_FRAGMENT, b"b")]


@pytest.mark.parametrize(("frame", "status"), [
    (HELLO_UNMASKED, S.PROTOCOL_ERROR),               # a server needs masked frames
    (b"\xc1\x80\0\0\0\0", S.PROTOCOL_ERROR),          # RSV1 without an extension
    (b"\x83\x80\0\0\0\0", S.PROTOCOL_ERROR),          # reserved opcode
    (b"\x09\x80\0\0\0\0", S.PROTOCOL_ERROR),          # fragmented ping
    (b"\x89\xfe\x00\x7e" + b"\0" * 4 + b"\0" * 126, S.PROTOCOL_ERROR),  # control > 125
    (b"\x80\x80\0\0\0\0", S.PROTOCOL_ERROR),          # continuation without a start
    (b"\x01\x80\0\0\0\0\x01\x80\0\0\0\0", S.PROTOCOL_ERROR),  # new message inside one
    (b"\x81\x82\0\0\0\0\xc3\x28", S.UTF8_ENCODING_ERROR),
    (b"\x88\x81\0\0\0\0\x03", S.PROTOCOL_ERROR),       # close payload of 1 byte
    (b"\x88\x82\0\0\0\0\x03\xe4", S.PROTOCOL_ERROR),   # close code 996
    (b"\x88\x84\0\0\0\0\x03\xe8\xc3\x28", S.UTF8_ENCODING_ERROR),
])
def test_decode_errors_invalidate_the_stream(frame: bytes, status: WebSocketStatus) -> None:
    ws = WebSocketStream(flags=StreamFlags.GENERATE_CLOSE_FRAMES_ON_ERROR)
    result = decode_all(ws, frame)
    assert result[-1][0] == status
    close = result[-1][1]
    assert close is not None and close[0] == 0x88  # the close frame to send
    code = int.from_bytes(close[2:4], "big")
    assert code == (1007 if status == S.UTF8_ENCODING_ERROR else 1002)
    assert ws.is_valid() is Validity.INVALID
    assert ws.decode(b"\x81\x80\0\0\0\0")[0] == S.STREAM_BROKEN


def test_max_payload_size_and_close_validity() -> None:
    ws = WebSocketStream(max_payload_size=4)
    assert decode_all(ws, b"\x81\x84\0\0\0\0abcd") == [(S.TEXT_FRAME, b"abcd")]
    # a message of two fragments, 3 + 3 > 4
    status, payload, _ = ws.decode(b"\x01\x83\0\0\0\0abc\x80\x83\0\0\0\0def")
    assert status == S.MAXIMUM_SIZE_EXCEEDED and payload is None
    assert ws.is_valid() is Validity.INVALID

    ws = WebSocketStream()
    close = b"\x88\x85\0\0\0\0\x03\xe8bye"
    assert decode_all(ws, close) == [(S.CLOSE_FRAME, b"\x03\xe8bye")]
    assert WebSocketStream.split_close_reason(b"\x03\xe8bye") == (1000, "bye")
    assert WebSocketStream.split_close_reason(b"") == (0, "")
    assert ws.is_valid() is Validity.ONLY_VALID_FOR_CONTROL_FRAMES
    assert decode_all(ws, b"\x89\x80\0\0\0\0") == [(S.PING_FRAME, b"")]
    assert decode_all(ws, b"\x81\x80\0\0\0\0")[0][0] == S.PROTOCOL_ERROR


def test_encode_rfc_examples_and_fragmentation() -> None:
    server = WebSocketStream()
    assert server.encode_text("Hello") == HELLO_UNMASKED
    assert server.encode_ping(b"Hello") == PING_UNMASKED
    assert server.encode_text("Hel", Fragmentation.FIRST) + server.encode_text(
        "lo", Fragmentation.LAST) == FRAGMENTED
    assert server.encode_binary(bytes(range(256)))[:4] == b"\x82\x7e\x01\x00"
    assert server.encode_binary(b"\0" * 65536)[:10] == b"\x82\x7f" + (65536).to_bytes(8, "big")
    assert server.encode_close(1000, "bye") == b"\x88\x05\x03\xe8bye"
    assert server.encode_close() == b"\x88\x00"
    assert server.encode_pong(b"x") == b"\x8a\x01x"
    # UTF-8 may be split across encoded fragments, but must be valid overall.
    euro = "€".encode()
    server.encode_text(euro[:1], Fragmentation.FIRST)
    server.encode_text(euro[1:], Fragmentation.LAST)
    with pytest.raises(WebSocketCodecError) as info:
        server.encode_text(euro[:2])
    assert info.value.status == S.UTF8_ENCODING_ERROR
    with pytest.raises(WebSocketCodecError) as info:
        server.encode_text("x", Fragmentation.FOLLOWING)
    assert info.value.status == S.PARAMETER_ERROR
    with pytest.raises(WebSocketCodecError) as info:
        server.encode_ping(b"x" * 126)
    assert info.value.status == S.MAXIMUM_SIZE_EXCEEDED
    with pytest.raises(WebSocketCodecError):
        server.encode_close(0, "reason without a code")


def test_client_encodes_masked_frames_the_server_decodes() -> None:
    client = WebSocketStream(flags=StreamFlags.CLIENT)
    server = WebSocketStream()
    frame = client.encode_text("Hello")
    assert frame[1] & 0x80 and frame != HELLO_UNMASKED
    assert decode_all(server, frame + client.encode_binary(b"\x00\xff" * 1000)) == [
        (S.TEXT_FRAME, b"Hello"), (S.BINARY_FRAME, b"\x00\xff" * 1000)]
