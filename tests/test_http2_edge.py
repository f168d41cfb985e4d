"""
Our HTTP/2 server against a hostile client, over real TLS sockets with ALPN.

The client is L{tests.h2_raw.RawH2Client}, which sends whatever frames a
test builds; the backend is a L{ByteRecorder}, which records every byte it
ever receives, so "nothing reached the backend" is checked on bytes and
accepted connections, not on parsed requests.  Each test also makes a
well-formed request through the same client, so none can pass vacuously.

Refusals, by class (see docs/http2.md):

  - a malformed request head: 400 on its stream, connection kept;
  - CONNECT: 501, connection kept;
  - past the concurrency limit: RST_STREAM REFUSED_STREAM, connection kept;
  - malformed trailers: RST_STREAM PROTOCOL_ERROR;
  - header block too slow or too large, reset flood: GOAWAY
    ENHANCE_YOUR_CALM, connection closed.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import TestCase

from tenantgw.compile.compiler import compile_snapshot
from tenantgw.dataplane.gateway import MultiplexingGatewaySite
from tenantgw.http2.frames import MAX_HEADER_BLOCK_BYTES
from tenantgw.http2.server import MAX_CONCURRENT_STREAMS
from tenantgw.tls.certificates import load_certificate
from tenantgw.tls.default import self_signed
from tenantgw.tls.sni import SNIContexts
from tenantgw.wire.fields import UNDERSCORES_REJECT
from tests.h2_raw import (
    ENHANCE_YOUR_CALM,
    NO_ERROR,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    ByteRecorder,
    RawH2Client,
    connect_h2,
    request_headers,
)
from tests.support import GatewayUnderTest
from tests.test_tls import tls_tenant

HEADER_DEADLINE = 1.0

GOOD = request_headers()

# Every malformed request head, each answered 400 (CONNECT: 501).
MALFORMED: list[tuple[str, list[tuple[bytes, bytes]]]] = [
    ("SP in :path", request_headers(path=b"/a b")),
    ("HTAB in :path", request_headers(path=b"/a\tb")),
    ("request line smuggled in :path", request_headers(path=b"/x HTTP/1.1\r\nHost: b.example")),
    ("byte above 0x7E in :path", request_headers(path=b"/caf\xc3\xa9")),
    ("DEL in :path", request_headers(path=b"/a\x7f")),
    ("control byte in :path", request_headers(path=b"/a\x01")),
    ("fragment in :path", request_headers(path=b"/a#b")),
    ("SP in :method", request_headers(method=b"GET /admin")),
    ("non-token :method", request_headers(method=b"G(T")),
    ("empty :method", request_headers(method=b"")),
    ("absolute-form :path", request_headers(path=b"http://a.example/x")),
    ("empty :path", request_headers(path=b"")),
    ("asterisk :path", request_headers(method=b"OPTIONS", path=b"*")),
    ("relative :path", request_headers(path=b"x")),
    ("missing :method", [h for h in GOOD if h[0] != b":method"]),
    ("missing :path", [h for h in GOOD if h[0] != b":path"]),
    ("missing :scheme", [h for h in GOOD if h[0] != b":scheme"]),
    ("duplicate :path", [*GOOD, (b":path", b"/y")]),
    ("duplicate :method", [(b":method", b"GET"), *GOOD]),
    ("duplicate :authority", [(b":authority", b"b.example"), *GOOD]),
    ("unsupported :scheme", [(b":scheme", b"ftp") if h[0] == b":scheme" else h for h in GOOD]),
    ("unknown pseudo-header", [*GOOD[:1], (b":foo", b"x"), *GOOD[1:]]),
    ("extended CONNECT :protocol", [*GOOD, (b":protocol", b"websocket")]),
    ("response pseudo-header", [*GOOD, (b":status", b"200")]),
    ("pseudo-header after a field", [*GOOD[:3], (b"x-a", b"1"), GOOD[3]]),
    ("host disagrees", request_headers(extra=[(b"host", b"b.example")])),
    ("host differs in port", request_headers(extra=[(b"host", b"a.example:443")])),
    ("two hosts", request_headers(extra=[(b"host", b"a.example"), (b"host", b"a.example")])),
    ("no authority", [h for h in GOOD if h[0] != b":authority"]),
    ("userinfo in :authority", request_headers(authority=b"user@a.example")),
    ("SP in :authority", request_headers(authority=b"a.example /x")),
    ("CR LF in a value", request_headers(extra=[(b"x-a", b"1\r\nx-injected: 1")])),
    ("NUL in a value", request_headers(extra=[(b"x-a", b"1\x00")])),
    ("control byte in a value", request_headers(extra=[(b"x-a", b"1\x01")])),
    ("DEL in a value", request_headers(extra=[(b"x-a", b"1\x7f")])),
    ("value with leading SP", request_headers(extra=[(b"x-a", b" 1")])),
    ("upper-case name", request_headers(extra=[(b"X-A", b"1")])),
    ("SP in a name", request_headers(extra=[(b"x a", b"1")])),
    ("colon in a name", request_headers(extra=[(b"x:a", b"1")])),
    ("empty name", request_headers(extra=[(b"", b"1")])),
    ("connection", request_headers(extra=[(b"connection", b"close")])),
    ("keep-alive", request_headers(extra=[(b"keep-alive", b"5")])),
    ("proxy-connection", request_headers(extra=[(b"proxy-connection", b"close")])),
    ("transfer-encoding", request_headers(extra=[(b"transfer-encoding", b"chunked")])),
    ("upgrade", request_headers(extra=[(b"upgrade", b"websocket")])),
    ("te other than trailers", request_headers(extra=[(b"te", b"gzip")])),
    ("content-length out of range", request_headers(extra=[(b"content-length", b"9" * 20)])),
]


class HTTP2HardeningTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.backend = ByteRecorder()
        self.addCleanup(self.backend.stop)
        snapshot = compile_snapshot(
            tls_tenant("a", ["a.example"], self_signed(("a.example",)), self.backend.number)
        )
        self.gateway = GatewayUnderTest(snapshot)
        self.addCleanup(self.gateway.stop)
        gateway = self.gateway.gateway
        self.handshakes: list[str] = []
        sni = SNIContexts(
            lambda: gateway.snapshot,
            load_certificate(*self_signed(("default.invalid",))),
            handshake=self.handshakes.append,
        )
        self.site = MultiplexingGatewaySite(gateway, reactor, header_deadline=HEADER_DEADLINE)
        self.https = reactor.listenTCP(
            0, TLSMemoryBIOFactory(sni.options, False, self.site), interface="127.0.0.1"
        )
        self.addCleanup(self.https.stopListening)

    @inlineCallbacks
    def client(self) -> Any:
        client: RawH2Client = yield connect_h2(self.https.getHost().port)
        self.addCleanup(client.abort)
        self.assertEqual(client.negotiated, b"h2")
        return client

    @inlineCallbacks
    def assert_good_request_works(self, client: RawH2Client, stream_id: int) -> Any:
        """The positive control: the same client, a well-formed request, a 200 from the backend."""
        before = len(self.backend.heads)
        client.send_headers(stream_id, GOOD)
        yield client.answered(stream_id)
        response = client.responses[stream_id]
        self.assertEqual(response.status, 200, response.headers)
        self.assertEqual(response.data, b"ok\n")
        self.assertEqual(len(self.backend.heads), before + 1)

    # -- point 1: malformed requests never reach the backend ----------------------

    @inlineCallbacks
    def test_every_malformed_head_is_refused_and_nothing_reaches_the_backend(self) -> Any:
        client = yield self.client()
        stream_id = 1
        for label, headers in MALFORMED:
            client.send_headers(stream_id, headers)
            yield client.answered(stream_id)
            response = client.responses[stream_id]
            self.assertEqual(response.status, 400, label)
            self.assertEqual(response.data, b"bad request\n", label)
            stream_id += 2
        client.send_headers(stream_id, request_headers(method=b"CONNECT"))
        yield client.answered(stream_id)
        self.assertEqual(client.responses[stream_id].status, 501)
        self.assertFalse(client.lost)
        self.assertIsNone(client.goaway)
        self.assertEqual((self.backend.received, self.backend.connections), (b"", 0))
        yield self.assert_good_request_works(client, stream_id + 2)

    @inlineCallbacks
    def test_malformed_request_with_a_body_is_refused_and_the_body_discarded(self) -> Any:
        client = yield self.client()
        client.write(
            b"".join(client.headers_frames(1, request_headers(method=b"POST", path=b"/a b"), False))
            + client.data_frame(1, b"x" * 1000, end_stream=True)
        )
        yield client.answered(1)
        self.assertEqual(client.responses[1].status, 400)
        self.assertEqual(self.backend.received, b"")
        yield self.assert_good_request_works(client, 3)

    @inlineCallbacks
    def test_authority_becomes_the_one_host_header(self) -> Any:
        client = yield self.client()
        yield self.assert_good_request_works(client, 1)
        # Host equal to :authority but for case is accepted, and still sent once.
        client.send_headers(3, request_headers(extra=[(b"host", b"A.Example")]))
        yield client.answered(3)
        self.assertEqual(client.responses[3].status, 200)
        for head in self.backend.heads:
            hosts = [line for line in head.split(b"\r\n") if line.lower().startswith(b"host:")]
            self.assertEqual(hosts, [b"Host: a.example"])

    @inlineCallbacks
    def test_underscore_fields_are_dropped_by_default(self) -> Any:
        client = yield self.client()
        client.send_headers(1, request_headers(extra=[(b"transfer_encoding", b"chunked")]))
        yield client.answered(1)
        self.assertEqual(client.responses[1].status, 200)
        self.assertNotIn(b"transfer_encoding", self.backend.received.lower())
        self.assertNotIn(b"chunked", self.backend.received.lower())

    @inlineCallbacks
    def test_underscore_fields_refused_when_the_site_says_reject(self) -> Any:
        self.site.underscores = UNDERSCORES_REJECT  # type: ignore[attr-defined]
        client = yield self.client()
        client.send_headers(1, request_headers(extra=[(b"x_a", b"1")]))
        yield client.answered(1)
        self.assertEqual(client.responses[1].status, 400)
        self.assertEqual(self.backend.received, b"")
        yield self.assert_good_request_works(client, 3)

    # -- point 2: rapid reset -----------------------------------------------------------

    @inlineCallbacks
    def test_rapid_reset_gets_goaway_and_costs_no_upstream_connections(self) -> Any:
        client = yield self.client()
        burst = []
        for index in range(1000):
            stream_id = 1 + 2 * index
            burst += client.headers_frames(stream_id, GOOD)
            burst.append(client.rst_frame(stream_id))
        client.write(b"".join(burst))
        yield client.wait_for(lambda: client.goaway is not None and client.lost)
        assert client.goaway is not None
        self.assertEqual(client.goaway.error_code, ENHANCE_YOUR_CALM)
        self.assertLessEqual(self.backend.connections, 3)
        # And the same client, on a new connection, is served as usual.
        again = yield self.client()
        yield self.assert_good_request_works(again, 1)

    @inlineCallbacks
    def test_resets_within_the_budget_keep_the_connection(self) -> Any:
        client = yield self.client()
        burst = []
        for index in range(50):
            burst += client.headers_frames(1 + 2 * index, GOOD)
            burst.append(client.rst_frame(1 + 2 * index))
        client.write(b"".join(burst))
        yield self.assert_good_request_works(client, 101)
        self.assertIsNone(client.goaway)
        self.assertEqual(self.backend.connections, 1)  # the control's only

    @inlineCallbacks
    def test_streams_past_the_limit_are_refused_and_the_connection_kept(self) -> Any:
        client = yield self.client()
        # Bodies that never come, for a host no tenant has: each is answered
        # 404 by the gateway itself, then reset NO_ERROR (the body is unread).
        unknown = request_headers(authority=b"unknown.example", method=b"POST")
        frames = []
        for index in range(MAX_CONCURRENT_STREAMS + 1):
            frames += client.headers_frames(1 + 2 * index, unknown, end_stream=False)
        client.write(b"".join(frames))
        last = 1 + 2 * MAX_CONCURRENT_STREAMS
        yield client.answered(last)
        self.assertEqual(client.responses[last].reset, REFUSED_STREAM)
        self.assertIsNone(client.responses[last].status)
        yield client.answered(last - 2)
        first = client.responses[1]
        self.assertEqual((first.status, first.reset), (404, NO_ERROR))
        self.assertIsNone(client.goaway)
        yield self.assert_good_request_works(client, last + 2)

    # -- point 3: header deadline and header block size ------------------------------------

    @inlineCallbacks
    def test_slow_continuation_frames_hit_the_header_deadline(self) -> Any:
        yield self.slow_continuation(first=True)

    @inlineCallbacks
    def test_slow_continuation_on_a_busy_connection_hits_the_header_deadline(self) -> Any:
        yield self.slow_continuation(first=False)

    @inlineCallbacks
    def slow_continuation(self, first: bool) -> Any:
        client = yield self.client()
        stream_id = 1
        if not first:
            yield self.assert_good_request_works(client, 1)
            stream_id = 3
        received = self.backend.received
        headers = request_headers(extra=[(b"x-pad-%d" % i, b"v" * 20) for i in range(40)])
        frames = client.headers_frames(stream_id, headers, split=20)
        self.assertGreater(len(frames), 20)
        started = reactor.seconds()
        for frame in frames[:-1]:
            if client.lost:
                break
            client.write(frame)
            yield deferLater(reactor, 0.2, lambda: None)
        yield client.wait_for(lambda: client.lost, timeout=5)
        assert client.goaway is not None and client.goaway_at is not None
        self.assertEqual(client.goaway.error_code, ENHANCE_YOUR_CALM)
        self.assertLess(client.goaway_at - started, HEADER_DEADLINE + 1.0)
        self.assertEqual(self.backend.received, received)

    @inlineCallbacks
    def test_continuation_within_the_deadline_is_served(self) -> Any:
        client = yield self.client()
        headers = request_headers(extra=[(b"x-pad", b"v" * 100)])
        for frame in client.headers_frames(1, headers, split=30):
            client.write(frame)
            yield deferLater(reactor, 0.05, lambda: None)
        yield client.answered(1)
        self.assertEqual(client.responses[1].status, 200)

    @inlineCallbacks
    def test_oversized_header_block_ends_the_connection(self) -> Any:
        client = yield self.client()
        # Incompressible values, so the block really is that large on the wire.
        extra = [(b"x-%d" % i, bytes(range(0x21, 0x7F)) * 10) for i in range(80)]
        frames = client.headers_frames(1, request_headers(extra=extra), split=16_000)
        self.assertGreater(sum(len(f) for f in frames), MAX_HEADER_BLOCK_BYTES)
        client.write(b"".join(frames))
        yield client.wait_for(lambda: client.lost)
        assert client.goaway is not None
        self.assertEqual(client.goaway.error_code, ENHANCE_YOUR_CALM)
        self.assertEqual(self.backend.received, b"")

    @inlineCallbacks
    def test_a_connection_without_a_request_is_closed_after_the_deadline(self) -> Any:
        client = yield self.client()
        started = reactor.seconds()
        yield client.wait_for(lambda: client.lost, timeout=5)
        assert client.goaway is not None and client.goaway_at is not None
        self.assertEqual(client.goaway.error_code, NO_ERROR)
        self.assertLess(client.goaway_at - started, HEADER_DEADLINE + 1.0)

    # -- point 4: frames for streams already answered -------------------------------------

    @inlineCallbacks
    def test_data_and_reset_after_the_answer_keep_the_connection(self) -> Any:
        client = yield self.client()
        unknown = request_headers(authority=b"unknown.example", method=b"POST")
        client.send_headers(1, unknown, end_stream=False)
        yield client.answered(1)
        self.assertEqual((client.responses[1].status, client.responses[1].reset), (404, NO_ERROR))
        # The client had not seen the answer yet: more body, then its own reset.
        client.write(client.data_frame(1, b"x" * 16_000) + client.data_frame(1, b"x", True))
        client.write(client.rst_frame(1))
        yield self.assert_good_request_works(client, 3)
        self.assertFalse(client.lost)
        self.assertIsNone(client.goaway)

    @inlineCallbacks
    def test_discarded_data_returns_its_connection_credit(self) -> Any:
        client = yield self.client()
        unknown = request_headers(authority=b"unknown.example", method=b"POST")
        frame = client.data_frame(1, b"x" * 16_384)
        sent = 0
        for stream_id in (1, 3, 5):
            client.send_headers(stream_id, unknown, end_stream=False)
            yield client.answered(stream_id)
            # More than the whole connection window, across the three streams.
            client.write(frame * 160)
            sent += 160 * 16_384
        yield self.assert_good_request_works(client, 7)
        # All but what h2 batches up (half a window) was handed back.
        from tenantgw.http2.server import CONNECTION_WINDOW

        self.assertGreaterEqual(client.window_updates.get(0, 0) + CONNECTION_WINDOW, sent)

    @inlineCallbacks
    def test_early_answer_from_the_backend_resets_the_unfinished_request(self) -> Any:
        client = yield self.client()
        # The recorder answers as soon as it has the head; the body is still coming.
        client.send_headers(1, request_headers(method=b"POST"), end_stream=False)
        client.write(client.data_frame(1, b"part of a body"))
        yield client.answered(1)
        response = client.responses[1]
        self.assertEqual(response.status, 200)
        yield client.wait_for(lambda: client.responses[1].reset is not None)
        self.assertEqual(client.responses[1].reset, NO_ERROR)
        client.write(client.data_frame(1, b"the rest", end_stream=True) + client.rst_frame(1))
        yield self.assert_good_request_works(client, 3)

    @inlineCallbacks
    def test_malformed_trailers_reset_the_stream(self) -> Any:
        client = yield self.client()
        headers = request_headers(method=b"POST", authority=b"unknown.example")
        client.write(
            b"".join(client.headers_frames(1, headers, end_stream=False))
            + b"".join(client.headers_frames(1, [(b"X-Upper", b"1")], end_stream=True))
        )
        yield client.answered(1)
        self.assertEqual(client.responses[1].reset, PROTOCOL_ERROR)
        yield self.assert_good_request_works(client, 3)

    # -- point 5 and the rest -------------------------------------------------------------

    @inlineCallbacks
    def test_protocol_errors_get_goaway_without_a_traceback(self) -> Any:
        client = yield self.client()
        # DATA on stream 0 is a connection error (RFC 9113 section 6.1).
        client.write(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")
        yield client.wait_for(lambda: client.lost)
        assert client.goaway is not None
        self.assertEqual(client.goaway.error_code, PROTOCOL_ERROR)

    @inlineCallbacks
    def test_http2_is_one_ok_handshake_in_the_metrics(self) -> Any:
        client = yield self.client()
        yield self.assert_good_request_works(client, 1)
        lost: Deferred[None] = client.wait_for(lambda: client.lost)
        client.close()
        yield lost
        self.assertEqual(self.handshakes, ["ok"])

    @inlineCallbacks
    def test_http11_is_still_negotiated(self) -> Any:
        client: RawH2Client = yield connect_h2(self.https.getHost().port, protocols=(b"http/1.1",))
        self.addCleanup(client.abort)
        self.assertEqual(client.negotiated, b"http/1.1")


class _BigBody(Protocol):
    """Answers with C{total} bytes, written only as fast as the gateway reads them."""

    def __init__(self, owner: BigBackend) -> None:
        self.owner = owner
        self.left = owner.total

    def dataReceived(self, data: bytes) -> None:
        if b"\r\n\r\n" in data and self.left == self.owner.total:
            self.transport.write(  # type: ignore[union-attr]
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % self.owner.total
            )
            self.transport.registerProducer(self, False)  # type: ignore[union-attr]

    def resumeProducing(self) -> None:
        if self.left <= 0:
            return
        chunk = min(self.left, 64 * 1024)
        self.left -= chunk
        self.owner.written += chunk
        self.transport.write(b"x" * chunk)  # type: ignore[union-attr]
        if self.left <= 0:
            self.transport.unregisterProducer()  # type: ignore[union-attr]

    def stopProducing(self) -> None:
        self.left = 0


class BigBackend:
    def __init__(self, total: int) -> None:
        self.total = total
        self.written = 0
        self.port = reactor.listenTCP(
            0, Factory.forProtocol(lambda: _BigBody(self)), interface="127.0.0.1"
        )


class HTTP2FlowControlTests(TestCase):
    timeout = 60
    TOTAL = 64 * 1024 * 1024

    def setUp(self) -> None:
        self.backend = BigBackend(self.TOTAL)
        self.addCleanup(self.backend.port.stopListening)
        snapshot = compile_snapshot(
            tls_tenant(
                "a", ["a.example"], self_signed(("a.example",)), self.backend.port.getHost().port
            )
        )
        self.gateway = GatewayUnderTest(snapshot)
        self.addCleanup(self.gateway.stop)
        gateway = self.gateway.gateway
        sni = SNIContexts(lambda: gateway.snapshot, load_certificate(*self_signed(("d.invalid",))))
        site = MultiplexingGatewaySite(gateway, reactor)
        self.https = reactor.listenTCP(
            0, TLSMemoryBIOFactory(sni.options, False, site), interface="127.0.0.1"
        )
        self.addCleanup(self.https.stopListening)

    @inlineCallbacks
    def test_a_client_that_does_not_open_its_window_pauses_the_upstream(self) -> Any:
        client: RawH2Client = yield connect_h2(self.https.getHost().port)
        self.addCleanup(client.abort)
        client.send_headers(1, GOOD)
        yield client.wait_for(lambda: 1 in client.responses and bool(client.responses[1].body))
        yield deferLater(reactor, 1.0, lambda: None)
        # The client's initial windows (64 KiB) are all the gateway may send,
        # and the upstream is held back well short of the whole body.
        self.assertEqual(len(client.responses[1].data), 65_535)
        self.assertLess(self.backend.written, self.TOTAL // 4)
        # Windows opened: the rest follows, woken by WINDOW_UPDATE alone.
        opened = 2**31 - 1 - 65_535
        client.write(client.window_update_frame(0, opened) + client.window_update_frame(1, opened))
        yield client.answered(1, timeout=50)
        self.assertEqual(len(client.responses[1].data), self.TOTAL)
        self.assertEqual(client.responses[1].status, 200)
