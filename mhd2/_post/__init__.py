"""Sans-IO parsers for the three HTML form encodings (no trio, no sockets).

Each parser is a small object in the style of h11 / wsproto: the caller
:meth:`~FormParser.feed`\\ s it the body in pieces of any size and gets back a
list of events; :meth:`~FormParser.close` marks the end of the body and returns
the last events.  A parser never holds a whole field value: values come out as
:class:`FieldData` pieces as soon as they are known not to be part of a
delimiter or an escape sequence, so its memory is bounded by its header / name
limit plus a few bytes.

After an error or :meth:`~FormParser.close`, :attr:`FormParser.result` is a
:class:`~mhd2.PostParseResult`; further input is ignored.

* :class:`~mhd2._post.urlencoded.UrlencodedParser` — ``application/x-www-form-urlencoded``
* :class:`~mhd2._post.multipart.MultipartParser` — ``multipart/form-data`` (RFC 7578)
* :class:`~mhd2._post.text_plain.TextPlainParser` — ``text/plain`` form data
* :func:`~mhd2._post.content_type.detect_encoding` — which parser a request needs
"""

from __future__ import annotations

from .content_type import detect_encoding, parse_content_type
from .events import Event, FieldData, FieldEnd, FieldStart, FormParser
from .multipart import MultipartParser
from .text_plain import TextPlainParser
from .urlencoded import UrlencodedParser

__all__ = [
    "Event",
    "FieldData",
    "FieldEnd",
    "FieldStart",
    "FormParser",
    "MultipartParser",
    "TextPlainParser",
    "UrlencodedParser",
    "detect_encoding",
    "parse_content_type",
]
