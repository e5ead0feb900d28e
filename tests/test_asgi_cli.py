"""``python -m mhd2 run main:app`` with ASGI apps: --interface, lifespan exit status, workers."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio
from test_cli import get, run_quick, running

APP = '''
import mhd2

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["greeting"] = "hello from asgi"
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                print("asgi shutdown ran", flush=True)
                return
    while (await receive()).get("more_body"):
        pass
    body = (scope["state"]["greeting"] + " " + scope["path"] + " " + scope["root_path"]).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})

class Instance:
    async def __call__(self, scope, receive, send):
        await app(scope, receive, send)

instance = Instance()

async def failing(scope, receive, send):
    assert scope["type"] == "lifespan"
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "database unreachable"})

def callback(request):
    return mhd2.action_from_response(request, mhd2.Response.from_buffer_static(200, b"callback"))

def neither(a, b):
    return None

async def two_args(scope, receive):
    return None
'''


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "asgi_main.py").write_text(APP)
    return tmp_path


@pytest.mark.parametrize("spec", ["asgi_main:app", "asgi_main:instance"])
async def test_run_detects_an_asgi_app(app_dir: Path, spec: str) -> None:
    argv = ["run", spec, "-p", "0", "--root-path", "/proxy", "--no-access-log"]
    async with running(argv, app_dir) as (process, _stderr, port):
        r = await get(port, "/x")
        assert r.status_code == 200
        assert r.text == "hello from asgi /proxy/x /proxy"  # lifespan state + root_path
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            assert await process.wait() == 0


async def test_run_asgi_with_workers_runs_lifespan_per_worker(app_dir: Path) -> None:
    argv = ["run", "asgi_main:app", "-p", "0", "--workers", "2", "--no-access-log"]
    async with running(argv, app_dir) as (process, _stderr, port):
        assert (await get(port, "/w")).text.startswith("hello from asgi /w")
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(40):
            assert await process.wait() == 0


async def test_run_a_request_callback_still_works(app_dir: Path) -> None:
    async with running(["run", "asgi_main:callback", "-p", "0"], app_dir) as (_, _, port):
        assert (await get(port)).text == "callback"


def test_failed_startup_exits_3_with_the_apps_message(app_dir: Path) -> None:
    result = run_quick(["run", "asgi_main:failing", "--port", "0"], cwd=app_dir)
    assert result.returncode == 3
    assert "mhd2: the application's startup failed: database unreachable" in result.stderr


def test_failed_startup_with_workers_exits_3_with_the_apps_message(app_dir: Path) -> None:
    result = run_quick(["run", "asgi_main:failing", "--port", "0", "--workers", "2"],
                       cwd=app_dir)
    assert result.returncode == 3, result.stderr
    assert "mhd2: the application's startup failed: database unreachable" in result.stderr
    assert "could not start; stopping" in result.stderr


def test_neither_interface_with_workers_exits_2(app_dir: Path) -> None:
    result = run_quick(["run", "asgi_main:neither", "--port", "0", "--workers", "2"],
                       cwd=app_dir)
    assert result.returncode == 2, result.stderr
    assert "is neither an ASGI 3 app" in result.stderr


@pytest.mark.parametrize("spec", ["asgi_main:neither", "asgi_main:two_args"])
def test_neither_interface_exits_2_with_a_sentence(app_dir: Path, spec: str) -> None:
    result = run_quick(["run", spec, "--port", "0"], cwd=app_dir)
    assert result.returncode == 2
    assert "is neither an ASGI 3 app" in result.stderr
    assert "--interface asgi or --interface mhd2" in result.stderr
    assert len(result.stderr.splitlines()) == 1


async def test_interface_can_be_forced(app_dir: Path) -> None:
    # Forced to mhd2, an ASGI app is called as a request callback: the daemon's 500.
    argv = ["run", "asgi_main:app", "-p", "0", "--interface", "mhd2", "--log-level", "critical"]
    async with running(argv, app_dir) as (_, _, port):
        assert (await get(port)).status_code == 500
    argv = ["run", "asgi_main:instance", "-p", "0", "--interface", "asgi"]
    async with running(argv, app_dir) as (_, _, port):
        assert (await get(port, "/f")).text == "hello from asgi /f "


async def test_factory_returning_an_asgi_daemon(app_dir: Path) -> None:
    (app_dir / "asgi_factory.py").write_text(
        "import mhd2.asgi\nfrom asgi_main import app\n\n"
        "def make():\n    return mhd2.asgi.Daemon(app, suppress_date_header=True, port=1)\n")
    argv = ["run", "asgi_factory:make", "--factory", "-p", "0"]
    async with running(argv, app_dir) as (_, _, port):
        r = await get(port, "/f")
        assert r.text == "hello from asgi /f "  # lifespan ran; the app is served
        assert "date" not in r.headers  # the factory's options are kept
