"""
Per-tenant TLS: certificates from Secrets chosen by SNI, validated when
loaded, rotated without a restart; 421 when SNI and Host name different
tenants; HTTP -> HTTPS redirects.  Handshakes are real (pyOpenSSL on both
sides, real sockets).
"""

from __future__ import annotations

import datetime
from typing import Any

from cryptography import x509
from OpenSSL import SSL
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IHandshakeListener, IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from tenantgw.compile.compiler import CompileOptions, compile_snapshot
from tenantgw.plans.snapshot import STATE_ACCEPTED, STATE_CERTIFICATE_ERROR
from tenantgw.tls.certificates import (
    CertificateProblem,
    check_dates,
    load_certificate,
    name_covers,
)
from tenantgw.tls.default import self_signed
from tenantgw.tls.sni import SNIContexts
from tests.support import Upstream, dump, raw_exchange, serve, tenant_objects

NOW = datetime.datetime(2026, 11, 22, tzinfo=datetime.timezone.utc)


def tls_tenant(
    namespace: str,
    hosts: list[str],
    certificate: tuple[bytes, bytes] | None,
    upstream_port: int = 1,
    redirect: bool = True,
) -> list[dict[str, Any]]:
    tenant = {
        "hosts": hosts,
        "tls": {"secretName": "tls", "httpRedirect": redirect},
        "routes": [{"name": "all", "backends": [{"service": "web", "port": 80}]}],
    }
    allowed = ",".join(h for h in hosts)
    objects = tenant_objects(
        namespace,
        dump(tenant),
        {"web": [upstream_port]},
        annotations={"tenantgw.io/allowed-hosts": allowed},
    )
    if certificate is not None:
        chain, key = certificate
        objects.append(
            {
                "kind": "Secret",
                "type": "kubernetes.io/tls",
                "metadata": {"name": "tls", "namespace": namespace},
                "stringData": {"tls.crt": chain.decode(), "tls.key": key.decode()},
            }
        )
    return objects


class CertificateTests(SynchronousTestCase):
    def test_name_coverage_follows_rfc_6125(self) -> None:
        self.assertTrue(name_covers("*.a.example", "x.a.example"))
        self.assertFalse(name_covers("*.a.example", "a.example"))
        self.assertFalse(name_covers("*.a.example", "y.x.a.example"))
        self.assertTrue(name_covers("*.a.example", "*.a.example"))
        self.assertTrue(name_covers("A.Example", "a.example."))

    def test_key_must_match_and_names_must_exist(self) -> None:
        chain, _ = self_signed(("a.example",))
        _, other_key = self_signed(("a.example",))
        error = self.assertRaises(CertificateProblem, load_certificate, chain, other_key)
        self.assertIn("does not match", str(error))
        self.assertRaises(CertificateProblem, load_certificate, b"junk", other_key)
        self.assertRaises(CertificateProblem, load_certificate, chain, b"junk")

    def test_dates_are_checked(self) -> None:
        expired = load_certificate(*self_signed(("a.example",), now=NOW, days=1))
        check_dates(expired, NOW)
        error = self.assertRaises(
            CertificateProblem, check_dates, expired, NOW + datetime.timedelta(days=2)
        )
        self.assertIn("expired", str(error))
        error = self.assertRaises(
            CertificateProblem, check_dates, expired, NOW - datetime.timedelta(days=1)
        )
        self.assertIn("not valid before", str(error))


class CompileTLSTests(SynchronousTestCase):
    def test_valid_certificate_serves_its_hosts(self) -> None:
        cert = self_signed(("a.example", "*.a.example"), now=NOW)
        snapshot = compile_snapshot(tls_tenant("a", ["a.example", "*.a.example"], cert), now=NOW)
        self.assertEqual(snapshot.statuses["a"].state, STATE_ACCEPTED)
        self.assertEqual(snapshot.tenants["a"].https_hosts, {"a.example", "*.a.example"})
        self.assertEqual(snapshot.certificate_for("x.a.example").dns_names[0], "a.example")

    def test_uncovered_host_is_a_certificate_error_and_other_hosts_keep_working(self) -> None:
        cert = self_signed(("a.example",), now=NOW)
        snapshot = compile_snapshot(tls_tenant("a", ["a.example", "b.example"], cert), now=NOW)
        status = snapshot.statuses["a"]
        self.assertEqual(status.state, STATE_CERTIFICATE_ERROR)
        self.assertTrue(any("'b.example'" in m for m in status.messages), status.messages)
        self.assertEqual(snapshot.tenants["a"].https_hosts, {"a.example"})
        self.assertEqual(snapshot.tenant_for_host("b.example").namespace, "a")
        self.assertIsNone(snapshot.certificate_for("b.example"))

    def test_bad_or_missing_secret_never_takes_the_tenant_down(self) -> None:
        chain, _ = self_signed(("a.example",), now=NOW)
        _, wrong_key = self_signed(("a.example",), now=NOW)
        expired = self_signed(("a.example",), now=NOW - datetime.timedelta(days=30), days=1)
        for cert, reason in (
            ((chain, wrong_key), "does not match"),
            (expired, "expired"),
            (None, "not found"),
        ):
            snapshot = compile_snapshot(tls_tenant("a", ["a.example"], cert), now=NOW)
            status = snapshot.statuses["a"]
            self.assertEqual(status.state, STATE_CERTIFICATE_ERROR, reason)
            self.assertTrue(any(reason in m for m in status.messages), status.messages)
            self.assertEqual(snapshot.tenant_for_host("a.example").namespace, "a")
            self.assertEqual(snapshot.tenants["a"].https_hosts, frozenset())

    def test_wildcard_certificate_never_serves_another_tenants_exact_host(self) -> None:
        wildcard = self_signed(("*.shop.example",), now=NOW)
        objects = tls_tenant("a", ["*.shop.example"], wildcard) + tenant_objects(
            "b",
            dump({"hosts": ["api.shop.example"], "routes": []}),
            annotations={"tenantgw.io/allowed-hosts": "api.shop.example"},
        )
        snapshot = compile_snapshot(objects, now=NOW)
        self.assertIsNotNone(snapshot.certificate_for("www.shop.example"))
        self.assertIsNone(snapshot.certificate_for("api.shop.example"))


@implementer(IOpenSSLClientConnectionCreator)
class _Client:
    """A TLS client that sends SNI (or none) and does not verify: tests look at the cert."""

    def __init__(self, server_name: str | None, max_version: int | None = None) -> None:
        self.server_name = server_name
        self.max_version = max_version

    def clientConnectionForTLS(self, tls_protocol: Any) -> SSL.Connection:
        context = SSL.Context(SSL.TLS_METHOD)
        if self.max_version is not None:
            context.set_max_proto_version(self.max_version)
        connection = SSL.Connection(context, None)
        connection.set_app_data(tls_protocol)
        if self.server_name:
            connection.set_tlsext_host_name(self.server_name.encode())
        connection.set_connect_state()
        return connection


@implementer(IHandshakeListener)
class _HTTPSClient(Protocol):
    """Sends requests one at a time over one TLS connection; records the peer certificate."""

    def __init__(self) -> None:
        self.handshake: Deferred[list[str]] = Deferred()
        self.buffer = b""
        self.waiting: Deferred[bytes] | None = None
        self.lost: Deferred[None] = Deferred()

    def handshakeCompleted(self) -> None:
        peer = self.transport.getPeerCertificate().to_cryptography()  # type: ignore[union-attr]
        names = peer.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.handshake.callback(names.get_values_for_type(x509.DNSName))

    def request(self, host: str, path: str = "/") -> Deferred[bytes]:
        self.buffer = b""
        self.waiting = Deferred()
        self.transport.write(  # type: ignore[union-attr]
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        )
        return self.waiting

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        head, separator, body = self.buffer.partition(b"\r\n\r\n")
        if not separator or self.waiting is None:
            return
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        if len(body) >= length:
            waiting, self.waiting = self.waiting, None
            waiting.callback(self.buffer)

    def connectionLost(self, reason: object) -> None:
        if self.waiting is not None:
            self.waiting.errback(reason)  # type: ignore[arg-type]
        if not self.handshake.called:
            self.handshake.errback(reason)  # type: ignore[arg-type]
        self.lost.callback(None)


class HandshakeTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.upstream = Upstream("web")
        self.addCleanup(self.upstream.stop)
        self.cert_a = self_signed(("a.example",))
        self.cert_b = self_signed(("b.example",))
        self.gateway = serve(self, snapshot=self.snapshot(self.cert_a))
        default = load_certificate(*self_signed(("default.invalid",)))
        self.sni = SNIContexts(lambda: self.gateway.gateway.snapshot, default)
        self.gateway.gateway.https_redirect_port = 8443
        factory = TLSMemoryBIOFactory(self.sni.options, False, self.gateway.site)
        self.https = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(self.https.stopListening)

    def snapshot(self, cert_a: tuple[bytes, bytes], redirect: bool = True) -> Any:
        port = self.upstream.number
        return compile_snapshot(
            tls_tenant("a", ["a.example"], cert_a, port, redirect)
            + tls_tenant("b", ["b.example"], self.cert_b, port, redirect)
        )

    @inlineCallbacks
    def connect(self, server_name: str | None, max_version: int | None = None) -> Any:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.https.getHost().port)
        client = _HTTPSClient()
        wrapped = TLSMemoryBIOFactory(_Client(server_name, max_version), True, None)
        protocol = wrapped.protocol(wrapped, client)
        yield connectProtocol(endpoint, protocol)
        self.addCleanup(lambda: protocol.transport.abortConnection())
        names = yield client.handshake
        return client, names

    @inlineCallbacks
    def test_sni_chooses_the_tenant_certificate_or_the_default(self) -> Any:
        _, names = yield self.connect("a.example")
        self.assertEqual(names, ["a.example"])
        _, names = yield self.connect("b.example")
        self.assertEqual(names, ["b.example"])
        for server_name in ("unknown.example", None):
            _, names = yield self.connect(server_name)
            self.assertEqual(names, ["default.invalid"])

    @inlineCallbacks
    def test_default_certificate_from_a_secret_and_its_problems(self) -> Any:
        chain, key = self_signed(("secret-default.example",))
        operator_secret = {
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": "default-tls", "namespace": "gateway"},
            "stringData": {"tls.crt": chain.decode(), "tls.key": key.decode()},
        }
        port = self.upstream.number
        tenants = tls_tenant("a", ["a.example"], self.cert_a, port)
        options = CompileOptions(default_certificate_secret=("gateway", "default-tls"))
        self.gateway.gateway.apply(compile_snapshot([*tenants, operator_secret], options))
        for server_name in ("unknown.example", None):
            _, names = yield self.connect(server_name)
            self.assertEqual(names, ["secret-default.example"])
        _, names = yield self.connect("a.example")
        self.assertEqual(names, ["a.example"])
        # Unusable: the problem is reported and the listener's own default serves.
        snapshot = compile_snapshot(tenants, options)
        self.assertIn("not found", snapshot.default_certificate_problem)
        self.gateway.gateway.apply(snapshot)
        _, names = yield self.connect("unknown.example")
        self.assertEqual(names, ["default.invalid"])

    @inlineCallbacks
    def test_rotation_serves_the_new_certificate_on_the_next_handshake(self) -> Any:
        old_client, names = yield self.connect("a.example")
        self.assertEqual(names, ["a.example"])
        rotated = self_signed(("a.example", "rotated.a.example"))
        self.gateway.gateway.apply(self.snapshot(rotated))
        _, names = yield self.connect("a.example")
        self.assertEqual(names, ["a.example", "rotated.a.example"])
        # The connection opened before the rotation keeps working.
        response = yield old_client.request("a.example")
        self.assertTrue(response.startswith(b"HTTP/1.1 200 "), response)

    @inlineCallbacks
    def test_host_of_another_tenant_than_sni_is_421_on_a_reused_connection(self) -> Any:
        client, _ = yield self.connect("a.example")
        response = yield client.request("a.example")
        self.assertTrue(response.startswith(b"HTTP/1.1 200 "), response)
        response = yield client.request("b.example")
        self.assertTrue(response.startswith(b"HTTP/1.1 421 "), response)
        self.assertEqual(self.upstream.received[-1]["headers"]["host"], ["a.example"])
        self.assertEqual(len(self.upstream.received), 1)

    @inlineCallbacks
    def test_forwarded_proto_is_https(self) -> Any:
        client, _ = yield self.connect("a.example")
        yield client.request("a.example")
        self.assertEqual(self.upstream.received[-1]["headers"]["x-forwarded-proto"], ["https"])

    @inlineCallbacks
    def test_plain_http_is_redirected_with_308_unless_disabled(self) -> Any:
        request = b"GET /p?q=1 HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n"
        reply = yield raw_exchange(self.gateway.port, request)
        self.assertTrue(reply.startswith(b"HTTP/1.1 308 "), reply)
        self.assertIn(b"\r\nlocation: https://a.example:8443/p?q=1\r\n", reply.lower())
        self.gateway.gateway.apply(self.snapshot(self.cert_a, redirect=False))
        reply = yield raw_exchange(self.gateway.port, request)
        self.assertTrue(reply.startswith(b"HTTP/1.1 200 "), reply)

    @inlineCallbacks
    def test_minimum_tls_version_is_enforced(self) -> Any:
        default = load_certificate(*self_signed(("default.invalid",)))
        from twisted.internet.ssl import TLSVersion

        outcomes: list[str] = []
        strict = SNIContexts(
            lambda: self.gateway.gateway.snapshot,
            default,
            TLSVersion.TLSv1_3,
            handshake=outcomes.append,
        )
        factory = TLSMemoryBIOFactory(strict.options, False, self.gateway.site)
        self.https = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(self.https.stopListening)
        yield self.assertFailure(self.connect("a.example", SSL.TLS1_2_VERSION), Exception)
        client, names = yield self.connect("a.example")
        self.assertEqual(names, ["a.example"])
        # A response means the server has finished its side of the handshake
        # too (in TLS 1.3 the client finishes first).
        yield client.request("a.example")
        # Handshake outcomes, as /metrics counts them.
        self.assertEqual(outcomes, ["failed", "ok"])
