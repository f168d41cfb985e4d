"""
Gateway API under tenant policy: host ownership across dialects, tenant
namespaces only, the ConfigMap's tenant-wide access and quota binding
HTTPRoutes, last good routes, listener certificates, CORS at the gateway,
and backends refused at compile time.  Compile-level cases run without
sockets; the data-plane cases drive a real gateway over real sockets and
check what the backend saw.
"""

from __future__ import annotations

import base64
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import HTTPConnectionPool

from tenantgw.compile.compiler import CompileOptions, compile_snapshot
from tenantgw.compile.selector import LabelSelector
from tenantgw.plans.snapshot import STATE_HOST_CONFLICT, Snapshot
from tests.eventually import eventually
from tests.support import GatewayUnderTest, Upstream, dump, serve, tenant_objects
from tests.tls_support import TestCA

GW = "gateway.networking.k8s.io/v1"
BASE = "apps.example"


def gateway_objects(*listeners: dict[str, Any], namespace: str = "infra") -> list[dict[str, Any]]:
    if not listeners:
        listeners = (
            {
                "name": "http",
                "protocol": "HTTP",
                "port": 80,
                "hostname": f"*.{BASE}",
                "allowedRoutes": {"namespaces": {"from": "All"}},
            },
        )
    return [
        {"kind": "Namespace", "metadata": {"name": namespace}},
        {
            "apiVersion": GW,
            "kind": "GatewayClass",
            "metadata": {"name": "tenantgw"},
            "spec": {"controllerName": "tenantgw.io/gateway-controller"},
        },
        {
            "apiVersion": GW,
            "kind": "Gateway",
            "metadata": {"name": "edge", "namespace": namespace, "generation": 1},
            "spec": {"gatewayClassName": "tenantgw", "listeners": list(listeners)},
        },
    ]


def route_objects(
    namespace: str,
    hostnames: list[str] | None,
    rules: list[dict[str, Any]] | None = None,
    name: str = "web",
    created: str = "2026-03-01T00:00:00Z",
    backend_port: int | None = None,
    with_namespace: bool = True,
) -> list[dict[str, Any]]:
    spec: dict[str, Any] = {
        "parentRefs": [{"name": "edge", "namespace": "infra"}],
        "rules": rules if rules is not None else [{"backendRefs": [{"name": "web", "port": 80}]}],
    }
    if hostnames is not None:
        spec["hostnames"] = hostnames
    objects: list[dict[str, Any]] = []
    if with_namespace:
        objects.append({"kind": "Namespace", "metadata": {"name": namespace}})
    objects.append(
        {
            "apiVersion": GW,
            "kind": "HTTPRoute",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "generation": 2,
                "creationTimestamp": created,
            },
            "spec": spec,
        }
    )
    if backend_port is not None:
        objects.extend(service_objects(namespace, "web", backend_port))
    return objects


def service_objects(namespace: str, name: str, port: int) -> list[dict[str, Any]]:
    return [
        {
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"ports": [{"name": "http", "port": 80}]},
        },
        {
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{name}-1",
                "namespace": namespace,
                "labels": {"kubernetes.io/service-name": name},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": port}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
        },
    ]


def compile_all(
    *lists: list[dict[str, Any]], previous: Snapshot | None = None, **options: Any
) -> Snapshot:
    objects = [obj for objs in lists for obj in objs]
    if previous is None:
        return compile_snapshot(objects, CompileOptions(base_domain=BASE, **options))
    return compile_snapshot(objects, CompileOptions(base_domain=BASE, **options), previous)


def parent_accepted(snapshot: Snapshot, namespace: str, name: str = "web") -> tuple[str, str, str]:
    status = next(
        s
        for s in snapshot.object_statuses
        if (s.key.kind, s.key.namespace, s.key.name) == ("HTTPRoute", namespace, name)
    )
    (parent,) = status.parents
    accepted = next(c for c in parent.conditions if c.type == "Accepted")
    return accepted.status, accepted.reason, accepted.message


class OwnershipTests(SynchronousTestCase):
    def test_a_namespace_with_only_httproutes_is_a_tenant(self) -> None:
        snapshot = compile_all(
            gateway_objects(), route_objects("docs", [f"docs.{BASE}"], backend_port=9)
        )
        tenant = snapshot.tenant_for_host(f"docs.{BASE}")
        assert tenant is not None
        self.assertEqual(tenant.namespace, "docs")
        self.assertEqual(snapshot.statuses["docs"].state, "Accepted")
        self.assertEqual(parent_accepted(snapshot, "docs")[:2], ("True", "Accepted"))
        # Its derived host is its own as well (no route serves it: 404 there).
        self.assertIn(f"docs.{BASE}", tenant.hosts)

    def test_older_config_map_keeps_its_host_against_a_newer_httproute(self) -> None:
        shared = "shop.example.com"
        config_map = tenant_objects(
            "shop",
            dump({"hosts": [shared], "routes": [{"backends": [{"service": "web", "port": 80}]}]}),
            annotations={"tenantgw.io/allowed-hosts": shared},
            created="2026-01-01T00:00:00Z",
        )
        listener = {
            "name": "http",
            "protocol": "HTTP",
            "port": 80,
            "hostname": shared,
            "allowedRoutes": {"namespaces": {"from": "All"}},
        }
        snapshot = compile_all(
            config_map, gateway_objects(listener), route_objects("intruder", [shared])
        )
        tenant = snapshot.tenant_for_host(shared)
        assert tenant is not None
        self.assertEqual(tenant.namespace, "shop")
        status, reason, message = parent_accepted(snapshot, "intruder")
        self.assertEqual((status, reason), ("False", "HostConflict"))
        self.assertIn(shared, message)
        self.assertEqual(snapshot.statuses["intruder"].state, STATE_HOST_CONFLICT)

    def test_older_httproute_wins_against_a_newer_config_map(self) -> None:
        shared = "shop.example.com"
        config_map = tenant_objects(
            "shop",
            dump({"hosts": [shared], "routes": [{"backends": [{"service": "web", "port": 80}]}]}),
            annotations={"tenantgw.io/allowed-hosts": shared},
            created="2026-06-01T00:00:00Z",
        )
        listener = {
            "name": "http",
            "protocol": "HTTP",
            "port": 80,
            "hostname": shared,
            "allowedRoutes": {"namespaces": {"from": "All"}},
        }
        snapshot = compile_all(
            config_map,
            gateway_objects(listener),
            route_objects("first", [shared], created="2026-01-01T00:00:00Z"),
        )
        tenant = snapshot.tenant_for_host(shared)
        assert tenant is not None
        self.assertEqual(tenant.namespace, "first")
        self.assertEqual(snapshot.statuses["shop"].state, STATE_HOST_CONFLICT)

    def test_a_listener_never_grants_another_namespaces_derived_host(self) -> None:
        owner = tenant_objects(
            "blog", dump({"routes": [{"backends": [{"service": "web", "port": 80}]}]})
        )
        snapshot = compile_all(owner, gateway_objects(), route_objects("thief", [f"blog.{BASE}"]))
        tenant = snapshot.tenant_for_host(f"blog.{BASE}")
        assert tenant is not None
        self.assertEqual(tenant.namespace, "blog")
        self.assertEqual(parent_accepted(snapshot, "thief")[1], "HostConflict")

    def test_namespaces_outside_the_selector_are_not_served(self) -> None:
        objects = [
            *gateway_objects(),
            {"kind": "Namespace", "metadata": {"name": "docs", "labels": {"tenant": "yes"}}},
            *route_objects("docs", [f"docs.{BASE}"], with_namespace=False),
            *route_objects("other", [f"other.{BASE}"]),
        ]
        snapshot = compile_snapshot(
            objects,
            CompileOptions(base_domain=BASE, namespace_selector=LabelSelector.parse("tenant=yes")),
        )
        self.assertIsNotNone(snapshot.tenant_for_host(f"docs.{BASE}"))
        self.assertIsNone(snapshot.tenant_for_host(f"other.{BASE}"))
        status, reason, message = parent_accepted(snapshot, "other")
        self.assertEqual((status, reason), ("False", "NotAllowedByListeners"))
        self.assertIn("--namespace-selector", message)

    def test_config_map_and_httproute_of_one_namespace_merge_on_a_host(self) -> None:
        host = f"shop.{BASE}"
        config_map = tenant_objects(
            "shop",
            dump({"routes": [{"name": "site", "backends": [{"service": "web", "port": 80}]}]}),
        )
        api_rule = {
            "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
            "backendRefs": [{"name": "web", "port": 80}],
        }
        snapshot = compile_all(
            config_map,
            gateway_objects(),
            route_objects("shop", [host], [api_rule], with_namespace=False),
        )
        tenant = snapshot.tenants["shop"]
        names = [r.name for r in tenant.host_routes[("http", host)]]
        self.assertEqual(names, ["web.rule-0", "site"])


class LastGoodTests(SynchronousTestCase):
    def test_a_refused_edit_keeps_the_previous_version_serving(self) -> None:
        host = f"docs.{BASE}"
        good = compile_all(gateway_objects(), route_objects("docs", [host], backend_port=9))
        regex = [
            {
                "matches": [{"path": {"type": "RegularExpression", "value": "/.*"}}],
                "backendRefs": [{"name": "web", "port": 80}],
            }
        ]
        edited = compile_all(
            gateway_objects(), route_objects("docs", [host], regex, backend_port=9), previous=good
        )
        self.assertEqual(parent_accepted(edited, "docs")[:2], ("False", "UnsupportedValue"))
        routes = edited.tenants["docs"].host_routes[("http", host)]
        self.assertEqual([r.path for r in routes], ["/"])
        self.assertTrue(any("last good version" in m for m in edited.statuses["docs"].messages))
        # Without a previous good version nothing is served, and the status says why.
        fresh = compile_all(gateway_objects(), route_objects("docs", [host], regex, backend_port=9))
        self.assertIsNone(fresh.tenant_for_host(host))
        self.assertEqual(fresh.statuses["docs"].state, "Rejected")
        self.assertTrue(any("RegularExpression" in m for m in fresh.statuses["docs"].messages))


class ListenerCertificateTests(SynchronousTestCase):
    def https_listener(self) -> dict[str, Any]:
        return {
            "name": "https",
            "protocol": "HTTPS",
            "port": 443,
            "hostname": f"*.{BASE}",
            "allowedRoutes": {"namespaces": {"from": "All"}},
            "tls": {"certificateRefs": [{"name": "wildcard"}]},
        }

    def test_listener_certificate_serves_its_hostname(self) -> None:
        cert, key = TestCA().issue(f"*.{BASE}")
        secret = {
            "kind": "Secret",
            "metadata": {"name": "wildcard", "namespace": "infra"},
            "data": {
                "tls.crt": base64.b64encode(cert).decode(),
                "tls.key": base64.b64encode(key).decode(),
            },
        }
        snapshot = compile_all(
            gateway_objects(self.https_listener()), [secret], route_objects("docs", None)
        )
        self.assertIsNotNone(snapshot.certificate_for(f"docs.{BASE}"))

    def test_missing_secret_is_an_invalid_certificate_ref(self) -> None:
        snapshot = compile_all(gateway_objects(self.https_listener()), route_objects("docs", None))
        gateway = next(s for s in snapshot.object_statuses if s.key.kind == "Gateway")
        conditions = {c.type: (c.status, c.reason) for c in gateway.listeners[0].conditions}
        self.assertEqual(conditions["ResolvedRefs"], ("False", "InvalidCertificateRef"))
        self.assertEqual(conditions["Programmed"][0], "False")


class DataPlaneTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.backend = Upstream("docs/web")
        self.addCleanup(self.backend.stop)

    def serve(self, *lists: list[dict[str, Any]]) -> GatewayUnderTest:
        return serve(self, *lists, base_domain=BASE)

    def get(
        self,
        gateway: GatewayUnderTest,
        host: str,
        path: str = "/",
        method: str = "GET",
        **headers: str,
    ) -> Any:
        all_headers = {"Host": [host], **{k.replace("_", "-"): [v] for k, v in headers.items()}}
        return treq.request(method, gateway.url(path), headers=all_headers, pool=self.pool)

    @inlineCallbacks
    def test_tenant_wide_access_binds_httproutes(self) -> Any:
        config_map = tenant_objects("docs", dump({"access": {"denyCIDRs": ["127.0.0.0/8"]}}))
        gateway = self.serve(
            config_map,
            gateway_objects(),
            route_objects(
                "docs", [f"docs.{BASE}"], backend_port=self.backend.number, with_namespace=False
            ),
        )
        response = yield self.get(gateway, f"docs.{BASE}")
        yield response.content()
        self.assertEqual(response.code, 403)
        self.assertEqual(self.backend.received, [])

    @inlineCallbacks
    def test_tenant_quota_binds_httproutes(self) -> Any:
        config_map = tenant_objects(
            "docs", dump({"quota": {"requestsPerSecond": 0.001, "burst": 1}})
        )
        gateway = self.serve(
            config_map,
            gateway_objects(),
            route_objects(
                "docs", [f"docs.{BASE}"], backend_port=self.backend.number, with_namespace=False
            ),
        )
        codes = []
        for _ in range(3):
            response = yield self.get(gateway, f"docs.{BASE}")
            yield response.content()
            codes.append(response.code)
        self.assertEqual(codes, [200, 429, 429])
        self.assertEqual(len(self.backend.received), 1)

    @inlineCallbacks
    def test_refused_backend_answers_500_and_reaches_nothing(self) -> Any:
        rules = [{"backendRefs": [{"name": "web", "namespace": "elsewhere", "port": 80}]}]
        gateway = self.serve(
            gateway_objects(),
            route_objects("docs", [f"docs.{BASE}"], rules),
            service_objects("elsewhere", "web", self.backend.number),
        )
        response = yield self.get(gateway, f"docs.{BASE}")
        yield response.content()
        self.assertEqual(response.code, 500)
        self.assertEqual(self.backend.received, [])

    @inlineCallbacks
    def test_cross_namespace_backend_with_grant_is_served(self) -> Any:
        rules = [{"backendRefs": [{"name": "web", "namespace": "elsewhere", "port": 80}]}]
        grant = {
            "kind": "ReferenceGrant",
            "metadata": {"name": "docs", "namespace": "elsewhere"},
            "spec": {
                "from": [
                    {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "docs"}
                ],
                "to": [{"group": "", "kind": "Service", "name": "web"}],
            },
        }
        gateway = self.serve(
            gateway_objects(),
            route_objects("docs", [f"docs.{BASE}"], rules),
            service_objects("elsewhere", "web", self.backend.number),
            [grant],
        )
        response = yield self.get(gateway, f"docs.{BASE}")
        yield response.content()
        self.assertEqual(response.code, 200)
        self.assertEqual(len(self.backend.received), 1)

    @inlineCallbacks
    def test_cors_preflight_is_answered_at_the_gateway(self) -> Any:
        rules = [
            {
                "filters": [
                    {
                        "type": "CORS",
                        "cors": {
                            "allowOrigins": ["https://*.site.example"],
                            "allowMethods": ["GET", "PUT"],
                            "allowHeaders": ["x-token"],
                            "exposeHeaders": ["x-trace"],
                            "maxAge": 600,
                        },
                    }
                ],
                "backendRefs": [{"name": "web", "port": 80}],
            }
        ]
        gateway = self.serve(
            gateway_objects(),
            route_objects("docs", [f"docs.{BASE}"], rules, backend_port=self.backend.number),
        )
        host = f"docs.{BASE}"
        preflight = yield self.get(
            gateway,
            host,
            method="OPTIONS",
            Origin="https://app.site.example",
            Access_Control_Request_Method="PUT",
        )
        body = yield preflight.content()
        self.assertEqual((preflight.code, body), (200, b""))
        headers = preflight.headers
        self.assertEqual(
            headers.getRawHeaders("access-control-allow-origin"), ["https://app.site.example"]
        )
        self.assertEqual(headers.getRawHeaders("access-control-allow-methods"), ["GET, PUT"])
        self.assertEqual(headers.getRawHeaders("access-control-allow-headers"), ["x-token"])
        self.assertEqual(headers.getRawHeaders("access-control-max-age"), ["600"])
        self.assertEqual(self.backend.received, [])
        # A preflight from an origin not allowed gets no CORS headers, and still no backend.
        refused = yield self.get(
            gateway,
            host,
            method="OPTIONS",
            Origin="https://evil.example",
            Access_Control_Request_Method="PUT",
        )
        yield refused.content()
        self.assertIsNone(refused.headers.getRawHeaders("access-control-allow-origin"))
        self.assertEqual(self.backend.received, [])
        # The actual request is forwarded and its response carries the headers.
        actual = yield self.get(gateway, host, Origin="https://app.site.example")
        yield actual.content()
        self.assertEqual(actual.code, 200)
        self.assertEqual(
            actual.headers.getRawHeaders("access-control-allow-origin"),
            ["https://app.site.example"],
        )
        self.assertEqual(actual.headers.getRawHeaders("access-control-expose-headers"), ["x-trace"])
        self.assertEqual(len(self.backend.received), 1)

    @inlineCallbacks
    def test_catch_all_route_serves_unknown_hosts_but_not_reserved_ones(self) -> Any:
        listener = {
            "name": "http",
            "protocol": "HTTP",
            "port": 80,
            "allowedRoutes": {"namespaces": {"from": "All"}},
        }
        stopped = tenant_objects("stopped", "routes: [{bad: field}]\n")
        gateway = self.serve(
            gateway_objects(listener),
            route_objects("docs", None, backend_port=self.backend.number),
            stopped,
        )
        response = yield self.get(gateway, "anything.example.org")
        yield response.content()
        self.assertEqual(response.code, 200)
        # The derived host of a rejected tenant stays reserved: 404, not the catch-all.
        reserved = yield self.get(gateway, f"stopped.{BASE}")
        yield reserved.content()
        self.assertEqual(reserved.code, 404)
        self.assertEqual(len(self.backend.received), 1)

    @inlineCallbacks
    def test_route_on_an_https_listener_is_not_served_over_http(self) -> Any:
        listener = {
            "name": "https",
            "protocol": "HTTPS",
            "port": 443,
            "hostname": f"*.{BASE}",
            "allowedRoutes": {"namespaces": {"from": "All"}},
            "tls": {"certificateRefs": [{"name": "missing"}]},
        }
        ok_listener = {**listener, "tls": None}
        del ok_listener["tls"]
        ok_listener["protocol"] = "HTTP"
        ok_listener["name"] = "http"
        ok_listener["hostname"] = f"http-only.{BASE}"
        gateway = self.serve(
            gateway_objects(listener, ok_listener),
            route_objects(
                "docs", [f"docs.{BASE}", f"http-only.{BASE}"], backend_port=self.backend.number
            ),
        )
        response = yield self.get(gateway, f"docs.{BASE}")
        yield response.content()
        self.assertEqual(response.code, 404)
        served = yield self.get(gateway, f"http-only.{BASE}")
        yield served.content()
        self.assertEqual(served.code, 200)
        self.assertEqual(len(self.backend.received), 1)


class MirrorTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_mirror_gets_a_copy_and_the_client_the_primary_answer(self) -> Any:
        primary, mirror = Upstream("docs/web"), Upstream("docs/shadow")
        self.addCleanup(primary.stop)
        self.addCleanup(mirror.stop)
        rules = [
            {
                "filters": [
                    {
                        "type": "RequestMirror",
                        "requestMirror": {"backendRef": {"name": "shadow", "port": 80}},
                    }
                ],
                "backendRefs": [{"name": "web", "port": 80}],
            }
        ]
        snapshot = compile_all(
            gateway_objects(),
            route_objects("docs", [f"docs.{BASE}"], rules, backend_port=primary.number),
            service_objects("docs", "shadow", mirror.number),
        )
        gateway = serve(self, snapshot=snapshot)
        pool = HTTPConnectionPool(reactor, persistent=False)
        response = yield treq.get(
            gateway.url("/copied?x=1"), headers={"Host": [f"docs.{BASE}"]}, pool=pool
        )
        body = yield response.json()
        self.assertEqual((response.code, body["upstream"]), (200, "docs/web"))
        yield eventually(lambda: mirror.received, "the mirror received the copy")
        (copy,) = mirror.received
        self.assertEqual((copy["method"], copy["uri"]), ("GET", "/copied?x=1"))
        self.assertEqual(copy["headers"]["host"], [f"docs.{BASE}"])
        self.assertEqual(copy["headers"]["x-forwarded-for"], ["127.0.0.1"])
        self.assertEqual(len(primary.received), 1)
        yield gateway.gateway.mirrors.stop()

    @inlineCallbacks
    def test_a_mirror_that_is_down_changes_nothing_for_the_client(self) -> Any:
        primary = Upstream("docs/web")
        self.addCleanup(primary.stop)
        rules = [
            {
                "filters": [
                    {
                        "type": "RequestMirror",
                        "requestMirror": {"backendRef": {"name": "shadow", "port": 80}},
                    }
                ],
                "backendRefs": [{"name": "web", "port": 80}],
            }
        ]
        # A bound socket that never listens: connecting is refused, and no
        # other listener (the gateway's own) can take the port meanwhile.
        import socket

        refusing = socket.socket()
        refusing.bind(("127.0.0.1", 0))
        self.addCleanup(refusing.close)
        port = refusing.getsockname()[1]
        snapshot = compile_all(
            gateway_objects(),
            route_objects("docs", [f"docs.{BASE}"], rules, backend_port=primary.number),
            service_objects("docs", "shadow", port),
        )
        gateway = serve(self, snapshot=snapshot)
        pool = HTTPConnectionPool(reactor, persistent=False)
        response = yield treq.get(gateway.url("/"), headers={"Host": [f"docs.{BASE}"]}, pool=pool)
        yield response.content()
        self.assertEqual(response.code, 200)
        mirrors = gateway.gateway.mirrors
        yield eventually(lambda: mirrors.in_flight == 0, "the failed mirror settled")
        self.assertEqual(mirrors.sent, 1)

    @inlineCallbacks
    def test_a_mirror_pointing_back_at_the_gateway_does_not_loop(self) -> Any:
        primary = Upstream("docs/web")
        self.addCleanup(primary.stop)
        rules = [
            {
                "filters": [
                    {
                        "type": "RequestMirror",
                        "requestMirror": {"backendRef": {"name": "shadow", "port": 80}},
                    }
                ],
                "backendRefs": [{"name": "web", "port": 80}],
            }
        ]
        gateway = serve(self)
        gateway.gateway.apply(
            compile_all(
                gateway_objects(),
                route_objects("docs", [f"docs.{BASE}"], rules, backend_port=primary.number),
                service_objects("docs", "shadow", gateway.port),  # the gateway itself
            )
        )
        pool = HTTPConnectionPool(reactor, persistent=False)
        response = yield treq.get(gateway.url("/"), headers={"Host": [f"docs.{BASE}"]}, pool=pool)
        yield response.content()
        self.assertEqual(response.code, 200)
        mirrors = gateway.gateway.mirrors
        yield eventually(lambda: len(primary.received) == 2, "the mirrored copy was served once")
        yield eventually(lambda: mirrors.in_flight == 0, "the mirror settled")
        # The copy came back through the gateway and was not mirrored again.
        self.assertEqual(mirrors.sent, 1)
        self.assertEqual(primary.received[1]["headers"].get("x-tenantgw-mirror"), ["1"])
        yield mirrors.stop()
