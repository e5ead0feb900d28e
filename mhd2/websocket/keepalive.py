"""Keepalive pings of a :class:`~mhd2.websocket.WebSocket` (``ping_interval``).

A peer that neither answers a ping nor makes any progress (reading what is
sent, or sending) for an interval is gone: the WebSocket closes with 1011.
These functions belong to :mod:`mhd2.websocket.session` and use its
internals (the pong event, the send lock, the handle's progress mark).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import trio
from wsproto.events import CloseConnection

from .closing import CloseReason, ConnectionClosed

if TYPE_CHECKING:
    from .session import WebSocket

__all__ = ["keepalive"]


async def _pong_or_progress(ws: WebSocket, interval: float) -> bool:
    """Wait for the pong; ``False`` only when *interval* passes with nothing moving.

    The deadline is an inactivity limit: a peer that reads what is sent
    (even slowly: the kernel's send queue shrinks) or sends anything is
    alive, and its pong may well be queued behind a large message.
    """
    mark = ws._urh._progress_mark()
    while True:
        with trio.move_on_after(interval):
            await ws._pong_seen.wait()
            return True
        now = ws._urh._progress_mark()
        if now == mark or ws.closed is not None:
            return False
        mark = now


async def keepalive(ws: WebSocket, interval: float) -> None:
    """Ping every *interval* seconds; close with 1011 when a pong does not come and
    nothing moved for another *interval* (see :func:`_pong_or_progress`).

    Runs beside the handler (``action_websocket(ping_interval=...)``) until the
    WebSocket is closed.
    """
    payload = os.urandom(4)
    while ws.closed is None:
        await trio.sleep(interval)
        ws._pong_seen = trio.Event()
        try:
            await ws.ping(payload)
        except ConnectionClosed:
            return
        if await _pong_or_progress(ws, interval):
            continue
        if ws.closed is None:
            ws._finish(CloseReason(1011, "keepalive ping timeout"))
            with trio.move_on_after(0.5):
                try:
                    async with ws._send_lock:
                        await ws._write(ws._conn.send(
                            CloseConnection(code=1011, reason="keepalive ping timeout")))
                except Exception:
                    pass
            await ws._shutdown()
        return
