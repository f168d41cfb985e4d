"""
L{tenantgw.http2.machine}: the frames our server builds itself, checked
byte for byte against h2's own methods on a twin connection, and the HPACK
decoder's memo against the dynamic-table changes that must empty it.

Pure bytes in, bytes out: two server machines (ours and stock h2, with the
same settings and encoder) read what one h2 client wrote, answer the same
way, and must write the same bytes; the client reads them back.
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hpack
from hpack.exceptions import InvalidTableSizeError, OversizedHeaderListError
from hpack.hpack import encode_integer
from hyperframe.frame import ContinuationFrame, DataFrame, HeadersFrame
from twisted.trial.unittest import SynchronousTestCase

from tenantgw.http2.hpack_out import StaticEncoder
from tenantgw.http2.machine import CachingDecoder, ServerMachine, frame_header, header_frames

REQUEST = [
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":authority", b"a.example"),
    (b":path", b"/x"),
]
HEAD = [(b":status", b"200"), (b"content-type", b"text/plain"), (b"x-request-id", b"abc")]


def _config(client: bool) -> h2.config.H2Configuration:
    return h2.config.H2Configuration(
        client_side=client,
        header_encoding=None,
        validate_inbound_headers=False,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )


def _server(kind: type[h2.connection.H2Connection]) -> Any:
    machine = kind(config=_config(False))
    machine.encoder = StaticEncoder()
    machine.initiate_connection()
    return machine


class Twins:
    """Our machine and stock h2's, fed the same client bytes."""

    def __init__(self) -> None:
        self.client = h2.connection.H2Connection(config=_config(True))
        self.client.initiate_connection()
        self.ours = _server(ServerMachine)
        self.h2 = _server(h2.connection.H2Connection)
        self.pump_client()
        ours, theirs = self.output()  # SETTINGS, and the ACK of the client's
        assert ours == theirs
        self.client.receive_data(ours)
        self.pump_client()  # the client's ACK

    def pump_client(self) -> list[Any]:
        """Client bytes to both servers; the events of ours (h2's must be alike)."""
        data = self.client.data_to_send()
        ours = self.ours.receive_data(data)
        theirs = self.h2.receive_data(data)
        assert [type(e) for e in ours] == [type(e) for e in theirs], (ours, theirs)
        return ours

    def request(self, stream_id: int, end_stream: bool = True) -> None:
        self.client.send_headers(stream_id, REQUEST, end_stream=end_stream)
        self.pump_client()

    def output(self) -> tuple[bytes, bytes]:
        """What each server wrote since the last call (ours as its pieces, joined)."""
        return b"".join(self.ours.take_output()), self.h2.data_to_send()

    def to_client(self, data: bytes) -> list[Any]:
        """The client's events for C{data}, those of streams only."""
        return [e for e in self.client.receive_data(data) if getattr(e, "stream_id", 0)]


class SendingTests(SynchronousTestCase):
    def test_response_frames_are_h2s_own(self) -> None:
        twins = Twins()
        twins.request(1)
        twins.ours.send_response_headers(1, HEAD)
        twins.h2.send_headers(1, HEAD)
        twins.ours.send_chunk(1, b"hello")
        twins.h2.send_data(1, b"hello")
        twins.ours.send_chunk(1, b"", end_stream=True)
        twins.h2.send_data(1, b"", end_stream=True)
        ours, theirs = twins.output()
        self.assertEqual(ours, theirs)
        events = twins.to_client(ours)
        kinds = [type(e) for e in events]
        data = h2.events.DataReceived  # the second one empty, with END_STREAM
        self.assertEqual(kinds, [h2.events.ResponseReceived, data, data, h2.events.StreamEnded])
        self.assertEqual(events[0].headers, HEAD)
        self.assertEqual([events[1].data, events[2].data], [b"hello", b""])
        self.assertTrue(twins.ours.streams[1].closed)

    def test_a_large_payload_is_written_as_it_is(self) -> None:
        twins = Twins()
        twins.request(1)
        twins.ours.send_response_headers(1, HEAD)
        twins.h2.send_headers(1, HEAD)
        payload = b"z" * 16_000
        twins.ours.send_chunk(1, payload, end_stream=True)
        twins.h2.send_data(1, payload, end_stream=True)
        pieces = twins.ours.take_output()
        self.assertTrue(any(piece is payload for piece in pieces))  # not copied
        self.assertEqual(b"".join(pieces), twins.h2.data_to_send())
        self.assertEqual(
            twins.ours.outbound_flow_control_window, twins.h2.outbound_flow_control_window
        )

    def test_h2s_frames_and_ours_keep_their_order(self) -> None:
        twins = Twins()
        twins.request(1)
        twins.request(3)
        for machine in (twins.ours, twins.h2):
            machine.ping(b"12345678")
        twins.ours.send_response_headers(1, HEAD)
        twins.h2.send_headers(1, HEAD)
        twins.ours.send_chunk(1, b"y" * 8000)
        twins.h2.send_data(1, b"y" * 8000)
        for machine in (twins.ours, twins.h2):
            machine.reset_stream(3)
        twins.ours.send_chunk(1, b"y" * 10)
        twins.h2.send_data(1, b"y" * 10)
        ours, theirs = twins.output()
        self.assertEqual(ours, theirs)
        # h2's data_to_send() still has everything, in order, for other callers.
        twins.ours.send_chunk(1, b"w" * 9000)
        twins.h2.send_data(1, b"w" * 9000)
        twins.ours.ping(b"abcdefgh")
        twins.h2.ping(b"abcdefgh")
        self.assertEqual(twins.ours.data_to_send(), twins.h2.data_to_send())

    def test_informational_heads_then_trailers(self) -> None:
        twins = Twins()
        twins.request(1)
        trailers = [(b"grpc-status", b"0")]
        for send in (twins.ours.send_response_headers, twins.h2.send_headers):
            send(1, [(b":status", b"100")])
            send(1, HEAD)
        twins.ours.send_chunk(1, b"body")
        twins.h2.send_data(1, b"body")
        twins.ours.send_response_headers(1, trailers, end_stream=True)
        twins.h2.send_headers(1, trailers, end_stream=True)
        ours, theirs = twins.output()
        self.assertEqual(ours, theirs)
        kinds = [type(e) for e in twins.to_client(ours)]
        self.assertEqual(
            kinds,
            [
                h2.events.InformationalResponseReceived,
                h2.events.ResponseReceived,
                h2.events.DataReceived,
                h2.events.TrailersReceived,
                h2.events.StreamEnded,
            ],
        )

    def test_a_large_head_is_split_into_continuation_frames(self) -> None:
        twins = Twins()
        twins.request(1)
        head = [(b":status", b"200")] + [(b"x-big-%d" % i, b"v" * 4000) for i in range(10)]
        twins.ours.send_response_headers(1, head, end_stream=True)
        twins.h2.send_headers(1, head, end_stream=True)
        ours, theirs = twins.output()
        self.assertEqual(ours, theirs)
        events = twins.to_client(ours)
        self.assertEqual(events[0].headers, head)
        self.assertIsInstance(events[1], h2.events.StreamEnded)

    def test_refusals_are_h2s(self) -> None:
        """Each misuse h2 refuses, ours refuses with the same error."""
        twins = Twins()
        twins.request(1, end_stream=False)
        twins.request(3)
        ours = twins.ours
        with self.assertRaises(h2.exceptions.ProtocolError):
            ours.send_response_headers(3, [(b":status", b"103")], end_stream=True)
        twins.request(5)
        ours.send_response_headers(5, HEAD)
        with self.assertRaises(h2.exceptions.ProtocolError):
            ours.send_response_headers(5, [(b"grpc-status", b"0")])  # trailers must end it
        # Past the window: h2's FlowControlError; past the frame size: FrameTooLargeError.
        twins.request(7)
        ours.send_response_headers(7, HEAD)
        with self.assertRaises(h2.exceptions.FrameTooLargeError):
            ours.send_chunk(7, b"x" * (ours.max_outbound_frame_size + 1))
        sent = 0
        while sent + 16_384 <= 65_535:
            ours.send_chunk(7, b"x" * 16_384)
            sent += 16_384
        self.assertEqual(ours.local_flow_control_window(7), 65_535 - sent)
        with self.assertRaises(h2.exceptions.FlowControlError):
            ours.send_chunk(7, b"x" * (65_535 - sent + 1))
        # The client reset stream 1: both methods raise StreamClosedError.
        twins.client.reset_stream(1)
        twins.pump_client()
        with self.assertRaises(h2.exceptions.StreamClosedError):
            ours.send_response_headers(1, HEAD)
        with self.assertRaises(h2.exceptions.StreamClosedError):
            ours.send_chunk(1, b"late")
        # A stream that never existed.
        with self.assertRaises(h2.exceptions.NoSuchStreamError):
            ours.send_chunk(99, b"x")

    def test_frames_on_a_reset_stream_get_rst_stream_as_h2s_do(self) -> None:
        twins = Twins()
        twins.request(1, end_stream=False)
        for machine in (twins.ours, twins.h2):
            machine.reset_stream(1)
        twins.output()
        twins.client.send_data(1, b"more")
        twins.pump_client()  # no exception: a stream error, answered with RST_STREAM
        ours, theirs = twins.output()
        self.assertEqual(ours, theirs)
        self.assertIn(frame_header(4, 0x3, 0, 1), ours)


class FramingTests(SynchronousTestCase):
    def test_frame_header_is_hyperframes(self) -> None:
        frame = DataFrame(0x7FFFFFFF, b"abc")
        frame.flags.add("END_STREAM")
        self.assertEqual(frame_header(3, 0x0, 0x1, 0x7FFFFFFF) + b"abc", frame.serialize())
        self.assertEqual(frame_header(2**24 - 1, 0x9, 0x4, 1)[:3], b"\xff\xff\xff")

    def test_header_frames_split_at_the_frame_size(self) -> None:
        block = bytes(range(256)) * 3
        pieces = header_frames(3, block, True, 300)
        first = HeadersFrame(3, block[:300])
        first.flags.add("END_STREAM")
        middle = ContinuationFrame(3, block[300:600])
        last = ContinuationFrame(3, block[600:])
        last.flags.add("END_HEADERS")
        expected = first.serialize() + middle.serialize() + last.serialize()
        self.assertEqual(b"".join(pieces), expected)
        one = HeadersFrame(3, block)
        one.flags.add("END_HEADERS")
        self.assertEqual(b"".join(header_frames(3, block, False, 16_384)), one.serialize())


def _literal_indexed(name: bytes, value: bytes) -> bytes:
    """Literal with incremental indexing, new name (RFC 7541 section 6.2.1): a table insert."""
    return b"\x40" + bytes((len(name),)) + name + bytes((len(value),)) + value


NEWEST = b"\xbe"  # indexed field 62: the newest dynamic-table entry


class CachingDecoderTests(SynchronousTestCase):
    def test_a_repeated_block_is_decoded_once(self) -> None:
        decoder = CachingDecoder()
        decoder.decode(_literal_indexed(b"x-a", b"1"), raw=True)
        block = b"\x82\x84" + NEWEST  # :method GET, :path /, x-a: 1
        first = decoder.decode(block, raw=True)
        second = decoder.decode(block, raw=True)
        self.assertEqual(first, [(b":method", b"GET"), (b":path", b"/"), (b"x-a", b"1")])
        self.assertEqual(second, first)
        self.assertEqual(decoder.hits, 1)
        second.append((b"junk", b""))  # a caller's change does not reach the memo
        self.assertEqual(decoder.decode(block, raw=True), first)

    def test_a_table_insert_forgets_every_block(self) -> None:
        """The same bytes mean another field once the table has changed."""
        decoder = CachingDecoder()
        decoder.decode(_literal_indexed(b"x-a", b"1"), raw=True)
        self.assertEqual(decoder.decode(NEWEST, raw=True), [(b"x-a", b"1")])
        decoder.decode(_literal_indexed(b"x-b", b"2"), raw=True)
        self.assertEqual(decoder.decode(NEWEST, raw=True), [(b"x-b", b"2")])
        self.assertEqual(decoder.hits, 0)
        # A block that inserts is never remembered, even when the insert
        # evicts and leaves the table as long as it was.
        decoder.header_table_size = 45  # room for one entry of 32 + 13 bytes
        insert = _literal_indexed(b"x-c", b"333333333")
        decoder.decode(insert, raw=True)
        decoder.decode(insert, raw=True)
        self.assertEqual(decoder.hits, 0)
        self.assertEqual(decoder.decode(NEWEST, raw=True), [(b"x-c", b"333333333")])

    def test_a_size_update_forgets_every_block(self) -> None:
        decoder = CachingDecoder()
        decoder.decode(_literal_indexed(b"x-a", b"1"), raw=True)
        self.assertEqual(decoder.decode(NEWEST, raw=True), [(b"x-a", b"1")])
        decoder.decode(b"\x20", raw=True)  # size 0: the table is emptied
        decoder.decode(b"\x3f\xe1\x1f", raw=True)  # back to 4096, still empty
        with self.assertRaises(hpack.HPACKDecodingError):
            decoder.decode(NEWEST, raw=True)

    def test_limits_hold_for_a_remembered_block(self) -> None:
        decoder = CachingDecoder()
        block = b"\x82\x84" + b"\x0f\x2b\x05" + b"hello"  # a literal without indexing
        decoder.decode(block, raw=True)
        decoder.decode(block, raw=True)
        self.assertEqual(decoder.hits, 1)
        decoder.max_header_list_size = 40
        with self.assertRaises(OversizedHeaderListError):
            decoder.decode(block, raw=True)
        decoder.max_header_list_size = 2**16
        decoder.decode(block, raw=True)
        decoder.decode(_literal_indexed(b"x-a", b"1"), raw=True)
        decoder.decode(NEWEST, raw=True)
        decoder.decode(NEWEST, raw=True)  # remembered
        decoder.max_allowed_table_size = 0  # what we allow shrank; the peer did not follow
        with self.assertRaises(InvalidTableSizeError):
            decoder.decode(NEWEST, raw=True)

    def test_the_memo_is_bounded(self) -> None:
        decoder = CachingDecoder()
        size = CachingDecoder.MEMO_BLOCK_BYTES
        large = b"\x0f\x2b" + bytes(encode_integer(size, 7)) + b"v" * size
        decoder.decode(large, raw=True)
        decoder.decode(large, raw=True)
        self.assertEqual(decoder.hits, 0)
        for index in range(CachingDecoder.MEMO_ENTRIES + 5):
            value = b"%d" % index
            decoder.decode(b"\x0f\x2b" + bytes((len(value),)) + value, raw=True)
        self.assertLessEqual(len(decoder._memo), CachingDecoder.MEMO_ENTRIES)

    def test_the_server_reads_repeated_requests_from_the_memo(self) -> None:
        twins = Twins()
        for stream_id in (1, 3, 5):
            twins.request(stream_id)
        # h2's client indexes every field on the first request, then refers to them.
        self.assertEqual(twins.ours.decoder.hits, 1)
        events = twins.to_client(b"")
        self.assertEqual(events, [])
        for stream_id in (1, 3, 5):
            self.assertIn(stream_id, twins.ours.streams)


class EncoderTests(SynchronousTestCase):
    def test_fields_that_never_repeat_are_encoded_and_not_remembered(self) -> None:
        encoder = StaticEncoder()
        decoder = hpack.Decoder()
        decoder.max_allowed_table_size = 0
        for index in range(3):
            block = [
                (b":status", b"200"),
                (b"content-length", b"%d" % (index * 1000)),
                (b"date", b"Thu, 03 Dec 2026 14:0%d:00 GMT" % index),
                (b"x-request-id", b"%032x" % index),
                (b"etag", b"e" * (200 + index)),  # a length past the 7-bit prefix
                (b"x-custom", b"same"),
            ]
            self.assertEqual(decoder.decode(encoder.encode(block), raw=True), block)
        self.assertEqual(set(encoder._memo), {(b":status", b"200"), (b"x-custom", b"same")})


class _Headers:
    def __init__(self) -> None:
        self.raw: list[tuple[bytes, bytes]] = []

    def addRawHeader(self, name: bytes, value: bytes) -> None:
        self.raw.append((name, value))


class _Request:
    """What the stream asks of a GatewayRequest: reads its body, answers at its end."""

    startedWriting = False
    finished = False
    producer = None
    request_trailers: Any = None

    def __init__(self, channel: Any, queued: bool = False) -> None:
        self.channel = channel
        self.requestHeaders = _Headers()
        self.body = bytearray()
        self.length: int | None = None

    def gotLength(self, length: int | None) -> None:
        self.length = length

    def handleContentChunk(self, data: bytes) -> None:
        self.body += data

    def headersReceived(self, method: bytes, path: bytes, version: bytes) -> None:
        pass

    def requestReceived(self, method: bytes, path: bytes, version: bytes) -> None:
        self.finished = True
        self.channel.write_head(200, [(b"content-length", b"2")])
        self.channel.write(b"ok")
        self.channel.requestDone(self)

    def connectionLost(self, reason: Any) -> None:
        self.finished = True


class _Site:
    timeOut = 60
    header_deadline = 0.0

    def __init__(self) -> None:
        self.requests: list[_Request] = []

    def requestFactory(self, channel: Any, queued: bool = False) -> _Request:
        request = _Request(channel)
        self.requests.append(request)
        return request


class ServerConnection:
    """An H2ServerConnection on a StringTransport, driven by an h2 client: bytes both ways."""

    def __init__(self) -> None:
        from twisted.internet.task import Clock
        from twisted.internet.testing import StringTransport

        from tenantgw.http2.server import H2ServerConnection

        self.clock = Clock()
        self.site = _Site()
        self.server = H2ServerConnection(self.site, self.clock)  # type: ignore[arg-type]
        self.transport = StringTransport()
        self.server.makeConnection(self.transport)
        self.client = h2.connection.H2Connection(config=_config(True))
        self.client.initiate_connection()
        self.events: list[Any] = []
        self.exchange()

    def exchange(self) -> None:
        """Until neither side has anything more to say (the server's per-turn flushes run)."""
        for _ in range(20):
            data = self.client.data_to_send()
            if data:
                self.server.dataReceived(data)
            self.clock.advance(0)
            out = self.transport.value()
            self.transport.clear()
            if out:
                self.events += self.client.receive_data(out)
            if not data and not out:
                return

    def upload(self, stream_id: int, total: int, end: bool = True) -> int:
        """Sends up to C{total} body bytes as the windows allow; returns how many went."""
        sent = 0
        while sent < total:
            room = min(self.client.local_flow_control_window(stream_id), 16_384, total - sent)
            if room <= 0:
                break
            self.client.send_data(stream_id, b"u" * room)
            sent += room
            self.exchange()
        if end and sent == total:
            self.client.end_stream(stream_id)
            self.exchange()
        return sent


class WindowGrowthTests(SynchronousTestCase):
    def post(self, conn: ServerConnection, stream_id: int) -> None:
        conn.client.send_headers(stream_id, [*REQUEST[:3], (b":path", b"/up")])
        conn.exchange()

    def test_a_read_upload_grows_its_window_to_the_bound(self) -> None:
        from tenantgw.http2 import server

        conn = ServerConnection()
        self.post(conn, 1)
        self.assertEqual(conn.client.local_flow_control_window(1), server.STREAM_WINDOW)
        total = 12 * 1024 * 1024
        self.assertEqual(conn.upload(1, total, end=False), total)
        stream = conn.server.streams[1]
        self.assertEqual(stream.window, server.MAX_STREAM_WINDOW)
        self.assertEqual(conn.server.growth_left, server.STREAM_GROWTH - stream.grown)
        # Never more in flight than the grown window, however far it went.
        self.assertLessEqual(conn.client.local_flow_control_window(1), server.MAX_STREAM_WINDOW)
        conn.client.end_stream(1)
        conn.exchange()
        self.assertEqual(len(conn.site.requests[0].body), total)
        self.assertNotIn(1, conn.server.streams)
        self.assertEqual(conn.server.growth_left, server.STREAM_GROWTH)  # given back

    def test_growth_is_bounded_per_connection(self) -> None:
        from tenantgw.http2 import server

        conn = ServerConnection()
        streams = (1, 3, 5, 7)
        for stream_id in streams:
            self.post(conn, stream_id)
        for _ in range(4):
            for stream_id in streams:
                conn.upload(stream_id, 4 * 1024 * 1024, end=False)
        grown = sum(conn.server.streams[s].grown for s in streams)
        self.assertEqual(grown, server.STREAM_GROWTH)
        self.assertEqual(conn.server.growth_left, 0)
        windows = sum(conn.client.local_flow_control_window(s) for s in streams)
        self.assertLessEqual(windows, len(streams) * server.STREAM_WINDOW + server.STREAM_GROWTH)

    def test_a_paused_request_holds_at_most_its_window(self) -> None:
        from tenantgw.http2 import server

        conn = ServerConnection()
        self.post(conn, 1)
        conn.upload(1, 3 * 1024 * 1024, end=False)
        stream = conn.server.streams[1]
        window = stream.window
        self.assertGreater(window, server.STREAM_WINDOW)
        stream.pauseProducing()
        read = len(conn.site.requests[0].body)
        held = conn.upload(1, 64 * 1024 * 1024, end=False)
        self.assertLessEqual(held, window)
        self.assertEqual(conn.client.local_flow_control_window(1), 0)
        self.assertEqual(len(conn.site.requests[0].body), read)  # nothing fed while paused
        stream.resumeProducing()
        conn.exchange()
        self.assertEqual(len(conn.site.requests[0].body), read + held)


class RememberedHeadTests(SynchronousTestCase):
    def test_repeated_heads_are_judged_once_and_refusals_still_hold(self) -> None:
        from tenantgw.http2 import server

        judged: list[int] = []
        real = server.parse_request_head

        def counting(fields: Any, underscores: str) -> Any:
            judged.append(1)
            return real(fields, underscores)

        self.patch(server, "parse_request_head", counting)
        conn = ServerConnection()
        for stream_id in (1, 3, 5, 7, 9):
            conn.client.send_headers(stream_id, REQUEST, end_stream=True)
            conn.exchange()
        answered = [e for e in conn.events if isinstance(e, h2.events.ResponseReceived)]
        self.assertEqual(len(answered), 5)
        # Judged: the first block (it fills the client's table), the second
        # (all indexes, new to the decoder's memo), the third (the first
        # the decoder remembers); the rest come from the memo.
        self.assertEqual(len(judged), 3)
        self.assertEqual(conn.site.requests[4].requestHeaders.raw[0], (b"host", b"a.example"))
        # A malformed head repeated from the memo is refused every time, and
        # every refusal spends the reset budget as before.
        bad = [*REQUEST, (b"transfer-encoding", b"chunked")]
        budget = conn.server._budget.tokens
        for stream_id in (11, 13, 15, 17):
            conn.client.send_headers(stream_id, bad, end_stream=True)
            conn.exchange()
        statuses = [
            dict(e.headers)[b":status"]
            for e in conn.events
            if isinstance(e, h2.events.ResponseReceived) and e.stream_id >= 11
        ]
        self.assertEqual(statuses, [b"400"] * 4)
        self.assertEqual(len(conn.site.requests), 5)  # none reached the gateway
        self.assertAlmostEqual(conn.server._budget.tokens, budget - 4)
        self.assertEqual(len(judged), 6)  # the fourth refusal came from the memo
