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
    return name_prefix(name) + _string(value)


_PREFIXES: dict[bytes, bytes] = {}


def name_prefix(name: bytes) -> bytes:
    """
    What precedes the value of a literal without indexing: an index into the
    static table for the name (section 6.2.2, 4-bit prefix), or the name
    itself as a literal.  Remembered per name (names are few and recur).
    """
    prefix = _PREFIXES.get(name)
    if prefix is None:
        index = _NAMES.get(name)
        if index is not None:
            prefix = _integer(index, 4, 0x00)  # literal, indexed name
        else:
            prefix = b"\x00" + _string(name)  # literal, new name
        if len(_PREFIXES) < _MEMO_MAX:
            _PREFIXES[name] = prefix
    return prefix


class StaticEncoder:
    """
    Encodes our header blocks; C{encode} and C{header_table_size} are what
    C{h2} asks of C{hpack.Encoder}, for the frames it still builds itself.
    """

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
            encoded = memo.get(field)
            if encoded is None:
                name, value = field[0], field[1]
                if isinstance(name, str):  # h2 passes bytes here, but be exact
                    name = name.encode("utf-8")
                if isinstance(value, str):
                    value = value.encode("utf-8")
                if name in _UNIQUE:
                    # Never remembered; the value is short (an id, a date, a length).
                    size = len(value)
                    head = bytes((size,)) if size < 127 else _integer(size, 7, 0)
                    parts.append(name_prefix(name) + head + value)
                    continue
                encoded = encode_field(name, value)
                if len(memo) >= _MEMO_MAX:
                    memo.clear()
                memo[(name, value)] = encoded
            parts.append(encoded)
        return b"".join(parts)
