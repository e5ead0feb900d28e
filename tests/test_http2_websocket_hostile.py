"""Hostile clients of RFC 8441 tunnels (WebSocket / action_upgrade over HTTP/2
streams), each with the memory bound and the bystander of :func:`_harness.h2_attack`:
what a client sends beyond its windows, or refuses to read, is never buffered."""

from __future__ import annotations

from typing import Any

import trio
from _harness import h2_attack, send_quietly
from conftest import WAIT, text_response
from h2ws import extended_connect
from hyperframe.frame import DataFrame, GoAwayFrame

import mhd2

MB = 1024 * 1024
TUNNELS = 50
#: What each handler of the second attack sends (one object for all: allocated
#: before the memory count starts).
PAYLOAD = b"y" * MB


def tunnel_app(handler: Any) -> Any:
    def cb(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/fine":
            return text_response(request)
        return mhd2.action_upgrade(request, "raw", handler)
    return cb


async def test_data_beyond_the_windows_of_unread_tunnels_ends_the_connection() -> None:
    """50 tunnels whose handler never reads; the client sends 50 MB regardless of
    the windows: the windows are all the server holds, then FLOW_CONTROL_ERROR."""
    started: list[int] = []

    async def handler(request: mhd2.Request, urh: mhd2.UpgradeHandle) -> None:
        started.append(1)
        await trio.sleep_forever()

    async with h2_attack(tunnel_app(handler)) as attack:
        client = attack.client
        sids = [extended_connect(client, protocol="raw", headers=[]) for _ in range(TUNNELS)]
        await client.flush()
        await client.until(lambda: all(client.replies[s].status == 200 for s in sids))
        piece = b"x" * 16384
        sent = 0
        with trio.fail_after(WAIT * 2):
            while sent < 50 * MB and not client.closed:
                frames = b"".join(DataFrame(sid, piece).serialize() for sid in sids[:8])
                await send_quietly(client, frames)
                sent += 8 * len(piece)
            await client.until_closed()
        assert sent < 50 * MB, "the server took 50 MB beyond its windows"
        # RFC 9113 §6.9.1: "A receiver MAY respond with a stream error or connection
        # error of type FLOW_CONTROL_ERROR (0x3)" -- if the GOAWAY was read before
        # the connection closed under the client's flood.
        codes = [f.error_code for f in client.frames if isinstance(f, GoAwayFrame)]
        assert codes in ([], [3]), codes
        assert len(started) == TUNNELS


async def test_a_client_that_never_reads_holds_the_handlers_not_memory() -> None:
    """50 tunnels each sending 1 MB (50 MB) to a client that never acknowledges: each
    handler's send waits at the client's window; nothing is queued beyond it."""
    waiting = trio.Event()
    finished = trio.Event()
    blocked: list[int] = []

    async def handler(request: mhd2.Request, urh: mhd2.UpgradeHandle) -> None:
        try:
            sent = await urh.upgraded_send(PAYLOAD, timeout=0.5)
        except mhd2.UpgradedTimeout:  # the connection's window went to the others
            sent = 0
        blocked.append(sent)
        if len(blocked) == TUNNELS:
            waiting.set()
        await finished.wait()  # released at the end: else the daemon waits 2 s for it

    async with h2_attack(tunnel_app(handler),
                         client_options={"window": 4096, "auto_ack": False}) as attack:
        client = attack.client
        for _ in range(TUNNELS):
            extended_connect(client, protocol="raw", headers=[])
        await client.flush()
        with trio.fail_after(WAIT):
            while not waiting.is_set():
                with trio.move_on_after(0.05):
                    await client.receive()
        # Each send stopped at what the windows allowed (the stream's 4096 at
        # most, the connection's 65535 shared).
        assert all(0 <= sent <= 4096 for sent in blocked)
        assert sum(blocked) <= 65535
        finished.set()
