"""
A pure scanner of the client's HTTP/2 byte stream, run before C{h2} sees it.

C{h2} assembles a header block (HEADERS plus any CONTINUATION frames) only
once it is complete, so on its own it can say neither how long a client has
been sending one nor how large it has grown.  This scanner reads only the
9-byte frame headers (RFC 9113 section 4.1: 24-bit length, type, flags,
31-bit stream id) and skips payloads, so it costs a few operations per frame
and holds at most 8 bytes of a split frame header.

A header block is "open" from the frame header of a HEADERS frame until the
last payload byte of the frame that carries END_HEADERS, which covers both
a block kept open by slow CONTINUATION frames and a single HEADERS frame
whose payload trickles in.
"""

from __future__ import annotations

# The client connection preface (RFC 9113 section 3.4), checked by h2.
PREFACE_LENGTH = 24
FRAME_HEADER_LENGTH = 9

TYPE_HEADERS = 0x1
TYPE_CONTINUATION = 0x9
FLAG_END_HEADERS = 0x4

# Raw payload bytes (HPACK-compressed, padding included) one header block
# may take.  h2 bounds the decoded list at 64 KiB too, but only once the
# whole block is in; this bound holds while it arrives.
MAX_HEADER_BLOCK_BYTES = 64 * 1024


class FrameScanner:
    """
    Follows frame boundaries of one connection's inbound bytes.

    After each L{feed}: C{in_header_block} says whether a header block is
    open (the caller runs the header deadline while it is), and
    C{oversized} whether a block has grown past C{max_header_block} (the
    caller then closes the connection; the scanner stops following).
    """

    def __init__(
        self, max_header_block: int = MAX_HEADER_BLOCK_BYTES, preface: int = PREFACE_LENGTH
    ) -> None:
        self.max_header_block = max_header_block
        self._skip = preface  # bytes of the current payload (or preface) still to come
        self._head = b""  # a frame header split across reads
        self._ends_block = False  # the frame being skipped carries END_HEADERS
        self.in_header_block = False
        self.header_block_bytes = 0
        self.oversized = False
        self.frames = 0  # frame headers seen, for tests

    def feed(self, data: bytes) -> None:
        if self.oversized:
            return
        view = memoryview(data)
        at = 0
        end = len(data)
        while at < end:
            skip = self._skip
            if skip:
                taken = min(skip, end - at)
                at += taken
                self._skip = skip - taken
                if self._skip == 0 and self._ends_block:
                    self._ends_block = False
                    self.in_header_block = False
                    self.header_block_bytes = 0
                continue
            need = FRAME_HEADER_LENGTH - len(self._head)
            if end - at < need:
                self._head += bytes(view[at:end])
                return
            if self._head:
                header = self._head + bytes(view[at : at + need])
                self._head = b""
            else:
                header = bytes(view[at : at + need])
            at += need
            self._frame(header)
            if self.oversized:
                return

    def _frame(self, header: bytes) -> None:
        self.frames += 1
        length = int.from_bytes(header[0:3], "big")
        kind = header[3]
        flags = header[4]
        if kind == TYPE_HEADERS or (kind == TYPE_CONTINUATION and self.in_header_block):
            self.in_header_block = True
            self.header_block_bytes += length
            if self.header_block_bytes > self.max_header_block:
                self.oversized = True
                return
            ends = bool(flags & FLAG_END_HEADERS)
            if length == 0 and ends:
                self.in_header_block = False
                self.header_block_bytes = 0
            else:
                self._ends_block = ends
        self._skip = length
