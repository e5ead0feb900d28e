"""tlsauthentication — the tutorial's HTTPS + Basic authentication program (appendix C.8).

HTTPS with Basic authentication: the user ``a legitimate user`` with the
password ``and his password`` sees the secret page.  The certificate and key
come from PEM files (``--cert``/``--key``, the C program's ``server.pem`` and
``server.key``), loaded into memory and handed to the daemon, as with
``MHD_OPTION_HTTPS_MEM_CERT``/``_KEY``.  Without them, a throw-away CA and a
certificate for ``localhost``/``127.0.0.1`` are made with trustme, and the CA
certificate is written to ``--ca-out`` (default ``./tlsauthentication-ca.pem``)
so that clients can trust it::

    python examples/tlsauthentication.py [--cert server.pem --key server.key] [--port P]
    curl --cacert tlsauthentication-ca.pem -u 'a legitimate user:and his password' \\
        https://localhost:8888/

The startup line says ``https://``: this server speaks HTTPS only (plain
HTTP on its port gets no answer).  The throw-away certificates need trustme:
``python3 -m pip install 'mhd2[examples]'`` (see ``examples/README.md``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _runner import parse_args, run

import mhd2
from mhd2.auth import action_basic_auth_challenge, basic_auth_check
from mhd2.tls import server_context

REALM = "Maintenance"
USER = "a legitimate user"
PASSWORD = "and his password"


def ask_for_authentication(request: mhd2.Request, realm: str) -> mhd2.Action:
    response = mhd2.Response.from_empty(mhd2.HTTPStatus.UNAUTHORIZED)
    return action_basic_auth_challenge(request, realm, response, prefer_utf8=True)


def secret_page(request: mhd2.Request) -> mhd2.Action:
    page = b"<html><body>A secret.</body></html>"
    response = mhd2.Response.from_buffer_static(mhd2.HTTPStatus.OK, page)
    return mhd2.action_from_response(request, response)


def answer_to_connection(request: mhd2.Request) -> mhd2.Action:
    if request.method != "GET":
        return mhd2.action_abort_request(request)
    if not basic_auth_check(request, USER, PASSWORD):  # constant time; broken header = no
        return ask_for_authentication(request, REALM)
    return secret_page(request)


def load_pems(args: argparse.Namespace) -> tuple[bytes, bytes]:
    """The certificate chain and key, from the files given or made with trustme."""
    if args.cert or args.key:
        if not (args.cert and args.key):
            sys.exit("tlsauthentication: --cert and --key go together")
        try:
            return Path(args.cert).read_bytes(), Path(args.key).read_bytes()
        except OSError as exc:
            sys.exit(f"tlsauthentication: the key/certificate files could not be read: {exc}")
    try:
        import trustme
    except ImportError:
        sys.exit("tlsauthentication: without --cert/--key this example makes a test certificate "
                 "with trustme: python3 -m pip install 'mhd2[examples]' (or: pip install trustme)")

    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1", "::1")
    ca.cert_pem.write_to_path(args.ca_out)
    print(f"tlsauthentication: made a test certificate; trust the CA in {args.ca_out}",
          file=sys.stderr, flush=True)
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    return chain, leaf.private_key_pem.bytes()


def _extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cert", metavar="FILE", help="PEM certificate (chain), e.g. server.pem")
    parser.add_argument("--key", metavar="FILE", help="PEM private key, e.g. server.key")
    parser.add_argument("--ca-out", metavar="FILE", default="tlsauthentication-ca.pem",
                        help="where to write the test CA without --cert (default: %(default)s)")


if __name__ == "__main__":
    args = parse_args("HTTPS with Basic authentication", extra=_extra)
    cert, key = load_pems(args)
    sys.exit(run("tlsauthentication", answer_to_connection, args, tls=server_context(cert, key)))
