"""The sans-IO helpers of mhd2.static (mhd2/_static): examples, and property
tests that no header value makes a parser raise."""

from __future__ import annotations

import email.parser
import email.policy
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mhd2._static import listing
from mhd2._static.conditionals import etags, http_date, if_range, preconditions
from mhd2._static.encodings import choose, parse_accept_encoding
from mhd2._static.ranges import MAX_DIGITS, UNSATISFIABLE, multipart, parse_ranges

#: Text that looks like header values: the characters that matter to the parsers.
header_text = st.text(
    alphabet=st.sampled_from([*"0123456789-=,;.*/ \t\"Wbytesqgzipbr", "\u00b2", "\x00"]),
    max_size=80,
) | st.text(max_size=40)


# ---------------------------------------------------------------- ranges


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes=0-1,5-6", [(0, 1), (5, 6)]),
        ("bytes=0-1, ,5-6,", [(0, 1), (5, 6)]),  # empty list elements are fine
        ("bytes=-3,0-0", [(7, 9), (0, 0)]),
        ("bytes=20-30,0-0", [(0, 0)]),  # the unsatisfiable one is dropped
        ("bytes=20-30,40-", UNSATISFIABLE),
        ("bytes=0-9,0-9", None),  # more than the file in total: the whole once
        ("bytes=0-5,3-8", None),
        ("bytes=0-4,3-5", [(0, 4), (3, 5)]),  # overlap, but within the size
        ("bytes=" + "9" * (MAX_DIGITS + 1) + "-", None),
        ("bytes=0-" + "9" * MAX_DIGITS, [(0, 9)]),
        ("bytes=,", None),
        ("bytes=0-1;x", None),
    ],
)
def test_parse_ranges(value: str, expected: object) -> None:
    assert parse_ranges(value, 10) == expected


def test_range_count_cap() -> None:
    assert parse_ranges("bytes=0-0,1-1,2-2", 10, max_ranges=3) == [(0, 0), (1, 1), (2, 2)]
    assert parse_ranges("bytes=0-0,1-1,2-2,3-3", 10, max_ranges=3) is None
    many = "bytes=" + ",".join(["0-0"] * 100_000)
    assert parse_ranges(many, 10) is None


@given(header_text, st.integers(min_value=0, max_value=2**64))
def test_parse_ranges_never_raises(value: str, size: int) -> None:
    result = parse_ranges(value, size)
    if isinstance(result, list):
        assert result
        for first, last in result:
            assert 0 <= first <= last < size
        if len(result) > 1:
            assert sum(b - a + 1 for a, b in result) <= size


def test_multipart_body_parses_back() -> None:
    data = bytes(range(100))
    body = multipart([(0, 1), (90, 99)], len(data), "text/plain; charset=utf-8", "b0undary")
    raw = b"".join(
        seg if isinstance(seg, bytes) else data[seg[0] : seg[0] + seg[1]] for seg in body.segments
    )
    assert len(raw) == body.length
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + body.content_type.encode() + b"\r\n\r\n" + raw
    )
    parts = list(message.iter_parts())
    assert [p.get_payload(decode=True) for p in parts] == [data[0:2], data[90:100]]
    assert [p["Content-Range"] for p in parts] == ["bytes 0-1/100", "bytes 90-99/100"]
    assert raw.endswith(b"\r\n--b0undary--\r\n")


# ---------------------------------------------------------------- conditionals


def test_http_date() -> None:
    assert http_date("Tue, 14 Nov 2023 22:13:20 GMT") == 1_700_000_000
    assert http_date("Tuesday, 14-Nov-23 22:13:20 GMT") == 1_700_000_000
    assert http_date("Tue Nov 14 22:13:20 2023") is None  # no zone: not trusted
    for bad in ("", "x", "Mon, 01 Jan 99999999999 00:00:00 GMT", "1" * 5000):
        assert http_date(bad) is None


@given(
    st.dictionaries(
        st.sampled_from(["If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since"]),
        header_text,
    ),
    header_text,
)
def test_conditionals_never_raise(headers: dict[str, str], value: str) -> None:
    assert preconditions(headers.get, '"a"', 1_700_000_000) in (None, 304, 412)
    assert preconditions(headers.get, '"a"', None) in (None, 304, 412)
    assert if_range(value, '"a"', 1_700_000_000) in (True, False)
    for weak, tag in etags(value):
        assert isinstance(weak, bool) and tag.startswith('"') and tag.endswith('"')


def test_preconditions_order() -> None:
    tag = '"t"'
    h = {"If-Match": '"x"', "If-None-Match": tag}
    assert preconditions(h.get, tag, 0) == 412  # step 1 before step 3
    assert preconditions({"If-None-Match": 'W/"t"'}.get, tag, 0) == 304  # weak comparison
    assert preconditions({"If-Match": 'W/"t"'}.get, tag, 0) == 412  # strong comparison


# ---------------------------------------------------------------- encodings


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("gzip, br;q=0.5", {"gzip": 1.0, "br": 0.5}),
        ("GZIP;Q=0.25", {"gzip": 0.25}),
        ("x-gzip", {"gzip": 1.0}),
        ("br;q=1.5, gzip;q=0.1234, zstd;q=1.000, *;q=0", {"zstd": 1.0, "*": 0.0}),
        ("gzip;q=0.8, gzip;q=0", {"gzip": 0.8}),
        ("", {}),
    ],
)
def test_parse_accept_encoding(value: str, expected: dict[str, float]) -> None:
    assert parse_accept_encoding(value) == expected


@given(header_text, st.sets(st.sampled_from(["br", "zstd", "gzip"])))
def test_choose_never_raises(value: str, available: set[str]) -> None:
    assert choose(value, available) in (available | {None})


# ---------------------------------------------------------------- listing


@pytest.mark.parametrize(
    ("accept", "json"),
    [
        (None, False),
        ("application/json", True),
        ("application/json, text/html;q=0.9", True),
        ("text/html, application/json", False),
        ("application/*", True),
        ("*/*", False),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", False),
        ("application/json;q=0", False),
    ],
)
def test_wants_json(accept: str | None, json: bool) -> None:
    assert listing.wants_json(accept) is json


@given(header_text)
def test_listing_helpers_never_raise(value: str) -> None:
    listing.wants_json(value)
    key, order = listing.parse_sort(value)
    assert key in ("name", "size", "date") and order in ("asc", "desc")


def test_sort_entries_keeps_directories_first() -> None:
    entries = [
        listing.Entry("b", False, 5, 3),
        listing.Entry("a", False, 9, 1),
        listing.Entry("z", True, None, 2),
        listing.Entry("c", False, 1, 2),
    ]
    names = [e.name for e in listing.sort_entries(entries, "size", "desc")]
    assert names == ["z", "a", "b", "c"]
    names = [e.name for e in listing.sort_entries(entries, "date", "asc")]
    assert names == ["z", "a", "c", "b"]


def test_listing_escapes_undecodable_names() -> None:
    name = os.fsdecode(b"caf\xe9<x>")
    page = listing.html_page("/", [listing.Entry(name, False, 1, 0)], "name", "asc").decode()
    assert 'href="caf%E9%3Cx%3E"' in page and "caf\ufffd&lt;x&gt;" in page
    body = listing.json_body("/", [listing.Entry(name, False, 1, 0)]).decode()
    assert "caf\ufffd<x>" in body
