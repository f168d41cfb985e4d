"""
The admin endpoint: liveness, readiness, tenant status, metrics, dashboard.

It listens apart from the data plane (loopback by default) so that probes
and operators are never subject to a tenant's traffic, and so that tenant
hosts can never reach it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, Protocol

from attrs import define
from twisted.web.resource import Resource
from twisted.web.server import Request

from tenantgw.admin.dashboard import DashboardResource
from tenantgw.admin.metrics import Metrics, MetricsResource, certificate_expiry
from tenantgw.admin.traffic import certificate_document
from tenantgw.compile.gateway_api import status_json
from tenantgw.plans.snapshot import STATE_REJECTED, Snapshot
from tenantgw.values import Quota, RateLimit


@define
class Readiness:
    """Ready once a first snapshot is applied; not ready again while draining."""

    synced: bool = False
    draining: bool = False
    # Per kind of the source, what it is doing ("synced", "listing", ...),
    # so a /readyz that stays 503 says which kind holds it back.
    kind_states: Callable[[], Mapping[str, str]] | None = None

    def report(self) -> tuple[int, bytes]:
        if self.ready:
            head = (200, "ready")
        else:
            head = (503, "draining" if self.draining else "not synced")
        lines = [head[1]]
        if self.kind_states is not None:
            lines.extend(f"{kind}: {state}" for kind, state in sorted(self.kind_states().items()))
        return head[0], ("\n".join(lines) + "\n").encode("ascii")

    @property
    def ready(self) -> bool:
        return self.synced and not self.draining


class _Text(Resource):
    isLeaf = True

    def __init__(self, answer: Callable[[], tuple[int, bytes]]) -> None:
        super().__init__()
        self.answer = answer

    def render_GET(self, request: Request) -> bytes:
        code, body = self.answer()
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return body


class _TenantsJSON(Resource):
    isLeaf = True

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        live: LiveState | None = None,
        ingresses: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.live = live
        self.ingresses = ingresses

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        document = tenants_document(
            self.snapshot(), self.live, self.ingresses() if self.ingresses else []
        )
        return json.dumps(document, indent=2).encode("utf-8") + b"\n"


class LiveState(Protocol):
    """What the running data plane knows beyond the snapshot, for the status page."""

    def in_flight(self, namespace: str) -> int: ...

    def recent_errors(self, namespace: str) -> list[dict[str, object]]: ...

    def ejected(self) -> set[Any]: ...

    def source_errors(self) -> dict[str, list[str]]: ...

    def traffic(self) -> dict[str, dict[str, object]]: ...

    def now(self) -> float: ...


def _quota_document(quota: Quota, in_flight: int | None) -> dict[str, object]:
    def rate(limit: RateLimit | None) -> dict[str, object] | None:
        if limit is None:
            return None
        return {"requestsPerSecond": limit.requests_per_second, "burst": limit.burst}

    return {
        "rate": rate(quota.rate),
        "perClient": rate(quota.per_client),
        "maxConcurrentRequests": quota.max_concurrent_requests,
        "maxRequestBodyBytes": quota.max_request_body_bytes,
        "inFlight": in_flight,
    }


def tenants_document(
    snapshot: Snapshot,
    live: LiveState | None = None,
    ingresses: list[dict[str, Any]] | None = None,
) -> dict[str, list[Any]]:
    rows: list[dict[str, object]] = []
    expiry = certificate_expiry(snapshot)
    ejected = live.ejected() if live is not None else set()
    source_errors = live.source_errors() if live is not None else {}
    traffic = live.traffic() if live is not None else {}
    now = live.now() if live is not None else datetime.now(timezone.utc).timestamp()
    for namespace in sorted(snapshot.statuses):
        status = snapshot.statuses[namespace]
        tenant = snapshot.tenants.get(namespace)
        routes = []
        if tenant is not None:
            for route in tenant.routes:
                routes.append(
                    {
                        "name": route.name,
                        "path": route.path,
                        "pathType": route.path_type,
                        "backends": [
                            {
                                "service": b.service,
                                "port": b.port,
                                "weight": b.weight,
                                "endpoints": [
                                    f"{e.address}:{e.port}"
                                    for e in b.endpoints
                                    if (e.address, e.port, b.tls_name) not in ejected
                                ],
                                # Out of rotation (health checks, outlier ejection).
                                "ejected": [
                                    f"{e.address}:{e.port}"
                                    for e in b.endpoints
                                    if (e.address, e.port, b.tls_name) in ejected
                                ],
                            }
                            for b in route.backends
                        ],
                    }
                )
        expires = expiry.get(namespace)
        refused_files = source_errors.get(namespace, [])
        rows.append(
            {
                "namespace": namespace,
                "configMap": status.config_map,
                # A refused manifest: what serves is its last good version, as
                # for a refused tenant.yaml.
                "state": STATE_REJECTED if refused_files else status.state,
                "serving": status.serving,
                "generation": tenant.generation if tenant else None,
                "hosts": list(status.hosts),
                "routes": routes,
                "messages": [*refused_files, *status.messages],
                "readyEndpoints": len(
                    {
                        (e.address, e.port)
                        for r in (tenant.routes if tenant else ())
                        for b in r.backends
                        for e in b.endpoints
                        if (e.address, e.port, b.tls_name) not in ejected
                    }
                ),
                "quota": _quota_document(tenant.quota, live.in_flight(namespace) if live else None)
                if tenant
                else None,
                "certificateExpires": (
                    datetime.fromtimestamp(expires, timezone.utc).isoformat() if expires else None
                ),
                "recentErrors": live.recent_errors(namespace) if live else [],
                # Over the last WINDOW_SECONDS (admin/traffic.py); None before any request.
                "traffic": traffic.get(namespace),
                "certificate": certificate_document(expires, now) if expires else None,
            }
        )
    return {
        "tenants": rows,
        # Refused files that serve nothing (never good), by file.
        "sourceErrors": [m for ns, ms in sorted(source_errors.items()) for m in ms if ns == ""],
        # Gateway API objects' statuses, shaped as their status subresource.
        "gatewayApi": [
            {
                "kind": s.key.kind,
                "namespace": s.key.namespace,
                "name": s.key.name,
                # "Accepted", or its first failing condition (as tenantgw check says).
                "state": s.summary(),
                "status": status_json(s),
            }
            for s in snapshot.object_statuses
        ],
        # Each Ingress of our class: its state as its Events say it.
        "ingresses": ingresses or [],
    }


def admin_root(
    readiness: Readiness,
    snapshot: Callable[[], Snapshot],
    metrics: Metrics | None = None,
    live: LiveState | None = None,
    ingresses: Callable[[], list[dict[str, Any]]] | None = None,
) -> Resource:
    """
    C{ingresses}: each served Ingress's state (as the status writer sees
    it), listed by C{/api/tenants} under C{ingresses}.
    """
    root = Resource()
    root.putChild(b"", DashboardResource())
    if metrics is not None:
        root.putChild(b"metrics", MetricsResource(metrics))
    root.putChild(b"healthz", _Text(lambda: (200, b"ok\n")))
    root.putChild(
        b"readyz",
        _Text(readiness.report),
    )
    api = Resource()
    api.putChild(b"tenants", _TenantsJSON(snapshot, live, ingresses))
    root.putChild(b"api", api)
    return root
