"""The daemon: listening sockets, the accept loop, limits, and graceful stop.

A :class:`Daemon` owns one trio nursery.  Each accepted connection is one task
in it (:class:`~mhd2.http1.HTTP1Connection` over a
:class:`~mhd2.transport.Transport`); nothing else runs per request.  No threads
are started.  Connections handed in with :meth:`Daemon.serve_stream` run in the
caller's task but count, and stop, like accepted ones.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import socket as stdlib_socket
from collections.abc import Callable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

import trio

from ._proxy.protocol import ProxyProtocolError
from ._proxy.receive import proxied_client_address
from .accepting import (
    ACCEPT_CAPACITY_ERRORS,
    ACCEPT_PAUSE,
    UNIX_CLIENT,
    AcceptErrorLog,
    ConnectionCount,
    accepted_address,
    allowed_by,
    refuse,
)
from .connection_info import ConnectionInfo, connection_info_for
from .enums import StatusCode
from .errors import DaemonStartError, UsageError
from .http1 import HTTP1Connection
from .http2 import HTTP2Connection
from .listen import adopt, bind_sockets, bind_unix, set_tcp_keepalive
from .options import DaemonOptions
from .request import Request
from .shared import Shared
from .tls import sni_server_name
from .transport import SocketTransport, TLSTransport, Transport, open_transport

__all__ = ["Daemon"]

logger = logging.getLogger("mhd2")

#: At most this many accepts in a row before a checkpoint.
_ACCEPT_BURST = 32
#: Grace period when a ``async with Daemon(...)`` block is left normally.
DEFAULT_GRACE = 5.0

RequestCallback = Callable[[Request], Any]


class Daemon:
    """An HTTP server that hands every request to one callback.

    ``Daemon(request_cb, *, host="127.0.0.1", port=0, **options)``; the options
    are listed in :class:`~mhd2.options.DaemonOptions` and the docs' daemon page.

    Run it either as ``async with daemon:`` (binds, serves in its own nursery,
    stops gracefully when the block is left) or with
    ``await nursery.start(daemon.serve)`` inside a nursery of yours.

    Args:
        request_cb: ``request_cb(request) -> Action`` (or an awaitable of one).
        **options: daemon options; a bad value raises :class:`~mhd2.UsageError`.

    Resource handling:
        Listening sockets are closed by :meth:`quiesce` or when serving ends;
        connection tasks live in the daemon's nursery and end with it.

    Error handling:
        A bind failure raises :class:`~mhd2.DaemonStartError` (the OS error is
        its ``__cause__``).  Accept errors caused by resource exhaustion are
        logged on the ``mhd2`` logger and retried after a short pause.
    """

    def __init__(self, request_cb: RequestCallback, **options: Any) -> None:
        if not callable(request_cb):
            raise UsageError("Daemon needs a request callback: Daemon(request_cb, port=...)")
        known = DaemonOptions.__dataclass_fields__
        for name in options:
            if name not in known:
                raise UsageError(
                    f"unknown Daemon option {name!r}; known options: {', '.join(sorted(known))}",
                    StatusCode.CONFIGURATION_WRONG_OPTION_VALUE,
                )
        if options.get("listen_socket") is not None and ("port" in options or "host" in options):
            raise UsageError("listen_socket excludes host and port: pass one or the other",
                             StatusCode.CONFIGURATION_WRONG_OPTION_VALUE)
        self.options = DaemonOptions(**options)
        if not self.options.http2 and self.options.tls is not None:
            # http2=False: ALPN must not agree on h2 (the context is shared
            # with the caller; this changes what it offers, documented).
            self.options.tls.set_alpn_protocols(["http/1.1"])
        self._request_cb = request_cb
        if self.options.metrics_path is not None and self.options.metrics is None:
            raise UsageError("metrics_path needs metrics=registry (a prometheus_client "
                             "CollectorRegistry)", StatusCode.CONFIGURATION_WRONG_OPTION_VALUE)
        if self.options.metrics_path is not None and not self.options.metrics_path.startswith("/"):
            raise UsageError(f"metrics_path must start with '/', not "
                             f"{self.options.metrics_path!r}",
                             StatusCode.CONFIGURATION_WRONG_OPTION_VALUE)
        serve = request_cb
        if self.options.metrics is not None:
            from .metrics import DaemonMetrics, with_metrics_path

            metrics = DaemonMetrics.for_registry(self.options.metrics)
            if self.options.metrics_path is not None:
                serve = with_metrics_path(request_cb, self.options.metrics_path,
                                          self.options.metrics, self.sample_metrics)
        self._shared = Shared(self.options, serve)
        if self.options.metrics is not None:
            self._shared.metrics = metrics
        self._listeners: list[stdlib_socket.socket] = []
        self._unix_path: str | None = None
        self._connections: set[HTTP1Connection | HTTP2Connection] = set()
        self._open = ConnectionCount(self.options.connection_limit, self.options.per_ip_limit,
                                     self._shared.metrics)
        self._accept_errors = AcceptErrorLog()
        self._serving = False
        self._grace = DEFAULT_GRACE
        self._stop_requested = trio.Event()
        self._stopped = trio.Event()
        self._stack: AsyncExitStack | None = None
        self._nursery: trio.Nursery | None = None

    # -- properties ---------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port of the first listening socket (the real one when ``port=0``)."""
        if not self._listeners:
            raise UsageError("the daemon is not bound yet: use it inside 'async with daemon'")
        name = self._listeners[0].getsockname()
        if not isinstance(name, tuple):
            raise UsageError("the daemon listens on a Unix-domain socket, which has no port")
        return int(name[1])

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Every ``(host, port)`` the daemon listens on."""
        names = (listener.getsockname() for listener in self._listeners)
        return [(str(a[0]), int(a[1])) if isinstance(a, tuple) else UNIX_CLIENT for a in names]

    @property
    def request_cb(self) -> RequestCallback:
        """The application's request callback."""
        return self._request_cb

    @property
    def connection_count(self) -> int:
        """How many client connections are open now."""
        return self._open.count

    # -- life cycle --------------------------------------------------------------

    async def __aenter__(self) -> Daemon:
        if self._stack is not None:
            raise UsageError("this Daemon is already entered; a Daemon runs once")
        self._check_fresh()
        await self._bind()
        stack = AsyncExitStack()
        nursery = await stack.enter_async_context(trio.open_nursery())
        self._stack = stack
        await nursery.start(self.serve)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        try:
            if exc_type is None:
                await self.stop(grace=self._grace)
            else:
                self._request_stop(0)
        finally:
            if stack is not None:
                await stack.aclose()

    @trio.lowlevel.enable_ki_protection
    async def serve(self, *, task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind (if not yet bound) and serve until :meth:`stop` or cancellation.

        Use as ``await nursery.start(daemon.serve)``: it returns once the daemon
        listens.

        Raises:
            DaemonStartError: binding failed.
            UsageError: the daemon is already serving or has been stopped.
        """
        self._check_fresh()
        if not self._listeners:
            await self._bind()
        self._serving = True
        self._shared.token = trio.lowlevel.current_trio_token()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for listener in self._listeners:
                    nursery.start_soon(self._accept_loop, listener, nursery)
                if self._shared.metrics is not None:
                    nursery.start_soon(self._sample_metrics)
                task_status.started(self)
                await self._stop_requested.wait()
                self.quiesce()
                self._shared.stopping = True
                for conn in list(self._connections):
                    conn.close_if_idle()
                # Also those still being set up (TLS handshake, PROXY header):
                # they are told of the stop by `shared.stopping` once they run.
                with trio.move_on_after(self._grace):
                    await self.drained()
                for conn in list(self._connections):
                    conn.cancel()  # also those of serve_stream, in other tasks
                nursery.cancel_scope.cancel()
        finally:
            self.quiesce()
            self._shared.stopping = True
            self._remove_unix_path()
            self._stopped.set()

    def sample_metrics(self) -> None:
        """Set the metrics' gauges from the daemon's state now (``Daemon(metrics=...)``)."""
        metrics = self._shared.metrics
        if metrics is not None:
            metrics.sample(self.connection_count, self._shared.parked, self._shared.websockets)

    async def _sample_metrics(self) -> None:
        from .metrics import SAMPLE_SECONDS

        while True:
            self.sample_metrics()
            await trio.sleep(SAMPLE_SECONDS)

    def _check_fresh(self) -> None:
        if self._serving or self._stopped.is_set():
            raise UsageError(
                "this Daemon is already serving or has been stopped; a Daemon runs once: "
                "make a new Daemon to serve again"
            )

    async def drained(self) -> None:
        """Return once no client connection is open (at once if none is).

        After :meth:`quiesce` no new connection comes, so this is the wait for
        the open ones to end on their own: each is answered with
        ``Connection: close`` after its current (or, if it is new, its first)
        request.  Kept-alive connections that send nothing more end with their
        ``keep_alive_timeout``; bound the wait with a cancel scope of your own.
        """
        await self._open.drained()

    def quiesce(self) -> None:
        """Stop accepting new connections; open connections are still served.

        Replies sent from now on say ``Connection: close``, so kept-alive
        clients move to another server (or worker) after their current request.
        """
        self._shared.quiescing = True
        for listener in self._listeners:
            if listener.fileno() != -1:
                trio.lowlevel.notify_closing(listener)
                listener.close()

    def _remove_unix_path(self) -> None:
        path, self._unix_path = self._unix_path, None
        if path is not None:
            try:
                os.unlink(path)
            except OSError:
                pass

    async def stop(self, grace: float = DEFAULT_GRACE) -> None:
        """Stop gracefully and wait until nothing of the daemon runs any more.

        New connections are refused at once, idle keep-alive connections are
        closed, requests in flight get up to *grace* seconds to finish (their
        responses say ``Connection: close``), then what is left is cancelled.
        """
        if not self._serving:
            self.quiesce()
            return
        self._request_stop(grace)
        await self._stopped.wait()

    def _request_stop(self, grace: float) -> None:
        if not isinstance(grace, int | float) or grace < 0 or math.isnan(grace):
            raise UsageError(f"grace must be seconds >= 0, not {grace!r}")
        self._grace = grace
        self._stop_requested.set()

    # -- binding --------------------------------------------------------------------

    async def _bind(self) -> None:
        if self._listeners:
            return
        opts = self.options
        try:
            if opts.listen_socket is not None:
                sockets = [adopt(opts.listen_socket)]
            elif opts.unix_path is not None:
                sockets = [bind_unix(opts.unix_path, opts.unix_mode, opts.backlog)]
                self._unix_path = opts.unix_path
            else:
                sockets = bind_sockets(opts)
        except OSError as exc:
            where = opts.unix_path if opts.unix_path is not None else f"{opts.host}:{opts.port}"
            raise DaemonStartError(
                f"cannot listen on {where}: {exc.strerror or exc}",
                StatusCode.LISTEN_SOCKET_BIND_FAILED,
            ) from exc
        for sock in sockets:
            sock.setblocking(False)
        self._listeners = sockets
        await trio.lowlevel.checkpoint()

    # -- accepting ---------------------------------------------------------------------

    # The daemon's own tasks are protected from KeyboardInterrupt: Ctrl-C is
    # delivered to the application's main task (which leaves `async with
    # daemon` and so stops the daemon), never raised inside a connection task
    # in the middle of a write, where it would surface as an ExceptionGroup.
    @trio.lowlevel.enable_ki_protection
    async def _accept_loop(self, listener: stdlib_socket.socket, nursery: trio.Nursery) -> None:
        """Accept connections until the listener is closed.

        Non-blocking ``accept()`` is tried first and the task waits only when
        there is nothing to accept; a burst of connections is still
        interrupted by a checkpoint every :data:`_ACCEPT_BURST` accepts.
        """
        burst = 0
        while True:
            try:
                sock, peer = listener.accept()
            except BlockingIOError:
                burst = 0
                try:
                    await trio.lowlevel.wait_readable(listener)
                except (trio.ClosedResourceError, OSError):
                    return
                continue
            except OSError as exc:
                if listener.fileno() == -1 or exc.errno == errno.EBADF:
                    return
                if exc.errno in ACCEPT_CAPACITY_ERRORS:
                    # Out of file descriptors / buffers: the pending connection
                    # stays in the backlog and the same error comes back after
                    # every pause, so it is logged once per interval, counted.
                    self._accept_errors.failed(exc)
                    if self._shared.metrics is not None:
                        self._shared.metrics.refused("accept_error")
                    await trio.sleep(ACCEPT_PAUSE)
                    continue
                continue  # the connection died before accept (ECONNABORTED ...)
            burst += 1
            if burst >= _ACCEPT_BURST:
                burst = 0
                await trio.lowlevel.checkpoint()
            address = accepted_address(peer)
            # Behind a PROXY header the client's address is known only once
            # the header is read: per-IP counting waits for it.
            ip = None if self.options.proxy_protocol else address[0]
            if self._open.over_limit(ip, address[0]):
                refuse(sock)
                continue
            self._open.add(ip)
            nursery.start_soon(self._run_connection, sock, peer, address, ip)

    @trio.lowlevel.enable_ki_protection
    async def _run_connection(self, sock: stdlib_socket.socket, peer: Any,
                              address: tuple[str, int], ip: str | None) -> None:
        opts = self.options
        try:
            if opts.tcp_keepalive is not None:
                try:
                    set_tcp_keepalive(sock, opts.tcp_keepalive)
                except OSError as exc:  # the peer already reset it, ...
                    logger.debug("mhd2: connection from %s closed: %s", address[0], exc)
                    sock.close()
                    return
            if opts.proxy_protocol:
                sock.setblocking(False)
                try:
                    address = await proxied_client_address(sock, peer, self._shared.trusted,
                                                           timeout=opts.timeout)
                except ProxyProtocolError as exc:
                    logger.debug("mhd2: connection from %s closed: %s", address[0], exc)
                    sock.close()
                    return
                if not self._open.add_ip(address[0]):
                    refuse(sock)
                    return
                ip = address[0]
            if opts.accept_policy is not None and not await allowed_by(opts.accept_policy, address):
                sock.close()
                return
            local = sock.getsockname()
            if opts.tls is None:
                transport: Transport | None = SocketTransport.over_socket(sock, opts.timeout)
            else:
                transport = await TLSTransport.over_tls(sock, opts.tls, opts.timeout)
                if transport is None:
                    return
            assert transport is not None
            tls = transport.tls
            info = connection_info_for(address, local if isinstance(local, tuple) else UNIX_CLIENT,
                                       tls, sni_server_name(tls), accepted_address(peer))
            await self._serve_transport(transport, info)
        finally:
            self._open.remove(ip)

    async def _serve_transport(self, transport: Transport, info: ConnectionInfo) -> None:
        shared = self._shared
        tls = transport.tls
        conn: HTTP1Connection | HTTP2Connection
        if shared.options.http2 and tls is not None and tls.selected_alpn_protocol() == "h2":
            conn = HTTP2Connection(transport, info, shared)
        else:
            conn = HTTP1Connection(transport, info, shared)
        self._connections.add(conn)
        try:
            await conn.run()
            if isinstance(conn, HTTP1Connection) and conn.handoff is not None:
                # h2c with prior knowledge: the HTTP/1 loop saw the preface.
                self._connections.discard(conn)
                conn = HTTP2Connection(transport, info, shared, conn.handoff, notified=True)
                self._connections.add(conn)
                await conn.run()
        finally:
            self._connections.discard(conn)
            await transport.close()

    async def serve_stream(self, stream: trio.abc.Stream, *,
                           client_address: tuple[str, int] = UNIX_CLIENT) -> None:
        """Serve one already-accepted connection (``MHD_daemon_add_connection``).

        Any :class:`trio.abc.Stream` will do -- a socket stream, a TLS stream, a
        ``trio.testing.memory_stream_pair()`` half.  The connection counts
        against ``connection_limit`` / ``per_ip_limit`` (over them the stream
        is closed at once) and honours a graceful stop.

        Args:
            stream: the connection; closed when this returns.
            client_address: what ``request.client_address`` says.

        Returns:
            When the connection has ended.

        Raises:
            UsageError: the daemon is not serving (use it inside
                ``async with daemon`` or after ``nursery.start(daemon.serve)``).
        """
        if not self._serving or self._shared.stopping:
            raise UsageError("serve_stream needs a running daemon: call it inside "
                             "'async with daemon' (or after nursery.start(daemon.serve))")
        address = (str(client_address[0]), int(client_address[1]))
        ip = address[0]
        if self._open.over_limit(ip, ip):
            await trio.aclose_forcefully(stream)
            return
        self._open.add(ip)
        try:
            policy = self.options.accept_policy
            if policy is not None and not await allowed_by(policy, address):
                await trio.aclose_forcefully(stream)
                return
            transport = open_transport(stream, self.options.timeout)
            await self._serve_transport(transport, ConnectionInfo(address))
        finally:
            self._open.remove(ip)
