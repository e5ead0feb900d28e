"""One connection's byte stream and its inactivity deadline.

This package is the only code that knows what kind of stream a connection runs
over.  The protocol layers above it see a :class:`Transport` and only receive,
send, and close; each kind is a subclass:

* :mod:`.base` -- :class:`Transport`: the inactivity deadline, held
  (pipelined) responses, bytes sent, the lingering close, closing once;
* :mod:`.plain` -- :class:`SocketTransport`: plain TCP or a Unix socket
  (:class:`~mhd2.plain_stream.PlainSocketStream`), with ``sendfile``, cork,
  writes without waiting, and the early wake-up for slow readers;
* :mod:`.stream` -- :class:`StreamTransport`: any :class:`trio.abc.Stream`
  handed to :meth:`mhd2.Daemon.serve_stream`, written in slices;
* :mod:`.tls` -- :class:`TLSTransport`: :class:`trio.SSLStream`, its bounded
  handshake and close_notify;
* :mod:`.factory` -- :func:`open_transport`, the one place that picks the
  kind for a stream;
* :mod:`.last_words` -- :func:`send_last_words`, a fixed answer on a socket
  about to be dropped.
"""

from .base import Transport, TransportError
from .factory import open_transport
from .last_words import send_last_words
from .plain import SocketTransport
from .stream import StreamTransport
from .tls import TLSTransport

__all__ = [
    "SocketTransport",
    "StreamTransport",
    "TLSTransport",
    "Transport",
    "TransportError",
    "open_transport",
    "send_last_words",
]
