"""The body of one HTTP/1 request, read through the parser for the upload actions.

:class:`RequestBody` is the HTTP/1 :class:`~mhd2.upload.BodySource`: it hands
the upload policy merged pieces of the body (with a checkpoint between them,
so a body of a million tiny chunks does not monopolise the daemon), sends
``100 Continue`` when asked, keeps the trailers, and enforces
``min_body_rate``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from .._http1.parser import NEED_DATA, BodyEnd, ParseError, Parser
from ..exchange import ClientGone
from ..upload import BodyError, BodyRate

if TYPE_CHECKING:
    from ..exchange import Exchange
    from .connection import HTTP1Connection

__all__ = ["RequestBody"]

#: Bytes per read while reading a body.
BODY_RECV_SIZE = 256 * 1024


class RequestBody:
    """The body of one HTTP/1 request, read through the parser (a ``BodySource``).

    Enforces ``min_body_rate``: over each window of *time spent waiting for
    the client*, at least so many bytes must arrive (time the application
    spends in its callbacks does not count), else 408 and close.
    """

    __slots__ = ("_conn", "_exchange", "_parser", "_rate")

    def __init__(self, conn: HTTP1Connection, parser: Parser, exchange: Exchange) -> None:
        self._conn = conn
        self._parser = parser
        self._exchange = exchange
        rule = exchange.shared.options.min_body_rate
        self._rate = BodyRate(rule) if rule is not None else None

    async def next_piece(self) -> bytes | None:
        conn = self._conn
        transport = conn.transport
        exchange = self._exchange
        while True:
            result = self._parser.next_body()
            if type(result) is bytes:
                exchange.received(len(result))
                # One read may hold thousands of tiny chunks: give other
                # connections a turn between the pieces handed over.
                await trio.lowlevel.checkpoint()
                return result
            if result is NEED_DATA:
                transport.arm()
                started = trio.current_time()
                data = await transport.receive(BODY_RECV_SIZE)
                self._parser.feed(data)
                if conn.chunk_checker is not None:
                    conn.chunk_checker.feed(data)
                rate = self._rate
                if rate is not None:
                    slow = rate.add(trio.current_time() - started, len(data))
                    if slow is not None:
                        raise BodyError(408, slow)
                continue
            if isinstance(result, BodyEnd):
                checker = conn.chunk_checker
                if checker is not None and checker.problem is not None:
                    raise BodyError(400, checker.problem)
                exchange.body_complete(result.trailers)
                return None
            if isinstance(result, ParseError):
                raise BodyError(result.status, result.detail)
            raise ClientGone("the client closed mid-body")

    async def discard(self) -> bool:
        """Read the rest of the body (small: the reply is already out) and drop it.

        Returns:
            Whether the connection can be kept: ``False`` if the body was
            broken (a framing error, or too slow); a client gone raises
            :class:`~mhd2.exchange.ClientGone` as in :meth:`next_piece`.
        """
        try:
            while await self.next_piece() is not None:
                pass
        except BodyError:
            return False
        return True

    async def send_continue(self) -> None:
        """``100 Continue``, sent only now that the application asked for the body."""
        if self._parser.expects_continue:
            # RFC 9110 §10.1.1: "A server that receives a 100-continue
            # expectation in an HTTP/1.1 request ... MAY omit sending a 100
            # (Continue) response if it has already received some or all of
            # the content ... or if the framing indicates that there is no content."
            async with self._exchange.interim_writes():  # (not amid a 103)
                await self._conn.transport.send(b"HTTP/1.1 100 Continue\r\n\r\n")
