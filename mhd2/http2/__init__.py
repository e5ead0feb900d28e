"""The HTTP/2 connection loop: streams that drive the same exchange as HTTP/1 requests.

Sans-IO, bottom up: :mod:`mhd2.http2.checks` (the request-head rules of RFC 9113 §8),
:mod:`mhd2.http2.hpack_out` (HPACK for what the server sends, no dynamic table),
:mod:`mhd2.http2.machine` (the ``h2`` state machine as mhd2 runs it),
:mod:`mhd2.http2.guard` (flood rates) and
:mod:`mhd2.http2.engine` (frames in, events and bytes out, windows, GOAWAY, flood
accounting, the connection's state).

With I/O: :mod:`mhd2.http2.port` (the :class:`~mhd2.http2.port.StreamPort` protocol: what a
stream sees of its connection), :mod:`mhd2.http2.stream` (one stream: exchange host, body
source, frame sink), :mod:`mhd2.http2.reply` (a response as HEADERS and DATA frames),
:mod:`mhd2.http2.tunnel` (an upgraded stream: RFC 8441 WebSocket over HTTP/2),
:mod:`mhd2.http2.serve` (runs a stream: the application, its action, the end),
:mod:`mhd2.http2.liveness` (``PING`` for connections whose streams are all parked) and
:mod:`mhd2.http2.connection` (the connection task: it reads, writes and starts streams).
"""

from .connection import HTTP2Connection

__all__ = ["HTTP2Connection"]
