"""sse — server-sent events on a topic with :mod:`mhd2.fanout`.

``GET /events`` is one endless ``text/event-stream`` response
(:func:`mhd2.fanout.action_sse`): each message posted to ``POST /send``
arrives as an event with an ``id:``; a browser's ``EventSource`` that
reconnects sends the last one back as ``Last-Event-ID`` and gets what it
missed.  While nothing happens the stream is parked, with no task of its
own, and a comment line keeps it alive every 15 seconds::

    python examples/sse.py [--host H] [--port P]
    curl -N http://127.0.0.1:8888/events                 # waits for events ...
    curl --data 'hello' http://127.0.0.1:8888/send        # ... and this sends one

Open http://127.0.0.1:8888/ in a browser to watch the events arrive.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import trio
from _runner import parse_args, serve

import mhd2
from mhd2.fanout import Hub, Topic, action_sse

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


def app(topic: Topic) -> Callable[[mhd2.Request], mhd2.Action]:
    async def on_message(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        await topic.publish(data.decode("utf-8", "replace"))
        return mhd2.upload_action_from_response(request, mhd2.Response.from_empty(204))

    def answer_to_connection(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/events":
            return action_sse(request, topic)
        if request.path == "/send" and request.method == "POST":
            return mhd2.action_process_upload_full(request, 4096, on_message)
        response = mhd2.Response.from_buffer_static(200, PAGE)
        response.add_header("Content-Type", "text/html; charset=utf-8")
        return mhd2.action_from_response(request, response)

    return answer_to_connection


async def main(args: argparse.Namespace) -> int:
    async with Hub() as hub:
        return await serve("sse", app(hub.topic("events", history=100)), args.host, args.port)


if __name__ == "__main__":
    sys.exit(trio.run(main, parse_args("Server-sent events with mhd2.fanout")))
