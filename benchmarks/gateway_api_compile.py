"""
Rebuild time for Gateway API tenants: N namespaces (default 1,000), each
with 5 HTTPRoutes of two rules (a header-matched canary and a catch-all)
attached to one Gateway, a Service and an EndpointSlice with three ready
endpoints.

"cold" is the first compile in a process; "rebuild" is what a source does
after one event (here: one HTTPRoute's backend weight changes), compiled
against the previous snapshot.  The same run also compiles the same
routes written as Tenant ConfigMaps (10 routes each), so the two dialects
are compared on one machine at one moment.

    python benchmarks/gateway_api_compile.py [NAMESPACES] [REPEATS]
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import yaml

from tenantgw.compile.compiler import CompileOptions, compile_snapshot

GW = "gateway.networking.k8s.io/v1"
ROUTES_PER_NAMESPACE = 5


def infrastructure() -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "infra"}},
        {
            "apiVersion": GW,
            "kind": "GatewayClass",
            "metadata": {"name": "tenantgw"},
            "spec": {"controllerName": "tenantgw.io/gateway-controller"},
        },
        {
            "apiVersion": GW,
            "kind": "Gateway",
            "metadata": {"name": "edge", "namespace": "infra"},
            "spec": {
                "gatewayClassName": "tenantgw",
                "listeners": [
                    {
                        "name": "http",
                        "protocol": "HTTP",
                        "port": 80,
                        "hostname": "*.apps.example.com",
                        "allowedRoutes": {"namespaces": {"from": "All"}},
                    }
                ],
            },
        },
    ]


def backend(ns: str, i: int) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {"ports": [{"name": "http", "port": 80}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "web-1",
                "namespace": ns,
                "labels": {"kubernetes.io/service-name": "web"},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [
                {"addresses": [f"10.{i // 250}.{i % 250}.{j}"], "conditions": {"ready": True}}
                for j in range(1, 4)
            ],
        },
    ]


def rules(route: int, weight: int = 10) -> list[dict[str, Any]]:
    return [
        {
            "matches": [
                {
                    "path": {"type": "PathPrefix", "value": f"/app{route}"},
                    "headers": [{"name": "x-canary", "value": "1"}],
                }
            ],
            "backendRefs": [{"name": "web", "port": 80, "weight": weight}],
        },
        {
            "matches": [{"path": {"type": "PathPrefix", "value": f"/app{route}"}}],
            "filters": [
                {
                    "type": "RequestHeaderModifier",
                    "requestHeaderModifier": {"set": [{"name": "x-route", "value": str(route)}]},
                }
            ],
            "backendRefs": [{"name": "web", "port": 80}],
        },
    ]


def gateway_namespace(i: int) -> list[dict[str, Any]]:
    ns = f"team-{i:05d}"
    created = f"2024-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z"
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    ]
    for r in range(ROUTES_PER_NAMESPACE):
        objects.append(
            {
                "apiVersion": GW,
                "kind": "HTTPRoute",
                "metadata": {"name": f"app{r}", "namespace": ns, "creationTimestamp": created},
                "spec": {
                    "parentRefs": [{"name": "edge", "namespace": "infra"}],
                    "hostnames": [f"{ns}.apps.example.com"],
                    "rules": rules(r),
                },
            }
        )
    return objects + backend(ns, i)


def config_map_namespace(i: int) -> list[dict[str, Any]]:
    ns = f"team-{i:05d}"
    routes = []
    for r in range(ROUTES_PER_NAMESPACE):
        routes.append(
            {
                "name": f"app{r}-canary",
                "match": {"path": f"/app{r}", "headers": [{"name": "x-canary", "value": "1"}]},
                "backends": [{"service": "web", "port": 80, "weight": 10}],
            }
        )
        routes.append(
            {
                "name": f"app{r}",
                "match": {"path": f"/app{r}"},
                "requestHeaders": {"set": {"x-route": str(r)}},
                "backends": [{"service": "web", "port": 80}],
            }
        )
    tenant = {"hosts": [f"{ns}.apps.example.com"], "routes": routes}
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": ns,
                "annotations": {"tenantgw.io/allowed-hosts": f"{ns}.apps.example.com"},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "tenant",
                "namespace": ns,
                "labels": {"tenantgw.io/tenant": "true"},
                "creationTimestamp": "2024-01-01T00:00:00Z",
            },
            "data": {"tenant.yaml": yaml.safe_dump(tenant)},
        },
        *backend(ns, i),
    ]


def measure(objects: list[dict[str, Any]], edit: Any, repeats: int) -> tuple[float, list[float]]:
    options = CompileOptions()
    started = time.perf_counter()
    snapshot = compile_snapshot(objects, options)
    cold = time.perf_counter() - started
    serving = sum(1 for s in snapshot.statuses.values() if s.serving)
    assert serving >= len(snapshot.statuses) - 1, [
        s for s in snapshot.statuses.values() if not s.serving
    ][:3]
    timings = []
    for r in range(repeats):
        edit(r)
        started = time.perf_counter()
        snapshot = compile_snapshot(objects, options, snapshot)
        timings.append(time.perf_counter() - started)
    return cold, timings


def main(namespaces: int = 1000, repeats: int = 5) -> None:
    gateway_objects = infrastructure() + [
        o for i in range(namespaces) for o in gateway_namespace(i)
    ]
    first_route = next(o for o in gateway_objects if o["kind"] == "HTTPRoute")

    def edit_route(r: int) -> None:
        first_route["spec"]["rules"] = rules(0, weight=10 + r)

    config_objects = [o for i in range(namespaces) for o in config_map_namespace(i)]
    first_config = next(o for o in config_objects if o["kind"] == "ConfigMap")
    original = first_config["data"]["tenant.yaml"]

    def edit_config(r: int) -> None:
        first_config["data"]["tenant.yaml"] = original.replace("weight: 10", f"weight: {10 + r}", 1)

    gw_cold, gw_rebuild = measure(gateway_objects, edit_route, repeats)
    cm_cold, cm_rebuild = measure(config_objects, edit_config, repeats)
    routes = namespaces * ROUTES_PER_NAMESPACE
    print(f"{namespaces} namespaces, {routes} HTTPRoutes ({2 * routes} rules)")
    print(
        f"Gateway API: cold {gw_cold * 1000:.0f} ms; rebuild after one HTTPRoute edit:"
        f" median {statistics.median(gw_rebuild) * 1000:.0f} ms, max {max(gw_rebuild) * 1000:.0f} ms"
    )
    print(
        f"Tenant ConfigMaps (same routes): cold {cm_cold * 1000:.0f} ms; rebuild after one"
        f" edit: median {statistics.median(cm_rebuild) * 1000:.0f} ms,"
        f" max {max(cm_rebuild) * 1000:.0f} ms"
    )
    print(
        f"ratio Gateway API / ConfigMap rebuild: {statistics.median(gw_rebuild) / statistics.median(cm_rebuild):.2f}"
    )


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
