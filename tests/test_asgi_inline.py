"""The bridge takes an app's first step in the request callback (mhd2.asgi.inline).

An app that answers without waiting needs no task; one that waits is handed
to a runner task, which must look to the app exactly like a task that ran it
from the start: the same ``current_task()`` before and after the wait, locks
it holds, cancel scopes and deadlines it entered, its contextvars.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
from conftest import WAIT, settled

import mhd2
import mhd2.asgi
import mhd2.asgi.cycle
import mhd2.asgi.inline

Scope = dict[str, Any]
START = {"type": "http.response.start", "status": 200,
         "headers": [(b"content-type", b"text/plain")]}



def test_the_first_step_is_supported_on_this_trio() -> None:
    """The trio internals mhd2.asgi.inline needs are there (else every call gets a task)."""
    assert mhd2.asgi.inline.SUPPORTED


@pytest.fixture(autouse=True)
def no_park_rescue(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lost wake-up must hang (and fail), not be rescued by the slow-app sweeper."""
    monkeypatch.setattr(mhd2.asgi.cycle, "PARK_AFTER", 1000.0)


@asynccontextmanager
async def serve(app: Any, **options: Any) -> AsyncIterator[mhd2.asgi.Daemon]:
    options.setdefault("port", 0)
    with trio.fail_after(WAIT * 3):
        async with mhd2.asgi.Daemon(app, lifespan="off", **options) as daemon:
            yield daemon


def body(text: str | bytes) -> dict[str, Any]:
    return {"type": "http.response.body",
            "body": text.encode() if isinstance(text, str) else text}


async def test_an_app_that_answers_at_once_needs_no_task_per_request() -> None:
    tasks: set[trio.lowlevel.Task] = set()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        tasks.add(trio.lowlevel.current_task())
        await send(START)
        await send(body("hi"))

    async with serve(app) as d, httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.port}") as c:
        for _ in range(20):
            assert (await c.get("/")).text == "hi"
    # The first call starts a runner; the others run in its name (a task each before).
    assert len(tasks) <= 2, len(tasks)


@pytest.mark.parametrize("http2", [False, True])
async def test_an_app_that_waits_keeps_its_task_and_lock(http2: bool) -> None:
    lock = trio.Lock()
    seen: list[bool] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        before = trio.lowlevel.current_task()
        async with lock:  # its owner is the task that runs the app ...
            await trio.sleep(0.001)
            await trio.lowlevel.checkpoint()
        # ... and releasing it from another task would raise RuntimeError.
        seen.append(trio.lowlevel.current_task() is before)
        await send(START)
        await send(body(scope["path"]))

    async with serve(app) as d, httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{d.port}", http1=not http2, http2=http2) as c:
        async with trio.open_nursery() as nursery:
            for i in range(30):
                async def one(i: int = i) -> None:
                    assert (await c.get(f"/{i}")).text == f"/{i}"
                nursery.start_soon(one)
    assert seen == [True] * 30


async def test_a_deadline_entered_in_the_first_step_fires_in_the_runner() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        with trio.move_on_after(0.05) as timeout:
            await trio.sleep(WAIT * 10)
        await send(START)
        await send(body(f"cancelled={timeout.cancelled_caught}"))

    async with serve(app) as d, httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.port}") as c:
        for _ in range(3):
            with trio.fail_after(WAIT):
                assert (await c.get("/")).text == "cancelled=True"


async def test_a_scope_cancelled_in_the_first_step_cancels_the_wait_in_it() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        with trio.CancelScope() as cancel_scope:
            cancel_scope.cancel()  # pending: delivered at the next checkpoint
            await trio.sleep_forever()
        await send(START)
        await send(body(f"cancelled={cancel_scope.cancelled_caught}"))

    async with serve(app) as d, httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.port}") as c:
        for _ in range(3):
            with trio.fail_after(WAIT):
                assert (await c.get("/")).text == "cancelled=True"


async def test_a_scope_cancelled_and_left_in_the_first_step_leaves_nothing_behind() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        with trio.CancelScope() as cancel_scope:
            cancel_scope.cancel()  # never delivered: no checkpoint in the scope
        await trio.sleep(0.001)  # a later wait is not cancelled
        await send(START)
        await send(body("ok"))

    async with serve(app) as d, httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.port}") as c:
        for _ in range(3):
            assert (await c.get("/")).text == "ok"


async def test_contextvars_set_by_one_call_do_not_reach_the_next() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        before = var.get()
        var.set(scope["path"])
        if scope["path"] == "/wait":
            await trio.sleep(0.001)
        await send(START)
        await send(body(f"{before} {var.get()}"))

    async with serve(app) as d, httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.port}") as c:
        for path in ("/a", "/wait", "/b", "/wait"):
            assert (await c.get(path)).text == f"unset {path}"


async def test_the_response_leaves_before_the_app_returns() -> None:
    """Work after the last body message (a background task) does not hold the response."""
    release = trio.Event()
    finished: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send(START)
        await send(body("early"))
        await release.wait()
        finished.append(scope["path"])

    async with serve(app) as d, httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.port}") as c:
        with trio.fail_after(WAIT):
            assert (await c.get("/one")).text == "early"
            assert (await c.get("/two")).text == "early"
        assert finished == []
        release.set()
        await settled()
        assert sorted(finished) == ["/one", "/two"]


async def test_a_nursery_in_the_first_step_whose_child_answers() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        async def child() -> None:
            await send(START)
            await send(body("from a child"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)

    async with serve(app) as d, httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.port}") as c:
        for _ in range(5):
            with trio.fail_after(WAIT):
                assert (await c.get("/")).text == "from a child"


@pytest.mark.parametrize("where", ["before start", "after start", "in the runner"])
async def test_an_app_raising_in_its_first_step(where: str) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["path"] == "/fail":
            if where == "after start":
                await send(START)
            elif where == "in the runner":
                await trio.lowlevel.checkpoint()  # (handed to the runner)
            raise ValueError("boom")
        await send(START)
        await send(body("fine"))

    async with serve(app) as d:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.port}") as c:
            assert (await c.get("/")).text == "fine"
            if where != "after start":
                assert (await c.get("/fail")).status_code == 500
            else:
                with pytest.raises(httpx.HTTPError):
                    await c.get("/fail")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.port}") as c:
            assert (await c.get("/")).text == "fine"  # the runner is fine


async def test_a_graceful_stop_cancels_an_app_that_waits_in_a_runner() -> None:
    started = trio.Event()
    outcome: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["path"] == "/":
            await send(START)
            await send(body("warm"))
            return
        started.set()
        try:
            await trio.sleep_forever()
        finally:
            outcome.append("cancelled")

    async with trio.open_nursery() as nursery:
        daemon = mhd2.asgi.Daemon(app, port=0, lifespan="off")
        async with daemon:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.port}",
                                         timeout=WAIT) as c:
                assert (await c.get("/")).text == "warm"  # a runner is idle now

                async def hang() -> None:
                    with pytest.raises(httpx.HTTPError):
                        await c.get("/hang")

                nursery.start_soon(hang)
                with trio.fail_after(WAIT):
                    await started.wait()
                with trio.fail_after(WAIT * 3):
                    await daemon.stop(grace=0.1)
    assert outcome == ["cancelled"]


async def test_inline_false_gives_every_call_a_task() -> None:
    tasks: set[trio.lowlevel.Task] = set()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        tasks.add(trio.lowlevel.current_task())
        await send(START)
        await send(body("hi"))

    bridge = mhd2.asgi.Bridge(app, inline=False)
    async with trio.open_nursery() as nursery:
        bridge.spawn = nursery.start_soon
        async with mhd2.Daemon(bridge, port=0) as d, httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{d.port}") as c:
            for _ in range(5):
                assert (await c.get("/")).text == "hi"
        nursery.cancel_scope.cancel()
    assert len(tasks) == 5


class _ForeignYield:
    """What asyncio code yields to its loop: not one of trio's traps."""

    def __await__(self) -> Any:
        yield self


async def test_an_app_yielding_to_another_event_loop_gets_500_and_the_daemon_lives() -> None:
    """As trio does with a task, the TypeError is thrown into the app (within its
    context: a contextvar reset on the way out works), never into the daemon."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var")

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["path"] == "/asyncio":
            token = var.set("in")
            try:
                await _ForeignYield()
            finally:
                var.reset(token)  # raises ValueError in another context
        await send(START)
        await send(body("fine"))

    async with serve(app) as d, httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.port}") as c:
        for _ in range(3):  # the first in a new runner, the others in a first step
            assert (await c.get("/asyncio")).status_code == 500
            assert (await c.get("/")).text == "fine"


def test_action_asgi_in_two_trio_runs_one_after_the_other() -> None:
    """The runners of the first run end with it; the second run makes its own."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send(START)
        await send(body(f"{id(trio.lowlevel.current_root_task())}"))

    def request_cb(request: mhd2.Request) -> mhd2.Action:
        return mhd2.asgi.action_asgi(request, app)

    async def one_run() -> list[str]:
        async with mhd2.Daemon(request_cb, port=0) as d, httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{d.port}") as c:
            with trio.fail_after(WAIT):
                return [(await c.get("/")).text for _ in range(4)]

    for _ in range(2):
        answers = trio.run(one_run)
        assert len(set(answers)) == 1  # every answer from this run's tasks


async def test_no_idle_runners_means_a_task_for_each_call() -> None:
    tasks: set[trio.lowlevel.Task] = set()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        tasks.add(trio.lowlevel.current_task())
        await send(START)
        await send(body("hi"))

    async with serve(app, idle_runners=0) as d, httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{d.port}") as c:
        for _ in range(5):
            assert (await c.get("/")).text == "hi"
    assert len(tasks) == 5


def test_a_negative_idle_runners_is_refused() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        pass

    with pytest.raises(mhd2.UsageError, match="idle_runners"):
        mhd2.asgi.Daemon(app, idle_runners=-1)


@pytest.mark.parametrize("where", ["in the first step", "in the runner"])
async def test_an_app_that_raised_leaves_nothing_to_the_next_app(
        where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next app on the same runner does not run as if handling the last one's
    exception (no ``sys.exc_info()``, no ``__context__``), and the runner keeps
    no reference to it."""
    import gc
    import logging
    import sys
    import weakref

    # (a log record would keep the exception: pytest keeps the records)
    monkeypatch.setattr(logging.getLogger("mhd2.asgi"), "disabled", True)

    seen: list[object] = []
    raised: list[weakref.ref[BaseException]] = []

    class Boom(Exception):
        pass

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["path"] == "/fail":
            if where == "in the runner":
                await trio.lowlevel.checkpoint()
            error = Boom("boom")
            raised.append(weakref.ref(error))
            raise error
        seen.append(sys.exc_info()[1])
        try:
            raise KeyError("inner")
        except KeyError as exc:
            seen.append(exc.__context__)
        await send(START)
        await send(body("fine"))

    async with serve(app) as d, httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.port}") as c:
        assert (await c.get("/")).text == "fine"  # a runner is idle now
        assert (await c.get("/fail")).status_code == 500
        await settled()  # (the runner is idle again)
        gc.collect()
        assert raised and raised[0]() is None, "an idle runner keeps the app's exception"
        assert (await c.get("/")).text == "fine"
    assert seen == [None, None, None, None]
