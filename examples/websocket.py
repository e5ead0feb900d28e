"""websocket — the tutorial's ``websocket.c`` (chapter "Websockets"), on mhd2.

``/`` serves a page whose script opens a WebSocket to ``/chat`` and sends
"Hello from JavaScript!"; the server prints every text message it receives
and answers each with "Hello".  As in C, the handshake is checked with the
``libmicrohttpd_ws`` helpers and the frames are decoded and encoded with a
:class:`~mhd2.websocket.WebSocketStream` over ``upgraded_recv`` /
``upgraded_send`` (for the high-level API see ``websocket_chat.py``)::

    python examples/websocket.py [--host H] [--port P]
"""

from __future__ import annotations

import sys

from _runner import parse_args, run

import mhd2
from mhd2.websocket import (
    Validity,
    WebSocketStatus,
    WebSocketStream,
    check_connection_header,
    check_http_version,
    check_upgrade_header,
    check_version_header,
    create_accept_header,
)

PAGE = b"""<!DOCTYPE html>
<html>
<head>
<meta charset="UTF-8">
<title>Websocket Demo</title>
<script>

let url = 'ws' + (window.location.protocol === 'https:' ? 's' : '') + '://' +
          window.location.host + '/chat';
let socket = null;

window.onload = function(event) {
  socket = new WebSocket(url);
  socket.onopen = function(event) {
    document.write('The websocket connection has been established.<br>');

    // Send some text
    socket.send('Hello from JavaScript!');
  }

  socket.onclose = function(event) {
    document.write('The websocket connection has been closed.<br>');
  }

  socket.onerror = function(event) {
    document.write('An error occurred during the websocket communication.<br>');
  }

  socket.onmessage = function(event) {
    document.write('Websocket message received: ' + event.data + '<br>');
  }
}

</script>
</head>
<body>
</body>
</html>"""

PAGE_NOT_FOUND = b"404 Not Found"
PAGE_INVALID_WEBSOCKET_REQUEST = b"Invalid WebSocket request!"


async def upgrade_handler(request: mhd2.Request, urh: mhd2.UpgradeHandle) -> None:
    # MHD_websocket_stream_init (&ws, 0, 0): a server stream, no fragments, no size limit
    ws = WebSocketStream()
    # Let's wait for incoming data
    while ws.is_valid() is Validity.VALID:
        try:
            buf = await urh.upgraded_recv(256)
        except mhd2.UpgradedError:
            break
        if not buf:
            break  # the TCP/IP socket has been closed
        # parse the entire received data
        offset = 0
        while offset < len(buf):
            status, frame_data, consumed = ws.decode(buf[offset:])
            if status < 0:
                break  # an error occurred and the connection must be closed
            offset += consumed
            if status is WebSocketStatus.TEXT_FRAME:
                # The client has sent some text: display it and answer "Hello".
                assert frame_data is not None
                print(f"Received message: {frame_data.decode()}", flush=True)
                await urh.upgraded_send(ws.encode_text("Hello"))
            elif status is WebSocketStatus.CLOSE_FRAME:
                # if we receive a close frame, we will respond with one
                await urh.upgraded_send(ws.encode_close())
            elif status is WebSocketStatus.PING_FRAME:
                # respond with the corresponding pong frame
                await urh.upgraded_send(ws.encode_pong(frame_data or b""))
            # binary and pong frames are ignored, as in the C program
    # close the socket when it is not needed anymore
    await urh.upgraded_close()


def answer_to_connection(request: mhd2.Request) -> mhd2.Action:
    if request.method != "GET":
        return mhd2.action_abort_request(request)  # unexpected method
    if request.path == "/":
        response = mhd2.Response.from_buffer_static(200, PAGE)
        return mhd2.action_from_response(request, response)
    if request.path == "/chat":
        headers = request.headers
        is_valid = (
            check_http_version(request.version)
            and check_connection_header(headers.get("Connection"))
            and check_upgrade_header(headers.get("Upgrade"))
            and check_version_header(headers.get("Sec-WebSocket-Version"))
        )
        accept = None
        if is_valid:
            try:
                accept = create_accept_header(headers.get("Sec-WebSocket-Key"))
            except ValueError:
                is_valid = False
        if is_valid and accept is not None:
            # upgrade the connection
            return mhd2.action_upgrade(request, "websocket", upgrade_handler,
                                       [("Sec-WebSocket-Accept", accept)])
        response = mhd2.Response.from_buffer_static(400, PAGE_INVALID_WEBSOCKET_REQUEST)
        return mhd2.action_from_response(request, response)
    response = mhd2.Response.from_buffer_static(404, PAGE_NOT_FOUND)
    return mhd2.action_from_response(request, response)


if __name__ == "__main__":
    sys.exit(run("websocket", answer_to_connection, parse_args("The tutorial's WebSocket demo")))
