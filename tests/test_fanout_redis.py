"""``Hub(redis=...)``: topics in Redis Streams, against a real redis-server.

Each test starts its own ``redis-server`` on a free port (append-only file,
fsync at every write, so a server killed with SIGKILL and started again
keeps every message).  Without ``redis-server`` (or coredis) the tests are
skipped, unless ``MHD2_DEPLOY=1`` or ``MHD2_REQUIRE_REDIS=1`` says they
must run: then they fail.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from _harness import free_port
from conftest import WAIT

import mhd2
from mhd2 import UsageError
from mhd2.fanout import FanoutUnavailable, Hub, Topic, action_long_poll, action_sse
from mhd2.fanout.redis import RedisBackend

HERE = Path(__file__).resolve().parent
REDIS_SERVER = shutil.which("redis-server")
REQUIRED = os.environ.get("MHD2_DEPLOY") == "1" or os.environ.get("MHD2_REQUIRE_REDIS") == "1"
MISSING = [name for name, found in (("redis-server", REDIS_SERVER), ("coredis", find_spec("coredis")))
           if not found]


@pytest.fixture(autouse=True)
def _need_redis() -> None:
    if MISSING:
        reason = (f"needs {' and '.join(MISSING)} (apt-get install redis-server; "
                  "pip install 'mhd2[redis]')")
        if REQUIRED:
            pytest.fail(f"MHD2_DEPLOY/MHD2_REQUIRE_REDIS is set but this test {reason}")
        pytest.skip(reason)


def _lines_until(process: subprocess.Popen[bytes], done: Callable[[str], bool],
                 seconds: float = WAIT) -> str:
    """Read *process*'s stdout until a line for which *done* holds (bounded); that line.

    The rest of the output is then drained by a thread, so the pipe never fills.
    """
    assert process.stdout is not None
    fd = process.stdout.fileno()
    text = b""
    end = time.monotonic() + seconds
    while (remaining := end - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], remaining)
        chunk = os.read(fd, 65536) if ready else b""
        if ready and not chunk:
            break
        text += chunk
        for line in text.decode("utf-8", "replace").splitlines(keepends=True):
            if line.endswith("\n") and done(line):
                threading.Thread(target=process.stdout.read, daemon=True).start()
                return line
    process.kill()
    raise AssertionError(f"{process.args!r} did not get ready; it said: {text!r}")


class RedisServer:
    """A redis-server of one test, which can be killed and started again."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.dir = tmp / "redis"
        self.dir.mkdir()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert REDIS_SERVER is not None
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.port), "--dir",
             str(self.dir), "--save", "", "--appendonly", "yes", "--appendfsync", "always"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        _lines_until(self.process, lambda line: "Ready to accept connections" in line)

    def kill(self) -> None:
        """SIGKILL: no goodbye to the clients; the append-only file has every write."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(WAIT)
            self.process = None


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def until(condition: Callable[[], bool]) -> None:
    """Wait (bounded) until *condition* holds, checking between scheduler ticks."""
    with trio.fail_after(WAIT):
        while not condition():
            await trio.sleep(0.005)


def ids_of(topic: Topic) -> list[str]:
    return [m.id for m in topic.since(topic.hub._backend.origin())]


# -- ids ------------------------------------------------------------------------------------


def test_ids_sort_as_numbers_and_bad_cursors_say_why() -> None:
    backend = RedisBackend("redis://127.0.0.1:1/0")
    assert backend.key("10-0") > backend.key("9-0") > backend.key("8-99")
    assert backend.key("10-1") > backend.key("10-0")
    assert backend.parse_cursor("0-0") == backend.origin() == "0-0"
    assert backend.parse_cursor("0012-03") == "12-3"  # one spelling per id
    for bad in ("", "12", "12-", "-1", "1-2-3", "a-b", " 1-2", "1-2\n", "1_2", "١-٢",
                f"{1 << 64}-0", f"0-{1 << 64}", "99999999999999999-0"):
        with pytest.raises(ValueError) as info:
            backend.parse_cursor(bad)
        assert str(info.value).startswith("the cursor"), bad


def test_a_url_that_is_not_redis_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"redis://HOST:PORT/DB URL, not 'http://h:1/0'"):
        Hub(redis="http://h:1/0")
    with pytest.raises(UsageError, match="publish_timeout must be seconds"):
        RedisBackend("redis://h:1/0", publish_timeout=0)
    with pytest.raises(UsageError, match="redis= or backend="):
        Hub(redis="redis://h:1/0", backend=RedisBackend("redis://h:1/0"))


async def test_stream_ids_9_then_10_are_in_order_for_cursors(redis: RedisServer) -> None:
    """Entries another writer made with small ids: "10-0" comes after "9-0"."""
    import coredis

    client = coredis.Redis.from_url(redis.url)
    async with client:
        for ident in ("8-0", "9-0", "10-0", "11-0"):
            await client.xadd("mhd2:fanout:small", {"d": ident.encode()}, identifier=ident)
    async with Hub(redis=redis.url) as hub:
        topic = hub.topic("small", history=10)
        await until(lambda: topic.last_id == "11-0")
        after = topic.since("9-0")
        assert [m.id for m in after] == ["10-0", "11-0"] and not after.truncated
        assert [m.data for m in topic.since("10-0")] == [b"11-0"]
        assert topic.since("11-0") == []


# -- two hubs, one topic ---------------------------------------------------------------------


async def test_two_hubs_share_a_topic_in_one_order(redis: RedisServer) -> None:
    a, b = Hub(redis=redis.url), Hub(redis=redis.url)
    ta, tb = a.topic("room", history=50), b.topic("room", history=50)  # loaded at the start
    async with a, b:
        published: list[str] = []

        async def publish(topic: Topic, tag: str) -> None:
            for i in range(10):
                published.append(await topic.publish(f"{tag}{i}", event=tag))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(publish, ta, "a")
            nursery.start_soon(publish, tb, "b")
        await until(lambda: len(ids_of(ta)) == 20 and len(ids_of(tb)) == 20)
        seen_a, seen_b = ta.since("0-0"), tb.since("0-0")
        assert seen_a == seen_b  # one order in both hubs: the stream's
        keys = [a._backend.key(m.id) for m in seen_a]
        assert keys == sorted(keys) and len(set(keys)) == 20
        assert sorted(published, key=a._backend.key) == [m.id for m in seen_a]
        # each hub's own messages are in its publication order
        for tag in "ab":
            assert [m.data for m in seen_a if m.event == tag] == [
                f"{tag}{i}".encode() for i in range(10)]
        assert a.stats().published == b.stats().published == 20


async def test_a_later_hub_catches_up_from_the_stream(redis: RedisServer) -> None:
    async with Hub(redis=redis.url) as a:
        ta = a.topic("log", history=3)
        ids = [await ta.publish(f"m{i}") for i in range(6)]
        async with Hub(redis=redis.url) as b:
            tb = b.topic("log", history=3)  # made after the start: loaded by the reader
            await until(lambda: tb.last_id == ids[-1])
            assert ids_of(tb) == ids[-3:]
            caught = tb.since(ids[3])
            assert [m.data for m in caught] == [b"m4", b"m5"] and not caught.truncated
            old = tb.since(ids[0])  # older than the history: says so, gives what is kept
            assert old.truncated and [m.id for m in old] == ids[-3:]
            assert tb.since(ids[-1]) == [] and not tb.since(ids[-1]).truncated

        hub = Hub(redis=redis.url)
        early = hub.topic("log", history=3)  # made before the start: loaded before it returns
        async with hub:
            assert ids_of(early) == ids[-3:]


async def test_a_topic_made_while_running_takes_its_history_as_history_not_news(
        redis: RedisServer) -> None:
    """The history arrives after ``hub.topic`` (Redis is stopped meanwhile): a poll
    waiting "from the next message" is not sent it, only what comes after."""
    async with Hub(redis=redis.url) as a, Hub(redis=redis.url) as b:
        ta = a.topic("late", history=10)
        old = [await ta.publish(f"old {i}") for i in range(3)]
        assert redis.process is not None
        redis.process.send_signal(signal.SIGSTOP)  # b's XREVRANGE waits
        try:
            tb = b.topic("late", history=10)

            def callback(request: mhd2.Request) -> mhd2.Action:
                return action_long_poll(request, tb, cursor=request.args.get("cursor"),
                                        timeout=WAIT)

            async with mhd2.Daemon(callback, port=0) as daemon, httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{daemon.port}", timeout=WAIT) as client:
                answers: list[httpx.Response] = []
                async with trio.open_nursery() as nursery:
                    async def poll() -> None:
                        answers.append(await client.get("/"))

                    nursery.start_soon(poll)
                    await until(lambda: b.stats().subscribers["long_poll"] == 1)
                    redis.process.send_signal(signal.SIGCONT)
                    await until(lambda: tb.last_id == old[-1])  # the history is in
                    assert b.stats().subscribers["long_poll"] == 1  # and was not news
                    new = await ta.publish(b"new")
                [answer] = answers
                assert [m["id"] for m in answer.json()["messages"]] == [new]
                assert ids_of(tb) == [*old, new]
                assert b.stats().published == 1
        finally:
            redis.process.send_signal(signal.SIGCONT)


async def test_long_poll_and_sse_on_one_hub_see_what_the_other_publishes(
        redis: RedisServer) -> None:
    async with Hub(redis=redis.url) as a, Hub(redis=redis.url) as b:
        ta, tb = a.topic("chat"), b.topic("chat")
        first = await ta.publish(b"before")
        await until(lambda: tb.last_id == first)

        def callback(request: mhd2.Request) -> mhd2.Action:
            cursor = request.args.get("cursor")
            if request.path == "/events":
                return action_sse(request, tb, cursor=cursor)
            return action_long_poll(request, tb, cursor=cursor, timeout=WAIT)

        async with mhd2.Daemon(callback, port=0) as daemon, httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{daemon.port}", timeout=WAIT) as client:
            r = await client.get("/poll", params={"cursor": "bad"})
            assert r.status_code == 400 and "1712345678901-0" in r.text
            r = await client.get("/poll", params={"cursor": "0-0"})
            assert [m["data"] for m in r.json()["messages"]] == ["before"]
            answers: list[httpx.Response] = []
            async with trio.open_nursery() as nursery:
                async def poll() -> None:
                    answers.append(await client.get("/poll", params={"cursor": first}))

                nursery.start_soon(poll)
                await until(lambda: b.stats().subscribers["long_poll"] == 1)
                second = await ta.publish(b"after", event="e")
            assert answers[0].json() == {
                "messages": [{"id": second, "event": "e", "data": "after"}], "cursor": second}
            async with client.stream("GET", "/events", params={"cursor": first}) as stream:
                text = ""
                chunks = stream.aiter_text()
                third = await ta.publish(b"third")
                with trio.fail_after(WAIT):
                    while f"id: {third}" not in text:
                        text += await chunks.__anext__()
                assert text.index(f"id: {second}") < text.index(f"id: {third}")


# -- Redis going away ------------------------------------------------------------------------


async def test_redis_killed_and_back_publish_fails_then_nothing_is_lost(
        redis: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "mhd2.fanout")
    # b's reader waits 2 s after its first failure: what a publishes meanwhile is
    # in the stream before b reads again, and must come from its last id.
    slow = RedisBackend(redis.url, min_backoff=2.0, publish_timeout=2.0)
    async with Hub(redis=redis.url) as a, Hub(backend=slow) as b:
        ta, tb = a.topic("t", history=100), b.topic("t", history=100)
        before = [await ta.publish(f"m{i}") for i in range(3)]
        await until(lambda: tb.last_id == before[-1])

        redis.kill()
        with trio.fail_after(WAIT):
            with pytest.raises(FanoutUnavailable) as info:
                await ta.publish(b"lost")
        message = str(info.value)
        assert message.startswith(f"could not publish on topic 't': Redis at {redis.url} "
                                  "did not take the message (")
        assert message.endswith("); nothing was published")
        await until(lambda: slow._down)  # b's reader found out and waits

        redis.start()
        with trio.fail_after(WAIT):
            after = [await ta.publish(f"n{i}") for i in range(3)]
        assert ids_of(tb) == before  # b has not read since the outage...
        assert a.stats().redis_reconnects <= 1
        await until(lambda: tb.last_id == after[-1])  # ...and now reads on from its last id
        assert ids_of(tb) == before + after
        assert [m.data for m in tb.since("0-0")] == [b"m0", b"m1", b"m2", b"n0", b"n1", b"n2"]
        assert b.stats().redis_reconnects == 1
        warnings = [r.getMessage() for r in caplog.records if r.name == "mhd2.fanout"]
        assert any("cannot be read" in w and "trying again within" in w for w in warnings)
        assert any("answers again" in w for w in warnings)
        assert not any(r.exc_info for r in caplog.records)  # a sentence, not a traceback


async def test_a_subscriber_keeps_its_stream_through_an_outage(redis: RedisServer) -> None:
    async with Hub(redis=redis.url) as a, Hub(redis=redis.url) as b:
        ta, tb = a.topic("t"), b.topic("t")

        def callback(request: mhd2.Request) -> mhd2.Action:
            return action_sse(request, tb, cursor=request.args.get("cursor"))

        first = await ta.publish(b"one")
        await until(lambda: tb.last_id == first)
        async with mhd2.Daemon(callback, port=0) as daemon, httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{daemon.port}", timeout=WAIT) as client:
            async with client.stream("GET", "/", params={"cursor": "0-0"}) as stream:
                chunks = stream.aiter_text()
                text = ""
                with trio.fail_after(WAIT):
                    while "data: one" not in text:
                        text += await chunks.__anext__()
                redis.kill()
                with pytest.raises(FanoutUnavailable):
                    await ta.publish(b"lost")
                redis.start()
                with trio.fail_after(WAIT):
                    second = await ta.publish(b"two")
                    while f"id: {second}" not in text:
                        text += await chunks.__anext__()
        assert text.count("data: one") == 1 and "lost" not in text


async def test_a_hub_starts_while_redis_is_down_and_works_once_it_is_up(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)  # not started
    try:
        with trio.fail_after(WAIT):
            async with Hub(redis=server.url) as hub:
                topic = hub.topic("late")
                with pytest.raises(FanoutUnavailable, match="did not take the message"):
                    await topic.publish(b"x")
                server.start()
                mid = await topic.publish(b"y")
                await until(lambda: topic.last_id == mid)
                assert hub.stats().redis_reconnects == 1
    finally:
        server.kill()


async def test_the_sentence_never_shows_the_password() -> None:
    port = free_port()  # nothing listens there
    async with Hub(redis=f"redis://:s3cret@127.0.0.1:{port}/0") as hub:
        with trio.fail_after(WAIT), pytest.raises(FanoutUnavailable) as info:
            await hub.topic("t").publish(b"x")
    assert "s3cret" not in str(info.value)
    assert f"redis://:***@127.0.0.1:{port}/0" in str(info.value)
    assert "s3cret" not in repr(hub._backend)


# -- two real processes ----------------------------------------------------------------------


@asynccontextmanager
async def app_process(url: str) -> AsyncIterator[httpx.AsyncClient]:
    """tests/fanout_redis_app.py in a process of its own; a client of it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, str(HERE / "fanout_redis_app.py"), url],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        line = await trio.to_thread.run_sync(
            _lines_until, process, lambda line: line.startswith("PORT "))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{line.split()[1]}",
                                     timeout=WAIT) as client:
            yield client
    finally:
        process.terminate()
        process.wait(WAIT)


async def test_two_processes_share_a_topic(redis: RedisServer) -> None:
    async with app_process(redis.url) as one, app_process(redis.url) as two:
        waiting: dict[str, list[Any]] = {"one": [], "two": []}

        async def follow(name: str, client: httpx.AsyncClient, count: int) -> None:
            cursor = "0-0"
            while len(waiting[name]) < count:
                r = await client.get("/poll", params={"cursor": cursor})
                if r.status_code == 200:
                    waiting[name] += r.json()["messages"]
                    cursor = r.json()["cursor"]

        sent: list[str] = []

        async def publish(client: httpx.AsyncClient, tag: str) -> None:
            for i in range(10):
                r = await client.post("/publish", content=f"{tag}{i}")
                assert r.status_code == 200
                sent.append(r.text)

        with trio.fail_after(3 * WAIT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(follow, "one", one, 20)
                nursery.start_soon(follow, "two", two, 20)
                nursery.start_soon(publish, one, "a")
                nursery.start_soon(publish, two, "b")
        assert waiting["one"] == waiting["two"]  # the same messages, ids, order
        backend = RedisBackend(redis.url)
        got = [m["id"] for m in waiting["one"]]
        assert got == sorted(sent, key=backend.key)
        for tag in "ab":
            assert [m["data"] for m in waiting["one"] if m["data"][0] == tag] == [
                f"{tag}{i}" for i in range(10)]
        # a cursor from process one resumes on process two
        r = await two.get("/poll", params={"cursor": got[14]})
        assert [m["id"] for m in r.json()["messages"]] == got[15:]
        stats = (await one.get("/stats")).json()
        assert stats["published"] == 20 and stats["redis_reconnects"] == 0
