"""One WebSocket served by an ASGI app (ASGI WebSocket spec 2.4).

The request callback suspends until the app answers ``websocket.connect``:

* ``websocket.accept`` -> :func:`mhd2.websocket.action_websocket` with the
  app's subprotocol and headers; its handler reads messages into the app's
  ``receive()`` one at a time (the next frame is read only when the app has
  taken the last one: the peer's TCP window is the backpressure);
* ``websocket.close`` before accepting -> ``403``;
* ``websocket.http.response.start`` / ``.body`` -> that response (the
  ``websocket.http.response`` extension: a denial with a body).

The close code and reason the peer sent (1006 if it vanished, 1001 when the
daemon stops gracefully) reach the app as ``websocket.disconnect``.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import trio

from .. import (
    Action,
    Request,
    RequestEndedCode,
    Response,
    action_from_response,
    action_suspend,
    request_resume,
)
from ..websocket import ConnectionClosed, WebSocket, action_websocket
from .cycle import ClientDisconnected, Cycle, Message, Shared
from .responses import text_pairs

__all__ = ["WebSocketCycle"]

logger = logging.getLogger("mhd2.asgi")

_CONNECT: dict[str, Any] = {"type": "websocket.connect"}


class WebSocketCycle(Cycle):
    """The meeting point of the daemon's side and the app's task for one WebSocket.

    Args:
        request: the handshake request.
        scope: its ASGI scope.
        max_message_size: the largest message accepted (see ``action_websocket``).
    """

    __slots__ = (
        "_accept", "_connect_given", "_denial", "_denial_body", "_incoming",
        "app_failed", "closed", "max_message_size", "response", "ws",
    )

    def __init__(self, request: Request, scope: dict[str, Any], shared: Shared,
                 max_message_size: int = 1 << 20) -> None:
        super().__init__(request, scope, shared)
        self.max_message_size = max_message_size
        self._connect_given = False
        self._accept: Message | None = None
        self._denial: Message | None = None
        self._denial_body: list[bytes] = []
        self.response: Response | None = None
        self.ws: WebSocket | None = None
        self._incoming: deque[str | bytes] = deque()
        #: ``(code, reason)`` once the connection is closed.
        self.closed: tuple[int, str] | None = None
        self.app_failed = False
        self._watch_end()

    def _ended(self, code: RequestEndedCode) -> None:
        super()._ended(code)
        if code is RequestEndedCode.COMPLETED_OK_UPGRADE:
            return  # the 101 is sent: the handler runs next, and tells the rest
        if self.ws is None and self.closed is None:
            # Ended before an accept took effect: the client went, or was answered.
            self.closed = (1006, "")
        self.notify()

    def _resume(self) -> None:
        """Wake the daemon's side: suspended (resume it) or waiting in a callback."""
        self.notify()
        if self.end_code is None:  # (never after the 101: the request is over)
            request_resume(self.request)

    # -- the daemon's side ------------------------------------------------------------

    def next_action(self) -> Action:
        """The action for the request callback (called again after each resume)."""
        request = self.request
        if self.response is not None:
            return action_from_response(request, self.response)
        accept = self._accept
        if accept is not None:
            sub = accept.get("subprotocol")
            return action_websocket(
                request, self._handler, subprotocols=(sub,) if sub else (),
                max_message_size=self.max_message_size,
                headers=text_pairs(accept.get("headers", ())))
        if self.shared.stopping:
            return self._awaited_action()  # type: ignore[return-value]
        return action_suspend(request)

    async def _awaited_action(self) -> Action:
        while self.response is None and self._accept is None and self.end_code is None:
            await self.wait()
        return self.next_action()

    async def _handler(self, ws: WebSocket) -> None:
        self.ws = ws
        self.notify()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read, ws, nursery.cancel_scope)
            while not self.app_done and self.closed is None:
                await self.wait()
            nursery.cancel_scope.cancel()
        if self.app_failed and ws.closed is None:
            # "1011 indicates that a server is terminating the connection because
            # it encountered an unexpected condition" (RFC 6455 §7.4.1).
            await ws.close(1011)

    async def _read(self, ws: WebSocket, scope: trio.CancelScope) -> None:
        incoming = self._incoming
        try:
            while True:
                message = await ws.receive()
                incoming.append(message)
                self.notify()
                while incoming:
                    await self.wait()
        except ConnectionClosed as exc:
            self.closed = (exc.reason.code, exc.reason.reason)
        finally:
            if self.closed is None and ws.closed is not None:
                self.closed = (ws.closed.code, ws.closed.reason)
            self.notify()

    # -- the app's side ---------------------------------------------------------------

    async def receive(self) -> Message:
        """ASGI ``receive``: connect, the messages, then ``websocket.disconnect``."""
        if not self._connect_given:
            self._connect_given = True
            return _CONNECT
        incoming = self._incoming
        while True:
            if incoming:
                message = incoming.popleft()
                self.notify()
                if isinstance(message, str):
                    return {"type": "websocket.receive", "text": message}
                return {"type": "websocket.receive", "bytes": message}
            if self.closed is not None:
                code, reason = self.closed
                return {"type": "websocket.disconnect", "code": code, "reason": reason}
            await self.wait()

    async def send(self, message: Message) -> None:
        """ASGI ``send`` for ``websocket.*`` messages.

        Raises:
            ClientDisconnected: the connection is closed.
            RuntimeError: a message out of order or of an unknown type.
        """
        kind = message["type"]
        if kind == "websocket.send":
            ws = self.ws
            if ws is None or self.closed is not None:
                raise ClientDisconnected("the WebSocket is not open")
            text = message.get("text")
            try:
                await ws.send(text if text is not None else message.get("bytes") or b"")
            except ConnectionClosed as exc:
                raise ClientDisconnected(f"the WebSocket is closed ({exc.reason.code})") from None
        elif kind == "websocket.accept":
            if self._accept is not None or self.response is not None:
                raise RuntimeError("websocket.accept sent twice or after a denial")
            self._accept = message
            self._resume()
            while self.ws is None and self.closed is None:
                await self.wait()
        elif kind == "websocket.close":
            ws = self.ws
            if ws is None:
                if self._accept is None and self.response is None:
                    # "If this is sent before the socket is accepted, the server
                    # must close the connection with a HTTP 403 error code".
                    self._deny(Response.from_empty(403))
                return
            await ws.close(int(message.get("code") or 1000), message.get("reason") or "")
            if self.closed is None and ws.closed is not None:
                self.closed = (ws.closed.code, ws.closed.reason)
            self.notify()
        elif kind == "websocket.http.response.start":
            if self._accept is not None or self._denial is not None:
                raise RuntimeError("websocket.http.response.start after accept or twice")
            self._denial = message
        elif kind == "websocket.http.response.body":
            start = self._denial
            if start is None or self.response is not None:
                raise RuntimeError("websocket.http.response.body without its start")
            self._denial_body.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                response = Response.from_buffer(start["status"], b"".join(self._denial_body))
                for name, value in text_pairs(start.get("headers", ())):
                    if name.lower() != "content-length":
                        response.add_header(name, value)
                self._deny(response)
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in a websocket scope")

    def _deny(self, response: Response) -> None:
        # A refused upgrade closes the connection: a client may have sent frames
        # right behind its handshake, and they are no HTTP request.
        response.set_options(conn_close=True)
        self.response = response
        self._resume()

    def app_returned(self, error: BaseException | None) -> None:
        """The app's call has ended: deny (before accept: 500 / 403) or close."""
        self.app_done = True
        self.app_failed = error is not None
        if (self._accept is None and self.response is None and self.end_code is None):
            # Raised before accepting: 500; returned without accepting: 403 (as
            # if it had sent websocket.close).
            self._deny(Response.from_empty(500 if error is not None else 403))
        self.notify()
