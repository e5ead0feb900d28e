"""``mhd2.fanout``: one message to many waiting clients (docs/fanout.rst).

Long polling, server-sent events and WebSockets all wait for the same
thing, the next message on a topic::

    hub = mhd2.fanout.Hub()                      # in-process (redis=... across processes)
    async with hub:
        topic = hub.topic("chat", history=1000)
        mid = await topic.publish(b"hi", event="message")

    def callback(request):
        if request.path == "/poll":
            return mhd2.fanout.action_long_poll(request, topic, cursor=request.args.get("cursor"))
        if request.path == "/events":
            return mhd2.fanout.action_sse(request, topic)
        return mhd2.fanout.action_websocket_subscribe(request, topic)

Modules: :mod:`~mhd2.fanout.hub` (the hub, limits, timers, stats),
:mod:`~mhd2.fanout.topic` (subscribers, cursors, the fan-out itself, drops),
:mod:`~mhd2.fanout.history` (the messages a topic retains),
:mod:`~mhd2.fanout.backend` (where messages live: in-process, Redis),
:mod:`~mhd2.fanout.encode` (wire bytes, once per message and kind) and one
module per delivery kind.  See :doc:`/fanout`.
"""

from .backend import Backend, Feed, MemoryBackend
from .errors import FanoutUnavailable
from .hub import FanoutStats, Hub
from .longpoll import action_long_poll
from .message import Message, MessageList
from .sse import action_sse
from .topic import Topic
from .websocket import action_websocket_subscribe

__all__ = [
    "Backend",
    "FanoutStats",
    "FanoutUnavailable",
    "Feed",
    "Hub",
    "MemoryBackend",
    "Message",
    "MessageList",
    "Topic",
    "action_long_poll",
    "action_sse",
    "action_websocket_subscribe",
]
