"""The sans-IO HTTP/1.1 core of mhd2.

Nothing in this package touches a socket or imports trio.  h11 parses request
heads and bodies; the modules here make the decisions h11 leaves to a server
and write response heads and body framing as bytes:

* :mod:`.request_checks` -- rules a request head must pass beyond h11's own;
* :mod:`.values` -- the request target, query string and cookies as values;
* :mod:`.framing` -- how a response body is delimited and whether the
  connection stays open;
* :mod:`.writer` -- response heads, chunks and trailers as bytes.

What HTTP/2 shares with it -- the field syntax and the ``Date`` header -- is
protocol-neutral and lives beside this package: :mod:`mhd2._syntax`, :mod:`mhd2._date`.
"""
