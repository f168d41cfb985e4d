"""
Request trailers reach the upstream, minus the fields a client must not set
that way, over every pair of client and upstream protocols that can carry
them: HTTP/1.1 chunked and HTTP/2 in, HTTP/1.1 chunked and h2c out.

Each end-to-end test sends the forbidden fields along with the good one and
checks, in the bytes the upstream received, that only the good one arrived.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tenantgw.compile.compiler import compile_snapshot
from tenantgw.dataplane.gateway import MultiplexingGatewaySite
from tenantgw.tls.certificates import load_certificate
from tenantgw.tls.default import self_signed
from tenantgw.tls.sni import SNIContexts
from tenantgw.wire.fields import forwardable_trailers
from tests.eventually import eventually
from tests.fronts import FrontMixin, both_fronts
from tests.h2_raw import PROTOCOL_ERROR, ByteRecorder, RawH2Client, connect_h2, request_headers
from tests.h2c_support import H2cBackend
from tests.support import raw_exchange, serve
from tests.test_tls import tls_tenant

GOOD = [(b"x-checksum", b"sha256=abc")]
# What a client might try to slip past the gateway's checks in a trailer.
FORGED = [
    (b"content-length", b"99"),
    (b"authorization", b"Bearer forged"),
    (b"cookie", b"session=forged"),
    (b"host", b"other.example"),
    (b"x-forwarded-for", b"6.6.6.6"),
    (b"x-real-ip", b"6.6.6.6"),
    (b"forwarded", b"for=6.6.6.6"),
    (b"x-request-id", b"forged"),
    (b"x-tenantgw-mirror", b"1"),
    (b"x_user", b"admin"),
]


class FilterTests(SynchronousTestCase):
    def test_only_fields_a_client_may_set_in_trailers_pass(self) -> None:
        self.assertEqual(forwardable_trailers(GOOD + FORGED), GOOD)

    def test_names_are_lower_cased_and_values_trimmed(self) -> None:
        self.assertEqual(
            forwardable_trailers([(b"X-Checksum", b" \tabc \t"), (b"Grpc-Foo", b"1")]),
            [(b"x-checksum", b"abc"), (b"grpc-foo", b"1")],
        )

    def test_hop_by_hop_and_pseudo_fields_never_pass(self) -> None:
        fields = [(b"te", b"trailers"), (b"connection", b"x"), (b":path", b"/")]
        self.assertEqual(forwardable_trailers(fields), [])


def _h2c(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tenant's Service port speaks h2c (named so, as gRPC Services are)."""
    for obj in objects:
        for port in obj.get("spec", {}).get("ports", []) + obj.get("ports", []):
            port["name"] = "h2c"
    return objects


class TrailersEndToEndTests(FrontMixin, TestCase):
    def gateway(self, upstream_port: int, h2c: bool = False) -> int:
        """A gateway for a.example over TLS (HTTP/2 or HTTP/1.1); its HTTPS port."""
        objects = tls_tenant(
            "a", ["a.example"], self_signed(("a.example",)), upstream_port, redirect=False
        )
        gateway = serve(self, snapshot=compile_snapshot(_h2c(objects) if h2c else objects))
        sni = SNIContexts(
            lambda: gateway.gateway.snapshot, load_certificate(*self_signed(("default.invalid",)))
        )
        site = MultiplexingGatewaySite(gateway.gateway, reactor)
        https = reactor.listenTCP(
            0, TLSMemoryBIOFactory(sni.options, False, site), interface="127.0.0.1"
        )
        self.addCleanup(https.stopListening)
        self.plain_port = gateway.port
        return int(https.getHost().port)

    def assert_none_forged(self, received: bytes) -> None:
        for name, value in FORGED:
            self.assertNotIn(b"%s: %s" % (name, value), received.lower(), name)

    def recorder(self) -> ByteRecorder:
        backend = ByteRecorder()
        self.addCleanup(backend.stop)
        return backend

    @inlineCallbacks
    def h2_post(self, port: int, length: bool) -> Any:
        """POST over HTTP/2: headers, a DATA frame, then the trailers ending the stream."""
        client: RawH2Client = yield connect_h2(port)
        self.addCleanup(client.abort)
        extra = [(b"content-length", b"5")] if length else []
        headers = request_headers(method=b"POST", extra=extra)
        client.write(
            b"".join(client.headers_frames(1, headers, end_stream=False))
            + client.data_frame(1, b"hello")
            + b"".join(client.headers_frames(1, GOOD + FORGED, end_stream=True))
        )
        yield client.answered(1)
        return client.responses[1]

    @inlineCallbacks
    def test_http1_chunked_to_http1(self) -> Any:
        backend = self.recorder()
        self.gateway(backend.number)
        trailer = b"".join(b"%s: %s\r\n" % field for field in GOOD + FORGED)
        reply = yield raw_exchange(
            self.plain_port,
            b"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n5\r\nhello\r\n0\r\n" + trailer + b"\r\n",
        )
        self.assertTrue(reply.startswith(b"HTTP/1.1 200 "), reply[:200])
        self.assertEqual(backend.trailers, [b"x-checksum: sha256=abc"])
        self.assertTrue(backend.received.endswith(b"0\r\nx-checksum: sha256=abc\r\n\r\n"))
        self.assert_none_forged(backend.received)

    @inlineCallbacks
    def test_http2_to_http1_without_a_length_goes_chunked_with_the_trailers(self) -> Any:
        backend = self.recorder()
        response = yield self.h2_post(self.gateway(backend.number), length=False)
        self.assertEqual(response.status, 200)
        self.assertIn(b"transfer-encoding: chunked", backend.heads[0].lower())
        self.assertEqual(backend.trailers, [b"x-checksum: sha256=abc"])
        self.assert_none_forged(backend.received)

    @inlineCallbacks
    def test_http2_to_http1_with_a_length_drops_them(self) -> Any:
        """A Content-Length body has nowhere to carry trailers on HTTP/1.1 (docs/http2.md)."""
        backend = self.recorder()
        response = yield self.h2_post(self.gateway(backend.number), length=True)
        self.assertEqual(response.status, 200)
        self.assertIn(b"content-length: 5", backend.heads[0].lower())
        self.assertTrue(backend.received.endswith(b"\r\n\r\nhello"), backend.received[-100:])

    @inlineCallbacks
    def test_http2_to_h2c(self) -> Any:
        backend = H2cBackend(reactor)
        self.addCleanup(backend.stop)
        response = yield self.h2_post(self.gateway(backend.port, h2c=True), length=False)
        self.assertEqual(response.status, 200)
        yield eventually(lambda: backend.bodies, "the upstream saw the request end")
        self.assertEqual(backend.bodies, [b"hello"])
        self.assertEqual(backend.trailers, [GOOD])

    @inlineCallbacks
    def test_http1_chunked_to_h2c(self) -> Any:
        backend = H2cBackend(reactor)
        self.addCleanup(backend.stop)
        self.gateway(backend.port, h2c=True)
        reply = yield raw_exchange(
            self.plain_port,
            b"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n5\r\nhello\r\n0\r\nX-Checksum: sha256=abc\r\n"
            b"X-Forwarded-For: 6.6.6.6\r\n\r\n",
        )
        self.assertTrue(reply.startswith(b"HTTP/1.1 200 "), reply[:200])
        self.assertEqual(backend.bodies, [b"hello"])
        self.assertEqual(backend.trailers, [GOOD])

    @inlineCallbacks
    def test_a_body_without_trailers_ends_as_before(self) -> Any:
        backend = H2cBackend(reactor)
        self.addCleanup(backend.stop)
        port = self.gateway(backend.port, h2c=True)
        client: RawH2Client = yield connect_h2(port)
        self.addCleanup(client.abort)
        client.write(
            b"".join(client.headers_frames(1, request_headers(method=b"POST"), end_stream=False))
            + client.data_frame(1, b"hello", end_stream=True)
        )
        yield client.answered(1)
        self.assertEqual(client.responses[1].status, 200)
        self.assertEqual((backend.bodies, backend.trailers), ([b"hello"], []))

    @inlineCallbacks
    def test_malformed_trailers_never_end_the_upstream_request(self) -> Any:
        backend = H2cBackend(reactor)
        self.addCleanup(backend.stop)
        client: RawH2Client = yield connect_h2(self.gateway(backend.port, h2c=True))
        self.addCleanup(client.abort)
        client.write(
            b"".join(client.headers_frames(1, request_headers(method=b"POST"), end_stream=False))
            + client.data_frame(1, b"hello")
            + b"".join(client.headers_frames(1, [(b"X-Upper", b"1")], end_stream=True))
        )
        yield client.answered(1)
        self.assertEqual(client.responses[1].reset, PROTOCOL_ERROR)
        client.send_headers(3, request_headers())  # the positive control, after it
        yield client.answered(3)
        self.assertEqual(client.responses[3].status, 200)
        self.assertEqual((backend.bodies, backend.trailers), ([b""], []))


both_fronts(globals())
