"""sse — server-sent events with ``dcc_action_suspend``, on mhd2.

``GET /events`` is one endless chunked ``text/event-stream`` response made by
a dynamic content creator.  When it has nothing to send it returns
:func:`mhd2.dcc_action_suspend`; ``POST /send`` appends a message and calls
:func:`mhd2.request_resume` on every waiting stream, whose creator is then
called again at the same position and writes the new events::

    python examples/sse.py [--host H] [--port P]
    curl -N http://127.0.0.1:8888/events                 # waits for events ...
    curl --data 'hello' http://127.0.0.1:8888/send        # ... and this sends one

Open http://127.0.0.1:8888/ in a browser to watch the events arrive.
"""

from __future__ import annotations

import sys

from _runner import parse_args, run

import mhd2

PAGE = b"""<!doctype html><meta charset="utf-8"><title>mhd2 sse</title>
<ul id="log"></ul>
<script>
new EventSource("/events").onmessage = (e) => {
  const li = document.createElement("li");
  li.textContent = e.data;
  document.getElementById("log").append(li);
};
</script>
"""

messages: list[str] = []
waiting: dict[mhd2.Request, None] = {}  # streams suspended for lack of news


def events(request: mhd2.Request) -> mhd2.Action:
    sent = 0  # messages this stream has sent; lives as long as the creator

    def creator(ctx: mhd2.DCCContext, pos: int, buf: memoryview) -> mhd2.DCCAction:
        nonlocal sent
        if sent == len(messages):
            waiting[request] = None
            return mhd2.dcc_action_suspend(ctx)  # called again after request_resume
        data = b"".join(f"data: {m}\n\n".encode() for m in messages[sent:])
        sent = len(messages)
        return mhd2.dcc_action_continue_zc(ctx, 0, [data])

    response = mhd2.Response.from_callback(200, None, creator)
    response.add_header("Content-Type", "text/event-stream")
    response.add_header("Cache-Control", "no-cache")
    return mhd2.action_from_response(request, response)


def on_message(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
    # one line per message: an event's data must not contain a bare newline
    messages.append(" ".join(data.decode("utf-8", "replace").split()))
    for stream in list(waiting):
        mhd2.request_resume(stream)
    waiting.clear()
    return mhd2.upload_action_from_response(request, mhd2.Response.from_empty(204))


def answer_to_connection(request: mhd2.Request) -> mhd2.Action:
    if request.path == "/events":
        return events(request)
    if request.path == "/send" and request.method == "POST":
        return mhd2.action_process_upload_full(request, 4096, on_message)
    response = mhd2.Response.from_buffer_static(200, PAGE)
    response.add_header("Content-Type", "text/html; charset=utf-8")
    return mhd2.action_from_response(request, response)


def stream_ended(request: mhd2.Request, code: mhd2.RequestEndedCode) -> None:
    waiting.pop(request, None)  # a client that went away is not resumed


if __name__ == "__main__":
    args = parse_args("Server-sent events with dcc_action_suspend")
    sys.exit(run("sse", answer_to_connection, args, notify_request_ended=stream_ended))
