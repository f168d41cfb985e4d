"""The gRPC wire rules (tenantgw.wire.grpc) and which protocol a Service port gets."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tenantgw.compile.compiler import backend_protocol
from tenantgw.wire import grpc


class GrpcWireTests(SynchronousTestCase):
    def test_content_types(self) -> None:
        for value in (b"application/grpc", b"application/grpc+proto", b"Application/GRPC;x=1"):
            self.assertTrue(grpc.is_grpc(value), value)
        for value in (None, b"application/grpc-web", b"application/grpcx", b"text/plain"):
            self.assertFalse(grpc.is_grpc(value), value)

    def test_timeouts(self) -> None:
        self.assertEqual(grpc.parse_timeout(b"1S"), 1.0)
        self.assertEqual(grpc.parse_timeout(b"250m"), 0.25)
        self.assertEqual(grpc.parse_timeout(b"2M"), 120.0)
        self.assertEqual(grpc.parse_timeout(b"1H"), 3600.0)
        self.assertAlmostEqual(grpc.parse_timeout(b"5u") or 0, 5e-6)
        # Hostile or malformed: no deadline taken from them.
        for value in (b"", b"1", b"S", b"123456789S", b"-1S", b"1.5S", b"1s", b"1S1"):
            self.assertIsNone(grpc.parse_timeout(value), value)
        self.assertEqual(grpc.format_timeout(1.0), b"1000m")
        self.assertEqual(grpc.format_timeout(0.0001), b"1m")
        self.assertEqual(grpc.parse_timeout(grpc.format_timeout(30.0)), 30.0)
        self.assertEqual(grpc.format_timeout(10**9), b"99999999S")

    def test_statuses(self) -> None:
        expected = {404: 12, 429: 8, 401: 16, 403: 7, 503: 14, 504: 4, 502: 14}
        for http, status in expected.items():
            self.assertEqual(grpc.status_for_http(http), status, http)
        self.assertEqual(grpc.status_for_http(418), grpc.UNKNOWN)


class BackendProtocolTests(SynchronousTestCase):
    def test_service_ports(self) -> None:
        cases = [
            ("http", None, "h1"),
            ("", None, "h1"),
            ("grpc", None, "h2c"),
            ("h2c", None, "h2c"),
            ("grpc-api", None, "h2c"),
            ("h2c-internal", None, "h2c"),
            ("grpcweb", None, "h1"),
            ("web", "kubernetes.io/h2c", "h2c"),
            ("web", "grpc", "h2c"),
            ("grpc", "http", "h1"),  # an explicit appProtocol wins over the name
            ("grpc", "kubernetes.io/ws", "h1"),
            ("https", None, "tls"),
            ("web", "https", "tls"),
            ("https", "kubernetes.io/h2c", "tls"),
            ("web", 5, "h1"),  # a malformed appProtocol is no protocol
        ]
        for name, app, protocol in cases:
            self.assertEqual(backend_protocol(name, app), protocol, (name, app))
