"""Helpers of :mod:`mhd2.static`; all but the last two are sans-IO: pure
functions, no sockets, no files.

* :mod:`.conditionals` — entity tags, HTTP dates, the preconditions of
  RFC 9110 §13.2.2 and ``If-Range``.
* :mod:`.ranges` — the ``Range`` header and ``multipart/byteranges``.
* :mod:`.encodings` — ``Accept-Encoding`` and precompressed sidecar files.
* :mod:`.listing` — directory listings (HTML and JSON, made in pieces), the
  query (sort, order, page), sort keys and the ``Accept`` negotiation.
* :mod:`.snapshot` — what one read of a directory found, when it is still
  fresh, and a bounded LRU cache.
* :mod:`.slices` — long work on the trio loop in time slices, and single
  flights (concurrent requests for one result share the work).
* :mod:`.pages` — listing pages read, sorted and formatted in slices, kept
  and paginated, and their limits (:class:`~.pages.ListingLimits`).

None of these functions raises on any header value: bad input is ignored the
way RFC 9110 says a recipient may.
"""
