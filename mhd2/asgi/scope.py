"""ASGI connection scopes from an :class:`mhd2.Request` (sans-IO).

The ASGI spec (HTTP and WebSocket spec 2.4, asgi 3.0) fixes the keys; each is
filled from what the daemon already decided about the request: the real
client after PROXY and trusted forwarded headers (``request.client_address``),
the scheme after TLS or a trusted ``X-Forwarded-Proto`` (``request.scheme``),
and the local address of the connection (``request.connection.server_address``).
"""

from __future__ import annotations

from typing import Any

from .. import Request

__all__ = ["ASGI_VERSION", "http_scope", "websocket_scope"]

#: ``scope["asgi"]`` of HTTP and WebSocket scopes.
ASGI_VERSION: dict[str, str] = {"version": "3.0", "spec_version": "2.4"}

#: ``request.version`` -> ``scope["http_version"]``.
_HTTP_VERSIONS = {"HTTP/1.1": "1.1", "HTTP/1.0": "1.0", "HTTP/2": "2", "HTTP/2.0": "2"}

#: The extensions an HTTP scope advertises.  ``http.response.early_hint``
#: (``103 Early Hints``) is left out for an HTTP/1.0 request: RFC 8297 §3 "a
#: server MUST NOT send a 103 response to an HTTP/1.0 client", and a server
#: must not advertise what it cannot do.
HTTP_EXTENSIONS: dict[str, dict[str, Any]] = {
    "http.response.trailers": {},
    "http.response.pathsend": {},
    "http.response.early_hint": {},
}
_HTTP10_EXTENSIONS: dict[str, dict[str, Any]] = {
    name: value for name, value in HTTP_EXTENSIONS.items() if name != "http.response.early_hint"}
WEBSOCKET_EXTENSIONS: dict[str, dict[str, Any]] = {"websocket.http.response": {}}


def _target(request: Request) -> tuple[bytes, bytes]:
    """``raw_path`` and ``query_string`` from the raw request target."""
    raw = request.uri.encode("latin-1", "replace")
    path, _, query = raw.partition(b"?")
    if not path.startswith(b"/") and b"://" in path:
        # absolute-form (RFC 9112 §3.2.2): the path component only.
        rest = path.split(b"://", 1)[1]
        slash = rest.find(b"/")
        path = rest[slash:] if slash >= 0 else b"/"
    return path, query


def http_scope(request: Request, headers: list[tuple[bytes, bytes]], root_path: str,
               state: dict[str, Any] | None, *, mounted: bool) -> dict[str, Any]:
    """The ``http`` scope of *request*.

    Args:
        request: the request.
        headers: its ``request.raw_headers`` (``scope["headers"]``).
        root_path: ``scope["root_path"]``.
        state: the lifespan state; each request gets a shallow copy (``None``: empty).
        mounted: *root_path* is part of ``request.path`` (an app mounted under a
            prefix by :func:`~mhd2.asgi.action_asgi`); otherwise it is prefixed
            to the path, as behind a proxy that strips it (uvicorn's
            ``--root-path``).
    """
    uri = request.uri
    if uri[:1] == "/" and uri.isascii() and "%" not in uri and "#" not in uri:
        # The common target (origin-form, nothing escaped): the path is its
        # own percent-decoding, and the bytes are the ASCII of the text.
        path, mark, query_text = uri.partition("?")
        raw_path = path.encode("ascii")
        query = query_text.encode("ascii") if mark else b""
    else:
        raw_path, query = _target(request)
        path = request.path
    if root_path and not mounted:
        path = root_path + path
        raw_path = root_path.encode("utf-8") + raw_path
    version = request.version
    # Both are (host, port) pairs already (mhd2 cuts an IPv6 address to those two).
    client = request.client_address
    return {
        "type": "http",
        # (a middleware may write into a scope's dicts: each scope has its own)
        "asgi": {"version": "3.0", "spec_version": "2.4"},  # ASGI_VERSION
        "http_version": _HTTP_VERSIONS.get(version, "1.1"),
        "method": request.method,
        "scheme": request.scheme,
        "path": path,
        "raw_path": raw_path,
        "query_string": query,
        "root_path": root_path,
        "headers": headers,
        # A Unix-domain peer has no (host, port): "Optional; if missing ... None".
        "client": None if client[0] == "unix" else client,
        "server": request.connection.server_address,
        "state": {} if state is None else dict(state),
        "extensions": (HTTP_EXTENSIONS if version != "HTTP/1.0"
                       else _HTTP10_EXTENSIONS).copy(),
    }


def websocket_scope(request: Request, headers: list[tuple[bytes, bytes]], root_path: str,
                    state: dict[str, Any] | None, *, mounted: bool) -> dict[str, Any]:
    """The ``websocket`` scope of *request* (arguments as :func:`http_scope`)."""
    scope = http_scope(request, headers, root_path, state, mounted=mounted)
    scope["type"] = "websocket"
    scope["scheme"] = "wss" if request.scheme == "https" else "ws"
    del scope["method"]
    protocols = request.headers.get_all("Sec-WebSocket-Protocol")
    scope["subprotocols"] = [p.strip() for value in protocols for p in value.split(",")
                             if p.strip()]
    scope["extensions"] = WEBSOCKET_EXTENSIONS.copy()
    return scope
