"""mhd2: GNU libmicrohttpd 2's action API for trio.

An application hands a :class:`Daemon` one request callback; for every request
the callback returns an :class:`Action` that tells the daemon how to go on.
Only public names are re-exported here; nothing is defined in this module.
"""

from typing import TYPE_CHECKING, Any

from .actions import (
    Action,
    UploadAction,
    action_abort_request,
    action_from_response,
    action_process_upload,
    action_process_upload_full,
    action_process_upload_inc,
    action_suspend,
    action_upgrade,
    upload_action_abort_request,
    upload_action_continue,
    upload_action_from_response,
    upload_action_suspend,
    upload_action_upgrade,
)
from .auth import (
    BasicAuth,
    DigestAuthInfo,
    DigestChallenge,
    action_basic_auth_challenge,
    action_digest_auth_challenge,
    digest_auth_calc_userdigest,
    digest_auth_calc_userhash,
    response_add_auth_basic_challenge,
)
from .connection_info import ConnectionInfo
from .daemon import Daemon
from .dcc import (
    DCCAction,
    DCCContext,
    dcc_action_abort,
    dcc_action_continue,
    dcc_action_continue_zc,
    dcc_action_finish,
    dcc_action_suspend,
)
from .early_hints import request_send_early_hints
from .enums import (
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
)
from .errors import (
    AuthError,
    DaemonStartError,
    MHDError,
    ResponseHeaderError,
    UpgradedBroken,
    UpgradedClosed,
    UpgradedError,
    UpgradedHandleInvalid,
    UpgradedHardError,
    UpgradedTimeout,
    UpgradedTLSError,
    UsageError,
)
from .options import DaemonOptions
from .post import action_parse_post
from .post_field import PostField
from .request import HeaderView, Request
from .request_calls import request_on_end, request_resume
from .response import Response
from .upgrade import UpgradeHandle

if TYPE_CHECKING:
    from . import fanout

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``mhd2.fanout`` is imported on first use: it brings the WebSocket stack,
    which ``import mhd2`` alone does not load."""
    if name == "fanout":
        import importlib

        return importlib.import_module(".fanout", __name__)
    raise AttributeError(f"module 'mhd2' has no attribute {name!r}")

__all__ = [
    "Action",
    "AddressFamily",
    "AuthError",
    "BasicAuth",
    "ConnectionEvent",
    "ConnectionInfo",
    "DCCAction",
    "DCCContext",
    "Daemon",
    "DaemonOptions",
    "DaemonStartError",
    "DigestAuthAlgo",
    "DigestAuthInfo",
    "DigestAuthResult",
    "DigestChallenge",
    "HTTPMethod",
    "HTTPStatus",
    "HTTPVersion",
    "HeaderView",
    "MHDError",
    "PostEncoding",
    "PostParseResult",
    "PredefinedHeader",
    "PostField",
    "Request",
    "RequestEndedCode",
    "Response",
    "ResponseHeaderError",
    "StatusCode",
    "StrictLevel",
    "UpgradedBroken",
    "UpgradedClosed",
    "UpgradedError",
    "UpgradedHandleInvalid",
    "UpgradedHardError",
    "UpgradedTLSError",
    "UpgradeHandle",
    "UpgradedTimeout",
    "UploadAction",
    "UsageError",
    "ValueKind",
    "action_abort_request",
    "action_basic_auth_challenge",
    "action_digest_auth_challenge",
    "action_from_response",
    "action_parse_post",
    "action_process_upload",
    "action_process_upload_full",
    "action_process_upload_inc",
    "action_suspend",
    "action_upgrade",
    "dcc_action_abort",
    "dcc_action_continue",
    "dcc_action_continue_zc",
    "dcc_action_finish",
    "dcc_action_suspend",
    "digest_auth_calc_userdigest",
    "digest_auth_calc_userhash",
    "request_on_end",
    "fanout",
    "request_resume",
    "request_send_early_hints",
    "response_add_auth_basic_challenge",
    "upload_action_abort_request",
    "upload_action_continue",
    "upload_action_from_response",
    "upload_action_suspend",
    "upload_action_upgrade",
]
