"""What a request sees of the engine state behind it: :class:`ExchangeView`.

The engine's :class:`mhd2.exchange.Exchange` is the one implementation; this
narrow protocol is all that :class:`~mhd2.Request` and the action functions
(which sit below the exchange) may use of it, so they never import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._auth.nonces import NonceRegistry
    from ._slot import Slot
    from .options import DaemonOptions
    from .post_field import PostField

__all__ = ["ExchangeView"]


class ExchangeView(Protocol):
    """What a :class:`Request` -- and the action functions, which are made from a
    request -- read and do of the engine state behind it (an
    :class:`mhd2.exchange.Exchange`).

    Everything here is read-only but the two calls that ask for something
    (suspend, a connection timeout); the engine alone changes the rest.
    """

    @property
    def options(self) -> DaemonOptions:
        """The daemon's options."""

    @property
    def nonces(self) -> NonceRegistry | None:
        """The daemon's Digest nonce registry (``None``: Digest auth is off)."""

    @property
    def action_slot(self) -> Slot:
        """The request callback's action slot."""

    @property
    def upload_slot(self) -> Slot:
        """The upload callbacks' action slot."""

    def mark_suspended(self) -> None:
        """A suspend action was made (raises if the daemon forbids suspending)."""

    @property
    def body_read(self) -> bool:
        """The request body was read to its end."""

    @property
    def upload_received(self) -> int:
        """Bytes of the request body received so far."""

    @property
    def footers(self) -> Sequence[tuple[str, str]]:
        """The request's trailer fields (once its chunked body was read)."""

    @property
    def post_fields(self) -> Sequence[PostField]:
        """The form fields the POST parser kept."""

    @property
    def client_address(self) -> tuple[str, int] | None:
        """The client a trusted proxy named (``None``: the connection's own)."""

    @property
    def scheme(self) -> str:
        """``"https"`` or ``"http"``."""

    @property
    def status(self) -> int | None:
        """The status of the response head sent (``None`` before)."""

    @property
    def body_bytes_sent(self) -> int:
        """Response body bytes written so far."""

    @property
    def started_at(self) -> float:
        """``time.monotonic()`` when the request head was parsed."""

    @property
    def connection_timeout(self) -> float | None:
        """The inactivity timeout of the request's connection (or HTTP/2 stream)."""

    def set_connection_timeout(self, seconds: float | None) -> None:
        """Override that timeout."""
