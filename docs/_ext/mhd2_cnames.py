"""Sphinx extension: the libmicrohttpd (MHD2) C name → mhd2 name tables.

``.. mhd2-cnames:: SECTION`` inserts one table, built when the documentation
is built:

* ``enums`` — every member of every enum in :mod:`mhd2.enums`, with its C
  name (the enum's C prefix + the member name) and value, read from the
  code itself;
* ``actions``, ``responses``, ``response-options``, ``daemon``,
  ``daemon-options``, ``request``, ``auth`` — the hand-kept maps below.
  Every mhd2 name in them is looked up in the code (a keyword in the
  signature of the callable it belongs to), and every public ``action_*`` /
  ``dcc_action_*`` / ``upload_action_*`` function, ``Response.from_*``
  constructor, ``Response.set_options`` keyword, ``Daemon`` option and
  ``UpgradeHandle.upgraded_*`` method must appear somewhere -- and so must
  every name of MHD2's header in :data:`HEADER_NAMES` (functions, options,
  the request / connection / daemon info queries, the upgraded handle, post
  data, digest info); anything missing or renamed is a warning, i.e. a
  failed build under ``-W``.

So the page cannot drift from the code: a new enum member appears by
itself, and a renamed or new function breaks the build until the map says
what it is.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger("mhd2.docs.cnames")

#: enum class → (C enum, C prefix, member-name rewrite)
ENUMS: dict[str, tuple[str, str, Any]] = {
    "HTTPStatus": ("enum MHD_HTTP_StatusCode", "MHD_HTTP_STATUS_", None),
    "HTTPMethod": ("enum MHD_HTTP_Method", "MHD_HTTP_METHOD_", None),
    "HTTPVersion": ("enum MHD_HTTP_ProtocolVersion", "MHD_HTTP_VERSION_",
                    lambda n: n.removeprefix("HTTP_")),
    "ValueKind": ("enum MHD_ValueKind", "MHD_VK_", None),
    "PredefinedHeader": ("enum MHD_PredefinedHeader", "MHD_PREDEF_", None),
    "StatusCode": ("enum MHD_StatusCode", "MHD_SC_", None),
    "RequestEndedCode": ("enum MHD_RequestEndedCode", "MHD_REQUEST_ENDED_", None),
    "StrictLevel": ("enum MHD_ProtocolStrictLevel", "MHD_PSL_", None),
    "AddressFamily": ("enum MHD_AddressFamily", "MHD_AF_", None),
    "ConnectionEvent": ("enum MHD_ConnectionNotificationCode", "MHD_CONNECTION_NOTIFY_", None),
    "PostEncoding": ("enum MHD_HTTP_PostEncoding", "MHD_HTTP_POST_ENCODING_", None),
    "PostParseResult": ("enum MHD_PostParseResult", "MHD_POST_PARSE_RES_", None),
    "DigestAuthResult": ("enum MHD_DigestAuthResult", "MHD_DAUTH_", None),
    "DigestAuthAlgo": ("enum MHD_DigestAuthMultiAlgo", "MHD_DIGEST_AUTH_MULT_ALGO_", None),
}

#: Every public name of MHD2's header (``src/include/microhttpd2_main.h.in`` and the
#: generated daemon / response option headers of libmicrohttpd 2, April 2025):
#: functions, ``MHD_D_O_*`` / ``MHD_R_O_*`` / ``MHD_C_O_*`` options and the
#: ``MHD_*_INFO_*`` queries. Each must be a C name of some row below (mapped,
#: or "no equivalent" with the reason), or the build fails.
HEADER_NAMES: frozenset[str] = frozenset("""
    MHD_CONNECTION_INFO_DYNAMIC_CONNECTION_SUSPENDED
    MHD_CONNECTION_INFO_DYNAMIC_CONNECTION_TIMEOUT MHD_CONNECTION_INFO_DYNAMIC_HTTP_VER
    MHD_CONNECTION_INFO_DYNAMIC_TLS_SESSION MHD_CONNECTION_INFO_DYNAMIC_TLS_VER
    MHD_CONNECTION_INFO_FIXED_APP_CONTEXT MHD_CONNECTION_INFO_FIXED_CLIENT_ADDRESS
    MHD_CONNECTION_INFO_FIXED_CONNECTION_SOCKET MHD_CONNECTION_INFO_FIXED_DAEMON
    MHD_C_O_TIMEOUT MHD_DAEMON_INFO_DYNAMIC_HAS_CONNECTIONS
    MHD_DAEMON_INFO_DYNAMIC_MAX_TIME_TO_WAIT MHD_DAEMON_INFO_FIXED_AGGREAGATE_FD
    MHD_DAEMON_INFO_FIXED_BIND_PORT MHD_DAEMON_INFO_FIXED_LISTEN_SOCKET
    MHD_DAEMON_INFO_FIXED_TLS_BACKEND MHD_DAEMON_INFO_FIXED_TLS_TYPE MHD_D_O_ACCEPT_POLICY
    MHD_D_O_AUTH_DIGEST_DEF_MAX_NC MHD_D_O_AUTH_DIGEST_MAP_SIZE
    MHD_D_O_AUTH_DIGEST_NONCE_TIMEOUT MHD_D_O_BIND_PORT MHD_D_O_BIND_SA
    MHD_D_O_CONN_MEMORY_LIMIT MHD_D_O_DAEMON_READY_CALLBACK MHD_D_O_DEFAULT_TIMEOUT
    MHD_D_O_DISABLE_COOKIES MHD_D_O_DISABLE_THREAD_SAFETY
    MHD_D_O_DISABLE_URI_QUERY_PLUS_AS_SPACE MHD_D_O_DISALLOW_SUSPEND_RESUME
    MHD_D_O_DISALLOW_UPGRADE MHD_D_O_EARLY_URI_LOGGER MHD_D_O_ENABLE_SHOUTCAST
    MHD_D_O_FD_NUMBER_LIMIT MHD_D_O_GLOBAL_CONNECTION_LIMIT MHD_D_O_LARGE_POOL_SIZE
    MHD_D_O_LISTEN_ADDR_REUSE MHD_D_O_LISTEN_BACKLOG MHD_D_O_LISTEN_SOCKET
    MHD_D_O_LOG_CALLBACK MHD_D_O_NOTIFY_CONNECTION MHD_D_O_NOTIFY_STREAM MHD_D_O_NO_ALPN
    MHD_D_O_PER_IP_LIMIT MHD_D_O_POLL_SYSCALL MHD_D_O_PROTOCOL_STRICT_LEVEL
    MHD_D_O_RANDOM_ENTROPY MHD_D_O_REREGISTER_ALL MHD_D_O_SIGPIPE_SUPPRESSED
    MHD_D_O_STACK_SIZE MHD_D_O_SUPPRESS_DATE_HEADER MHD_D_O_TCP_FASTOPEN MHD_D_O_TLS
    MHD_D_O_TLS_CERT_KEY MHD_D_O_TLS_CLIENT_CA MHD_D_O_TLS_PSK_CALLBACK MHD_D_O_TURBO
    MHD_D_O_WORK_MODE MHD_REQUEST_INFO_DYNAMIC_AUTH_BASIC_CREDS
    MHD_REQUEST_INFO_DYNAMIC_AUTH_DIGEST_INFO MHD_REQUEST_INFO_DYNAMIC_HEADER_SIZE
    MHD_REQUEST_INFO_DYNAMIC_HTTP_METHOD_STR MHD_REQUEST_INFO_DYNAMIC_HTTP_METHOD_STRING
    MHD_REQUEST_INFO_DYNAMIC_NUMBER_COOKIES MHD_REQUEST_INFO_DYNAMIC_NUMBER_POST_PARAMS
    MHD_REQUEST_INFO_DYNAMIC_NUMBER_URI_PARAMS MHD_REQUEST_INFO_DYNAMIC_UPLOAD_CHUNKED
    MHD_REQUEST_INFO_DYNAMIC_UPLOAD_PRESENT MHD_REQUEST_INFO_DYNAMIC_UPLOAD_SIZE_PROCESSED
    MHD_REQUEST_INFO_DYNAMIC_UPLOAD_SIZE_RECIEVED
    MHD_REQUEST_INFO_DYNAMIC_UPLOAD_SIZE_TOTAL
    MHD_REQUEST_INFO_DYNAMIC_UPLOAD_SIZE_TO_PROCESS
    MHD_REQUEST_INFO_DYNAMIC_UPLOAD_SIZE_TO_RECIEVE MHD_REQUEST_INFO_DYNAMIC_URI
    MHD_REQUEST_INFO_FIXED_APP_CONTEXT MHD_REQUEST_INFO_FIXED_CONNECTION
    MHD_REQUEST_INFO_FIXED_DAEMON MHD_REQUEST_INFO_FIXED_HTTP_METHOD
    MHD_REQUEST_INFO_FIXED_HTTP_VER MHD_REQUEST_INFO_FIXED_STREAM MHD_R_O_CHUNKED_ENC
    MHD_R_O_CONN_CLOSE MHD_R_O_HEAD_ONLY_RESPONSE MHD_R_O_HTTP_1_0_COMPATIBLE_STRICT
    MHD_R_O_HTTP_1_0_SERVER MHD_R_O_INSANITY_HEADER_CONTENT_LENGTH MHD_R_O_REUSABLE
    MHD_R_O_TERMINATION_CALLBACK MHD_action_abort_connection MHD_action_abort_request
    MHD_action_basic_auth_challenge MHD_action_basic_auth_challenge_a
    MHD_action_basic_auth_challenge_p MHD_action_basic_auth_required_response
    MHD_action_digest_auth_challenge MHD_action_digest_auth_challenge_a
    MHD_action_digest_auth_challenge_p MHD_action_digest_auth_required_response
    MHD_action_from_response MHD_action_parse_post MHD_action_post_processor
    MHD_action_process_upload MHD_action_process_upload_full MHD_action_process_upload_inc
    MHD_action_suspend MHD_action_upgrade MHD_connection_get_info_dynamic
    MHD_connection_get_info_fixed MHD_connection_set_option MHD_connection_set_options
    MHD_daemon_add_connection MHD_daemon_event_update MHD_daemon_get_info_dynamic
    MHD_daemon_get_info_fixed MHD_daemon_process_blocking MHD_daemon_process_nonblocking
    MHD_daemon_process_reg_events MHD_daemon_set_option MHD_daemon_set_options
    MHD_digest_auth_calc_userdigest MHD_digest_auth_calc_userhash
    MHD_digest_auth_calc_userhash_hex MHD_digest_auth_check MHD_digest_auth_check_digest
    MHD_digest_get_hash_size MHD_lib_get_info_dynamic MHD_lib_get_info_fixed
    MHD_lib_get_info_ver_num MHD_lib_set_panic_func MHD_lib_set_panic_func_default
    MHD_protocol_version_to_string MHD_request_get_info_dynamic MHD_request_get_info_fixed
    MHD_request_get_post_data_cb MHD_request_get_post_data_list MHD_request_get_value
    MHD_request_get_values_cb MHD_request_get_values_list MHD_request_resume
    MHD_response_add_auth_basic_challenge MHD_response_add_auth_digest_challenge
    MHD_response_add_header MHD_response_add_predef_header MHD_response_destroy
    MHD_response_from_buffer MHD_response_from_buffer_copy MHD_response_from_buffer_static
    MHD_response_from_callback MHD_response_from_empty MHD_response_from_fd
    MHD_response_from_iovec MHD_response_from_pipe MHD_response_set_option
    MHD_response_set_options MHD_stream_get_info_dynamic MHD_stream_get_info_fixed
    MHD_upgrade_operation MHD_upgraded_close MHD_upgraded_recv MHD_upgraded_send
    MHD_upload_action_abort_request MHD_upload_action_continue
    MHD_upload_action_from_response MHD_upload_action_suspend MHD_upload_action_upgrade
""".split())  # noqa: SIM905 (a word list, as in the header)

# A row is (C name, mhd2 name or None, note).  An mhd2 name is a dotted path
# from the mhd2 package ("action_suspend", "Response.from_fd",
# "Request.basic_auth"), optionally with one keyword: "Daemon(timeout=)"
# (a DaemonOptions field) or "Response.set_options(reusable=)".  None: no
# equivalent, and the note says why.
Row = tuple[str, "str | None", str]

ACTIONS: list[Row] = [
    ("MHD_action_from_response", "action_from_response", "``None`` as the response aborts"),
    ("MHD_action_abort_request", "action_abort_request",
     "returning ``None`` from the callback does the same"),
    ("MHD_action_suspend", "action_suspend", "resumed with ``request_resume``"),
    ("MHD_action_process_upload_full", "action_process_upload_full", ""),
    ("MHD_action_process_upload_inc", "action_process_upload_inc", ""),
    ("MHD_action_process_upload", "action_process_upload", ""),
    ("MHD_action_parse_post", "action_parse_post", ""),
    ("MHD_action_upgrade", "action_upgrade", "the handler gets an ``UpgradeHandle``"),
    ("MHD_action_basic_auth_challenge / MHD_action_basic_auth_challenge_a / "
     "MHD_action_basic_auth_challenge_p", "action_basic_auth_challenge",
     "one function; the C ``_a`` / ``_p`` variants differ only in argument spelling"),
    ("MHD_action_basic_auth_required_response", "auth.response_add_auth_basic_challenge",
     "add the challenge to any 401 response, then ``action_from_response``"),
    ("MHD_action_digest_auth_challenge / MHD_action_digest_auth_challenge_a / "
     "MHD_action_digest_auth_challenge_p", "action_digest_auth_challenge", ""),
    ("MHD_action_digest_auth_required_response", "auth.DigestChallenge",
     "prepared once; ``DigestChallenge.action(request)`` per send"),
    ("MHD_action_abort_connection", "action_abort_request",
     "closes the connection (HTTP/1.x); on HTTP/2 the stream is reset"),
    ("MHD_action_post_processor", "action_parse_post",
     "with ``stream_reader`` for fields delivered in pieces"),
    ("MHD_DCC_action_continue", "dcc_action_continue", ""),
    ("MHD_DCC_action_continue_zc", "dcc_action_continue_zc", ""),
    ("MHD_DCC_action_finish", "dcc_action_finish", "``footers`` become trailers"),
    ("MHD_DCC_action_suspend", "dcc_action_suspend", ""),
    ("MHD_DCC_action_abort", "dcc_action_abort", ""),
    ("MHD_upload_action_continue", "upload_action_continue", ""),
    ("MHD_upload_action_suspend", "upload_action_suspend", ""),
    ("MHD_upload_action_from_response", "upload_action_from_response", ""),
    ("MHD_upload_action_abort_request", "upload_action_abort_request", ""),
    ("MHD_upload_action_upgrade", "upload_action_upgrade", ""),
]

RESPONSES: list[Row] = [
    ("MHD_response_from_empty", "Response.from_empty", ""),
    ("MHD_response_from_buffer", "Response.from_buffer", "``free_cb`` runs once when done"),
    ("MHD_response_from_buffer_static", "Response.from_buffer_static", ""),
    ("MHD_response_from_buffer_copy", "Response.from_buffer_copy", ""),
    ("MHD_response_from_iovec", "Response.from_iovec", ""),
    ("MHD_response_from_fd", "Response.from_fd", "``sendfile`` on plain TCP; the fd is closed"),
    ("MHD_response_from_pipe", "Response.from_pipe", ""),
    ("MHD_response_from_callback", "Response.from_callback",
     "the dynamic content creator; ``None`` as size = unknown"),
    ("MHD_response_add_header", "Response.add_header", "refusals raise ``ResponseHeaderError``"),
    ("MHD_response_add_predef_header", "Response.add_predef_header", ""),
    ("MHD_response_set_option / MHD_response_set_options", "Response.set_options",
     "keywords, see the next table"),
    ("MHD_response_destroy", "Response.destroy",
     "needed only for reusable responses; others are destroyed once sent"),
    ("MHD_response_add_auth_basic_challenge", "auth.response_add_auth_basic_challenge",
     "adds ``WWW-Authenticate: Basic`` to a 401 response"),
    ("MHD_response_add_auth_digest_challenge", "auth.DigestChallenge",
     "a Digest challenge needs a fresh nonce per send: the prepared object makes one"),
]

RESPONSE_OPTIONS: list[Row] = [
    ("MHD_R_O_REUSABLE", "Response.set_options(reusable=)", ""),
    ("MHD_R_O_HEAD_ONLY_RESPONSE", "Response.set_options(head_only=)", ""),
    ("MHD_R_O_CHUNKED_ENC", "Response.set_options(chunked=)", ""),
    ("MHD_R_O_CONN_CLOSE", "Response.set_options(conn_close=)", ""),
    ("MHD_R_O_HTTP_1_0_COMPATIBLE_STRICT", "Response.set_options(http10_compatible_strict=)", ""),
    ("MHD_R_O_HTTP_1_0_SERVER", "Response.set_options(http10_server=)", ""),
    ("MHD_R_O_INSANITY_HEADER_CONTENT_LENGTH",
     "Response.set_options(insanity_header_content_length=)", ""),
    ("MHD_R_O_TERMINATION_CALLBACK", "Response.set_options(termination_callback=)", ""),
]

DAEMON: list[Row] = [
    ("MHD_daemon_create", "Daemon", "the request callback and the options as keywords"),
    ("MHD_daemon_start", "Daemon.serve", "or ``async with daemon:``"),
    ("MHD_daemon_quiesce", "Daemon.quiesce", ""),
    ("MHD_daemon_destroy", "Daemon.stop", "or leaving ``async with daemon:``; graceful"),
    ("MHD_daemon_set_options", None, "options are keywords of ``Daemon(...)``, fixed at creation"),
    ("MHD_daemon_get_info_fixed (MHD_DAEMON_INFO_FIXED_BIND_PORT)", "Daemon.port", ""),
    ("MHD_DAEMON_INFO_FIXED_LISTEN_SOCKET", "Daemon.addresses",
     "the addresses; the sockets stay the daemon's"),
    ("MHD_daemon_get_info_dynamic (MHD_DAEMON_INFO_DYNAMIC_HAS_CONNECTIONS)",
     "Daemon.connection_count", "a count, not a flag"),
    ("MHD_DAEMON_INFO_FIXED_TLS_BACKEND / MHD_DAEMON_INFO_FIXED_TLS_TYPE", None,
     "Python's ssl module (OpenSSL) is the only backend"),
    ("MHD_daemon_process_blocking / MHD_daemon_process_nonblocking / "
     "MHD_daemon_process_reg_events / MHD_daemon_event_update / "
     "MHD_DAEMON_INFO_FIXED_AGGREAGATE_FD / MHD_DAEMON_INFO_DYNAMIC_MAX_TIME_TO_WAIT",
     None, "trio is the event loop: there is no external polling mode to drive"),
    ("MHD_daemon_set_option", None, "options are keywords of ``Daemon(...)``"),
    ("MHD_lib_get_info_fixed / MHD_lib_get_info_dynamic / MHD_lib_get_info_ver_num",
     "__version__", "``mhd2.__version__``; features are Python imports"),
    ("MHD_lib_set_panic_func / MHD_lib_set_panic_func_default", None,
     "an internal error is logged on the ``mhd2`` logger and ends one connection"),
    ("MHD_protocol_version_to_string", "enums.HTTPVersion", "its values are the strings"),
    ("MHD_daemon_add_connection", "Daemon.serve_stream",
     "any ``trio.abc.Stream``, e.g. a memory stream in tests"),
    ("MHD_request_resume", "request_resume", "from any trio task or thread"),
]

DAEMON_OPTIONS: list[Row] = [
    ("MHD_D_O_WORK_MODE", None, "one trio task per connection; no thread pools to choose"),
    ("MHD_D_O_POLL_SYSCALL", None, "trio picks epoll/kqueue itself"),
    ("MHD_D_O_LOG_CALLBACK", None,
     "mhd2 logs through Python's ``logging``: the ``mhd2`` logger (and the access log "
     "on ``mhd2.access``); configure handlers there"),
    ("MHD_D_O_REREGISTER_ALL", None, "trio watches the sockets; nothing to re-register"),
    ("MHD_D_O_BIND_PORT", "Daemon(port=)", "with ``host=`` and ``family=``"),
    ("MHD_D_O_BIND_PORT (its address family)", "Daemon(family=)", "an ``AddressFamily``"),
    ("MHD_D_O_BIND_SA", "Daemon(host=)", "an address string, not a sockaddr"),
    ("MHD_D_O_LISTEN_SOCKET", "Daemon(listen_socket=)", ""),
    ("MHD_D_O_LISTEN_ADDR_REUSE", "Daemon(reuse_port=)", ""),
    ("MHD_D_O_TCP_FASTOPEN", None, "not offered"),
    ("MHD_D_O_LISTEN_BACKLOG", "Daemon(backlog=)", ""),
    ("MHD_D_O_SIGPIPE_SUPPRESSED", None, "Python ignores SIGPIPE already"),
    ("MHD_D_O_TLS", "Daemon(tls=)", "an ``ssl.SSLContext``; Python's ssl is the backend"),
    ("MHD_D_O_TLS_CERT_KEY", "Daemon(tls=)", "``mhd2.tls.server_context(cert_pem, key_pem)``"),
    ("MHD_D_O_TLS_CLIENT_CA", "Daemon(tls=)", "``server_context(..., client_ca_pem=...)``"),
    ("MHD_D_O_TLS_PSK_CALLBACK", None, "Python's ssl has no server-side PSK callback for TLS 1.3"),
    ("MHD_D_O_NO_ALPN", "Daemon(tls=)", "``server_context(..., alpn=...)``"),
    ("MHD_D_O_DEFAULT_TIMEOUT", "Daemon(timeout=)", "seconds; default 60, not MHD's unsafe 0"),
    ("MHD_D_O_GLOBAL_CONNECTION_LIMIT", "Daemon(connection_limit=)", ""),
    ("MHD_D_O_PER_IP_LIMIT", "Daemon(per_ip_limit=)", ""),
    ("MHD_D_O_ACCEPT_POLICY", "Daemon(accept_policy=)", ""),
    ("MHD_D_O_PROTOCOL_STRICT_LEVEL", "Daemon(strict_level=)", "a ``StrictLevel``"),
    ("MHD_D_O_EARLY_URI_LOGGER", "Daemon(early_uri_logger=)", ""),
    ("MHD_D_O_DISABLE_URI_QUERY_PLUS_AS_SPACE", "Daemon(uri_query_plus_as_space=)",
     "inverted: ``False`` disables"),
    ("MHD_D_O_SUPPRESS_DATE_HEADER", "Daemon(suppress_date_header=)", ""),
    ("MHD_D_O_ENABLE_SHOUTCAST", None, "ICY responses are not HTTP; not offered"),
    ("MHD_D_O_CONN_MEMORY_LIMIT", "Daemon(max_header_size=)",
     "bounds the request line and headers (431 beyond)"),
    ("MHD_D_O_LARGE_POOL_SIZE", "Daemon(large_pool_size=)", ""),
    ("MHD_D_O_STACK_SIZE", None, "mhd2 starts no threads"),
    ("MHD_D_O_FD_NUMBER_LIMIT", None, "no select(); use ``connection_limit``"),
    ("MHD_D_O_TURBO", None, "no unsafe shortcuts to enable"),
    ("MHD_D_O_DISABLE_THREAD_SAFETY", None, "one trio run is single-threaded by design"),
    ("MHD_D_O_DISALLOW_UPGRADE", "Daemon(disallow_upgrade=)", ""),
    ("MHD_D_O_DISALLOW_SUSPEND_RESUME", "Daemon(disallow_suspend_resume=)", ""),
    ("MHD_D_O_DAEMON_READY_CALLBACK", None, "``await nursery.start(daemon.serve)`` returns when ready"),
    ("MHD_D_O_NOTIFY_CONNECTION", "Daemon(notify_connection=)", ""),
    ("MHD_D_O_NOTIFY_STREAM", None, "HTTP/1.x only: a stream is its connection"),
    ("MHD_D_O_RANDOM_ENTROPY", "Daemon(digest_auth_random=)", "enables Digest auth"),
    ("MHD_D_O_AUTH_DIGEST_MAP_SIZE", "Daemon(digest_auth_map_size=)", ""),
    ("(MHD 0.9: MHD_OPTION_DIGEST_AUTH_NONCE_BIND_TYPE)", None,
     "nonces are not bound to a client address or URI"),
    ("MHD_D_O_AUTH_DIGEST_NONCE_TIMEOUT", "Daemon(digest_auth_nonce_timeout=)", "seconds"),
    ("MHD_D_O_AUTH_DIGEST_DEF_MAX_NC", "Daemon(digest_auth_max_nc=)", ""),
    ("MHD 0.9's MHD_OPTION_NOTIFY_COMPLETED", "Daemon(notify_request_ended=)",
     "every request ends with exactly one call"),
    ("MHD_D_O_DISABLE_COOKIES", "Daemon(disable_cookies=)",
     "skip parsing ``Cookie`` headers"),
    ("(no MHD2 option)", "Daemon(metrics=)",
     "a prometheus-client registry: see :mod:`mhd2.metrics`"),
    ("(no MHD2 option)", "Daemon(metrics_path=)", "the path that answers the scrape"),
    ("MHD_C_O_TIMEOUT (its default, between requests)", "Daemon(keep_alive_timeout=)",
     "mhd2 times the wait for the next request apart from ``timeout``"),
    ("(no MHD2 option)", "Daemon(max_requests_per_connection=)",
     "then ``Connection: close``"),
    ("(no MHD2 option)", "Daemon(min_body_rate=)",
     "``(bytes, seconds)``: a trickled body gets 408"),
    ("(no MHD2 option)", "Daemon(large_pool_fill_time=)",
     "seconds a full upload may hold its share of ``large_pool_size`` (408 beyond)"),
    ("(no MHD2 option; MHD leaves socket options to the application)", "Daemon(tcp_keepalive=)",
     "``(idle, interval, count)``: SO_KEEPALIVE, TCP_KEEPIDLE/INTVL/CNT, TCP_USER_TIMEOUT"),
    ("MHD_D_O_LISTEN_SOCKET (an AF_UNIX one)", "Daemon(unix_path=)",
     "mhd2 binds the Unix-domain socket itself"),
    ("(no MHD2 option)", "Daemon(unix_mode=)", "the socket file's permissions"),
    ("(no MHD2 option)", "Daemon(proxy_protocol=)", "HAProxy's PROXY protocol v1/v2"),
    ("(no MHD2 option)", "Daemon(trusted_proxies=)",
     "whose PROXY and forwarded headers are believed"),
    ("(no MHD2 option)", "Daemon(forwarded_headers=)",
     "``\"x-forwarded\"`` or ``\"forwarded\"``: the header family trusted proxies set"),
    ("(none: libmicrohttpd has its own parser)", "Daemon(parser=)",
     "``auto``, ``h11`` or ``httptools`` (``mhd2[speedups]``)"),
    ("(MHD2: HTTP/2 only as enums; its h2 ALPN entry is compiled out)", "Daemon(http2=)",
     "HTTP/2 on by default: ALPN ``h2``, prior knowledge on plain TCP"),
    ("(none: SETTINGS_MAX_CONCURRENT_STREAMS)", "Daemon(http2_max_concurrent_streams=)",
     "default 100"),
    ("(none: SETTINGS_INITIAL_WINDOW_SIZE)", "Daemon(http2_initial_window_size=)",
     "default 65535"),
    ("(none: HTTP/2 flow control)", "Daemon(http2_min_send_rate=)",
     "default (1024, 20.0): a stream the client's window starves is reset"),
    ("(none: HTTP/2 PING)", "Daemon(http2_ping_interval=)",
     "default 60 s: a connection whose streams are all parked is pinged"),
    ("(none: HTTP/2 PING)", "Daemon(http2_ping_timeout=)",
     "default 20 s: unanswered, the connection is closed"),
]

REQUEST: list[Row] = [
    ("MHD_request_get_info_fixed (MHD_REQUEST_INFO_FIXED_HTTP_VER)", "Request.http_version",
     ""),
    ("MHD_REQUEST_INFO_FIXED_HTTP_METHOD / MHD_REQUEST_INFO_DYNAMIC_HTTP_METHOD_STRING / "
     "MHD_REQUEST_INFO_DYNAMIC_HTTP_METHOD_STR", "Request.http_method",
     "the enum; ``Request.method`` is the string"),
    ("MHD_REQUEST_INFO_DYNAMIC_URI", "Request.uri", "as sent; ``Request.path`` decoded"),
    ("MHD_REQUEST_INFO_FIXED_CONNECTION", "Request.connection", "a ``ConnectionInfo``"),
    ("MHD_REQUEST_INFO_FIXED_APP_CONTEXT", "Request.app_context", ""),
    ("MHD_REQUEST_INFO_FIXED_DAEMON", None,
     "the callback is usually a closure or method that knows its daemon"),
    ("MHD_REQUEST_INFO_FIXED_STREAM", None,
     "a stream is its connection on HTTP/1.x; HTTP/2 streams are not exposed"),
    ("MHD_REQUEST_INFO_DYNAMIC_AUTH_BASIC_CREDS", "Request.basic_auth", ""),
    ("MHD_REQUEST_INFO_DYNAMIC_AUTH_DIGEST_INFO", "Request.digest_auth_info",
     "a ``DigestAuthInfo`` or ``None``"),
    ("MHD_REQUEST_INFO_DYNAMIC_NUMBER_COOKIES", "Request.cookies", "``len(request.cookies)``"),
    ("MHD_REQUEST_INFO_DYNAMIC_NUMBER_URI_PARAMS", "Request.args", "``len(request.args)``"),
    ("MHD_REQUEST_INFO_DYNAMIC_NUMBER_POST_PARAMS", "Request.post_data",
     "``len(request.post_data)``"),
    ("MHD_REQUEST_INFO_DYNAMIC_HEADER_SIZE", None,
     "not kept; ``Daemon(max_header_size=)`` bounds it"),
    ("MHD_REQUEST_INFO_DYNAMIC_UPLOAD_PRESENT / MHD_REQUEST_INFO_DYNAMIC_UPLOAD_CHUNKED / "
     "MHD_REQUEST_INFO_DYNAMIC_UPLOAD_SIZE_TOTAL", "Request.upload_size",
     "``0``: no body; ``None``: chunked (size unknown)"),
    ("MHD_REQUEST_INFO_DYNAMIC_UPLOAD_SIZE_RECIEVED / "
     "MHD_REQUEST_INFO_DYNAMIC_UPLOAD_SIZE_PROCESSED", "Request.upload_received",
     "body bytes received (and handed to the application) so far"),
    ("MHD_REQUEST_INFO_DYNAMIC_UPLOAD_SIZE_TO_RECIEVE / "
     "MHD_REQUEST_INFO_DYNAMIC_UPLOAD_SIZE_TO_PROCESS", "Request.upload_remaining",
     "``None`` when chunked"),
    ("MHD_request_get_post_data_list", "Request.post_data", "``PostField`` records"),
    ("MHD_request_get_post_data_cb", "Request.post_data", "iterate the list"),
    ("MHD_connection_get_info_fixed (MHD_CONNECTION_INFO_FIXED_CLIENT_ADDRESS)",
     "Request.client_address", "after trusted forwarded headers; "
     "``request.connection.client_address`` is the peer"),
    ("MHD_CONNECTION_INFO_FIXED_CONNECTION_SOCKET", None,
     "the socket stays the daemon's (TLS and HTTP/2 share it)"),
    ("MHD_CONNECTION_INFO_FIXED_DAEMON", None, "as for the request"),
    ("MHD_CONNECTION_INFO_FIXED_APP_CONTEXT", None,
     "``request.app_context`` per request; per connection, key a dict by "
     "``request.connection``"),
    ("MHD_connection_get_info_dynamic (MHD_CONNECTION_INFO_DYNAMIC_TLS_VER)",
     "connection_info.ConnectionInfo", "``.tls_version``, ``.cipher``, ``.alpn_protocol``"),
    ("MHD_CONNECTION_INFO_DYNAMIC_TLS_SESSION", "connection_info.ConnectionInfo",
     "``.peer_certificate`` and friends; the ``SSLObject`` stays the daemon's"),
    ("MHD_CONNECTION_INFO_DYNAMIC_HTTP_VER", "Request.http_version", ""),
    ("MHD_CONNECTION_INFO_DYNAMIC_CONNECTION_SUSPENDED", None,
     "the application suspended it, so it knows"),
    ("MHD_connection_set_option / MHD_connection_set_options (MHD_C_O_TIMEOUT) / "
     "MHD_CONNECTION_INFO_DYNAMIC_CONNECTION_TIMEOUT", "Request.connection_timeout",
     "read and set, in seconds"),
    ("MHD_stream_get_info_fixed / MHD_stream_get_info_dynamic", None,
     "HTTP/2 streams are requests here"),
    ("MHD_upgrade_operation", "UpgradeHandle.upgraded_close",
     "the one operation: closing"),
    ("MHD_upgraded_recv", "UpgradeHandle.upgraded_recv", "with an optional timeout"),
    ("MHD_upgraded_send", "UpgradeHandle.upgraded_send", ""),
    ("MHD_upgraded_close", "UpgradeHandle.upgraded_close", ""),
    ("MHD_request_get_value", "Request.get_value", "``ValueKind`` says where to look"),
    ("MHD_request_get_values_cb / MHD_request_get_values_list", "Request.get_values",
     "a list of ``(name, value)`` in arrival order"),
    ("MHD_request_get_info_fixed (HTTP_METHOD)", "Request.http_method", "``Request.method``: the string"),
    ("MHD_request_get_info_fixed (HTTP_VER)", "Request.http_version", ""),
    ("MHD_request_get_info_dynamic (URI)", "Request.path", "``Request.uri``: as sent"),
    ("MHD_request_get_info_dynamic (UPLOAD_SIZE)", "Request.upload_size", "``None``: chunked"),
    ("MHD_request_get_info_fixed (CONNECTION / CLIENT_ADDR)", "Request.connection",
     "a ``ConnectionInfo``; ``Request.client_address`` directly"),
    ("MHD_request_get_info_dynamic (APP_CONTEXT)", "Request.app_context", "a free slot"),
]

AUTH: list[Row] = [
    ("MHD_request_get_info_dynamic (AUTH_BASIC_CREDS)", "Request.basic_auth",
     "``BasicAuth(username, password)`` or ``None``"),
    ("MHD_action_basic_auth_challenge", "action_basic_auth_challenge", ""),
    ("(compare Basic credentials in constant time)", "auth.basic_auth_check", ""),
    ("MHD_digest_auth_check", "Request.digest_auth_check", "→ ``DigestAuthResult``"),
    ("MHD_action_digest_auth_challenge", "action_digest_auth_challenge", ""),
    ("MHD_digest_auth_calc_userhash / MHD_digest_auth_calc_userhash_hex",
     "auth.digest_auth_calc_userhash", "returns the hex form"),
    ("MHD_digest_auth_calc_userdigest", "auth.digest_auth_calc_userdigest",
     "store it instead of the password"),
    ("MHD_digest_auth_check_digest", "Request.digest_auth_check_digest",
     "checks against a stored userdigest"),
    ("MHD_digest_get_hash_size", None, "``hashlib`` digests know their size"),
    ("(the parsed Authorization: Digest header)", "DigestAuthInfo", ""),
]

SECTIONS: dict[str, list[Row]] = {
    "actions": ACTIONS, "responses": RESPONSES, "response-options": RESPONSE_OPTIONS,
    "daemon": DAEMON, "daemon-options": DAEMON_OPTIONS, "request": REQUEST, "auth": AUTH,
}


def _resolve(target: str) -> str | None:
    """Why *target* does not name something in mhd2 (``None``: it does)."""
    import mhd2

    path, _, keyword = target.partition("(")
    keyword = keyword.rstrip(")").rstrip("=")
    obj: Any = mhd2
    for part in path.split("."):
        if hasattr(obj, part):
            obj = getattr(obj, part)
        elif part in getattr(obj, "__annotations__", {}):
            obj = None  # an instance attribute declared on the class
        else:
            try:
                obj = __import__(f"{obj.__name__}.{part}", fromlist=["x"])
            except (ImportError, AttributeError):
                return f"mhd2.{path} does not exist"
    if keyword:
        if path == "Daemon":
            fields = {f.name for f in dataclasses.fields(mhd2.DaemonOptions)}
            if keyword not in fields:
                return f"{keyword!r} is not a Daemon option (mhd2.DaemonOptions)"
        elif keyword not in inspect.signature(obj).parameters:
            return f"mhd2.{path} has no keyword {keyword!r}"
    return None


def _check_coverage() -> list[str]:
    """Public mhd2 names that no table mentions."""
    import mhd2

    named = {target for rows in SECTIONS.values() for _, target, _ in rows if target}
    wanted = [n for n in mhd2.__all__
              if n.startswith(("action_", "dcc_action_", "upload_action_")) or n == "request_resume"]
    wanted += [f"Response.{n}" for n in dir(mhd2.Response)
               if n.startswith("from_") or n in ("add_header", "set_options", "destroy")]
    wanted += [f"Response.set_options({n}=)"
               for n in inspect.signature(mhd2.Response.set_options).parameters if n != "self"]
    wanted += [f"Daemon({f.name}=)" for f in dataclasses.fields(mhd2.DaemonOptions)
               if f.name not in ("host",)]
    wanted += [f"UpgradeHandle.{n}" for n in dir(mhd2.UpgradeHandle)
               if n.startswith("upgraded_")]
    wanted += ["Request.post_data", "Request.digest_auth_info", "Request.digest_auth_check_digest",
               "Request.upload_received", "Request.upload_remaining",
               "Request.connection_timeout", "auth.digest_auth_calc_userdigest",
               "auth.response_add_auth_basic_challenge"]
    problems = [f"mhd2.{n} is in no table of docs/_ext/mhd2_cnames.py" for n in wanted
                if n not in named]
    mapped = {name for rows in SECTIONS.values() for c_name, _, _ in rows
              for name in re.findall(r"MHD_[A-Za-z0-9_]+", c_name)}
    problems += [f"{n} (MHD2's header) is in no table of docs/_ext/mhd2_cnames.py"
                 for n in sorted(HEADER_NAMES - mapped)]
    return problems


def _enum_rows() -> list[str]:
    from mhd2 import enums

    lines: list[str] = []
    classes = [getattr(enums, n) for n in enums.__all__
               if isinstance(getattr(enums, n), type) and issubclass(getattr(enums, n), enum.Enum)]
    for cls in classes:
        if cls.__name__ not in ENUMS:
            logger.warning("mhd2.%s has no C prefix in docs/_ext/mhd2_cnames.py ENUMS",
                           cls.__name__)
            continue
        c_enum, prefix, rename = ENUMS[cls.__name__]
        lines += [f".. rubric:: {c_enum} → mhd2.{cls.__name__}", "",
                  ".. list-table::", "   :header-rows: 1", "   :widths: 50 40 10", "",
                  "   * - C name", "     - mhd2", "     - value"]
        for name, member in cls.__members__.items():
            c_name = prefix + (rename(name) if rename else name)
            value = member.value
            lines += [f"   * - ``{c_name}``", f"     - ``{cls.__name__}.{name}``",
                      f"     - ``{value!r}``" if isinstance(value, str) else f"     - {value}"]
        lines.append("")
    return lines


def _rows(rows: list[Row]) -> list[str]:
    lines = [".. list-table::", "   :header-rows: 1", "   :widths: 40 35 25", "",
             "   * - MHD2 (C)", "     - mhd2", "     - notes"]
    for c_name, target, note in rows:
        if target is not None:
            problem = _resolve(target)
            if problem:
                logger.warning("docs/_ext/mhd2_cnames.py: %s -> %s: %s", c_name, target, problem)
            path = target.partition("(")[0]  # a link to the API reference where it has one
            shown = f":py:obj:`mhd2.{target} <mhd2.{path}>`"
        else:
            shown = "*no equivalent*"
        c_text = c_name if c_name.startswith("(") else f"``{c_name}``"
        lines += [f"   * - {c_text}", f"     - {shown}", f"     - {note or ' '}"]
    return [*lines, ""]


class CNames(SphinxDirective):
    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        section = self.arguments[0]
        if section == "enums":
            lines = _enum_rows()
        elif section in SECTIONS:
            lines = _rows(SECTIONS[section])
            if section == "auth":  # once per build: is every public name somewhere?
                for problem in _check_coverage():
                    logger.warning(problem)
        else:
            raise self.error(f"unknown section {section!r}: enums or {', '.join(SECTIONS)}")
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source="mhd2-cnames"), self.content_offset,
                                container)
        return list(container.children)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("mhd2-cnames", CNames)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
