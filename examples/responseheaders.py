"""responseheaders — the tutorial's ``responseheaders.c`` (appendix C.3), on mhd2.

Answers GET with the contents of a file (``picture.png`` in the current
directory unless another path is given), sent straight from the file
descriptor (``Response.from_fd``, i.e. ``sendfile``) with a ``Content-Type``
header; if the file cannot be opened, a 500 page, and the reason on stderr (a
missing file is also reported at startup).  Other methods get no reply (the
C callback returns ``MHD_NO``)::

    python examples/responseheaders.py [FILE] [--mime TYPE] [--host H] [--port P]
"""

from __future__ import annotations

import argparse
import mimetypes
import os
import sys
from collections.abc import Callable

from _runner import parse_args, run

import mhd2

FILENAME = "picture.png"
MIMETYPE = "image/png"
ERROR_PAGE = b"<html><body>An internal server error has occurred!</body></html>"


def make_answer(filename: str, mimetype: str) -> Callable[[mhd2.Request], mhd2.Action]:
    def answer_to_connection(request: mhd2.Request) -> mhd2.Action:
        if request.method != "GET":
            return mhd2.action_abort_request(request)
        try:
            fd = os.open(filename, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            # The C program answers 500 without a word; say why on the terminal.
            print(f"responseheaders: cannot open {filename}: {exc.strerror}; answering 500",
                  file=sys.stderr, flush=True)
            response = mhd2.Response.from_buffer_static(
                mhd2.HTTPStatus.INTERNAL_SERVER_ERROR, ERROR_PAGE
            )
            return mhd2.action_from_response(request, response)
        try:
            size = os.fstat(fd).st_size
            # MHD_create_response_from_fd_at_offset64: mhd2 closes fd when done
            response = mhd2.Response.from_fd(mhd2.HTTPStatus.OK, fd, offset=0, size=size)
        except BaseException:
            os.close(fd)
            raise
        try:
            response.add_header("Content-Type", mimetype)
        except mhd2.MHDError:
            # as in C: complain, and send the response without it anyway
            print("Failed to set content type header!", file=sys.stderr)
        return mhd2.action_from_response(request, response)

    return answer_to_connection


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", default=FILENAME, help="default: %(default)s")
    parser.add_argument("--mime", help=f"Content-Type (default: guessed, else {MIMETYPE})")


if __name__ == "__main__":
    args = parse_args("Serve one file with a Content-Type header.", extra=_arguments)
    mime = args.mime or mimetypes.guess_type(args.file)[0] or MIMETYPE
    if not os.path.isfile(args.file):
        print(f"responseheaders: {args.file} not found (give a FILE to serve, e.g. "
              f"`python examples/responseheaders.py some.png`); every GET will get a 500",
              file=sys.stderr, flush=True)
    sys.exit(run("responseheaders", make_answer(args.file, mime), args))
