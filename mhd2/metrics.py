"""Prometheus metrics of a daemon (``pip install 'mhd2[metrics]'``: prometheus-client).

``Daemon(metrics=registry)`` registers these on a
:class:`prometheus_client.CollectorRegistry` and keeps them up to date:

=====================================  ==============================================
``mhd2_requests_total``                counter; labels ``method`` (the standard ones,
                                       else ``OTHER``), ``status_class`` (``1xx`` ...
                                       ``5xx``, ``none`` for an abort without a
                                       reply), ``protocol`` (``HTTP/1.1``, ``HTTP/2``)
``mhd2_request_duration_seconds``      histogram: head parsed to request ended
``mhd2_bytes_total``                   counter; ``direction`` ``in`` (request bodies)
                                       and ``out`` (response bodies)
``mhd2_refusals_total``                counter; ``reason`` ``connection_limit``,
                                       ``per_ip_limit``, ``accept_error``
``mhd2_connections_open``              gauge (sampled every second and at a scrape)
``mhd2_requests_suspended``            gauge: requests parked by ``action_suspend``
``mhd2_websocket_sessions``            gauge: upgraded WebSocket connections
``mhd2_fanout_subscribers``            gauge, from the hubs given to
                                       :func:`register_fanout`
``mhd2_fanout_deliveries_total``,      counters, from the same hubs
``mhd2_fanout_drops_total``
=====================================  ==============================================

With the command line's ``--workers``, prometheus-client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``) sums every worker in one scrape (gauges as
``livesum``: the live workers' sum).

With metrics off (no ``metrics=``) the request path pays one ``is None``
check per request.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .request import Request

__all__ = ["DaemonMetrics", "FanoutSource", "exposition", "register_fanout"]

#: Methods counted under their own name; anything else is ``OTHER`` (label
#: values must stay few, whatever the clients send).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS",
                     "CONNECT", "TRACE"})
#: Request duration histogram buckets, in seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
           30.0, 60.0)
#: How often the gauges are sampled while the daemon runs, in seconds.
SAMPLE_SECONDS = 1.0


class FanoutSource(Protocol):
    """What :func:`register_fanout` reads, besides a :class:`mhd2.fanout.Hub`."""

    def metrics_counts(self) -> Mapping[str, int]:
        """``subscribers`` (now), ``deliveries`` and ``drops`` (since the start)."""
        ...


_HUBS: weakref.WeakSet[Any] = weakref.WeakSet()


def register_fanout(hub: Any) -> None:
    """Report *hub*'s counts as ``mhd2_fanout_*`` (held weakly: a dropped hub leaves).

    A running :class:`mhd2.fanout.Hub` registers itself (its ``stats()`` are
    read); any other source passes an object with ``metrics_counts()``
    (:class:`FanoutSource`).

    Args:
        hub: a Hub, or a :class:`FanoutSource`.
    """
    _HUBS.add(hub)


def _fanout_counts(hub: Any) -> tuple[int, int, int]:
    """``(subscribers, deliveries, drops)`` of a registered hub."""
    if hasattr(hub, "metrics_counts"):
        counts = hub.metrics_counts()
        return (int(counts.get("subscribers", 0)), int(counts.get("deliveries", 0)),
                int(counts.get("drops", 0)))
    stats = hub.stats()  # mhd2.fanout.Hub: subscribers by kind
    return sum(stats.subscribers.values()), int(stats.deliveries), int(stats.drops)


def _load() -> Any:
    try:
        import prometheus_client
    except ImportError:
        from .errors import UsageError

        raise UsageError("metrics need prometheus-client: pip install 'mhd2[metrics]'"
                         ) from None
    return prometheus_client


def multiprocess() -> bool:
    """Whether prometheus-client's multiprocess mode is on (``PROMETHEUS_MULTIPROC_DIR``)."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class DaemonMetrics:
    """The metric objects of one daemon, and how the engine feeds them.

    Args:
        registry: where the metrics are registered.

    Raises:
        UsageError: prometheus-client is not installed.
    """

    def __init__(self, registry: Any) -> None:
        pc = _load()
        kw: dict[str, Any] = {"registry": registry}
        live: dict[str, Any] = {"multiprocess_mode": "livesum"}
        self.requests = pc.Counter("mhd2_requests", "Requests ended.",
                                   ["method", "status_class", "protocol"], **kw)
        self.duration = pc.Histogram("mhd2_request_duration_seconds",
                                     "Seconds from the request head to the request's end.",
                                     buckets=BUCKETS, **kw)
        self.bytes = pc.Counter("mhd2_bytes", "Body bytes received and sent.",
                                ["direction"], **kw)
        self.refusals = pc.Counter("mhd2_refusals", "Connections refused.", ["reason"], **kw)
        self.connections = pc.Gauge("mhd2_connections_open", "Connections open.", **kw, **live)
        self.suspended = pc.Gauge("mhd2_requests_suspended", "Requests suspended.", **kw,
                                  **live)
        self.websockets = pc.Gauge("mhd2_websocket_sessions", "WebSocket sessions open.",
                                   **kw, **live)
        self.subscribers = pc.Gauge("mhd2_fanout_subscribers", "Fan-out subscribers.",
                                    **kw, **live)
        self.deliveries = pc.Counter("mhd2_fanout_deliveries", "Fan-out deliveries.", **kw)
        self.drops = pc.Counter("mhd2_fanout_drops", "Fan-out messages dropped.", **kw)
        self._bytes_in = self.bytes.labels("in")
        self._bytes_out = self.bytes.labels("out")
        self._seen: weakref.WeakKeyDictionary[Any, tuple[int, int]] = (
            weakref.WeakKeyDictionary())

    @classmethod
    def for_registry(cls, registry: Any) -> DaemonMetrics:
        """The metrics registered on *registry* (made once: daemons may share one)."""
        try:
            return _BY_REGISTRY[registry]
        except KeyError:
            metrics = _BY_REGISTRY[registry] = cls(registry)
            return metrics
        except TypeError:  # not weakly referable
            return cls(registry)

    def request_ended(self, request: Request) -> None:
        """Count a finished request (called by the engine, once per request)."""
        status = request.response_status
        method = request.method if request.method in METHODS else "OTHER"
        status_class = f"{status // 100}xx" if status else "none"
        self.requests.labels(method, status_class, request.version).inc()
        self.duration.observe(request.duration)
        received = request.upload_received
        if received:
            self._bytes_in.inc(received)
        sent = request.bytes_sent
        if sent:
            self._bytes_out.inc(sent)

    def refused(self, reason: str) -> None:
        """Count a refused connection."""
        self.refusals.labels(reason).inc()

    def sample(self, connections: int, suspended: int, websockets: int) -> None:
        """Set the gauges from the daemon's state, and read the fan-out hubs."""
        self.connections.set(connections)
        self.suspended.set(suspended)
        self.websockets.set(websockets)
        subscribers = 0
        for hub in list(_HUBS):
            try:
                waiting, deliveries, drops = _fanout_counts(hub)
            except Exception:  # a hub's trouble must not stop the sampling
                continue
            subscribers += waiting
            last = self._seen.get(hub, (0, 0))
            if deliveries > last[0]:
                self.deliveries.inc(deliveries - last[0])
            if drops > last[1]:
                self.drops.inc(drops - last[1])
            self._seen[hub] = (max(deliveries, last[0]), max(drops, last[1]))
        self.subscribers.set(subscribers)


_BY_REGISTRY: weakref.WeakKeyDictionary[Any, DaemonMetrics] = weakref.WeakKeyDictionary()


def with_metrics_path(app: Callable[..., Any], path: str, registry: Any,
                      sample: Callable[[], None]) -> Callable[..., Any]:
    """*app*, except that ``GET``/``HEAD`` *path* answers the metrics' exposition.

    Args:
        app: the request callback.
        path: the path of the metrics (e.g. ``/metrics``).
        registry: the registry to expose (all processes' in multiprocess mode).
        sample: sets the gauges from the daemon's state before the scrape.

    Returns:
        The request callback to run.
    """
    from .actions import action_from_response
    from .response import Response

    def serve(request: Request) -> Any:
        if request.path != path or request.method not in ("GET", "HEAD"):
            return app(request)
        sample()
        body, content_type = exposition(registry)
        response = Response.from_buffer_copy(200, body)
        response.add_header("Content-Type", content_type)
        response.add_header("Cache-Control", "no-store")
        return action_from_response(request, response)

    return serve


def exposition(registry: Any = None) -> tuple[bytes, str]:
    """The text exposition of *registry* (or, in multiprocess mode, of every process).

    Returns:
        ``(body, content_type)``.
    """
    pc = _load()
    if registry is None or multiprocess():
        from prometheus_client import multiprocess as mp

        if multiprocess():
            registry = pc.CollectorRegistry()
            mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        elif registry is None:
            registry = pc.REGISTRY
    return pc.generate_latest(registry), str(pc.CONTENT_TYPE_LATEST)
