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

One llhttp parser serves all the connections of a daemon
(:class:`LlhttpState`, made by :func:`~.backend.parser_factory`), fed exactly
one whole head at a time, so llhttp never runs ahead into a body or a
pipelined request and no connection keeps llhttp's ~0.7 KB while it waits.
Parsing a head is one synchronous call, so connections cannot interleave in
it.  llhttp ends a bodiless message with its head and then waits for the next
message, in the same state whichever connection it comes from; so the parser
is kept while heads are bodiless and kept alive (the common case).  After a
head with a body, a ``Connection: close``, an HTTP/1.0 head without
keep-alive, or anything it refused, llhttp is in another state, and the next
head gets a fresh parser.  llhttp calls back once per field into the shared
collector, which the head's fields are taken from before anything else runs.
"""

from __future__ import annotations

from typing import Final

import httptools

from .refereed import RefereedParser, SplitHead

__all__ = ["LlhttpParser", "LlhttpState"]

_VERSIONS: Final = {b" HTTP/1.1": b"1.1", b" HTTP/1.0": b"1.0"}


class _Collector:
    """llhttp's callbacks, per field, for the head being parsed: the target and the fields.

    Reset before each head.  It holds no reference to any connection's parser.
    """

    __slots__ = ("fields", "target")

    def __init__(self) -> None:
        self.target = b""
        self.fields: list[tuple[bytes, bytes]] = []

    def on_url(self, url: bytes) -> None:
        self.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name, value))


class LlhttpState:
    """One llhttp parser and its collector, shared by a daemon's connections.

    Attributes:
        llhttp: the parser, between heads waiting for the start of a
            message; ``None`` after a head that left it in any other state
            (the next head makes a fresh one, ~0.5 us).
        collector: what llhttp calls back into.
    """

    __slots__ = ("collector", "llhttp")

    def __init__(self) -> None:
        self.collector = _Collector()
        self.llhttp: httptools.HttpRequestParser | None = None


class LlhttpParser(RefereedParser):
    """The requests of one connection, split by llhttp where h11 would agree.

    Same interface and results as :class:`~.parser.H11Parser`.

    Args:
        max_head: the most bytes of an incomplete head kept before refusing it.
        state: the llhttp parser shared with the daemon's other connections
            (default: one of its own).
    """

    __slots__ = ("_state",)

    def __init__(self, max_head: int, state: LlhttpState | None = None) -> None:
        super().__init__(max_head)
        self._state = LlhttpState() if state is None else state

    def _forget(self) -> None:
        # The head goes to h11 (llhttp refused it, read it otherwise than h11
        # would, or h11 must rule on a field): whatever state llhttp was left
        # in is not trusted with the next head.
        self._state.llhttp = None

    def _ended(self, kept: bool) -> None:
        if not kept:
            self._state.llhttp = None

    def _split_head(self, head: bytes) -> SplitHead:
        """The head as llhttp reads it, if that is how h11 reads it too."""
        state = self._state
        collector = state.collector
        collector.target = b""
        fields: list[tuple[bytes, bytes]] = []
        collector.fields = fields
        llhttp = state.llhttp
        if llhttp is None:
            llhttp = state.llhttp = httptools.HttpRequestParser(collector)
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
        return method, target, version, fields
