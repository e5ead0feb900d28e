"""A WebSocket echo server: every text and binary message comes back unchanged.

This is the server the Autobahn|Testsuite fuzzing client is pointed at
(``nox -s conformance``); any path accepts the handshake::

    python examples/ws_echo.py --port 9001

A request with ``Upgrade: echo`` (instead of ``websocket``) is upgraded to a
raw echo through ``upgraded_recv``/``upgraded_send``, without WebSocket
framing; the throughput benchmark uses it.
"""

from __future__ import annotations

import sys

from _runner import parse_args, run

import mhd2
from mhd2.websocket import WebSocket, action_websocket


async def echo(ws: WebSocket) -> None:
    """Send every message back until the client closes."""
    while True:
        await ws.send(await ws.receive())


async def raw_echo(request: mhd2.Request, urh: mhd2.UpgradeHandle) -> None:
    """Echo bytes on the upgraded connection until the client shuts its side."""
    while True:
        data = await urh.upgraded_recv(1 << 16)
        if not data:
            return
        await urh.upgraded_send(data)


def answer(request: mhd2.Request) -> mhd2.Action:
    if request.headers.get_all("Upgrade") == ["echo"]:
        return mhd2.action_upgrade(request, "echo", raw_echo)
    return action_websocket(request, echo, max_message_size=16 << 20)


def main(argv: list[str] | None = None) -> int:
    args = parse_args("WebSocket echo server (Autobahn|Testsuite target)", argv=argv)
    return run("ws_echo", answer, args)


if __name__ == "__main__":
    sys.exit(main())
