"""``Accept-Encoding`` and precompressed sidecar files (RFC 9110 §12.5.3; sans-IO).

A file ``x.css`` may have sidecars ``x.css.br``, ``x.css.zst`` and
``x.css.gz`` made ahead of time (``brotli -k``, ``zstd -k``, ``gzip -k``).
:func:`choose` picks the one the client prefers among those present.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Final

__all__ = ["SIDECARS", "choose", "parse_accept_encoding"]

#: content-coding → file-name suffix, in the server's order of preference
#: (smallest first) for ties in the client's q-values.
SIDECARS: Final = {"br": ".br", "zstd": ".zst", "gzip": ".gz"}

#: RFC 9110 §8.4.1.3: "A recipient SHOULD consider "x-gzip" to be equivalent to "gzip"."
_ALIASES: Final = {"x-gzip": "gzip"}

#: Longer Accept-Encoding values are not looked at past this many entries.
_MAX_ENTRIES: Final = 64


def _qvalue(text: str) -> float | None:
    """RFC 9110 §12.4.2: ``qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )``."""
    text = text.strip(" \t")
    whole, _dot, frac = text.partition(".")
    if whole not in ("0", "1") or len(frac) > 3:
        return None
    if frac and not (frac.isascii() and frac.isdigit()):
        return None
    if whole == "1" and frac.strip("0"):
        return None
    return float(whole + "." + (frac or "0"))


def parse_accept_encoding(value: str) -> dict[str, float]:
    """``{coding: q}`` from an ``Accept-Encoding`` value (lower-case codings).

    Entries with a malformed ``q`` are dropped; a coding listed twice keeps its
    first q. Never raises.
    """
    result: dict[str, float] = {}
    for entry in value.split(",", _MAX_ENTRIES)[:_MAX_ENTRIES]:
        coding, *params = entry.split(";")
        coding = _ALIASES.get(coding.strip(" \t").lower(), coding.strip(" \t").lower())
        if not coding:
            continue
        q: float | None = 1.0
        for param in params:
            name, eq, val = param.partition("=")
            if name.strip(" \t").lower() == "q":
                q = _qvalue(val) if eq else None
        if q is not None and coding not in result:
            result[coding] = q
    return result


def choose(accept_encoding: str | None, available: Iterable[str]) -> str | None:
    """The content-coding to send, or ``None`` for the file itself (identity).

    Args:
        accept_encoding: the request's ``Accept-Encoding`` (``None``: absent,
            which RFC 9110 §12.5.3 says means "no preference", so identity
            is sent).
        available: the codings whose sidecar exists (keys of :data:`SIDECARS`).

    A coding is acceptable when listed with q > 0, or not listed and ``*`` has
    q > 0. The highest q wins; on a tie, a coding beats identity and
    :data:`SIDECARS`' order decides between codings. Identity is the fallback
    even when the client said ``identity;q=0`` (§12.5.3: the server "SHOULD
    send a response without any content coding" rather than 415 for a GET).
    """
    if accept_encoding is None:
        return None
    prefs = parse_accept_encoding(accept_encoding)
    star = prefs.get("*")
    offered: Collection[str] = set(available)
    best: str | None = None
    best_q = 0.0
    for coding in SIDECARS:  # preference order
        if coding not in offered:
            continue
        q = prefs.get(coding, star if star is not None else 0.0)
        if q > best_q:
            best, best_q = coding, q
    if best is None:
        return None
    identity_q = prefs.get("identity", star if star is not None else 1.0)
    # "identity" is acceptable unless excluded; it wins only with a higher q
    return best if best_q >= identity_q else None
