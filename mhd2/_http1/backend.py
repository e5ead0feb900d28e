"""Which request parser a daemon uses: ``parser="auto" | "h11" | "httptools"``.

h11 is the pure-Python parser every install has; httptools (llhttp, the parser
of Node.js) comes with ``pip install mhd2[speedups]``.  ``"auto"`` takes
httptools when it can be imported.  Both backends sit behind the interface of
:class:`~mhd2._http1.parser.Parser` and give the same answers for the same
bytes: each is a fast path for plainly well-formed heads with h11 as its
referee (:mod:`mhd2._http1.refereed`) -- llhttp splits the heads for
``"httptools"`` (:mod:`mhd2._http1.llhttp`), a few ``bytes`` splits in Python
for ``"h11"`` (:mod:`mhd2._http1.plain`) -- and any other head goes to h11
(:class:`~mhd2._http1.parser.H11Parser`) from its first byte.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Final

from .parser import Parser
from .plain import PlainParser

__all__ = ["PARSER_CHOICES", "httptools_available", "parser_factory", "resolve_parser"]

#: The values ``Daemon(parser=...)`` accepts.
PARSER_CHOICES: Final = ("auto", "h11", "httptools")


def httptools_available() -> bool:
    """httptools can be imported (``pip install mhd2[speedups]``)."""
    return importlib.util.find_spec("httptools") is not None


def resolve_parser(choice: str) -> str:
    """The backend *choice* means here: ``"h11"`` or ``"httptools"``."""
    if choice == "auto":
        return "httptools" if httptools_available() else "h11"
    return choice


def parser_factory(choice: str) -> Callable[[int], Parser]:
    """A callable making one connection's parser from ``max_header_size``."""
    if resolve_parser(choice) == "httptools":
        from .llhttp import LlhttpParser, LlhttpState

        # One llhttp parser for all of this daemon's connections (see .llhttp).
        state = LlhttpState()

        def make_llhttp_parser(max_head: int) -> Parser:
            return LlhttpParser(max_head, state)

        return make_llhttp_parser
    return PlainParser
