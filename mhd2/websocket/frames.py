"""The head of a WebSocket frame the server writes itself (RFC 6455 §5.2).

Data frames without an extension are framed here instead of by wsproto
(:class:`~mhd2.websocket.WebSocket`), and mhd2.fanout frames a message once
for all its subscribers.
"""

from __future__ import annotations

__all__ = ["frame_header"]


def frame_header(first_byte: int, length: int) -> bytes:
    """The head of one unmasked frame (servers do not mask, RFC 6455 §5.1).

    RFC 6455 §5.2: "The length of the Payload data, in bytes: if 0-125, that
    is the payload length.  If 126, the following 2 bytes interpreted as a
    16-bit unsigned integer are the payload length.  If 127, the following 8
    bytes interpreted as a 64-bit unsigned integer".
    """
    if length < 126:
        return bytes((first_byte, length))
    if length < 65536:
        return bytes((first_byte, 126)) + length.to_bytes(2, "big")
    return bytes((first_byte, 127)) + length.to_bytes(8, "big")
