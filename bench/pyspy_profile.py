"""Where does a server's time go under wrk load?  (py-spy sampling profile)

Starts one benchmark server (default mhd2) pinned to CPU 0, attaches
``py-spy record --format raw`` to it while ``wrk`` drives it from CPU 1, then
prints the functions with the most *self* time and the functions of the
server's own package with the most *inclusive* time, as % of all samples.

    pip install py-spy
    python bench/pyspy_profile.py                        # mhd2, keep-alive, 10 s
    python bench/pyspy_profile.py --server hypercorn --mode close
    python bench/pyspy_profile.py --collapsed out.txt    # keep the stacks (flamegraph input)

py-spy needs ptrace rights over the server (root, or
``kernel.yama.ptrace_scope=0``).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import (
    MODES,
    SERVER_NAMES,
    descendants,
    run_wrk,
    running_server,
    taskset_prefix,
)


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"; drop the line.
    name, _, loc = frame.partition(" (")
    path = loc.rsplit(":", 1)[0]
    return f"{name} ({path or '?'})"


def _short(key: str) -> str:
    name, _, path = key.partition(" (")
    return f"{name} ({'/'.join(Path(path.rstrip(')')).parts[-3:])})"


def summarize(collapsed: str, package: str, top: int) -> str:
    self_counts: collections.Counter[str] = collections.Counter()
    incl_counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        total += count
        frames = [_frame_name(f) for f in stack.split(";")]
        if frames:
            self_counts[frames[-1]] += count
        for f in set(frames):
            incl_counts[f] += count
    if total == 0:
        return "no samples"
    out = [f"{total} samples", "", f"top {top} by self time:"]
    for name, c in self_counts.most_common(top):
        out.append(f"  {100 * c / total:6.1f}%  {_short(name)}")
    out += ["", f"top {top} '{package}' functions by inclusive time:"]
    own = [
        (n, c) for n, c in incl_counts.most_common() if f"/{package}/" in n or f"({package}/" in n
    ]
    for name, c in own[:top]:
        out.append(f"  {100 * c / total:6.1f}%  {_short(name)}")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--server", choices=SERVER_NAMES, default="mhd2")
    ap.add_argument("--mode", choices=MODES, default="keepalive")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--package", help="package whose functions to list (default: server's)")
    ap.add_argument("--collapsed", type=Path, help="keep the collapsed stacks here")
    args = ap.parse_args(argv)
    if shutil.which("py-spy") is None:
        print("py-spy not found (pip install py-spy)", file=sys.stderr)
        return 2
    package = args.package or {"mhd2": "mhd2", "hypercorn": "hypercorn"}.get(
        args.server, args.server
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        out = args.collapsed or tmpdir / "stacks.txt"
        with running_server(args.server, "0", tmpdir, ready_timeout=30.0) as srv:
            pid = srv.proc.pid
            if args.server == "hypercorn":  # the worker is a child process
                pid = max(descendants(pid))
            spy = subprocess.Popen(
                [
                    *taskset_prefix("1"),
                    "py-spy",
                    "record",
                    "--pid",
                    str(pid),
                    "--format",
                    "raw",
                    "--rate",
                    str(args.rate),
                    "--duration",
                    str(round(args.duration)),
                    "--output",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            time.sleep(0.5)
            w = run_wrk(
                srv.port,
                mode=args.mode,
                duration=args.duration,
                connections=args.connections,
                cpu="1",
            )
            try:
                _, err = spy.communicate(timeout=args.duration + 30)
            except subprocess.TimeoutExpired:
                spy.kill()
                _, err = spy.communicate()
            if spy.returncode != 0:
                print(err.decode(errors="replace"), file=sys.stderr)
        print(f"{args.server} {args.mode}: {w.requests_per_s:.0f} req/s under py-spy")
        print(summarize(out.read_text(), package, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
