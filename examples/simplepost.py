"""simplepost — the tutorial's ``simplepost.c`` (appendix C.5, chapter 6), on mhd2.

A GET gets a form asking for your name; posting it (to ``/namepost``, or any
other path) gets a greeting. The form is parsed by
:func:`mhd2.action_parse_post`: the short ``name`` field lands in the
request's POST values (``ValueKind.POSTDATA``) and ``done_cb`` answers. What
the C program keeps in ``struct connection_info_struct`` and frees in
``request_completed`` needs no bookkeeping here: the parser lives exactly as
long as the request. Anything but GET and POST, or a name that is empty or
longer than 20 bytes, gets the error page (with 200, as in C)::

    python examples/simplepost.py [--host H] [--port P]
    curl -d name=Ada http://127.0.0.1:8888/namepost
"""

from __future__ import annotations

import html
import sys

from _runner import parse_args, run

import mhd2

POSTBUFFERSIZE = 512
MAXNAMESIZE = 20

ASKPAGE = (
    b"<html><body>\n"
    b"What's your name, Sir?<br>\n"
    b'<form action="/namepost" method="post">\n'
    b'<input name="name" type="text">\n'
    b'<input type="submit" value=" Send "></form>\n'
    b"</body></html>"
)
GREETINGPAGE = "<html><body><h1>Welcome, {}!</center></h1></body></html>"
ERRORPAGE = b"<html><body>This doesn't seem to be right.</body></html>"


def page(body: bytes) -> mhd2.Response:
    # send_page(): MHD_create_response_from_buffer + MHD_HTTP_OK
    response = mhd2.Response.from_buffer_copy(mhd2.HTTPStatus.OK, body)
    response.add_header("Content-Type", "text/html; charset=utf-8")
    return response


def post_done(request: mhd2.Request, result: mhd2.PostParseResult) -> mhd2.UploadAction:
    """``done_cb``: the form is parsed; greet, or send the error page."""
    name = request.get_value(mhd2.ValueKind.POSTDATA, "name")
    # iterate_post(): only 0 < size <= MAXNAMESIZE makes an answer string
    if result.is_ok and name is not None and 0 < len(name.encode()) <= MAXNAMESIZE:
        # Unlike the C program's sprintf, escape the name: it is user input.
        greeting = GREETINGPAGE.format(html.escape(name)).encode()
        return mhd2.upload_action_from_response(request, page(greeting))
    return mhd2.upload_action_from_response(request, page(ERRORPAGE))


def answer_to_connection(request: mhd2.Request) -> mhd2.Action:
    if request.method == "GET":
        return mhd2.action_from_response(request, page(ASKPAGE))
    if request.method == "POST":
        # MHD_create_post_processor (connection, POSTBUFFERSIZE, iterate_post, ...):
        # fields up to POSTBUFFERSIZE bytes are collected; no stream reader.
        return mhd2.action_parse_post(
            request,
            POSTBUFFERSIZE,
            POSTBUFFERSIZE,
            mhd2.PostEncoding.OTHER,  # detect from Content-Type
            None,
            post_done,
        )
    return mhd2.action_from_response(request, page(ERRORPAGE))


if __name__ == "__main__":
    sys.exit(run("simplepost", answer_to_connection, parse_args("What's your name, Sir?")))
