"""systemd ``Type=notify``: a Unix datagram socket plays the service manager."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from test_cli import REPO, start

from mhd2.cli import build_parser

APP = """
import mhd2

def handle(request):
    return mhd2.action_from_response(request, mhd2.Response.from_buffer_copy(200, b"hi"))
"""


class Manager:
    """The manager's end of NOTIFY_SOCKET: one message per datagram."""

    def __init__(self, path: Path) -> None:
        self.sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.path = path
        self.messages: list[dict[str, str]] = []

    async def bind(self) -> None:
        await self.sock.bind(str(self.path))

    async def next(self) -> dict[str, str]:
        data = await self.sock.recv(65536)
        message = dict(line.split("=", 1) for line in data.decode().split("\n"))
        self.messages.append(message)
        return message

    async def until(self, key: str, timeout: float = 30) -> dict[str, str]:
        with trio.fail_after(timeout):
            while True:
                message = await self.next()
                if key in message:
                    return message


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[Manager]:
    (tmp_path / "notify_app.py").write_text(APP)
    m = Manager(tmp_path / "notify.sock")
    await m.bind()
    yield m
    m.sock.close()


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one-process", "workers"])
async def test_notify_protocol(manager: Manager, tmp_path: Path, workers: list[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(manager.path))  # what the child inherits
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    argv = ["run", "notify_app:handle", "-p", "0", "--no-access-log", *workers]
    process, stderr = await start(argv, cwd=tmp_path)
    try:
        ready = await manager.until("READY")
        assert ready["READY"] == "1" and "serving" in ready["STATUS"]
        line = await stderr.until("mhd2: running")
        assert "http://127.0.0.1:" in line
        pings = 0
        while pings < 2:  # every half of WATCHDOG_USEC
            message = await manager.until("WATCHDOG", timeout=5)
            assert message["WATCHDOG"] == "1" and "STATUS" in message
            pings += 1

        process.send_signal(signal.SIGHUP)
        reloading = await manager.until("RELOADING")
        assert reloading["RELOADING"] == "1"
        sent = int(reloading["MONOTONIC_USEC"])
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert 0 <= now - sent < 30_000_000
        again = await manager.until("READY", timeout=60)
        assert again["READY"] == "1"

        process.send_signal(signal.SIGTERM)
        stopping = await manager.until("STOPPING")
        assert stopping["STOPPING"] == "1"
        with trio.fail_after(40):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_without_notify_socket_nothing_is_sent() -> None:
    from mhd2._notify import Notifier

    assert Notifier.from_environ({}) is None
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": "@abstract", "WATCHDOG_USEC": "10",
                                      "WATCHDOG_PID": "1"})
    assert notifier is not None and notifier.address == "\0abstract"
    assert notifier.watchdog_interval is None  # the watchdog is another process's


# ---------------------------------------------------------------- the documented unit

PAGES = ["deploying.rst", "operating.rst"]


def documented_unit(page: str) -> str:
    text = (REPO / "docs" / page).read_text()
    match = re.search(r"# /etc/systemd/system/hello\.service\n((?:   .*\n|\n)+)", text)
    assert match is not None, "the Deploying page has no hello.service unit"
    return "\n".join(line[3:] for line in match.group(1).splitlines()).strip() + "\n"


@pytest.mark.parametrize("page", PAGES)
def test_the_documented_unit_agrees_with_the_command_line(page: str) -> None:
    unit = documented_unit(page)
    settings = dict(line.split("=", 1) for line in unit.splitlines()
                    if "=" in line and not line.startswith("#"))
    assert settings["Type"] == "notify"
    assert settings["ExecReload"] == "/bin/kill -HUP $MAINPID"
    argv = shlex.split(settings["ExecStart"])
    interpreter = argv[0]
    assert interpreter.endswith("/venv/bin/python") and not interpreter.startswith("/usr/bin")
    assert argv[1:3] == ["-m", "mhd2"]
    args = build_parser().parse_args(argv[3:])  # exits 2 on an option the CLI lacks
    assert args.command == "run"
    assert float(settings["TimeoutStopSec"]) > args.graceful_timeout
    if "WatchdogSec" in settings:
        assert int(settings["WatchdogSec"]) >= 2


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize("page", PAGES)
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path, page: str) -> None:
    unit = documented_unit(page)
    venv = tmp_path / "srv" / "hello" / "venv" / "bin"
    argv = shlex.split(next(line for line in unit.splitlines()
                            if line.startswith("ExecStart=")).split("=", 1)[1])
    # systemd-analyze checks that the program exists: give it one at a private root
    unit = unit.replace(argv[0], str(venv / "python"))
    venv.mkdir(parents=True)
    os.symlink(shutil.which("python3") or "/usr/bin/python3", venv / "python")
    unit = re.sub(r"^(Requires|After)=hello\.socket\n", "", unit, flags=re.M)
    unit = re.sub(r"^User=.*\n", "", unit, flags=re.M)
    unit = unit.replace("WorkingDirectory=/srv/hello", f"WorkingDirectory={tmp_path}")
    path = tmp_path / "hello.service"
    path.write_text(unit)
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)],
                            capture_output=True, text=True, timeout=60)
    problems = [line for line in result.stderr.splitlines()
                if ("hello.service" in line and "Unknown" in line) or "bad-setting" in line]
    assert not problems, result.stderr
