"""mhd2.fanout without sockets: wire encodings, ids and cursors, history, API misuse."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import trio
from conftest import settled

import mhd2
from mhd2.fanout import Backend, Feed, Hub, MemoryBackend, Message, Topic
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

        def elsewhere() -> None:
            # Another thread with its own trio run must not touch the hub.
            trio.run(topic.publish, b"x")

        with pytest.raises(mhd2.UsageError, match="hub's trio run"):
            await trio.to_thread.run_sync(elsewhere)
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


class StreamLikeBackend(Backend):
    """A backend shaped like Redis Streams: ids "ms-seq" that do not sort as
    strings, a store outside the topic, and a reader task that feeds the hub
    later (as XREAD does), in order."""

    ahead_is_lag = True

    def __init__(self, stored: list[tuple[str, bytes]]) -> None:
        self.stored = stored
        self.send, self.receive = trio.open_memory_channel[tuple[Any, str, bytes]](100)

    def key(self, message_id: str) -> Any:
        ms, seq = message_id.split("-")
        return (int(ms), int(seq))

    def parse_cursor(self, text: str) -> str:
        ms, _, seq = text.partition("-")
        if not (ms.isdigit() and seq.isdigit()):
            raise ValueError("the cursor must be a stream id like 1700000000000-0")
        return text

    def origin(self) -> str:
        return "0-0"

    def follow(self, feed: Feed, topic: Topic) -> None:
        # Backfill what the store holds beyond the history (XREVRANGE COUNT history).
        kept = self.stored[-topic.history:]
        if len(kept) < len(self.stored):
            topic._forget_up_to(self.stored[-len(kept) - 1][0])
        for message_id, data in kept:
            feed.deliver(topic, message_id, None, data)

    async def append(self, feed: Feed, topic: Topic, event: str | None, data: bytes) -> str:
        message_id = f"{len(self.stored) + 1}-0"
        self.stored.append((message_id, data))
        await self.send.send((topic, message_id, data))
        return message_id

    async def run(self, feed: Feed, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for topic, message_id, data in self.receive:
            feed.deliver(topic, message_id, None, data)


async def test_the_backend_interface_with_stream_ids_a_reader_and_a_backfill() -> None:
    stored = [(f"{i}-0", b"old%d" % i) for i in range(1, 13)]  # 1-0 ... 12-0
    backend = StreamLikeBackend(stored)
    async with Hub(backend=backend) as hub:
        topic = hub.topic("t", history=5)  # holds 8-0 ... 12-0
        assert topic.last_id == "12-0"
        assert [m.id for m in topic.since("9-0")] == ["10-0", "11-0", "12-0"]  # not str order
        assert topic.since("9-0").truncated is False
        assert topic.since("7-0").truncated is False  # 8-0 is the oldest kept
        old = topic.since("3-0")
        assert old.truncated and [m.id for m in old] == ["8-0", "9-0", "10-0", "11-0", "12-0"]
        # A cursor ahead of what this process has read is a message on its way.
        ahead = topic.since("13-0")
        assert ahead == [] and not ahead.truncated
        mid = await topic.publish(b"new")
        assert mid == "13-0"
        await settled()  # delivered by the reader task
        assert topic.last_id == mid
        assert [m.data for m in topic.since("12-0")] == [b"new"]
        assert hub.stats().published == 5 + 1


def test_mhd2_fanout_is_reachable_from_import_mhd2_and_loaded_on_first_use() -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, mhd2; assert 'mhd2.fanout' not in sys.modules; "
            "assert 'mhd2.websocket' not in sys.modules; print(mhd2.fanout.Hub.__name__)")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True).stdout
    assert out.strip() == "Hub"


async def test_a_late_backfill_is_history_not_news() -> None:
    backend = StreamLikeBackend([])
    async with Hub(backend=backend) as hub:
        topic = hub.topic("t", history=3)
        waiting = _Joined(topic)  # joined "from the next message" before the backfill
        assert topic._add(waiting)
        topic._backfill([("5-0", None, b"a"), ("6-0", "e", b"bb"), ("7-0", None, b"ccc"),
                         ("8-0", None, b"dddd")], lost_before="4-0")
        assert [m.id for m in topic._retained.messages] == ["6-0", "7-0", "8-0"]
        assert topic.last_id == "8-0" and (waiting.cursor, waiting.key) == ("8-0", (8, 0))
        assert topic._retained.after(waiting.key, 1e9) == ([], False)
        assert topic.since("2-0").truncated and not topic.since("5-0").truncated
        assert [m.data for m in topic.since("6-0")] == [b"ccc", b"dddd"]
        assert hub.stats().published == 0  # not news
        backend.stored.extend((f"{i}-0", b"") for i in range(1, 9))  # the store had them
        mid = await topic.publish(b"new")
        assert mid == "9-0"
        await settled()
        assert topic.last_id == mid
        assert [m.id for m in topic.since(waiting.cursor)] == [mid]
        assert topic._retained.total - waiting.mark == len(b"new")


class _Joined(mhd2.fanout.topic.Subscriber):
    kind = "sse"

    def __init__(self, topic: Topic) -> None:
        super().__init__(topic, None, topic.last_id, topic._retained.tip_key,  # type: ignore[arg-type]
                         topic._retained.total)

    def wake(self) -> None:
        pass


async def test_a_cancelled_upgraded_receive_keeps_the_bytes_that_came_with_the_head() -> None:
    # A WebSocket subscriber's wait to read is cancelled to wake it: bytes the
    # client sent right behind its handshake must survive that.
    import trio.testing

    from mhd2.transport import open_transport
    from mhd2.upgrade import UpgradeHandle

    client, server = trio.testing.memory_stream_pair()
    urh = UpgradeHandle(open_transport(server, None), b"frame bytes", None)  # type: ignore[arg-type]
    with trio.CancelScope() as scope:
        scope.cancel()
        await urh.upgraded_recv(100)
    assert scope.cancelled_caught
    with trio.fail_after(5):  # lost bytes would leave it waiting for more
        assert await urh.upgraded_recv(100) == b"frame bytes"
    await client.aclose()
