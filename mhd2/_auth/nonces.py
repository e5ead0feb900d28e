"""The Digest nonce registry: one per daemon, a plain object.

A nonce is ``hex(time ms) + hex(salt) + hex(HMAC-SHA-256(digest_auth_random,
time|salt|realm))``, so only a daemon with this random can make one; it
expires after ``digest_auth_nonce_timeout`` seconds.  Each issued nonce has
an entry in a bounded map (``digest_auth_map_size``, oldest evicted first)
that records the nonce counts (``nc``) already used, so a replayed ``nc`` is
refused (RFC 7616 §3.4: "the server … can detect request replays by
maintaining its own copy of this count").

The registry does no I/O and takes no lock: its owner (the daemon) calls it
from one trio run, so a check followed by a record is atomic.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ..enums import DigestAuthResult, StatusCode
from ..errors import UsageError

__all__ = ["NonceRegistry", "registry_for"]

_TS_HEX = 12
_SALT_HEX = 16
_MAC_HEX = 32
NONCE_LEN = _TS_HEX + _SALT_HEX + _MAC_HEX
#: How far ahead of the clock a nonce's time may be (clock steps) before it is wrong.
_FUTURE_SLACK_MS = 2000
#: Nonce counts below the highest seen that are still remembered (out-of-order use).
NC_WINDOW = 64
_HEX = frozenset("0123456789abcdef")


class NonceRegistry:
    """Per-daemon nonce state: the key, the timeout and the ``nc`` replay map.

    Args:
        random: the daemon's ``digest_auth_random`` (the HMAC key).
        nonce_timeout: seconds a nonce stays valid (``digest_auth_nonce_timeout``).
        map_size: how many issued nonces are tracked at once
            (``digest_auth_map_size``); issuing one more evicts the oldest
            (whose clients then get ``NONCE_STALE`` and retry).
        max_nc: the default largest ``nc`` accepted (``digest_auth_max_nc``).
        clock: time source in seconds (tests may pass their own).

    Raises:
        UsageError: *random* is empty.
    """

    __slots__ = ("_clock", "_key", "_map", "map_size", "max_nc", "nonce_timeout")

    def __init__(self, random: bytes, *, nonce_timeout: float = 300.0, map_size: int = 1000,
                 max_nc: int = 1000, clock: Callable[[], float] = time.time) -> None:
        if not random:
            raise UsageError("digest auth needs the daemon option digest_auth_random "
                             "(e.g. secrets.token_bytes(32))", StatusCode.AUTH_DIGEST_UNSUPPORTED)
        self._key = bytes(random)
        self.nonce_timeout = nonce_timeout
        self.map_size = map_size
        self.max_nc = max_nc
        self._clock = clock
        # nonce -> [highest nc used, bitmask of the NC_WINDOW counts below it]
        self._map: OrderedDict[str, list[int]] = OrderedDict()

    @classmethod
    def from_options(cls, options: Any) -> NonceRegistry | None:
        """The registry for a daemon's options, or ``None`` when digest auth is off.

        *options* is a :class:`~mhd2.DaemonOptions` (read: ``digest_auth_random``,
        ``digest_auth_nonce_timeout``, ``digest_auth_map_size``,
        ``digest_auth_max_nc``).
        """
        if not options.digest_auth_random:
            return None
        return cls(options.digest_auth_random, nonce_timeout=options.digest_auth_nonce_timeout,
                   map_size=options.digest_auth_map_size, max_nc=options.digest_auth_max_nc)

    def __len__(self) -> int:
        return len(self._map)

    def _mac(self, ts_salt: str, realm: str) -> str:
        msg = ts_salt.encode("ascii") + b"\x00" + realm.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:_MAC_HEX]

    def new_nonce(self, realm: str) -> str:
        """Make a fresh nonce for *realm* and start tracking it."""
        now_ms = int(self._clock() * 1000)
        ts_salt = f"{now_ms & 0xFFFFFFFFFFFF:012x}{secrets.token_hex(_SALT_HEX // 2)}"
        nonce = ts_salt + self._mac(ts_salt, realm)
        expired_before = now_ms - int(self.nonce_timeout * 1000)
        while self._map:
            oldest = next(iter(self._map))
            if len(self._map) < self.map_size and int(oldest[:_TS_HEX], 16) >= expired_before:
                break
            del self._map[oldest]
        self._map[nonce] = [0, 0]
        return nonce

    def check(self, nonce: str, realm: str, nc: int | None, max_nc: int) -> DigestAuthResult:
        """Whether *nonce* with count *nc* may be used now (nothing is recorded).

        Returns:
            ``OK``, ``NONCE_WRONG`` (not made by this daemon for this realm)
            or ``NONCE_STALE`` (expired, evicted, ``nc`` too large or already used).
        """
        if len(nonce) != NONCE_LEN or not _HEX.issuperset(nonce):
            return DigestAuthResult.NONCE_WRONG
        if not hmac.compare_digest(nonce[_TS_HEX + _SALT_HEX:],
                                   self._mac(nonce[:_TS_HEX + _SALT_HEX], realm)):
            return DigestAuthResult.NONCE_WRONG
        now_ms = int(self._clock() * 1000) & 0xFFFFFFFFFFFF
        age = now_ms - int(nonce[:_TS_HEX], 16)
        if age < -_FUTURE_SLACK_MS:
            return DigestAuthResult.NONCE_WRONG
        if age > self.nonce_timeout * 1000:
            return DigestAuthResult.NONCE_STALE
        state = self._map.get(nonce)
        if state is None:
            return DigestAuthResult.NONCE_STALE
        if nc is None:  # RFC 2069: no nc, so a nonce is good for one use only
            return DigestAuthResult.OK if state[0] == 0 else DigestAuthResult.NONCE_STALE
        if nc > max_nc:
            return DigestAuthResult.NONCE_STALE
        highest, mask = state
        if nc > highest:
            return DigestAuthResult.OK
        if nc == highest:
            return DigestAuthResult.NONCE_STALE
        back = highest - nc - 1
        if back >= NC_WINDOW or mask >> back & 1:
            return DigestAuthResult.NONCE_STALE
        return DigestAuthResult.OK

    def record(self, nonce: str, nc: int | None) -> None:
        """Mark *nc* of *nonce* as used (after a successful check)."""
        state = self._map.get(nonce)
        if state is None:
            return
        nc = 1 if nc is None else nc
        highest, mask = state
        if nc > highest:
            shift = nc - highest
            if highest:
                mask = (mask << shift) | (1 << (shift - 1))
            state[0], state[1] = nc, mask & ((1 << NC_WINDOW) - 1)
        else:
            state[1] = mask | (1 << (highest - nc - 1))


def registry_for(registry: NonceRegistry | None) -> NonceRegistry:
    """The daemon's nonce registry, *registry* (``Shared.nonces``, made from its
    options, as a request's exchange gives it), if Digest auth is on.

    Raises:
        UsageError: digest auth is disabled (no ``digest_auth_random``).
    """
    if registry is None:
        raise UsageError(
            "digest auth is disabled: start the Daemon with digest_auth_random="
            "secrets.token_bytes(32) (MHD2's MHD_D_O_RANDOM_ENTROPY)",
            StatusCode.AUTH_DIGEST_UNSUPPORTED)
    return registry
