"""hellobrowser — the tutorial's first program (appendix C.1), on mhd2.

Every request gets the same small HTML page. Run it and point a browser at
http://127.0.0.1:8888/; press Enter (or Ctrl-C) to stop::

    python examples/hellobrowser.py [--host H] [--port P]
"""

from __future__ import annotations

import sys

from _runner import parse_args, run

import mhd2

PAGE = b"<html><body>Hello, browser!</body></html>"


def answer_to_connection(request: mhd2.Request) -> mhd2.Action:
    # MHD_create_response_from_buffer_static + MHD_queue_response (MHD_HTTP_OK)
    response = mhd2.Response.from_buffer_static(mhd2.HTTPStatus.OK, PAGE)
    return mhd2.action_from_response(request, response)


if __name__ == "__main__":
    sys.exit(run("hellobrowser", answer_to_connection, parse_args("Hello, browser!")))
