"""The ladder: a bare trio + httptools loop, then mhd2's own layers added one at a time.

Each rung is a hello-world HTTP/1.1 server answering every keep-alive request
with the same bytes as ``bench/servers/mhd2_hello.py`` (status 200,
``Content-Type: text/plain``, ``Date``, ``Content-Length: 13``,
``Hello, World!``).  The difference in server CPU per request between two
rungs is what the added layer costs.  Every rung from L1 up uses mhd2's real
modules the way ``mhd2/http1/connection.py`` (``HTTP1Connection._serve``,
``_handle``, ``_reply``) uses them, with the options' defaults:

* **L0** -- the floor, no mhd2: a raw non-blocking socket, checkpoint then
  ``os.read`` (``wait_readable`` on EAGAIN), one persistent
  ``httptools.HttpRequestParser`` per connection, the reply bytes written by
  hand with ``os.write``.  Same accept loop as L1..L5.
* **L1** -- + mhd2's :class:`~mhd2.transport.Transport` over
  :class:`~mhd2.plain_stream.PlainSocketStream`: the per-connection cancel
  scope, the timeout checks and ``arm``, ``receive`` / ``receive_later``,
  ``send``, ``close``.  Parsing and the reply are still L0's.
* **L2** -- + mhd2's parser (``shared.make_parser``: the llhttp glue, or h11
  with ``--parser h11``), ``feed``, the empty-line skip, ``next_head`` and
  the head shortcut or :func:`~mhd2.http1.head.read_head` exactly as the
  connection decides, ``next_request``.  The reply is still hand-written.
* **L3** -- + an :class:`~mhd2.exchange.Exchange` (and its
  :class:`~mhd2.Request`) per request, made as ``_handle`` makes it (the
  connection's :class:`~mhd2.http1.connection.HTTP1Connection` is its host),
  ``check_host``, the ``check_head`` / close / chunk-checker decisions, and
  ``exchange.end`` once the reply is out.
* **L4** -- + the application: the direct callback path
  (:func:`~mhd2.app_calls.call_app_now`, a ``ResponseAction``'s response taken at once,
  anything else through :func:`~mhd2.outcome.app_outcome`) -- or
  ``app_outcome`` alone in a checkout without the direct path.  The callback
  is mhd2_hello.py's: one reusable static response through
  ``action_from_response``.
* **L5** -- + the reply writer: ``_reply``'s bookkeeping (body done, the
  pipelining batch), :func:`~mhd2.http1.reply.reply_plan` and
  :func:`~mhd2.http1.reply.send_reply` (``mhd2.reply`` before issue 21; in an older checkout:
  ``plan_reply`` with the response's inputs, and ``send_reply`` with the plan).
  L5 is the connection loop minus its wrapper.
* **mhd2** -- the real :class:`~mhd2.Daemon` (its accept loop,
  ``HTTP1Connection.run``, connection events, the HTTP/2 preface check).

Usage::

    python bench/ladder.py run                      # every rung, this checkout
    python bench/ladder.py run --root /work/wt/prev # the same rungs on another checkout's mhd2
    python bench/ladder.py run --root /work/wt/prev --root .   # before/after, interleaved
    python bench/ladder.py run --duration 5 --reps 2 --parser httptools --levels L0,L5,mhd2
    python bench/ladder.py serve PORT LEVEL [--parser P]   # one rung, in the foreground

``run`` starts each rung in turn pinned to CPU 0 (``taskset -c 0``), warms it
up, drives it with ``wrk -t1 -c50 -dD --latency`` pinned to CPU 1, and prints
per rung: the median server CPU per request (utime + stime of the server
process over the run / requests wrk counted) with its spread over the reps,
req/s, and the difference from the rung before it (the row above), and the share of CPU 0 other processes used.  Reps run in alternating order
(forward, then backward).  CPU µs per request is the figure to compare: it
moves far less than req/s when the machine is shared; the load average before
and after and the share of CPU 0 others used are printed with it.

``--root PATH`` imports ``mhd2`` from another checkout (the server processes
get it first on ``sys.path``).  Given more than once, the checkouts are
measured in the same run, interleaved rung by rung, and a side-by-side table
follows theirs (the way to compare before and after on a shared machine).  Where a rung needs an internal that checkout
does not have, that rung's server exits with status 3 and a ``n/a: <reason>``
line, and the table says "n/a" with the reason.

Needs wrk, taskset and httptools.  Only ever talks to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mhd2.transport import Transport

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LEVELS = ("L0", "L1", "L2", "L3", "L4", "L5", "mhd2")
WHAT = {
    "L0": "bare trio + httptools loop",
    "L1": "+ Transport",
    "L2": "+ parser, next_head/read_head",
    "L3": "+ Exchange/Request, checks, end",
    "L4": "+ callback and action",
    "L5": "+ reply writer",
    "mhd2": "the real Daemon",
}
BODY = b"Hello, World!"  # 13 bytes, as bench/servers/mhd2_hello.py
#: Exit status of a rung that this checkout's internals cannot build (as mhd2_hello.py).
EXIT_NOT_APPLICABLE = 3
#: The daemon's timeouts in every rung (as bench/run.py's servers).
TIMEOUT = 300.0
#: Bytes per read, as mhd2.http1.connection.RECV_SIZE.
RECV_SIZE = 16 * 1024

Handler = Callable[[socket.socket], Awaitable[None]]


class NotBuildable(Exception):
    """This rung needs an internal the imported mhd2 does not have."""


# --------------------------------------------------------------------------- serve


def _date_cache() -> Callable[[], bytes]:
    """The hand-written reply of L0..L4, its Date line remade once a second."""
    from email.utils import formatdate

    cache: list[Any] = [0, b""]

    def reply() -> bytes:
        now = int(time.time())
        if now != cache[0]:
            cache[0] = now
            cache[1] = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: "
                        + formatdate(now, usegmt=True).encode()
                        + b"\r\nContent-Length: 13\r\n\r\n" + BODY)
        data: bytes = cache[1]
        return data

    return reply


hello = _date_cache()


class _Proto:
    """httptools callbacks of the bare loop (L0, L1): count the requests."""

    __slots__ = ("done", "headers", "url")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.done = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_message_complete(self) -> None:
        self.done += 1


async def handle_l0(sock: socket.socket) -> None:
    """L0: the bare loop (shared/experiments/trio_httptools_parseonly.py)."""
    import httptools
    import trio

    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    fd = sock.fileno()
    proto = _Proto()
    parser = httptools.HttpRequestParser(proto)
    try:
        while True:
            await trio.lowlevel.checkpoint()
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(fd)
                continue
            if not data:
                return
            parser.feed_data(data)
            n, proto.done = proto.done, 0
            if n:
                proto.headers = []
                proto.url = b""
                os.write(fd, hello() * n)
    except (OSError, httptools.HttpParserError):
        pass
    finally:
        trio.lowlevel.notify_closing(sock)
        sock.close()


def make_mhd2_handler(level: int, parser_name: str) -> Handler:
    """The handler of rung L1..L5 on the imported mhd2 (see the module docstring).

    Raises:
        NotBuildable: the imported mhd2 lacks an internal this rung uses.
    """
    import trio

    import mhd2
    from mhd2 import outcome as outcome_mod
    try:
        from mhd2.http1 import reply as reply_mod
    except ImportError:  # a checkout from before issue 21: the writer was mhd2/reply.py
        from mhd2 import reply as reply_mod  # type: ignore[no-redef]
    from mhd2._http1.chunked_check import ChunkedChecker
    from mhd2._http1.parser import Head, ParseError
    from mhd2._http1.request_checks import check_head, check_host
    from mhd2.actions import ResponseAction
    from mhd2.connection_info import connection_info_for
    from mhd2.enums import RequestEndedCode
    from mhd2.exchange import Exchange
    call_app_now: Callable[[Any], Any]
    try:
        from mhd2 import app_calls
        call_app_now = app_calls.call_app_now
    except ImportError:  # before the split of exchange.py: a method of the exchange
        call_app_now = Exchange.call_app_now  # type: ignore[attr-defined]
    from mhd2.http1 import connection as connection_mod
    from mhd2.http1.head import read_head
    from mhd2.options import DaemonOptions
    from mhd2.response import Response
    from mhd2.shared import Shared
    from mhd2.transport import SocketTransport

    response = hello_response()

    def on_request(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_from_response(request, response)

    try:
        options = DaemonOptions(host="127.0.0.1", port=0, timeout=TIMEOUT, parser=parser_name)
    except TypeError as exc:
        raise NotBuildable(f"this mhd2 has no parser option: {exc}") from exc
    shared = Shared(options, on_request)
    ok = RequestEndedCode.COMPLETED_OK
    # What this checkout's connection loop does (it changed in issue 22):
    #: the head shortcut: next_head() first, read_head only when needed.
    head_shortcut = "result" in inspect.signature(read_head).parameters
    #: the direct callback path (call_app_now, then app_outcome for the rest).
    direct_callback = "call_app_now" in inspect.getsource(connection_mod.HTTP1Connection)
    #: reply_plan -> Planned -> send_reply; else plan_reply -> ReplyPlan -> send_reply.
    planned_reply = hasattr(reply_mod, "reply_plan")
    strict = int(options.strict_level) >= 1
    strict_level = int(options.strict_level)
    add_date = not options.suppress_date_header
    max_head = options.max_header_size
    print(f"paths: head shortcut {'yes' if head_shortcut else 'no (read_head)'}, "
          f"direct callback {'yes' if direct_callback else 'no (app_outcome)'}, "
          f"reply {'reply_plan' if planned_reply else 'plan_reply'}", flush=True)
    if level >= 2 and not hasattr(shared, "make_parser"):
        raise NotBuildable("this mhd2 has no shared.make_parser")

    def no_body() -> Any:
        raise RuntimeError("hello world has no upload")

    async def serve_l1(transport: Transport) -> None:
        import httptools  # (L1 only: L2 up parse with mhd2's parser, h11 needs no httptools)

        proto = _Proto()
        parser = httptools.HttpRequestParser(proto)
        served = 0
        idle_timeout = request_timeout = options.timeout
        while True:
            if transport.timeout != idle_timeout:
                transport.set_timeout(idle_timeout)
            else:
                transport.arm(force=served == 0)
            if served:
                data = await transport.receive_later(RECV_SIZE)
            else:
                data = await transport.receive(RECV_SIZE)
            if not data:
                return
            if transport.timeout != request_timeout:
                transport.set_timeout(request_timeout)
            parser.feed_data(data)
            n, proto.done = proto.done, 0
            if n:
                served += n
                proto.headers = []
                proto.url = b""
                await transport.send(hello() * n)

    async def serve_l2plus(transport: Transport, conn: Any) -> None:
        parser = shared.make_parser(max_head)
        conn._parser = parser
        served = 0
        idle_timeout = request_timeout = options.timeout
        while True:
            if not parser.has_next:
                if parser.at_eof or shared.stopping:
                    return
                if transport.timeout != idle_timeout:
                    transport.set_timeout(idle_timeout)
                else:
                    transport.arm(force=served == 0)
                if served:
                    data = await transport.receive_later(RECV_SIZE)
                else:
                    data = await transport.receive(RECV_SIZE)
                if not data:
                    return
                while data[0] == 0x0D or data[0] == 0x0A:  # RFC 9112 §2.2 empty lines
                    data = data.lstrip(b"\r\n")
                    if not data:
                        data = await transport.receive(RECV_SIZE)
                        if not data:
                            return
                parser.feed(data)
            if transport.timeout != request_timeout:
                transport.set_timeout(request_timeout)
            head: Head | ParseError | None
            if head_shortcut:
                parsed = parser.next_head()
                if type(parsed) is not Head or strict or parser.fed_count > max_head:
                    head = await read_head(transport, parser, max_head, strict=strict,
                                           result=parsed)
                else:
                    parser.stop_recording()
                    head = parsed
            else:
                head = await read_head(transport, parser, max_head, strict=strict)
            if head is None or isinstance(head, ParseError):
                return
            served += 1
            if level == 2:
                await transport.send(hello())
            elif not await handle(conn, parser, head):
                return
            parser.next_request()

    async def handle(conn: Any, parser: Any, head: Head) -> bool:
        """``HTTP1Connection._handle`` and ``_reply`` up to *level*."""
        scan = head.scan
        version = head.version
        target = head.target
        exchange = Exchange(
            shared, conn, conn.info, head.method.decode("ascii"), target.decode("latin-1"),
            "HTTP/1.1" if version == b"1.1" else "HTTP/" + version.decode("ascii", "replace"),
            scan.fields, scan.upload_size,
        )
        conn._exchange = exchange
        problem = check_host(scan.host_values)
        if problem is None and (target[:1] != b"/" or version != b"1.1"
                                or scan.has_transfer_encoding or strict_level):
            problem = check_head(head.method, target, version, head.lower_fields, strict_level)
        if problem is not None:
            return False  # (the real loop answers 4xx and closes)
        must_close = scan.has_transfer_encoding and (scan.has_content_length or version != b"1.1")
        if strict_level >= 1 and scan.upload_size is None:
            conn.chunk_checker = ChunkedChecker()
            conn.chunk_checker.feed(parser.unparsed())
        else:
            conn.chunk_checker = None
        transport = conn.transport
        if level == 3:
            await transport.send(hello())
            conn._exchange = None
            exchange.end(ok)  # (an exchange never ended would leave its cycles to the GC)
            return True
        outcome: Any
        if direct_callback:
            action = call_app_now(exchange)
            if type(action) is ResponseAction:
                outcome = action.response
            else:
                if transport.holding:
                    await transport.flush()
                outcome = await outcome_mod.app_outcome(exchange, no_body, action)
        else:
            if transport.holding and getattr(shared, "app_may_wait", False):
                await transport.flush()
            outcome = await outcome_mod.app_outcome(exchange, no_body)
        if type(outcome) is not Response:
            return False
        if level == 4:
            set_response(exchange, outcome)
            await transport.send(hello())
            conn._exchange = None
            exchange.end(ok)
            return True
        return await reply(conn, parser, exchange, outcome, head, must_close)

    # (Before issue 21 the loop wrote the exchange's slots itself.)
    new_exchange = hasattr(Exchange, "set_response")

    def set_response(exchange: Any, response: Response) -> bool:
        """Give the exchange its response; whether an interim head goes first."""
        if new_exchange:
            return bool(exchange.set_response(response))
        exchange.response = response
        return exchange.interim_lock is not None

    async def reply(conn: Any, parser: Any, exchange: Exchange, response: Response,
                    head: Head, must_close: bool) -> bool:
        """``HTTP1Connection._reply`` on the hello-world path (L5)."""
        if set_response(exchange, response):
            await exchange.interim_done()
        scan = head.scan
        body_done = scan.upload_size == 0 or exchange.body_read
        if not body_done:
            return False  # (consume_buffered_body: not on the hello-world path)
        transport = conn.transport
        planned: Any
        if planned_reply:
            planned = reply_mod.reply_plan(response, (
                head.version == b"1.1", head.method == b"HEAD", scan.wants_close,
                scan.wants_keep_alive, must_close, shared.quiescing, add_date))
            plan = planned.plan
        else:
            from mhd2._http1.framing import plan_reply

            plan = planned = plan_reply(
                http11=head.version == b"1.1", is_head=head.method == b"HEAD",
                wants_close=scan.wants_close, wants_keep_alive=scan.wants_keep_alive,
                must_close=must_close, status=response.status,
                size_known=response.size is not None, chunked=response.chunked,
                conn_close=response.conn_close, head_only=response.head_only,
                http10_compatible_strict=response.http10_compatible_strict,
                http10_server=response.http10_server,
                app_content_length=response._app_content_length,
                daemon_stopping=shared.quiescing,
            )
        conn._reply_started = True
        if parser.has_more and plan.keep_alive and body_done and response.in_memory:
            transport.batch = True
            try:
                code = await reply_mod.send_reply(transport, exchange, response, planned,
                                                  add_date=add_date)
            finally:
                transport.batch = False
        else:
            code = await reply_mod.send_reply(transport, exchange, response, planned,
                                              add_date=add_date)
        conn._exchange = None
        exchange.end(code)
        return code is ok and bool(plan.keep_alive)

    async def handle_conn(sock: socket.socket) -> None:
        transport = SocketTransport.over_socket(sock, options.timeout)
        try:
            with transport.scope:
                if level == 1:
                    await serve_l1(transport)
                else:
                    local = sock.getsockname()
                    info = connection_info_for(sock.getpeername(), local)
                    # The exchanges' host, as in the real loop (its run() is not used).
                    conn = connection_mod.HTTP1Connection(transport, info, shared)
                    await serve_l2plus(transport, conn)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await transport.close()

    return handle_conn


def hello_response() -> Any:
    """mhd2_hello.py's response: reusable, static, ``Content-Type: text/plain``."""
    import mhd2

    response = mhd2.Response.from_buffer_static(200, BODY)
    response.add_header("Content-Type", "text/plain")
    response.set_options(reusable=True)
    return response


async def accept_loop(port: int, handler: Handler) -> None:
    """The rungs' accept loop (the experiment's): non-blocking accept, one task each."""
    import trio

    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", port))
    lsock.listen(1024)
    lsock.setblocking(False)
    print("ready", lsock.getsockname()[1], flush=True)  # (port 0: the one the kernel chose)

    async def accept(nursery: trio.Nursery) -> None:
        while True:
            try:
                conn, _ = lsock.accept()
            except BlockingIOError:
                await trio.lowlevel.wait_readable(lsock)
                continue
            nursery.start_soon(handler, conn)

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept, nursery)
            async for _ in signals:  # SIGINT or SIGTERM: stop, closing every connection
                nursery.cancel_scope.cancel()
                break


async def serve_daemon(port: int, parser_name: str) -> None:
    """The rung "mhd2": the real Daemon with mhd2_hello.py's callback and options."""
    import trio

    import mhd2

    response = hello_response()

    def on_request(request: mhd2.Request) -> mhd2.Action:
        return mhd2.action_from_response(request, response)

    daemon = mhd2.Daemon(on_request, host="127.0.0.1", port=port, connection_limit=20000,
                         timeout=TIMEOUT, parser=parser_name)
    async with daemon as running:
        print("ready", running.port, flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break


#: ``run --schedule``: how trio orders the tasks woken in one batch, passed to
#: the server processes through this environment variable.
SCHEDULE_ENV = "MHD2_LADDER_SCHEDULE"
SCHEDULES = ("trio", "fifo", "lifo")


def _set_schedule(schedule: str) -> None:
    """An experiment on tail latency, not a setting for servers: trio runs a
    batch of woken tasks in order or reversed, at random (``trio``); ``fifo``
    always runs them in the order they were woken, ``lifo`` always reversed.
    Patches trio's private scheduler random source."""
    if schedule == "trio":
        return
    from trio._core import _run  # private: for this experiment only

    # unrolled_run reverses the batch when _r.random() < 0.5 and then pops
    # from its end: reversed is FIFO.
    value = 0.0 if schedule == "fifo" else 1.0
    _run._r.random = lambda: value  # type: ignore[method-assign]
    print(f"paths: trio batches run {schedule.upper()}", flush=True)


def serve(port: int, level: str, parser_name: str, root: str | None) -> int:
    """Run one rung until SIGINT; the exit status (3: not buildable here)."""
    sys.path.insert(0, root or str(ROOT))
    import trio

    import mhd2

    print("mhd2 from", os.path.dirname(mhd2.__file__), flush=True)
    _set_schedule(os.environ.get(SCHEDULE_ENV, "trio"))
    try:
        if level == "mhd2":
            trio.run(serve_daemon, port, parser_name)
            return 0
        handler = handle_l0 if level == "L0" else make_mhd2_handler(int(level[1:]), parser_name)
        trio.run(accept_loop, port, handler)
    except NotBuildable as exc:
        print(f"n/a: {exc}", flush=True)
        return EXIT_NOT_APPLICABLE
    except (ImportError, AttributeError) as exc:
        print(f"n/a: {type(exc).__name__}: {exc}", flush=True)
        return EXIT_NOT_APPLICABLE
    except KeyboardInterrupt:
        pass
    return 0


# --------------------------------------------------------------------------- run


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def measure(level: str, root: str, args: argparse.Namespace, logdir: Path) -> dict[str, Any]:
    """One run of one rung: its server on CPU 0, wrk on CPU 1.

    Raises:
        bench.run.NotApplicable: the rung cannot be built on this checkout.
    """
    from bench.run import (
        NotApplicable,
        _cpu_times,
        _default_sigint,
        free_port,
        process_cpu_seconds,
        run_wrk,
        stop_server,
        taskset_prefix,
        wait_ready,
    )

    port = free_port()
    cmd = [sys.executable, str(Path(__file__).resolve()), "serve", str(port), level,
           "--parser", args.parser, "--root", root]
    log = logdir / f"ladder-{level}-{port}.log"
    with log.open("wb") as logf:
        proc = subprocess.Popen(taskset_prefix("0") + cmd, stdin=subprocess.DEVNULL,
                                stdout=logf, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_default_sigint)
    try:
        try:
            wait_ready(port, proc, 30.0)
        except RuntimeError as exc:
            lines = log.read_text(errors="replace").splitlines()
            if proc.poll() == EXIT_NOT_APPLICABLE:
                reasons = [ln[5:] for ln in lines if ln.startswith("n/a: ")]
                raise NotApplicable(reasons[-1] if reasons else "not applicable") from exc
            raise RuntimeError(f"{level}: {exc}; end of {log}:\n  " + "\n  ".join(lines[-5:])) from exc
        if args.warmup > 0:
            run_wrk(port, mode="keepalive", duration=args.warmup, connections=args.connections,
                    cpu="1")
        cpu0 = process_cpu_seconds(proc.pid)
        busy0, _ = _cpu_times({0})
        t0 = time.monotonic()
        w = run_wrk(port, mode="keepalive", duration=args.duration,
                    connections=args.connections, cpu="1")
        elapsed = time.monotonic() - t0
        used = process_cpu_seconds(proc.pid) - cpu0
        busy1, _ = _cpu_times({0})
        if proc.poll() is not None:
            raise RuntimeError(f"{level}: the server died during the run (see {log})")
    finally:
        stop_server(proc)
    notes = [ln for ln in log.read_text(errors="replace").splitlines()
             if ln.startswith(("mhd2 from ", "paths: "))]
    errors = sum(w.socket_errors.values()) + w.non_2xx
    return {
        "level": level,
        "us": 1e6 * used / max(1, w.requests),
        "rps": w.requests_per_s,
        "p50_ms": w.p50_ms,
        "p99_ms": w.p99_ms,
        "others_cpu0": 100 * ((busy1 - busy0) - used) / elapsed,
        "errors": errors,
        "notes": notes,
    }


def run(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(ROOT))
    from bench.run import NotApplicable

    levels = [lv.strip() for lv in args.levels.split(",") if lv.strip()]
    for lv in levels:
        if lv not in LEVELS:
            raise SystemExit(f"unknown level {lv!r}; choose from {', '.join(LEVELS)}")
    logdir = Path(args.logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    roots = [str(Path(r).resolve()) for r in (args.root or [str(ROOT)])]
    names: dict[str, str] = {}
    for root in roots:
        commit = subprocess.run(["git", "-C", root, "describe", "--always", "--dirty"],
                                capture_output=True, text=True, check=False).stdout.strip()
        names[root] = f"{root} ({commit or 'unknown commit'})"
    os.environ[SCHEDULE_ENV] = args.schedule
    print(f"ladder: parser={args.parser}, schedule={args.schedule}, wrk -t1 -c{args.connections} -d{args.duration:g}s, "
          f"{args.reps} reps, mhd2 from {'; '.join(names.values())}", flush=True)
    print(f"load average at start {loadavg()}", flush=True)
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    not_built: dict[tuple[str, str], str] = {}
    seen: set[tuple[str, str]] = set()
    runs = [(root, lv) for lv in levels for root in roots]
    for rep in range(args.reps):
        for root, lv in runs if rep % 2 == 0 else runs[::-1]:
            key = (root, lv)
            if key in not_built:
                continue
            tag = f"{lv:<5}" + (f" {Path(root).name:<12}" if len(roots) > 1 else "")
            try:
                r = measure(lv, root, args, logdir)
            except NotApplicable as exc:
                not_built[key] = str(exc)
                print(f"  {tag} rep{rep}: n/a -- {exc}", flush=True)
                continue
            except Exception as exc:  # a broken rung: say so, measure the others
                print(f"  {tag} rep{rep}: FAILED -- {exc}", flush=True)
                continue
            results.setdefault(key, []).append(r)
            for note in r["notes"]:
                if (root, note) not in seen:
                    seen.add((root, note))
                    print(f"  ({tag.strip()}: {note})", flush=True)
            p99 = f"{r['p99_ms']:5.2f}" if r["p99_ms"] is not None else "  n/a"
            print(f"  {tag} rep{rep}: {r['us']:6.1f} us/req {r['rps']:>9,.0f} req/s  "
                  f"p99 {p99} ms  others on CPU 0 {r['others_cpu0']:5.1f}%"
                  + (f"  {r['errors']} errors" if r["errors"] else ""), flush=True)
    print(f"\nload average at end {loadavg()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"parser": args.parser, "duration": args.duration, "reps": args.reps,
                       "roots": names, "not_built": {f"{r} {lv}": why
                                                     for (r, lv), why in not_built.items()},
                       "runs": [{**r, "root": root} for (root, _), rs in results.items()
                                for r in rs]}, f, indent=1)
    medians: dict[tuple[str, str], float] = {}
    for root in roots:
        print(f"\nmhd2 from {names[root]}:\n")
        print("| rung | adds | µs CPU / request (median) | min–max | req/s | Δ µs vs rung above "
              "| p99 ms | others on CPU 0 |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        above: float | None = None
        for lv in levels:
            key = (root, lv)
            rs = results.get(key, [])
            if key in not_built or not rs:
                why = f"n/a: {not_built[key]}" if key in not_built else "failed"
                print(f"| {lv} | {WHAT[lv]} | {why} | | | | | |")
                above = None
                continue
            us = medians[key] = statistics.median(r["us"] for r in rs)
            rps = statistics.median(r["rps"] for r in rs)
            lo, hi = min(r["us"] for r in rs), max(r["us"] for r in rs)
            delta = "" if above is None else f"{us - above:+.1f}"
            # Others' share of the server's CPU inflates its µs per request
            # (caches, the hypervisor): compare rungs measured under alike shares.
            others = statistics.median(r["others_cpu0"] for r in rs)
            p99s = [r["p99_ms"] for r in rs if r["p99_ms"] is not None]
            p99 = f"{statistics.median(p99s):.2f}" if p99s else "n/a"
            print(f"| {lv} | {WHAT[lv]} | {us:.1f} | {lo:.1f}–{hi:.1f} | {rps:,.0f} | {delta} "
                  f"| {p99} | {others:.0f} % |")
            above = us
    if len(roots) > 1:
        first = roots[0]
        print("\nside by side (µs CPU / request, median; Δ against the first checkout):\n")
        print("| rung | " + " | ".join(Path(r).name for r in roots) + " |")
        print("| --- |" + " ---: |" * len(roots))
        for lv in levels:
            cells = []
            for root in roots:
                us_or_none = medians.get((root, lv))
                base = medians.get((first, lv))
                if us_or_none is None:
                    cells.append("n/a")
                elif root == first or base is None:
                    cells.append(f"{us_or_none:.1f}")
                else:
                    cells.append(f"{us_or_none:.1f} ({us_or_none - base:+.1f})")
            print(f"| {lv} | " + " | ".join(cells) + " |")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("serve", help="run one rung in the foreground")
    sp.add_argument("port", type=int, help="0: a free one (the line \"ready PORT\" says which)")
    sp.add_argument("level", choices=LEVELS)
    sp.add_argument("--parser", default="httptools", choices=("auto", "h11", "httptools"))
    sp.add_argument("--root", help="the checkout whose mhd2 to import (default: this one)")
    rp = sub.add_parser("run", help="run every rung in turn and print the table")
    rp.add_argument("--parser", default="httptools", choices=("auto", "h11", "httptools"),
                    help="mhd2's parser from L2 up (L0 and L1 always parse with httptools)")
    rp.add_argument("--duration", type=float, default=5.0, help="seconds of wrk per run")
    rp.add_argument("--warmup", type=float, default=1.0, help="seconds of wrk before each run")
    rp.add_argument("--reps", type=int, default=2, help="runs per rung, in alternating order")
    rp.add_argument("--connections", type=int, default=50)
    rp.add_argument("--levels", default=",".join(LEVELS), help="comma-separated rungs to run")
    rp.add_argument("--root", action="append",
                    help="a checkout whose mhd2 to import (default: this one); repeat to compare")
    rp.add_argument("--json", help="also write every run's figures to this file")
    rp.add_argument("--schedule", choices=SCHEDULES, default="trio",
                    help="trio's order of a batch of woken tasks (an experiment on p99)")
    rp.add_argument("--logdir", default=os.path.join(
        os.environ.get("TMPDIR", "/tmp"), "mhd2-ladder"), help="server logs go here")
    args = ap.parse_args(argv)
    if args.command == "serve":
        return serve(args.port, args.level, args.parser, args.root)
    return run(args)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
