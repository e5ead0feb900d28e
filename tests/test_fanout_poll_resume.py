"""Long polls parked on plain HTTP/1 sockets are woken without a trio cancel scope
(``mhd2.http1.watch.Watch``): a resume ends the parked wait with
``trio.lowlevel.notify_closing``; nothing the client sends meanwhile is lost."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
import trio
import trio.testing
from conftest import WAIT
from test_fanout import until

import mhd2
from mhd2.fanout import Hub, action_long_poll


def _poll_request(cursor: str | None = None) -> bytes:
    target = "/poll" if cursor is None else f"/poll?cursor={cursor}"
    return f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


async def _read_answer(stream: trio.SocketStream, got: bytearray) -> tuple[bytes, bytes]:
    """One whole response (Content-Length framed) from *got* + the stream: (head, body)."""
    with trio.fail_after(WAIT):
        while b"\r\n\r\n" not in got:
            got += await stream.receive_some(65536)
        head, _, rest = bytes(got).partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            rest += await stream.receive_some(65536)
        del got[:]
        got += rest[length:]
        return head, rest[:length]


async def test_waking_parked_long_polls_cancels_no_cancel_scope(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cancelled: list[Any] = []
    original = trio.CancelScope.cancel

    def counting_cancel(self: trio.CancelScope, *args: Any, **kwargs: Any) -> None:
        cancelled.append(self)
        original(self, *args, **kwargs)

    count = 20
    async with Hub() as hub:
        topic = hub.topic("news")

        def callback(request: mhd2.Request) -> mhd2.Action:
            return action_long_poll(request, topic, cursor=request.args.get("cursor"),
                                    timeout=WAIT * 6)

        async with mhd2.Daemon(callback, port=0) as daemon:
            streams = [await trio.open_tcp_stream("127.0.0.1", daemon.port)
                       for _ in range(count)]
            for stream in streams:
                await stream.send_all(_poll_request())
            await until(lambda: hub.stats().subscribers["long_poll"] == count)
            await trio.testing.wait_all_tasks_blocked()
            monkeypatch.setattr(trio.CancelScope, "cancel", counting_cancel)
            try:
                mid = await topic.publish(b"news")
                answers = [await _read_answer(stream, bytearray()) for stream in streams]
            finally:
                monkeypatch.setattr(trio.CancelScope, "cancel", original)
            for head, body in answers:
                assert head.startswith(b"HTTP/1.1 200")
                assert json.loads(body)["cursor"] == mid
            # No wake through a cancel scope (it cost ~25 us each: trio's scope
            # bookkeeping and a Cancelled through the stack).
            assert len(cancelled) < count // 2, len(cancelled)
            for stream in streams:
                await stream.aclose()


async def test_a_request_sent_behind_a_parked_poll_is_answered_after_it() -> None:
    # Bytes that arrive while a poll is parked are read and kept by the watch; the
    # resume must not lose them: the pipelined second poll is served next.
    async with Hub() as hub:
        topic = hub.topic("news")

        def callback(request: mhd2.Request) -> mhd2.Action:
            return action_long_poll(request, topic, cursor=request.args.get("cursor"),
                                    timeout=WAIT * 6)

        async with mhd2.Daemon(callback, port=0) as daemon:
            first = await topic.publish(b"one")
            stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
            await stream.send_all(_poll_request(first))
            await until(lambda: hub.stats().subscribers["long_poll"] == 1)
            await trio.testing.wait_all_tasks_blocked()
            await stream.send_all(_poll_request(first))  # pipelined, while parked
            await trio.testing.wait_all_tasks_blocked()
            second = await topic.publish(b"two")
            got = bytearray()
            for _ in range(2):
                head, body = await _read_answer(stream, got)
                assert head.startswith(b"HTTP/1.1 200")
                assert [m["id"] for m in json.loads(body)["messages"]] == [second]
            await stream.aclose()


async def test_a_client_gone_while_its_poll_is_parked_is_released() -> None:
    async with Hub() as hub:
        topic = hub.topic("news")

        def callback(request: mhd2.Request) -> mhd2.Action:
            return action_long_poll(request, topic, cursor=None, timeout=WAIT * 6)

        async with mhd2.Daemon(callback, port=0) as daemon:
            sock = socket.create_connection(("127.0.0.1", daemon.port))
            sock.sendall(_poll_request())
            await until(lambda: hub.stats().subscribers["long_poll"] == 1)
            sock.close()
            await until(lambda: hub.stats().subscribers["long_poll"] == 0)
