"""One process of tests/test_fanout_redis.py: ``python tests/fanout_redis_app.py REDIS_URL``.

Serves topic ``shared`` of ``Hub(redis=REDIS_URL)`` on a free port of
127.0.0.1 and prints ``PORT <n>`` when it is ready:

* ``POST /publish`` publishes the body (``200`` with the id as text,
  ``503`` with the sentence of :class:`~mhd2.fanout.FanoutUnavailable`);
* ``GET /poll?cursor=`` long-polls the topic;
* ``GET /stats`` answers ``hub.stats()`` as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable

import trio

import mhd2
from mhd2.fanout import FanoutUnavailable, Hub, Topic, action_long_poll


def app(topic: Topic) -> Callable[[mhd2.Request], mhd2.Action]:
    async def publish(request: mhd2.Request, body: bytes) -> mhd2.UploadAction:
        try:
            mid = await topic.publish(body)
        except FanoutUnavailable as exc:
            return mhd2.upload_action_from_response(
                request, mhd2.Response.from_buffer_static(503, str(exc).encode()))
        return mhd2.upload_action_from_response(
            request, mhd2.Response.from_buffer_static(200, mid.encode()))

    def callback(request: mhd2.Request) -> mhd2.Action:
        if request.path == "/publish":
            return mhd2.action_process_upload_full(request, 1 << 16, publish)
        if request.path == "/stats":
            body = json.dumps(dataclasses.asdict(topic.hub.stats())).encode()
            return mhd2.action_from_response(request, mhd2.Response.from_buffer_static(200, body))
        return action_long_poll(request, topic, cursor=request.args.get("cursor"),
                                     timeout=float(request.args.get("timeout", "10")))

    return callback


async def main(url: str) -> None:
    hub = Hub(redis=url)
    topic = hub.topic("shared", history=100)
    async with hub:
        async with mhd2.Daemon(app(topic), host="127.0.0.1", port=0) as daemon:
            print(f"PORT {daemon.port}", flush=True)
            await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
