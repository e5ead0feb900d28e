"""The chat demo (:mod:`mhd2.demo`, on :mod:`mhd2.fanout`), ``python -m mhd2 demo`` and the
``examples/longpoll.py`` / ``examples/sse.py`` programs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from conftest import WAIT, exchange, open_stream, read_response, status_of

import mhd2
from mhd2.demo import MAX_MESSAGE_BYTES, Chat, chat_server

REPO = Path(__file__).resolve().parents[1]
Ended = list[tuple[mhd2.Request, mhd2.RequestEndedCode]]


async def until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


def task_count() -> int:
    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(t) for n in task.child_nurseries for t in n.child_tasks)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return walk(root)


@asynccontextmanager
async def chat(poll_timeout: float = 30.0, ended: Ended | None = None,
               **options: Any) -> AsyncIterator[tuple[mhd2.Daemon, Chat]]:
    if ended is not None:
        options["notify_request_ended"] = lambda r, c: ended.append((r, c))
    async with chat_server(Chat(poll_timeout=poll_timeout), port=0, **options) as served:
        yield served


def waiting(room: Chat) -> int:
    """Clients waiting in the room (polls, event streams, WebSockets)."""
    return sum(room.hub.stats().subscribers.values())


def texts_in(room: Chat) -> list[str]:
    return [json.loads(m.data)["text"] for m in room.topic.since(room.origin)]


def texts_of(payload: dict[str, Any]) -> list[str]:
    """The texts of a ``/poll`` answer's messages."""
    return [json.loads(m["data"])["text"] for m in payload["messages"]]


def request(method: str, target: str, body: bytes = b"", headers: str = "") -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n{headers}"
    if body or method == "POST":
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def body_of(response: bytes) -> bytes:
    return response.split(b"\r\n\r\n", 1)[1]


def header_of(response: bytes, name: bytes) -> str:
    for line in response.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name.lower():
            return value.strip().decode()
    raise KeyError(name)


def send_json(text: str, name: str = "t") -> bytes:
    return request("POST", "/send", json.dumps({"name": name, "text": text}).encode(),
                   "Content-Type: application/json\r\n")


async def sent_id(port: int | mhd2.Daemon, text: str, name: str = "t") -> str:
    answer = await exchange(port, send_json(text, name))
    assert status_of(answer) == 200, answer
    ident: str = json.loads(body_of(answer))["id"]
    return ident


async def open_poll(port: int | mhd2.Daemon, since: str = "") -> trio.abc.HalfCloseableStream:
    stream = await open_stream(port)
    await stream.send_all(request("GET", f"/poll?since={since}"))
    return stream


async def get_json(port: int | mhd2.Daemon, target: str) -> dict[str, Any]:
    answer = await exchange(port, request("GET", target))
    assert status_of(answer) == 200, answer
    payload: dict[str, Any] = json.loads(body_of(answer))
    return payload


# -- the page and the routes ------------------------------------------------------------


async def test_page_and_routes() -> None:
    async with chat() as (daemon, _):
        page = await exchange(daemon.port, request("GET", "/"))
        assert status_of(page) == 200
        assert b"content-type: text/html; charset=utf-8" in page.lower()
        assert b"/poll?since=" in page and b'new EventSource("/events' in page
        assert status_of(await exchange(daemon.port, request("GET", "/nope"))) == 404
        wrong = await exchange(daemon.port, request("GET", "/send"))
        assert status_of(wrong) == 405 and b"allow: post" in wrong.lower()
        assert status_of(await exchange(daemon.port, request("POST", "/poll", b"x"))) == 405


async def test_poll_is_answered_by_a_message_and_times_out_with_204(
        ended: Ended, autojump_clock: trio.testing.MockClock) -> None:
    async with chat(poll_timeout=0.3, ended=ended) as (daemon, room):
        poll = await open_poll(daemon)
        await until(lambda: waiting(room) == 1)
        first = await sent_id(daemon, "hello")
        answer = await read_response(poll, bytearray())
        assert status_of(answer) == 200
        assert b"content-type: application/json" in answer.lower()
        payload = json.loads(body_of(answer))
        assert payload["cursor"] == first and header_of(answer, b"X-Cursor") == first
        [message] = payload["messages"]
        assert message["id"] == first and message["event"] == "message"
        data = json.loads(message["data"])
        assert (data["name"], data["text"]) == ("t", "hello") and data["time"] > 0
        await poll.aclose()
        # Up to date: the poll waits the poll timeout, then 204 with where it is.
        start = trio.current_time()
        poll = await open_poll(daemon, first)
        answer = await read_response(poll, bytearray())
        assert status_of(answer) == 204 and header_of(answer, b"X-Cursor") == first
        assert 0.3 <= trio.current_time() - start < 0.4  # virtual time: the poll timeout
        await poll.aclose()
        # Behind: answered at once with what it missed; no cursor: the whole history.
        second = await sent_id(daemon, "second")
        behind = await get_json(daemon, f"/poll?since={first}")
        assert texts_of(behind) == ["second"] and behind["cursor"] == second
        assert texts_of(await get_json(daemon, "/poll")) == ["hello", "second"]
        assert first < second  # in-process ids sort as text too
    assert waiting(room) == 0


async def test_one_message_answers_every_waiting_poll() -> None:
    async with chat() as (daemon, room):
        polls = [await open_poll(daemon.port) for _ in range(50)]
        await until(lambda: waiting(room) == 50)
        assert status_of(await exchange(daemon.port, send_json("to all"))) == 200
        bodies = set()
        for poll in polls:
            answer = body_of(await read_response(poll, bytearray()))
            assert texts_of(json.loads(answer)) == ["to all"]
            bodies.add(answer)
            await poll.aclose()
        assert len(bodies) == 1  # one answer, encoded once, for all fifty
        assert waiting(room) == 0


async def test_plain_text_message_with_name_in_query() -> None:
    async with chat() as (daemon, room):
        sent = await exchange(daemon.port, request("POST", "/send?name=carol", "hi there ✓".encode(),
                                                   "Content-Type: text/plain\r\n"))
        assert status_of(sent) == 200
        [message] = room.topic.since(room.origin)
        assert json.loads(message.data)["name"] == "carol" and texts_in(room) == ["hi there ✓"]


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("since", ["abc", "-1", "1.5", "%C2%B2", "0x10", "7"])
async def test_poll_with_a_bad_since_is_400(since: str) -> None:
    async with chat() as (daemon, room):
        answer = await exchange(daemon.port, request("GET", f"/poll?since={since}"))
        assert status_of(answer) == 400
        assert b"the cursor must be a message id" in body_of(answer)
        assert waiting(room) == 0


async def test_event_stream_and_websocket_with_a_bad_since_are_400() -> None:
    async with chat() as (daemon, _):
        for target in ("/events?since=x", "/ws?since=x"):
            answer = await exchange(daemon.port, request("GET", target))
            assert status_of(answer) == 400, target


@pytest.mark.parametrize("chunked", [False, True])
async def test_message_over_4k_is_413(chunked: bool) -> None:
    big = b"x" * (MAX_MESSAGE_BYTES + 1)
    async with chat() as (daemon, room):
        if chunked:
            raw = (b"POST /send HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                   b"Connection: close\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(big), big))
        else:
            raw = request("POST", "/send", big)
        answer = await exchange(daemon.port, raw)
        assert status_of(answer) == 413
        assert texts_in(room) == []
        # exactly the limit is fine, also in characters that JSON escapes
        ok = await exchange(daemon.port, request("POST", "/send", big[:-1]))
        assert status_of(ok) == 200 and len(texts_in(room)) == 1
        tabs = b"x" + b"\x01" * (MAX_MESSAGE_BYTES - 2) + b"x"
        ok = await exchange(daemon.port, request("POST", "/send", tabs))
        assert status_of(ok) == 200 and len(texts_in(room)) == 2


@pytest.mark.parametrize(("body", "content_type", "why"), [
    (b"", "text/plain", b"empty"),
    (b"   ", "text/plain", b"empty"),
    (b"\xff\xfe", "text/plain", b"UTF-8"),
    (b"{not json", "application/json", b"JSON"),
    (b"[1, 2]", "application/json", b"JSON object"),
    (b'{"text": 5}', "application/json", b"strings"),
])
async def test_bad_messages_are_400(body: bytes, content_type: str, why: bytes) -> None:
    async with chat() as (daemon, room):
        answer = await exchange(daemon.port, request("POST", "/send", body,
                                                     f"Content-Type: {content_type}\r\n"))
        assert status_of(answer) == 400
        assert why in body_of(answer)
        assert room.hub.stats().published == 0


async def test_hundreds_of_vanishing_pollers_leave_nothing_behind(ended: Ended) -> None:
    n = 300
    async with chat(ended=ended) as (daemon, room):
        baseline = task_count()
        polls = [await open_poll(daemon.port) for _ in range(n)]
        await until(lambda: waiting(room) == n)
        assert task_count() <= baseline + n + 2  # the daemon's connection tasks, no task per poll
        for poll in polls:
            await poll.aclose()
        await until(lambda: len(ended) == n)
        assert {code for _, code in ended} == {mhd2.RequestEndedCode.CLIENT_ABORT}
        await until(lambda: daemon.connection_count == 0)
        await until(lambda: task_count() == baseline)
        assert waiting(room) == 0
        # and the room still works
        poll = await open_poll(daemon.port)
        await until(lambda: waiting(room) == 1)
        await exchange(daemon.port, send_json("still here"))
        assert status_of(await read_response(poll, bytearray())) == 200
        await poll.aclose()


# -- server-sent events -----------------------------------------------------------------------


class EventReader:
    """Reads a chunked ``text/event-stream`` response from a raw socket."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.raw = b""

    async def until(self, marker: bytes) -> bytes:
        with trio.fail_after(WAIT):
            while marker not in self.raw:
                chunk = await self.stream.receive_some(65536)
                if not chunk:
                    raise EOFError(self.raw)
                self.raw += chunk
        return self.raw


def events_of(raw: bytes, kind: bytes = b"message") -> list[dict[str, Any]]:
    """The JSON data of the events of one *kind* in a raw event stream."""
    found = []
    for block in raw.split(b"\n\n"):
        lines = block.split(b"\n")
        if b"event: " + kind in lines:
            found += [json.loads(line[6:]) for line in lines if line.startswith(b"data: ")]
    return found


async def test_event_stream_delivers_history_then_live_messages_and_keepalives(
        autojump_clock: trio.testing.MockClock) -> None:
    async with chat(poll_timeout=0.3) as (daemon, room):
        await exchange(daemon, send_json("before"))
        stream = await open_stream(daemon)
        await stream.send_all(request("GET", "/events"))
        reader = EventReader(stream)
        head = await reader.until(b"data: ")
        assert b"content-type: text/event-stream" in head.lower()
        assert b"transfer-encoding: chunked" in head.lower()
        assert b"retry: 2000" in head
        await until(lambda: waiting(room) == 1)  # the creator suspended (dcc_action_suspend)
        live = await sent_id(daemon, "live")
        raw = await reader.until(b'"text": "live"')
        assert [e["text"] for e in events_of(raw)] == ["before", "live"]
        assert f"id: {live}\nevent: message\n".encode() in raw
        # Nothing happens for the poll timeout: a keep-alive comment.
        await reader.until(b"\n:")
        await stream.aclose()
        await until(lambda: waiting(room) == 0)


async def test_event_stream_resumes_after_last_event_id() -> None:
    async with chat() as (daemon, _):
        ids = [await sent_id(daemon.port, text) for text in ("one", "two", "three")]
        stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
        await stream.send_all(request("GET", f"/events?since={ids[0]}",
                                      headers=f"Last-Event-ID: {ids[1]}\r\n"))
        raw = await EventReader(stream).until(b'"text": "three"')
        assert [e["text"] for e in events_of(raw)] == ["three"]  # the header wins
        await stream.aclose()


async def test_httpx_client_streams_events() -> None:
    async with chat() as (daemon, room):
        got: list[str] = []
        with trio.fail_after(WAIT):
            async with httpx.AsyncClient() as client:
                url = f"http://127.0.0.1:{daemon.port}/events"
                async with client.stream("GET", url) as response:
                    assert response.headers["content-type"] == "text/event-stream"
                    lines = response.aiter_lines()
                    await until(lambda: waiting(room) == 1)
                    await exchange(daemon.port, send_json("via httpx"))
                    async for line in lines:
                        if line.startswith("data: ") and "text" in json.loads(line[6:]):
                            got.append(json.loads(line[6:])["text"])
                            break
        assert got == ["via httpx"]


# -- restarts: cursors do not repeat --------------------------------------------------------------


def ws_messages(port: int, target: str, count: int) -> list[dict[str, Any]]:
    """The first *count* messages on ``/ws...`` (in a thread)."""
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{port}{target}", open_timeout=WAIT) as ws:
        return [json.loads(ws.recv(timeout=WAIT)) for _ in range(count)]


async def test_client_from_before_a_restart_gets_the_new_history_at_once() -> None:
    # The first run: three messages; an open page's cursor is the third's id.
    async with chat() as (daemon, _):
        ids = [await sent_id(daemon.port, text) for text in ("one", "two", "three")]
    # The restarted demo: new ids, none of them equal to an old one.
    async with chat(poll_timeout=0.3) as (daemon, _):
        # Empty room: the old page is told at once (no 30 s wait) that its cursor
        # is from before what the room holds.
        answer = await get_json(daemon.port, f"/poll?since={ids[2]}")
        assert answer["messages"] == [] and answer["truncated"] is True
        new = [await sent_id(daemon.port, text) for text in ("new one", "new two")]
        assert not set(new) & set(ids) and min(new) > max(ids)
        behind = await get_json(daemon.port, f"/poll?since={ids[0]}")
        assert texts_of(behind) == ["new one", "new two"] and behind["truncated"] is True
        # This run's own cursors work as before; a current one waits (then 204).
        current = await get_json(daemon.port, f"/poll?since={new[0]}")
        assert texts_of(current) == ["new two"] and "truncated" not in current
        assert status_of(await exchange(
            daemon.port, request("GET", f"/poll?since={new[1]}"))) == 204
        # An EventSource reconnecting with an old Last-Event-ID: all of the new history.
        stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
        await stream.send_all(request("GET", "/events", headers=f"Last-Event-ID: {ids[2]}\r\n"))
        raw = await EventReader(stream).until(b'"text": "new two"')
        await stream.aclose()
        assert [e["text"] for e in events_of(raw)] == ["new one", "new two"]
        assert f"id: {new[0]}\n".encode() in raw
        # A WebSocket reconnecting with an old cursor: the new history too.
        got = await trio.to_thread.run_sync(ws_messages, daemon.port, f"/ws?since={ids[2]}", 2)
        assert [m["id"] for m in got] == new
        got = await trio.to_thread.run_sync(ws_messages, daemon.port, f"/ws?since={new[0]}", 1)
        assert [json.loads(m["data"])["text"] for m in got] == ["new two"]


async def test_a_garbled_last_event_id_starts_over_instead_of_failing() -> None:
    # EventSource gives up for good on a non-200 answer: a bad header is a fresh start.
    async with chat() as (daemon, _):
        await exchange(daemon.port, send_json("kept"))
        stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
        await stream.send_all(request("GET", "/events", headers="Last-Event-ID: ?!\r\n"))
        raw = await EventReader(stream).until(b'"text": "kept"')
        await stream.aclose()
        assert raw.startswith(b"HTTP/1.1 200 ")


def test_chat_options_are_checked() -> None:
    for bad in (0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="poll_timeout must be"):
            Chat(poll_timeout=bad)
    with pytest.raises(mhd2.UsageError, match="redis://HOST:PORT/DB"):
        Chat(redis="http://127.0.0.1:6379/0")


async def test_page_links_the_modes_and_has_an_icon() -> None:
    async with chat() as (daemon, _):
        page = body_of(await exchange(daemon.port, request("GET", "/")))
        for link in (b'href="/"', b'href="/?mode=sse"', b'href="/?mode=ws"'):
            assert link in page
        assert b'<link rel="icon"' in page and b"localStorage" in page
        assert b"https://" not in page and b"http://" not in page.replace(
            b"http://www.w3.org/2000/svg", b"")  # no external assets
        icon = await exchange(daemon.port, request("GET", "/favicon.ico"))
        assert status_of(icon) == 200 and b"content-type: image/svg+xml" in icon.lower()
        assert body_of(icon).startswith(b"<svg ")


# -- graceful stop ---------------------------------------------------------------------------


async def test_stop_answers_parked_polls_204_and_ends_streams(ended: Ended) -> None:
    """A graceful stop loses no message: the poll gets 204 with its cursor, the
    event stream a last ``retry:`` and its end, so both come back and resume."""
    async with chat(ended=ended) as (daemon, room):
        first = await sent_id(daemon.port, "before the stop")
        poll = await open_poll(daemon.port, first)
        sse = await trio.open_tcp_stream("127.0.0.1", daemon.port)
        await sse.send_all(request("GET", f"/events?since={first}"))
        reader = EventReader(sse)
        await reader.until(b"retry:")
        await until(lambda: waiting(room) == 2)
        with trio.fail_after(WAIT):
            await daemon.stop(grace=30)
    answer = await read_response(poll, bytearray())
    assert status_of(answer) == 204 and header_of(answer, b"X-Cursor") == first
    with trio.fail_after(WAIT):
        while chunk := await sse.receive_some(65536):
            reader.raw += chunk
    assert reader.raw.count(b"retry: 2000") == 2 and reader.raw.endswith(b"0\r\n\r\n")
    assert waiting(room) == 0


# -- python -m mhd2 demo and the examples -------------------------------------------------------


@asynccontextmanager
async def program(argv: list[str], pattern: str) -> AsyncIterator[tuple[trio.Process, int]]:
    """Run a program whose stdout or stderr announces ``http://127.0.0.1:PORT/``."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    process = await trio.lowlevel.open_process(
        [sys.executable, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, env=env)
    assert process.stdout is not None
    try:
        out = b""
        with trio.fail_after(20):
            while b"\n" not in out:
                chunk = await process.stdout.receive_some(4096)
                assert chunk, out
                out += chunk
        line = out.split(b"\n")[0].decode()
        match = re.match(pattern + r"http://127\.0\.0\.1:(\d+)/ ", line)
        assert match is not None, line
        yield process, int(match[1])
    finally:
        if process.returncode is None:
            process.kill()
        with trio.fail_after(10):
            await process.wait()


async def test_websocket_variant_broadcasts_both_ways() -> None:
    """Two WebSocket clients and a POST /send all reach each other through /ws."""
    from websockets.sync.client import connect

    def text(frame: Any) -> tuple[str, str]:
        data = json.loads(json.loads(frame)["data"])
        return data["name"], data["text"]

    def first_client(port: int, ready: trio.Event, token: trio.lowlevel.TrioToken) -> list[Any]:
        got: list[Any] = []
        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=WAIT) as ws:
            trio.from_thread.run_sync(ready.set, trio_token=token)
            got.append(text(ws.recv(timeout=WAIT)))  # from the second client
            got.append(text(ws.recv(timeout=WAIT)))  # from POST /send
            ws.send("not json")
            got.append(json.loads(ws.recv(timeout=WAIT)))  # the error answer
        return got

    def second_client(port: int) -> None:
        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=WAIT) as ws:
            ws.send(json.dumps({"name": "ws", "text": "over the socket"}))
            assert text(ws.recv(timeout=WAIT)) == ("ws", "over the socket")

    async with chat() as (daemon, room):
        ready = trio.Event()
        results: list[list[Any]] = []
        token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            async def run_first() -> None:
                results.append(await trio.to_thread.run_sync(
                    first_client, daemon.port, ready, token))
            nursery.start_soon(run_first)
            with trio.fail_after(WAIT):
                await ready.wait()
            await until(lambda: room.hub.stats().subscribers["websocket"] == 1)
            await trio.to_thread.run_sync(second_client, daemon.port)
            await until(lambda: room.hub.stats().published == 1)
            posted = await exchange(daemon.port, send_json("over http", name="web"))
            assert status_of(posted) == 200
    got = results[0]
    assert got[:2] == [("ws", "over the socket"), ("web", "over http")]
    assert "error" in got[2] and "JSON" in got[2]["error"]


async def test_python_m_mhd2_demo() -> None:
    async with program(["-m", "mhd2", "demo", "--port", "0"], r"mhd2 demo: chat on ") as (p, port):
        assert b"mhd2 chat" in await exchange(port, request("GET", "/"))
        poll = await open_poll(port)
        await exchange(port, send_json("from the cli test"))
        assert b"from the cli test" in await read_response(poll, bytearray())
        await poll.aclose()
        p.send_signal(signal.SIGINT)
        with trio.fail_after(15):
            assert await p.wait() == 0


def test_demo_subcommand_help() -> None:
    out = subprocess.run([sys.executable, "-m", "mhd2", "demo", "--help"], capture_output=True,
                         text=True, check=True, env=dict(os.environ, PYTHONPATH=str(REPO))).stdout
    assert "--port" in out and "--host" in out and "8888" in out
    # all three ways to the room are named, the WebSocket one included
    assert "GET /poll" in out and "GET /events" in out and "GET /ws" in out
    bad = subprocess.run([sys.executable, "-m", "mhd2", "demo", "--port", "x"],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert bad.returncode == 2 and "invalid port" in bad.stderr


async def test_example_longpoll() -> None:
    argv = [str(REPO / "examples" / "longpoll.py"), "--port", "0", "--poll-timeout", "0.3"]
    async with program(argv, r"longpoll: listening on ") as (p, port):
        first = await exchange(port, request("GET", "/poll"))  # no cursor: the next message
        assert status_of(first) == 204
        cursor = first.split(b"X-Cursor: ", 1)[1].split(b"\r\n", 1)[0].decode()
        poll = await trio.open_tcp_stream("127.0.0.1", port)
        await poll.send_all(request("GET", f"/poll?cursor={cursor}"))
        sent = await exchange(port, request("POST", "/send", b"hello, poller"))
        assert status_of(sent) == 200
        message_id = body_of(sent).decode().strip()
        answer = await read_response(poll, bytearray())
        assert json.loads(body_of(answer)) == {
            "messages": [{"id": message_id, "event": None, "data": "hello, poller"}],
            "cursor": message_id}
        await poll.aclose()
        timed_out = await exchange(port, request("GET", f"/poll?cursor={message_id}"))
        assert status_of(timed_out) == 204
        assert status_of(await exchange(port, request("GET", "/poll?cursor=z"))) == 400
        assert p.stdin is not None
        await p.stdin.send_all(b"\n")
        with trio.fail_after(15):
            assert await p.wait() == 0


async def test_example_sse() -> None:
    async with program([str(REPO / "examples" / "sse.py"), "--port", "0"],
                       r"sse: listening on ") as (p, port):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(request("GET", "/events"))
        reader = EventReader(stream)
        await reader.until(b"text/event-stream")
        await exchange(port, request("POST", "/send", b"event one"))
        await exchange(port, request("POST", "/send", b"event two"))
        raw = await reader.until(b"data: event two\n\n")
        assert b"data: event one\n\n" in raw
        await stream.aclose()
        p.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            assert await p.wait() == 0
