"""
An HPACK encoder for the header blocks we send, without a dynamic table.

The C{hpack} library's encoder searches its dynamic table linearly for
every field, inserts every field it sends, and logs each one: profiled
under C{h2load -c10 -m10}, encoding response heads was a quarter of the
HTTP/2 front's time.  This one emits each field either as an index into the
static table (RFC 7541 appendix A) or as a literal without indexing
(section 6.2.2), and remembers the encoding of recurring fields (content
types, server, status), so a typical response head is a few dict lookups
and one join.

What it gives up is compression of repeated custom fields across requests,
a few dozen bytes per response.  It never inserts into the dynamic table,
so the first block it sends starts with a dynamic table size update to 0
(section 6.3): the peer's decoder then holds no table for us, whatever
SETTINGS_HEADER_TABLE_SIZE it advertises, and no later update is ever
needed.
"""

from __future__ import annotations

from collections.abc import Iterable

from hpack.table import HeaderTable

_FULL: dict[tuple[bytes, bytes], int] = {}
_NAMES: dict[bytes, int] = {}
for _index, (_name, _value) in enumerate(HeaderTable.STATIC_TABLE, start=1):
    _FULL.setdefault((_name, _value), _index)
    _NAMES.setdefault(_name, _index)

# Fields whose values never repeat are not remembered.
_UNIQUE = frozenset({b"x-request-id", b"date", b"content-length", b"etag", b"last-modified"})
_MEMO_MAX = 4096


def _integer(value: int, prefix_bits: int, first: int) -> bytes:
    """RFC 7541 section 5.1, with C{first} holding the bits above the prefix."""
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
    return _integer(len(data), 7, 0) + data


def encode_field(name: bytes, value: bytes) -> bytes:
    index = _FULL.get((name, value))
    if index is not None:
        return _integer(index, 7, 0x80)  # indexed field (section 6.1)
    index = _NAMES.get(name)
    if index is not None:
        return _integer(index, 4, 0x00) + _string(value)  # literal, indexed name
    return b"\x00" + _string(name) + _string(value)  # literal, new name


class StaticEncoder:
    """Drop-in for C{hpack.Encoder} where C{h2} uses it (C{encode}, C{header_table_size})."""

    def __init__(self) -> None:
        self._memo: dict[tuple[bytes, bytes], bytes] = {}
        self._first = True
        # h2 sets this when the peer's SETTINGS_HEADER_TABLE_SIZE changes;
        # with no dynamic table in use it changes nothing.
        self.header_table_size = 0

    def encode(self, headers: Iterable[tuple[bytes, bytes]], huffman: bool = True) -> bytes:
        memo = self._memo
        parts = []
        if self._first:
            self._first = False
            parts.append(b"\x20")  # dynamic table size update: 0
        for field in headers:
            name, value = field[0], field[1]
            if isinstance(name, str):  # h2 passes bytes here, but be exact
                name = name.encode("utf-8")
            if isinstance(value, str):
                value = value.encode("utf-8")
            key = (name, value)
            encoded = memo.get(key)
            if encoded is None:
                encoded = encode_field(name, value)
                if name not in _UNIQUE:
                    if len(memo) >= _MEMO_MAX:
                        memo.clear()
                    memo[key] = encoded
            parts.append(encoded)
        return b"".join(parts)
