"""Sans-IO HTTP authentication: Basic (RFC 7617) and Digest (RFC 7616).

Everything in this package works on header *values* (strings) and plain
objects; it imports nothing of trio, of the request, of actions or of
responses (only :mod:`mhd2.enums`, :mod:`mhd2.errors` and the standard
library), so it is tested without a socket.

* :mod:`.common` -- the shared header syntax (``auth-param`` lists, quoting)
  and constant-time comparison;
* :mod:`.basic` -- ``Authorization: Basic`` and its challenge;
* :mod:`.digest` -- hashing, parsing and checking ``Authorization: Digest``;
* :mod:`.challenge` -- ``WWW-Authenticate`` values, prepared once;
* :mod:`.nonces` -- the daemon's :class:`~.nonces.NonceRegistry`.

:mod:`mhd2.request` calls into this package; :mod:`mhd2.auth` holds the thin
action wrappers above it.
"""
