"""mhd2.fanout without sockets: wire encodings, ids and cursors, history, API misuse."""

from __future__ import annotations

import base64
import json

import pytest

import mhd2
from mhd2.fanout import Hub, MemoryBackend, Message
from mhd2.fanout.encode import json_item, sse_frame, ws_frame


def test_sse_frame_splits_every_kind_of_line_break() -> None:
    frame = sse_frame("0-1", "chat", b"a\r\nb\rc\nd")
    assert frame == b"id: 0-1\nevent: chat\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
    assert sse_frame("0-2", None, b"") == b"id: 0-2\ndata: \n\n"


def test_binary_data_is_base64_in_every_kind() -> None:
    data = b"\xff\x00\xfe"
    b64 = base64.b64encode(data).decode()
    assert json.loads(json_item("i", None, data)) == {
        "id": "i", "event": None, "data": b64, "encoding": "base64"}
    assert sse_frame("i", None, data) == f"id: i\ndata: {b64}\n\n".encode()
    frame = ws_frame("i", None, data)
    assert frame[0] == 0x82  # FIN + binary
    assert json.loads(frame[2:])["encoding"] == "base64"


@pytest.mark.parametrize("size", [0, 125 - 40, 126, 65535, 70000])
def test_ws_frame_length_encodings(size: int) -> None:
    text = "x" * size
    frame = ws_frame("i", "e", text.encode())
    payload = json_item("i", "e", text.encode())
    assert frame[0] == 0x81
    if len(payload) < 126:
        assert frame[1] == len(payload) and frame[2:] == payload
    elif len(payload) < 65536:
        assert frame[1] == 126 and int.from_bytes(frame[2:4], "big") == len(payload)
        assert frame[4:] == payload
    else:
        assert frame[1] == 127 and int.from_bytes(frame[2:10], "big") == len(payload)
        assert frame[10:] == payload


def test_message_encodes_once_per_kind() -> None:
    message = Message("i", None, b"hello")
    assert message.sse() is message.sse()
    assert message.ws() is message.ws()
    assert message.json() is message.json()
    assert message.text == "hello"


def test_memory_ids_sort_and_do_not_repeat_after_a_restart() -> None:
    first, second = MemoryBackend(start_us=1_000), MemoryBackend(start_us=2_000)
    assert first.origin() < second.origin()
    with pytest.raises(ValueError, match="cursor"):
        first.parse_cursor("12")
    with pytest.raises(ValueError):
        first.parse_cursor("0" * 14 + "-" + "0" * 9 + "G")


async def test_publish_since_history_and_truncation() -> None:
    async with Hub() as hub:
        topic = hub.topic("t", history=3)
        assert hub.topic("t", history=3) is topic
        start = topic.last_id
        ids = [await topic.publish(f"m{i}") for i in range(5)]
        assert ids == sorted(ids) and len(set(ids)) == 5
        assert topic.since(None) == []
        assert [m.data for m in topic.since(ids[2])] == [b"m3", b"m4"]
        assert not topic.since(ids[2]).truncated
        assert topic.since(ids[4]) == [] and not topic.since(ids[4]).truncated
        old = topic.since(start)
        assert old.truncated and [m.id for m in old] == ids[2:]
        assert topic.since(ids[1]).truncated is False  # ids[2] is the oldest kept
        older = topic.since(ids[0])
        assert older.truncated and len(older) == 3
        # A cursor from before this process (an older start time) is truncated too.
        assert topic.since(MemoryBackend(start_us=1).origin()).truncated
        with pytest.raises(ValueError):
            topic.since("not a cursor")


async def test_misuse_raises_usage_error_with_a_sentence() -> None:
    hub = Hub(max_message_size=10)
    topic = hub.topic("t")
    with pytest.raises(mhd2.UsageError, match="running hub"):
        await topic.publish(b"x")
    async with hub:
        with pytest.raises(mhd2.UsageError, match="max_message_size"):
            await topic.publish(b"x" * 11)
        await topic.publish(b"x" * 10)
        with pytest.raises(mhd2.UsageError, match="event"):
            await topic.publish(b"x", event="two\nlines")
        with pytest.raises(mhd2.UsageError, match="bytes or str"):
            await topic.publish(42)  # type: ignore[arg-type]
        with pytest.raises(mhd2.UsageError, match="history"):
            hub.topic("t", history=5)
        with pytest.raises(mhd2.UsageError, match="already running"):
            await hub.run()
    for bad in ({"max_pending_bytes": 0}, {"max_subscribers": -1}, {"retry_after": 1.5}):
        with pytest.raises(mhd2.UsageError):
            Hub(**bad)
    with pytest.raises(mhd2.UsageError, match="topic name"):
        Hub().topic("")


async def test_stats_count_published_messages() -> None:
    async with Hub() as hub:
        topic = hub.topic("t")
        await topic.publish(b"a")
        await topic.publish(b"b")
        stats = hub.stats()
    assert stats.published == 2 and stats.deliveries == 0 and stats.drops == 0
    assert stats.subscribers == {"long_poll": 0, "sse": 0, "websocket": 0}
    assert stats.redis_reconnects == 0
