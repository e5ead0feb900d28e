"""reply_plan: a reusable response's reply plans and wire bytes, cached by request side."""

from __future__ import annotations

import mhd2
from mhd2 import _date as date_module
from mhd2._date import date_header_line
from mhd2._http1.framing import Framing
from mhd2.http1.reply import RequestSide, reply_plan

#: HTTP/1.1, GET, no Connection header, not forced to close, not quiescing, with Date.
KEEP: RequestSide = (True, False, False, False, False, False, True)
CLOSE: RequestSide = (True, False, True, False, False, False, True)
HEAD: RequestSide = (True, True, False, False, False, False, True)
NO_DATE: RequestSide = (True, False, False, False, False, False, False)
OLD_KEEP: RequestSide = (False, False, False, True, False, False, True)


def frozen(reusable: bool = True, body: bytes = b"hello") -> mhd2.Response:
    response = mhd2.Response.from_buffer_copy(200, body)
    response.add_header("Content-Type", "text/plain")
    response.set_options(reusable=reusable)
    response._acquire()  # (what action_from_response does: freezes it)
    return response


def test_a_reusable_response_is_one_lookup_and_its_bytes_per_side() -> None:
    response = frozen()
    first = reply_plan(response, KEEP)
    assert reply_plan(response, KEEP) is first  # cached
    assert first.data is not None and first.data.endswith(b"\r\n\r\nhello")
    assert first.data.startswith(b"HTTP/1.1 200 OK\r\n") and first.body_size == 5
    assert date_header_line() in first.data and b"Connection" not in first.data
    closing = reply_plan(response, CLOSE)
    assert not closing.plan.keep_alive and b"\r\nConnection: close\r\n" in (closing.data or b"")
    head = reply_plan(response, HEAD)
    assert head.data is not None and head.data.endswith(b"Content-Length: 5\r\n\r\n")
    assert head.body_size == 0
    assert b"Date:" not in (reply_plan(response, NO_DATE).data or b"Date:")
    old = reply_plan(response, OLD_KEEP)
    assert b"\r\nConnection: keep-alive\r\n" in (old.data or b"")


def test_the_date_line_is_that_of_the_current_second() -> None:
    # RFC 9110 §6.6.1: the Date of every 2xx/3xx/4xx response; the bytes are
    # remade when the cached Date line changes (a new second).
    response = frozen()
    before = reply_plan(response, KEEP).data
    date_module._cached_second = -1  # as if the wall clock's second changed
    now = date_header_line()
    planned = reply_plan(response, KEEP)
    assert planned.date is now and planned.data is not before
    assert planned.data is not None and now in planned.data


def test_a_response_of_its_own_date_gets_no_second_one() -> None:
    response = mhd2.Response.from_buffer_copy(200, b"x")
    response.add_header("Date", "Sun, 06 Nov 1994 08:49:37 GMT")
    response.set_options(reusable=True)
    response._acquire()
    data = reply_plan(response, KEEP).data or b""
    assert data.count(b"Date:") == 1 and b"1994" in data


def test_other_responses_are_planned_each_time_without_bytes() -> None:
    once = frozen(reusable=False)
    planned = reply_plan(once, KEEP)
    assert planned.data is None and planned.plan.framing is Framing.CONTENT_LENGTH
    assert once._replies is None
    big = frozen(body=b"x" * (64 * 1024))
    assert reply_plan(big, KEEP).data is None and reply_plan(big, KEEP) is reply_plan(big, KEEP)
    made = mhd2.Response.from_callback(200, None, lambda ctx, pos, buf: None)
    made.set_options(reusable=True)
    made._acquire()
    assert reply_plan(made, KEEP).plan.framing is Framing.CHUNKED
    assert reply_plan(made, KEEP).data is None

