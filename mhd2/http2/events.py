"""The events of the HTTP/2 engine: what the client's frames mean to mhd2.

:meth:`H2Engine.receive <mhd2.http2.engine.H2Engine.receive>` returns these,
in the order of the frames, h11-style: one small class per kind, each with the
``stream_id`` it is about.  Frames that mean nothing to the streams (a
refused request, a ``PING``, ``SETTINGS``, flood accounting) are handled
inside the engine and make no event; a malformed request makes a
:class:`RequestMalformed`, so that its end is reported (and access-logged)
as over HTTP/1, before its ``RST_STREAM`` leaves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..enums import RequestEndedCode
    from .checks import RequestHead

__all__ = ["BodyEnded", "DataReceived", "Event", "GoawayReceived", "PingAnswered",
           "RequestMalformed", "RequestReceived", "ShutdownAnswered", "StreamCancelled",
           "TrailersReceived", "WindowOpened"]

#: The status recorded for a malformed request (the ``400`` HTTP/1 answers a
#: malformed head with): over HTTP/2 no response is sent, the stream is reset.
MALFORMED_STATUS = 400



class Event:
    """Base of the engine's events; each has the ``stream_id`` it is about (0: none)."""

    __slots__ = ("stream_id",)

    def __init__(self, stream_id: int = 0) -> None:
        self.stream_id = stream_id

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}"
                           for cls in type(self).__mro__ for name in getattr(cls, "__slots__", ()))
        return f"{type(self).__name__}({fields})"


class RequestReceived(Event):
    """A new stream with a checked request head; *ended*: its HEADERS carried
    END_STREAM, so no body follows (and no :class:`BodyEnded` comes for it)."""

    __slots__ = ("ended", "head")

    def __init__(self, stream_id: int, head: RequestHead, ended: bool) -> None:
        self.stream_id = stream_id
        self.head = head
        self.ended = ended


class RequestMalformed(Event):
    """A request head that is malformed (RFC 9113 §8.1.1): no stream is made, and
    its ``RST_STREAM(PROTOCOL_ERROR)`` is queued already -- the caller reports the
    request's end (``HTTP_PROTOCOL_ERROR``, *status* :data:`MALFORMED_STATUS`)
    before it writes what the engine queued."""

    __slots__ = ("status",)

    def __init__(self, stream_id: int, status: int = MALFORMED_STATUS) -> None:
        self.stream_id = stream_id
        self.status = status


class DataReceived(Event):
    """Body (or tunnel) bytes; *flow*: their flow-controlled length (padding included),
    to be given back with :meth:`H2Engine.acknowledge` once consumed."""

    __slots__ = ("data", "flow")

    def __init__(self, stream_id: int, data: bytes, flow: int) -> None:
        self.stream_id = stream_id
        self.data = data
        self.flow = flow


class BodyEnded(Event):
    """The client ended its side of the stream (END_STREAM)."""

    __slots__ = ()


class TrailersReceived(Event):
    """A checked trailer section (it ended the stream: a :class:`BodyEnded` follows)."""

    __slots__ = ("fields",)

    def __init__(self, stream_id: int, fields: list[tuple[str, str]]) -> None:
        self.stream_id = stream_id
        self.fields = fields


class WindowOpened(Event):
    """The client opened a flow-control window: of the stream, or (``stream_id`` 0) of
    every stream (the connection's window, or ``SETTINGS_INITIAL_WINDOW_SIZE``)."""

    __slots__ = ()


class StreamCancelled(Event):
    """The stream is over: the request ends with *code*.

    *by_client*: the client reset it (or provoked ``h2`` to; the stream is
    closed both ways); else its trailers are malformed (RFC 9113 §8.1.1): the
    caller resets the stream (``PROTOCOL_ERROR``) once the request's end is
    reported -- the engine has not queued the reset, so that the application
    hears of the end before the client does, as over HTTP/1."""

    __slots__ = ("by_client", "code")

    def __init__(self, stream_id: int, code: RequestEndedCode, *, by_client: bool) -> None:
        self.stream_id = stream_id
        self.code = code
        self.by_client = by_client


class PingAnswered(Event):
    """The client acknowledged the ``PING`` of :meth:`H2Engine.ping`."""

    __slots__ = ()


class ShutdownAnswered(Event):
    """The client acknowledged the ``PING`` of :meth:`H2Engine.announce_goaway`:
    every stream it began before it saw the announcing ``GOAWAY`` has arrived."""

    __slots__ = ()


class GoawayReceived(Event):
    """The client sent ``GOAWAY`` (the server's is queued in return; RFC 9113 §6.8)."""

    __slots__ = ()
