"""mhd2 responses from an ASGI app's ``http.response.*`` messages.

* :func:`split_headers`: the app's ``(bytes, bytes)`` header pairs as text,
  and the ``content-length`` it declared (a small cache: apps send the same
  few header lists again and again);
* :func:`whole_response`: the response of a ``http.response.start`` and a
  single, last ``http.response.body``, from the **whole-response cache**
  once it has been made twice;
* :func:`with_headers`: header lines added to a response;
* :func:`file_response`: the response of ``http.response.pathsend`` (a file);
* :func:`text_pairs`: header pairs as text, uncached (trailers, a
  WebSocket's accept headers).

Nothing here waits or knows the request: each function turns the app's
messages into a response or a header list (using the caches), called from :mod:`mhd2.asgi.http` (and
:mod:`mhd2.asgi.websocket` for its accept headers).
"""

from __future__ import annotations

import os
from typing import Any

from .. import Response

__all__ = [
    "HEADER_CACHE_SIZE",
    "REPLY_CACHE_BODY_LIMIT",
    "REPLY_CACHE_SIZE",
    "file_response",
    "split_headers",
    "text_pairs",
    "whole_response",
    "with_headers",
]

#: Most header lists :func:`split_headers` remembers (then it starts afresh).
HEADER_CACHE_SIZE = 256
_split_cache: dict[tuple[Any, ...], tuple[list[tuple[str, str]], int | None]] = {}


def split_headers(headers: Any) -> tuple[list[tuple[str, str]], int | None]:
    """The app's headers as text pairs, and the ``content-length`` it declared.

    ``Content-Length`` is left out: the daemon writes it from the body it is
    given (or the declared size of a streamed body).  Apps send the same
    few header lists again and again: the last :data:`HEADER_CACHE_SIZE`
    lists of ``(bytes, bytes)`` tuples are remembered with their result
    (the pairs are only read by the caller).

    Raises:
        ValueError: a ``content-length`` that is not a number.
    """
    try:
        key = tuple(headers)
        known = _split_cache.get(key)
    except TypeError:  # [name, value] lists, bytearrays ...: not hashable
        return _split_headers_now(headers)
    if known is not None:
        return known
    result = _split_headers_now(key)
    if all(type(name) is bytes and type(value) is bytes for name, value in key):
        if len(_split_cache) >= HEADER_CACHE_SIZE:
            _split_cache.clear()
        _split_cache[key] = result
    return result


def _split_headers_now(headers: Any) -> tuple[list[tuple[str, str]], int | None]:
    """:func:`split_headers` without the cache."""
    pairs: list[tuple[str, str]] = []
    declared: int | None = None
    for name, value in headers:
        key = (name if type(name) is bytes else bytes(name)).decode("latin-1")
        text = (value if type(value) is bytes else bytes(value)).decode("latin-1")
        if len(key) == 14 and key.lower() == "content-length":
            if not text.strip().isdigit():
                raise ValueError(f"content-length {text!r} is not a number")
            declared = int(text)
            continue
        pairs.append((key, text))
    return pairs, declared


#: Bodies up to this size are answered from :func:`whole_response`'s cache.
REPLY_CACHE_BODY_LIMIT = 1024
#: Most whole responses :func:`whole_response` remembers (then it starts afresh).
REPLY_CACHE_SIZE = 256
_reply_cache: dict[tuple[Any, ...], Response] = {}
#: Keys seen once, not cached yet (at most REPLY_CACHE_SIZE; then it starts afresh).
_reply_seen: dict[tuple[Any, ...], None] = {}


def whole_response(status: Any, headers: Any, body: Any) -> Response:
    """The response of a ``http.response.start`` and a single, last ``http.response.body``.

    Apps answer with the same few complete responses again and again (a
    health check, an empty ``204``, a small constant page): a response made
    from ``bytes`` header pairs and a ``bytes`` body of at most
    :data:`REPLY_CACHE_BODY_LIMIT` bytes is made once, *reusable*, and the
    last :data:`REPLY_CACHE_SIZE` of them are remembered by ``(status,
    headers, body)``.  The daemon then sends it from its cached wire bytes
    (head and body in one piece, the ``Date`` line renewed each second)
    instead of building the head again for every request.  A response is
    cached the second time it is made: one that differs every time (a
    counter, a timestamp in the body) is made as a plain one-use response,
    and no reusable response is kept for it.

    Raises:
        ValueError: a ``content-length`` that is not a number.
        mhd2.ResponseHeaderError: a header mhd2 refuses.
    """
    key: tuple[Any, ...] | None = None
    if type(body) is bytes and len(body) <= REPLY_CACHE_BODY_LIMIT and type(status) is int:
        try:
            key = (status, tuple(headers), body)
            known = _reply_cache.get(key)
        except TypeError:  # [name, value] lists ...: not hashable
            key = None
        else:
            if known is not None:
                return known
    pairs, _ = split_headers(headers)
    response = with_headers(Response.from_buffer(status, bytes(body)), pairs)
    if key is not None:
        seen = _reply_seen
        if key not in seen:
            if len(seen) >= REPLY_CACHE_SIZE:
                seen.clear()
            seen[key] = None
        elif all(type(name) is bytes and type(value) is bytes for name, value in key[1]):
            del seen[key]
            response.set_options(reusable=True)
            if len(_reply_cache) >= REPLY_CACHE_SIZE:
                _reply_cache.clear()
            _reply_cache[key] = response
    return response


def with_headers(response: Response, pairs: list[tuple[str, str]]) -> Response:
    """*response* with the header lines *pairs* added.

    Raises:
        mhd2.ResponseHeaderError: a header mhd2 refuses (CR/LF in it, a
            ``Transfer-Encoding`` other than chunked ...).
    """
    add = response.add_header
    for name, value in pairs:
        add(name, value)
    return response


def file_response(status: Any, headers: Any, path: Any) -> Response:
    """The response of ``http.response.start`` and ``http.response.pathsend``: the file at *path*.

    Raises:
        OSError: the file cannot be opened.
        ValueError: a ``content-length`` that is not a number.
        mhd2.ResponseHeaderError: a header mhd2 refuses (the file is closed).
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    response = Response.from_fd(status, fd)  # (closes fd if it raises)
    try:
        with_headers(response, split_headers(headers)[0])
    except BaseException:
        response.destroy()  # closes fd
        raise
    return response


def text_pairs(headers: Any) -> list[tuple[str, str]]:
    """ASGI header pairs (``bytes``-like names and values) as Latin-1 text pairs."""
    return [(bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in headers]
