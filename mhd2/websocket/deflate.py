"""permessage-deflate (RFC 7692) for ``action_websocket``: offers and a bounded inflater.

wsproto inflates without a limit (a small frame can decompress to gigabytes);
:class:`BoundedDeflate` stops at ``max_message_size``.  Offers with unknown,
duplicated or invalid parameters are declined, as RFC 7692 §7 requires.
"""

from __future__ import annotations

import logging
import re
import zlib
from typing import Any

from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason as _WsCode
from wsproto.frame_protocol import FrameDecoder, FrameProtocol

__all__ = ["BoundedDeflate", "negotiate_deflate"]

logger = logging.getLogger("mhd2")


class BoundedDeflate(PerMessageDeflate):
    """permessage-deflate whose inflation stops at *max_message_size* (no decompression bombs)."""

    def __init__(self, max_message_size: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_message_size = max_message_size
        self._produced = 0

    def frame_inbound_header(self, proto: FrameDecoder | FrameProtocol, opcode: Any, rsv: Any,
                             payload_length: int) -> Any:
        if self._inbound_compressed is None:
            self._produced = 0  # a new message
        return super().frame_inbound_header(proto, opcode, rsv, payload_length)

    def frame_inbound_payload_data(self, proto: FrameDecoder | FrameProtocol,
                                   data: bytes) -> bytes | _WsCode:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        assert self._decompressor is not None
        return self._inflate(data)

    def _inflate(self, data: bytes) -> bytes | _WsCode:
        assert self._decompressor is not None
        room = self.max_message_size - self._produced
        try:
            out = self._decompressor.decompress(data, room + 1)
        except zlib.error:
            return _WsCode.INVALID_FRAME_PAYLOAD_DATA
        self._produced += len(out)
        if len(out) > room:
            return _WsCode.MESSAGE_TOO_BIG
        return out

    def frame_inbound_complete(self, proto: FrameDecoder | FrameProtocol,
                               fin: bool) -> bytes | _WsCode | None:
        if not fin or not self._inbound_is_compressible or not self._inbound_compressed:
            return super().frame_inbound_complete(proto, fin)
        out = self._inflate(b"\x00\x00\xff\xff")
        if isinstance(out, _WsCode):
            return out
        if self.client_no_context_takeover:
            self._decompressor = None
        self._inbound_compressed = None
        return out


#: The parameters of a permessage-deflate offer (RFC 7692 §7.1) and whether
#: each takes a value: ``True`` required, ``None`` optional, ``False`` none.
_DEFLATE_PARAMS: dict[str, bool | None] = {
    "server_no_context_takeover": False,
    "client_no_context_takeover": False,
    "server_max_window_bits": True,
    "client_max_window_bits": None,
}
_WINDOW_BITS = re.compile(r"[1-9][0-9]?")


def _deflate_offer_params(offer: str) -> dict[str, str | None] | None:
    """The parameters of one permessage-deflate offer, or ``None`` to decline it.

    RFC 7692 §7: "A server MUST decline an extension negotiation offer for
    this extension if any of the following conditions are met: The
    negotiation offer contains an extension parameter not defined for use in
    an offer.  The negotiation offer contains an extension parameter with an
    invalid value.  The negotiation offer contains multiple extension
    parameters with the same name."
    """
    params: dict[str, str | None] = {}
    for item in offer.split(";")[1:]:
        name, eq, raw = item.partition("=")
        name = name.strip()
        value: str | None = None
        if eq:
            value = raw.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]  # a quoted-string value (RFC 7692 §7.1.2.1)
        if name not in _DEFLATE_PARAMS or name in params:
            return None
        takes = _DEFLATE_PARAMS[name]
        if (takes is False and eq) or (takes is True and value is None):
            return None
        if value is not None and not (_WINDOW_BITS.fullmatch(value) and 8 <= int(value) <= 15):
            return None
        params[name] = value
    return params


def negotiate_deflate(offers: list[str], max_message_size: int) -> tuple[BoundedDeflate, str] | None:
    """Accept the first acceptable permessage-deflate offer, in the client's order."""
    for header in offers:
        for offer in header.split(","):
            name = offer.split(";", 1)[0].strip()
            if name != PerMessageDeflate.name:
                continue
            params = _deflate_offer_params(offer)
            if params is None:
                logger.debug("mhd2: declined the permessage-deflate offer %r", offer.strip())
                continue
            canonical = "; ".join([name] + [k if v is None else f"{k}={v}"
                                            for k, v in params.items()])
            ext = BoundedDeflate(max_message_size)
            try:
                accepted = ext.accept(canonical)
            except ValueError:
                accepted = None
            if accepted is None:
                continue
            value = name if accepted is True or not accepted else f"{name}; {accepted}"
            return ext, value
    return None


