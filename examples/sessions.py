"""sessions — the tutorial's session program (appendix C.7), on mhd2.

A three-form flow (``/`` → ``/2`` → ``/S`` → ``/F``) whose answers are kept in
a server-side session, found again by the ``session`` cookie.  As in the
tutorial, a request without a known cookie starts a fresh session; unlike the
C program (``rand()``), session ids come from :mod:`secrets`.  Sessions idle
for longer than ``--session-timeout`` seconds (default one hour) are dropped.
When a session submits the last form, a line is printed on stdout::

    python examples/sessions.py [--host H] [--port P] [--session-timeout S]

Cookies are parsed by the daemon (RFC 6265); a daemon made with
``disable_cookies=True`` sees none, so every request would start a session.
"""

from __future__ import annotations

import argparse
import html
import secrets
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from _runner import parse_args, run

import mhd2

COOKIE_NAME = "session"
#: Largest form body read (the C program's 1024-byte post processor buffer).
POST_BUFFER = 1024
#: Each form value is cut to this many characters (the C program's char[64]).
VALUE_SIZE = 63

METHOD_ERROR = (b"<html><head><title>Illegal request</title></head>"
                b"<body>Go away.</body></html>")
NOT_FOUND_ERROR = (b"<html><head><title>Not found</title></head>"
                   b"<body>Go away.</body></html>")
MAIN_PAGE = ('<html><head><title>Welcome</title></head><body>'
             '<form action="/2" method="post">What is your name? '
             '<input type="text" name="v1" value="{v1}" />'
             '<input type="submit" value="Next" /></form></body></html>')
SECOND_PAGE = ('<html><head><title>Tell me more</title></head><body>'
               '<a href="/">previous</a> <form action="/S" method="post">'
               '{v1}, what is your job? <input type="text" name="v2" value="{v2}" />'
               '<input type="submit" value="Next" /></form></body></html>')
SUBMIT_PAGE = ('<html><head><title>Ready to submit?</title></head><body>'
               '<form action="/F" method="post"><a href="/2">previous </a> '
               '<input type="hidden" name="DONE" value="yes" />'
               '<input type="submit" value="Submit" /></form></body></html>')
LAST_PAGE = "<html><head><title>Thank you</title></head><body>Thank you.</body></html>"


@dataclass
class Session:
    """State kept for each user/session/browser."""

    sid: str
    last_active: float = field(default_factory=time.monotonic)
    value_1: str = ""
    value_2: str = ""


class SessionStore:
    """Sessions by id, least recently used first, so expiry stops at the first live one."""

    def __init__(self, idle_timeout: float) -> None:
        self.idle_timeout = idle_timeout
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def expire(self) -> None:
        """Drop sessions idle for longer than the timeout (``expire_sessions``)."""
        limit = time.monotonic() - self.idle_timeout
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if oldest.last_active >= limit:
                break
            del self._sessions[oldest.sid]

    def get(self, request: mhd2.Request) -> Session:
        """The request's session, by cookie, or a fresh one (``get_session``)."""
        self.expire()
        sid = request.get_value(mhd2.ValueKind.COOKIE, COOKIE_NAME)
        session = self._sessions.get(sid) if sid else None
        if session is None:
            session = Session(secrets.token_urlsafe(32))
            self._sessions[session.sid] = session
        session.last_active = time.monotonic()
        self._sessions.move_to_end(session.sid)
        return session


def page(session: Session, status: int, body: str | bytes,
         mime: str = "text/html") -> mhd2.Response:
    data = body.encode() if isinstance(body, str) else body
    response = mhd2.Response.from_buffer_copy(status, data)
    # the C program's add_session_cookie(), with today's cookie attributes
    response.add_header("Set-Cookie", f"{COOKIE_NAME}={session.sid}; Path=/; HttpOnly; "
                                      "SameSite=Lax")
    response.add_header("Content-Type", mime)
    return response


def render(path: str, session: Session) -> mhd2.Response:
    """The page for *path*, filled from the session (the C ``pages[]`` table)."""
    v1, v2 = html.escape(session.value_1), html.escape(session.value_2)
    if path == "/":
        return page(session, 200, MAIN_PAGE.format(v1=v1))
    if path == "/2":
        return page(session, 200, SECOND_PAGE.format(v1=v1, v2=v2))
    if path == "/S":
        return page(session, 200, SUBMIT_PAGE)
    if path == "/F":
        return page(session, 200, LAST_PAGE)
    return page(session, 404, NOT_FOUND_ERROR)


def post_values(session: Session, body: bytes) -> None:
    """Store the form's fields in the session (``post_iterator``)."""
    for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        if key == "DONE":
            print(f"Session `{session.sid}' submitted `{session.value_1}', `{session.value_2}'",
                  flush=True)
        elif key == "v1":
            session.value_1 = value[:VALUE_SIZE]
        elif key == "v2":
            session.value_2 = value[:VALUE_SIZE]
        else:
            print(f"Unsupported form value `{key}'", file=sys.stderr, flush=True)


def make_callback(store: SessionStore) -> Callable[[mhd2.Request], mhd2.Action]:
    def create_response(request: mhd2.Request) -> mhd2.Action:
        session = store.get(request)
        if request.method in ("GET", "HEAD"):
            return mhd2.action_from_response(request, render(request.path, session))
        if request.method == "POST":
            if request.upload_size == 0:
                return mhd2.action_from_response(request, render(request.path, session))

            def on_body(request: mhd2.Request, data: bytes) -> mhd2.UploadAction:
                post_values(session, data)
                # done with the POST data: serve the page as for a GET
                return mhd2.upload_action_from_response(request, render(request.path, session))

            return mhd2.action_process_upload_full(request, POST_BUFFER, on_body)
        response = mhd2.Response.from_buffer_static(mhd2.HTTPStatus.NOT_ACCEPTABLE, METHOD_ERROR)
        return mhd2.action_from_response(request, response)

    return create_response


def _extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--session-timeout", type=float, default=60 * 60, metavar="SECONDS",
                        help="drop sessions idle this long (default: %(default)s)")
    parser.add_argument("--disable-cookies", action="store_true",
                        help="the daemon option disable_cookies (every request: new session)")


if __name__ == "__main__":
    args = parse_args("Sessions: a multi-page form kept in a cookie session", extra=_extra)
    store = SessionStore(args.session_timeout)
    sys.exit(run("sessions", make_callback(store), args, disable_cookies=args.disable_cookies))
