"""HPACK for what the server sends: header blocks that never touch the dynamic table.

Sans-IO.  :class:`StaticEncoder` takes the place of ``h2``'s HPACK encoder on
mhd2's connections.  It encodes every field with the static table and string
literals only (RFC 7541 §6.1, §6.2.2), as nginx does for its responses:

* a field in the static table whole (``:status: 200``) is one byte;
* any other field is a "Literal Header Field without Indexing", its name
  indexed when the static table has it.

Nothing is ever added to the dynamic table, so no field's encoding depends on
what came before or on the connection: each field is encoded once and its
bytes are kept (one bounded cache for the process) -- a response's block is
a join of cached pieces.  Strings are
sent as they are (no Huffman coding: that would be a loop over every byte in
Python).  The client's decoder is kept in step in the one way RFC 7541 asks
of an encoder that does not index: after a change of
``SETTINGS_HEADER_TABLE_SIZE``, the next block starts with a dynamic table
size update (§4.2).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hpack import Encoder
from hpack.table import HeaderTable

__all__ = ["CACHED_FIELD_BYTES", "FIELD_CACHE_SIZE", "StaticEncoder", "encode_field", "encode_integer"]

#: Encoded fields kept; the cache is emptied when it is full (``Date`` changes
#: every second, ``Content-Length`` with every size).
FIELD_CACHE_SIZE = 512
#: Only fields whose encoding is at most this long are kept (the cache holds
#: at most FIELD_CACHE_SIZE * CACHED_FIELD_BYTES = 128 KiB).
CACHED_FIELD_BYTES = 256

#: (name, value) -> its encoding; shared by every connection of the process.
_cache: dict[tuple[bytes, bytes], bytes] = {}

# RFC 7541 Appendix A: the static table, indexed from 1.
_FULL: dict[tuple[bytes, bytes], int] = {}
_NAMES: dict[bytes, int] = {}
for _index, (_name, _value) in enumerate(HeaderTable.STATIC_TABLE, start=1):
    _FULL.setdefault((_name, _value), _index)
    _NAMES.setdefault(_name, _index)


def encode_integer(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """An HPACK integer (RFC 7541 §5.1) in a *prefix_bits* prefix, OR-ed into *first*.

    "If the integer value is small enough, i.e., strictly less than 2^N-1, it
    is encoded within the N-bit prefix.  Otherwise, all the bits of the prefix
    are set to 1, and the value, decreased by 2^N-1, is encoded using a list
    of one or more octets."
    """
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(data: bytes) -> bytes:
    # RFC 7541 §5.2: "H: A one-bit flag ... String Length: The number of octets
    # used to encode the string literal, encoded as an integer with a 7-bit
    # prefix"; H = 0, the octets as they are.
    return encode_integer(len(data), 7) + data


def encode_field(name: bytes, value: bytes) -> bytes:
    """One field as the static table allows: indexed (§6.1) or a literal without
    indexing (§6.2.2), with an indexed name when the table has the name."""
    index = _FULL.get((name, value))
    if index is not None:
        # §6.1: "An indexed header field starts with the '1' 1-bit pattern,
        # followed by the index of the matching header field, represented as
        # an integer with a 7-bit prefix".
        return encode_integer(index, 7, 0x80)
    index = _NAMES.get(name)
    if index is not None:
        # §6.2.2: "starts with the '0000' 4-bit pattern ... the header field
        # name [is] represented using the index of an existing entry".
        return encode_integer(index, 4) + _string(value)
    # §6.2.2, Figure 9: "Literal Header Field without Indexing -- New Name".
    return b"\x00" + _string(name) + _string(value)


class StaticEncoder(Encoder):
    """``h2``'s encoder replaced: stateless field encodings, cached (see the module).

    ``h2`` calls :meth:`encode` for every header block it sends and sets
    :attr:`header_table_size` when the client's ``SETTINGS_HEADER_TABLE_SIZE``
    is acknowledged.
    """

    def __init__(self) -> None:
        super().__init__()
        self._table_size = 4096
        self._size_update: int | None = None

    @property
    def header_table_size(self) -> int:
        """The dynamic table size the client's decoder allows (never used)."""
        return self._table_size

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        if value != self._table_size:
            self._table_size = value
            # RFC 7541 §4.2: "This dynamic table size update MUST occur at the
            # beginning of the first header block following the change".
            self._size_update = value

    @property
    def owes_size_update(self) -> bool:
        """The next block must begin with a dynamic table size update."""
        return self._size_update is not None

    def encode(self, headers: Iterable[Any], huffman: bool = True) -> bytes:
        """The header block of *headers* (``(name, value)`` pairs of lower-case bytes)."""
        cache = _cache
        parts = []
        if self._size_update is not None:
            # §6.3: "A dynamic table size update starts with the '001' 3-bit
            # pattern, followed by the new maximum size, represented as an
            # integer with a 5-bit prefix".
            parts.append(encode_integer(self._size_update, 5, 0x20))
            self._size_update = None
        for field in headers:
            key = (field[0], field[1])
            encoded = cache.get(key)
            if encoded is None:
                encoded = encode_field(*key)
                if len(encoded) <= CACHED_FIELD_BYTES:
                    if len(cache) >= FIELD_CACHE_SIZE:
                        cache.clear()
                    cache[key] = encoded
            parts.append(encoded)
        return b"".join(parts)
