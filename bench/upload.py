"""Upload benchmark: request-body throughput and the daemon's memory while it reads.

Two measurements, each against a fresh mhd2 daemon in a subprocess pinned to
CPU 0 (``taskset -c 0``), driven by a raw-socket client in this process pinned
to CPU 1 that writes the body in large blocks from one preallocated buffer:

(a) ``inc``:  a 1 GB body (``Content-Length``) read with
    ``action_process_upload_inc``; the upload callback only counts bytes.
(b) ``post``: a 200 MB ``multipart/form-data`` file field read with
    ``action_parse_post`` and a streaming reader that only counts bytes.

For each: MB/s (body bytes / time from the first byte sent to the response
received), and the growth of the daemon's resident memory during the upload
(VmRSS from ``/proc/PID/status``, sampled every 20 ms, peak minus the value
right before the upload).  Targets from the issue: (a) >= 300 MB/s and both
RSS growths < 20 MB.

Usage::

    python bench/upload.py                      # both, ~10 s
    python bench/upload.py --only inc --size-mb 1024 --repeat 3
    python bench/upload.py --profile /tmp/up.prof   # cProfile the daemon, print the top

Linux only (``/proc``, ``taskset``); talks to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BLOCK = 1024 * 1024  # bytes per send from the client
BOUNDARY = "mhd2benchBoundary7MA4YWxkTrZu0gW"

TARGET_MBPS = 300.0
TARGET_RSS_MB = 20.0


# --------------------------------------------------------------------------- server side


def serve(mode: str, profile: str | None) -> None:
    """Run the daemon until stdin closes; print ``PORT <n>`` once listening."""
    sys.path.insert(0, str(ROOT))
    import trio

    import mhd2

    done_page = mhd2.Response.from_buffer_static(200, b"done")
    done_page.set_options(reusable=True)
    received = [0]

    def inc(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        if data:
            received[0] += len(data)
            return mhd2.upload_action_continue(request)
        return mhd2.upload_action_from_response(request, done_page)

    def reader(
        request: mhd2.Request,
        name: str,
        filename: str | None,
        content_type: str | None,
        encoding: str | None,
        data: bytes,
        offset: int,
        final: bool,
    ) -> mhd2.UploadAction:
        received[0] += len(data)
        return mhd2.upload_action_continue(request)

    def post_done(request: mhd2.Request, result: mhd2.PostParseResult) -> mhd2.UploadAction:
        page = (
            done_page
            if result.is_ok
            else mhd2.Response.from_buffer_copy(500, f"post failed: {result.name}".encode())
        )
        return mhd2.upload_action_from_response(request, page)

    def cb(request: mhd2.Request) -> mhd2.Action:
        if mode == "inc":
            return mhd2.action_process_upload_inc(request, inc)
        return mhd2.action_parse_post(request, 1024, 0, mhd2.PostEncoding.OTHER, reader, post_done)

    async def main() -> None:
        async with mhd2.Daemon(cb, port=0) as daemon:
            print(f"PORT {daemon.port}", flush=True)
            await trio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)

    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
        trio.run(main)
        prof.disable()
        prof.dump_stats(profile)
    else:
        trio.run(main)


# --------------------------------------------------------------------------- client side


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class RssSampler:
    """Sample a process's VmRSS in a thread; remember the peak."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = rss_kb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kb(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_kb(self.pid))


@contextmanager
def server(mode: str, profile: str | None) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", mode]
    if profile:
        cmd += ["--profile", profile]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        match = re.match(r"PORT (\d+)", line)
        if match is None:
            raise RuntimeError(f"the server did not start: {line!r}")
        yield proc, int(match[1])
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Result:
    name: str
    body_bytes: int
    seconds: float
    rss_before_kb: int
    rss_peak_kb: int
    status: bytes

    @property
    def mbps(self) -> float:
        return self.body_bytes / self.seconds / 1e6

    @property
    def rss_growth_mb(self) -> float:
        return (self.rss_peak_kb - self.rss_before_kb) / 1024


def upload(port: int, head: bytes, prefix: bytes, size: int, suffix: bytes) -> tuple[float, bytes]:
    """Send head, prefix, *size* filler bytes and suffix; return (seconds, status line)."""
    block = memoryview(os.urandom(min(BLOCK, size)) if size else b"")
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    try:
        start = time.perf_counter()
        sock.sendall(head + prefix)
        left = size
        while left:
            n = min(left, len(block))
            sock.sendall(block[:n])
            left -= n
        sock.sendall(suffix)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        elapsed = time.perf_counter() - start
    finally:
        sock.close()
    return elapsed, answer.split(b"\r\n", 1)[0]


def measure(mode: str, size: int, profile: str | None) -> Result:
    if mode == "inc":
        prefix = suffix = b""
        ctype = "application/octet-stream"
    else:
        prefix = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="big.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        suffix = f"\r\n--{BOUNDARY}--\r\n".encode()
        ctype = f"multipart/form-data; boundary={BOUNDARY}"
    length = len(prefix) + size + len(suffix)
    head = (
        f"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode()
    with server(mode, profile) as (proc, port):
        # warm up: one small upload, so imports and first-use allocations are done
        upload(
            port,
            head.replace(str(length).encode(), str(len(prefix) + 4096 + len(suffix)).encode()),
            prefix,
            4096,
            suffix,
        )
        time.sleep(0.2)
        before = rss_kb(proc.pid)
        with RssSampler(proc.pid) as sampler:
            seconds, status = upload(port, head, prefix, size, suffix)
    return Result(mode, size, seconds, before, sampler.peak, status)


def print_profile(path: str, top: int = 25) -> None:
    import pstats

    stats = pstats.Stats(path)
    total = stats.total_tt  # type: ignore[attr-defined]
    print(f"\nprofile of the daemon ({path}): total {total:.2f} s, top by own time")
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
    for (filename, line, func), (_cc, ncalls, tottime, cumtime, _callers) in rows[:top]:
        where = f"{Path(filename).name}:{line}" if line else filename
        print(
            f"  {100 * tottime / total:5.1f}%  {tottime:6.2f}s  cum {cumtime:6.2f}s  "
            f"{ncalls:>8}  {func}  ({where})"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--serve", choices=("inc", "post"), help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=("inc", "post"), action="append")
    parser.add_argument(
        "--size-mb",
        type=int,
        default=None,
        help="body size in MiB (default: 1024 for inc, 200 for post)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement; best counts")
    parser.add_argument("--profile", help="cProfile the daemon into this file and print the top")
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.profile)
        return 0
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    failed = False
    for mode in args.only or ("inc", "post"):
        size = (args.size_mb or (1024 if mode == "inc" else 200)) * 1024 * 1024
        results = [measure(mode, size, args.profile) for _ in range(args.repeat)]
        best = max(results, key=lambda r: r.mbps)
        what = (
            "action_process_upload_inc, Content-Length"
            if mode == "inc"
            else "action_parse_post, multipart file, streaming reader"
        )
        print(
            f"{mode:5} {size / 2**20:7.0f} MiB  {best.mbps:7.1f} MB/s  "
            f"{best.seconds:6.2f} s  daemon RSS {best.rss_before_kb / 1024:.1f} MB "
            f"+{best.rss_growth_mb:.1f} MB  [{best.status.decode(errors='replace')}]  ({what})"
        )
        if best.status != b"HTTP/1.1 200 OK":
            failed = True
        if mode == "inc" and best.mbps < TARGET_MBPS:
            print(f"      below the target of {TARGET_MBPS:.0f} MB/s")
        if best.rss_growth_mb >= TARGET_RSS_MB:
            print(f"      RSS growth over the target of {TARGET_RSS_MB:.0f} MB")
        if args.profile:
            print_profile(args.profile)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
