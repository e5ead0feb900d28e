"""websocket_chat — a multi-user chat over WebSockets (``action_websocket``).

Open http://127.0.0.1:8888/ in several browsers: every message is broadcast
to everyone connected.  Each client gets a bounded outgoing queue served by
its own task, so one slow browser never holds up the others (a client whose
queue overflows is disconnected with 1008)::

    python examples/websocket_chat.py [--host H] [--port P]
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

import trio
from _runner import parse_args, run

import mhd2
from mhd2.websocket import ConnectionClosed, WebSocket, action_websocket

QUEUE = 256  # messages waiting for one client before it is dropped
MAX_TEXT = 2000

PAGE = b"""<!DOCTYPE html>
<html>
<head>
<meta charset="UTF-8">
<title>mhd2 WebSocket chat</title>
<style>
body { font-family: sans-serif; max-width: 40em; margin: 2em auto; }
#messages { list-style: none; padding: 0; }
#messages li { padding: .2em 0; }
.name { font-weight: bold; margin-right: .5em; }
#status { color: #666; }
</style>
</head>
<body>
<h1>Chat</h1>
<p id="status">connecting...</p>
<ul id="messages"></ul>
<form id="send">
  <input id="name" placeholder="name" size="10" value="guest">
  <input id="text" placeholder="message" size="40" autocomplete="off">
  <button type="submit" disabled>Send</button>
</form>
<script>
const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
const socket = new WebSocket(url);
const status = document.getElementById('status');
const button = document.querySelector('#send button');
socket.onopen = () => { status.textContent = 'connected'; button.disabled = false; };
socket.onclose = (e) => { status.textContent = 'disconnected (' + e.code + ')'; button.disabled = true; };
socket.onmessage = (event) => {
  const msg = JSON.parse(event.data);
  if (msg.users !== undefined) { status.textContent = 'connected, ' + msg.users + ' online'; return; }
  const li = document.createElement('li');
  const name = document.createElement('span'); name.className = 'name'; name.textContent = msg.name;
  const text = document.createElement('span'); text.className = 'text'; text.textContent = msg.text;
  li.append(name, text);
  document.getElementById('messages').append(li);
};
document.getElementById('send').onsubmit = (event) => {
  event.preventDefault();
  const text = document.getElementById('text');
  if (text.value) {
    socket.send(JSON.stringify({name: document.getElementById('name').value, text: text.value}));
    text.value = '';
  }
};
</script>
</body>
</html>
"""


class ChatRoom:
    """The connected clients and their outgoing queues."""

    def __init__(self) -> None:
        self.clients: dict[WebSocket, trio.MemorySendChannel[str]] = {}

    def broadcast(self, message: dict[str, object]) -> None:
        data = json.dumps(message)
        for ws, queue in list(self.clients.items()):
            try:
                queue.send_nowait(data)
            except trio.WouldBlock:  # too slow: drop it rather than stall everyone
                queue.close()
                del self.clients[ws]
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                self.clients.pop(ws, None)

    async def session(self, ws: WebSocket) -> None:
        send, receive = trio.open_memory_channel[str](QUEUE)
        self.clients[ws] = send
        self.broadcast({"users": len(self.clients)})
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, ws, receive, nursery.cancel_scope)
                await self._reader(ws)
                nursery.cancel_scope.cancel()
        finally:
            self.clients.pop(ws, None)
            self.broadcast({"users": len(self.clients)})

    async def _reader(self, ws: WebSocket) -> None:
        while True:
            try:
                raw = await ws.receive()
            except ConnectionClosed:
                return
            try:
                msg = json.loads(raw)
                name, text = str(msg["name"])[:40], str(msg["text"])[:MAX_TEXT]
            except (ValueError, KeyError, TypeError):
                await ws.close(1003, "expected {\"name\": ..., \"text\": ...}")
                return
            self.broadcast({"name": name or "guest", "text": text, "time": time.time()})

    async def _writer(self, ws: WebSocket, queue: trio.MemoryReceiveChannel[str],
                      scope: trio.CancelScope) -> None:
        async for data in queue:
            try:
                await ws.send(data)
            except ConnectionClosed:
                break
        else:  # the room closed our queue: we were too slow
            await ws.close(1008, "too slow")
        scope.cancel()


def make_app(room: ChatRoom | None = None) -> Callable[[mhd2.Request], mhd2.Action]:
    room = room or ChatRoom()

    def answer(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/ws":
            return action_websocket(request, room.session, max_message_size=64 << 10)
        if request.path == "/":
            response = mhd2.Response.from_buffer_static(200, PAGE)
            response.add_header("Content-Type", "text/html; charset=utf-8")
            return mhd2.action_from_response(request, response)
        return mhd2.action_from_response(
            request, mhd2.Response.from_buffer_static(404, b"404 Not Found"))

    return answer


if __name__ == "__main__":
    sys.exit(run("websocket_chat", make_app(), parse_args("A WebSocket chat for browsers")))
