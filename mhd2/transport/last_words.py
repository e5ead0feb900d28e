"""The daemon's fixed last answer on a socket it is about to drop.

:func:`send_last_words` writes such an answer (the 503 of a refused
connection, the 400 for plain HTTP on a TLS port) without a transport and
without ever blocking.
"""

from __future__ import annotations

import socket

__all__ = ["send_last_words"]


def send_last_words(sock: socket.socket, reply: bytes) -> None:
    """Send *reply* if it can go without blocking, then shut down the sending side.

    For the daemon's fixed answers before a connection is dropped (the 503 of
    a refusal, the 400 for plain HTTP on a TLS port); errors are ignored, the
    caller closes the socket.
    """
    try:
        sock.setblocking(False)
        sock.send(reply)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
