"""HTTP/2 with prior knowledge on an HTTP/1 port: spotting the connection preface.

A connection's first bytes are read by the HTTP/1 loop
(:mod:`mhd2.http1.connection`); when they begin like the HTTP/2 preface (and
``http2`` is on), :func:`complete_preface` reads on until they are the preface
or cannot become it.  The loop then hands the transport and those bytes to the
HTTP/2 loop, or parses them as HTTP/1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..transport import Transport

__all__ = ["H2_PREFACE", "PREFACE_RECV_SIZE", "complete_preface", "may_be_preface"]

#: RFC 9113 §3.4: "the connection preface starts with the string
#: PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" -- HTTP/2 with prior knowledge.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: Bytes asked for per read while the preface is incomplete.
PREFACE_RECV_SIZE = 16 * 1024


def may_be_preface(data: bytes) -> bool:
    """Whether a connection's first bytes *data* could still become the preface."""
    return data[:1] == b"P" and H2_PREFACE.startswith(data[:len(H2_PREFACE)])


async def complete_preface(transport: Transport, data: bytes) -> bytes:
    """Read on while *data* (a connection's first bytes) could still become the preface.

    Returns:
        All the bytes read: they start with :data:`H2_PREFACE` if the client
        speaks HTTP/2; else (a differing byte, or the client's end of sending)
        they are the start of an HTTP/1 request, to be parsed as usual.

    Error handling:
        The transport's errors and its deadline (the connection's ``timeout``)
        apply as to any read of a head.
    """
    while len(data) < len(H2_PREFACE) and H2_PREFACE.startswith(data):
        more = await transport.receive(PREFACE_RECV_SIZE)
        if not more:
            break
        data += more
    return data
