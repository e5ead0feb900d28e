"""Exceptions of mhd2.

Where libmicrohttpd 2 returns an ``enum MHD_StatusCode`` error, mhd2 raises
an :class:`MHDError` carrying the same :class:`~mhd2.enums.StatusCode` in
its :attr:`~MHDError.code` attribute.  The hierarchy::

    MHDError
    ├── UsageError                 the application used the API wrongly (6xxxx)
    │   └── ResponseHeaderError    a response header was refused
    ├── DaemonStartError           the daemon could not start (bind, options …)
    ├── UpgradedError              I/O on an HTTP-Upgraded connection failed
    │   ├── UpgradedTimeout
    │   ├── UpgradedClosed
    │   ├── UpgradedBroken
    │   ├── UpgradedTLSError
    │   ├── UpgradedHardError
    │   └── UpgradedHandleInvalid
    └── AuthError                  a client's authentication header is broken
"""

from __future__ import annotations

from typing import Any, ClassVar

from mhd2.enums import StatusCode

__all__ = [
    "MHDError",
    "UsageError",
    "ResponseHeaderError",
    "DaemonStartError",
    "UpgradedError",
    "UpgradedTimeout",
    "UpgradedClosed",
    "UpgradedBroken",
    "UpgradedTLSError",
    "UpgradedHardError",
    "UpgradedHandleInvalid",
    "AuthError",
]


class MHDError(Exception):
    """Base class of all mhd2 errors.

    ``MHDError(message, code=None)``: *code* is the MHD2 status code of the
    failure; ``None`` takes the class's :attr:`default_code`.  ``str(exc)``
    is *message*.
    """

    default_code: ClassVar[StatusCode] = StatusCode.INTERNAL_ERROR
    """The code used when none is given to the constructor."""

    code: StatusCode
    """The MHD2 status code describing the failure."""

    message: str
    """The human-readable message (also ``str(exc)``)."""

    def __init__(self, message: str, code: StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = type(self).default_code if code is None else StatusCode(code)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code=StatusCode.{self.code.name})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.code))


class UsageError(MHDError):
    """The application used the API wrongly (MHD2's 6xxxx codes).

    For example a second action for one request (``ACTION_ALREADY_CREATED``)
    or modifying a response already in use (``TOO_LATE``).
    """

    default_code: ClassVar[StatusCode] = StatusCode.API_MISUSE


class ResponseHeaderError(UsageError):
    """A response header was refused.

    The code tells why: ``RESP_HEADER_NAME_INVALID``,
    ``RESP_HEADER_VALUE_INVALID``, ``RESP_HEADER_NOT_ALLOWED`` …
    """

    default_code: ClassVar[StatusCode] = StatusCode.RESP_HEADER_VALUE_INVALID


class DaemonStartError(MHDError):
    """The daemon could not be started (address in use, bad option, TLS …)."""

    default_code: ClassVar[StatusCode] = StatusCode.LISTEN_SOCKET_BIND_FAILED


class UpgradedError(MHDError):
    """Sending or receiving on an HTTP-Upgraded connection failed.

    Use :meth:`from_code` to get the subclass matching an ``UPGRADED_*`` code.
    """

    default_code: ClassVar[StatusCode] = StatusCode.UPGRADED_NET_HARD_ERROR

    @staticmethod
    def from_code(code: StatusCode, message: str | None = None) -> UpgradedError:
        """Return the exception (of the matching subclass) for *code*."""
        cls = _UPGRADED_BY_CODE.get(code, UpgradedError)
        return cls(message if message is not None else code.name.lower().replace("_", " "), code)


# Declared boilerplate (issue 21): one three-line class per ``UPGRADED_*`` status
# code -- a name, a docstring and a default code, a table in class form so that
# each can be caught and documented on its own; ``duplicates`` pairs them by shape.


class UpgradedTimeout(UpgradedError):
    """Nothing was sent or received before the timeout expired."""

    default_code: ClassVar[StatusCode] = StatusCode.UPGRADED_NET_TIMEOUT


class UpgradedClosed(UpgradedError):
    """The network connection has been closed."""

    default_code: ClassVar[StatusCode] = StatusCode.UPGRADED_NET_CONN_CLOSED


class UpgradedBroken(UpgradedError):
    """The network connection is broken (reset by the peer …)."""

    default_code: ClassVar[StatusCode] = StatusCode.UPGRADED_NET_CONN_BROKEN


class UpgradedTLSError(UpgradedError):
    """A TLS error occurred on the connection."""

    default_code: ClassVar[StatusCode] = StatusCode.UPGRADED_TLS_ERROR


class UpgradedHardError(UpgradedError):
    """Any other unrecoverable network error."""

    default_code: ClassVar[StatusCode] = StatusCode.UPGRADED_NET_HARD_ERROR


class UpgradedHandleInvalid(UpgradedError):
    """The handle is no longer valid (used after it was closed)."""

    default_code: ClassVar[StatusCode] = StatusCode.UPGRADED_HANDLE_INVALID


_UPGRADED_BY_CODE: dict[StatusCode, type[UpgradedError]] = {
    StatusCode.UPGRADED_NET_TIMEOUT: UpgradedTimeout,
    StatusCode.UPGRADED_NET_CONN_CLOSED: UpgradedClosed,
    StatusCode.UPGRADED_NET_CONN_BROKEN: UpgradedBroken,
    StatusCode.UPGRADED_TLS_ERROR: UpgradedTLSError,
    StatusCode.UPGRADED_NET_HARD_ERROR: UpgradedHardError,
    StatusCode.UPGRADED_HANDLE_INVALID: UpgradedHandleInvalid,
}


class AuthError(MHDError):
    """A client's authentication header is present but broken."""

    default_code: ClassVar[StatusCode] = StatusCode.REQ_AUTH_DATA_BROKEN
