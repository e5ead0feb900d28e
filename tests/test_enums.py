"""Unit tests of mhd2.enums and mhd2.errors (no sockets)."""

from __future__ import annotations

import pickle

import pytest

from mhd2.enums import (
    AddressFamily,
    ConnectionEvent,
    DigestAuthAlgo,
    DigestAuthResult,
    HTTPMethod,
    HTTPStatus,
    HTTPVersion,
    PostEncoding,
    PostParseResult,
    PredefinedHeader,
    RequestEndedCode,
    StatusCode,
    StrictLevel,
    ValueKind,
    reason_phrase,
)
from mhd2.errors import (
    AuthError,
    DaemonStartError,
    MHDError,
    ResponseHeaderError,
    UpgradedBroken,
    UpgradedClosed,
    UpgradedError,
    UpgradedHandleInvalid,
    UpgradedTimeout,
    UpgradedTLSError,
    UsageError,
)

# ------------------------------------------------------------------ HTTPStatus

IANA_CODES = [
    100, 101, 102, 103,
    200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
    300, 301, 302, 303, 304, 305, 307, 308,
    400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414,
    415, 416, 417, 421, 422, 423, 424, 425, 426, 428, 429, 431, 451,
    500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511,
]  # fmt: skip


@pytest.mark.parametrize(
    ("status", "phrase"),
    [
        (HTTPStatus.OK, "OK"),
        (HTTPStatus.NOT_FOUND, "Not Found"),
        (HTTPStatus.CONTENT_TOO_LARGE, "Content Too Large"),
        (HTTPStatus.UNPROCESSABLE_CONTENT, "Unprocessable Content"),
        (HTTPStatus.URI_TOO_LONG, "URI Too Long"),
        (HTTPStatus.RANGE_NOT_SATISFIABLE, "Range Not Satisfiable"),
        (HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Request Header Fields Too Large"),
        (HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "HTTP Version Not Supported"),
        (HTTPStatus.SWITCHING_PROTOCOLS, "Switching Protocols"),
        (HTTPStatus.INTERNAL_SERVER_ERROR, "Internal Server Error"),
    ],
)
def test_phrases(status: HTTPStatus, phrase: str) -> None:
    assert status.phrase == phrase
    assert reason_phrase(int(status)) == phrase


def test_registry_complete() -> None:
    for code in IANA_CODES:
        status = HTTPStatus(code)
        assert status.phrase
        assert reason_phrase(code) == status.phrase


def test_every_member_has_phrase() -> None:
    for status in HTTPStatus:
        assert reason_phrase(status) == status.phrase != "Unknown"


def test_required_names() -> None:
    assert int(HTTPStatus.CONTINUE) == 100
    assert int(HTTPStatus.NO_CONTENT) == 204
    assert int(HTTPStatus.PARTIAL_CONTENT) == 206
    assert int(HTTPStatus.NOT_MODIFIED) == 304
    assert int(HTTPStatus.BAD_REQUEST) == 400
    assert int(HTTPStatus.UNAUTHORIZED) == 401
    assert int(HTTPStatus.FORBIDDEN) == 403
    assert int(HTTPStatus.METHOD_NOT_ALLOWED) == 405
    assert int(HTTPStatus.REQUEST_TIMEOUT) == 408
    assert int(HTTPStatus.NOT_IMPLEMENTED) == 501
    assert int(HTTPStatus.SERVICE_UNAVAILABLE) == 503


def test_unknown_phrase() -> None:
    assert reason_phrase(299) == "Unknown"
    assert reason_phrase(999) == "Unknown"
    assert reason_phrase(0) == "Unknown"


def test_status_is_int() -> None:
    assert HTTPStatus.OK + 1 == 201
    assert f"{int(HTTPStatus.NOT_FOUND)}" == "404"


def test_allows_body() -> None:
    assert HTTPStatus.OK.allows_body
    assert not HTTPStatus.NO_CONTENT.allows_body
    assert not HTTPStatus.NOT_MODIFIED.allows_body
    assert not HTTPStatus.CONTINUE.allows_body
    assert HTTPStatus.CONTINUE.is_informational


# ------------------------------------------------------------------ methods, versions


def test_method_from_str() -> None:
    assert HTTPMethod.from_str("GET") is HTTPMethod.GET
    assert HTTPMethod.from_str("PATCH") is HTTPMethod.PATCH
    assert HTTPMethod.from_str("*") is HTTPMethod.ASTERISK
    assert HTTPMethod.from_str("get") is HTTPMethod.OTHER
    assert HTTPMethod.from_str("PROPFIND") is HTTPMethod.OTHER
    assert HTTPMethod.from_str("") is HTTPMethod.OTHER
    for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE"):
        assert HTTPMethod.from_str(m).value == m


def test_method_safe() -> None:
    assert HTTPMethod.GET.is_safe
    assert not HTTPMethod.POST.is_safe


def test_version_from_str() -> None:
    assert HTTPVersion.from_str("HTTP/1.0") is HTTPVersion.HTTP_1_0
    assert HTTPVersion.from_str("HTTP/1.1") is HTTPVersion.HTTP_1_1
    assert HTTPVersion.from_str("1.1") is HTTPVersion.HTTP_1_1
    assert HTTPVersion.from_str("HTTP/9.9") is HTTPVersion.INVALID
    assert HTTPVersion.HTTP_1_1.value == "HTTP/1.1"


# ------------------------------------------------------------------ values, headers


def test_value_kind_combinable() -> None:
    both = ValueKind.HEADER | ValueKind.FOOTER
    assert ValueKind.HEADER in both
    assert ValueKind.FOOTER in both
    assert ValueKind.COOKIE not in both
    assert both == ValueKind.HEADER_FOOTER
    assert ValueKind.GET_POST == ValueKind.GET_ARGUMENT | ValueKind.POSTDATA
    flags = [ValueKind.HEADER, ValueKind.COOKIE, ValueKind.GET_ARGUMENT,
             ValueKind.POSTDATA, ValueKind.FOOTER]  # fmt: skip
    assert len({int(f) for f in flags}) == 5
    for f in flags:
        assert int(f) & (int(f) - 1) == 0  # single bit


def test_predefined_header() -> None:
    assert int(PredefinedHeader.ACCEPT_CHARSET) == 15
    assert int(PredefinedHeader.ACCEPT_LANGUAGE) == 17
    assert PredefinedHeader.ACCEPT_LANGUAGE.header_name == "Accept-Language"
    assert int(PredefinedHeader.WWW_AUTHENTICATE) == 61
    assert PredefinedHeader.WWW_AUTHENTICATE.header_name == "WWW-Authenticate"
    assert PredefinedHeader.ETAG.header_name == "ETag"
    for h in PredefinedHeader:
        assert h.header_name.lower().replace("-", "_") == h.name.lower()


# ------------------------------------------------------------------ StatusCode

USAGE_CODES = [
    "ACTION_ALREADY_CREATED",
    "TOO_LATE",
    "RESP_HEADER_NAME_INVALID",
    "RESP_HEADER_VALUE_INVALID",
    "RESP_HEADER_NOT_ALLOWED",
    "CONFIGURATION_WRONG_OPTION_VALUE",
    "DCC_ACTION_INVALID",
    "API_MISUSE",
    "UPGRADED_HANDLE_INVALID",
]

REQUIRED_CODES = [
    *USAGE_CODES,
    "OK",
    "UPGRADED_NET_TIMEOUT",
    "UPGRADED_NET_CONN_CLOSED",
    "UPGRADED_NET_CONN_BROKEN",
    "UPGRADED_TLS_ERROR",
    "UPGRADED_NET_HARD_ERROR",
    "UPGRADED_WAITING_NOT_SUPPORTED",
    "LISTEN_SOCKET_BIND_FAILED",
    "AUTH_ABSENT",
    "REQ_AUTH_DATA_BROKEN",
    "FEATURE_DISABLED",
]


def test_status_code_values_unique() -> None:
    # Aliases would not show up in iteration; __members__ includes them.
    assert len(StatusCode.__members__) == len(list(StatusCode))
    values = [int(c) for c in StatusCode]
    assert len(values) == len(set(values))


def test_status_code_required_names() -> None:
    for name in REQUIRED_CODES:
        assert name in StatusCode.__members__, name
    assert int(StatusCode.OK) == 0


def test_status_code_ranges() -> None:
    for name in USAGE_CODES:
        code = StatusCode[name]
        assert 60000 <= code <= 69999, name
        assert code.is_usage_error
    for code in StatusCode:
        assert code == 0 or 10000 <= code <= 69999, code
    assert StatusCode.LISTEN_SOCKET_BIND_FAILED.is_server_error
    assert StatusCode.REQ_AUTH_DATA_BROKEN.is_client_error
    assert not StatusCode.OK.is_usage_error


# ------------------------------------------------------------------ other enums


def test_request_ended() -> None:
    for name in ("COMPLETED_OK", "COMPLETED_OK_UPGRADE", "TIMEOUT_REACHED", "DAEMON_SHUTDOWN",
                 "CONNECTION_ERROR", "CLIENT_ABORT", "NO_RESOURCES", "HTTP_PROTOCOL_ERROR",
                 "BY_APP_ABORT", "BY_APP_ERROR"):  # fmt: skip
        assert name in RequestEndedCode.__members__
    assert int(RequestEndedCode.COMPLETED_OK) == 0


def test_strict_level() -> None:
    assert sorted(int(s) for s in StrictLevel) == list(range(-3, 4))
    assert int(StrictLevel.DEFAULT) == 0


def test_misc_enums() -> None:
    assert {a.name for a in AddressFamily} >= {"AUTO", "INET4", "INET6", "DUAL"}
    assert {e.name for e in ConnectionEvent} == {"STARTED", "CLOSED"}
    assert {e.name for e in PostEncoding} == {
        "OTHER",
        "FORM_URLENCODED",
        "MULTIPART_FORMDATA",
        "TEXT_PLAIN",
    }
    assert PostEncoding.MULTIPART_FORMDATA.mime_type == "multipart/form-data"
    assert int(PostParseResult.OK) == 0
    assert PostParseResult.OK.is_ok
    assert not PostParseResult.FAILED_INVALID_POST_FORMAT.is_ok


def test_digest_auth() -> None:
    for name in ("OK", "HEADER_MISSING", "HEADER_BROKEN", "WRONG_USERNAME", "WRONG_REALM",
                 "WRONG_URI", "NONCE_STALE", "NONCE_WRONG", "RESPONSE_WRONG"):  # fmt: skip
        assert name in DigestAuthResult.__members__
    assert DigestAuthResult.OK > 0
    assert all(r <= 0 for r in DigestAuthResult if r is not DigestAuthResult.OK)
    default = DigestAuthAlgo.SHA256 | DigestAuthAlgo.MD5
    assert DigestAuthAlgo.MD5 in default
    assert DigestAuthAlgo.SHA512_256 not in default
    assert DigestAuthAlgo.SHA256.token == "SHA-256"
    with pytest.raises(ValueError):
        _ = default.token


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (MHDError, StatusCode.INTERNAL_ERROR),
        (UsageError, StatusCode.API_MISUSE),
        (ResponseHeaderError, StatusCode.RESP_HEADER_VALUE_INVALID),
        (DaemonStartError, StatusCode.LISTEN_SOCKET_BIND_FAILED),
        (UpgradedTimeout, StatusCode.UPGRADED_NET_TIMEOUT),
        (UpgradedClosed, StatusCode.UPGRADED_NET_CONN_CLOSED),
        (UpgradedBroken, StatusCode.UPGRADED_NET_CONN_BROKEN),
        (UpgradedTLSError, StatusCode.UPGRADED_TLS_ERROR),
        (UpgradedHandleInvalid, StatusCode.UPGRADED_HANDLE_INVALID),
        (AuthError, StatusCode.REQ_AUTH_DATA_BROKEN),
    ],
)
def test_error_default_codes(cls: type[MHDError], code: StatusCode) -> None:
    exc = cls("boom")
    assert exc.code is code
    assert str(exc) == "boom"
    assert isinstance(exc, MHDError)


def test_error_explicit_code_and_hierarchy() -> None:
    exc = ResponseHeaderError("bad", StatusCode.RESP_HEADER_NOT_ALLOWED)
    assert exc.code is StatusCode.RESP_HEADER_NOT_ALLOWED
    assert isinstance(exc, UsageError)
    assert issubclass(UpgradedTimeout, UpgradedError)
    assert UsageError("x", StatusCode.TOO_LATE).code is StatusCode.TOO_LATE
    assert "TOO_LATE" in repr(UsageError("x", StatusCode.TOO_LATE))


def test_error_pickle() -> None:
    exc = UsageError("late", StatusCode.TOO_LATE)
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is UsageError
    assert back.code is StatusCode.TOO_LATE
    assert str(back) == "late"


def test_upgraded_from_code() -> None:
    exc = UpgradedError.from_code(StatusCode.UPGRADED_NET_TIMEOUT)
    assert type(exc) is UpgradedTimeout
    assert exc.code is StatusCode.UPGRADED_NET_TIMEOUT
    assert type(UpgradedError.from_code(StatusCode.UPGRADED_WAITING_NOT_SUPPORTED, "w")) is (
        UpgradedError
    )
