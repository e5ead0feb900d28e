"""The daemon: listening sockets, the accept loop, limits, and graceful stop.

A :class:`Daemon` owns one trio nursery.  Each accepted connection is one task
in it (:class:`~mhd2.connection.HTTPConnection`); nothing else runs per
request.  No threads are started.
"""

from __future__ import annotations

import errno
import logging
import math
import socket as stdlib_socket
from collections import Counter
from collections.abc import Callable
from contextlib import AsyncExitStack
from inspect import isawaitable
from types import TracebackType
from typing import Any, cast

import trio

from .connection import HTTPConnection
from .connection_info import connection_info_for
from .enums import AddressFamily, StatusCode
from .errors import DaemonStartError, UsageError
from .options import DaemonOptions
from .plain_stream import PlainSocketStream
from .pool import LargePool
from .request import Request
from .tls import sni_server_name

__all__ = ["Daemon"]

logger = logging.getLogger("mhd2")

#: accept() errors that mean "out of resources for now": log, pause, go on
#: (as ``trio.serve_listeners`` does).
_ACCEPT_CAPACITY_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_ACCEPT_PAUSE = 0.1
#: At most this many accepts in a row before a checkpoint.
_ACCEPT_BURST = 32
#: Grace period when a ``async with Daemon(...)`` block is left normally.
DEFAULT_GRACE = 5.0
#: Bound on a TLS handshake (the idle ``timeout`` applies when it is shorter).
TLS_HANDSHAKE_TIMEOUT = 10.0

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
        self._request_cb = request_cb
        self._listeners: list[stdlib_socket.socket] = []
        self._connections: set[HTTPConnection] = set()
        self._per_ip: Counter[str] = Counter()
        self._count = 0
        self._stopping = False
        self._serving = False
        self._grace = DEFAULT_GRACE
        self._stop_requested = trio.Event()
        self._stopped = trio.Event()
        self._drained = trio.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stack: AsyncExitStack | None = None
        self._large_pool = LargePool(self.options.large_pool_size)

    # -- properties ---------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port of the first listening socket (the real one when ``port=0``)."""
        if not self._listeners:
            raise UsageError("the daemon is not bound yet: use it inside 'async with daemon'")
        return int(self._listeners[0].getsockname()[1])

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Every ``(host, port)`` the daemon listens on."""
        names = (listener.getsockname() for listener in self._listeners)
        return [(str(a[0]), int(a[1])) for a in names]

    @property
    def connection_count(self) -> int:
        """How many client connections are open now."""
        return self._count

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
        self._token = trio.lowlevel.current_trio_token()
        try:
            async with trio.open_nursery() as nursery:
                for listener in self._listeners:
                    nursery.start_soon(self._accept_loop, listener, nursery)
                task_status.started(self)
                await self._stop_requested.wait()
                self.quiesce()
                self._stopping = True
                for conn in list(self._connections):
                    conn.close_if_idle()
                if self._connections:
                    with trio.move_on_after(self._grace):
                        await self._drained.wait()
                nursery.cancel_scope.cancel()
        finally:
            self.quiesce()
            self._stopping = True
            self._stopped.set()

    def _check_fresh(self) -> None:
        if self._serving or self._stopped.is_set():
            raise UsageError(
                "this Daemon is already serving or has been stopped; a Daemon runs once: "
                "make a new Daemon to serve again"
            )

    def quiesce(self) -> None:
        """Stop accepting new connections; open connections are still served."""
        for listener in self._listeners:
            if listener.fileno() != -1:
                trio.lowlevel.notify_closing(listener)
                listener.close()

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
                sockets = [_adopt(opts.listen_socket)]
            else:
                sockets = _bind_sockets(opts)
        except OSError as exc:
            raise DaemonStartError(
                f"cannot listen on {opts.host}:{opts.port}: {exc.strerror or exc}",
                StatusCode.LISTEN_SOCKET_BIND_FAILED,
            ) from exc
        for sock in sockets:
            sock.setblocking(False)
        self._listeners = sockets
        await trio.lowlevel.checkpoint()

    # -- accepting ---------------------------------------------------------------------

    async def _accept_loop(self, listener: stdlib_socket.socket, nursery: trio.Nursery) -> None:
        """Accept connections until the listener is closed.

        Non-blocking ``accept()`` is tried first and the task waits only when
        there is nothing to accept; a burst of connections is still
        interrupted by a checkpoint every :data:`_ACCEPT_BURST` accepts.
        """
        opts = self.options
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
                if exc.errno in _ACCEPT_CAPACITY_ERRORS:
                    logger.error("mhd2: accept() failed (%s); pausing %.1fs", exc, _ACCEPT_PAUSE)
                    await trio.sleep(_ACCEPT_PAUSE)
                    continue
                continue  # the connection died before accept (ECONNABORTED ...)
            burst += 1
            if burst >= _ACCEPT_BURST:
                burst = 0
                await trio.lowlevel.checkpoint()
            ip = str(peer[0])
            if (opts.connection_limit is not None and self._count >= opts.connection_limit) or (
                opts.per_ip_limit is not None and self._per_ip[ip] >= opts.per_ip_limit
            ):
                logger.warning("mhd2: connection from %s refused: connection limit reached", ip)
                sock.close()
                continue
            self._count += 1
            self._per_ip[ip] += 1
            nursery.start_soon(self._run_connection, sock, peer, ip)

    async def _run_connection(self, sock: stdlib_socket.socket, peer: Any, ip: str) -> None:
        opts = self.options
        stream: trio.abc.Stream | None = None
        try:
            if opts.accept_policy is not None:
                try:
                    allowed = opts.accept_policy((ip, int(peer[1])))
                    if isawaitable(allowed):
                        allowed = await allowed
                except Exception:
                    logger.exception("mhd2: accept_policy failed; refusing %s", ip)
                    allowed = False
                if not allowed:
                    return
            local = sock.getsockname()
            ssl_object = None
            if opts.tls is None:
                stream = PlainSocketStream(sock)
            else:
                tls_stream = trio.SSLStream(
                    trio.SocketStream(trio.socket.from_stdlib_socket(sock)), opts.tls,
                    server_side=True)
                stream = tls_stream
                limit = TLS_HANDSHAKE_TIMEOUT if opts.timeout is None else min(
                    TLS_HANDSHAKE_TIMEOUT, opts.timeout)
                with trio.move_on_after(limit) as scope:
                    try:
                        await tls_stream.do_handshake()
                    except trio.BrokenResourceError:
                        return
                if scope.cancelled_caught:
                    return
                ssl_object = tls_stream._ssl_object
            info = connection_info_for(peer, local, ssl_object, sni_server_name(ssl_object))
            conn = HTTPConnection(stream, info, opts, self._request_cb, self._token,
                                  self._is_stopping, self._large_pool)
            self._connections.add(conn)
            try:
                await conn.run()
            finally:
                self._connections.discard(conn)
        finally:
            if isinstance(stream, PlainSocketStream):
                stream.close()
            elif stream is not None:
                await trio.aclose_forcefully(stream)  # (closed already by the connection)
            else:
                sock.close()
            self._count -= 1
            self._per_ip[ip] -= 1
            if not self._per_ip[ip]:
                del self._per_ip[ip]
            if self._stopping and not self._connections:
                self._drained.set()

    def _is_stopping(self) -> bool:
        return self._stopping


def _adopt(listen_socket: Any) -> stdlib_socket.socket:
    """Take over a pre-bound listening socket (fd, stdlib socket or trio socket)."""
    if isinstance(listen_socket, int):
        listen_socket = stdlib_socket.socket(fileno=listen_socket)
    elif isinstance(listen_socket, trio.socket.SocketType):
        listen_socket = stdlib_socket.socket(fileno=listen_socket.detach())
    if not listen_socket.getsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_ACCEPTCONN):
        raise UsageError("listen_socket must already be bound and listening (call listen() first)",
                         StatusCode.CONFIGURATION_WRONG_OPTION_VALUE)
    return cast(stdlib_socket.socket, listen_socket)


_FAMILIES = {
    AddressFamily.AUTO: stdlib_socket.AF_UNSPEC,
    AddressFamily.INET4: stdlib_socket.AF_INET,
    AddressFamily.INET6: stdlib_socket.AF_INET6,
    AddressFamily.DUAL: stdlib_socket.AF_INET6,
    AddressFamily.DUAL_V4_OPTIONAL: stdlib_socket.AF_INET6,
    AddressFamily.DUAL_V6_OPTIONAL: stdlib_socket.AF_INET6,
}


def _bind_sockets(opts: DaemonOptions) -> list[stdlib_socket.socket]:
    if opts.family is AddressFamily.NONE:
        raise UsageError("family=AddressFamily.NONE needs a listen_socket",
                         StatusCode.CONFIGURATION_WRONG_OPTION_VALUE)
    dual = opts.family in (AddressFamily.DUAL, AddressFamily.DUAL_V4_OPTIONAL,
                           AddressFamily.DUAL_V6_OPTIONAL)
    host = opts.host
    if dual and host in (None, "0.0.0.0"):
        host = "::"
    # Resolved synchronously, once, at start-up: mhd2 starts no threads.
    infos = stdlib_socket.getaddrinfo(host, opts.port, _FAMILIES[opts.family],
                                      stdlib_socket.SOCK_STREAM, 0, stdlib_socket.AI_PASSIVE)
    if not infos:
        raise OSError(errno.EADDRNOTAVAIL, "no address to bind")
    sockets: list[stdlib_socket.socket] = []
    seen: set[tuple[int, Any]] = set()
    try:
        for family, type_, proto, _, addr in infos:
            if (family, addr[:2]) in seen:
                continue
            seen.add((family, addr[:2]))
            sock = stdlib_socket.socket(family, type_, proto)
            sockets.append(sock)
            sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR, 1)
            if opts.reuse_port:
                sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEPORT, 1)
            if family == stdlib_socket.AF_INET6:
                sock.setsockopt(stdlib_socket.IPPROTO_IPV6, stdlib_socket.IPV6_V6ONLY,
                                0 if dual else 1)
            if opts.port == 0 and len(sockets) > 1:
                # port 0 with several addresses: all listen on the first one's port
                addr = (addr[0], sockets[0].getsockname()[1], *addr[2:])
            sock.bind(addr)
            sock.listen(opts.backlog)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets
