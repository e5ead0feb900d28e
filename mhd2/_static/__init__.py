"""Sans-IO helpers of :mod:`mhd2.static`: pure functions, no sockets, no files.

* :mod:`.conditionals` — entity tags, HTTP dates, the preconditions of
  RFC 9110 §13.2.2 and ``If-Range``.
* :mod:`.ranges` — the ``Range`` header and ``multipart/byteranges``.
* :mod:`.encodings` — ``Accept-Encoding`` and precompressed sidecar files.
* :mod:`.listing` — directory listings (HTML and JSON), their sorting and
  the ``Accept`` negotiation between the two.

None of these functions raises on any header value: bad input is ignored the
way RFC 9110 says a recipient may.
"""
