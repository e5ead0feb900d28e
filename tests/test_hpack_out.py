"""mhd2.http2.hpack_out: the server's HPACK encoding, checked against hpack's decoder
and over real connections (nghttp2, and h2 as a client)."""

from __future__ import annotations

import shutil
import subprocess

import h2.config
import h2.connection
import h2.events
import pytest
import trio
from conftest import text_response
from h2.settings import SettingCodes, Settings
from hpack import Decoder
from hypothesis import given, settings
from hypothesis import strategies as st

import mhd2
from mhd2.http2.hpack_out import CACHED_FIELD_BYTES, StaticEncoder, encode_field, encode_integer

NAMES = st.sampled_from([b":status", b"content-type", b"date", b"content-length", b"set-cookie",
                         b"x-custom", b"vary", b"www-authenticate", b"x-" + b"n" * 200])
VALUES = st.binary(min_size=0, max_size=300).map(
    lambda b: bytes(c for c in b if 0x20 <= c < 0x7F).strip())


def decode_all(encoder: StaticEncoder, blocks: list[list[tuple[bytes, bytes]]],
               decoder: Decoder | None = None) -> list[list[tuple[bytes, bytes]]]:
    decoder = decoder or Decoder()
    out = [[(n, v) for n, v in decoder.decode(encoder.encode(block), raw=True)]
           for block in blocks]
    # Nothing was ever added to the client's dynamic table.
    assert len(decoder.header_table.dynamic_entries) == 0
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.tuples(NAMES, VALUES), max_size=8), min_size=1, max_size=5))
def test_blocks_decode_to_the_fields_sent(blocks: list[list[tuple[bytes, bytes]]]) -> None:
    assert decode_all(StaticEncoder(), blocks) == blocks


def test_static_matches_are_one_byte_and_names_are_indexed() -> None:
    assert encode_field(b":status", b"200") == b"\x88"  # RFC 7541 Appendix A, index 8
    assert encode_field(b":status", b"404") == b"\x8d"  # index 13
    # content-type is index 31: "0000" + 4-bit prefix 15, then 31 - 15 = 16.
    assert encode_field(b"content-type", b"text/plain") == b"\x0f\x10\x0atext/plain"
    assert encode_field(b"x-a", b"b") == b"\x00\x03x-a\x01b"


@pytest.mark.parametrize(("value", "bits", "expected"), [
    (10, 5, b"\x0a"),            # RFC 7541 C.1.1
    (1337, 5, b"\x1f\x9a\x0a"),  # C.1.2
    (42, 8, b"\x2a"),            # C.1.3
    (127, 7, b"\x7f\x00"),
])
def test_integers_as_rfc_7541_appendix_c(value: int, bits: int, expected: bytes) -> None:
    assert encode_integer(value, bits) == expected


def test_a_table_size_change_is_signalled_at_the_next_block() -> None:
    """RFC 7541 §4.2: after SETTINGS_HEADER_TABLE_SIZE changes, the next block starts
    with a dynamic table size update (nghttp2 refuses the block otherwise)."""
    encoder = StaticEncoder()
    decoder = Decoder()
    encoder.header_table_size = 0
    decoder.max_allowed_table_size = 0
    first = encoder.encode([(b":status", b"200")])
    assert first == b"\x20\x88"
    assert list(decoder.decode(first, raw=True)) == [(b":status", b"200")]
    assert decoder.header_table_size == 0
    # Once only; and no update when the size is set to what it is.
    encoder.header_table_size = 0
    assert encoder.encode([(b":status", b"200")]) == b"\x88"


def test_long_fields_are_encoded_but_not_kept() -> None:
    from mhd2.http2 import hpack_out

    value = b"v" * (CACHED_FIELD_BYTES + 10)
    StaticEncoder().encode([(b"x-long", value)])
    assert (b"x-long", value) not in hpack_out._cache
    StaticEncoder().encode([(b"x-short", b"v")])
    assert (b"x-short", b"v") in hpack_out._cache


async def test_responses_decode_on_a_connection_with_a_zero_table() -> None:
    """A client that allows no dynamic table at all (SETTINGS_HEADER_TABLE_SIZE 0)
    decodes every response; so does one with the default table."""
    def cb(request: mhd2.Request) -> mhd2.Action:
        response = mhd2.Response.from_buffer_copy(200, b"hi " + request.path.encode())
        response.add_header("X-Path", request.path)
        response.add_header("Content-Type", "text/plain")
        return mhd2.action_from_response(request, response)

    async with mhd2.Daemon(cb, host="127.0.0.1", port=0) as daemon:
        for table_size in (0, 4096):
            config = h2.config.H2Configuration(client_side=True, header_encoding=None)
            conn = h2.connection.H2Connection(config)
            conn.local_settings = Settings(client=True, initial_values={
                SettingCodes.HEADER_TABLE_SIZE: table_size})
            conn.initiate_connection()
            stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
            async with stream:
                await stream.send_all(conn.data_to_send())
                got: dict[int, dict[bytes, bytes]] = {}
                ended: set[int] = set()
                for i in range(5):
                    sid = conn.get_next_available_stream_id()
                    conn.send_headers(sid, [(":method", "GET"), (":path", f"/{i}"),
                                            (":scheme", "http"), (":authority", "x")],
                                      end_stream=True)
                    await stream.send_all(conn.data_to_send())
                    with trio.fail_after(5):
                        while sid not in ended:
                            data = await stream.receive_some(65536)
                            assert data, "the server closed the connection"
                            for event in conn.receive_data(data):
                                if isinstance(event, h2.events.ResponseReceived):
                                    got[event.stream_id] = dict(event.headers)
                                elif isinstance(event, h2.events.StreamEnded):
                                    ended.add(event.stream_id)
                            await stream.send_all(conn.data_to_send())
                    assert got[sid][b":status"] == b"200"
                    assert got[sid][b"x-path"] == f"/{i}".encode()
                    assert got[sid][b"content-type"] == b"text/plain"
                assert conn.decoder.header_table_size == table_size
                assert len(conn.decoder.header_table.dynamic_entries) == 0


@pytest.mark.skipif(shutil.which("nghttp") is None, reason="needs nghttp (nghttp2-client)")
async def test_nghttp_decodes_many_responses_on_one_connection() -> None:
    """nghttp2's decoder checks every block of one connection (20 streams)."""
    async with mhd2.Daemon(text_response, host="127.0.0.1", port=0) as daemon:
        url = f"http://127.0.0.1:{daemon.port}/"
        result = await trio.to_thread.run_sync(lambda: subprocess.run(
            ["nghttp", "-nv", *[url + str(i) for i in range(20)]],
            capture_output=True, text=True, timeout=30, check=False))
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.count(":status: 200") == 20
        assert "GOAWAY" not in result.stdout.replace("send GOAWAY", "")
