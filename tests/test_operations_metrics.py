"""Prometheus metrics: scraped over HTTP and parsed with prometheus_client.parser."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from conftest import settled
from test_cli import running

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

import mhd2  # noqa: E402
from mhd2.metrics import register_fanout  # noqa: E402


@pytest.fixture(autouse=True)
def only_this_tests_hubs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fan-out gauges sum every hub registered in the process; a test
    counts only the hubs it made (others may still be alive from earlier
    tests in this process, e.g. under pytest-xdist)."""
    import weakref

    import mhd2.metrics

    monkeypatch.setattr(mhd2.metrics, "_HUBS", weakref.WeakSet())


APP = """
import os
import mhd2

def handle(request):
    if request.path == "/boom":
        raise RuntimeError("boom")
    body = str(os.getpid()).encode()
    return mhd2.action_from_response(request, mhd2.Response.from_buffer_copy(200, body))
"""


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_metrics_path_on_the_main_listener(tmp_path: Path) -> None:
    (tmp_path / "metrics_app.py").write_text(APP)
    argv = ["run", "metrics_app:handle", "-p", "0", "--metrics-path", "/metrics",
            "--no-access-log", "--log-level", "critical"]
    async with running(argv, tmp_path) as (_process, _stderr, port):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(7):
                assert (await client.get("/x")).status_code == 200
            assert (await client.get("/boom")).status_code == 500
            scrape = await client.get("/metrics")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain; version=")
    found = samples(scrape.text)
    ok = {"method": "GET", "status_class": "2xx", "protocol": "HTTP/1.1"}
    assert value(found, "mhd2_requests_total", **ok) == 7
    assert value(found, "mhd2_requests_total", **{**ok, "status_class": "5xx"}) == 1
    assert value(found, "mhd2_request_duration_seconds_count") == 8
    assert value(found, "mhd2_bytes_total", direction="out") > 7
    assert value(found, "mhd2_connections_open") == 1  # the scrape's own connection
    for name in ("mhd2_requests_suspended", "mhd2_websocket_sessions",
                 "mhd2_fanout_subscribers", "mhd2_fanout_deliveries_total",
                 "mhd2_fanout_drops_total"):
        assert any(key[0] == name for key in found), name


async def test_one_scrape_sums_every_worker(tmp_path: Path) -> None:
    (tmp_path / "metrics_app.py").write_text(APP)
    metrics_port = free_port()
    argv = ["run", "metrics_app:handle", "-p", "0", "--workers", "2", "--no-access-log",
            "--metrics", f"127.0.0.1:{metrics_port}"]
    pids: set[str] = set()
    sent = 0
    async with running(argv, tmp_path) as (_process, _stderr, port):
        with trio.fail_after(60):
            async with httpx.AsyncClient(headers={"Connection": "close"}) as client:
                while len(pids) < 2 or sent < 20:
                    r = await client.get(f"http://127.0.0.1:{port}/")
                    assert r.status_code == 200
                    pids.add(r.text)
                    sent += 1
                scrape = await client.get(f"http://127.0.0.1:{metrics_port}/metrics")
    found = samples(scrape.text)
    assert value(found, "mhd2_requests_total", method="GET", status_class="2xx",
                 protocol="HTTP/1.1") == sent


async def test_refusals_are_counted(tmp_path: Path) -> None:
    (tmp_path / "metrics_app.py").write_text(APP)
    argv = ["run", "metrics_app:handle", "-p", "0", "--metrics-path", "/metrics",
            "--limit-concurrency", "1", "--no-access-log", "--log-level", "critical"]
    async with running(argv, tmp_path) as (_process, _stderr, port):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as holder:
            assert (await holder.get("/")).status_code == 200  # keeps its connection
            with trio.fail_after(10):
                refused = await trio.to_thread.run_sync(_raw, port)
            assert refused.startswith(b"HTTP/1.1 503")
            scrape = await holder.get("/metrics")
    found = samples(scrape.text)
    assert value(found, "mhd2_refusals_total", reason="connection_limit") == 1


def _raw(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        return data


class Hub:
    def __init__(self) -> None:
        self.counts = {"subscribers": 3, "deliveries": 10, "drops": 1}

    def metrics_counts(self) -> dict[str, int]:
        return dict(self.counts)


async def test_library_registry_and_a_fanout_hub() -> None:
    registry = prometheus_client.CollectorRegistry()
    hub = Hub()
    register_fanout(hub)

    def handle(request: Any) -> Any:
        return mhd2.action_from_response(request, mhd2.Response.from_buffer_copy(200, b"x"))

    async with mhd2.Daemon(handle, port=0, metrics=registry) as daemon:
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{daemon.port}/")
        daemon.sample_metrics()
        hub.counts = {"subscribers": 2, "deliveries": 15, "drops": 1}
        daemon.sample_metrics()
    found = samples(prometheus_client.generate_latest(registry).decode())
    assert value(found, "mhd2_requests_total", method="GET", status_class="2xx",
                 protocol="HTTP/1.1") == 1
    assert value(found, "mhd2_fanout_subscribers") == 2
    assert value(found, "mhd2_fanout_deliveries_total") == 15
    assert value(found, "mhd2_fanout_drops_total") == 1


def test_metrics_path_without_metrics_is_a_usage_error() -> None:
    with pytest.raises(mhd2.UsageError, match="metrics_path needs metrics"):
        mhd2.Daemon(lambda r: None, metrics_path="/metrics")


async def test_suspended_requests_and_websocket_sessions_are_gauged() -> None:
    from websockets.sync.client import connect

    from mhd2.websocket import action_websocket

    registry = prometheus_client.CollectorRegistry()
    parked: list[mhd2.Request] = []
    in_session = trio.Event()
    leave = trio.Event()

    async def hold(ws: Any) -> None:
        in_session.set()
        await leave.wait()

    def handle(request: Any) -> Any:
        if request.path == "/ws":
            return action_websocket(request, hold)
        if request.app_context is None:
            request.app_context = "resumed"
            parked.append(request)
            return mhd2.action_suspend(request)
        return mhd2.action_from_response(request, mhd2.Response.from_buffer_copy(200, b"x"))

    async with mhd2.Daemon(handle, port=0, metrics=registry) as daemon:
        def websocket_client() -> None:
            with connect(f"ws://127.0.0.1:{daemon.port}/ws", open_timeout=10):
                trio.from_thread.run(leave.wait)

        async with httpx.AsyncClient() as client, trio.open_nursery() as nursery:
            nursery.start_soon(client.get, f"http://127.0.0.1:{daemon.port}/")
            nursery.start_soon(trio.to_thread.run_sync, websocket_client)
            with trio.fail_after(10):
                await in_session.wait()
            await settled()  # the plain request reached the application too
            assert len(parked) == 1
            daemon.sample_metrics()
            during = samples(prometheus_client.generate_latest(registry).decode())
            mhd2.request_resume(parked[0])
            leave.set()
    assert value(during, "mhd2_requests_suspended") == 1
    assert value(during, "mhd2_websocket_sessions") == 1
    assert value(during, "mhd2_connections_open") == 2


async def test_a_running_fanout_hub_is_scraped() -> None:
    from mhd2.fanout import Hub, action_long_poll

    registry = prometheus_client.CollectorRegistry()
    async with Hub() as hub:
        topic = hub.topic("news")

        def handle(request: Any) -> Any:
            return action_long_poll(request, topic, cursor=request.args.get("cursor"),
                                    timeout=30.0)

        async with mhd2.Daemon(handle, port=0, metrics=registry) as daemon:
            async with httpx.AsyncClient() as client, trio.open_nursery() as nursery:
                got: list[httpx.Response] = []

                async def poll() -> None:
                    got.append(await client.get(f"http://127.0.0.1:{daemon.port}/"))

                nursery.start_soon(poll)
                await settled()  # the poll reached the hub
                assert sum(hub.stats().subscribers.values()) == 1
                daemon.sample_metrics()
                waiting = samples(prometheus_client.generate_latest(registry).decode())
                await topic.publish(b"hello")
            daemon.sample_metrics()
            after = samples(prometheus_client.generate_latest(registry).decode())
    assert got[0].status_code == 200
    assert value(waiting, "mhd2_fanout_subscribers") >= 1
    assert value(after, "mhd2_fanout_deliveries_total") >= 1
    assert value(after, "mhd2_fanout_subscribers") == 0
