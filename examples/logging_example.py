"""logging — the tutorial's ``logging.c`` (appendix C.2), on mhd2.

Prints the method, URL and version of every request and then each header as
``Name: value`` on stdout, and — like the C program, whose callback returns
``MHD_NO`` — sends no reply: the request is aborted and the connection closed.
(Named ``logging_example.py`` so that it does not shadow the standard
``logging`` module.)::

    python examples/logging_example.py [--host H] [--port P]
"""

from __future__ import annotations

import sys

from _runner import parse_args, run

import mhd2


def print_out_key(kind: mhd2.ValueKind, key: str, value: str) -> None:
    print(f"{key}: {value}")


def answer_to_connection(request: mhd2.Request) -> mhd2.Action:
    print(f"New {request.method} request for {request.path} using version {request.version}")
    # MHD_get_connection_values (connection, MHD_HEADER_KIND, print_out_key, NULL)
    for key, value in request.get_values(mhd2.ValueKind.HEADER):
        print_out_key(mhd2.ValueKind.HEADER, key, value)
    sys.stdout.flush()
    return mhd2.action_abort_request(request)  # the C callback's "return MHD_NO"


if __name__ == "__main__":
    sys.exit(run("logging", answer_to_connection, parse_args("Print each request's headers.")))
