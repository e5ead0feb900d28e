"""How a response is delimited, and whether its connection stays open.

This is a pure decision: given what the client asked for and what the response
is, pick the body framing (RFC 9112 §6) and the connection's fate (RFC 9112 §9).
The daemon applies the result; :mod:`.writer` turns it into bytes.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass

__all__ = ["Framing", "ReplyPlan", "plan_reply"]


class Framing(enum.Enum):
    """How the end of a response body is made known to the client."""

    #: No body at all: 1xx, 204, 304 (RFC 9110 §6.4.1).
    NONE = "none"
    #: ``Content-Length`` announces the size.
    CONTENT_LENGTH = "content-length"
    #: ``Transfer-Encoding: chunked`` (HTTP/1.1 clients only).
    CHUNKED = "chunked"
    #: The body ends when the server closes the connection (RFC 9112 §6.3 rule 8).
    CLOSE_DELIMITED = "close"


@dataclass(slots=True, frozen=True)
class ReplyPlan:
    """The decision: how to frame, whether to send a body, whether to keep alive."""

    framing: Framing
    send_body: bool
    keep_alive: bool
    #: The protocol version written in the status line.
    version: bytes
    #: Write ``Connection: keep-alive`` (an HTTP/1.0 client asked for it).
    announce_keep_alive: bool


def _body_forbidden(status: int) -> bool:
    # RFC 9110 §6.4.1: "All 1xx (Informational), 204 (No Content), and 304
    # (Not Modified) responses do not include content."
    return status < 200 or status == 204 or status == 304


@functools.cache
def plan_reply(
    *,
    http11: bool,
    is_head: bool,
    wants_close: bool,
    wants_keep_alive: bool,
    must_close: bool,
    status: int,
    size_known: bool,
    chunked: bool = False,
    conn_close: bool = False,
    head_only: bool = False,
    http10_compatible_strict: bool = False,
    http10_server: bool = False,
    app_content_length: bool = False,
    daemon_stopping: bool = False,
) -> ReplyPlan:
    """Decide the framing and persistence of one response.

    The inputs are few and plain, so plans are computed once and shared.

    Args:
        http11: the client speaks HTTP/1.1 (otherwise HTTP/1.0).
        is_head: a ``HEAD`` request: same head as ``GET``, never a body
            (RFC 9110 §9.3.2).
        wants_close: the client sent ``Connection: close``.
        wants_keep_alive: the client sent ``Connection: keep-alive``.
        must_close: the request itself forces a close after the reply (both
            ``Content-Length`` and ``Transfer-Encoding``, or an unread body).
        status: the response status code.
        size_known: the body size is known in advance.
        chunked, conn_close, head_only, http10_compatible_strict, http10_server:
            the response options of those names.
        app_content_length: the application supplied its own ``Content-Length``
            (``insanity_header_content_length``).
        daemon_stopping: the daemon is shutting down, so no connection stays open.

    Returns:
        The :class:`ReplyPlan` to apply.
    """
    old_client = not http11 or http10_compatible_strict or http10_server
    if _body_forbidden(status):
        framing = Framing.NONE
    elif app_content_length or (size_known and not chunked):
        framing = Framing.CONTENT_LENGTH
    elif not old_client:
        framing = Framing.CHUNKED
    elif size_known:
        # RFC 9112 §7: "A server MUST NOT send a response containing
        # Transfer-Encoding unless the corresponding request indicates HTTP/1.1".
        framing = Framing.CONTENT_LENGTH
    else:
        framing = Framing.CLOSE_DELIMITED

    if http11 and not http10_server:
        # RFC 9112 §9.3: "If the received protocol is HTTP/1.1 (or later), the
        # connection will persist after the current response" unless "close".
        keep_alive = not wants_close
    else:
        # RFC 9112 §9.3: for HTTP/1.0 it persists only if "keep-alive" was sent.
        keep_alive = wants_keep_alive and not wants_close
    keep_alive = keep_alive and not (
        must_close
        or conn_close
        or http10_compatible_strict
        or daemon_stopping
        or framing is Framing.CLOSE_DELIMITED
    )
    send_body = framing is not Framing.NONE and not is_head and not head_only
    return ReplyPlan(
        framing=framing,
        send_body=send_body,
        keep_alive=keep_alive,
        version=b"HTTP/1.0" if http10_server else b"HTTP/1.1",
        announce_keep_alive=keep_alive and (not http11 or http10_server),
    )
