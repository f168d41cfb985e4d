"""
The pure parts of the HTTP/2 front: the frame-header scanner, the request
head decision and the reset budget.
"""

from __future__ import annotations

from hyperframe.frame import ContinuationFrame, DataFrame, HeadersFrame, PingFrame
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tenantgw.http2.frames import FrameScanner
from tenantgw.http2.request_head import (
    Refusal,
    RequestHead,
    check_trailers,
    parse_request_head,
)
from tenantgw.http2.server import ResetBudget
from tenantgw.wire.fields import UNDERSCORES_ALLOW, UNDERSCORES_REJECT

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
BASE = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"a.example"),
    (b":path", b"/x?y=1"),
]


def headers_frame(stream_id: int, block: bytes, end_headers: bool) -> bytes:
    frame = HeadersFrame(stream_id, block)
    if end_headers:
        frame.flags.add("END_HEADERS")
    return frame.serialize()


def continuation(stream_id: int, block: bytes, end_headers: bool) -> bytes:
    frame = ContinuationFrame(stream_id, block)
    if end_headers:
        frame.flags.add("END_HEADERS")
    return frame.serialize()


class FrameScannerTests(SynchronousTestCase):
    def test_preface_and_frames_outside_header_blocks(self) -> None:
        scanner = FrameScanner()
        scanner.feed(
            PREFACE + PingFrame(0, b"12345678").serialize() + DataFrame(1, b"x" * 100).serialize()
        )
        self.assertEqual(scanner.frames, 2)
        self.assertFalse(scanner.in_header_block)

    def test_a_block_is_open_until_the_end_headers_payload_is_in(self) -> None:
        scanner = FrameScanner()
        scanner.feed(PREFACE)
        scanner.feed(headers_frame(1, b"a" * 10, False))
        self.assertTrue(scanner.in_header_block)
        scanner.feed(continuation(1, b"b" * 10, False))
        self.assertTrue(scanner.in_header_block)
        last = continuation(1, b"c" * 10, True)
        scanner.feed(last[:-1])
        self.assertTrue(scanner.in_header_block)  # END_HEADERS seen, payload not all in
        scanner.feed(last[-1:])
        self.assertFalse(scanner.in_header_block)
        self.assertEqual(scanner.header_block_bytes, 0)

    def test_a_single_headers_frame_trickling_in_is_an_open_block(self) -> None:
        scanner = FrameScanner()
        data = PREFACE + headers_frame(1, b"a" * 50, True)
        for index in range(len(data) - 1):
            scanner.feed(data[index : index + 1])  # split frame headers too
        self.assertTrue(scanner.in_header_block)
        scanner.feed(data[-1:])
        self.assertFalse(scanner.in_header_block)
        self.assertEqual(scanner.frames, 1)

    def test_block_size_is_bounded_across_continuations(self) -> None:
        scanner = FrameScanner(max_header_block=100, preface=0)
        scanner.feed(headers_frame(1, b"a" * 60, False))
        self.assertFalse(scanner.oversized)
        scanner.feed(continuation(1, b"b" * 60, False)[:9])  # the frame header is enough
        self.assertTrue(scanner.oversized)

    def test_blocks_are_counted_separately(self) -> None:
        scanner = FrameScanner(max_header_block=100, preface=0)
        for stream_id in range(1, 40, 2):
            scanner.feed(headers_frame(stream_id, b"a" * 90, True))
        self.assertFalse(scanner.oversized)
        self.assertFalse(scanner.in_header_block)


class RequestHeadTests(SynchronousTestCase):
    def test_a_well_formed_head(self) -> None:
        head = parse_request_head(
            [*BASE, (b"accept", b"*/*"), (b"content-length", b"5"), (b"cookie", b"a=1; b=2")]
        )
        assert isinstance(head, RequestHead)
        self.assertEqual(
            (head.method, head.path, head.authority), (b"GET", b"/x?y=1", b"a.example")
        )
        self.assertEqual(head.content_length, 5)
        self.assertEqual(
            head.headers,
            [
                (b"host", b"a.example"),
                (b"accept", b"*/*"),
                (b"content-length", b"5"),
                (b"cookie", b"a=1; b=2"),
            ],
        )

    def test_host_alone_is_the_authority_and_equal_host_is_not_repeated(self) -> None:
        head = parse_request_head(
            [h for h in BASE if h[0] != b":authority"] + [(b"host", b"a.example")]
        )
        assert isinstance(head, RequestHead)
        self.assertEqual(head.headers, [(b"host", b"a.example")])
        head = parse_request_head([*BASE, (b"host", b"A.EXAMPLE")])
        assert isinstance(head, RequestHead)
        self.assertEqual(head.headers, [(b"host", b"a.example")])

    def test_refusals(self) -> None:
        for fields in (
            [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", b"a"),
                (b":path", b"/ /"),
            ],
            [*BASE[:3], (b":path", b"/\xff")],
            [(b":method", b"GE T"), *BASE[1:]],
            [*BASE, (b"host", b"a.example:443")],
            [*BASE, (b"x", b"a\nb")],
            [*BASE, (b"X", b"1")],
            [*BASE, (b"te", b"deflate")],
            [*BASE, (b"connection", b"keep-alive")],
            [*BASE, (b"content-length", b"1"), (b"content-length", b"2")],
            [*BASE, (b":path", b"/again")],
            BASE[1:],
        ):
            verdict = parse_request_head(fields)
            self.assertIsInstance(verdict, Refusal, fields)
            assert isinstance(verdict, Refusal)
            self.assertEqual(verdict.status, 400, fields)

    def test_connect_is_not_implemented(self) -> None:
        verdict = parse_request_head([(b":method", b"CONNECT"), (b":authority", b"a.example:443")])
        self.assertEqual(verdict, Refusal(501, "CONNECT is not supported"))

    def test_underscore_policy(self) -> None:
        fields = [*BASE, (b"x_forwarded_for", b"1.2.3.4")]
        head = parse_request_head(fields)
        assert isinstance(head, RequestHead)
        self.assertEqual(head.headers, [(b"host", b"a.example")])
        head = parse_request_head(fields, UNDERSCORES_ALLOW)
        assert isinstance(head, RequestHead)
        self.assertIn((b"x_forwarded_for", b"1.2.3.4"), head.headers)
        self.assertIsInstance(parse_request_head(fields, UNDERSCORES_REJECT), Refusal)

    def test_te_trailers_is_kept_and_other_hop_by_hop_fields_are_dropped(self) -> None:
        # "te: trailers" tells the gateway the client reads trailers (gRPC);
        # the exchange writes it to HTTP/2 upstreams only.
        head = parse_request_head([*BASE, (b"te", b"trailers"), (b"http2-settings", b"x")])
        assert isinstance(head, RequestHead)
        self.assertEqual(head.headers, [(b"host", b"a.example"), (b"te", b"trailers")])

    def test_trailers(self) -> None:
        self.assertIsNone(check_trailers([(b"x-checksum", b"abc")]))
        self.assertIsNotNone(check_trailers([(b":path", b"/")]))
        self.assertIsNotNone(check_trailers([(b"X-Up", b"1")]))
        self.assertIsNotNone(check_trailers([(b"x", b"\r\n")]))


class ResetBudgetTests(SynchronousTestCase):
    def test_burst_then_rate(self) -> None:
        clock = Clock()
        budget = ResetBudget(clock.seconds, burst=3, rate=2.0)
        self.assertEqual([budget.spend() for _ in range(4)], [True, True, True, False])
        clock.advance(0.5)  # one token back
        self.assertEqual([budget.spend(), budget.spend()], [True, False])
        clock.advance(100)
        self.assertEqual([budget.spend() for _ in range(4)], [True, True, True, False])


class StaticEncoderTests(SynchronousTestCase):
    """Our HPACK encoder, read back by hpack's decoder (another implementation's view)."""

    def test_blocks_decode_to_what_was_encoded(self) -> None:
        import hpack

        from tenantgw.http2.hpack_out import StaticEncoder

        encoder = StaticEncoder()
        decoder = hpack.Decoder()
        decoder.max_allowed_table_size = 0  # as if the peer allowed no table at all
        blocks = [
            [(b":status", b"200"), (b"content-type", b"text/plain"), (b"server", b"x")],
            [(b":status", b"404"), (b"x-custom-name", b"v" * 300), (b"grpc-status", b"0")],
            [(b":status", b"200"), (b"content-type", b"text/plain"), (b"server", b"x")],
            [(b":status", b"200"), (b"accept-encoding", b"gzip, deflate")],  # a full static match
        ]
        for block in blocks:
            self.assertEqual(decoder.decode(encoder.encode(block), raw=True), block)
        self.assertEqual(len(decoder.header_table.dynamic_entries), 0)

    def test_indexes_need_more_than_the_prefix(self) -> None:
        from tenantgw.http2.hpack_out import _integer

        self.assertEqual(_integer(10, 5, 0), b"\x0a")
        self.assertEqual(_integer(1337, 5, 0), b"\x1f\x9a\x0a")  # RFC 7541 C.1.2
        self.assertEqual(_integer(42, 8, 0), b"\x2a")
