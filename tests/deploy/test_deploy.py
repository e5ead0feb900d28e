"""mhd2 deployed with real parts: redis-server, HAProxy and ``python -m mhd2`` processes.

Runs when ``MHD2_DEPLOY=1`` (``nox -s deploy`` sets it; then a missing part is
a failure) or when ``redis-server``, ``haproxy`` and coredis are all present.
Everything listens on 127.0.0.1 only, in a temporary directory; the test
client talks from **127.0.0.2** (any 127/8 address is the loopback on Linux),
so a backend that logs ``127.0.0.2`` got the client's address from the proxy,
not HAProxy's own ``127.0.0.1``.

HAProxy runs the configuration files next to this one, unchanged (docs/
deploying.rst shows them with ``literalinclude``); they take their ports from
environment variables in HAProxy's own ``"${NAME}"`` syntax. To reach one given
demo process, a request carries ``X-Backend: a`` (``b``, ``c``): a
``use_backend`` rule in ``haproxy-demo.cfg`` routes on it; without the header
HAProxy balances over the three.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from _harness import free_port

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CLIENT_IP = "127.0.0.2"
WAIT = 20.0


def _binary(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")


REDIS_SERVER = _binary("redis-server")
HAPROXY = _binary("haproxy")
MISSING = [name for name, found in (("redis-server", REDIS_SERVER), ("haproxy", HAPROXY),
                                    ("coredis", find_spec("coredis"))) if not found]
DEPLOY = os.environ.get("MHD2_DEPLOY") == "1"

pytestmark = pytest.mark.skipif(
    bool(MISSING) and not DEPLOY,
    reason=f"deploy test: needs {', '.join(MISSING)} (or run nox -s deploy, which installs them)")


class Child:
    """A child process whose stderr is read into :attr:`lines` as it comes."""

    def __init__(self, name: str, process: trio.Process) -> None:
        self.name = name
        self.process = process
        self.lines: list[str] = []
        self._news = trio.Event()

    async def pump(self) -> None:
        assert self.process.stderr is not None
        buffer = b""
        async for chunk in self.process.stderr:
            buffer += chunk
            *done, buffer = buffer.split(b"\n")
            self.lines.extend(line.decode("utf-8", "backslashreplace") for line in done)
            self._news.set()
            self._news = trio.Event()

    async def until(self, pattern: str, *, start: int = 0, timeout: float = WAIT) -> re.Match[str]:
        """The first line from index *start* on that matches *pattern*."""
        regex = re.compile(pattern)
        with trio.fail_after(timeout):
            seen = start
            while True:
                for line in self.lines[seen:]:
                    if match := regex.search(line):
                        return match
                seen = max(seen, len(self.lines))
                if self.process.returncode is not None:
                    raise AssertionError(f"{self.name} exited: {self.lines[-20:]}")
                news = self._news
                with trio.move_on_after(0.5):  # also notice an exit
                    await news.wait()

    def access_lines(self, marker: str) -> list[str]:
        return [line for line in self.lines if marker in line and '" 200 ' in line]


@asynccontextmanager
async def child(nursery: trio.Nursery, name: str, argv: list[str],
                env: dict[str, str] | None = None) -> AsyncIterator[Child]:
    """Run *argv* (its stderr read by a task in *nursery*, which must outlive the
    process); on leaving, SIGTERM (SIGKILL after 15 s) and reap it."""
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full_env.get("PYTHONPATH")]))
    process = await trio.lowlevel.open_process(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=full_env)
    running = Child(name, process)
    nursery.start_soon(running.pump)
    try:
        yield running
        with trio.CancelScope(shield=True):
            await stop(process)
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await process.wait()


async def stop(process: trio.Process, how: int = signal.SIGTERM) -> None:
    if process.returncode is None:
        process.send_signal(how)
    with trio.move_on_after(15):
        await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()


async def until_accepting(address: str | tuple[str, int]) -> None:
    """Wait (bounded) until something accepts connections on *address*."""
    with trio.fail_after(WAIT):
        while True:
            try:
                if isinstance(address, str):
                    stream: trio.abc.Stream = await trio.open_unix_socket(address)
                else:
                    stream = await trio.open_tcp_stream(*address)
            except OSError:
                await trio.sleep(0.05)  # an external process: nothing to wait on but its port
                continue
            await stream.aclose()
            return


async def start_redis(stack: AsyncExitStack, nursery: trio.Nursery, tmp: Path,
                      port: int = 0) -> str:
    """Start redis-server (on *port*, or a free one) without persistence; its URL."""
    if MISSING:
        pytest.fail(f"MHD2_DEPLOY=1 but missing: {', '.join(MISSING)}")
    assert REDIS_SERVER is not None
    port = port or free_port()
    (tmp / "redis").mkdir(exist_ok=True)
    await stack.enter_async_context(child(nursery, f"redis {port}", [
        REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(tmp / "redis"),
        "--save", "", "--appendonly", "no", "--logfile", ""]))
    await until_accepting(("127.0.0.1", port))
    return f"redis://127.0.0.1:{port}/0"


async def start_haproxy(stack: AsyncExitStack, nursery: trio.Nursery, config: str, front: int,
                        env: dict[str, str]) -> Child:
    assert HAPROXY is not None
    proxy = await stack.enter_async_context(child(
        nursery, "haproxy", [HAPROXY, "-db", "-f", str(HERE / config)],
        dict(env, MHD2_FRONT_PORT=str(front))))
    await until_accepting(("127.0.0.1", front))
    return proxy


async def start_mhd2(stack: AsyncExitStack, nursery: trio.Nursery, name: str,
                     args: list[str]) -> Child:
    process = await stack.enter_async_context(child(nursery, name, [sys.executable, "-m", "mhd2", *args]))
    await process.until(r"^mhd2( demo)?: .* on (http://|unix:)")
    return process


def client(front: int, backend: str | None = None) -> httpx.AsyncClient:
    """An HTTP client talking to HAProxy from 127.0.0.2 (optionally to one backend)."""
    headers = {"X-Backend": backend} if backend else {}
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{front}", headers=headers,
                             timeout=WAIT,
                             transport=httpx.AsyncHTTPTransport(local_address=CLIENT_IP))


class Demo:
    """redis-server, demo backends a, b (one process each) and c (``--workers 2``)
    behind HAProxy (``haproxy-demo.cfg``)."""

    def __init__(self, stack: AsyncExitStack, nursery: trio.Nursery, tmp: Path) -> None:
        self.stack = stack
        self.nursery = nursery
        self.tmp = tmp
        self.ports = {name: free_port() for name in "abc"}
        self.front = free_port()
        self.backends: dict[str, Child] = {}
        self.redis = ""
        self.haproxy: Child | None = None

    def argv(self, name: str) -> list[str]:
        argv = ["demo", "--redis", self.redis, "--port", str(self.ports[name]),
                "--proxy-protocol", "--access-log", "--graceful-timeout", "5"]
        return argv + (["--workers", "2"] if name == "c" else [])

    async def start(self) -> None:
        self.redis = await start_redis(self.stack, self.nursery, self.tmp)
        for name in "abc":
            self.backends[name] = await start_mhd2(self.stack, self.nursery, f"demo {name}", self.argv(name))
        env = {f"MHD2_DEMO_{name.upper()}": f"127.0.0.1:{port}"
               for name, port in self.ports.items()}
        self.haproxy = await start_haproxy(self.stack, self.nursery, "haproxy-demo.cfg", self.front, env)

    async def restart(self, name: str) -> None:
        self.backends[name] = await start_mhd2(self.stack, self.nursery, f"demo {name} again", self.argv(name))


@pytest.fixture
async def demo(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Demo]:
    async with AsyncExitStack() as stack:
        running = Demo(stack, nursery, tmp_path)
        await running.start()
        yield running


# ------------------------------------------------------------------ chat clients


def key(ident: str) -> tuple[int, int]:
    """A Redis stream id's sort key ("10-0" after "9-0")."""
    ms, _, seq = ident.partition("-")
    return int(ms), int(seq)


def chat_message(ident: str, data: str) -> dict[str, Any]:
    """A delivered message as ``{"id", "name", "text", "time"}``."""
    message: dict[str, Any] = {"id": ident, **json.loads(data)}
    return message


async def post(front: int, backend: str | None, text: str) -> str:
    async with client(front, backend) as http:
        response = await http.post("/send", json={"name": "t", "text": text})
    assert response.status_code == 200, response.text
    ident = response.json()["id"]
    assert isinstance(ident, str) and re.fullmatch(r"\d+-\d+", ident), ident
    return ident


async def poll_until(front: int, backend: str | None, since: str, count: int
                     ) -> tuple[list[dict[str, Any]], str]:
    """Long-poll from cursor *since* until *count* messages came; (messages, cursor)."""
    got: list[dict[str, Any]] = []
    async with client(front, backend) as http:
        while len(got) < count:
            response = await http.get("/poll", params={"since": since})
            assert response.status_code in (200, 204), response.text
            since = response.headers["x-cursor"]
            if response.status_code == 200:
                got += [chat_message(m["id"], m["data"]) for m in response.json()["messages"]]
    return got, since


async def events_until(front: int, backend: str | None, count: int, last_event_id: str = "",
                       connected: trio.Event | None = None) -> list[dict[str, Any]]:
    """Read ``GET /events`` until *count* messages came (``connected`` set once it answered;
    without *last_event_id* it starts from the whole history, so nothing is missed)."""
    got: list[dict[str, Any]] = []
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    async with client(front, backend) as http, http.stream(
            "GET", "/events", headers=headers) as response:
        assert response.status_code == 200
        if connected is not None:
            connected.set()
        ident = ""
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                ident = line[4:]
            elif line.startswith("data: "):
                got.append(chat_message(ident, line[6:]))
                if len(got) >= count:
                    return got
    raise AssertionError(f"event stream ended after {got}")


def ws_until(front: int, backend: str, count: int, send: list[str],
             connected: Callable[[], None]) -> list[dict[str, Any]]:
    """(In a thread.) ``GET /ws`` through HAProxy: collect *count* messages (from the
    whole history on), sending each text of *send* as a message once connected."""
    from websockets.sync.client import connect

    got: list[dict[str, Any]] = []
    with connect(f"ws://127.0.0.1:{front}/ws", additional_headers={"X-Backend": backend},
                 open_timeout=WAIT, close_timeout=5) as ws:
        connected()
        for text in send:
            ws.send(json.dumps({"name": "ws", "text": text}))
        while len(got) < count:
            frame = json.loads(ws.recv(timeout=WAIT))
            got.append(chat_message(frame["id"], frame["data"]))
    return got


def texts(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(m["id"], m["text"]) for m in messages]


async def gather(*jobs: Callable[[], Awaitable[Any]]) -> list[Any]:
    results: list[Any] = [None] * len(jobs)

    async def run(i: int) -> None:
        results[i] = await jobs[i]()

    async with trio.open_nursery() as nursery:
        for i in range(len(jobs)):
            nursery.start_soon(run, i)
    return results


# ------------------------------------------------------------------ the tests


async def test_a_message_posted_through_one_backend_reaches_every_client_on_the_others(
        demo: Demo) -> None:
    """Long poll, SSE and WebSocket clients on b and c (and one balanced) get every
    message posted through a, through the balanced frontend and over a WebSocket
    on a, once each, in one order: the stream's."""
    front = demo.front
    count = 6
    token = trio.lowlevel.current_trio_token()
    streams_up = [trio.Event() for _ in range(3)]
    ws_up = [trio.Event() for _ in range(3)]
    posted: list[str] = []

    def up(event: trio.Event) -> Callable[[], None]:
        return lambda: trio.from_thread.run_sync(event.set, trio_token=token)

    async def in_thread(backend: str, send: list[str], event: trio.Event) -> Any:
        return await trio.to_thread.run_sync(ws_until, front, backend, count, send, up(event))

    async def publish() -> None:
        for event in (*streams_up, *ws_up[:2]):  # every listener is connected
            await event.wait()
        posted.append(await post(front, "a", "one"))
        posted.append(await post(front, None, "two"))
        sender.set()  # the WebSocket on a sends three and four
        await until_count(4)
        posted.append(await post(front, "a", "five"))
        posted.append(await post(front, None, "six"))

    sender = trio.Event()

    async def until_count(n: int) -> None:
        await poll_until(front, "b", "0-0", n)

    async def ws_sender() -> Any:
        await sender.wait()
        return await in_thread("a", ["three", "four"], ws_up[2])

    with trio.fail_after(60):
        results = await gather(
            lambda: poll_until(front, "b", "", count),
            lambda: poll_until(front, "c", "", count),
            lambda: poll_until(front, None, "", count),
            lambda: events_until(front, "b", count, connected=streams_up[0]),
            lambda: events_until(front, "c", count, connected=streams_up[1]),
            lambda: events_until(front, None, count, connected=streams_up[2]),
            lambda: in_thread("b", [], ws_up[0]),
            lambda: in_thread("c", [], ws_up[1]),
            ws_sender,
            publish,
        )
    polls = [r[0] for r in results[:3]]
    everything = [*polls, *results[3:9]]
    first = texts(everything[0])
    assert [text for _, text in first] == ["one", "two", "three", "four", "five", "six"]
    for got in everything:
        assert texts(got) == first  # the same ids, texts and order everywhere
    ids = [ident for ident, _ in first]
    assert sorted(ids, key=key) == ids and len(set(ids)) == 6
    assert set(posted) <= set(ids)


async def test_each_backend_sees_the_clients_address_not_haproxys(demo: Demo) -> None:
    for name in "abc":
        async with client(demo.front, name) as http:
            response = await http.get("/", params={"probe": name})
        assert response.status_code == 200
        line = (await demo.backends[name].until(rf'"GET /\?probe={name} HTTP/1.1" 200 ')).string
        # PROXY v2 from HAProxy (127.0.0.1) carried the client's 127.0.0.2
        assert line.startswith(f"{CLIENT_IP} - - ["), line
    # HAProxy's health checks (a PROXY v2 LOCAL header, then nothing) are no trouble
    for backend in demo.backends.values():
        assert not [line for line in backend.lines if "Traceback" in line or ": ERROR:" in line
                    or ": WARNING:" in line], backend.lines


async def test_killing_a_backend_loses_no_message_for_clients_that_reconnect(
        demo: Demo) -> None:
    front = demo.front
    first = [await post(front, "a", f"before {i}") for i in range(3)]
    seen = await events_until(front, "b", 3)
    assert [m["id"] for m in seen] == first
    polled, cursor = await poll_until(front, "b", "", 3)
    assert texts(polled) == texts(seen) and cursor == first[-1]

    await stop(demo.backends["b"].process, signal.SIGKILL)  # no goodbye
    # while b is down: posts through a and through the balanced frontend
    # (HAProxy redispatches what it would have sent to b)
    during = [await post(front, backend, f"during {i}")
              for i, backend in enumerate(["a", None, "c", None])]
    assert sorted(during, key=key) == during and key(during[0]) > key(first[-1])
    expected = [(ident, f"during {i}") for i, ident in enumerate(during)]
    # the clients of b reconnect elsewhere with the cursor they had
    resumed = await events_until(front, "c", 4, last_event_id=cursor)
    assert texts(resumed) == expected
    more, _ = await poll_until(front, None, cursor, 4)
    assert texts(more) == expected

    # b comes back: its history from the stream, so a page that stayed on b
    # goes on from its cursor instead of starting over
    await demo.restart("b")
    async with client(front, "b") as http:
        response = await http.get("/poll", params={"since": during[1]})
    assert response.status_code == 200
    assert [(m["id"], json.loads(m["data"])["text"]) for m in response.json()["messages"]] == \
        expected[2:]


async def test_sighup_reload_of_a_demo_with_workers_under_load_fails_no_request(
        demo: Demo) -> None:
    front = demo.front
    c = demo.backends["c"]
    statuses: list[int] = []
    posted: list[str] = []
    reloaded = trio.Event()
    enough = trio.Event()

    async def load(kind: str) -> None:
        async with client(front, "c") as http:
            while not reloaded.is_set():
                if kind == "post":
                    response = await http.post("/send", json={"name": "load", "text": "x"})
                    if response.status_code == 200:
                        posted.append(response.json()["id"])
                else:  # the history from the start: answered at once
                    response = await http.get("/poll", params={"since": "0-0"})
                statuses.append(response.status_code)
                if len(statuses) > 20:
                    enough.set()

    with trio.fail_after(60):
        await post(front, "c", "warm-up")
        async with trio.open_nursery() as nursery:
            for kind in ("post", "post", "poll", "poll"):
                nursery.start_soon(load, kind)
            start = len(c.lines)
            c.process.send_signal(signal.SIGHUP)
            await c.until("reload done", start=start)
            await post(front, "c", "after the reload")
            await enough.wait()
            reloaded.set()
    assert any("SIGHUP: reloading 2 workers" in line for line in c.lines[start:])
    assert len(statuses) > 20
    assert set(statuses) == {200}, sorted(set(statuses))
    assert len(set(posted)) == len(posted)  # every XADD got its own id


# ------------------------------------------------- across the workers of one supervisor


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as listing:
        return [int(child) for child in listing.read().split()]


def _socket_inode(local_port: int, remote_port: int) -> int | None:
    """The inode of the server's end (127.0.0.1:*local_port*) of a TCP connection from
    127.0.0.1:*remote_port* (``/proc/net/tcp``)."""
    want_local = f"0100007F:{local_port:04X}"
    want_remote = f"0100007F:{remote_port:04X}"
    with open("/proc/net/tcp") as table:
        for line in table.read().splitlines()[1:]:
            fields = line.split()
            if fields[1] == want_local and fields[2] == want_remote:
                return int(fields[9])
    return None


async def owner(supervisor: int, port: int, stream: trio.SocketStream) -> int:
    """The worker process (a child of *supervisor*) that accepted *stream*."""
    remote_port = stream.socket.getsockname()[1]
    with trio.fail_after(WAIT):
        while True:
            inode = _socket_inode(port, remote_port)
            for pid in _children(supervisor) if inode else ():
                try:
                    fds = os.listdir(f"/proc/{pid}/fd")
                    links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in fds}
                except OSError:  # it ended meanwhile
                    continue
                if f"socket:[{inode}]" in links:
                    return pid
            await trio.sleep(0.02)  # another process's accept: nothing to wait on


async def direct(port: int) -> trio.SocketStream:
    """A connection straight to a ``--proxy-protocol`` demo, from where HAProxy is
    (127.0.0.1, the trusted proxy), with a PROXY v1 line for a client at 127.0.0.2."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    local = stream.socket.getsockname()[1]
    await stream.send_all(f"PROXY TCP4 {CLIENT_IP} 127.0.0.1 {local} {port}\r\n".encode())
    return stream


async def read_until(stream: trio.SocketStream, marker: bytes, seen: bytearray) -> bytes:
    with trio.fail_after(WAIT):
        while marker not in seen:
            chunk = await stream.receive_some(65536)
            if not chunk:
                raise AssertionError(f"closed after {bytes(seen)!r}")
            seen += chunk
    return bytes(seen)


async def test_a_message_published_through_one_worker_reaches_a_subscriber_on_another(
        demo: Demo) -> None:
    """Backend c is one supervisor with two workers: a subscriber held by one worker
    gets a message posted through the other (each worker has its own hub and
    reader; the message goes through Redis)."""
    port = demo.ports["c"]
    supervisor = demo.backends["c"].process.pid
    subscriber = await direct(port)
    await subscriber.send_all(b"GET /events HTTP/1.1\r\nHost: c\r\n\r\n")
    seen = bytearray()
    await read_until(subscriber, b"retry:", seen)
    held_by = await owner(supervisor, port, subscriber)
    for _ in range(100):  # the kernel picks the worker: try until the other one has it
        sender = await direct(port)
        if await owner(supervisor, port, sender) != held_by:
            break
        await sender.aclose()
    else:
        raise AssertionError("the second worker never accepted a connection")
    body = json.dumps({"name": "w", "text": "across workers"}).encode()
    await sender.send_all(b"POST /send HTTP/1.1\r\nHost: c\r\nContent-Type: application/json"
                          b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                          % (len(body), body))
    answer = await read_until(sender, b"}", bytearray())
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    ident = json.loads(answer.split(b"\r\n\r\n", 1)[1])["id"]
    raw = await read_until(subscriber, b"across workers", seen)
    assert f"id: {ident}\nevent: message\n".encode() in raw
    await sender.aclose()
    await subscriber.aclose()


async def test_a_subscriber_resumes_with_its_cursor_across_a_worker_recycle(
        demo: Demo) -> None:
    """SIGHUP recycles c's workers one by one.  An event stream and a parked long
    poll held by c are told to come back (a last ``retry:``; ``204`` with
    ``X-Cursor``); with their cursors they get every message posted meanwhile
    through a, none lost and none twice."""
    front = demo.front
    c = demo.backends["c"]
    first = await post(front, "a", "before the recycle")
    during: list[str] = []
    stream_got: list[dict[str, Any]] = []
    poll_answers: list[httpx.Response] = []
    opened = trio.Event()
    ended = trio.Event()

    async def stream() -> None:
        async with client(front, "c") as http, http.stream(
                "GET", "/events", headers={"Last-Event-ID": first}) as response:
            assert response.status_code == 200
            opened.set()
            ident = ""
            async for line in response.aiter_lines():
                if line.startswith("id: "):
                    ident = line[4:]
                elif line.startswith("data: "):
                    stream_got.append(chat_message(ident, line[6:]))
        ended.set()  # the worker said goodbye

    async def poll() -> None:
        async with client(front, "c") as http:
            poll_answers.append(await http.get("/poll", params={"since": first}))

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream)
            nursery.start_soon(poll)
            await opened.wait()
            start = len(c.lines)
            c.process.send_signal(signal.SIGHUP)
            await ended.wait()  # its worker is going: what comes now, it must resume
            for i in range(3):
                during.append(await post(front, "a", f"during {i}"))
            await c.until("reload done", start=start)
            after = await post(front, "a", "after the recycle")
        assert stream_got == []  # nothing came before the goodbye
        resumed = await events_until(front, "c", 4, last_event_id=first)
    expected = [*during, after]
    assert [m["id"] for m in resumed] == expected  # nothing lost, nothing twice, in order
    [answer] = poll_answers
    assert answer.status_code in (200, 204)
    at = answer.headers["x-cursor"]
    polled = [m["id"] for m in answer.json()["messages"]] if answer.status_code == 200 else []
    rest, _ = await poll_until(front, "c", at, len(expected) - len(polled))
    assert polled + [m["id"] for m in rest] == expected
async def test_haproxy_forwardfor_in_front_of_serve_workers(tmp_path: Path,
                                                           nursery: trio.Nursery) -> None:
    """The documented command line behind ``haproxy-forwardfor.cfg``: whatever
    forwarded headers the client writes, the access log shows its own address."""
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "hello.txt").write_text("hello\n")
    port, front = free_port(), free_port()
    async with AsyncExitStack() as stack:
        serve = await start_mhd2(stack, nursery, "serve", [
            "serve", str(tmp_path / "www"), "--port", str(port), "--workers", "2",
            "--forwarded-headers", "x-forwarded", "--forwarded-allow-ips", "127.0.0.1",
            "--access-log"])
        if MISSING:
            pytest.fail(f"MHD2_DEPLOY=1 but missing: {', '.join(MISSING)}")
        await start_haproxy(stack, nursery, "haproxy-forwardfor.cfg", front,
                            {"MHD2_SERVE": f"127.0.0.1:{port}"})
        async with client(front) as http:
            for n, headers in enumerate(SPOOFING):
                response = await http.get(f"/hello.txt?via=haproxy&n={n}", headers=headers)
                assert response.status_code == 200 and response.text == "hello\n"
                line = (await serve.until(rf'"GET /hello.txt\?via=haproxy&n={n} ')).string
                assert line.startswith(f"{CLIENT_IP} - - ["), (headers, line)
        # straight to mhd2 from an untrusted peer: the header is not believed
        async with httpx.AsyncClient(timeout=WAIT, transport=httpx.AsyncHTTPTransport(
                local_address=CLIENT_IP)) as http:
            response = await http.get(f"http://127.0.0.1:{port}/hello.txt?via=direct",
                                      headers={"X-Forwarded-For": "203.0.113.9"})
        assert response.status_code == 200
        line = (await serve.until(r'"GET /hello.txt\?via=direct ')).string
        assert line.startswith(f"{CLIENT_IP} - - ["), line


#: What a client behind the proxy writes to pick its own address or scheme
#: (issue 19 item 4): the family the proxy does not set, a loopback or made-up
#: address, a scheme, garbage, several lines in mixed case.
SPOOFING: list[list[tuple[str, str]]] = [
    [("Forwarded", "for=6.6.6.6;proto=https")],
    [("Forwarded", "for=127.0.0.1")],
    [("X-Forwarded-Proto", "https")],
    [("X-Forwarded-For", "127.0.0.1"), ("X-Forwarded-Proto", "https")],
    [("x-forwarded-for", "6.6.6.6, ::1"), ("X-FORWARDED-FOR", "127.0.0.1")],
    [("X-Forwarded-For", "nonsense, [::1")],
    [("Forwarded", 'for="unterminated'), ("FORWARDED", 'for="[::1]:80";proto=https')],
    [("Forwarded", "for=_hidden;proto=https, for=127.0.0.1")],
]

ECHO_APP = """\
import mhd2


def handle(request):
    host, port = request.client_address
    body = f"{host} {port} {request.scheme}".encode()
    return mhd2.action_from_response(request, mhd2.Response.from_buffer_copy(200, body))
"""


@pytest.mark.parametrize(("config", "family"), [("haproxy-forwardfor.cfg", "x-forwarded"),
                                                 ("haproxy-forwarded.cfg", "forwarded")])
async def test_spoofing_headers_through_haproxy(tmp_path: Path, nursery: trio.Nursery,
                                                config: str, family: str) -> None:
    """Each shipped forwarded-header set-up, with the spoofing headers sent
    through HAProxy: the application and the access log see the client's own
    address (127.0.0.2) and scheme (http), never 6.6.6.6, loopback or https."""
    (tmp_path / "echo.py").write_text(ECHO_APP)
    port, front = free_port(), free_port()
    async with AsyncExitStack() as stack:
        app = await stack.enter_async_context(child(nursery, "run", [
            sys.executable, "-m", "mhd2", "run", "echo:handle", "--port", str(port),
            "--forwarded-headers", family, "--forwarded-allow-ips", "127.0.0.1"],
            {"PYTHONPATH": str(tmp_path)}))
        await app.until(r"^mhd2: running echo:handle on http://")
        if MISSING:
            pytest.fail(f"MHD2_DEPLOY=1 but missing: {', '.join(MISSING)}")
        await start_haproxy(stack, nursery, config, front, {"MHD2_SERVE": f"127.0.0.1:{port}"})
        async with client(front) as http:
            for n, headers in enumerate([[], *SPOOFING]):
                response = await http.get(f"/?n={n}", headers=headers)
                assert response.status_code == 200
                host, client_port, scheme = response.text.split()
                assert (host, scheme) == (CLIENT_IP, "http"), (headers, response.text)
                # Forwarded carries the client's port too (the set-header rule)
                assert (client_port != "0") == (family == "forwarded"), response.text
                line = (await app.until(rf'"GET /\?n={n} HTTP/1.1" 200 ')).string
                assert line.startswith(f"{CLIENT_IP} - - ["), (headers, line)
    assert not [line for line in app.lines if "Traceback" in line or ": ERROR:" in line]


async def test_haproxy_to_mhd2_over_a_unix_socket(tmp_path: Path, nursery: trio.Nursery) -> None:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "hello.txt").write_text("over a socket\n")
    path = str(tmp_path / "mhd2.sock")
    front = free_port()
    async with AsyncExitStack() as stack:
        serve = await start_mhd2(stack, nursery, "serve", [
            "serve", str(tmp_path / "www"), "--uds", path, "--proxy-protocol", "--access-log"])
        if MISSING:
            pytest.fail(f"MHD2_DEPLOY=1 but missing: {', '.join(MISSING)}")
        await start_haproxy(stack, nursery, "haproxy-uds.cfg", front, {"MHD2_SOCKET": path})
        async with client(front) as http:
            response = await http.get("/hello.txt?via=unix")
            assert response.status_code == 200 and response.text == "over a socket\n"
            line = (await serve.until(r'"GET /hello.txt\?via=unix ')).string
            assert line.startswith(f"{CLIENT_IP} - - ["), line
            # forwarded headers mean nothing here: the PROXY header says who
            for n, headers in enumerate(SPOOFING):
                response = await http.get(f"/hello.txt?spoof={n}", headers=headers)
                assert response.status_code == 200
                line = (await serve.until(rf'"GET /hello.txt\?spoof={n} ')).string
                assert line.startswith(f"{CLIENT_IP} - - ["), (headers, line)


async def test_the_room_is_the_redis_stream_and_outlives_the_demo(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    """Ids are the stream's (``mhd2:fanout:chat``, XADD ``*``), the entries hold the
    message as JSON, and a restarted demo takes its history from the stream, so an
    old cursor goes on where it was."""
    import coredis

    async with AsyncExitStack() as stack:
        url = await start_redis(stack, nursery, tmp_path)
        port = free_port()
        argv = ["demo", "--redis", url, "--port", str(port)]
        demo = await stack.enter_async_context(child(
            nursery, "demo", [sys.executable, "-m", "mhd2", *argv]))
        await demo.until("chat on")
        ids = [await post(port, None, text) for text in ("one", "two")]
        redis = coredis.Redis.from_url(url, decode_responses=True)
        async with redis:
            entries = await redis.xrange("mhd2:fanout:chat")
            assert [e.identifier for e in entries] == ids
            assert [e.field_values["e"] for e in entries] == ["message", "message"]
            assert [json.loads(e.field_values["d"])["text"] for e in entries] == ["one", "two"]

        await stop(demo.process)
        demo = await stack.enter_async_context(child(
            nursery, "demo again", [sys.executable, "-m", "mhd2", *argv]))
        await demo.until("chat on")
        again, cursor = await poll_until(port, None, ids[0], 1)
        assert texts(again) == [(ids[1], "two")] and cursor == ids[1]
        more = [await post(port, None, "three")]
        assert key(more[0]) > key(ids[1])
        assert texts((await poll_until(port, None, ids[1], 1))[0]) == [(more[0], "three")]


async def test_redis_lost_and_back_every_client_goes_on(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    """Redis restarts empty: posting is 503 while it is away; the demo's reader comes
    back, and a poll parked with its cursor, a WebSocket open through the outage and
    a later poll with the old cursor all get the new message (its id is after the
    old ones: Redis makes ids from its clock)."""
    from websockets.sync.client import connect

    async with AsyncExitStack() as stack:
        redis_stack = await stack.enter_async_context(AsyncExitStack())
        url = await start_redis(redis_stack, nursery, tmp_path)
        redis_port = int(url.rsplit(":", 1)[1].split("/")[0])
        port = free_port()
        demo = await stack.enter_async_context(child(
            nursery, "demo", [sys.executable, "-m", "mhd2", "demo", "--redis", url,
                              "--port", str(port), "--log-level", "warning"]))
        await demo.until("chat on")
        old = await post(port, None, "one")
        ws = await trio.to_thread.run_sync(lambda: stack.enter_context(connect(
            f"ws://127.0.0.1:{port}/ws?since={old}", open_timeout=WAIT, close_timeout=5)))

        async def parked() -> Any:
            async with client(port) as http:
                return (await http.get("/poll", params={"since": old})).json()

        async def outage() -> str:
            start = len(demo.lines)  # (the reader may say so before Redis has exited)
            await redis_stack.aclose()  # SIGTERM: without persistence the room is gone
            async with client(port) as http:
                response = await http.post("/send", json={"text": "lost"})
            assert response.status_code == 503, response.text
            assert "127.0.0.1" not in response.text and str(redis_port) not in response.text
            await demo.until("Redis at .*cannot be read.*trying again", start=start)
            await start_redis(stack, nursery, tmp_path, redis_port)
            await demo.until("Redis at .* answers again", start=start)
            return await post(port, None, "after")

        with trio.fail_after(WAIT * 2):
            answer, after = await gather(parked, outage)
        assert key(after) > key(old)
        assert [(m["id"], json.loads(m["data"])["text"]) for m in answer["messages"]] == [
            (after, "after")]
        fresh, _ = await poll_until(port, None, old, 1)
        assert texts(fresh) == [(after, "after")]
        frame = json.loads(await trio.to_thread.run_sync(ws.recv, WAIT))
        assert (frame["id"], json.loads(frame["data"])["text"]) == (after, "after")
        assert not [line for line in demo.lines if "Traceback" in line or "ERROR" in line]
