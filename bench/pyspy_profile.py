"""Where do the microseconds of one request go?  (py-spy sampling profile)

Starts one benchmark server (default mhd2) pinned to CPU 0, attaches
``py-spy record`` to it, drives it from CPU 1 with ``wrk`` (or
``h2load --h1``), and reads the server's CPU time (utime + stime, from
``/proc``) over the recording.  The samples are then aggregated twice:

* by **module group** of the frame that was running (its *self* time):
  ``h11``, ``mhd2._http1``, ``mhd2.http1``, ``mhd2.exchange``, ``mhd2.reply``,
  ``transport/trio`` (trio and mhd2's transport and socket stream: the event
  loop, the system calls), the other ``mhd2`` modules, the application callback,
  and everything else;
* by **function**, the top N by self time, and the server package's functions
  by inclusive time.

Each share of the samples is converted to **µs per request**: the server's CPU
time during the recording divided by the requests the load generator
completed, times the share.  py-spy leaves out samples in which the server's
thread was idle (waiting in ``epoll``), so the shares are shares of the time on
CPU.

    pip install py-spy
    python bench/pyspy_profile.py --parser h11                 # mhd2 + h11, keep-alive, wrk 10 s
    python bench/pyspy_profile.py --parser httptools --load h2load
    python bench/pyspy_profile.py --mode close --markdown      # tables ready for README.md
    python bench/pyspy_profile.py --server uvicorn-httptools   # a peer (package: uvicorn)
    python bench/pyspy_profile.py --format speedscope --output prof.json   # keep it for speedscope.app

py-spy needs ptrace rights over the server (root, or
``kernel.yama.ptrace_scope=0``).  By default py-spy pauses the process for
each sample (exact stacks, ~5-10 % fewer req/s); ``--nonblocking`` does not
pause it, at the price of an occasional torn stack.  py-spy charges a system
call to the Python frame that made it (``send`` in trio's socket wrapper is
mostly the kernel's loopback TCP send).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import (
    ASGI_BRIDGE,
    MODES,
    PARSER_CHOICES,
    SERVER_NAMES,
    descendants,
    is_mhd2,
    mhd2_row,
    run_wrk,
    running_server,
    taskset_prefix,
)

#: (group, pattern on the frame's file path); the first match wins.
GROUPS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("h11", re.compile(r"(^|/)h11/")),
    ("httptools", re.compile(r"(^|/)httptools/")),
    ("mhd2._http1", re.compile(r"(^|/)mhd2/_http1/")),
    # The HTTP/1 reply writer: mhd2/http1/reply.py (mhd2/reply.py before issue 21).
    ("mhd2.reply", re.compile(r"(^|/)mhd2/(http1/)?reply\.py$")),
    ("mhd2.http1", re.compile(r"(^|/)mhd2/http1/")),
    # The exchange and the calls of the application through it (app_calls.py since issue 21).
    ("mhd2.exchange", re.compile(r"(^|/)mhd2/(exchange|app_calls)\.py$")),
    (
        "transport/trio",
        re.compile(r"(^|/)(trio/|mhd2/transport\.py$|mhd2/plain_stream\.py$|outcome/|sniffio/)"),
    ),
    ("mhd2.asgi (bridge)", re.compile(r"(^|/)mhd2/asgi/")),
    ("mhd2 (other modules)", re.compile(r"(^|/)mhd2/")),
    ("application callback", re.compile(r"(^|/)(mhd2_hello|asgi_hello)\.py$")),
)
OTHER = "other (stdlib, peers' code, ...)"

Stack = tuple[list[str], int]  # frames root first ("function (file)"), sample count


def group_of(frame: str) -> str:
    """The module group of a frame ``"function (path)"`` or ``"function (path:line)"``."""
    path = frame.rpartition(" (")[2].rstrip(")").partition(":")[0]
    for name, pattern in GROUPS:
        if pattern.search(path):
            return name
    return OTHER


def _frame_name(frame: str, lines: bool = False) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"; drop the line
    # unless asked to keep it.
    name, _, loc = frame.partition(" (")
    loc = loc.rstrip(")")
    path, _, line = loc.rpartition(":") if ":" in loc else (loc, "", "")
    return f"{name} ({path or '?'}{':' + line if lines and line else ''})"


def _short(key: str) -> str:
    name, _, path = key.partition(" (")
    return f"{name} ({'/'.join(Path(path.rstrip(')')).parts[-3:])})"


def read_raw(text: str, lines: bool = False) -> list[Stack]:
    """Stacks from py-spy's ``--format raw`` (collapsed stacks, one per line).

    Args:
        text: the file py-spy wrote.
        lines: keep the line number of the innermost frame (``--lines``).
    """
    out: list[Stack] = []
    for line in text.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if stack and count_s.isdigit():
            frames = stack.split(";")
            names = [_frame_name(f) for f in frames[:-1]] + [_frame_name(frames[-1], lines)]
            out.append((names, int(count_s)))
    return out


def read_speedscope(text: str) -> list[Stack]:
    """Stacks from py-spy's ``--format speedscope`` (sampled profiles, one per thread)."""
    data = json.loads(text)
    frames = [f"{f['name']} ({f.get('file') or '?'})" for f in data["shared"]["frames"]]
    out: list[Stack] = []
    for profile in data["profiles"]:
        # py-spy's weights are seconds (1 / rate each): count samples instead
        for sample in profile["samples"]:
            out.append(([frames[i] for i in sample], 1))
    return out


def summarize(
    stacks: Iterable[Stack],
    package: str,
    top: int,
    us_per_request: float | None,
    markdown: bool = False,
) -> str:
    """The tables: module groups, top functions by self time, package functions inclusive."""
    self_counts: collections.Counter[str] = collections.Counter()
    incl_counts: collections.Counter[str] = collections.Counter()
    group_counts: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, count in stacks:
        if not frames:
            continue
        total += count
        self_counts[frames[-1]] += count
        group_counts[group_of(frames[-1])] += count
        for f in set(frames):
            incl_counts[f] += count
    if total == 0:
        return "no samples"

    def us(c: int) -> str:
        return "-" if us_per_request is None else f"{us_per_request * c / total:.1f}"

    out: list[str] = []

    def table(title: str, head: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
        rows = list(rows)
        out.append("")
        out.append(title)
        if markdown:
            out.append("")
            out.append("| " + " | ".join(head) + " |")
            numeric = [h.startswith(("%", "µs")) for h in head]
            out.append("| " + " | ".join("---:" if n else "---" for n in numeric) + " |")
            out.extend("| " + " | ".join(r) + " |" for r in rows)
        else:
            width = max([len(head[0])] + [len(r[0]) for r in rows])
            out.append(f"  {head[0]:<{width}} " + " ".join(f"{h:>12}" for h in head[1:]))
            for r in rows:
                out.append(f"  {r[0]:<{width}} " + " ".join(f"{c:>12}" for c in r[1:]))

    order = [name for name, _ in GROUPS] + [OTHER]
    table(
        f"self time by module group ({total} samples):",
        ("group", "% of samples", "µs / request"),
        [
            (g, f"{100 * group_counts[g] / total:.1f}", us(group_counts[g]))
            for g in sorted(order, key=lambda g: -group_counts[g])
            if group_counts[g]
        ]
        + [("total", "100.0", us(total))],
    )
    table(
        f"top {top} functions by self time:",
        ("function (file)", "group", "% of samples", "µs / request"),
        [
            (_short(name), group_of(name), f"{100 * c / total:.1f}", us(c))
            for name, c in self_counts.most_common(top)
        ],
    )
    own = [
        (n, c)
        for n, c in incl_counts.most_common()
        if f"/{package}/" in n or f"({package}/" in n or f"({package}." in n
    ]
    table(
        f"top {top} '{package}' functions by inclusive time:",
        ("function (file)", "% of samples", "µs / request"),
        [(_short(name), f"{100 * c / total:.1f}", us(c)) for name, c in own[:top]],
    )
    return "\n".join(out)


def run_h2load(port: int, duration: float, connections: int, cpu: str | None) -> tuple[float, int]:
    """``h2load --h1`` keep-alive load for *duration* seconds: (req/s, requests succeeded)."""
    cmd = [
        *taskset_prefix(cpu),
        "h2load",
        "--h1",
        "-t1",
        f"-c{connections}",
        f"-D{max(1, round(duration))}",
        f"http://127.0.0.1:{port}/",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", proc.stdout)
    r = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", proc.stdout)
    if proc.returncode != 0 or m is None or r is None:
        raise RuntimeError(f"h2load failed ({proc.returncode}): {proc.stderr}\n{proc.stdout}")
    return float(r.group(1)), int(m.group(1))


def cpu_user_system(pid: int) -> tuple[float, float]:
    """(utime, stime) in seconds, summed over the process tree rooted at *pid*."""
    user = system = 0
    for p in descendants(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        user += int(fields[11])
        system += int(fields[12])
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, system / tick


def find_pyspy() -> str | None:
    """py-spy on PATH, or next to this Python (a venv's bin/)."""
    found = shutil.which("py-spy")
    if found is None:
        beside = Path(sys.executable).parent / "py-spy"
        if beside.is_file() and os.access(beside, os.X_OK):
            found = str(beside)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--server", choices=(*SERVER_NAMES, ASGI_BRIDGE), default="mhd2",
                    help=f"{ASGI_BRIDGE}: mhd2's ASGI bridge serving the peers' app")
    ap.add_argument(
        "--parser",
        choices=PARSER_CHOICES,
        default="default",
        help="mhd2 only: Daemon(parser=...) (default: no parser option, the Daemon's default)",
    )
    ap.add_argument("--mode", choices=MODES, default="keepalive")
    ap.add_argument(
        "--load", choices=("wrk", "h2load"), default="wrk", help="load generator (h2load: --h1)"
    )
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of load")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of load before recording")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--nonblocking", action="store_true", help="py-spy --nonblocking")
    ap.add_argument("--native", action="store_true", help="py-spy --native (C frames too)")
    ap.add_argument("--format", choices=("raw", "speedscope"), default="raw")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--package", help="package whose functions to list (default: server's)")
    ap.add_argument("--output", "--collapsed", type=Path, help="keep py-spy's output here")
    ap.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    ap.add_argument(
        "--lines", action="store_true", help="raw format: top functions per line, not per function"
    )
    args = ap.parse_args(argv)
    pyspy = find_pyspy()
    if pyspy is None:
        print("py-spy not found (pip install py-spy)", file=sys.stderr)
        return 2
    if args.load == "h2load" and args.mode != "keepalive":
        print("--load h2load measures keep-alive only; use wrk for --mode close", file=sys.stderr)
        return 2
    name = args.server
    if name == ASGI_BRIDGE:
        pass  # (the CLI's parser: auto)
    elif is_mhd2(name):
        name = mhd2_row(args.parser)
    elif args.parser != "default":
        print("--parser applies to mhd2 only", file=sys.stderr)
        return 2
    package = args.package or args.server.split("-")[0]  # uvicorn-httptools: uvicorn
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        out = args.output or tmpdir / f"profile.{'json' if args.format == 'speedscope' else 'txt'}"
        with running_server(name, "0", tmpdir, ready_timeout=30.0) as srv:
            pid = srv.proc.pid
            if args.server in ("hypercorn", "granian"):  # the worker is a child process
                pid = max(descendants(pid))

            def load(seconds: float) -> tuple[float, int]:
                if args.load == "h2load":
                    return run_h2load(srv.port, seconds, args.connections, "1")
                w = run_wrk(
                    srv.port,
                    mode=args.mode,
                    duration=seconds,
                    connections=args.connections,
                    cpu="1",
                )
                return w.requests_per_s, w.requests

            if args.warmup > 0:
                load(args.warmup)
            cmd = [
                *taskset_prefix("1"),
                pyspy,
                "record",
                "--pid",
                str(pid),
                "--format",
                args.format,
                "--rate",
                str(args.rate),
                "--duration",
                str(round(args.duration) + 2),
                "--output",
                str(out),
            ]
            if args.nonblocking:
                cmd.append("--nonblocking")
            if args.native:
                cmd.append("--native")
            user0, system0 = cpu_user_system(srv.proc.pid)
            spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(0.5)  # let py-spy attach before the load starts
            rps, requests = load(args.duration)
            try:
                _, err = spy.communicate(timeout=args.duration + 30)
            except subprocess.TimeoutExpired:
                spy.kill()
                _, err = spy.communicate()
            # py-spy recorded a little longer than the load; the server was idle
            # then (and py-spy drops idle samples), so its CPU time is the load's.
            user1, system1 = cpu_user_system(srv.proc.pid)
            user, system = user1 - user0, system1 - system0
            cpu = user + system
            if spy.returncode != 0 or not out.is_file():
                print(err.decode(errors="replace"), file=sys.stderr)
                return 1
        text = out.read_text()
        stacks = (
            read_speedscope(text) if args.format == "speedscope" else read_raw(text, args.lines)
        )
    us_per_request = 1e6 * cpu / requests if requests else None
    label = (name if not is_mhd2(name) or name == ASGI_BRIDGE or args.parser != "default"
             else "mhd2 (default parser)")
    print(
        f"{label}, {args.mode}, {args.load} -c{args.connections} {args.duration:.0f} s:"
        f" {rps:.0f} req/s under py-spy ({'non' if args.nonblocking else ''}blocking,"
        f" {args.rate} Hz); {requests} requests, server CPU {cpu:.2f} s ="
        f" {'-' if us_per_request is None else f'{us_per_request:.1f}'} µs per request"
    )
    if requests:
        print(
            f"  of which user (Python, the parsers' C code) {1e6 * user / requests:.1f} µs,"
            f" system (the kernel: TCP send/recv, epoll) {1e6 * system / requests:.1f} µs"
        )
    print(summarize(stacks, package, args.top, us_per_request, markdown=args.markdown))
    if args.output:
        print(f"\npy-spy output kept in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
