"""
The data plane over real sockets: client -> gateway -> recording upstream.

Each test compiles tenant manifests through the real compile step, so what
is tested is what a tenant's file does, not what a hand-built snapshot does.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import bcrypt
import treq
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import inlineCallbacks
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import HTTPConnectionPool

from tests.eventually import eventually
from tests.fronts import FrontMixin
from tests.support import (
    GatewayUnderTest,
    Upstream,
    build_gateway,
    complete_memory_connection,
    dump,
    raw_exchange,
    raw_upstream,
    serve,
    snapshot_of,
    tenant_objects,
)


def _route(name: str, service: str = "web", **extra: Any) -> dict[str, Any]:
    route: dict[str, Any] = {"name": name, "backends": [{"service": service, "port": 80}]}
    route.update(extra)
    return route


class ProxyTestCase(FrontMixin, TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.client_pool = HTTPConnectionPool(reactor, persistent=False)
        self.upstreams: dict[str, Upstream] = {}

    def upstream(self, name: str = "web") -> Upstream:
        upstream = Upstream(name)
        self.upstreams[name] = upstream
        self.addCleanup(upstream.stop)
        return upstream

    def serve(self, tenant: dict[str, Any], namespace: str = "team", **kw: Any) -> GatewayUnderTest:
        """The tenant in C{namespace}, each service routed to the upstream of its name."""
        services = {name: [u.number] for name, u in self.upstreams.items()}
        return serve(self, tenant=tenant, namespace=namespace, services=services, **kw)

    def request(
        self,
        gateway: GatewayUnderTest,
        path: str,
        host: str = "t.example",
        method: str = "GET",
        headers: dict[str, Any] | None = None,
        data: bytes | None = None,
    ) -> Any:
        all_headers = {"Host": [host]}
        all_headers.update(headers or {})
        return treq.request(
            method,
            gateway.url(path),
            headers=all_headers,
            data=data,
            pool=self.client_pool,
            allow_redirects=False,
        )

    @inlineCallbacks
    def get_json(self, gateway: GatewayUnderTest, path: str, **kw: Any) -> Any:
        response = yield self.request(gateway, path, **kw)
        body = yield response.content()
        return response, json.loads(body) if body.startswith(b"{") else body


class ForwardingTests(ProxyTestCase):
    @inlineCallbacks
    def test_forwarded_headers_and_request_id(self) -> Any:
        self.upstream()
        gateway = self.serve({"hosts": ["t.example"], "routes": [_route("all")]})
        response, seen = yield self.get_json(
            gateway,
            "/a/b?q=1",
            headers={
                "X-Forwarded-For": ["198.51.100.7"],
                "Connection": ["keep-alive, x-hop"],
                "X-Hop": ["secret"],
                "Keep-Alive": ["timeout=5"],
            },
        )
        self.assertEqual(response.code, 200)
        headers = seen["headers"]
        self.assertEqual(seen["uri"], "/a/b?q=1")
        self.assertEqual(headers["host"], ["t.example"])
        self.assertEqual(headers["x-forwarded-for"], ["198.51.100.7, 127.0.0.1"])
        self.assertEqual(headers["x-forwarded-proto"], ["http"])
        self.assertEqual(headers["x-forwarded-host"], ["t.example"])
        # Hop-by-hop headers, including those named in Connection, stop here.
        for hop in ("x-hop", "keep-alive", "connection"):
            self.assertNotIn(hop, headers)
        request_id = response.headers.getRawHeaders("x-request-id")[0]
        self.assertEqual(headers["x-request-id"], [request_id])
        self.assertRegex(request_id, r"^[0-9a-f]{32}$")

    @inlineCallbacks
    def test_ingress_nginx_fields_follow_trusted_proxies(self) -> Any:
        """X-Real-IP is the client address: behind a trusted proxy, its client's."""
        self.upstream()
        tenant = {"hosts": ["t.example"], "routes": [_route("all")]}
        sent = {"X-Forwarded-For": ["198.51.100.7"], "X-Real-IP": ["10.0.0.1"]}
        _, seen = yield self.get_json(self.serve(tenant), "/", headers=sent)
        self.assertEqual(seen["headers"]["x-real-ip"], ["127.0.0.1"])
        self.assertEqual(seen["headers"]["x-original-forwarded-for"], ["198.51.100.7"])
        trusting = self.serve(tenant, trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"),))
        _, seen = yield self.get_json(trusting, "/", headers=sent)
        headers = seen["headers"]
        self.assertEqual(headers["x-real-ip"], ["198.51.100.7"])
        self.assertEqual(headers["x-scheme"], ["http"])
        self.assertEqual(headers["x-forwarded-port"], [str(trusting.port)])

    @inlineCallbacks
    def test_well_formed_request_id_is_kept_and_malformed_replaced(self) -> Any:
        self.upstream()
        gateway = self.serve({"hosts": ["t.example"], "routes": [_route("all")]})
        response, seen = yield self.get_json(
            gateway, "/", headers={"X-Request-Id": ["client-chosen-id-123"]}
        )
        self.assertEqual(response.headers.getRawHeaders("x-request-id"), ["client-chosen-id-123"])
        self.assertEqual(seen["headers"]["x-request-id"], ["client-chosen-id-123"])
        response, seen = yield self.get_json(
            gateway, "/", headers={"X-Request-Id": ["<script>alert(1)</script>"]}
        )
        generated = response.headers.getRawHeaders("x-request-id")[0]
        self.assertRegex(generated, r"^[0-9a-f]{32}$")
        self.assertEqual(seen["headers"]["x-request-id"], [generated])

    @inlineCallbacks
    def test_header_modifiers_and_prefix_rewrite(self) -> Any:
        self.upstream()
        route = _route(
            "api",
            match={"path": "/api"},
            rewrite={"replacePrefix": "/", "host": "api.internal"},
            requestHeaders={"set": {"x-env": "prod"}, "add": {"x-tag": "a"}, "remove": ["x-debug"]},
            responseHeaders={
                "set": {"x-served-by": "gw"},
                "add": {"x-extra": "1"},
                "remove": ["server"],
            },
        )
        gateway = self.serve({"hosts": ["t.example"], "routes": [route]})
        response, seen = yield self.get_json(
            gateway,
            "/api/x/y?z=1",
            headers={"X-Env": ["dev"], "X-Tag": ["client"], "X-Debug": ["1"]},
        )
        self.assertEqual(seen["uri"], "/x/y?z=1")
        self.assertEqual(seen["headers"]["host"], ["api.internal"])
        self.assertEqual(seen["headers"]["x-env"], ["prod"])
        self.assertEqual(seen["headers"]["x-tag"], ["client", "a"])
        self.assertNotIn("x-debug", seen["headers"])
        self.assertEqual(response.headers.getRawHeaders("x-served-by"), ["gw"])
        self.assertEqual(response.headers.getRawHeaders("x-extra"), ["1"])
        self.assertIsNone(response.headers.getRawHeaders("server"))
        _, seen = yield self.get_json(gateway, "/api")
        self.assertEqual(seen["uri"], "/")

    @inlineCallbacks
    def test_dot_segments_are_resolved_before_matching(self) -> Any:
        self.upstream("public")
        self.upstream("admin")
        gateway = self.serve(
            {
                "hosts": ["t.example"],
                "routes": [
                    _route("public", service="public", match={"path": "/public"}),
                    _route("admin", service="admin", match={"path": "/admin"}),
                ],
            }
        )
        _, seen = yield self.get_json(gateway, "/public/../admin/x")
        self.assertEqual(seen["upstream"], "admin")
        self.assertEqual(seen["uri"], "/admin/x")
        # An encoded dot is an unreserved character: decoded, then resolved
        # like the plain form (tenantgw.wire.paths), as Envoy's normalize_path.
        _, seen = yield self.get_json(gateway, "/public/%2e%2e/admin/x")
        self.assertEqual(seen["upstream"], "admin")
        self.assertEqual(seen["uri"], "/admin/x")
        response = yield self.request(gateway, "/public/..%2fadmin")
        self.assertEqual(response.code, 400)
        yield response.content()

    @inlineCallbacks
    def test_upstream_connections_are_pooled(self) -> Any:
        self.upstream()
        gateway = self.serve({"hosts": ["t.example"], "routes": [_route("all")]})
        for _ in range(5):
            response = yield self.request(gateway, "/")
            yield response.content()
        self.assertEqual(gateway.pool.connections_opened, 1)
        self.assertEqual(gateway.pool.idle_count(), 1)

    @inlineCallbacks
    def test_post_body_reaches_upstream(self) -> Any:
        self.upstream()
        gateway = self.serve({"hosts": ["t.example"], "routes": [_route("all")]})
        _, seen = yield self.get_json(gateway, "/", method="POST", data=b"x" * 300_000)
        self.assertEqual(seen["body_length"], 300_000)
        self.assertEqual(seen["headers"]["content-length"], ["300000"])


class MatchingTests(ProxyTestCase):
    @inlineCallbacks
    def test_precedence_over_real_requests(self) -> Any:
        for name in ("root", "prefix", "longer", "exact", "post", "canary", "v2"):
            self.upstream(name)
        gateway = self.serve(
            {
                "hosts": ["t.example"],
                "routes": [
                    _route("root", service="root"),
                    _route("prefix", service="prefix", match={"path": "/v2"}),
                    _route("longer", service="longer", match={"path": "/v2/items"}),
                    _route(
                        "exact", service="exact", match={"path": "/v2/items", "pathType": "Exact"}
                    ),
                    _route("post", service="post", match={"path": "/v2", "methods": ["POST"]}),
                    _route(
                        "canary",
                        service="canary",
                        match={"path": "/v2", "headers": [{"name": "X-Canary", "value": "1"}]},
                    ),
                    _route(
                        "v2q",
                        service="v2",
                        match={"path": "/v2", "queryParams": [{"name": "v", "value": "2"}]},
                    ),
                ],
            }
        )
        cases = [
            ("GET", "/v2", {}, "prefix"),
            ("GET", "/v2/", {}, "prefix"),
            ("GET", "/v2x", {}, "root"),
            ("GET", "/v2/items", {}, "exact"),
            ("GET", "/v2/items/", {}, "longer"),
            ("POST", "/v2/a", {}, "post"),
            ("GET", "/v2/a", {"x-canary": ["1"]}, "canary"),
            ("GET", "/v2/a", {"x-canary": ["2"]}, "prefix"),
            ("GET", "/v2/a?v=2", {}, "v2"),
            ("GET", "/v2/a?v=3", {}, "prefix"),
        ]
        for method, path, headers, expected in cases:
            _, seen = yield self.get_json(gateway, path, method=method, headers=headers)
            self.assertEqual(seen["upstream"], expected, (method, path, headers))

    @inlineCallbacks
    def test_unknown_host_and_unmatched_path_are_404_naming_no_tenant(self) -> Any:
        self.upstream()
        gateway = self.serve(
            {"hosts": ["t.example"], "routes": [_route("a", match={"path": "/a"})]},
            namespace="secret-team",
        )
        for host, path in (("other.example", "/a"), ("t.example", "/b"), ("T.EXAMPLE:80", "/b")):
            response = yield self.request(gateway, path, host=host)
            body = yield response.content()
            self.assertEqual(response.code, 404)
            self.assertNotIn(b"secret-team", body)
            self.assertNotIn(b"t.example", body)
            self.assertTrue(response.headers.hasHeader("x-request-id"))
        response = yield self.request(gateway, "/a", host="T.Example.:8080")
        self.assertEqual(response.code, 200)
        yield response.content()

    @inlineCallbacks
    def test_json_error_bodies_by_accept(self) -> Any:
        gateway = self.serve({"hosts": ["t.example"], "routes": []})
        response = yield self.request(gateway, "/", headers={"Accept": ["application/json"]})
        body = yield response.json()
        self.assertEqual(body, {"error": "not_found", "status": 404})

    @inlineCallbacks
    def test_redirect_route(self) -> Any:
        gateway = self.serve(
            {
                "hosts": ["t.example"],
                "routes": [
                    {
                        "name": "r",
                        "match": {"path": "/old"},
                        "redirect": {
                            "scheme": "https",
                            "port": 443,
                            "path": "/new",
                            "statusCode": 308,
                        },
                    },
                    {
                        "name": "r2",
                        "match": {"path": "/x"},
                        "redirect": {"host": "other.example", "port": 8080},
                    },
                ],
            }
        )
        response = yield self.request(gateway, "/old?a=1")
        yield response.content()
        self.assertEqual(response.code, 308)
        self.assertEqual(response.headers.getRawHeaders("location"), ["https://t.example/new?a=1"])
        response = yield self.request(gateway, "/x/y")
        yield response.content()
        self.assertEqual(response.code, 302)
        self.assertEqual(
            response.headers.getRawHeaders("location"), ["http://other.example:8080/x/y"]
        )


class UpstreamFailureTests(ProxyTestCase):
    @inlineCallbacks
    def test_refused_connection_is_502(self) -> Any:
        upstream = self.upstream()
        gateway = self.serve({"hosts": ["t.example"], "routes": [_route("all")]})
        yield upstream.stop()
        response = yield self.request(gateway, "/")
        body = yield response.content()
        self.assertEqual((response.code, body), (502, b"bad gateway\n"))

    @inlineCallbacks
    def test_malformed_and_truncated_responses_are_502(self) -> Any:
        for reply in (
            b"NOT HTTP\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Le",  # closed mid-head
        ):
            port = raw_upstream(reply)
            self.addCleanup(port.stopListening)
            gateway = serve(
                self,
                tenant={"hosts": ["t.example"], "routes": [_route("all")]},
                services={"web": [port.getHost().port]},
            )
            response = yield self.request(gateway, "/")
            yield response.content()
            self.assertEqual(response.code, 502, reply)

    @inlineCallbacks
    def test_no_ready_endpoint_is_503(self) -> Any:
        gateway = serve(
            self, tenant={"hosts": ["t.example"], "routes": [_route("all")]}, services={"web": []}
        )
        response = yield self.request(gateway, "/")
        yield response.content()
        self.assertEqual(response.code, 503)

    @inlineCallbacks
    def test_client_disconnect_cancels_upstream_request(self) -> Any:
        upstream = self.upstream()
        gateway = self.serve({"hosts": ["t.example"], "routes": [_route("all")]})
        d = self.request(gateway, "/hang")
        yield eventually(lambda: upstream.resource.hang_lost, "the request reached the upstream")
        d.cancel()
        yield self.assertFailure(d, Exception)
        outcome = yield upstream.resource.hang_lost[0]
        self.assertEqual(outcome, "lost")

    @inlineCallbacks
    def test_upstream_status_and_body_pass_through(self) -> Any:
        self.upstream()
        gateway = self.serve({"hosts": ["t.example"], "routes": [_route("all")]})
        response, seen = yield self.get_json(gateway, "/status/503")
        self.assertEqual(response.code, 503)
        self.assertEqual(seen["uri"], "/status/503")


class PolicyTests(ProxyTestCase):
    @inlineCallbacks
    def test_cidr_allow_and_deny(self) -> Any:
        self.upstream()
        gateway = self.serve(
            {
                "hosts": ["t.example"],
                "access": {"allowCIDRs": ["10.0.0.0/8"]},
                "routes": [_route("all")],
            }
        )
        response = yield self.request(gateway, "/")
        yield response.content()
        self.assertEqual(response.code, 403)
        gateway = self.serve(
            {
                "hosts": ["t.example"],
                "access": {"allowCIDRs": ["127.0.0.0/8"], "denyCIDRs": ["127.0.0.1/32"]},
                "routes": [_route("all")],
            }
        )
        response = yield self.request(gateway, "/")
        yield response.content()
        self.assertEqual(response.code, 403)
        gateway = self.serve(
            {
                "hosts": ["t.example"],
                "access": {"allowCIDRs": ["127.0.0.0/8"]},
                "routes": [_route("all")],
            }
        )
        response = yield self.request(gateway, "/")
        yield response.content()
        self.assertEqual(response.code, 200)

    @inlineCallbacks
    def test_api_keys_and_basic_auth_and_credentials_not_forwarded(self) -> Any:
        self.upstream()
        hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$")
        gateway = serve(
            self,
            tenant={
                "hosts": ["t.example"],
                "routes": [
                    _route(
                        "keys", match={"path": "/keys"}, access={"apiKeys": {"secretName": "k"}}
                    ),
                    _route(
                        "basic",
                        match={"path": "/basic"},
                        access={"basicAuth": {"secretName": "users", "realm": "shop"}},
                    ),
                ],
            },
            services={"web": [self.upstreams["web"].number]},
            secrets={"k": {"a": "key-one"}, "users": {"auth": f"alice:{hashed}\n"}},
        )
        response = yield self.request(gateway, "/keys")
        yield response.content()
        self.assertEqual(response.code, 401)
        for headers in ({"X-API-Key": ["key-one"]}, {"Authorization": ["Bearer key-one"]}):
            response, seen = yield self.get_json(gateway, "/keys", headers=headers)
            self.assertEqual(response.code, 200)
            self.assertNotIn("x-api-key", seen["headers"])
            self.assertNotIn("authorization", seen["headers"])
        response = yield self.request(gateway, "/keys", headers={"X-API-Key": ["key-two"]})
        yield response.content()
        self.assertEqual(response.code, 401)
        response = yield self.request(gateway, "/basic")
        yield response.content()
        self.assertEqual(response.code, 401)
        self.assertEqual(
            response.headers.getRawHeaders("www-authenticate"),
            ['Basic realm="shop", charset="UTF-8"'],
        )
        response = yield self.request(
            gateway, "/basic", headers={"Authorization": ["Basic YWxpY2U6d3Jvbmc="]}
        )  # alice:wrong
        yield response.content()
        self.assertEqual(response.code, 401)
        for _ in range(2):  # second time answered from the verified cache
            response, seen = yield self.get_json(
                gateway, "/basic", headers={"Authorization": ["Basic YWxpY2U6czNjcmV0"]}
            )  # alice:s3cret
            self.assertEqual(response.code, 200)
            self.assertNotIn("authorization", seen["headers"])

    @inlineCallbacks
    def test_body_limit_from_content_length_and_chunked(self) -> Any:
        upstream = self.upstream()
        gateway = self.serve(
            {
                "hosts": ["t.example"],
                "quota": {"maxRequestBodyBytes": 1000},
                "routes": [_route("all")],
            }
        )
        response = yield self.request(gateway, "/", method="POST", data=b"x" * 1001)
        yield response.content()
        self.assertEqual(response.code, 413)
        self.assertEqual(upstream.received, [])
        response = yield self.request(gateway, "/", method="POST", data=b"x" * 1000)
        yield response.content()
        self.assertEqual(response.code, 200)
        # Chunked: refused as soon as the running total passes the limit.
        head = b"POST / HTTP/1.1\r\nHost: t.example\r\nTransfer-Encoding: chunked\r\n\r\n"
        reply = yield raw_exchange(
            gateway.port,
            head + b"258\r\n" + b"y" * 600 + b"\r\n" + b"258\r\n" + b"y" * 600 + b"\r\n",
        )
        self.assertTrue(reply.startswith(b"HTTP/1.1 413 "), reply)
        self.assertIn(b"Connection: close", reply)
        self.assertEqual([r["body_length"] for r in upstream.received], [1000])
        reply = yield raw_exchange(
            gateway.port, head + b"258\r\n" + b"y" * 600 + b"\r\n0\r\n\r\n", close_after=True
        )
        self.assertTrue(reply.startswith(b"HTTP/1.1 200 "), reply)
        self.assertEqual([r["body_length"] for r in upstream.received], [1000, 600])

    @inlineCallbacks
    def test_rate_limit_429_with_ratelimit_headers(self) -> Any:
        self.upstream()
        gateway = self.serve(
            {
                "hosts": ["t.example"],
                "quota": {"requestsPerSecond": 1, "burst": 2},
                "routes": [_route("all")],
            }
        )
        codes = []
        for _ in range(3):
            response = yield self.request(gateway, "/")
            yield response.content()
            codes.append(response.code)
        self.assertEqual(codes, [200, 200, 429])
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["1"])
        self.assertEqual(response.headers.getRawHeaders("ratelimit-policy"), ['"tenant";q=2;w=2'])
        self.assertEqual(response.headers.getRawHeaders("ratelimit"), ['"tenant";r=0;t=1'])

    @inlineCallbacks
    def test_concurrency_limit_503(self) -> Any:
        upstream = self.upstream()
        gateway = self.serve(
            {
                "hosts": ["t.example"],
                "quota": {"maxConcurrentRequests": 1},
                "routes": [_route("all", timeoutSeconds=5)],
            }
        )
        first = self.request(gateway, "/hang")
        yield eventually(lambda: upstream.resource.hanging, "the first request held upstream")
        response = yield self.request(gateway, "/")
        yield response.content()
        self.assertEqual(response.code, 503)
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["1"])
        first.cancel()
        yield self.assertFailure(first, Exception)
        # The slot is released when the first request ends.
        yield eventually(
            lambda: gateway.gateway.in_flight.current("team"), "the slot released", expect=0
        )
        response = yield self.request(gateway, "/")
        yield response.content()
        self.assertEqual(response.code, 200)


class RouteTimeoutTests(SynchronousTestCase):
    """
    The route's timeout on a clock instead of a real 0.3 s: the 504 comes
    exactly when it is due, not before, and the upstream request is dropped.
    """

    def test_timeout_is_504_and_upstream_request_is_cancelled(self) -> None:
        reactor = MemoryReactorClock()
        tenant = {"hosts": ["t.example"], "routes": [_route("all", timeoutSeconds=0.3)]}
        _, site = build_gateway(
            reactor, snapshot_of(tenant_objects("team", dump(tenant), {"web": [9999]}))
        )
        client = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
            peerAddress=IPv4Address("TCP", "192.0.2.7", 40001),
        )
        channel = site.buildProtocol(client.getPeer())
        channel.makeConnection(client)
        channel.dataReceived(b"GET /hang HTTP/1.1\r\nHost: t.example\r\n\r\n")
        upstream = complete_memory_connection(reactor)
        self.assertTrue(upstream.value().startswith(b"GET /hang HTTP/1.1\r\n"))
        reactor.advance(0.29)
        self.assertEqual(client.value(), b"")
        self.assertFalse(upstream.disconnecting)
        reactor.advance(0.02)
        head, _, body = client.value().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 504 "), head)
        self.assertEqual(body, b"gateway timeout\n")
        # The upstream sees its request abandoned, not left open.
        self.assertTrue(upstream.disconnecting)


class BalancingTests(ProxyTestCase):
    @inlineCallbacks
    def test_round_robin_across_ready_endpoints(self) -> Any:
        one, two = Upstream("one"), Upstream("two")
        self.addCleanup(one.stop)
        self.addCleanup(two.stop)
        gateway = serve(
            self,
            tenant={"hosts": ["t.example"], "routes": [_route("all")]},
            services={"web": [one.number, two.number]},
        )
        seen = []
        for _ in range(6):
            _, record = yield self.get_json(gateway, "/")
            seen.append(record["upstream"])
        self.assertEqual(sorted(set(seen[:2])), ["one", "two"])
        self.assertEqual(seen[:2] * 3, seen)


class WeightsTests(SynchronousTestCase):
    """
    Weighted backends through the gateway on a MemoryReactorClock: 100
    requests on one keep-alive client connection, each answered by whichever
    upstream connection it was sent on.
    """

    def test_weights_split_traffic_and_weight_zero_gets_nothing(self) -> None:
        names = {9001: "stable", 9002: "canary", 9003: "dark"}
        tenant = {
            "hosts": ["t.example"],
            "routes": [
                {
                    "name": "all",
                    "backends": [
                        {"service": "stable", "port": 80, "weight": 90},
                        {"service": "canary", "port": 80, "weight": 10},
                        {"service": "dark", "port": 80, "weight": 0},
                        {"service": "empty", "port": 80, "weight": 50},  # no ready endpoint
                    ],
                }
            ],
        }
        services = {"stable": [9001], "canary": [9002], "dark": [9003], "empty": []}
        reactor = MemoryReactorClock()
        _, site = build_gateway(
            reactor, snapshot_of(tenant_objects("team", dump(tenant), services))
        )
        client = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
            peerAddress=IPv4Address("TCP", "192.0.2.7", 40001),
        )
        channel = site.buildProtocol(client.getPeer())
        channel.makeConnection(client)
        upstreams: list[tuple[str, StringTransport]] = []
        answered: dict[int, int] = {}  # bytes of each upstream connection already answered
        counts: dict[str, int] = {}
        for _ in range(100):
            channel.dataReceived(b"GET / HTTP/1.1\r\nHost: t.example\r\n\r\n")
            while len(upstreams) < len(reactor.tcpClients):
                port = reactor.tcpClients[len(upstreams)][1]
                upstreams.append((names[port], complete_memory_connection(reactor, len(upstreams))))
            (asked,) = [
                (i, name, transport)
                for i, (name, transport) in enumerate(upstreams)
                if len(transport.value()) > answered.get(i, 0)
            ]
            i, name, transport = asked
            answered[i] = len(transport.value())
            transport.protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            counts[name] = counts.get(name, 0) + 1
        self.assertEqual(counts, {"stable": 90, "canary": 10})
        self.assertEqual(client.value().count(b"HTTP/1.1 200 OK\r\n"), 100)
