"""Wire bytes of one message, per delivery kind (sans-IO).

Each function is called at most once per message and kind (see
:class:`~mhd2.fanout.message.Message`): every subscriber of that kind is
handed the same ``bytes`` object.
"""

from __future__ import annotations

import base64
import json
import re

from ..websocket.session import frame_header

__all__ = [
    "as_text",
    "json_item",
    "sse_comment",
    "sse_frame",
    "sse_retry",
    "ws_frame",
]

# "Lines must be separated by either a U+000D CARRIAGE RETURN U+000A LINE FEED
# (CRLF) character pair, a single U+000A LINE FEED (LF) character, or a single
# U+000D CARRIAGE RETURN (CR) character." (HTML Living Standard, §9.2.5)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def as_text(data: bytes) -> str | None:
    """*data* as text if it is valid UTF-8, else ``None``."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _item(message_id: str, event: str | None, data: bytes) -> dict[str, object]:
    text = as_text(data)
    item: dict[str, object] = {"id": message_id, "event": event}
    if text is None:
        item["data"] = base64.b64encode(data).decode("ascii")
        item["encoding"] = "base64"
    else:
        item["data"] = text
    return item


def json_item(message_id: str, event: str | None, data: bytes) -> bytes:
    """``{"id", "event", "data"}`` as compact UTF-8 JSON (data base64 with
    ``"encoding": "base64"`` when it is not UTF-8): one long-poll list item."""
    return json.dumps(_item(message_id, event, data), ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8")


def sse_frame(message_id: str, event: str | None, data: bytes) -> bytes:
    """One server-sent event: ``id:``, ``event:`` and one ``data:`` line per line of *data*.

    *data* that is not UTF-8 is sent base64-encoded (an event stream is
    UTF-8 text).  An empty *data* is one empty ``data:`` line.
    """
    text = as_text(data)
    if text is None:
        text = base64.b64encode(data).decode("ascii")
    lines = [f"id: {message_id}"]
    if event is not None:
        lines.append(f"event: {event}")
    lines.extend(f"data: {line}" for line in _LINE_BREAK.split(text))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def sse_retry(retry_ms: int) -> bytes:
    """A ``retry:`` field alone: the client's reconnection delay, in milliseconds
    (one shared ``bytes`` per value: every stream keeps it)."""
    field = _retries.get(retry_ms)
    if field is None:
        field = b"retry: %d\n\n" % retry_ms
        if len(_retries) < 64:
            _retries[retry_ms] = field
    return field


_retries: dict[int, bytes] = {}


def sse_comment(text: str = "") -> bytes:
    """A comment line (ignored by ``EventSource``; keeps an idle stream alive)."""
    return f":{text}\n".encode()


def ws_frame(message_id: str, event: str | None, data: bytes) -> bytes:
    """One whole unmasked WebSocket data frame carrying :func:`json_item`'s object.

    A text frame when *data* is UTF-8, else a binary frame (whose JSON says
    ``"encoding": "base64"``), headed by the WebSocket session's own
    :func:`~mhd2.websocket.session.frame_header`.
    """
    payload = json_item(message_id, event, data)
    first = 0x81 if as_text(data) is not None else 0x82
    return frame_header(first, len(payload)) + payload
