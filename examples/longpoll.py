"""longpoll — long polling on a topic with :mod:`mhd2.fanout`.

A message board in its smallest form (the full chat with a page is
``python -m mhd2 demo``)::

    python examples/longpoll.py [--host H] [--port P] [--poll-timeout S]
    curl -i 'http://127.0.0.1:8888/poll'                  # waits ...
    curl --data 'hello' http://127.0.0.1:8888/send        # ... and this answers it

``GET /poll?cursor=ID`` answers at once with the messages published after
the message *ID* (``{"messages": [{"id", "event", "data"}], "cursor"}``);
if there are none (or no cursor is given) the request waits for the next
message -- parked by :func:`mhd2.fanout.action_long_poll`, no task of its
own -- or ``--poll-timeout`` seconds, then ``204 No Content``.  Every answer
carries ``X-Cursor``: the cursor of the next poll.  ``POST /send`` publishes
its body and answers with the new message's id.
"""

from __future__ import annotations

import argparse
import sys

import trio
from _runner import parse_args, serve

import mhd2
from mhd2.fanout import Hub, Topic, action_long_poll


class Board:
    def __init__(self, topic: Topic, poll_timeout: float) -> None:
        self.topic = topic
        self.poll_timeout = poll_timeout

    async def handle(self, request: mhd2.Request) -> mhd2.Action:
        if request.path == "/send" and request.method == "POST":
            return mhd2.action_process_upload_full(request, 4096, self.on_message)
        if request.path != "/poll":
            return answer(request, 404, b"try GET /poll?cursor=ID or POST /send\n")
        # Called again for the same request when the wait is over: it answers then.
        return action_long_poll(request, self.topic, cursor=request.args.get("cursor"),
                                timeout=self.poll_timeout)

    async def on_message(self, request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        text = data.decode("utf-8", "replace").strip()
        if not text:
            response = mhd2.Response.from_buffer_static(400, b"empty message\n")
            return mhd2.upload_action_from_response(request, response)
        message_id = await self.topic.publish(text)
        response = mhd2.Response.from_buffer_copy(200, f"{message_id}\n".encode())
        return mhd2.upload_action_from_response(request, response)


def answer(request: mhd2.Request, status: int, body: bytes) -> mhd2.Action:
    response = mhd2.Response.from_buffer_copy(status, body)
    response.add_header("Content-Type", "text/plain")
    return mhd2.action_from_response(request, response)


async def main(args: argparse.Namespace) -> int:
    async with Hub() as hub:
        board = Board(hub.topic("board", history=100), args.poll_timeout)
        return await serve("longpoll", board.handle, args.host, args.port)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--poll-timeout", type=float, default=30.0,
                        help="seconds before a waiting poll gets 204 (default: %(default)s)")


if __name__ == "__main__":
    sys.exit(trio.run(main, parse_args("Long polling with mhd2.fanout", extra=_options)))
