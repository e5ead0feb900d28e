"""The HTTP/2 connection loop: streams that drive the same exchange as HTTP/1 requests.

See :mod:`mhd2.http2.connection` (the connection: its reader, writer, timeouts and endings),
:mod:`mhd2.http2.frames_in` (what received frames do to streams),
:mod:`mhd2.http2.machine` (the ``h2`` state machine as mhd2 runs it),
:mod:`mhd2.http2.hpack_out` (HPACK for what the server sends, no dynamic table),
:mod:`mhd2.http2.guard` (flood rates),
:mod:`mhd2.http2.liveness` (``PING`` for connections whose streams are all parked),
:mod:`mhd2.http2.stream` (one stream: exchange host, body source, task),
:mod:`mhd2.http2.reply` (a response as HEADERS and DATA frames),
:mod:`mhd2.http2.tunnel` (an upgraded stream: RFC 8441 WebSocket over HTTP/2) and
:mod:`mhd2.http2.checks` (the request-head rules of RFC 9113 §8).
"""

from .connection import HTTP2Connection

__all__ = ["HTTP2Connection"]
