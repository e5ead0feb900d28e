"""How a WebSocket ends: :class:`CloseReason`, :class:`ConnectionClosed`, the
close reasons and timeout of the daemon's own close frames (RFC 6455 §7), and
the end of a failed connection (:func:`end_sending`, :func:`drain_peer`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from ..errors import UpgradedError
from ..transport.base import DRAIN_RECV_SIZE

if TYPE_CHECKING:
    from ..upgrade import UpgradeHandle

__all__ = ["CLOSE_TIMEOUT", "REASONS", "CloseReason", "ConnectionClosed", "drain_peer",
           "end_sending", "fixed_reason"]

#: Seconds to wait for the peer's close frame (and its end of the connection).
CLOSE_TIMEOUT = 5.0

#: The close reasons the daemon sends: fixed short texts, never parser detail
#: (which goes to the ``mhd2`` logger at debug level).
REASONS = {
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1007: "invalid UTF-8",
    1008: "policy violation",
    1009: "message too big",
    1010: "extension required",
    1011: "internal error",
    1012: "service restart",
}


def fixed_reason(code: int) -> str:
    """The reason text the daemon sends with close *code* (empty for an application's)."""
    return REASONS.get(code, "protocol error" if code < 3000 else "")


class CloseReason:
    """Why a WebSocket closed: the close *code* (RFC 6455 §7.4) and *reason* text.

    ``1006`` (abnormal closure) means the connection ended without a close frame.
    """

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str = "") -> None:
        self.code = code
        self.reason = reason

    def __repr__(self) -> str:
        return f"CloseReason(code={self.code}, reason={self.reason!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CloseReason):
            return NotImplemented
        return (self.code, self.reason) == (other.code, other.reason)

    def __hash__(self) -> int:
        return hash((self.code, self.reason))


class ConnectionClosed(Exception):
    """The WebSocket is closed; :attr:`reason` is its :class:`CloseReason`."""

    def __init__(self, reason: CloseReason) -> None:
        super().__init__(f"the WebSocket is closed: {reason.code} {reason.reason}".rstrip())
        self.reason = reason


_GONE = (UpgradedError, trio.ClosedResourceError, trio.BrokenResourceError)


async def end_sending(urh: UpgradeHandle) -> None:
    """Signal the end of what the daemon sends (FIN), if the connection still takes it."""
    try:
        await urh.send_eof()
    except _GONE:
        pass


async def drain_peer(urh: UpgradeHandle) -> None:
    """Read and *drop* what the peer still sends -- nothing is parsed or kept --
    until its end of the connection or :data:`CLOSE_TIMEOUT`: closing then does
    not reset the connection under the daemon's close frame."""
    with trio.move_on_after(CLOSE_TIMEOUT):
        try:
            while await urh.upgraded_recv(DRAIN_RECV_SIZE):
                pass
        except _GONE:
            pass
