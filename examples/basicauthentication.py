"""basicauthentication — the tutorial's Basic authentication program (appendix C.4), on mhd2.

Only ``root`` with the password ``pa$$w0rd`` sees the secret; everyone else
gets a 401 with ``WWW-Authenticate: Basic realm="admins", charset="UTF-8"``::

    python examples/basicauthentication.py [--host H] [--port P]
    curl -u 'root:pa$$w0rd' http://127.0.0.1:8888/

Basic authentication sends the password in clear text: use it over TLS only
(see ``tlsauthentication.py``).
"""

from __future__ import annotations

import sys

from _runner import parse_args, run

import mhd2

REALM = "admins"
USER, PASSWORD = "root", "pa$$w0rd"


def answer_to_connection(request: mhd2.Request) -> mhd2.Action:
    if request.method != "GET":
        return mhd2.action_abort_request(request)  # the C program's "return MHD_NO"
    try:
        auth = request.basic_auth
    except mhd2.AuthError:  # a broken Authorization header: ask again
        auth = None
    if auth is None:
        page = b"<html><body>Authorization required</body></html>"
        response = mhd2.Response.from_buffer_static(mhd2.HTTPStatus.UNAUTHORIZED, page)
        return mhd2.action_basic_auth_challenge(request, REALM, response, prefer_utf8=True)
    if not auth.matches(USER, PASSWORD):  # constant-time comparison
        page = b"<html><body>Wrong username or password</body></html>"
        response = mhd2.Response.from_buffer_static(mhd2.HTTPStatus.UNAUTHORIZED, page)
        return mhd2.action_basic_auth_challenge(request, REALM, response, prefer_utf8=True)
    page = b"<html><body>A secret.</body></html>"
    response = mhd2.Response.from_buffer_static(mhd2.HTTPStatus.OK, page)
    return mhd2.action_from_response(request, response)


if __name__ == "__main__":
    sys.exit(run("basicauthentication", answer_to_connection,
                 parse_args("Basic authentication (user root, password pa$$w0rd)")))
