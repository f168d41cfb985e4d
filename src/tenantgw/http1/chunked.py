"""
The chunked transfer coding (RFC 9112 section 7.1), both ways.

The decoder is strict where a lenient one lets a gateway and a backend read
different bodies: a chunk size is 1 to 16 hex digits and at most
L{MAX_BODY_LENGTH}; chunk extensions must follow the grammar (any junk is
refused, a quoted-pair is accepted); a bare LF anywhere is refused at once
rather than waited on; the CRLF after chunk data must be exactly that; and
every trailer line must be a well-formed field line (so data after the last
chunk cannot be swallowed as a "trailer"), within L{MAX_TRAILER_BYTES} and
L{MAX_TRAILER_COUNT}.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tenantgw.http1.fields import TCHAR
from tenantgw.http1.head import (
    MAX_BODY_LENGTH,
    MAX_HEADER_COUNT,
    field_line_status,
    serialize_fields,
)

# Longest chunk-size line (without its CRLF), extensions included.
MAX_CHUNK_LINE_BYTES = 1024
MAX_TRAILER_BYTES = 64 * 1024
MAX_TRAILER_COUNT = MAX_HEADER_COUNT

# chunk-size [ chunk-ext ] CRLF, with
# chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ).
_TOKEN = rb"[" + TCHAR + rb"]+"
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
CHUNK_LINE = re.compile(
    rb"\A([0-9A-Fa-f]{1,16})(?:[ \t]*;[ \t]*"
    + _TOKEN
    + rb"(?:[ \t]*=[ \t]*(?:"
    + _TOKEN
    + rb"|"
    + _QUOTED
    + rb"))?)*\Z"
)

_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class ChunkedError(ValueError):
    """The chunked body is malformed: the request is a 400, the connection ends."""

    status = 400


def chunk_size(line: bytes) -> int:
    """The size a chunk-size line (without its CRLF) declares; ChunkedError if malformed."""
    if len(line) > MAX_CHUNK_LINE_BYTES:
        raise ChunkedError("chunk-size line too long")
    match = CHUNK_LINE.match(line)
    if match is None:
        raise ChunkedError("malformed chunk-size line")
    size = int(match.group(1), 16)
    if size > MAX_BODY_LENGTH:
        raise ChunkedError("chunk size too large")
    return size


class ChunkedDecoder:
    """
    Decodes a chunked body from reads split anywhere.  L{feed} returns the
    body bytes each read completes (never an empty piece); once the last
    chunk and trailer section are in, L{done} is true, L{trailers} holds the
    trailer fields and L{rest} the bytes that followed (the next request).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._state = _SIZE
        self._left = 0
        self._trailer_bytes = 0
        self.trailers: list[tuple[bytes, bytes]] = []
        self.rest = b""

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes) -> list[bytes]:
        """The body bytes C{data} completes; ChunkedError on the first malformed byte."""
        if self._state == _DONE:
            self.rest += data
            return []
        out: list[bytes] = []
        if self._state == _DATA and not self._buffer:
            # The common case, a read inside a chunk: no copy into the buffer.
            take = self._left
            if len(data) <= take:
                self._left -= len(data)
                if not self._left:
                    self._state = _DATA_END
                return [data] if data else out
            out.append(data[:take])
            self._left = 0
            self._state = _DATA_END
            data = data[take:]
        buffer = self._buffer
        buffer += data
        while buffer:
            state = self._state
            if state == _DATA:
                take = min(self._left, len(buffer))
                out.append(bytes(buffer[:take]))
                del buffer[:take]
                self._left -= take
                if not self._left:
                    self._state = _DATA_END
            elif state == _DATA_END:
                if buffer[:1] != b"\r" or (len(buffer) > 1 and buffer[1:2] != b"\n"):
                    raise ChunkedError("chunk data not followed by CRLF")
                if len(buffer) < 2:
                    break
                del buffer[:2]
                self._state = _SIZE
            elif state == _SIZE:
                eol = buffer.find(b"\r\n")
                line = bytes(buffer if eol < 0 else buffer[:eol])
                if b"\n" in line:
                    raise ChunkedError("bare LF in a chunk-size line")
                if eol < 0:
                    if len(line) - line.endswith(b"\r") > MAX_CHUNK_LINE_BYTES:
                        raise ChunkedError("chunk-size line too long")
                    break
                size = chunk_size(line)
                del buffer[: eol + 2]
                self._left = size
                self._state = _DATA if size else _TRAILER
            elif state == _TRAILER:
                if not self._trailer_line(buffer):
                    break
            else:  # _DONE: what follows the body
                self.rest += bytes(buffer)
                buffer.clear()
        return out

    def _trailer_line(self, buffer: bytearray) -> bool:
        """Takes one trailer line (or the end) from C{buffer}; False: wait for more."""
        eol = buffer.find(b"\r\n")
        line = bytes(buffer if eol < 0 else buffer[:eol])
        if b"\n" in line:
            raise ChunkedError("bare LF in the trailer section")
        if eol < 0:
            if self._trailer_bytes + len(line) + 1 > MAX_TRAILER_BYTES:
                raise ChunkedError("trailer section too large")
            return False
        del buffer[: eol + 2]
        if not line:
            self._state = _DONE
            return True
        self._trailer_bytes += len(line) + 2
        if self._trailer_bytes > MAX_TRAILER_BYTES or len(self.trailers) >= MAX_TRAILER_COUNT:
            raise ChunkedError("trailer section too large")
        if field_line_status(line):
            raise ChunkedError("malformed trailer line")
        name, _, value = line.partition(b":")
        self.trailers.append((name, value.strip(b" \t")))
        return True


def encode_chunk(data: bytes) -> bytes:
    """One chunk; empty C{data} encodes as nothing, since a zero chunk would end the body."""
    if not data:
        return b""
    return b"%x\r\n%s\r\n" % (len(data), data)


def encode_last_chunk(trailers: Iterable[tuple[bytes, bytes]] = ()) -> bytes:
    """The last chunk and the trailer section; a ValueError for a trailer that would not parse."""
    return b"0\r\n" + serialize_fields(trailers) + b"\r\n"


def encode_chunked(pieces: Iterable[bytes], trailers: Iterable[tuple[bytes, bytes]] = ()) -> bytes:
    """A whole chunked body, one chunk per non-empty piece."""
    return b"".join(encode_chunk(piece) for piece in pieces) + encode_last_chunk(trailers)
