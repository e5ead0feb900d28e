"""What every connection of one daemon shares: options, budgets, and whether it stops.

The :class:`~mhd2.Daemon` owns one :class:`Shared`; each connection and each
exchange holds a reference to it instead of to the daemon, so the engine's
lower layers never import the daemon.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._auth.nonces import NonceRegistry
from ._http1.backend import parser_factory
from ._proxy.trusted import TrustedProxies
from .pool import LargePool

if TYPE_CHECKING:
    import trio

    from .options import DaemonOptions

__all__ = ["Shared"]


class Shared:
    """The daemon-wide record the engine reads.

    Attributes:
        options: the daemon's validated options.
        request_cb: the application's request callback.
        large_pool: the budget for in-memory bodies (``large_pool_size``).
        token: the daemon's trio token (for ``request_resume`` from threads).
        stopping: a graceful stop has begun.
        quiescing: no new connections are accepted (``quiesce`` or a stop):
            replies close their connections.
        nonces: the Digest nonce registry (``None`` unless ``digest_auth_random``).
        trusted: the peers whose PROXY and forwarded headers are believed.
    """

    __slots__ = ("large_pool", "make_parser", "metrics", "nonces", "options",
                 "parked", "quiescing", "request_cb", "stopping", "token", "trusted",
                 "websockets")

    def __init__(self, options: DaemonOptions, request_cb: Callable[..., Any]) -> None:
        self.options = options
        self.request_cb = request_cb
        self.large_pool = LargePool(options.large_pool_size)
        self.token: trio.lowlevel.TrioToken | None = None
        self.stopping = False
        self.quiescing = False
        self.nonces: NonceRegistry | None = NonceRegistry.from_options(options)
        self.trusted = TrustedProxies(options.trusted_proxies)
        #: :class:`mhd2.metrics.DaemonMetrics` with ``Daemon(metrics=...)``, else ``None``.
        self.metrics: Any = None
        #: Requests parked by a suspend action, and upgraded WebSocket
        #: connections, now (sampled by the metrics).
        self.parked = 0
        self.websockets = 0
        #: Makes one HTTP/1 connection's parser (the backend ``options.parser`` names).
        self.make_parser = parser_factory(options.parser)
