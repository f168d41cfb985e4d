"""
The admin endpoint: liveness, readiness, tenant status, metrics, dashboard.

It listens apart from the data plane (loopback by default) so that probes
and operators are never subject to a tenant's traffic, and so that tenant
hosts can never reach it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any, Protocol

from attrs import define
from twisted.internet.task import CooperativeTask, TaskStopped, cooperate
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from tenantgw.admin.dashboard import DashboardResource
from tenantgw.admin.metrics import Metrics, MetricsResource, certificate_expiry
from tenantgw.admin.traffic import certificate_document
from tenantgw.compile.gateway_api import status_json
from tenantgw.plans.snapshot import STATE_REJECTED, Snapshot
from tenantgw.values import Quota, RateLimit

_log = Logger()


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


# Tenants per step: /api/tenants of 5,000 tenants (the dashboard asks every
# 2 s) took 0.7 s of the reactor in one piece; in steps of 50 rows (about
# 4 ms), which the cooperator runs for at most 10 ms per reactor turn,
# requests keep being served in between.
ROWS_PER_TURN = 50


class _TenantsJSON(Resource):
    isLeaf = True

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        live: LiveState | None = None,
        ingresses: Callable[[], list[dict[str, Any]]] | None = None,
        cooperate: Callable[[Iterator[None]], CooperativeTask] = cooperate,
    ) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.live = live
        self.ingresses = ingresses
        self.cooperate = cooperate

    def render_GET(self, request: Request) -> int:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        view = _TenantsView(self.snapshot(), self.live)
        ingresses = self.ingresses() if self.ingresses else []
        work = self.cooperate(_json_in_steps(view, ingresses, request.write))
        finished = request.notifyFinish()
        finished.addErrback(lambda _: work.stop())  # the client left: stop building

        def written(_: object) -> None:
            request.finish()

        def failed(failure: Failure) -> None:
            if failure.check(TaskStopped):
                return
            _log.failure("writing /api/tenants failed", failure)
            request.channel.loseConnection()

        work.whenDone().addCallbacks(written, failed)
        return NOT_DONE_YET


def _json_in_steps(
    view: _TenantsView, ingresses: list[dict[str, Any]], write: Callable[[bytes], object]
) -> Iterator[None]:
    """The document L{tenants_document} makes, encoded compactly, in steps."""
    write(b'{"tenants":[')
    separator = ""
    batch: list[str] = []
    for namespace in view.namespaces:
        batch.append(_encode(view.row(namespace)))
        if len(batch) == ROWS_PER_TURN:
            write((separator + ",".join(batch)).encode("utf-8"))
            separator, batch = ",", []
            yield None
    if batch:
        write((separator + ",".join(batch)).encode("utf-8"))
    write(b"]," + _encode(view.tail(ingresses))[1:].encode("utf-8") + b"\n")


# Compact: the C encoder (an indent would take the pure-Python one, 6x slower).
_encode = json.JSONEncoder(separators=(",", ":")).encode


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
    """What C{/api/tenants} serves, whole (C{tenantgw check}, tests)."""
    view = _TenantsView(snapshot, live)
    return {
        "tenants": [view.row(namespace) for namespace in view.namespaces],
        **view.tail(ingresses),
    }


class _TenantsView:
    """One snapshot and the live state read once, turned into rows one tenant at a time."""

    def __init__(self, snapshot: Snapshot, live: LiveState | None) -> None:
        self.snapshot = snapshot
        self.live = live
        self.namespaces = sorted(snapshot.statuses)
        self.expiry = certificate_expiry(snapshot)
        self.ejected = live.ejected() if live is not None else set()
        self.source_errors = live.source_errors() if live is not None else {}
        self.traffic = live.traffic() if live is not None else {}
        self.now = live.now() if live is not None else datetime.now(timezone.utc).timestamp()

    def row(self, namespace: str) -> dict[str, object]:
        snapshot, live, ejected = self.snapshot, self.live, self.ejected
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
        expires = self.expiry.get(namespace)
        refused_files = self.source_errors.get(namespace, [])
        return {
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
            "traffic": self.traffic.get(namespace),
            "certificate": certificate_document(expires, self.now) if expires else None,
        }

    def tail(self, ingresses: list[dict[str, Any]] | None) -> dict[str, list[Any]]:
        snapshot, source_errors = self.snapshot, self.source_errors
        return {
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
    cooperate: Callable[[Iterator[None]], CooperativeTask] = cooperate,
) -> Resource:
    """
    C{ingresses}: each served Ingress's state (as the status writer sees
    it), listed by C{/api/tenants} under C{ingresses}.  C{cooperate} runs
    C{/api/tenants}' steps (L{twisted.internet.task.cooperate}).
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
    api.putChild(b"tenants", _TenantsJSON(snapshot, live, ingresses, cooperate))
    root.putChild(b"api", api)
    return root
