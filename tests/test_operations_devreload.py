"""``--reload``: a changed .py file restarts the app on the same port; not with --workers."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio
from test_cli import child_env, running

pytest.importorskip("watchfiles")

SOURCE = """
import mhd2

def handle(request):
    return mhd2.action_from_response(request, mhd2.Response.from_buffer_copy(200, {body!r}))
"""


async def test_a_changed_file_is_served_after_a_restart(tmp_path: Path) -> None:
    module = tmp_path / "dev_app.py"
    module.write_text(SOURCE.format(body=b"one"))
    argv = ["run", "dev_app:handle", "-p", "0", "--reload", "--no-access-log",
            "--graceful-timeout", "2"]
    async with running(argv, tmp_path) as (process, stderr, port):
        assert "with --reload" in stderr.seen[-1]
        url = f"http://127.0.0.1:{port}/"
        with trio.fail_after(30):
            async with httpx.AsyncClient(headers={"Connection": "close"}) as client:
                assert (await client.get(url)).content == b"one"
                module.write_text(SOURCE.format(body=b"two"))
                line = await stderr.until("changed; restarting")
                assert "dev_app.py" in line
                await stderr.until("mhd2: running dev_app:handle")  # the new child
                assert (await client.get(url)).content == b"two"
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            assert await process.wait() == 0


def test_reload_with_workers_exits_2(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "mhd2", "run", "x:y", "--reload",
                             "--workers", "2"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=30, env=child_env())
    assert result.returncode == 2
    assert "--reload" in result.stderr and "--workers" in result.stderr
