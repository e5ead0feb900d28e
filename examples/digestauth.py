"""digestauth — Digest authentication (RFC 7616), as MHD2's ``digest_auth_example``.

The password never crosses the wire: the client proves it knows it by hashing
it with a nonce that only this daemon can make (``digest_auth_random``), which
expires and whose nonce counts cannot be replayed::

    python examples/digestauth.py [--host H] [--port P] [--algo sha256|md5|sha512-256|any]
    curl --digest -u 'testuser:testpass' http://127.0.0.1:8888/
"""

from __future__ import annotations

import argparse
import secrets
import sys
from collections.abc import Callable

from _runner import parse_args, run

import mhd2

REALM = "test@example.com"
USER, PASSWORD = "testuser", "testpass"
OPAQUE = "11733b200778ce33060f31c9af70a870ba96ddd4"
ALGOS = {
    "sha256": mhd2.DigestAuthAlgo.SHA256 | mhd2.DigestAuthAlgo.MD5,
    "md5": mhd2.DigestAuthAlgo.MD5,
    "sha512-256": mhd2.DigestAuthAlgo.SHA512_256,
    "any": mhd2.DigestAuthAlgo.ANY,
}

DENIED = b"<html><head><title>Access denied</title></head><body>Access denied</body></html>"
GRANTED = b"<html><head><title>Welcome</title></head><body>Access granted</body></html>"


def make_callback(algo: mhd2.DigestAuthAlgo) -> Callable[[mhd2.Request], mhd2.Action]:
    def answer(request: mhd2.Request) -> mhd2.Action:
        result = request.digest_auth_check(REALM, USER, PASSWORD, algo=algo)
        if result is mhd2.DigestAuthResult.OK:
            response = mhd2.Response.from_buffer_static(mhd2.HTTPStatus.OK, GRANTED)
            return mhd2.action_from_response(request, response)
        # Missing, wrong or stale: (re)challenge.  stale=True lets the browser
        # retry with the fresh nonce without asking the user again.
        response = mhd2.Response.from_buffer_static(mhd2.HTTPStatus.UNAUTHORIZED, DENIED)
        return mhd2.action_digest_auth_challenge(
            request, REALM, response, opaque=OPAQUE, algo=algo,
            stale=result is mhd2.DigestAuthResult.NONCE_STALE)

    return answer


def _extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--algo", choices=sorted(ALGOS), default="sha256",
                        help="digest algorithms offered (default: SHA-256 and MD5)")


if __name__ == "__main__":
    args = parse_args("Digest authentication (user testuser, password testpass)", extra=_extra)
    sys.exit(run("digestauth", make_callback(ALGOS[args.algo]), args,
                 digest_auth_random=secrets.token_bytes(32)))
