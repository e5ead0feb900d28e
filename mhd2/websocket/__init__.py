"""WebSockets: ``libmicrohttpd_ws``'s handshake helpers and frame codec, and :func:`action_websocket`.

* :func:`check_http_version`, :func:`check_connection_header`,
  :func:`check_upgrade_header`, :func:`check_version_header`,
  :func:`create_accept_header`: the handshake checks of ``libmicrohttpd_ws``;
* :class:`WebSocketStream`: its sans-IO frame codec, for code that drives an
  :class:`~mhd2.UpgradeHandle` itself (the tutorial's ``websocket.c``);
* :func:`action_websocket`: validate the handshake, answer ``101`` and run
  ``handler(ws)`` with a :class:`WebSocket` (wsproto inside).
"""

from .action import action_websocket
from .codec import (
    CloseCode,
    Fragmentation,
    StreamFlags,
    Validity,
    WebSocketCodecError,
    WebSocketStatus,
    WebSocketStream,
)
from .handshake import (
    check_connection_header,
    check_http_version,
    check_upgrade_header,
    check_version_header,
    create_accept_header,
)
from .session import (
    CLOSE_TIMEOUT,
    FRAGMENT_OVERHEAD,
    MAX_FRAGMENTS,
    CloseReason,
    ConnectionClosed,
    WebSocket,
)

__all__ = [
    "CLOSE_TIMEOUT",
    "FRAGMENT_OVERHEAD",
    "MAX_FRAGMENTS",
    "CloseCode",
    "CloseReason",
    "ConnectionClosed",
    "Fragmentation",
    "StreamFlags",
    "Validity",
    "WebSocket",
    "WebSocketCodecError",
    "WebSocketStatus",
    "WebSocketStream",
    "action_websocket",
    "check_connection_header",
    "check_http_version",
    "check_upgrade_header",
    "check_version_header",
    "create_accept_header",
]
