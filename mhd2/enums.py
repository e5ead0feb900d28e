"""Enumerations of mhd2, mirroring those of GNU libmicrohttpd 2.x.

Every enum here corresponds to an enum of MHD2's public header
(``microhttpd2.h``); member names are the MHD2 names without their prefix
(``MHD_HTTP_STATUS_NOT_FOUND`` → :attr:`HTTPStatus.NOT_FOUND`,
``MHD_SC_TOO_LATE`` → :attr:`StatusCode.TOO_LATE`, ``MHD_PSL_STRICT`` →
:attr:`StrictLevel.STRICT` …) and, where MHD2 assigns numbers, the values are
MHD2's numbers.

This module has no dependencies beyond the standard library.
"""

from __future__ import annotations

import enum

# Declared boilerplate (issue 21): this module is tables -- enum members, one
# ``NAME = value`` line each, and the ``number: "text"`` dicts beside them
# (reason phrases, header names).  ``duplicates`` pairs their runs by shape;
# with the member and table lines left out it finds nothing here.

__all__ = [
    "HTTPStatus",
    "reason_phrase",
    "HTTPMethod",
    "HTTPVersion",
    "ValueKind",
    "PredefinedHeader",
    "StatusCode",
    "RequestEndedCode",
    "StrictLevel",
    "AddressFamily",
    "ConnectionEvent",
    "PostEncoding",
    "PostParseResult",
    "DigestAuthResult",
    "DigestAuthAlgo",
]


# --------------------------------------------------------------------------
# HTTP status codes


# Reason phrases: the IANA "HTTP Status Code" registry (RFC 9110 wording),
# plus the few unregistered codes that MHD2 names as well.
_PHRASES: dict[int, str] = {
    100: "Continue",
    101: "Switching Protocols",
    102: "Processing",
    103: "Early Hints",
    200: "OK",
    201: "Created",
    202: "Accepted",
    203: "Non-Authoritative Information",
    204: "No Content",
    205: "Reset Content",
    206: "Partial Content",
    207: "Multi-Status",
    208: "Already Reported",
    226: "IM Used",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    304: "Not Modified",
    305: "Use Proxy",
    306: "Switch Proxy",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    409: "Conflict",
    410: "Gone",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Content Too Large",
    414: "URI Too Long",
    415: "Unsupported Media Type",
    416: "Range Not Satisfiable",
    417: "Expectation Failed",
    421: "Misdirected Request",
    422: "Unprocessable Content",
    423: "Locked",
    424: "Failed Dependency",
    425: "Too Early",
    426: "Upgrade Required",
    428: "Precondition Required",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    449: "Reply With",
    450: "Blocked by Windows Parental Controls",
    451: "Unavailable For Legal Reasons",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
    506: "Variant Also Negotiates",
    507: "Insufficient Storage",
    508: "Loop Detected",
    509: "Bandwidth Limit Exceeded",
    510: "Not Extended",
    511: "Network Authentication Required",
}


class HTTPStatus(enum.IntEnum):
    """HTTP response status codes (MHD2's ``enum MHD_HTTP_StatusCode``).

    The full IANA registry (RFC 9110 names: 413 is ``CONTENT_TOO_LARGE``,
    422 ``UNPROCESSABLE_CONTENT``) plus the three non-standard codes MHD2
    also names (449, 450, 509).  Any ``int`` can be used as a response
    status; :func:`reason_phrase` gives the phrase of any code.
    """

    CONTINUE = 100
    SWITCHING_PROTOCOLS = 101
    PROCESSING = 102
    EARLY_HINTS = 103

    OK = 200
    CREATED = 201
    ACCEPTED = 202
    NON_AUTHORITATIVE_INFORMATION = 203
    NO_CONTENT = 204
    RESET_CONTENT = 205
    PARTIAL_CONTENT = 206
    MULTI_STATUS = 207
    ALREADY_REPORTED = 208
    IM_USED = 226

    MULTIPLE_CHOICES = 300
    MOVED_PERMANENTLY = 301
    FOUND = 302
    SEE_OTHER = 303
    NOT_MODIFIED = 304
    USE_PROXY = 305
    SWITCH_PROXY = 306
    TEMPORARY_REDIRECT = 307
    PERMANENT_REDIRECT = 308

    BAD_REQUEST = 400
    UNAUTHORIZED = 401
    PAYMENT_REQUIRED = 402
    FORBIDDEN = 403
    NOT_FOUND = 404
    METHOD_NOT_ALLOWED = 405
    NOT_ACCEPTABLE = 406
    PROXY_AUTHENTICATION_REQUIRED = 407
    REQUEST_TIMEOUT = 408
    CONFLICT = 409
    GONE = 410
    LENGTH_REQUIRED = 411
    PRECONDITION_FAILED = 412
    CONTENT_TOO_LARGE = 413
    URI_TOO_LONG = 414
    UNSUPPORTED_MEDIA_TYPE = 415
    RANGE_NOT_SATISFIABLE = 416
    EXPECTATION_FAILED = 417
    MISDIRECTED_REQUEST = 421
    UNPROCESSABLE_CONTENT = 422
    LOCKED = 423
    FAILED_DEPENDENCY = 424
    TOO_EARLY = 425
    UPGRADE_REQUIRED = 426
    PRECONDITION_REQUIRED = 428
    TOO_MANY_REQUESTS = 429
    REQUEST_HEADER_FIELDS_TOO_LARGE = 431
    RETRY_WITH = 449
    BLOCKED_BY_WINDOWS_PARENTAL_CONTROLS = 450
    UNAVAILABLE_FOR_LEGAL_REASONS = 451

    INTERNAL_SERVER_ERROR = 500
    NOT_IMPLEMENTED = 501
    BAD_GATEWAY = 502
    SERVICE_UNAVAILABLE = 503
    GATEWAY_TIMEOUT = 504
    HTTP_VERSION_NOT_SUPPORTED = 505
    VARIANT_ALSO_NEGOTIATES = 506
    INSUFFICIENT_STORAGE = 507
    LOOP_DETECTED = 508
    BANDWIDTH_LIMIT_EXCEEDED = 509
    NOT_EXTENDED = 510
    NETWORK_AUTHENTICATION_REQUIRED = 511

    @property
    def phrase(self) -> str:
        """The reason phrase, e.g. ``"Not Found"``."""
        return _PHRASES[self._value_]

    @property
    def is_informational(self) -> bool:
        """Whether this is a 1xx code."""
        return 100 <= self._value_ < 200

    @property
    def allows_body(self) -> bool:
        """Whether a response with this code may carry a body (not 1xx/204/304)."""
        v = self._value_
        return not (v < 200 or v == 204 or v == 304)


def reason_phrase(code: int) -> str:
    """Return the reason phrase of the HTTP status *code*.

    ``"Unknown"`` is returned for codes that are not registered.
    """
    return _PHRASES.get(code, "Unknown")


# --------------------------------------------------------------------------
# Methods and versions


class HTTPMethod(enum.Enum):
    """HTTP request methods (MHD2's ``enum MHD_HTTP_Method``).

    The value is the method token as it appears on the request line.
    Methods without a member of their own map to :attr:`OTHER`; the original
    string is then available from the request.
    """

    GET = "GET"
    HEAD = "HEAD"
    POST = "POST"
    PUT = "PUT"
    DELETE = "DELETE"
    CONNECT = "CONNECT"
    OPTIONS = "OPTIONS"
    TRACE = "TRACE"
    PATCH = "PATCH"
    ASTERISK = "*"
    OTHER = "OTHER"

    @classmethod
    def from_str(cls, method: str) -> HTTPMethod:
        """Map a method token to a member (exact, case-sensitive); unknown → OTHER."""
        return _METHODS.get(method, HTTPMethod.OTHER)

    @property
    def is_safe(self) -> bool:
        """Whether the method is "safe" in the sense of RFC 9110, section 9.2.1."""
        return self in _SAFE_METHODS


_METHODS: dict[str, HTTPMethod] = {m.value: m for m in HTTPMethod if m is not HTTPMethod.OTHER}
_SAFE_METHODS = frozenset({HTTPMethod.GET, HTTPMethod.HEAD, HTTPMethod.OPTIONS, HTTPMethod.TRACE})


class HTTPVersion(enum.Enum):
    """HTTP protocol versions (MHD2's ``enum MHD_HTTP_ProtocolVersion``).

    The value is the version string as used on the wire (and in logs).
    """

    INVALID = "INVALID"
    HTTP_1_0 = "HTTP/1.0"
    HTTP_1_1 = "HTTP/1.1"
    HTTP_2 = "HTTP/2"
    HTTP_3 = "HTTP/3"

    @classmethod
    def from_str(cls, version: str) -> HTTPVersion:
        """Map a version string to a member; unknown → :attr:`INVALID`.

        Accepts ``"HTTP/1.1"`` as well as the bare ``"1.1"`` form that h11
        reports; matching is exact.
        """
        return _VERSIONS.get(version, HTTPVersion.INVALID)


_VERSIONS: dict[str, HTTPVersion] = {
    "HTTP/1.0": HTTPVersion.HTTP_1_0,
    "HTTP/1.1": HTTPVersion.HTTP_1_1,
    "HTTP/2": HTTPVersion.HTTP_2,
    "HTTP/2.0": HTTPVersion.HTTP_2,
    "HTTP/3": HTTPVersion.HTTP_3,
    "1.0": HTTPVersion.HTTP_1_0,
    "1.1": HTTPVersion.HTTP_1_1,
    "2": HTTPVersion.HTTP_2,
    "2.0": HTTPVersion.HTTP_2,
    "3": HTTPVersion.HTTP_3,
}


# --------------------------------------------------------------------------
# Request values and headers


class ValueKind(enum.IntFlag):
    """Source of a name/value pair of a request (MHD2's ``enum MHD_ValueKind``).

    A flag: kinds can be combined (``ValueKind.HEADER | ValueKind.FOOTER``)
    to look in several places at once.
    """

    HEADER = 1 << 0
    COOKIE = 1 << 1
    GET_ARGUMENT = 1 << 2
    POSTDATA = 1 << 3
    FOOTER = 1 << 4
    HEADER_FOOTER = HEADER | FOOTER
    GET_POST = POSTDATA | GET_ARGUMENT


# Canonical names of the HPACK static table entries (RFC 7541, appendix A).
_PREDEF_NAMES: dict[int, str] = {
    15: "Accept-Charset",
    16: "Accept-Encoding",
    17: "Accept-Language",
    18: "Accept-Ranges",
    19: "Accept",
    20: "Access-Control-Allow-Origin",
    21: "Age",
    22: "Allow",
    23: "Authorization",
    24: "Cache-Control",
    25: "Content-Disposition",
    26: "Content-Encoding",
    27: "Content-Language",
    28: "Content-Length",
    29: "Content-Location",
    30: "Content-Range",
    31: "Content-Type",
    32: "Cookie",
    33: "Date",
    34: "ETag",
    35: "Expect",
    36: "Expires",
    37: "From",
    38: "Host",
    39: "If-Match",
    40: "If-Modified-Since",
    41: "If-None-Match",
    42: "If-Range",
    43: "If-Unmodified-Since",
    44: "Last-Modified",
    45: "Link",
    46: "Location",
    47: "Max-Forwards",
    48: "Proxy-Authenticate",
    49: "Proxy-Authorization",
    50: "Range",
    51: "Referer",
    52: "Refresh",
    53: "Retry-After",
    54: "Server",
    55: "Set-Cookie",
    56: "Strict-Transport-Security",
    57: "Transfer-Encoding",
    58: "User-Agent",
    59: "Vary",
    60: "Via",
    61: "WWW-Authenticate",
}


class PredefinedHeader(enum.IntEnum):
    """Predefined (standard) header names (MHD2's ``enum MHD_PredefinedHeader``).

    Numbered as the HPACK static table (RFC 7541, appendix A); the pseudo
    headers (``:authority`` …, indexes 1–14) are omitted.
    """

    ACCEPT_CHARSET = 15
    ACCEPT_ENCODING = 16
    ACCEPT_LANGUAGE = 17
    ACCEPT_RANGES = 18
    ACCEPT = 19
    ACCESS_CONTROL_ALLOW_ORIGIN = 20
    AGE = 21
    ALLOW = 22
    AUTHORIZATION = 23
    CACHE_CONTROL = 24
    CONTENT_DISPOSITION = 25
    CONTENT_ENCODING = 26
    CONTENT_LANGUAGE = 27
    CONTENT_LENGTH = 28
    CONTENT_LOCATION = 29
    CONTENT_RANGE = 30
    CONTENT_TYPE = 31
    COOKIE = 32
    DATE = 33
    ETAG = 34
    EXPECT = 35
    EXPIRES = 36
    FROM = 37
    HOST = 38
    IF_MATCH = 39
    IF_MODIFIED_SINCE = 40
    IF_NONE_MATCH = 41
    IF_RANGE = 42
    IF_UNMODIFIED_SINCE = 43
    LAST_MODIFIED = 44
    LINK = 45
    LOCATION = 46
    MAX_FORWARDS = 47
    PROXY_AUTHENTICATE = 48
    PROXY_AUTHORIZATION = 49
    RANGE = 50
    REFERER = 51
    REFRESH = 52
    RETRY_AFTER = 53
    SERVER = 54
    SET_COOKIE = 55
    STRICT_TRANSPORT_SECURITY = 56
    TRANSFER_ENCODING = 57
    USER_AGENT = 58
    VARY = 59
    VIA = 60
    WWW_AUTHENTICATE = 61

    @property
    def header_name(self) -> str:
        """The canonical header name, e.g. ``"Accept-Language"``."""
        return _PREDEF_NAMES[self._value_]


# --------------------------------------------------------------------------
# MHD status codes


class StatusCode(enum.IntEnum):
    """MHD2's status codes (``enum MHD_StatusCode``), also used for logging.

    ``OK`` is 0.  Ranges: 1xxxx informational, 2xxxx success of some kind,
    3xxxx transient failures, 4xxxx caused by the client (or the network),
    5xxxx internal / system failures (including daemon start failures),
    6xxxx the application used the API wrongly.

    Values are MHD2's numbers, except that every member here has a distinct
    value: where MHD2 reuses a number (or has a six-digit typo) the later
    code was moved to the nearest free number, and codes mhd2 needs that MHD2
    lacks were given free numbers in the right range (see the comments).
    """

    # 0: success
    OK = 0

    # 1xxxx: informational
    DAEMON_STARTED = 10000
    CONNECTION_ACCEPTED = 10001
    THREAD_TERMINATING = 10002
    STATE_MACHINE_STATUS_REPORT = 10003
    ACCEPT_FAILED_EAGAIN = 10004
    ACCEPTED_UNKNOWN_TYPE = 10040
    ACCEPTED_SOCKADDR_TOO_LARGE = 10041

    # 2xxxx: success of some kind
    CONNECTION_CLOSED = 20000
    APPLICATION_DATA_GENERATION_FINISHED = 20001
    AUTH_ABSENT = 20060

    # 3xxxx: transient failures
    LIMIT_CONNECTIONS_REACHED = 30000
    DAEMON_ALREADY_SHUTDOWN = 30020
    CONNECTION_THREAD_SYS_LIMITS_REACHED = 30030
    CONNECTION_THREAD_LAUNCH_FAILURE = 30031
    DAEMON_ALREADY_QUIESCED = 30040
    ACCEPT_FAST_DISCONNECT = 30050  # MHD2: 30040 (duplicate)
    ACCEPT_SYSTEM_LIMIT_REACHED = 30060
    ACCEPT_POLICY_REJECTED = 30070
    DAEMON_MEM_ALLOC_FAILURE = 30081
    CONNECTION_MEM_ALLOC_FAILURE = 30082
    POOL_MEM_ALLOC_FAILURE = 30083
    UPGRADE_FORWARD_INCOMPLETE = 30100
    CONNECTION_POOL_NO_MEM_REQ = 30130
    CONNECTION_POOL_NO_MEM_GET_PARAM = 30131
    CONNECTION_POOL_NO_MEM_COOKIE = 30132
    CONNECTION_POOL_NO_MEM_AUTH_DATA = 30133
    SYS_CLOCK_JUMP_BACK_LARGE = 30140
    SYS_CLOCK_JUMP_BACK_CORRECTED = 30141
    UPGRADED_NET_TIMEOUT = 30161

    # 4xxxx: caused by the client or the network
    CONNECTION_PARSE_FAIL_CLOSED = 40000
    CONNECTION_RESET_CLOSED = 40001
    CONNECTION_RECV_FAIL_CLOSED = 40002
    CONNECTION_SEND_FAIL_CLOSED = 40003
    CLIENT_HEADER_TOO_BIG = 40020
    HOST_HEADER_MISSING = 40060
    HOST_HEADER_SEVERAL = 40061
    CONTENT_LENGTH_MALFORMED = 40062
    CONTENT_LENGTH_SEVERAL_SAME = 40063
    CONTENT_LENGTH_SEVERAL_DIFFERENT = 40064
    CONTENT_LENGTH_AND_TR_ENC = 40065
    CONTENT_LENGTH_TOO_LARGE = 40066
    TRANSFER_ENCODING_UNSUPPORTED = 40067
    EXPECT_HEADER_VALUE_UNSUPPORTED = 40068
    CHUNKED_ENCODING_MALFORMED = 40080
    REQ_FIRST_HEADER_LINE_SPACE_PREFIXED = 40100
    REQ_TARGET_HAS_WHITESPACE = 40101
    REQ_HEADER_CR_REPLACED = 40120
    REQ_HEADER_LINE_NO_COLON = 40121
    REQ_FOOTER_CR_REPLACED = 40140
    REQ_FOOTER_LINE_NO_COLON = 40141
    REQ_MALFORMED = 40155
    REQ_COOKIE_PARSED_NOT_COMPLIANT = 40160
    REQ_COOKIE_PARSED_PARTIALLY = 40161
    REQ_COOKIE_IGNORED_NOT_COMPLIANT = 40162
    REQ_COOKIE_INVALID = 40163
    REQ_POST_PARSE_OK_BAD_TERMINATION = 40202
    REQ_POST_PARSE_PARTIAL_INVALID_POST_FORMAT = 40203
    REQ_POST_PARSE_FAILED_NO_CNTN_TYPE = 40280
    REQ_POST_PARSE_FAILED_UNKNOWN_CNTN_TYPE = 40281
    REQ_POST_PARSE_FAILED_HEADER_NO_BOUNDARY = 40282
    REQ_POST_PARSE_FAILED_HEADER_MISFORMED = 40283
    REQ_POST_PARSE_FAILED_INVALID_POST_FORMAT = 40290
    REQ_AUTH_DATA_BROKEN = 40320
    REQ_PROCCESSING_ERR_REPLY = 41000

    # 5xxxx: internal / system failures, daemon start failures
    TLS_DISABLED = 50000
    TLS_BACKEND_OPERATION_UNSUPPORTED = 50004
    ITC_INITIALIZATION_FAILED = 50005
    ITC_FD_OUTSIDE_OF_SET_RANGE = 50006
    DIGEST_AUTH_NC_LENGTH_TOO_BIG = 50010
    DIGEST_AUTH_NC_ALLOCATION_FAILURE = 50011
    DIGEST_AUTH_NOT_SUPPORTED_BY_BUILD = 50012
    IPV6_NOT_SUPPORTED_BY_BUILD = 50020
    AF_NOT_SUPPORTED_BY_BUILD = 50021
    AF_NOT_AVAILABLE = 50022  # MHD2: 500022 (typo)
    FAILED_TO_OPEN_LISTEN_SOCKET = 50040
    LISTEN_PORT_REUSE_ENABLE_FAILED = 50041
    LISTEN_PORT_REUSE_ENABLE_NOT_SUPPORTED = 50042
    LISTEN_ADDRESS_REUSE_ENABLE_FAILED = 50043
    LISTEN_ADDRESS_REUSE_ENABLE_NOT_SUPPORTED = 50044
    LISTEN_ADDRESS_EXCLUSIVE_ENABLE_FAILED = 50045
    LISTEN_DUAL_STACK_NOT_SUITABLE = 50046
    LISTEN_DUAL_STACK_CONFIGURATION_REJECTED = 50047
    LISTEN_DUAL_STACK_CONFIGURATION_UNKNOWN = 50048
    LISTEN_DUAL_STACK_CONFIGURATION_NOT_SUPPORTED = 50049
    LISTEN_FAST_OPEN_FAILURE = 50050
    FAST_OPEN_NOT_SUPPORTED = 50051
    LISTEN_SOCKET_NONBLOCKING_FAILURE = 50052
    LISTEN_SOCKET_NOINHERIT_FAILED = 50053
    LISTEN_FD_OUTSIDE_OF_SET_RANGE = 50054
    LISTEN_SOCKET_BIND_FAILED = 50055
    LISTEN_FAILURE = 50056
    LISTEN_PORT_DETECT_FAILURE = 50057
    EPOLL_CTL_CREATE_FAILED = 50060
    EPOLL_CTL_CONFIGURE_NOINHERIT_FAILED = 50061
    EPOLL_CTL_OUTSIDE_OF_SET_RANGE = 50062
    FD_SET_MEMORY_ALLOCATE_FAILURE = 50063
    EPOLL_EVENTS_MEMORY_ALLOCATE_FAILURE = 50064
    EPOLL_ADD_DAEMON_FDS_FAILURE = 50065
    EXT_EVENT_REG_DAEMON_FDS_FAILURE = 50066
    POLL_FDS_MEMORY_ALLOCATE_FAILURE = 50067  # MHD2: 50063 (duplicate)
    SELECT_SYSCALL_NOT_AVAILABLE = 50070
    POLL_SYSCALL_NOT_AVAILABLE = 50071
    EPOLL_SYSCALL_NOT_AVAILABLE = 50072
    LISTEN_PORT_INTROSPECTION_FAILURE = 50080
    LISTEN_PORT_INTROSPECTION_UNKNOWN_AF = 50081
    MUTEX_INIT_FAILURE = 50085
    THREAD_POOL_MEM_ALLOC_FAILURE = 50090
    THREAD_POOL_CREATE_MUTEX_FAILURE = 50093
    THREAD_MAIN_LAUNCH_FAILURE = 50095
    THREAD_LISTENING_LAUNCH_FAILURE = 50096
    THREAD_WORKER_LAUNCH_FAILURE = 50097
    UPGRADE_ON_DAEMON_WITH_UPGRADE_DISALLOWED = 50100
    ITC_USE_FAILED = 50101  # MHD2: 500101 (typo)
    ITC_CHECK_FAILED = 50102  # MHD2: 500102 (typo)
    ITC_STATUS_ERROR = 50104  # MHD2: 500104 (typo)
    EPOLL_CTL_ADD_FAILED = 50110  # MHD2: 500110 (typo)
    SOCKET_OUTSIDE_OF_SET_RANGE = 50111  # MHD2: 500111 (typo)
    SYS_FD_SETSIZE_TOO_STRICT = 50112
    CONFIGURATION_MISMATCH_FOR_GET_TIMEOUT = 50113
    CONFIGURATION_MISMATCH_FOR_RUN_SELECT = 50114
    CONFIGURATION_MISMATCH_FOR_RUN_EXTERNAL = 50115
    UNEXPECTED_SELECT_ERROR = 50116
    EPOLL_CTL_REMOVE_FAILED = 50117
    POLL_NOT_SUPPORTED = 50120
    POLL_SOFT_ERROR = 50121
    POLL_HARD_ERROR = 50122
    SELECT_SOFT_ERROR = 50123
    SELECT_HARD_ERROR = 50124
    LISTEN_STATUS_ERROR = 50129
    EPOLL_HARD_ERROR = 50130
    ACCEPT_CONFIGURE_NOSIGPIPE_FAILED = 50140
    ACCEPT_CONFIGURE_NOINHERIT_FAILED = 50141
    ACCEPT_CONFIGURE_NONBLOCKING_FAILED = 50142
    ACCEPT_OUTSIDE_OF_SET_RANGE = 50143
    ACCEPT_FAILED_UNEXPECTEDLY = 50144
    ACCEPT_SYSTEM_LIMIT_REACHED_INSTANTLY = 50145
    NONBLOCKING_REQUIRED = 50146
    UNEXPECTED_EPOLL_WAIT_ERROR = 50150
    EPOLL_FD_INVALID = 50151
    UNEXPECTED_SOCKET_ERROR = 50152
    IP_COUNTER_FAILURE = 50160
    SHUTDOWN_WITH_OPEN_UPGRADED_CONNECTION = 50180
    STATEMACHINE_FAILURE_CONNECTION_CLOSED = 50200
    COOKIE_POOL_ALLOCATION_FAILURE = 50220
    REPLY_FAILED_HEADER_GENERATION = 50230
    REPLY_POOL_ALLOCATION_FAILURE = 50231
    REPLY_FILE_READ_ERROR = 50232
    REPLY_NONCE_ERROR = 50233
    ERR_RESPONSE_ALLOCATION_FAILURE = 50250
    REQ_POST_PARSE_FAILED_NO_POOL_MEM = 50260
    REQ_POST_PARSE_FAILED_NO_LARGE_BUF_MEM = 50261
    REQ_POST_PARSE_FAILED_HEADER_NOT_MPART = 50284
    FEATURE_DISABLED = 50300
    FEATURE_NOT_AVAILABLE = 50320
    DAEMON_THREAD_STOP_ERROR = 50350
    DAEMON_THREAD_STOP_UNEXPECTED = 50351
    RESPONSE_MUTEX_LOCK_FAILED = 50500
    RESPONSE_MUTEX_INIT_FAILED = 50501
    RESPONSE_CANNOT_CLEAR_REUSE = 50520
    RESPONSE_HEADER_MEM_ALLOC_FAILED = 50540
    SOCKET_TCP_NODELAY_FAILED = 50600
    SOCKET_TCP_CORK_NOPUSH_FAILED = 50601
    SOCKET_FLUSH_LAST_PART_FAILED = 50620
    SOCKET_ZERO_SEND_FAILED = 50621
    UPGRADED_NET_CONN_CLOSED = 50800
    UPGRADED_NET_CONN_BROKEN = 50801
    UPGRADED_TLS_ERROR = 50802  # MHD2: 50801 (duplicate)
    UPGRADED_NET_HARD_ERROR = 50840
    UPGRADED_WAITING_NOT_SUPPORTED = 50841  # MHD2: 50840 (duplicate)
    LIB_INIT_GLOBAL_FAILED = 51000
    TLS_DAEMON_INIT_FAILED = 51200
    TLS_CONNECTION_INIT_FAILED = 51201
    TLS_LIB_CONF_WARNING = 51202
    TLS_CONNECTION_HANDSHAKED_FAILED = 51220
    HASH_FAILED = 51260
    INTERNAL_ERROR = 59900

    # 6xxxx: the application used the API wrongly
    TOO_EARLY = 60000
    TOO_LATE = 60001
    API_MISUSE = 60005  # mhd2: generic usage error (not in MHD2)
    SYSCALL_WORK_MODE_COMBINATION_INVALID = 60010
    SYSCALL_QUIESCE_REQUIRES_ITC = 60011
    EXTERNAL_EVENT_ONLY = 60012
    APPLICATION_DATA_GENERATION_FAILURE_CLOSED = 60015
    APPLICATION_CALLBACK_ABORT_ACTION = 60016
    APPLICATION_HUNG_CONNECTION = 60017
    APPLICATION_HUNG_CONNECTION_CLOSED = 60018
    OPTIONS_CONFLICT = 60020
    OPTION_UNKNOWN = 60021
    CONFIGURATION_UNEXPECTED_WM = 60022
    CONFIGURATION_UNEXPECTED_SPS = 60023
    CONFIGURATION_WRONG_SA_SIZE = 60024
    MAX_FD_NUMBER_LIMIT_TOO_STRICT = 60025
    CONFIGURATION_CONN_LIMIT_TOO_SMALL = 60026
    CONFIGURATION_WRONG_OPTION_VALUE = 60027  # mhd2: bad option value (not in MHD2)
    TLS_BACKEND_UNSUPPORTED = 60030
    TLS_BACKEND_UNINITIALIZED = 60031
    TLS_BACKEND_UNAVAILABLE = 60032
    TLS_CONF_BAD_CERT = 60033
    TLS_BACKEND_DAEMON_INCOMPATIBLE_SETTINGS = 60034
    RESP_HEADER_NAME_INVALID = 60050
    RESP_HEADER_VALUE_INVALID = 60051
    RESP_HEADERS_CONFLICT = 60052
    RESP_HEADER_NOT_ALLOWED = 60053  # mhd2: forbidden header/value (not in MHD2)
    RESP_POINTER_NULL = 60060
    RESP_HTTP_CODE_NOT_SUITABLE = 60061
    ACTION_INVALID = 60080
    UPLOAD_ACTION_INVALID = 60081
    DCC_ACTION_INVALID = 60082
    ACTION_ALREADY_CREATED = 60083  # mhd2: second action for a request (not in MHD2)
    REPLY_NOT_EMPTY_RESPONSE = 60101
    REPLY_CONTENT_LENGTH_NOT_ALLOWED = 60102
    REPLY_HEADERS_TOO_LARGE = 60103
    REPLY_FILE_OFFSET_TOO_LARGE = 60104
    REPLY_FILE_TOO_SHORT = 60105
    NEW_CONN_FD_OUTSIDE_OF_SET_RANGE = 60140
    DAEMON_DESTROYED_WITH_UNCLOSED_UPGRADED = 60160
    UPGRADED_HANDLE_INVALID = 60161
    OUT_BUFF_TOO_SMALL = 60180
    INFO_GET_TYPE_UNKNOWN = 60200
    INFO_GET_BUFF_TOO_SMALL = 60201
    INFO_GET_TYPE_NOT_SUPP_BY_BUILD = 60202
    INFO_GET_TYPE_NOT_APPLICABLE = 60203
    INFO_GET_TYPE_UNOBTAINABLE = 60204
    AUTH_DIGEST_ALGO_NOT_SUPPORTED = 60240
    AUTH_DIGEST_QOP_NOT_SUPPORTED = 60241
    AUTH_DIGEST_UNSUPPORTED = 60242

    @property
    def is_usage_error(self) -> bool:
        """Whether the code reports wrong use of the API (the 6xxxx range)."""
        return 60000 <= self._value_ < 70000

    @property
    def is_client_error(self) -> bool:
        """Whether the code reports a fault of the client or the network (4xxxx)."""
        return 40000 <= self._value_ < 50000

    @property
    def is_server_error(self) -> bool:
        """Whether the code reports an internal or system failure (5xxxx)."""
        return 50000 <= self._value_ < 60000


# --------------------------------------------------------------------------
# Requests and connections


class RequestEndedCode(enum.IntEnum):
    """Why a request ended (MHD2's ``enum MHD_RequestEndedCode``)."""

    COMPLETED_OK = 0
    COMPLETED_OK_UPGRADE = 1
    TIMEOUT_REACHED = 10
    CONNECTION_ERROR = 20
    CLIENT_ABORT = 30
    HTTP_PROTOCOL_ERROR = 31
    BY_APP_ABORT = 40
    BY_APP_ERROR = 41
    NO_RESOURCES = 50
    FILE_ERROR = 51
    NONCE_ERROR = 52
    DAEMON_SHUTDOWN = 60


class StrictLevel(enum.IntEnum):
    """How strictly the HTTP protocol is enforced on clients.

    MHD2's ``enum MHD_ProtocolStrictLevel``: negative levels are more
    permissive, positive ones stricter; :attr:`DEFAULT` (0) is the
    production default.
    """

    EXTRA_PERMISSIVE = -3
    VERY_PERMISSIVE = -2
    PERMISSIVE = -1
    DEFAULT = 0
    STRICT = 1
    VERY_STRICT = 2
    EXTRA_STRICT = 3


class AddressFamily(enum.Enum):
    """Address family the daemon listens on (MHD2's ``enum MHD_AddressFamily``)."""

    NONE = 0
    """Do not listen (unless a listen socket is given by other means)."""
    AUTO = 1
    """Pick the best available family automatically."""
    INET4 = 2
    """IPv4 only."""
    INET6 = 3
    """IPv6 only."""
    DUAL = 4
    """IPv4 and IPv6 on the same socket."""
    DUAL_V4_OPTIONAL = 5
    """Dual stack, falling back to IPv6 only if dual stack is impossible."""
    DUAL_V6_OPTIONAL = 6
    """Dual stack, falling back to IPv4 only if dual stack is impossible."""


class ConnectionEvent(enum.Enum):
    """Connection notification codes (MHD2's ``enum MHD_ConnectionNotificationCode``)."""

    STARTED = 0
    CLOSED = 1


# --------------------------------------------------------------------------
# POST parsing


_POST_MIME: dict[int, str] = {
    0: "",
    1: "application/x-www-form-urlencoded",
    2: "multipart/form-data",
    3: "text/plain",
}


class PostEncoding(enum.Enum):
    """Encodings of HTML forms sent by POST (MHD2's ``enum MHD_HTTP_PostEncoding``).

    :attr:`OTHER` means "unknown" (and, given to the POST parser, "detect
    from the request's ``Content-Type``").
    """

    OTHER = 0
    FORM_URLENCODED = 1
    MULTIPART_FORMDATA = 2
    TEXT_PLAIN = 3

    @property
    def mime_type(self) -> str:
        """The media type of the encoding (``""`` for :attr:`OTHER`)."""
        return _POST_MIME[self.value]


class PostParseResult(enum.IntEnum):
    """Result of parsing POST data (MHD2's ``enum MHD_PostParseResult``)."""

    OK = 0
    """Parsed successfully and completely."""
    REQUEST_EMPTY = 1
    """The request has no body (or a zero-length one)."""
    OK_BAD_TERMINATION = 2
    """Parsed, but the termination is missing or wrong; the last field may be wrong."""
    PARTIAL_INVALID_POST_FORMAT = 3
    """Parsing stopped at malformed data; some fields were parsed."""
    FAILED_NO_POOL_MEM = 60
    """Not enough memory to parse; some fields may be parsed."""
    FAILED_NO_LARGE_BUF_MEM = 61
    """The shared "large" buffer is exhausted; some fields may be parsed."""
    FAILED_UNKNOWN_CNTN_TYPE = 80
    """The ``Content-Type`` is not a known form encoding."""
    FAILED_NO_CNTN_TYPE = 81
    """The request has no ``Content-Type``."""
    FAILED_HEADER_NO_BOUNDARY = 82
    """``multipart/form-data`` without a ``boundary`` parameter."""
    FAILED_HEADER_MISFORMED = 83
    """The ``multipart/form-data`` ``Content-Type`` is malformed."""
    FAILED_HEADER_NOT_MPART = 84
    """Multipart was requested, but the request is not ``multipart/form-data``."""
    FAILED_INVALID_POST_FORMAT = 90
    """The body is not in the form encoding at all."""

    @property
    def is_ok(self) -> bool:
        """Whether all data (perhaps none) was parsed: ``OK`` or ``REQUEST_EMPTY``."""
        return self._value_ <= 1


# --------------------------------------------------------------------------
# Digest authentication


class DigestAuthResult(enum.IntEnum):
    """Result of checking Digest authentication (MHD2's ``enum MHD_DigestAuthResult``).

    :attr:`OK` is the only success value; all errors are zero or negative.
    """

    OK = 1
    ERROR = 0
    """General error, such as out of memory."""
    HEADER_MISSING = -1
    """No ``Authorization: Digest`` header."""
    WRONG_HEADER = -1
    """Alias of :attr:`HEADER_MISSING` (MHD 1.x name)."""
    WRONG_USERNAME = -2
    WRONG_REALM = -3
    WRONG_URI = -4
    WRONG_QOP = -5
    WRONG_ALGO = -6
    HEADER_BROKEN = -9
    """The header is there but malformed (missing or broken parameters)."""
    TOO_LARGE = -15
    """A parameter value is too large (over 64 KiB)."""
    NONCE_STALE = -17
    """The nonce is too old; the client should retry with a fresh one."""
    NONCE_OTHER_COND = -18
    """The nonce was made for other conditions (URI, client IP …)."""
    NONCE_WRONG = -33
    """The nonce was not made by this daemon; may be an attack."""
    RESPONSE_WRONG = -34
    """The ``response`` is wrong: wrong password, or an attack."""


_ALGO_TOKENS: dict[int, str] = {1: "MD5", 2: "SHA-256", 4: "SHA-512-256"}


class DigestAuthAlgo(enum.IntFlag):
    """Digest authentication algorithms, combinable.

    Bits as MHD2's ``enum MHD_DigestBaseAlgo``; a combination stands for
    MHD2's ``enum MHD_DigestAuthMultiAlgo`` (non-session variants; the
    session variants are not supported by MHD2 for authentication).
    """

    MD5 = 1 << 0
    SHA256 = 1 << 1
    SHA512_256 = 1 << 2
    SHA_ANY = SHA256 | SHA512_256
    ANY = MD5 | SHA256 | SHA512_256

    @property
    def token(self) -> str:
        """The ``algorithm=`` token of a single algorithm, e.g. ``"SHA-256"``.

        Raises :class:`ValueError` for combinations.
        """
        try:
            return _ALGO_TOKENS[int(self)]
        except KeyError:
            raise ValueError(f"{self!r} is not a single algorithm") from None
