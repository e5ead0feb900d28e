"""The httptools (llhttp) backend of the request parser, with h11 as its referee.

llhttp and h11 do not accept the same language: llhttp knows only registered
methods and refuses obs-fold, h11 accepts bare LF and any method token, they
differ on ``Transfer-Encoding`` lists, ``Content-Length`` lists, versions,
``Host`` rules and the bytes allowed in a target.  mhd2 promises one behaviour
whatever the backend (docs/design.rst, "Parser backends"), so this backend is
a fast path with a referee (:class:`~.refereed.RefereedParser`): llhttp splits
the heads that are plainly well-formed (its field names are RFC 9110 tokens
exactly, as h11's: a test checks every printable byte), and any other request
-- and anything llhttp refuses or hands over as an upgrade (``CONNECT``,
``Connection: upgrade``) -- is given, from its first byte, to h11.

One llhttp parser serves the connection, fed exactly each head's bytes, so
llhttp never runs ahead into a body or a pipelined request.  llhttp ends a
bodiless message with its head and then waits for the next one, so the parser
is kept while requests are bodiless and kept alive (the common case); after a
head with a body, a ``Connection: close``, an HTTP/1.0 head without
keep-alive, or anything it refused, it is dropped and the next head gets a
fresh one.  llhttp calls back once per field into the connection's collector.
"""

from __future__ import annotations

from typing import Final

import httptools

from .refereed import RefereedParser, SplitHead

__all__ = ["LlhttpParser"]

_VERSIONS: Final = {b" HTTP/1.1": b"1.1", b" HTTP/1.0": b"1.0"}


class _Collector:
    """llhttp's callbacks, per field, for the head being parsed: the target and the fields.

    One per connection, reset before each head.  It holds no reference back to
    the parser, so a connection's parser makes no reference cycle.
    """

    __slots__ = ("fields", "target")

    def __init__(self) -> None:
        self.target = b""
        self.fields: list[tuple[bytes, bytes]] = []

    def on_url(self, url: bytes) -> None:
        self.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name, value))


class LlhttpParser(RefereedParser):
    """The requests of one connection, split by llhttp where h11 would agree.

    Same interface and results as :class:`~.parser.H11Parser`.

    Args:
        max_head: the most bytes of an incomplete head kept before refusing it.
    """

    __slots__ = ("_collector", "_llhttp")

    def __init__(self, max_head: int) -> None:
        super().__init__(max_head)
        # The connection's llhttp parser, made at the first head and kept
        # while each head it was fed ended its message (a bodiless request
        # kept alive); anything else drops it and the next head gets a fresh one.
        self._collector = _Collector()
        self._llhttp: httptools.HttpRequestParser | None = None

    def _forget(self) -> None:
        # (~0.7 KB of llhttp per connection, and the last head's fields: an
        # idle or parked connection keeps neither; a new parser costs ~0.5 us.)
        self._llhttp = None
        collector = self._collector
        collector.target = b""
        collector.fields = []

    def _ended(self, kept: bool) -> None:
        if not kept:
            self._llhttp = None

    def _split_head(self, head: bytes) -> SplitHead:
        """The head as llhttp reads it, if that is how h11 reads it too."""
        collector = self._collector
        collector.target = b""
        collector.fields = []
        llhttp = self._llhttp
        if llhttp is None:
            llhttp = self._llhttp = httptools.HttpRequestParser(collector)
        try:
            llhttp.feed_data(head)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            return None
        # The request line exactly as llhttp read it, single spaces and all
        # (llhttp also takes HTTP/0.9 and 2.0, repeated spaces and more).
        line = head[:head.find(b"\r\n")]
        tail = line[-9:]
        version = _VERSIONS.get(tail)
        method = llhttp.get_method()
        target = collector.target
        if version is None or method + b" " + target + tail != line:
            return None
        # llhttp drops the leading OWS of a value, the shared pass the trailing.
        return method, target, version, collector.fields
