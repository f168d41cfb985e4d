"""
h2's server connection with the hot path of a proxied request cut short.

Profiled under C{h2load -c10 -m10}, h2 and its libraries took about 40% of
the HTTP/2 front's time, most of it in objects made per call and thrown
away: a C{HeadersFrame} or C{DataFrame} and its C{Flags} per frame sent,
the header list copied through three generators per response head, a
C{repr(frame)} per received frame for a trace line nobody reads, and
HPACK decoding of request blocks that are byte for byte the ones of the
previous request.  L{ServerMachine} keeps h2 for everything it decides
(the connection and stream state machines, flow-control accounting,
every inbound frame) and replaces only how the answer's frames are built:

  - L{ServerMachine.send_response_headers} and L{ServerMachine.send_chunk}
    drive the same state machines h2's C{send_headers} and C{send_data}
    drive (so a closed or reset stream still raises C{StreamClosedError},
    and trailers without END_STREAM still raise C{ProtocolError}), take the
    same flow-control credit, and write the frame header themselves
    (L{frame_header});
  - large DATA payloads are kept as they are, not copied into h2's
    outbound bytearray: L{ServerMachine.take_output} hands out the pieces
    in order, for one C{writeSequence};
  - L{CachingDecoder} answers a header block that does not touch the HPACK
    dynamic table, seen before since the table last changed, from memory.

C{tests/test_http2_machine.py} checks each against h2's own methods, bytes
for bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import h2.connection
import h2.exceptions
from h2.connection import ConnectionInputs
from h2.errors import ErrorCodes
from h2.events import Event
from h2.exceptions import StreamClosedError, StreamIDTooLowError
from h2.stream import StreamInputs
from hpack import Decoder
from hyperframe.frame import Frame, RstStreamFrame

TYPE_DATA = 0x0
TYPE_HEADERS = 0x1
TYPE_CONTINUATION = 0x9
FLAG_END_STREAM = 0x1
FLAG_END_HEADERS = 0x4

# DATA payloads at least this large are handed to the transport as they
# are; smaller frames are appended to one buffer (a copy is cheaper than a
# list entry for them).
_KEEP_WHOLE = 4096


def frame_header(length: int, kind: int, flags: int, stream_id: int) -> bytes:
    """RFC 9113 section 4.1: 24-bit length, type, flags, reserved bit and 31-bit stream id."""
    return ((length << 48) | (kind << 40) | (flags << 32) | (stream_id & 0x7FFFFFFF)).to_bytes(
        9, "big"
    )


def header_frames(stream_id: int, block: bytes, end_stream: bool, max_frame: int) -> list[bytes]:
    """
    HEADERS, then CONTINUATION frames while the block is longer than
    C{max_frame}; END_STREAM on the first frame, END_HEADERS on the last
    (RFC 9113 section 6.2), as h2 splits them.
    """
    first_flags = FLAG_END_STREAM if end_stream else 0
    if len(block) <= max_frame:
        return [
            frame_header(len(block), TYPE_HEADERS, first_flags | FLAG_END_HEADERS, stream_id),
            block,
        ]
    pieces = [block[at : at + max_frame] for at in range(0, len(block), max_frame)]
    out = [frame_header(len(pieces[0]), TYPE_HEADERS, first_flags, stream_id), pieces[0]]
    last = len(pieces) - 1
    for index in range(1, len(pieces)):
        flags = FLAG_END_HEADERS if index == last else 0
        out.append(frame_header(len(pieces[index]), TYPE_CONTINUATION, flags, stream_id))
        out.append(pieces[index])
    return out


class CachingDecoder(Decoder):
    """
    C{hpack.Decoder} that remembers the decoding of blocks that leave the
    dynamic table as it was.

    A client sending the same request again (h2load, a browser polling,
    a gRPC client calling one method) sends the same block: every field an
    index into the static or dynamic table, or a literal without indexing.
    Such a block decodes to the same list for as long as the dynamic table
    does not change, so the memo is emptied whenever a block changes the
    table (an insert, an eviction, a size update), and is keyed on the
    block's bytes.  A block that changes the table is never remembered.

    Limits still hold for a remembered block: it passed
    C{max_header_list_size} and C{max_allowed_table_size} when it was
    decoded (the memo is emptied if either changes), and the table-size
    check runs on every block.
    Bounded: at most L{MEMO_ENTRIES} blocks of at most L{MEMO_BLOCK_BYTES}.
    """

    MEMO_ENTRIES = 64
    MEMO_BLOCK_BYTES = 2048

    def __init__(self, max_header_list_size: int = 2**16) -> None:
        super().__init__(max_header_list_size)
        self._memo: dict[bytes, list[Any]] = {}
        self._memo_limits = (self.max_header_list_size, self.max_allowed_table_size)
        self.hits = 0  # for tests
        # The last block was remembered: its fields are the memo's objects.
        self.last_hit = False

    def decode(self, data: bytes, raw: bool = False) -> Any:
        memo = self._memo
        limits = (self.max_header_list_size, self.max_allowed_table_size)
        if limits != self._memo_limits:
            memo.clear()  # remembered blocks were checked against other limits
            self._memo_limits = limits
        key = bytes(data) if raw else None
        if key is not None:
            found = memo.get(key)
            if found is not None:
                self._assert_valid_table_size()
                self.hits += 1
                self.last_hit = True
                return list(found)
        self.last_hit = False
        table = self.header_table
        entries = table.dynamic_entries
        count = len(entries)
        first = entries[0] if count else None
        size = table.maxsize
        headers = super().decode(data, raw)
        if (
            len(entries) != count
            or (entries[0] if entries else None) is not first
            or (table.maxsize != size)
        ):
            memo.clear()  # every remembered block assumed the old table
        elif key is not None and len(key) <= self.MEMO_BLOCK_BYTES:
            if len(memo) >= self.MEMO_ENTRIES:
                memo.clear()
            memo[key] = list(headers)
        return headers


class ServerMachine(h2.connection.H2Connection):
    """
    h2's connection, refusing a stream past the concurrency limit instead of
    failing the whole connection, and building the frames of answers itself
    (see the module docstring).

    h2 treats a HEADERS frame beyond SETTINGS_MAX_CONCURRENT_STREAMS as a
    connection error (C{TooManyStreamsError}, GOAWAY).  RFC 9113 section
    5.1.2 allows a stream error instead, which keeps every other stream of
    the connection alive.  The header block is still decoded (the HPACK
    state must follow every block), the stream is opened, then reset with
    REFUSED_STREAM, and its events are dropped.  This leans on h2's
    C{_receive_headers_frame}, pinned by the h2 version the project depends
    on and by C{tests/test_http2_edge.py}.
    """

    _lifted = False

    def __init__(self, config: Any = None) -> None:
        super().__init__(config=config)
        decoder = CachingDecoder(self.decoder.max_header_list_size)
        decoder.max_allowed_table_size = self.decoder.max_allowed_table_size
        self.decoder = decoder
        self.request_decoder = decoder  # the same, typed
        # Frames sent before those still in h2's own buffer.
        self._parts: list[bytes] = []

    @property
    def open_inbound_streams(self) -> int:
        return 0 if self._lifted else self._open_streams(1)

    def _receive_headers_frame(self, frame: Any) -> tuple[list[Any], list[Any]]:
        stream_id = frame.stream_id
        if stream_id in self.streams:
            return super()._receive_headers_frame(frame)
        if self._open_streams(1) < self.local_settings.max_concurrent_streams:
            # Checked: h2's own count (another walk over every stream) is skipped.
            self._lifted = True
            try:
                return super()._receive_headers_frame(frame)
            finally:
                self._lifted = False
        self._lifted = True
        try:
            frames, events = super()._receive_headers_frame(frame)
        finally:
            self._lifted = False
        stream = self.streams.get(stream_id)
        if stream is not None and not stream.closed:
            frames = frames + stream.reset_stream(ErrorCodes.REFUSED_STREAM)
        return frames, [e for e in events if getattr(e, "stream_id", None) != stream_id]

    def _receive_frame(self, frame: Frame) -> list[Event]:
        """
        h2's, without the C{repr(frame)} it formats for a trace line on
        every frame (its logger discards it).  The error handling is h2's.
        """
        events: list[Event]
        try:
            frames, events = self._frame_dispatch_table[frame.__class__](frame)
        except StreamClosedError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = e.error_code
                self._prepare_for_sending([f])
                events = e._events
            else:
                raise
        except StreamIDTooLowError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = ErrorCodes.STREAM_CLOSED
                self._prepare_for_sending([f])
                events = []
            elif self._stream_is_closed_by_end(e.stream_id):
                raise StreamClosedError(e.stream_id) from e
            else:
                raise
        else:
            self._prepare_for_sending(frames)
        return events

    # -- sending -----------------------------------------------------------------

    def send_response_headers(
        self, stream_id: int, headers: Sequence[tuple[bytes, bytes]], end_stream: bool = False
    ) -> None:
        """
        h2's C{send_headers} for a stream the client opened: informational
        heads, the response head, or trailers (which must end the stream).
        C{headers} are lower-case byte pairs, C{:status} first in a head.
        """
        stream = self.streams.get(stream_id)
        if stream is None or not headers:
            self.send_headers(stream_id, headers, end_stream=end_stream)  # h2's errors
            return
        self.state_machine.process_input(ConnectionInputs.SEND_HEADERS)
        first = headers[0]
        informational = first[0] == b":status" and first[1][:1] == b"1"
        if informational and end_stream:
            raise h2.exceptions.ProtocolError("Cannot set END_STREAM on informational responses.")
        machine = stream.state_machine
        machine.process_input(
            StreamInputs.SEND_INFORMATIONAL_HEADERS if informational else StreamInputs.SEND_HEADERS
        )
        block = self.encoder.encode(headers)
        if end_stream:
            machine.process_input(StreamInputs.SEND_END_STREAM)
        elif machine.trailers_sent:
            raise h2.exceptions.ProtocolError("Trailers must have END_STREAM set.")
        self._data_to_send += b"".join(
            header_frames(stream_id, block, end_stream, self.max_outbound_frame_size)
        )

    def send_chunk(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """
        h2's C{send_data} (or C{end_stream}, for empty C{data}): the same
        state transitions, checks and flow-control accounting, one DATA
        frame, the payload not copied when it is large.
        """
        stream = self.streams.get(stream_id)
        size = len(data)
        if (
            stream is None
            or size > self.max_outbound_frame_size
            or size > self.outbound_flow_control_window
            or size > stream.outbound_flow_control_window
        ):
            self.send_data(stream_id, data, end_stream=end_stream)  # h2's errors
            return
        self.state_machine.process_input(ConnectionInputs.SEND_DATA)
        machine = stream.state_machine
        machine.process_input(StreamInputs.SEND_DATA)
        if end_stream:
            machine.process_input(StreamInputs.SEND_END_STREAM)
        stream.outbound_flow_control_window -= size
        self.outbound_flow_control_window -= size
        header = frame_header(size, TYPE_DATA, FLAG_END_STREAM if end_stream else 0, stream_id)
        if size < _KEEP_WHOLE:
            pending = self._data_to_send
            pending += header
            pending += data
            return
        parts = self._parts
        if self._data_to_send:
            parts.append(bytes(self._data_to_send))
            self._data_to_send = bytearray()
        parts.append(header)
        parts.append(data)

    def take_output(self) -> list[bytes]:
        """Everything queued to send, in order, as pieces for one C{writeSequence}."""
        parts = self._parts
        self._parts = []
        if self._data_to_send:
            parts.append(bytes(self._data_to_send))
            self._data_to_send = bytearray()
        return parts

    def data_to_send(self, amount: int | None = None) -> bytes:
        if self._parts:
            self._data_to_send = bytearray(b"".join(self.take_output()))
        return super().data_to_send(amount)

    def clear_outbound_data_buffer(self) -> None:
        self._parts = []
        super().clear_outbound_data_buffer()
