"""The h11 and httptools backends behave identically (docs/design.rst, "Parser backends"; issue 11).

A differential suite: two daemons that differ only in ``parser=`` run the same
echo application; every case of :mod:`parity_corpus` sends the same bytes to
each, and the normalised transcripts -- every response's status line and
headers (``Date`` excluded) and body, whether the server closed the
connection, and the :class:`~mhd2.RequestEndedCode` of every request -- must be
equal.  The echo application answers with everything a :class:`~mhd2.Request`
exposes (method, version, target, percent-decoded path, query arguments with
``+`` handling, raw header names in order with duplicates, cookies, the whole
body, trailers), so a difference in what the parser hands on shows as a
different body, and a difference in what it refuses as a different status or
close.

Each test collects *all* mismatches of its corpus and fails with the whole
list (input, then the h11 transcript against the httptools one as a diff).

Timing never decides a transcript: the in-memory cases send each part, then
wait until every task is blocked (``trio.testing.wait_all_tasks_blocked``:
the daemon has done all it can with the bytes so far) before they look at
what came back or send the next part.  The TCP cases read until the server
closes or stays quiet for a bounded time, and a mismatch there is re-run with
a longer quiet period before it is reported.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import subprocess
import sys
import textwrap
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from itertools import count
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parity_corpus import (
    MAX_HEADER_SIZE,
    SPLIT_REQUESTS,
    VALID_HEADS,
    Case,
    assembled,
    corpus,
    mutations,
    queries,
    splits,
)

import mhd2
from mhd2._http1.parser import CLOSED, NEED_DATA, BodyEnd, H11Parser, Head, ParseError, Parser
from mhd2._http1.plain import PlainParser
from mhd2.websocket import ConnectionClosed, WebSocket, action_websocket

try:
    from mhd2._http1.llhttp import LlhttpParser, LlhttpState
except ImportError:  # no httptools: only the pure-Python fast path is compared
    LlhttpParser = None  # type: ignore[assignment,misc]

#: The fast paths compared with h11 alone: every test runs once per entry
#: (the transcripts keep the key "httptools" for the fast side).  The
#: pure-Python one does not depend on what is installed, so where httptools is
#: (the httptools session of ``nox -s tests``) only llhttp is compared, and
#: the h11 session compares the Python one; ``MHD2_PARITY_ALL=1`` runs both here.
FAST_PARSERS: dict[str, Any] = {}
if LlhttpParser is None or os.environ.get("MHD2_PARITY_ALL") == "1":
    FAST_PARSERS["plain"] = PlainParser
if LlhttpParser is not None:
    # Every case of the run shares one llhttp parser, as a daemon's
    # connections do: whatever one head leaves behind must not change another's answer.
    _SHARED_LLHTTP = LlhttpState()
    FAST_PARSERS["llhttp"] = lambda max_head: LlhttpParser(max_head, _SHARED_LLHTTP)
_FAST: list[Any] = [PlainParser]

PARSERS = ("h11", "httptools")


@pytest.fixture(autouse=True, scope="module", params=sorted(FAST_PARSERS))
def fast_parser(request: pytest.FixtureRequest) -> Any:
    """Which fast path this run compares with h11 alone (``plain`` or ``llhttp``)."""
    _FAST[0] = FAST_PARSERS[request.param]
    return _FAST[0]


def needs_httptools() -> None:
    if LlhttpParser is None:
        pytest.skip("needs httptools")
#: MHD2's ``PROTOCOL_STRICT_LEVEL`` runs from -3 to 3; mhd2's rules are
#: thresholds (today: < 0 lenient, 0 default, >= 1 strict), so the levels next
#: to 0 and the two extremes cover every rule, one added at -2 or 2 included.
STRICT_LEVELS = (-3, -1, 0, 1, 3)
#: ``large_buffer_size`` of the ``/full`` path.
FULL_LIMIT = 100_000
#: Multiplies the number of random cases (``MHD2_PARITY_SCALE=50`` for a long hunt).
SCALE = int(os.environ.get("MHD2_PARITY_SCALE", "1"))
#: Bound for one case on both daemons.
WAIT = 20.0
#: TCP cases: the server has said all it will once it is quiet this long.
QUIET = 0.25
QUIET_CONFIRM = 1.5

_ports = count(20000)


# -- the echo application ------------------------------------------------------------


def snapshot(request: mhd2.Request) -> dict[str, Any]:
    """Everything the request exposes that a parser backend could change."""
    kind = mhd2.ValueKind
    return {
        "method": request.method,
        "http_method": request.http_method.name,
        "version": request.version,
        "uri": request.uri,
        "path": request.path,
        "args": request.get_values(kind.GET_ARGUMENT),
        "args_first": dict(request.args),
        "headers": request.get_values(kind.HEADER),
        "host": request.get_value(kind.HEADER, "host"),
        "cookies": request.get_values(kind.COOKIE),
        "upload_size": request.upload_size,
    }


def json_response(request: mhd2.Request, document: dict[str, Any]) -> mhd2.Response:
    """A 200 response carrying *document* as JSON."""
    body = json.dumps(document, sort_keys=True).encode()
    response = mhd2.Response.from_buffer_copy(200, body)
    response.add_header("Content-Type", "application/json")
    # The transcript reader frames a reply to HEAD (no body) by this.
    response.add_header("X-Method", request.method)
    return response


async def ws_echo(ws: WebSocket) -> None:
    """Send every WebSocket message back."""
    try:
        while True:
            await ws.send(await ws.receive())
    except ConnectionClosed:
        pass


async def raw_echo(request: mhd2.Request, urh: mhd2.UpgradeHandle) -> None:
    """On an upgraded connection: say ``ECHO:``, then send every byte back."""
    try:
        await urh.upgraded_send(b"ECHO:")
        while data := await urh.upgraded_recv(65536):
            await urh.upgraded_send(data)
    except mhd2.UpgradedError:
        pass
    await urh.upgraded_close()


class EchoApp:
    """The request callback both daemons run, and the end codes it is told of.

    Paths: ``/noread...`` answers without reading the body; ``/ws...`` is a
    WebSocket echo (``action_websocket``); ``/up...`` reads the body, then
    upgrades to a raw byte echo; ``/full...`` reads the body whole
    (``action_process_upload_full``, 413 over :data:`FULL_LIMIT`);
    ``/suspend...`` parks the request first
    (:attr:`parked`; the test resumes it); anything else reads the whole body
    and answers the request's :func:`snapshot` with the body and trailers.
    """

    def __init__(self) -> None:
        #: client port (one per connection) -> RequestEndedCode names
        self.ended: defaultdict[int, list[str]] = defaultdict(list)
        #: ``/suspend`` requests parked and not resumed yet (the test resumes them)
        self.parked: list[mhd2.Request] = []

    def notify_ended(self, request: mhd2.Request, code: mhd2.RequestEndedCode) -> None:
        self.ended[request.connection.client_address[1]].append(code.name)

    def __call__(self, request: mhd2.Request) -> mhd2.Action:
        path = request.path
        if path.startswith("/noread"):
            return mhd2.action_from_response(request, json_response(request, snapshot(request)))
        if path.startswith("/ws"):
            return action_websocket(request, ws_echo, compression=False)
        if path.startswith("/suspend") and request.app_context is None:
            request.app_context = "parked"
            self.parked.append(request)
            return mhd2.action_suspend(request)
        request.app_context = bytearray()
        if path.startswith("/full"):
            return mhd2.action_process_upload_full(request, FULL_LIMIT, self.upload)
        return mhd2.action_process_upload_inc(request, self.upload)

    def upload(self, request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        if data and request.path.startswith("/full"):
            request.app_context += data  # the whole body, in one call
            data = b""
        if data:
            request.app_context += data
            return mhd2.upload_action_continue(request)
        if request.path.startswith("/up") and request.version == "HTTP/1.1":
            return mhd2.upload_action_upgrade(request, "echo", raw_echo)
        document = snapshot(request)
        document["body"] = bytes(request.app_context).decode("latin-1")
        document["footers"] = request.get_values(mhd2.ValueKind.FOOTER)
        document["upload_received"] = request.upload_received
        document["upload_remaining"] = request.upload_remaining
        return mhd2.upload_action_from_response(request, json_response(request, document))


@asynccontextmanager
async def daemons(app: EchoApp, **options: Any) -> AsyncIterator[dict[str, mhd2.Daemon]]:
    """One daemon per backend, same application and options."""
    options.setdefault("max_header_size", MAX_HEADER_SIZE)
    async with (
        mhd2.Daemon(app, port=0, parser="h11", notify_request_ended=app.notify_ended,
                    **options) as a,
        mhd2.Daemon(app, port=0, parser="h11", notify_request_ended=app.notify_ended,
                    **options) as b,
    ):
        # h11 alone against the fast path under test, whatever the install has.
        a._shared.make_parser = H11Parser
        b._shared.make_parser = _FAST[0]
        yield {"h11": a, "httptools": b}


# -- transcripts ------------------------------------------------------------------------


def _chunked(data: bytes) -> tuple[bytes, bytes, list[bytes]] | None:
    """Decode a chunked body: (body, rest, trailer lines), or None if incomplete/odd."""
    body = bytearray()
    while True:
        end = data.find(b"\r\n")
        if end < 0:
            return None
        try:
            size = int(data[:end].split(b";")[0], 16)
        except ValueError:
            return None
        data = data[end + 2:]
        if size == 0:
            trailers_end = data.find(b"\r\n\r\n") if not data.startswith(b"\r\n") else -2
            if trailers_end == -1:
                return None
            trailers = data[:trailers_end].split(b"\r\n") if trailers_end > 0 else []
            return bytes(body), data[trailers_end + 4:], trailers
        if len(data) < size + 2:
            return None
        body += data[:size]
        data = data[size + 2:]


#: The ``Date`` field of a response head (it changes from one run to the next).
_DATE = re.compile(rb"\r\nDate: [^\r\n]*(?=\r\n)")


def render_responses(raw: bytes) -> list[str]:
    """Split a server's byte stream into readable lines: heads without ``Date``, bodies."""
    lines: list[str] = []
    rest = _DATE.sub(b"", raw)
    while rest:
        end = rest.find(b"\r\n\r\n")
        if end < 0:
            lines.append(f"<unframed> {rest!r}")
            break
        head = rest[:end].split(b"\r\n")
        rest = rest[end + 4:]
        lines.append(f"<status> {head[0]!r}")
        fields = head[1:]
        lines.extend(f"  {line!r}" for line in fields)
        lower = {line.split(b":", 1)[0].strip().lower(): line.split(b":", 1)[-1].strip()
                 for line in fields}
        parts = head[0].split(b" ")
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if status == 101:
            lines.append(f"<upgraded> {rest!r}")
            break
        if 100 <= status < 200 or status in (204, 304) or lower.get(b"x-method") == b"HEAD":
            continue
        if b"content-length" in lower:
            size = int(lower[b"content-length"])
            body, rest = rest[:size], rest[size:]
            lines.extend(_body_lines(body))
        elif lower.get(b"transfer-encoding", b"").lower() == b"chunked":
            decoded = _chunked(rest)
            if decoded is None:
                lines.append(f"<bad chunked body> {rest!r}")
                break
            body, rest, trailers = decoded
            lines.extend(_body_lines(body))
            lines.extend(f"  <trailer> {t!r}" for t in trailers)
        else:
            lines.extend(_body_lines(rest))
            break
    return lines


def _body_lines(body: bytes) -> list[str]:
    """A JSON echo one key per line (so a diff points at the key), else the bytes."""
    try:
        document = json.loads(body)
    except ValueError:
        return [f"  <body> {body!r}"] if body else []
    if not isinstance(document, dict):
        return [f"  <body> {body!r}"]
    return [f"  <echo> {key} = {json.dumps(value)}" for key, value in sorted(document.items())]


@dataclass
class Outcome:
    """What one connection saw."""

    raw: bytes
    closed: bool
    ended: list[str]
    send_refused_at: int | None = None

    def lines(self) -> list[str]:
        out = render_responses(self.raw)
        out.append(f"<closed by server> {self.closed}")
        if self.send_refused_at is not None:
            out.append(f"<send refused at part> {self.send_refused_at}")
        out.append(f"<ended> {self.ended}")
        return out


# -- running a case -----------------------------------------------------------------------


async def run_in_memory(daemon: mhd2.Daemon, app: EchoApp, case: Case, *,
                        until_closed: bool = False) -> Outcome:
    """Serve *case* over an in-memory stream; the daemon has processed each part before
    the next is sent (all tasks blocked), so the outcome does not depend on timing.

    With *until_closed*, wait (bounded) for the server to close the connection
    before looking, e.g. for a timeout to pass.
    """
    port = next(_ports)
    client, server = trio.testing.memory_stream_pair()
    received = bytearray()
    closed = False
    closed_event = trio.Event()
    refused: int | None = None
    served = trio.Event()

    async def serve() -> None:
        try:
            await daemon.serve_stream(server, client_address=("127.0.0.1", port))
        finally:
            served.set()

    async def read() -> None:
        nonlocal closed
        while True:
            try:
                chunk = await client.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                chunk = b""
            if not chunk:
                closed = True
                closed_event.set()
                return
            received.extend(chunk)

    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            reader = trio.CancelScope()

            async def guarded_read() -> None:
                with reader:
                    await read()

            nursery.start_soon(guarded_read)
            await trio.testing.wait_all_tasks_blocked()
            for index, part in enumerate(case.parts):
                try:
                    await client.send_all(part)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    refused = index
                    break
                await trio.testing.wait_all_tasks_blocked()
            if case.half_close and refused is None:
                try:
                    await client.send_eof()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    refused = len(case.parts)
                await trio.testing.wait_all_tasks_blocked()
            # Parked requests are resumed once all parts are sent, so the
            # later parts arrive while they are parked.
            while app.parked:
                mhd2.request_resume(app.parked.pop(0))
                await trio.testing.wait_all_tasks_blocked()
            if until_closed:
                await closed_event.wait()
                await trio.testing.wait_all_tasks_blocked()
            raw, was_closed = bytes(received), closed
            reader.cancel()
            await client.aclose()
            await served.wait()
    return Outcome(raw, was_closed, app.ended.pop(port, []), refused)


@dataclass
class Mismatch:
    where: str
    case: Case
    outcomes: dict[str, Outcome]

    def render(self) -> str:
        a, b = (self.outcomes[p].lines() for p in PARSERS)
        diff = difflib.unified_diff([line[:300] for line in a], [line[:300] for line in b],
                                    "h11", "httptools", lineterm="", n=2)
        data = self.case.data
        shown = repr(data[:400]) + (f" ... ({len(data)} bytes)" if len(data) > 400 else "")
        parts = f" in {len(self.case.parts)} parts" if len(self.case.parts) > 1 else ""
        closing = " + half-close" if self.case.half_close else ""
        return (f"--- [{self.where}] {self.case.name}\n    input{parts}{closing}: {shown}\n"
                + textwrap.indent("\n".join(diff), "    "))


def report(mismatches: Sequence[Mismatch], total: int) -> str:
    """All mismatches, readable (printed too, so a failing run shows every one)."""
    text = "\n".join(m.render() for m in mismatches)
    summary = f"{len(mismatches)} of {total} cases differ between h11 and httptools"
    print(summary + "\n" + text)
    return summary + "\n" + text


async def compare_in_memory(where: str, cases: Iterable[Case], **options: Any) -> tuple[
        list[Mismatch], int]:
    """Run every case on both backends; return the mismatches and the number of cases."""
    app = EchoApp()
    mismatches = []
    total = 0
    async with daemons(app, **options) as by_parser:
        for case in cases:
            total += 1
            outcomes = {name: await run_in_memory(by_parser[name], app, case) for name in PARSERS}
            if outcomes["h11"].lines() != outcomes["httptools"].lines():
                mismatches.append(Mismatch(where, case, outcomes))
    return mismatches, total


# -- the corpus, on both backends ----------------------------------------------------------

CORPUS = corpus()


def test_the_corpus_is_large_and_varied() -> None:
    assert len(CORPUS) > 800
    assert any(c.half_close for c in CORPUS) and any(len(c.parts) > 1 for c in CORPUS)


@pytest.mark.parametrize("strict_level", STRICT_LEVELS)
async def test_corpus_transcripts_are_identical(strict_level: int) -> None:
    mismatches, total = await compare_in_memory(f"strict {strict_level}", CORPUS,
                                                strict_level=strict_level)
    assert not mismatches, report(mismatches, total)


@pytest.mark.parametrize("plus_as_space", [True, False])
async def test_query_decoding_is_identical(plus_as_space: bool) -> None:
    mismatches, total = await compare_in_memory(
        f"plus_as_space {plus_as_space}", queries(), uri_query_plus_as_space=plus_as_space)
    assert not mismatches, report(mismatches, total)


async def test_query_plus_decoding_reaches_the_application() -> None:
    """The echo really shows decoded arguments (so the comparison above means something)."""
    app = EchoApp()
    async with daemons(app) as by_parser:
        for name in PARSERS:
            out = await run_in_memory(by_parser[name], app, queries()[0])
            assert '  <echo> args = [["a b", "c d"]]' in out.lines(), out.lines()


@pytest.mark.parametrize("name", sorted(SPLIT_REQUESTS))
async def test_split_at_every_byte_boundary(name: str) -> None:
    """A request split anywhere (each part processed before the next arrives) gives the
    same transcript on both backends, and the same as when it arrives whole."""
    whole = Case(f"{name} whole", (SPLIT_REQUESTS[name],))
    app = EchoApp()
    problems = []
    async with daemons(app, strict_level=1) as by_parser:
        reference = {p: (await run_in_memory(by_parser[p], app, whole)).lines() for p in PARSERS}
        assert reference["h11"] == reference["httptools"]
        mismatches = []
        for case in splits(name):
            outcomes = {p: await run_in_memory(by_parser[p], app, case) for p in PARSERS}
            if outcomes["h11"].lines() != outcomes["httptools"].lines():
                mismatches.append(Mismatch("split", case, outcomes))
            elif outcomes["h11"].lines() != reference["h11"]:
                problems.append(case.name)
    assert not mismatches, report(mismatches, len(splits(name)))
    # Splitting is invisible except for when 100 Continue can be sent.
    if name != "Expect":
        assert not problems, problems


async def test_seeded_mutations_are_identical() -> None:
    """Random edits of valid heads and requests assembled at random from the corpus'
    pieces (fixed seeds), mostly followed by a request that must not be answered
    when the one before was refused (no smuggling)."""
    cases = [*mutations(300 * SCALE), *assembled(500 * SCALE)]
    mismatches, total = await compare_in_memory("mutation", cases)
    assert not mismatches, report(mismatches, total)


async def test_websocket_echo_is_identical() -> None:
    """The 101 and the frames after it (text, binary, close) are the same on both."""
    case = next(c for c in CORPUS if c.name == "websocket handshake + frames")
    app = EchoApp()
    async with daemons(app) as by_parser:
        outcomes = {p: await run_in_memory(by_parser[p], app, case) for p in PARSERS}
    for outcome in outcomes.values():
        assert outcome.raw.startswith(b"HTTP/1.1 101 ")
        assert b"\x81\x05hello" in outcome.raw and b"\x82\x02\x00\xff" in outcome.raw
    assert outcomes["h11"].lines() == outcomes["httptools"].lines()


TIMEOUT_CASES = (
    Case("partial request line", (b"GET /slow HT",)),
    Case("partial head", (b"GET /slow HTTP/1.1\r\nHost: h\r\n",)),
    Case("partial head, 0.9 form", (b"GET /slow\r\n",)),
    Case("idle after a response", (b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n",)),
    Case("partial CL body", (b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\nab",)),
    Case("partial CL body, unread", (b"POST /noread HTTP/1.1\r\nHost: h\r\n"
                                     b"Content-Length: 9\r\n\r\nab",)),
    Case("partial chunked body", (b"POST /echo HTTP/1.1\r\nHost: h\r\n"
                                  b"Transfer-Encoding: chunked\r\n\r\n5\r\nab",)),
    Case("Expect, body never sent", (b"POST /echo HTTP/1.1\r\nHost: h\r\n"
                                     b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n",)),
    Case("pipelined partial head", (b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\n",)),
    Case("trickled head", (b"GET /slow", b" HTTP/1.1\r\n", b"Host: h\r\n")),
)


async def test_timeouts_are_identical(autojump_clock: trio.testing.MockClock) -> None:
    """What an unfinished request gets when the inactivity timeout passes (408 or a
    close) is the same on both backends (in memory on MockClock: the timeouts pass
    in virtual time)."""
    app = EchoApp()
    mismatches = []
    async with daemons(app, timeout=0.2) as by_parser:
        for case in TIMEOUT_CASES:
            outcomes = {p: await run_in_memory(by_parser[p], app, case, until_closed=True)
                        for p in PARSERS}
            assert all(o.closed for o in outcomes.values())
            if case.name == "partial head":
                assert outcomes["httptools"].raw.startswith(b"HTTP/1.1 408 ")
            if outcomes["h11"].lines() != outcomes["httptools"].lines():
                mismatches.append(Mismatch("timeout", case, outcomes))
    assert not mismatches, report(mismatches, len(TIMEOUT_CASES))


# -- the same over real TCP sockets ---------------------------------------------------------


async def run_tcp(port: int, case: Case, quiet: float) -> Outcome:
    """Send *case* over TCP; read until the server closes or is quiet for *quiet* s."""
    received = bytearray()
    closed = False
    refused: int | None = None
    with trio.fail_after(WAIT):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            for index, part in enumerate(case.parts):
                try:
                    await stream.send_all(part)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    refused = index
                    break
            if case.half_close and refused is None:
                try:
                    await stream.send_eof()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    refused = len(case.parts)
            while True:
                chunk: bytes | None = None
                with trio.move_on_after(quiet):
                    try:
                        chunk = await stream.receive_some(65536)
                    except trio.BrokenResourceError:
                        chunk = b""
                if chunk is None:
                    break
                if not chunk:
                    closed = True
                    break
                received.extend(chunk)
    return Outcome(bytes(received), closed, [], refused)


async def test_corpus_over_tcp_is_identical() -> None:
    """One pass of the single-send corpus over real sockets, cases run concurrently."""
    cases = [c for c in CORPUS if len(c.parts) == 1 and not c.name.startswith("suspend")]
    app = EchoApp()
    suspects: list[Case] = []
    limiter = trio.CapacityLimiter(48)
    async with daemons(app) as by_parser:
        ports = {p: d.port for p, d in by_parser.items()}

        async def both(case: Case, quiet: float) -> dict[str, Outcome]:
            outcomes: dict[str, Outcome] = {}

            async def run(parser: str) -> None:
                outcomes[parser] = await run_tcp(ports[parser], case, quiet)

            async with trio.open_nursery() as nursery:
                for parser in PARSERS:
                    nursery.start_soon(run, parser)
            return outcomes

        async def one(case: Case) -> None:
            async with limiter:
                outcomes = await both(case, QUIET)
            if outcomes["h11"].lines() != outcomes["httptools"].lines():
                suspects.append(case)

        async with trio.open_nursery() as nursery:
            for case in cases:
                nursery.start_soon(one, case)
        # Confirm each suspect with a longer quiet period.
        mismatches: list[Mismatch] = []

        async def confirm(case: Case) -> None:
            async with limiter:
                outcomes = await both(case, QUIET_CONFIRM)
            if outcomes["h11"].lines() != outcomes["httptools"].lines():
                mismatches.append(Mismatch("tcp", case, outcomes))

        async with trio.open_nursery() as nursery:
            for case in suspects:
                nursery.start_soon(confirm, case)
        mismatches.sort(key=lambda m: cases.index(m.case))
    assert not mismatches, report(mismatches, len(cases))


# -- the parsers alone, sans I/O ----------------------------------------------------------------


def drive(parser: Parser, parts: Sequence[bytes], eof: bool) -> list[object]:
    """Run *parser* over *parts* as the HTTP/1 loop does; list what it reports."""
    queue = [*parts, b""] if eof else list(parts)
    out: list[object] = []
    reading_head = True
    body = bytearray()
    while len(out) < 40:
        result = parser.next_head() if reading_head else parser.next_body()
        if result is NEED_DATA:
            if reading_head and parser.fed_count > MAX_HEADER_SIZE:
                out.append(("too large", 431))
                break
            if not queue:
                out.append("NEED_DATA")
                break
            parser.feed(queue.pop(0))
            continue
        if isinstance(result, ParseError):
            out.append(("error", result.status))
            break
        if result is CLOSED:
            out.append("CLOSED")
            break
        if isinstance(result, Head):
            length = parser.head_length()
            out.append(("head", result.method, result.target, result.version,
                        [tuple(f) for f in result.lower_fields], result.scan, length,
                        parser.raw_head_bytes()[:length], parser.expects_continue))
            parser.stop_recording()
            reading_head = False
            body = bytearray()
        elif isinstance(result, BodyEnd):
            out.append(("body", bytes(body), result.trailers, parser.unparsed()))
            parser.next_request()
            out.append(("next", parser.has_next, parser.at_eof))
            reading_head = True
        else:
            assert isinstance(result, bytes | bytearray)
            body += result
    return out


def parsers_differ(parts: Sequence[bytes], eof: bool) -> tuple[list[object], list[object]] | None:
    a = drive(H11Parser(MAX_HEADER_SIZE), parts, eof)
    b = drive(_FAST[0](MAX_HEADER_SIZE), parts, eof)
    return None if a == b else (a, b)


def test_parser_results_on_the_corpus_are_identical() -> None:
    """Below the daemon: the two Parser objects report the same things for every case."""
    found = []
    for case in [*CORPUS, *assembled(3000 * SCALE, seed=7)]:
        for eof in {case.half_close, True}:
            diff = parsers_differ(case.parts, eof)
            if diff is not None:
                found.append(f"{case.name} (eof={eof}): {case.data[:200]!r}\n"
                             f"    h11:       {diff[0]!r:.600}\n    httptools: {diff[1]!r:.600}")
    assert not found, f"{len(found)} parser-level differences\n" + "\n".join(found)


@st.composite
def mutated_heads(draw: st.DrawFn) -> tuple[list[bytes], bool]:
    """A valid request with random byte edits, cut into random parts."""
    data = bytearray(draw(st.sampled_from(VALID_HEADS)))
    alphabet = st.sampled_from(list(b"\x00\t\n\r \"#%+,-./:;<>?@[\\]^`{|}\x7f\x80\xff09AZaz"))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["replace", "insert", "delete", "repeat"]))
        if op == "replace" and at < len(data):
            data[at] = draw(alphabet)
        elif op == "insert":
            data.insert(at, draw(alphabet))
        elif op == "delete" and at < len(data):
            del data[at]
        else:
            data[at:at] = data[at:at + draw(st.integers(1, 12))]
    data += SPLIT_REQUESTS["GET"]
    cuts = sorted(set(draw(st.lists(st.integers(1, len(data) - 1), max_size=3))))
    parts = [bytes(data[a:b]) for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    return parts, draw(st.booleans())


@settings(max_examples=1200 * SCALE, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(mutated_heads())
def test_parsers_agree_on_random_mutations(example: tuple[list[bytes], bool]) -> None:
    parts, eof = example
    diff = parsers_differ(parts, eof)
    assert diff is None, f"{b''.join(parts)!r} eof={eof}\n h11: {diff[0]}\n httptools: {diff[1]}"


# -- choosing the backend ------------------------------------------------------------------------


def _ok(request: mhd2.Request) -> mhd2.Action:
    return mhd2.action_from_response(request, mhd2.Response.from_empty(204))


def test_an_unknown_parser_is_a_usage_error() -> None:
    with pytest.raises(mhd2.UsageError, match="parser"):
        mhd2.Daemon(_ok, parser="bogus")
    with pytest.raises(mhd2.UsageError, match="parser"):
        mhd2.Daemon(_ok, parser="HTTPTOOLS")


def test_httptools_missing_is_a_usage_error_naming_the_extra() -> None:
    """Without httptools, ``parser="httptools"`` says how to get it and ``"auto"`` is h11."""
    program = textwrap.dedent("""
        import json, sys
        sys.modules["httptools"] = None  # import httptools now fails
        import mhd2
        from mhd2._http1.backend import httptools_available, resolve_parser
        out = {"available": httptools_available(), "auto": resolve_parser("auto")}
        try:
            mhd2.Daemon(lambda request: None, parser="httptools")
        except mhd2.UsageError as exc:
            out["error"] = str(exc)
        mhd2.Daemon(lambda request: None, parser="auto")
        mhd2.Daemon(lambda request: None, parser="h11")
        print(json.dumps(out))
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=60, check=True)
    out = json.loads(done.stdout)
    assert out["available"] is False and out["auto"] == "h11"
    assert "mhd2[speedups]" in out["error"], out


def test_httptools_backend_is_really_llhttp() -> None:
    """The parity above compares two different parsers, not h11 twice."""
    from mhd2._http1.backend import parser_factory

    needs_httptools()
    assert isinstance(parser_factory("httptools")(8192), LlhttpParser)
    assert parser_factory("h11") is PlainParser
