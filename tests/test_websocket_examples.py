"""The WebSocket examples, run as users run them, driven by the ``websockets`` client library."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import connect

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
STARTED = re.compile(r"^(\w+): listening on http://127\.0\.0\.1:(\d+)/")
WAIT = 10.0


@pytest.fixture
def start() -> Iterator[object]:
    processes: list[subprocess.Popen[str]] = []

    # This checkout's mhd2, whatever the interpreter has installed.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))

    def launch(script: str) -> tuple[int, subprocess.Popen[str]]:
        process = subprocess.Popen(
            [sys.executable, "-u", str(EXAMPLES / script), "--port", "0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env)
        processes.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()
        match = STARTED.match(line)
        assert match is not None, f"unexpected output: {line!r}"
        return int(match[2]), process

    yield launch
    for process in processes:
        if process.poll() is None:
            process.communicate("\n", timeout=WAIT)  # Enter stops the example
        assert process.returncode == 0


def test_tutorial_websocket_example(start: object) -> None:
    port, process = start("websocket.py")  # type: ignore[operator]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=WAIT) as page:
        assert b"new WebSocket(url)" in page.read()
    with connect(f"ws://127.0.0.1:{port}/chat", compression=None, open_timeout=WAIT) as ws:
        ws.send("Hello from Python!")
        assert ws.recv(timeout=WAIT) == "Hello"
        assert ws.ping(b"p").wait(WAIT)
        ws.send(b"binary frames are ignored")
        ws.send("again")
        assert ws.recv(timeout=WAIT) == "Hello"
    # An invalid handshake gets the C program's 400 page.
    request = urllib.request.Request(f"http://127.0.0.1:{port}/chat")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=WAIT)
    assert info.value.code == 400 and info.value.read() == b"Invalid WebSocket request!"
    out, _ = process.communicate("\n", timeout=WAIT)
    assert "Received message: Hello from Python!" in out and "Received message: again" in out


def test_chat_broadcasts_to_every_client(start: object) -> None:
    import json

    port, _ = start("websocket_chat.py")  # type: ignore[operator]
    url = f"ws://127.0.0.1:{port}/ws"
    with connect(url, open_timeout=WAIT) as alice, connect(url, open_timeout=WAIT) as bob:

        def next_message(ws: object) -> dict[str, object]:
            while True:
                msg = json.loads(ws.recv(timeout=WAIT))  # type: ignore[attr-defined]
                if "users" not in msg:
                    return msg  # type: ignore[no-any-return]

        alice.send(json.dumps({"name": "alice", "text": "hi bob"}))
        for ws in (alice, bob):
            msg = next_message(ws)
            assert (msg["name"], msg["text"]) == ("alice", "hi bob")
        bob.send(json.dumps({"name": "bob", "text": "hello ✓"}))
        assert next_message(alice)["text"] == "hello ✓"
        # A malformed message closes only that client (1003).
        bob.send("not json")
        with pytest.raises(Exception) as info:
            while True:
                bob.recv(timeout=WAIT)
        rcvd = getattr(info.value, "rcvd", None)
        assert rcvd is not None and rcvd.code == 1003
        alice.send(json.dumps({"name": "alice", "text": "still here"}))
        assert next_message(alice)["text"] == "still here"
