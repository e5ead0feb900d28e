"""Real frameworks on the bridge, on trio (anyio's trio backend): Starlette and FastAPI."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import anyio
import httpx
import pytest
import trio
from conftest import WAIT
from websockets.sync.client import connect

import mhd2.asgi

fastapi = pytest.importorskip("fastapi")
starlette_applications = pytest.importorskip("starlette.applications")

from fastapi import Depends, FastAPI, UploadFile  # noqa: E402
from pydantic import BaseModel  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.background import BackgroundTask  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse  # noqa: E402
from starlette.routing import Mount, Route, WebSocketRoute  # noqa: E402
from starlette.websockets import WebSocket, WebSocketDisconnect  # noqa: E402


@asynccontextmanager
async def serve(app: Any, **options: Any) -> AsyncIterator[str]:
    with trio.fail_after(WAIT * 6):
        async with mhd2.asgi.Daemon(app, port=0, **options) as daemon:
            yield f"http://127.0.0.1:{daemon.port}"


# -- Starlette ---------------------------------------------------------------------------


def starlette_app(events: dict[str, Any]) -> Starlette:
    async def home(request: Request) -> PlainTextResponse:
        assert anyio.get_current_task()  # anyio runs ...
        assert trio.lowlevel.current_task()  # ... on trio
        return PlainTextResponse(f"home of {request.app.state.name}")

    async def item(request: Request) -> JSONResponse:
        return JSONResponse({"id": int(request.path_params["item_id"]),
                             "q": request.query_params.get("q"),
                             "root": request.scope["root_path"]})

    async def stream(request: Request) -> StreamingResponse:
        async def numbers() -> AsyncIterator[bytes]:
            for i in range(3):
                yield f"{i}\n".encode()
                await events["next"].wait()
                events["next"] = trio.Event()
        return StreamingResponse(numbers(), media_type="text/plain")

    async def background(request: Request) -> PlainTextResponse:
        async def after() -> None:
            events["background"].set()
        return PlainTextResponse("sent first", background=BackgroundTask(after))

    async def ws_echo(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                await websocket.send_text("echo: " + await websocket.receive_text())
        except WebSocketDisconnect as exc:
            events["ws_closed"] = exc.code

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.name = "starlette"
        events["started"] = True
        yield
        events["stopped"] = True

    inner = Starlette(routes=[Route("/items/{item_id}", item)])
    return Starlette(routes=[
        Route("/", home),
        Route("/stream", stream),
        Route("/background", background),
        WebSocketRoute("/ws", ws_echo),
        Mount("/sub", app=inner),
    ], lifespan=lifespan)


async def test_starlette_routing_streaming_background_websocket() -> None:
    events: dict[str, Any] = {"next": trio.Event(), "background": trio.Event()}
    async with serve(starlette_app(events)) as url:
        assert events.get("started") is True
        async with httpx.AsyncClient() as client:
            assert (await client.get(url + "/")).text == "home of starlette"
            r = await client.get(url + "/sub/items/42?q=x")
            assert r.json() == {"id": 42, "q": "x", "root": "/sub"}
            assert (await client.get(url + "/nowhere")).status_code == 404

            async with client.stream("GET", url + "/stream") as r:
                lines = r.aiter_lines()
                with trio.fail_after(WAIT):
                    for expected in ("0", "1", "2"):
                        assert await lines.__anext__() == expected  # before the next exists
                        events["next"].set()

            r = await client.get(url + "/background")
            assert r.text == "sent first"
            with trio.fail_after(WAIT):
                await events["background"].wait()

        def ws_client(base: str) -> str:
            with connect(base.replace("http", "ws") + "/ws", open_timeout=WAIT) as ws:
                ws.send("hi")
                answer = ws.recv(WAIT)
                ws.close(1000)
            return str(answer)

        with trio.fail_after(WAIT):
            assert await trio.to_thread.run_sync(ws_client, url) == "echo: hi"
            while "ws_closed" not in events:
                await trio.testing.wait_all_tasks_blocked()
        assert events["ws_closed"] == 1000
    assert events.get("stopped") is True


# -- FastAPI -----------------------------------------------------------------------------

UPLOAD_SIZE = 20 * 1024 * 1024
BLOCK = bytes(range(256)) * 256  # 64 KiB


class Item(BaseModel):
    name: str
    price: float


def settings() -> dict[str, str]:
    return {"currency": "EUR"}


async def current_user(token: str = "anonymous") -> str:
    return token.upper()


def fastapi_app(target_dir: Path) -> FastAPI:
    # (Dependencies live at module level: FastAPI resolves the annotations,
    # strings under `from __future__ import annotations`, in the module.)
    app = FastAPI()

    @app.post("/items")
    async def create(item: Item, user: Annotated[str, Depends(current_user)],
                     conf: Annotated[dict[str, str], Depends(settings)]) -> dict[str, Any]:
        return {"name": item.name, "total": item.price * 2, "by": user,
                "currency": conf["currency"]}

    @app.post("/upload")
    async def upload(file: UploadFile) -> dict[str, Any]:
        digest = hashlib.sha256()
        size = 0
        with open(target_dir / "upload.bin", "wb") as out:
            while chunk := await file.read(256 * 1024):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        return {"filename": file.filename, "size": size, "sha256": digest.hexdigest()}

    return app


async def multipart_body(boundary: str) -> AsyncIterator[bytes]:
    yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
           f"filename=\"big.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    for _ in range(UPLOAD_SIZE // len(BLOCK)):
        yield BLOCK
    yield f"\r\n--{boundary}--\r\n".encode()


async def test_fastapi_json_and_dependency_injection() -> None:
    async with serve(fastapi_app(Path("."))) as url, httpx.AsyncClient() as client:
        r = await client.post(url + "/items?token=ann", json={"name": "pen", "price": 1.5})
        assert r.status_code == 200
        assert r.json() == {"name": "pen", "total": 3.0, "by": "ANN", "currency": "EUR"}
        r = await client.post(url + "/items", json={"name": "pen"})
        assert r.status_code == 422  # validation through the same bridge


async def test_fastapi_large_form_upload_streams_to_disk_with_flat_memory(tmp_path: Path) -> None:
    expected = hashlib.sha256(BLOCK * (UPLOAD_SIZE // len(BLOCK))).hexdigest()
    boundary = "mhd2-test-boundary"
    async with serve(fastapi_app(tmp_path)) as url, httpx.AsyncClient(timeout=WAIT * 3) as client:
        tracemalloc.start()
        try:
            r = await client.post(url + "/upload", content=multipart_body(boundary),
                                  headers={"Content-Type":
                                           f"multipart/form-data; boundary={boundary}"})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert r.status_code == 200, r.text
    assert r.json() == {"filename": "big.bin", "size": UPLOAD_SIZE, "sha256": expected}
    assert (tmp_path / "upload.bin").stat().st_size == UPLOAD_SIZE
    # 20 MiB went through; the process never held more than a few MiB of it
    # (python-multipart spools the file to disk after 1 MiB).
    assert peak < 6 * 1024 * 1024, f"peak {peak} bytes"


# -- Quart-Trio (when installed) -----------------------------------------------------------


async def test_quart_trio_routes_json_and_websocket() -> None:
    quart_trio = pytest.importorskip("quart_trio")
    from quart import jsonify, request, websocket

    app = quart_trio.QuartTrio(__name__)
    served: list[str] = []

    @app.before_serving  # type: ignore[untyped-decorator]
    async def startup() -> None:
        served.append("startup")

    @app.route("/hello/<name>", methods=["POST"])  # type: ignore[untyped-decorator]
    async def hello(name: str) -> Any:
        data = await request.get_json()
        return jsonify({"hello": name, "got": data})

    @app.websocket("/ws")  # type: ignore[untyped-decorator]
    async def ws() -> None:
        while True:
            await websocket.send(f"quart: {await websocket.receive()!s}")

    async with serve(app) as url:
        assert served == ["startup"]
        async with httpx.AsyncClient() as client:
            r = await client.post(url + "/hello/trio", json={"n": 1})
            assert r.json() == {"hello": "trio", "got": {"n": 1}}

        def ws_client(base: str) -> str:
            with connect(base.replace("http", "ws") + "/ws", open_timeout=WAIT) as sock:
                sock.send("hi")
                return str(sock.recv(WAIT))

        with trio.fail_after(WAIT):
            assert await trio.to_thread.run_sync(ws_client, url) == "quart: hi"
