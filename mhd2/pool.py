"""The daemon's shared budget for in-memory request bodies (``large_pool_size``).

Full uploads and the form parser's in-memory fields draw from one pool per
daemon (MHD's ``MHD_OPTION_LARGE_POOL_SIZE``), so that many large uploads at
once cannot exhaust memory: what does not fit is refused (413) instead.
"""

from __future__ import annotations

__all__ = ["LargePool"]


class LargePool:
    """A byte budget shared by all requests of a daemon.

    Args:
        size: the budget in bytes.
    """

    __slots__ = ("in_use", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.in_use = 0

    def try_reserve(self, nbytes: int) -> bool:
        """Reserve *nbytes* if they fit in what is left; return whether they did."""
        if nbytes < 0 or self.in_use + nbytes > self.size:
            return False
        self.in_use += nbytes
        return True

    def release(self, nbytes: int) -> None:
        """Give back *nbytes* reserved earlier."""
        self.in_use = max(0, self.in_use - nbytes)

    @property
    def available(self) -> int:
        """Bytes that can still be reserved."""
        return self.size - self.in_use
