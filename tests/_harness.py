"""Harnesses shared by the fuzz tests and the hostile HTTP/2 tests.

* :func:`daemon_thread` -- a daemon serving in a background thread with its
  own ``trio.run`` (hypothesis examples are each a fresh ``trio.run`` in the
  test's thread), and what it logged at ERROR on ``mhd2``.
* :func:`h2_attack` -- a daemon in this trio run, a frame-level HTTP/2
  client (:class:`~h2raw.RawH2`) connected to it, a well-behaved client
  served on another connection *while* the attack runs and once more after
  it, and the memory the whole process allocated at its peak during the
  attack, bounded.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio
from conftest import WAIT, running
from h2raw import RawH2

import mhd2

#: Bound for one fuzz exchange, client side, and for a daemon thread's start.
BOUND = 5.0


# -- a daemon in a thread, and what it logs -------------------------------------------------


class ErrorLog(logging.Handler):
    """Collects the ERROR records logged on ``mhd2`` (from any thread)."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            self.records.append(record)

    def messages(self) -> list[str]:
        """Every ERROR message so far."""
        with self._lock:
            return [r.getMessage() for r in self.records]

    def internal_errors(self) -> list[str]:
        """The messages that report an exception escaping into the daemon."""
        return [m for m in self.messages() if "internal error" in m]


class Harness:
    """A daemon serving in a background thread, and what it logged."""

    def __init__(self) -> None:
        self.collector = ErrorLog()
        self.ready = threading.Event()
        self.port = 0
        self.error: BaseException | None = None
        self.stop: trio.Event | None = None
        self.token: trio.lowlevel.TrioToken | None = None
        self.thread: threading.Thread | None = None

    def check_alive(self) -> None:
        assert self.error is None, f"the daemon's trio.run failed: {self.error!r}"
        assert self.thread is not None and self.thread.is_alive(), "the daemon's thread ended"


@contextmanager
def daemon_thread(app: Any, *, name: str = "mhd2-fuzz-daemon", **options: Any) -> Iterator[Harness]:
    """Run one daemon (request callback *app*, *options*) in a background thread
    for the duration of the block; it must start, survive and stop cleanly."""
    harness = Harness()
    log = logging.getLogger("mhd2")
    log.addHandler(harness.collector)

    async def main() -> None:
        harness.stop = trio.Event()
        harness.token = trio.lowlevel.current_trio_token()
        async with mhd2.Daemon(app, port=0, **options) as daemon:
            harness.port = daemon.port
            harness.ready.set()
            await harness.stop.wait()

    def target() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # reported to the test by check_alive
            harness.error = exc
            harness.ready.set()

    harness.thread = threading.Thread(target=target, name=name, daemon=True)
    harness.thread.start()
    try:
        assert harness.ready.wait(BOUND), "daemon did not start"
        harness.check_alive()
        yield harness
        harness.check_alive()
    finally:
        if harness.stop is not None and harness.token is not None:
            try:
                trio.from_thread.run_sync(harness.stop.set, trio_token=harness.token)
            except trio.RunFinishedError:
                pass  # the daemon's run ended early: check_alive reported it
        harness.thread.join(BOUND + 10)
        log.removeHandler(harness.collector)
    assert not harness.thread.is_alive(), "daemon did not stop"
    assert harness.error is None, repr(harness.error)


# -- hostile HTTP/2 -----------------------------------------------------------------------------

#: What an attack may make the process (daemon, attacker and bystander
#: together) allocate at its peak above where it started.  Each attack is
#: sized so that buffering it would take 50 MB or more.
MEMORY_BOUND = 20 * 1024 * 1024


async def send_in_pieces(stream: trio.abc.HalfCloseableStream, data: bytes,
                         cuts: tuple[int, ...], *, half_close: bool) -> None:
    """Send *data* cut at *cuts* (taken modulo its length), each piece alone.

    The daemon may answer early and close: what it said is then for the
    caller to read.
    """
    try:
        start = 0
        for cut in sorted({c % (len(data) + 1) for c in cuts}):
            await stream.send_all(data[start:cut])
            await trio.sleep(0.001)  # let the daemon handle the piece alone
            start = cut
        await stream.send_all(data[start:])
        if half_close:
            await stream.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the daemon answered early and closed: read what it said


async def get_fine(port: int) -> None:
    """A well-behaved HTTP/2 client (httpx, new connection) gets ``/fine``."""
    async with httpx.AsyncClient(http1=False, http2=True) as client:
        with trio.fail_after(WAIT):
            r = await client.get(f"http://127.0.0.1:{port}/fine")
    assert r.status_code == 200 and r.http_version == "HTTP/2"


async def send_quietly(client: RawH2, data: bytes = b"") -> None:
    """Send; the server may already have closed (that is what is tested)."""
    try:
        await client.send_raw(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        client.closed = True


def request_block(client: RawH2, path: str = "/") -> bytes:
    """An HPACK block for a GET, encoded by the client's own encoder (tables stay in step)."""
    return client.conn.encoder.encode([(b":method", b"GET"), (b":scheme", b"http"),
                                       (b":authority", b"localhost"), (b":path", path.encode())])


@dataclass
class Attack:
    """What :func:`h2_attack` yields, and what it measured once the block ended."""

    daemon: mhd2.Daemon
    client: RawH2
    #: Peak bytes allocated (tracemalloc) above the start of the attack.
    peak_growth: int = 0
    #: ``/fine`` answers a bystander got on its own connection during the attack.
    served_meanwhile: int = 0
    errors: list[BaseException] = field(default_factory=list)


@asynccontextmanager
async def h2_attack(cb: Any, *, bound: int = MEMORY_BOUND, client_options: dict[str, Any] | None = None,
                    **options: Any) -> AsyncIterator[Attack]:
    """A daemon (*cb*, *options*) and a raw HTTP/2 client connected to it, for an attack.

    While the block runs, a bystander asks for ``/fine`` on a connection of
    its own, one request after the other; after the block, it must have been served
    at least once (a request in flight when the attack ends is waited for),
    and once more on a new connection.  The peak of the memory allocated
    by the whole process during the block (``tracemalloc``) must stay under
    *bound* above where it started.  *cb* must answer ``/fine`` with 200.
    """
    async with running(cb, **options) as daemon:
        with trio.fail_after(WAIT):
            client = await RawH2.connect(daemon.port, **(client_options or {}))
        attack = Attack(daemon, client)
        stop = trio.Event()

        async def bystander() -> None:
            url = f"http://127.0.0.1:{daemon.port}/fine"
            try:
                async with httpx.AsyncClient(http1=False, http2=True) as other:
                    while not stop.is_set():
                        with trio.fail_after(WAIT):
                            r = await other.get(url)
                        assert r.status_code == 200 and r.http_version == "HTTP/2"
                        attack.served_meanwhile += 1
            except Exception as exc:  # reported below
                attack.errors.append(exc)

        tracemalloc.start()
        try:
            start, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(bystander)
                try:
                    yield attack
                finally:
                    stop.set()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        attack.peak_growth = peak - start
        await client.aclose()
        await get_fine(daemon.port)
    assert not attack.errors, f"a bystander was not served during the attack: {attack.errors!r}"
    assert attack.served_meanwhile >= 1
    assert attack.peak_growth < bound, \
        f"the attack made the process allocate {attack.peak_growth / 2**20:.1f} MiB at its peak"


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free now, for a server started later.

    Picked below the kernel's range for outgoing connections: a port taken
    from that range (``bind(0)``) can meanwhile become the local end of
    another connection -- a test's own connection to Redis, say -- and the
    server then cannot listen on it.
    """
    low = 32768
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ranges:
            low = int(ranges.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    for _ in range(200):
        port = random.randrange(max(1024, low - 16384), low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # all tried were taken: any free one
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
