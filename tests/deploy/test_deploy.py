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


async def post(front: int, backend: str | None, text: str) -> int:
    async with client(front, backend) as http:
        response = await http.post("/send", json={"name": "t", "text": text})
    assert response.status_code == 200, response.text
    ident = response.json()["id"]
    assert isinstance(ident, int)
    return ident


async def poll_until(front: int, backend: str | None, since: str, count: int
                     ) -> tuple[list[dict[str, Any]], str]:
    """Long-poll from cursor *since* until *count* messages came; (messages, epoch)."""
    got: list[dict[str, Any]] = []
    epoch = ""
    async with client(front, backend) as http:
        while len(got) < count:
            response = await http.get("/poll", params={"since": since})
            assert response.status_code in (200, 204), response.text
            if response.status_code == 200:
                batch = response.json()
                epoch = batch["epoch"]
                got += batch["messages"]
                if got:
                    since = f"{epoch}:{got[-1]['id']}"
    return got, epoch


async def events_until(front: int, backend: str | None, count: int, last_event_id: str = "",
                       connected: trio.Event | None = None) -> list[dict[str, Any]]:
    """Read ``GET /events`` until *count* messages came (``connected`` set after the epoch)."""
    got: list[dict[str, Any]] = []
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    async with client(front, backend) as http, http.stream(
            "GET", "/events", headers=headers) as response:
        assert response.status_code == 200
        kind = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "epoch" and connected is not None:
                connected.set()
            elif line.startswith("data: ") and kind == "message":
                got.append(json.loads(line[6:]))
                if len(got) >= count:
                    return got
    raise AssertionError(f"event stream ended after {got}")


def ws_until(front: int, backend: str, count: int, send: list[str],
             connected: Callable[[], None]) -> list[dict[str, Any]]:
    """(In a thread.) ``GET /ws`` through HAProxy: collect *count* messages, sending
    each text of *send* as a message once connected."""
    from websockets.sync.client import connect

    got: list[dict[str, Any]] = []
    with connect(f"ws://127.0.0.1:{front}/ws?since=0", additional_headers={"X-Backend": backend},
                 open_timeout=WAIT, close_timeout=5) as ws:
        hello = json.loads(ws.recv(timeout=WAIT))
        got += hello["messages"]
        connected()
        for text in send:
            ws.send(json.dumps({"name": "ws", "text": text}))
        while len(got) < count:
            got.append(json.loads(ws.recv(timeout=WAIT)))
    return got


def texts(messages: list[dict[str, Any]]) -> list[tuple[int, str]]:
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
    on a, once each, in one order with the stream's ids 1..6."""
    front = demo.front
    count = 6
    token = trio.lowlevel.current_trio_token()
    streams_up = [trio.Event() for _ in range(3)]
    ws_up = [trio.Event() for _ in range(3)]

    def up(event: trio.Event) -> Callable[[], None]:
        return lambda: trio.from_thread.run_sync(event.set, trio_token=token)

    async def in_thread(backend: str, send: list[str], event: trio.Event) -> Any:
        return await trio.to_thread.run_sync(ws_until, front, backend, count, send, up(event))

    async def publish() -> None:
        for event in (*streams_up, *ws_up[:2]):  # every listener is connected
            await event.wait()
        assert await post(front, "a", "one") == 1
        assert await post(front, None, "two") == 2
        sender.set()  # the WebSocket on a sends three and four
        await until_count(4)
        assert await post(front, "a", "five") == 5
        assert await post(front, None, "six") == 6

    sender = trio.Event()

    async def until_count(n: int) -> None:
        async with client(front, "b") as http:
            while True:  # answered at once once message n is in the room
                response = await http.get("/poll", params={"since": str(n - 1)})
                if response.status_code == 200 and response.json()["last"] >= n:
                    return

    async def ws_sender() -> Any:
        await sender.wait()
        return await in_thread("a", ["three", "four"], ws_up[2])

    with trio.fail_after(60):
        results = await gather(
            lambda: poll_until(front, "b", "0", count),
            lambda: poll_until(front, "c", "0", count),
            lambda: poll_until(front, None, "0", count),
            lambda: events_until(front, "b", count, connected=streams_up[0]),
            lambda: events_until(front, "c", count, connected=streams_up[1]),
            lambda: events_until(front, None, count, connected=streams_up[2]),
            lambda: in_thread("b", [], ws_up[0]),
            lambda: in_thread("c", [], ws_up[1]),
            ws_sender,
            publish,
        )
    expected = list(enumerate(["one", "two", "three", "four", "five", "six"], start=1))
    polls = [r[0] for r in results[:3]]
    for got in [*polls, *results[3:9]]:
        assert texts(got) == expected
    epochs = {m["epoch"] for got in results[:9] for m in (got[0] if isinstance(got, tuple) else got)}
    assert len(epochs) == 1  # one room, one epoch, whichever process answered


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
    assert first == [1, 2, 3]
    seen = await events_until(front, "b", 3)
    cursor = f"{seen[-1]['epoch']}:{seen[-1]['id']}"
    polled, epoch = await poll_until(front, "b", "0", 3)
    assert texts(polled) == texts(seen)

    await stop(demo.backends["b"].process, signal.SIGKILL)  # no goodbye
    # while b is down: posts through a and through the balanced frontend
    # (HAProxy redispatches what it would have sent to b)
    during = [await post(front, backend, f"during {i}")
              for i, backend in enumerate(["a", None, "c", None])]
    assert during == [4, 5, 6, 7]
    # the clients of b reconnect elsewhere with the cursor they had
    resumed = await events_until(front, "c", 4, last_event_id=cursor)
    assert texts(resumed) == [(4, "during 0"), (5, "during 1"), (6, "during 2"), (7, "during 3")]
    more, _ = await poll_until(front, None, f"{epoch}:{polled[-1]['id']}", 4)
    assert texts(more) == texts(resumed)

    # b comes back: same epoch (it lives in Redis), history from the stream, so a
    # page that stayed on b goes on from its cursor instead of starting over
    await demo.restart("b")
    async with client(front, "b") as http:
        response = await http.get("/poll", params={"since": f"{epoch}:5"})
    assert response.status_code == 200
    assert response.json()["epoch"] == epoch
    assert texts(response.json()["messages"]) == [(6, "during 2"), (7, "during 3")]


async def test_sighup_reload_of_a_demo_with_workers_under_load_fails_no_request(
        demo: Demo) -> None:
    front = demo.front
    c = demo.backends["c"]
    statuses: list[int] = []
    posted: list[int] = []
    reloaded = trio.Event()

    async def load(kind: str) -> None:
        async with client(front, "c") as http:
            while not reloaded.is_set():
                if kind == "post":
                    response = await http.post("/send", json={"name": "load", "text": "x"})
                    if response.status_code == 200:
                        posted.append(response.json()["id"])
                else:
                    response = await http.get("/poll", params={"since": "-1:0"})
                statuses.append(response.status_code)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for kind in ("post", "post", "poll", "poll"):
                nursery.start_soon(load, kind)
            start = len(c.lines)
            await post(front, "c", "warm-up")
            c.process.send_signal(signal.SIGHUP)
            await c.until("reload done", start=start)
            await post(front, "c", "after the reload")
            reloaded.set()
    assert any("SIGHUP: reloading 2 workers" in line for line in c.lines[start:])
    assert len(statuses) > 20
    assert set(statuses) == {200}, sorted(set(statuses))
    assert len(set(posted)) == len(posted)  # every XADD got its own id


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


async def test_the_room_is_the_redis_stream_and_its_epoch_outlives_the_demo(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    """Ids are the stream's (XADD 0-*), the epoch is the one stored in Redis, a
    restarted demo keeps both, and a cursor ahead of a process waits instead of
    getting the history again."""
    import coredis

    async with AsyncExitStack() as stack:
        url = await start_redis(stack, nursery, tmp_path)
        port = free_port()
        argv = ["demo", "--redis", url, "--port", str(port)]
        demo = await stack.enter_async_context(child(
            nursery, "demo", [sys.executable, "-m", "mhd2", *argv]))
        await demo.until("chat on")
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=WAIT) as http:
            for text in ("one", "two"):
                assert (await http.post("/send", json={"text": text})).status_code == 200
            answer = (await http.get("/poll", params={"since": "0"})).json()
        redis = coredis.Redis.from_url(url, decode_responses=True)
        async with redis:
            entries = await redis.xrange("mhd2:demo:chat")
            assert [e.identifier for e in entries] == ["0-1", "0-2"]
            assert [e.field_values["text"] for e in entries] == ["one", "two"]
            assert await redis.get("mhd2:demo:epoch") == answer["epoch"]
        epoch = answer["epoch"]

        await stop(demo.process)
        demo = await stack.enter_async_context(child(
            nursery, "demo again", [sys.executable, "-m", "mhd2", *argv]))
        await demo.until("chat on")
        async with httpx.AsyncClient(base_url=base, timeout=WAIT) as http:
            again = (await http.get("/poll", params={"since": f"{epoch}:1"})).json()
            assert again["epoch"] == epoch
            assert texts(again["messages"]) == [(2, "two")]

            # a client that saw message 3 elsewhere, before this process did:
            # it waits for 4 instead of taking 1..2 again
            async def ahead() -> Any:
                return (await http.get("/poll", params={"since": f"{epoch}:3"})).json()

            async def later() -> list[int]:
                return [await post(port, None, "three"), await post(port, None, "four")]

            with trio.fail_after(WAIT):
                waited, posted = await gather(ahead, later)
        assert posted == [3, 4]
        assert texts(waited["messages"]) == [(4, "four")]


async def test_redis_lost_and_back_makes_a_new_epoch_that_every_client_follows(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    """Redis restarts empty: posting is 503 while it is away, then the demo's reader
    comes back, takes a new epoch, and a poll parked with an old cursor, a
    WebSocket and a page's old cursor all get the new room from its start."""
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
        assert await post(port, None, "one") == 1
        _, old = await poll_until(port, None, "0", 1)
        ws = await trio.to_thread.run_sync(lambda: stack.enter_context(connect(
            f"ws://127.0.0.1:{port}/ws?since={old}:1", open_timeout=WAIT, close_timeout=5)))
        assert json.loads(await trio.to_thread.run_sync(ws.recv, WAIT))["messages"] == []

        async def parked() -> Any:
            async with client(port) as http:
                return (await http.get("/poll", params={"since": f"{old}:1"})).json()

        async def outage() -> None:
            await redis_stack.aclose()  # SIGTERM: without persistence the room is gone
            start = len(demo.lines)
            async with client(port) as http:
                response = await http.post("/send", json={"text": "lost"})
            assert response.status_code == 503, response.text
            await demo.until("Redis at .*trying again", start=start)
            await start_redis(stack, nursery, tmp_path, redis_port)
            await demo.until("Redis at .*: back", start=start)
            assert await post(port, None, "after") == 1  # the new stream counts from 1

        with trio.fail_after(WAIT * 2):
            answer, _ = await gather(parked, outage)
        assert answer["epoch"] != old
        assert texts(answer["messages"]) in ([], [(1, "after")])
        fresh, epoch = await poll_until(port, None, f"{old}:1", 1)
        assert epoch == answer["epoch"] and texts(fresh) == [(1, "after")]
        got = json.loads(await trio.to_thread.run_sync(ws.recv, WAIT))
        assert (got["epoch"], got["id"], got["text"]) == (epoch, 1, "after")
