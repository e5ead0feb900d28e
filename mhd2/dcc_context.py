"""What a dynamic content creator is called with: :class:`DCCContext`.

Its own module, below :mod:`mhd2.body_source` (whose ``DynamicContentCreator``
type names it) and above :mod:`mhd2.request` (which it names): the actions
a creator returns are :mod:`mhd2.dcc`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._slot import DCCSlot

if TYPE_CHECKING:
    from .request import Request

__all__ = ["DCCContext"]


class DCCContext:
    """Passed to a dynamic content creator: which request, and its one action slot."""

    __slots__ = ("_slot", "request")

    def __init__(self, request: Request) -> None:
        self.request = request
        self._slot = DCCSlot()
