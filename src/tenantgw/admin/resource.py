"""
The admin endpoint: liveness, readiness, tenant status.

It listens apart from the data plane (loopback by default) so that probes
and operators are never subject to a tenant's traffic, and so that tenant
hosts can never reach it.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from attrs import define
from twisted.web.resource import Resource
from twisted.web.server import Request

from tenantgw.compile.snapshot import Snapshot


@define
class Readiness:
    """Ready once a first snapshot is applied; not ready again while draining."""

    synced: bool = False
    draining: bool = False

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

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        super().__init__()
        self.snapshot = snapshot

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(tenants_document(self.snapshot()), indent=2).encode("utf-8") + b"\n"


def tenants_document(snapshot: Snapshot) -> dict[str, list[dict[str, object]]]:
    rows: list[dict[str, object]] = []
    for namespace in sorted(snapshot.statuses):
        status = snapshot.statuses[namespace]
        tenant = snapshot.tenants.get(namespace)
        routes = []
        if tenant is not None:
            for route in tenant.routes:
                routes.append(
                    {
                        "name": route.name,
                        "path": route.route.match.path,
                        "pathType": route.route.match.path_type,
                        "backends": [
                            {
                                "service": b.service,
                                "port": b.port,
                                "weight": b.weight,
                                "endpoints": [f"{e.address}:{e.port}" for e in b.endpoints],
                            }
                            for b in route.backends
                        ],
                    }
                )
        rows.append(
            {
                "namespace": namespace,
                "configMap": status.config_map,
                "state": status.state,
                "serving": status.serving,
                "generation": tenant.generation if tenant else None,
                "hosts": list(status.hosts),
                "routes": routes,
                "messages": list(status.messages),
            }
        )
    return {"tenants": rows}


def admin_root(readiness: Readiness, snapshot: Callable[[], Snapshot]) -> Resource:
    root = Resource()
    root.putChild(b"healthz", _Text(lambda: (200, b"ok\n")))
    root.putChild(
        b"readyz",
        _Text(
            lambda: (
                (200, b"ready\n")
                if readiness.ready
                else (503, b"draining\n" if readiness.draining else b"not synced\n")
            )
        ),
    )
    api = Resource()
    api.putChild(b"tenants", _TenantsJSON(snapshot))
    root.putChild(b"api", api)
    return root
