"""A WebSocket client over one HTTP/2 stream (RFC 8441) for the tests.

:class:`H2WebSocket` opens an extended CONNECT on a :class:`~h2raw.RawH2`
connection and speaks WebSocket frames (``wsproto``'s client side, masked)
in the stream's DATA frames; several may share one connection.
"""

from __future__ import annotations

from typing import Any

import trio
from h2raw import WAIT, RawH2, Reply
from wsproto.connection import Connection, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    TextMessage,
)

__all__ = ["H2WebSocket", "extended_connect"]


def extended_connect(client: RawH2, path: str = "/ws", *, protocol: str = "websocket",
                     headers: list[tuple[str, str]] | None = None,
                     scheme: str = "http", end: bool = False) -> int:
    """Queue an extended CONNECT's HEADERS (RFC 8441 §5); return its stream id."""
    sid = client.conn.get_next_available_stream_id()
    fields = [(":method", "CONNECT"), (":protocol", protocol), (":scheme", scheme),
              (":path", path), (":authority", "localhost"),
              *(headers if headers is not None else [("sec-websocket-version", "13")])]
    client.conn.send_headers(sid, [(k.encode(), v.encode()) for k, v in fields], end_stream=end)
    client.replies[sid] = Reply()
    return sid


class H2WebSocket:
    """One WebSocket on stream *sid* of *client* (after :func:`extended_connect`)."""

    def __init__(self, client: RawH2, sid: int) -> None:
        self.client = client
        self.sid = sid
        self.ws = Connection(ConnectionType.CLIENT)
        self._seen = 0
        self._eof_fed = False

    @classmethod
    async def open(cls, client: RawH2, path: str = "/ws",
                   headers: list[tuple[str, str]] | None = None) -> H2WebSocket:
        """Open and wait for the ``200``; fail if another answer comes."""
        sid = extended_connect(client, path, headers=headers)
        await client.flush()
        reply = client.replies[sid]
        await client.until(lambda: reply.status is not None or reply.reset is not None)
        assert reply.status == 200, (reply.status, reply.reset, reply.body)
        return cls(client, sid)

    @property
    def reply(self) -> Reply:
        return self.client.replies[self.sid]

    async def send_raw(self, data: bytes, *, end: bool = False) -> None:
        """Send *data* in DATA frames, waiting for the server's windows."""
        conn = self.client.conn
        pos = 0
        with trio.fail_after(WAIT):
            while pos < len(data) or (end and pos == len(data)):
                room = min(conn.local_flow_control_window(self.sid), conn.max_outbound_frame_size)
                if room <= 0 and pos < len(data):
                    await self.client.receive()
                    continue
                piece = data[pos:pos + room]
                pos += len(piece)
                conn.send_data(self.sid, piece, end_stream=end and pos == len(data))
                await self.client.flush()
                if end and pos == len(data):
                    return

    async def send(self, event: Any) -> None:
        await self.send_raw(self.ws.send(event))

    async def text(self, text: str) -> None:
        await self.send(TextMessage(text))

    async def binary(self, data: bytes) -> None:
        await self.send(BytesMessage(data))

    def _feed(self) -> None:
        body = self.reply.body
        if len(body) > self._seen:
            self.ws.receive_data(body[self._seen:])
            self._seen = len(body)
        if (self.reply.ended or self.reply.reset is not None) and not self._eof_fed:
            self._eof_fed = True
            try:
                self.ws.receive_data(None)
            except Exception:
                pass

    async def event(self, timeout: float = WAIT) -> Event | None:
        """The next WebSocket event (``None``: the stream ended without more)."""
        with trio.fail_after(timeout):
            while True:
                self._feed()
                for event in self.ws.events():
                    if isinstance(event, Ping):
                        await self.send(event.response())
                    return event
                if self._eof_fed or self.client.closed:
                    return None
                await self.client.receive()

    async def message(self, timeout: float = WAIT) -> str | bytes:
        """The next whole message (its fragments joined)."""
        parts: list[Any] = []
        while True:
            event = await self.event(timeout)
            assert isinstance(event, Message), event
            parts.append(event.data)
            if event.message_finished:
                return ("" if isinstance(event, TextMessage) else b"").join(parts)

    async def close_code(self, timeout: float = WAIT) -> int:
        """Read until the server's close frame; its code."""
        while True:
            event = await self.event(timeout)
            assert event is not None, "the stream ended without a close frame"
            if isinstance(event, CloseConnection):
                return int(event.code)
