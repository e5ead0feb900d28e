"""longpoll — long polling with ``action_suspend`` / ``request_resume``, on mhd2.

A message board in its smallest form (the full chat with a page is
``python -m mhd2 demo``)::

    python examples/longpoll.py [--host H] [--port P] [--poll-timeout S]
    curl 'http://127.0.0.1:8888/poll?since=0'            # waits ...
    curl --data 'hello' http://127.0.0.1:8888/send        # ... and this answers it

``GET /poll?since=N`` answers at once if there are more than *N* messages;
otherwise the request is parked with :func:`mhd2.action_suspend`.  Posting a
message resumes every parked poll: the daemon calls the request callback
again (``request.app_context`` is kept) and it answers ``200`` with JSON.  A
poll still parked after ``--poll-timeout`` seconds is resumed by the one timer
task and answers ``204 No Content``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import deque

import trio
from _runner import parse_args, serve

import mhd2


class Poll:
    """``request.app_context`` of a long poll."""

    def __init__(self, since: int) -> None:
        self.since = since
        self.expired = False


class Board:
    def __init__(self, poll_timeout: float) -> None:
        self.poll_timeout = poll_timeout
        self.messages: list[str] = []
        self.parked: dict[mhd2.Request, None] = {}  # insertion-ordered set
        # Every wait lasts poll_timeout, so this FIFO is sorted by deadline.
        self.deadlines: deque[tuple[float, mhd2.Request]] = deque()
        self.wakeup = trio.Event()

    def handle(self, request: mhd2.Request) -> mhd2.Action:
        if request.path == "/send" and request.method == "POST":
            return mhd2.action_process_upload_full(request, 4096, self.on_message)
        if request.path != "/poll":
            return answer(request, 404, b"try GET /poll?since=N or POST /send\n")
        poll = request.app_context
        if poll is None:  # first call for this request
            since = request.get_value(mhd2.ValueKind.GET_ARGUMENT, "since") or "0"
            if not since.isascii() or not since.isdigit():
                return answer(request, 400, b"since must be a non-negative integer\n")
            poll = request.app_context = Poll(int(since))
        if len(self.messages) != poll.since:
            body = {"messages": self.messages[poll.since:], "last": len(self.messages)}
            return answer(request, 200, json.dumps(body).encode(), "application/json")
        if poll.expired:
            return mhd2.action_from_response(request, mhd2.Response.from_empty(204))
        self.parked[request] = None
        self.deadlines.append((trio.current_time() + self.poll_timeout, request))
        self.wakeup.set()
        return mhd2.action_suspend(request)  # called again after request_resume

    def on_message(self, request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
        text = data.decode("utf-8", "replace").strip()
        if not text:
            response = mhd2.Response.from_buffer_static(400, b"empty message\n")
            return mhd2.upload_action_from_response(request, response)
        self.messages.append(text)
        parked, self.parked = self.parked, {}
        self.deadlines.clear()
        for waiting in parked:
            mhd2.request_resume(waiting)
        response = mhd2.Response.from_buffer_copy(200, b"%d\n" % len(self.messages))
        return mhd2.upload_action_from_response(request, response)

    def forget(self, request: mhd2.Request, code: mhd2.RequestEndedCode) -> None:
        """notify_request_ended: a poll whose client went away is no longer parked."""
        self.parked.pop(request, None)

    async def expire_polls(self) -> None:
        """The one timer task: resume polls whose wait is over (they answer 204)."""
        while True:
            if not self.deadlines:
                self.wakeup = trio.Event()
                await self.wakeup.wait()
                continue
            deadline, request = self.deadlines[0]
            await trio.sleep_until(deadline)
            while self.deadlines and self.deadlines[0][0] <= trio.current_time():
                _, request = self.deadlines.popleft()
                if request in self.parked:
                    del self.parked[request]
                    request.app_context.expired = True
                    mhd2.request_resume(request)


def answer(request: mhd2.Request, status: int, body: bytes,
           content_type: str = "text/plain") -> mhd2.Action:
    response = mhd2.Response.from_buffer_copy(status, body)
    response.add_header("Content-Type", content_type)
    return mhd2.action_from_response(request, response)


async def main(args: argparse.Namespace) -> int:
    board = Board(args.poll_timeout)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(board.expire_polls)
        status = await serve("longpoll", board.handle, args.host, args.port,
                             notify_request_ended=board.forget)
        nursery.cancel_scope.cancel()
    return status


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--poll-timeout", type=float, default=30.0,
                        help="seconds before a waiting poll gets 204 (default: %(default)s)")


if __name__ == "__main__":
    sys.exit(trio.run(main, parse_args("Long polling with action_suspend", extra=_options)))
