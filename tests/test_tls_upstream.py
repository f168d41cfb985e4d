"""
Upstream TLS: a backend port named ``https`` is dialled with TLS and its
certificate verified against the Service DNS name; a failed verification is
a 502, logged with its reason.
"""

from __future__ import annotations

import json
from typing import Any

import treq
from OpenSSL import crypto
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.ssl import CertificateOptions
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool
from twisted.web.server import Site

from tenantgw.compile.compiler import compile_snapshot
from tenantgw.tls.upstream import UpstreamTrust
from tests.support import RecordingResource, dump, serve
from tests.tls_support import TestCA


def https_tenant(port: int, port_spec: dict[str, Any]) -> list[dict[str, Any]]:
    tenant = {
        "hosts": ["t.example"],
        "routes": [
            {
                "name": "all",
                "backends": [
                    {"service": "web", "port": port_spec.get("name") or port_spec["port"]}
                ],
            }
        ],
    }
    return [
        {
            "kind": "Namespace",
            "metadata": {"name": "team", "annotations": {"tenantgw.io/allowed-hosts": "t.example"}},
        },
        {
            "kind": "ConfigMap",
            "metadata": {
                "name": "tenant",
                "namespace": "team",
                "labels": {"tenantgw.io/tenant": "true"},
            },
            "data": {"tenant.yaml": dump(tenant)},
        },
        {
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "team"},
            "spec": {"ports": [port_spec]},
        },
        {
            "kind": "EndpointSlice",
            "metadata": {
                "name": "web-1",
                "namespace": "team",
                "labels": {"kubernetes.io/service-name": "web"},
            },
            "addressType": "IPv4",
            "ports": [{"name": port_spec.get("name", ""), "port": port}],
            "endpoints": [{"addresses": ["127.0.0.1"]}],
        },
    ]


class _Site(Site):
    """A Site offering only the given protocols by ALPN (twisted.web's own offers h2)."""

    def __init__(self, resource: Any, alpn: list[bytes]) -> None:
        super().__init__(resource)
        self._alpn = alpn

    def acceptableProtocols(self) -> list[bytes]:
        return self._alpn


class UpstreamTLSTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.ca = TestCA()
        self.client_pool = HTTPConnectionPool(reactor, persistent=False)
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def tls_upstream(self, chain: bytes, key: bytes, alpn: list[bytes] | None = None) -> int:
        self.resource = RecordingResource("tls-web")
        options = CertificateOptions(
            privateKey=crypto.load_privatekey(crypto.FILETYPE_PEM, key),
            certificate=crypto.load_certificate(crypto.FILETYPE_PEM, chain),
        )
        site = Site(self.resource) if alpn is None else _Site(self.resource, alpn)
        port = reactor.listenSSL(0, site, options, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port.getHost().port

    @inlineCallbacks
    def get(self, upstream_port: int, port_spec: dict[str, Any], trust: UpstreamTrust) -> Any:
        snapshot = compile_snapshot(https_tenant(upstream_port, port_spec))
        gateway = serve(self, snapshot=snapshot, upstream_trust=trust)
        self.gateway = gateway
        response = yield treq.get(
            gateway.url("/x"), headers={"Host": ["t.example"]}, pool=self.client_pool
        )
        body = yield response.content()
        return response.code, body

    @inlineCallbacks
    def test_https_port_is_dialled_with_tls_and_verified(self) -> Any:
        port = self.tls_upstream(*self.ca.issue("web.team.svc"))
        for spec in ({"name": "https", "port": 443}, {"port": 8443, "appProtocol": "https"}):
            code, body = yield self.get(port, spec, UpstreamTrust(self.ca.pem))
            self.assertEqual(code, 200, body)
            self.assertEqual(json.loads(body)["upstream"], "tls-web")

    @inlineCallbacks
    def test_upstream_offering_h2_by_alpn_gets_http2(self) -> Any:
        port = self.tls_upstream(*self.ca.issue("web.team.svc"), alpn=[b"h2", b"http/1.1"])
        for _ in range(3):
            code, body = yield self.get(
                port, {"name": "https", "port": 443}, UpstreamTrust(self.ca.pem)
            )
            self.assertEqual(code, 200, body)
            gateway = self.gateway.gateway
            self.assertEqual(gateway.h2_pool.connections_opened, 1)
            self.assertEqual(gateway.pool.connections_opened, 0)

    @inlineCallbacks
    def test_upstream_choosing_http1_by_alpn_gets_http1_from_then_on(self) -> Any:
        port = self.tls_upstream(*self.ca.issue("web.team.svc"), alpn=[b"http/1.1"])
        snapshot = compile_snapshot(https_tenant(port, {"name": "https", "port": 443}))
        gateway = serve(self, snapshot=snapshot, upstream_trust=UpstreamTrust(self.ca.pem))
        for _ in range(3):
            response = yield treq.get(
                gateway.url("/x"), headers={"Host": ["t.example"]}, pool=self.client_pool
            )
            body = yield response.content()
            self.assertEqual(response.code, 200, body)
        # One ALPN probe, then HTTP/1.1 (one pooled connection).
        self.assertEqual(gateway.gateway.h2_pool.connections_opened, 1)
        self.assertEqual(gateway.pool.connections_opened, 1)

    @inlineCallbacks
    def test_wrong_name_is_502_and_logged(self) -> Any:
        port = self.tls_upstream(*self.ca.issue("other.team.svc"))
        code, _ = yield self.get(port, {"name": "https", "port": 443}, UpstreamTrust(self.ca.pem))
        self.assertEqual(code, 502)
        self.assertEqual(self.resource.received, [])
        logged = [e for e in self.events if "upstream" in e.get("log_format", "")]
        self.assertTrue(logged, "the verification failure was not logged")

    @inlineCallbacks
    def test_untrusted_issuer_is_502(self) -> Any:
        port = self.tls_upstream(*self.ca.issue("web.team.svc"))
        code, _ = yield self.get(
            port, {"name": "https", "port": 443}, UpstreamTrust(TestCA("other CA").pem)
        )
        self.assertEqual(code, 502)
        self.assertEqual(self.resource.received, [])
