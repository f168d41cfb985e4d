"""
Access rules over real sockets, each with an allowed and a refused case:
IPv6 ranges, X-Forwarded-For and PROXY headers only from trusted proxies,
route access that narrows the tenant's and never widens it, and the
per-client rate limit keyed by the address those rules decided.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
from typing import Any

import bcrypt
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, connectProtocol
from twisted.internet.threads import deferToThread
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tenantgw.dataplane.access import TrustedProxyProtocolFactory
from tenantgw.tls.certificates import load_certificate
from tenantgw.tls.default import self_signed
from tenantgw.tls.sni import SNIContexts
from tests.support import (
    GatewayUnderTest,
    Upstream,
    _Collector,
    raw_exchange,
    serve,
)


def get(path: str = "/", extra: bytes = b"") -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: t.example\r\nConnection: close\r\n%s\r\n" % (
        path.encode(),
        extra,
    )


def status(reply: bytes) -> int | None:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else None


def forwarded_for(reply: bytes) -> list[str]:
    seen: dict[str, Any] = json.loads(reply.partition(b"\r\n\r\n")[2])
    values: list[str] = seen["headers"]["x-forwarded-for"]
    return values


def exchange_from(source: str, port: int, payload: bytes) -> Deferred[bytes]:
    """Like raw_exchange, from another loopback address than 127.0.0.1."""
    done: Deferred[bytes] = Deferred()
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, bindAddress=(source, 0))
    connectProtocol(endpoint, _Collector(payload, done, False))
    return done


class AccessTestCase(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.upstream = Upstream("web")
        self.addCleanup(self.upstream.stop)

    def serve(self, tenant: dict[str, Any], **kw: Any) -> GatewayUnderTest:
        """Tenant C{team} on C{t.example}, routed to the recording upstream."""
        return serve(
            self,
            tenant={"hosts": ["t.example"], **tenant},
            services={"web": [self.upstream.number]},
            **kw,
        )

    def listen(self, factory: Any, interface: str = "127.0.0.1") -> int:
        port = reactor.listenTCP(0, factory, interface=interface)
        self.addCleanup(port.stopListening)
        number: int = port.getHost().port
        return number


def route(name: str = "all", **extra: Any) -> dict[str, Any]:
    return {"name": name, "backends": [{"service": "web", "port": 80}], **extra}


class IPv6Tests(AccessTestCase):
    def exchange(self, port: int, payload: bytes) -> Deferred[bytes]:
        done: Deferred[bytes] = Deferred()
        connectProtocol(TCP6ClientEndpoint(reactor, "::1", port), _Collector(payload, done, False))
        return done

    @inlineCallbacks
    def test_allowed_and_denied_ipv6_ranges(self) -> Any:
        allowed = self.serve({"access": {"allowCIDRs": ["::1/128"]}, "routes": [route()]})
        reply = yield self.exchange(self.listen(allowed.site, "::1"), get())
        self.assertEqual(status(reply), 200, reply)
        self.assertEqual(forwarded_for(reply), ["::1"])
        # Deny wins over an allow that also covers the address.
        denied = self.serve(
            {"access": {"allowCIDRs": ["::/0"], "denyCIDRs": ["::1/128"]}, "routes": [route()]}
        )
        reply = yield self.exchange(self.listen(denied.site, "::1"), get())
        self.assertEqual(status(reply), 403, reply)
        self.assertEqual(len(self.upstream.received), 1)


class ForwardedForTests(AccessTestCase):
    tenant = {"access": {"allowCIDRs": ["203.0.113.0/24"]}, "routes": [route()]}

    @inlineCallbacks
    def test_believed_only_from_trusted_proxies(self) -> Any:
        trusting = self.serve(self.tenant, trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"),))
        reply = yield raw_exchange(trusting.port, get(extra=b"X-Forwarded-For: 203.0.113.9\r\n"))
        self.assertEqual(status(reply), 200, reply)
        reply = yield raw_exchange(trusting.port, get(extra=b"X-Forwarded-For: 192.0.2.1\r\n"))
        self.assertEqual(status(reply), 403, reply)
        reply = yield raw_exchange(trusting.port, get())
        self.assertEqual(status(reply), 403, reply)
        untrusting = self.serve(self.tenant)
        reply = yield raw_exchange(untrusting.port, get(extra=b"X-Forwarded-For: 203.0.113.9\r\n"))
        self.assertEqual(status(reply), 403, reply)


class ProxyProtocolTests(AccessTestCase):
    tenant = {"access": {"allowCIDRs": ["203.0.113.0/24"]}, "routes": [route()]}

    def proxied(self, trusted: str) -> int:
        gateway = self.serve(self.tenant)
        factory = TrustedProxyProtocolFactory(gateway.site, (ipaddress.ip_network(trusted),))
        return self.listen(factory)

    @inlineCallbacks
    def test_client_address_from_a_trusted_proxys_header(self) -> Any:
        port = self.proxied("127.0.0.0/8")
        reply = yield raw_exchange(port, b"PROXY TCP4 203.0.113.7 192.0.2.1 5555 80\r\n" + get())
        self.assertEqual(status(reply), 200, reply)
        self.assertEqual(forwarded_for(reply), ["203.0.113.7"])
        reply = yield raw_exchange(port, b"PROXY TCP4 198.51.100.1 192.0.2.1 5555 80\r\n" + get())
        self.assertEqual(status(reply), 403, reply)

    @inlineCallbacks
    def test_connection_without_a_header_is_closed(self) -> Any:
        port = self.proxied("127.0.0.0/8")
        reply = yield raw_exchange(port, get())
        self.assertEqual(reply, b"")
        self.assertEqual(self.upstream.received, [])

    @inlineCallbacks
    def test_header_from_an_untrusted_peer_is_refused(self) -> Any:
        port = self.proxied("10.0.0.0/8")
        reply = yield raw_exchange(port, b"PROXY TCP4 203.0.113.7 192.0.2.1 5555 80\r\n" + get())
        self.assertEqual(reply, b"")
        self.assertEqual(self.upstream.received, [])


class RouteAccessNarrowsTests(AccessTestCase):
    @inlineCallbacks
    def test_route_ranges_narrow_and_never_widen(self) -> Any:
        gateway = self.serve(
            {
                "access": {"allowCIDRs": ["127.0.0.0/8"], "denyCIDRs": ["127.0.0.2/32"]},
                "routes": [
                    route(
                        "narrow", match={"path": "/narrow"}, access={"allowCIDRs": ["10.0.0.0/8"]}
                    ),
                    route("wide", match={"path": "/wide"}, access={"allowCIDRs": ["0.0.0.0/0"]}),
                    route("open", match={"path": "/"}),
                ],
            }
        )
        codes = []
        for path in ("/", "/narrow", "/wide"):
            codes.append(status((yield raw_exchange(gateway.port, get(path)))))
        self.assertEqual(codes, [200, 403, 200])
        # A route's allow-everything does not let in what the tenant denies.
        codes = []
        for path in ("/", "/wide"):
            codes.append(status((yield exchange_from("127.0.0.2", gateway.port, get(path)))))
        self.assertEqual(codes, [403, 403])
        self.assertEqual(len(self.upstream.received), 2)

    @inlineCallbacks
    def test_route_credentials_add_to_the_tenants(self) -> Any:
        hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
        gateway = serve(
            self,
            tenant={
                "hosts": ["t.example"],
                "access": {"apiKeys": {"secretName": "keys"}},
                "routes": [
                    route(
                        "admin",
                        match={"path": "/admin"},
                        access={"basicAuth": {"secretName": "users", "realm": "admin"}},
                    ),
                    route("all", match={"path": "/"}),
                ],
            },
            services={"web": [self.upstream.number]},
            secrets={"keys": {"a": "tenant-key"}, "users": {"auth": f"alice:{hashed}\n"}},
        )
        key = b"X-API-Key: tenant-key\r\n"
        basic = b"Authorization: Basic YWxpY2U6czNjcmV0\r\n"  # alice:s3cret
        codes = []
        for path, headers in (
            ("/", key),
            ("/", b""),
            ("/admin", key),
            ("/admin", basic),
            ("/admin", key + basic),
        ):
            codes.append(status((yield raw_exchange(gateway.port, get(path, headers)))))
        # The route's basic auth is asked for on top of the tenant's key, never instead.
        self.assertEqual(codes, [200, 401, 401, 401, 200])
        self.assertEqual(len(self.upstream.received), 2)
        self.assertNotIn("authorization", self.upstream.received[1]["headers"])
        self.assertNotIn("x-api-key", self.upstream.received[1]["headers"])


class PerClientLimitTests(AccessTestCase):
    @inlineCallbacks
    def test_each_client_address_has_its_own_budget(self) -> Any:
        gateway = self.serve(
            {
                "quota": {"perClient": {"requestsPerSecond": 0.01, "burst": 1}},
                "routes": [route()],
            },
            trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"),),
        )
        replies = []
        for client in (b"203.0.113.1", b"203.0.113.1", b"203.0.113.2"):
            forwarded = b"X-Forwarded-For: " + client + b"\r\n"
            replies.append((yield raw_exchange(gateway.port, get(extra=forwarded))))
        self.assertEqual([status(r) for r in replies], [200, 429, 200])
        self.assertIn(b'"client";q=1;w=100', replies[1].lower())


def _tls_exchange(port: int, header: bytes, payload: bytes) -> bytes:
    """PROXY header in clear, then TLS (unverified: the address is under test, not the certificate)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(header)
        with context.wrap_socket(raw, server_hostname="t.example") as tls:
            tls.sendall(payload)
            received = b""
            while chunk := tls.recv(65536):
                received += chunk
            return received


class ProxyProtocolTLSTests(AccessTestCase):
    @inlineCallbacks
    def test_https_listener_takes_the_address_from_the_header(self) -> Any:
        gateway = self.serve({"access": {"allowCIDRs": ["203.0.113.0/24"]}, "routes": [route()]})
        sni = SNIContexts(
            lambda: gateway.gateway.snapshot, load_certificate(*self_signed(("default.invalid",)))
        )
        tls = TLSMemoryBIOFactory(sni.options, False, gateway.site)
        port = self.listen(TrustedProxyProtocolFactory(tls, (ipaddress.ip_network("127.0.0.0/8"),)))
        replies = []
        for source in (b"203.0.113.7", b"198.51.100.1"):
            header = b"PROXY TCP4 " + source + b" 192.0.2.1 5555 443\r\n"
            replies.append((yield deferToThread(_tls_exchange, port, header, get())))
        self.assertEqual([status(r) for r in replies], [200, 403])
        self.assertEqual(forwarded_for(replies[0]), ["203.0.113.7"])
        self.assertEqual(self.upstream.received[0]["headers"]["x-forwarded-proto"], ["https"])


class ProxyProtocolOptionTests(SynchronousTestCase):
    def test_listeners_wrapped_only_with_the_option(self) -> None:
        from tenantgw.app.options import Options
        from tenantgw.app.service import _proxied

        site = object()
        options = Options()
        options.parseOptions(["--source=dir:/x", "--trusted-proxies=10.0.0.0/8"])
        self.assertIs(_proxied(options, site), site)
        options = Options()
        options.parseOptions(
            ["--source=dir:/x", "--trusted-proxies=10.0.0.0/8", "--proxy-protocol"]
        )
        wrapped = _proxied(options, site)
        self.assertIsInstance(wrapped, TrustedProxyProtocolFactory)
        self.assertIs(wrapped.wrappedFactory, site)
        self.assertEqual(wrapped.trusted, (ipaddress.ip_network("10.0.0.0/8"),))
