"""digestauth — Digest authentication (RFC 7616), as MHD2's ``digest_auth_example``.

The password never crosses the wire: the client proves it knows it by hashing
it with a nonce that only this daemon can make (``digest_auth_random``), which
expires and whose nonce counts cannot be replayed.

The server does not keep the passwords either: at start it turns each into
*userdigests* (``H(username:realm:password)``, one per algorithm) and forgets
it.  A request names its user (``request.digest_auth_info``, by name or by
userhash); the user's userdigest for the algorithm the client chose checks the
answer (``request.digest_auth_check_digest``).  The 401 page is a challenge
prepared once (``mhd2.DigestChallenge``) that gets a fresh nonce on every send::

    python examples/digestauth.py [--host H] [--port P] [--algo sha256|md5|sha512-256|any]
                                  [--userhash]
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
#: Only to build the demo's user table below; a real application would load
#: the userdigests from its storage and never see a password.
DEMO_PASSWORDS = {"testuser": "testpass", "jürgen": "geheim"}
OPAQUE = "11733b200778ce33060f31c9af70a870ba96ddd4"
ALGOS = {
    "sha256": mhd2.DigestAuthAlgo.SHA256 | mhd2.DigestAuthAlgo.MD5,
    "md5": mhd2.DigestAuthAlgo.MD5,
    "sha512-256": mhd2.DigestAuthAlgo.SHA512_256,
    "any": mhd2.DigestAuthAlgo.ANY,
}
SINGLE = (mhd2.DigestAuthAlgo.MD5, mhd2.DigestAuthAlgo.SHA256, mhd2.DigestAuthAlgo.SHA512_256)

DENIED = b"<html><head><title>Access denied</title></head><body>Access denied</body></html>"
GRANTED = b"<html><head><title>Welcome</title></head><body>Access granted</body></html>"


class Users:
    """userdigests by user and algorithm, and user names by (algorithm, userhash)."""

    def __init__(self, passwords: dict[str, str]) -> None:
        self.digests = {
            name: {a: mhd2.digest_auth_calc_userdigest(a, name, REALM, pw) for a in SINGLE}
            for name, pw in passwords.items()}
        self.by_userhash = {(a, mhd2.digest_auth_calc_userhash(a, name, REALM)): name
                            for name in passwords for a in SINGLE}

    def find(self, info: mhd2.DigestAuthInfo) -> str | None:
        """The user a Digest answer claims to be, if there is such a user."""
        if info.algo is None:  # an algorithm mhd2 does not support
            return None
        if info.userhash is not None:
            return self.by_userhash.get((info.algo, info.userhash))
        return info.username if info.username in self.digests else None


def make_callback(algo: mhd2.DigestAuthAlgo, userhash: bool = False
                  ) -> Callable[[mhd2.Request], mhd2.Action]:
    users = Users(DEMO_PASSWORDS)
    challenge = mhd2.DigestChallenge(REALM, DENIED, headers=[("Content-Type", "text/html")],
                                     opaque=OPAQUE, algo=algo, userhash=userhash)

    def answer(request: mhd2.Request) -> mhd2.Action:
        info = request.digest_auth_info
        result = mhd2.DigestAuthResult.HEADER_MISSING
        name = users.find(info) if info is not None else None
        # Check only answers with an offered algorithm, by a known user.
        if info is not None and info.algo is not None and info.algo & algo and name is not None:
            result = request.digest_auth_check_digest(
                REALM, name, users.digests[name][info.algo], algo=info.algo)
            if result is mhd2.DigestAuthResult.OK:
                response = mhd2.Response.from_buffer_static(mhd2.HTTPStatus.OK, GRANTED)
                return mhd2.action_from_response(request, response)
        # Missing, unknown, wrong or stale: (re)challenge.  stale=True lets the
        # browser retry with the fresh nonce without asking the user again.
        return challenge.action(request, stale=result is mhd2.DigestAuthResult.NONCE_STALE)

    return answer


def _extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--algo", choices=sorted(ALGOS), default="sha256",
                        help="digest algorithms offered (default: SHA-256 and MD5)")
    parser.add_argument("--userhash", action="store_true",
                        help="ask clients to send H(username:realm) instead of the name")


if __name__ == "__main__":
    args = parse_args("Digest authentication (user testuser, password testpass)", extra=_extra)
    sys.exit(run("digestauth", make_callback(ALGOS[args.algo], args.userhash), args,
                 digest_auth_random=secrets.token_bytes(32)))
