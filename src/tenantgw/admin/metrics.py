"""
Prometheus metrics for the gateway, served at C{/metrics} on the admin endpoint.

Every label value comes from a bounded set: tenant and route names from the
snapshot (what tenants declared, never what clients sent), the method folded
into a fixed list, the status as its exact code (100..599; anything else is
"other"), as ingress-nginx and Traefik label it: 502, 503 and 504 say
different things.  A request for an unknown host
is counted under C{tenant=""}, one series however many hosts are tried, so
a scanner cannot grow the registry.

The registry is the L{Metrics} object's own, injected where it is needed: two
gateways in one test process never share counters.
"""

from __future__ import annotations

import platform
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import twisted
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from twisted.web.resource import Resource
from twisted.web.server import Request

from tenantgw.admin.traffic import Totals, TrafficWindow
from tenantgw.dataplane.context import Outcome, outcome_of
from tenantgw.plans.snapshot import (
    EMPTY_SNAPSHOT,
    STATE_HOST_CONFLICT,
    STATE_REJECTED,
    Snapshot,
    changed_namespaces,
)

if TYPE_CHECKING:
    from tenantgw.dataplane.request import GatewayRequest

METHODS = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS"})
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
# Seconds: from a cached 304 to a long upstream call.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Bytes, as ingress-nginx's request_size / response_size buckets go: 10 B .. 100 MB.
SIZE_BUCKETS = (10, 100, 1000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000)
# Statuses the gateway answers itself when a quota says no.
QUOTA_REJECTIONS = {429: "rate", 413: "body_size", 503: "concurrency"}
REFUSED_STATES = (STATE_REJECTED, STATE_HOST_CONFLICT)
# 5xx answers remembered per tenant for the dashboard's "last errors".
RECENT_ERRORS = 10


def code_label(code: int) -> str:
    return str(code) if 100 <= code <= 599 else "other"


def _version() -> str:
    from tenantgw.app.cli import version

    return version()


def status_class(code: int) -> str:
    index = code // 100 - 1
    return STATUS_CLASSES[index] if 0 <= index < 5 else "other"


def method_label(method: bytes) -> str:
    return method.decode("ascii") if method in METHODS else "other"


class _SnapshotCollector(Collector):
    """State read from the serving snapshot at scrape time, so it is never stale."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        ejected: Callable[[], frozenset[tuple[str, int, str | None]] | set[Any]],
    ) -> None:
        self.snapshot = snapshot
        self.ejected = ejected

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snapshot = self.snapshot()
        states = GaugeMetricFamily(
            "tenantgw_tenant_state",
            "1 for the state each tenant's config is in (Accepted, Clamped, Rejected, ...)",
            labels=["tenant", "state", "serving"],
        )
        endpoints = GaugeMetricFamily(
            "tenantgw_route_endpoints_ready",
            "Ready endpoints behind each route, over all its backends, less those ejected"
            " by health checks or passive outlier detection",
            labels=["tenant", "route"],
        )
        expiry = GaugeMetricFamily(
            "tenantgw_certificate_expiry_timestamp_seconds",
            "Earliest notAfter among the certificates serving a tenant's hosts (Unix time)",
            labels=["tenant"],
        )
        for namespace, status in sorted(snapshot.statuses.items()):
            states.add_metric([namespace, status.state, "true" if status.serving else "false"], 1.0)
        ejected = self.ejected()
        for namespace, tenant in sorted(snapshot.tenants.items()):
            for route in tenant.routes:
                ready = sum(
                    1
                    for b in route.backends
                    for e in b.endpoints
                    if (e.address, e.port, b.tls_name) not in ejected
                )
                endpoints.add_metric([namespace, route.name], float(ready))
        for namespace, expires in sorted(certificate_expiry(snapshot).items()):
            expiry.add_metric([namespace], expires)
        yield states
        yield endpoints
        yield expiry


class _LabelledGauge(Collector):
    """A gauge with one label, whose values another part reports at scrape time."""

    def __init__(
        self, name: str, documentation: str, label: str, values: Callable[[], Mapping[str, float]]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.label = label
        self.values = values

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=[self.label])
        for value_of_label, value in sorted(self.values().items()):
            family.add_metric([value_of_label], float(value))
        yield family


class _InFlightGauge(Collector):
    """
    Requests in flight per tenant: every tenant of the snapshot (so the label
    values are the declared ones, as for the other per-tenant metrics), and
    under C{tenant=""} those not yet routed or for no tenant.
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        metrics = self.metrics
        family = GaugeMetricFamily(
            "tenantgw_requests_in_flight",
            "Requests started and not yet answered, by tenant",
            labels=["tenant"],
        )
        open_by_tenant = metrics.open_by_tenant
        counts = dict.fromkeys(metrics.watched_snapshot().tenants, 0)
        counts.update(open_by_tenant)
        routed = sum(open_by_tenant.values())
        family.add_metric([""], float(max(0, metrics.total_in_flight() - routed)))
        for namespace, count in sorted(counts.items()):
            family.add_metric([namespace], float(count))
        yield family


class _RequestStats(Collector):
    """
    Request counts and latency buckets kept in plain dicts and lists, handed
    to prometheus_client only at scrape time.  Everything runs on the reactor
    thread, so there is nothing to lock; prometheus_client's own metrics take
    a lock per sample and scan histogram buckets in Python, which on this path
    costs more than the rest of the bookkeeping together.
    """

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts: dict[tuple[str, str, bytes, int], int] = {}
        # (tenant, route) -> [count per bucket..., +Inf bucket, sum]
        self.latency: dict[tuple[str, str], list[float]] = {}
        self.upstream_latency: dict[tuple[str, str], list[float]] = {}
        self.request_sizes: dict[tuple[str, str], list[float]] = {}
        self.response_sizes: dict[tuple[str, str], list[float]] = {}

    @staticmethod
    def _observe(
        table: dict[tuple[str, str], list[float]],
        key: tuple[str, str],
        bounds: tuple[float, ...],
        value: float,
    ) -> None:
        series = table.get(key)
        if series is None:
            series = table[key] = [0.0] * (len(bounds) + 2)
        series[bisect_left(bounds, value)] += 1
        series[-1] += value

    def record_exchange(
        self,
        tenant: str,
        route: str,
        upstream_seconds: float | None,
        request_bytes: int,
        response_bytes: int,
    ) -> None:
        key = (tenant, route)
        if upstream_seconds is not None:
            self._observe(self.upstream_latency, key, self.bounds, upstream_seconds)
        self._observe(self.request_sizes, key, SIZE_BUCKETS, request_bytes)
        self._observe(self.response_sizes, key, SIZE_BUCKETS, response_bytes)

    def record(self, tenant: str, route: str, method: bytes, code: int, seconds: float) -> None:
        key = (tenant, route, method, code)
        counts = self.counts
        counts[key] = counts.get(key, 0) + 1
        series = self.latency.get((tenant, route))
        if series is None:
            series = self.latency[(tenant, route)] = [0.0] * (len(self.bounds) + 2)
        series[bisect_left(self.bounds, seconds)] += 1
        series[-1] += seconds

    def totals(self) -> dict[str, Totals]:
        """Each tenant's requests, 5xx, 429s and latency buckets, over its routes."""
        requests: dict[str, list[int]] = {}
        for (tenant, _route, _method, code), count in self.counts.items():
            if not tenant:
                continue
            row = requests.get(tenant)
            if row is None:
                row = requests[tenant] = [0, 0, 0]
            row[0] += count
            if code >= 500:
                row[1] += count
            elif code == 429:
                row[2] += count
        buckets: dict[str, list[float]] = {}
        for (tenant, _route), series in self.latency.items():
            summed = buckets.get(tenant)
            if summed is None:
                buckets[tenant] = series[:-1]
            else:
                buckets[tenant] = [a + b for a, b in zip(summed, series[:-1])]
        return {
            tenant: Totals(row[0], row[1], row[2], tuple(buckets.get(tenant, ())))
            for tenant, row in requests.items()
        }

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        requests = CounterMetricFamily(
            "tenantgw_requests",
            "Requests answered, by tenant, route, method and status code",
            labels=["tenant", "route", "method", "code"],
        )
        for (tenant, route, method, code), count in sorted(self.counts.items()):
            requests.add_metric(
                [tenant, route, method_label(method), code_label(code)], float(count)
            )
        yield requests
        duration = HistogramMetricFamily(
            "tenantgw_request_duration_seconds",
            "Time from a request's headers to the end of its response",
            labels=["tenant", "route"],
        )
        _add_series(duration, self.latency, self.bounds)
        yield duration
        for name, help_text, table, bounds in (
            (
                "tenantgw_upstream_response_seconds",
                "From a request's headers to its upstream's response head (requests an"
                " upstream answered)",
                self.upstream_latency,
                self.bounds,
            ),
            (
                "tenantgw_request_size_bytes",
                "Request body bytes received",
                self.request_sizes,
                SIZE_BUCKETS,
            ),
            (
                "tenantgw_response_size_bytes",
                "Response body bytes sent",
                self.response_sizes,
                SIZE_BUCKETS,
            ),
        ):
            family = HistogramMetricFamily(name, help_text, labels=["tenant", "route"])
            _add_series(family, table, bounds)
            yield family


def _add_series(
    family: HistogramMetricFamily,
    table: dict[tuple[str, str], list[float]],
    bounds: tuple[float, ...],
) -> None:
    """Per-bucket counts (then the sum) of each (tenant, route), as cumulative buckets."""
    for (tenant, route), series in sorted(table.items()):
        cumulative = 0.0
        points: list[tuple[str, float]] = []
        for bound, in_bucket in zip((*bounds, float("inf")), series[:-1]):
            cumulative += in_bucket
            points.append((_bound_text(bound), cumulative))
        family.add_metric([tenant, route], points, series[-1])


def _bound_text(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


class _CallbackCounter(Collector):
    def __init__(self, name: str, documentation: str, count: Callable[[], float]) -> None:
        self.name = name
        self.documentation = documentation
        self.count = count

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.documentation, value=float(self.count()))


class _LabelledCallbackCounter(Collector):
    def __init__(
        self, name: str, documentation: str, label: str, counts: Callable[[], Mapping[str, float]]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.label = label
        self.counts = counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        for value_of_label, value in sorted(self.counts().items()):
            family.add_metric([value_of_label], float(value))
        yield family


def certificate_expiry(snapshot: Snapshot) -> dict[str, float]:
    """Per tenant, when the first of the certificates serving its hosts expires."""
    result: dict[str, float] = {}
    for namespace, tenant in snapshot.tenants.items():
        for host in tenant.hosts:
            certificate = snapshot.certificates.get(host)
            if certificate is None:
                continue
            expires = certificate.not_after.timestamp()
            if namespace not in result or expires < result[namespace]:
                result[namespace] = expires
    return result


class Metrics:
    """
    The gateway's counters.  The data plane calls L{request_finished} once per
    request; label children are cached per label tuple, since looking one up
    through C{labels()} costs more than incrementing it.
    """

    def __init__(
        self,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.wall_clock = wall_clock
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.request_stats = _RequestStats(LATENCY_BUCKETS)
        registry.register(self.request_stats)
        self.upstream_errors = Counter(
            "tenantgw_upstream_errors",
            "Upstream failures: connect (refused, unreachable), timeout, reset",
            ["tenant", "route", "kind"],
            registry=registry,
        )
        # Why the gateway refused or failed a request (tenantgw.dataplane.context.REASONS):
        # a fixed vocabulary, so tenants x ~20 children at most.
        self.requests_refused = Counter(
            "tenantgw_requests_refused",
            "Requests the gateway refused or could not serve, by reason (the access log's"
            " reason field): no_host, unknown_host, no_route, forbidden, unauthorized,"
            " body_too_large, concurrency, quota, upstream_timeout, upstream_error,"
            " client_gone, ...",
            ["tenant", "reason"],
            registry=registry,
        )
        self._refused_children: dict[tuple[str, str], Any] = {}
        self.quota_rejections = Counter(
            "tenantgw_quota_rejections",
            "Requests refused by a quota: kind rate (429), body_size (413) or concurrency"
            " (503); limit: tenant, client, route, route-client, body",
            ["tenant", "kind", "limit"],
            registry=registry,
        )
        self.config_last_reload_successful = Gauge(
            "tenantgw_config_last_reload_successful",
            "1 when the last compile refused no tenant's config (none Rejected), else 0",
            registry=registry,
        )
        self.config_last_reload_success_timestamp = Gauge(
            "tenantgw_config_last_reload_success_timestamp_seconds",
            "When a compile last refused no config (Unix time)",
            registry=registry,
        )
        build = Gauge(
            "tenantgw_build_info",
            "1, labelled with the versions serving",
            ["version", "python", "twisted"],
            registry=registry,
        )
        build.labels(_version(), platform.python_version(), twisted.__version__).set(1)
        # Process CPU, memory, file descriptors, start time; Python runtime.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self.config_rebuilds = Counter(
            "tenantgw_config_rebuilds",
            "Snapshots compiled and applied",
            registry=registry,
        )
        self.config_rejections = Counter(
            "tenantgw_config_rejections",
            "Tenant configs that became Rejected or HostConflict",
            ["tenant", "reason"],
            registry=registry,
        )
        self.tls_certificate_selections = Counter(
            "tenantgw_tls_certificate_selections",
            "TLS handshakes by the certificate SNI chose: tenant, default_secret, listener_default",
            ["outcome"],
            registry=registry,
        )
        self.tls_handshakes = Counter(
            "tenantgw_tls_handshakes",
            "TLS handshakes on the HTTPS listener by outcome: ok, failed (a fatal TLS alert)",
            ["outcome"],
            registry=registry,
        )
        # Requests open per tenant, kept by GatewayRequest as it is routed
        # and ended in request_finished; the total from count_in_flight.
        self.open_by_tenant: dict[str, int] = {}
        self.total_in_flight: Callable[[], int] = lambda: sum(self.open_by_tenant.values())
        self.watched_snapshot: Callable[[], Snapshot] = lambda: EMPTY_SNAPSHOT
        registry.register(_InFlightGauge(self))
        # Set by whoever holds the shared quota: the gateway replicas that share it.
        self.quota_replicas: Callable[[], int] = lambda: 1
        Gauge(
            "tenantgw_quota_replicas",
            "Gateway replicas sharing the quota: what the Redis fallback divides each limit"
            " by (1 without --redis)",
            registry=registry,
        ).set_function(lambda: float(self.quota_replicas()))
        self.traffic_window = TrafficWindow(monotonic, LATENCY_BUCKETS)
        self._upstream_children: dict[tuple[str, str, str], Any] = {}
        self._previous = EMPTY_SNAPSHOT
        # Namespaces whose config is Rejected now, kept across snapshots so
        # that one tenant's change does not cost a pass over all of them.
        self._rejected: set[str] = set()
        self._errors: dict[str, deque[dict[str, object]]] = {}
        # Set by whoever holds the quota state: requests in flight per tenant.
        self.tenant_in_flight: Callable[[str], int] = lambda namespace: 0
        # Set by whoever holds endpoint health: the (address, port, tls name)
        # of endpoints ejected now, which do not count as ready.
        self.ejected_endpoints: Callable[[], set[Any]] = set
        # Set by a dir: source: refused manifest files by namespace ("" when
        # the file held nothing that serves).
        self.source_problems: Callable[[], dict[str, list[str]]] = dict

    def count_from(self, name: str, documentation: str, count: Callable[[], float]) -> None:
        """
        A counter kept by another part (the Redis quota client, the Kubernetes
        watches), read at scrape time so those parts need not know of metrics.
        """
        self.registry.register(_CallbackCounter(name, documentation, count))

    def count_by(
        self, name: str, documentation: str, label: str, counts: Callable[[], Mapping[str, float]]
    ) -> None:
        """L{count_from} with one label, for a part that keeps its counts in a mapping."""
        self.registry.register(_LabelledCallbackCounter(name, documentation, label, counts))

    def count_connections(self, count: Callable[[], dict[str, int]]) -> None:
        """Open client connections per listener, counted at scrape time."""
        self.gauge_from("tenantgw_open_connections", "Open client connections", "listener", count)

    def gauge_from(
        self,
        name: str,
        documentation: str,
        label: str,
        values: Callable[[], Mapping[str, float]],
    ) -> None:
        """A gauge per C{label} value, read at scrape time from the part that knows."""
        self.registry.register(_LabelledGauge(name, documentation, label, values))

    def watch_snapshot(self, snapshot: Callable[[], Snapshot]) -> None:
        self.watched_snapshot = snapshot
        self.registry.register(_SnapshotCollector(snapshot, lambda: self.ejected()))

    def count_in_flight(self, count: Callable[[], int]) -> None:
        self.total_in_flight = count

    def tenant_routed(self, previous: str, namespace: str) -> None:
        """An open request now counts for C{namespace} (and no longer for C{previous})."""
        counts = self.open_by_tenant
        if previous:
            self._leave(previous)
        if namespace:
            counts[namespace] = counts.get(namespace, 0) + 1

    def _leave(self, namespace: str) -> None:
        counts = self.open_by_tenant
        left = counts.get(namespace, 0) - 1
        if left > 0:
            counts[namespace] = left
        else:
            counts.pop(namespace, None)

    def request_finished(self, request: GatewayRequest, now: float, duration: float) -> None:
        """The site's report of a request's end: counted from its L{Outcome}."""
        self.record(outcome_of(request, duration), now)

    def record(self, outcome: Outcome, now: float) -> None:
        tenant = outcome.tenant
        route = outcome.route
        code = outcome.status
        method = outcome.method
        if method not in METHODS:
            method = b"other"  # the cache key too must not grow with what clients send
        self.request_stats.record(tenant, route, method, code, outcome.duration)
        if tenant:
            if tenant in self.open_by_tenant:
                self._leave(tenant)
            self.request_stats.record_exchange(
                tenant,
                route,
                outcome.upstream_latency,
                outcome.body_received,
                outcome.bytes_sent,
            )
        error = outcome.upstream_error
        if error:
            self.upstream_error(tenant, route, error)
        if code >= 500 and tenant:
            self._remember_error(outcome, now)
        reason = outcome.reason
        if reason:
            key = (tenant, reason)
            child = self._refused_children.get(key)
            if child is None:
                child = self._refused_children[key] = self.requests_refused.labels(*key)
            child.inc()
        rejected = QUOTA_REJECTIONS.get(code)
        if rejected is not None and tenant and outcome.quota_limit:
            # Only the gateway's own refusals (an upstream's 503 is not a quota's).
            self.quota_rejections.labels(tenant, rejected, outcome.quota_limit).inc()

    def _remember_error(self, outcome: Outcome, now: float) -> None:
        errors = self._errors.get(outcome.tenant)
        if errors is None:
            errors = self._errors[outcome.tenant] = deque(maxlen=RECENT_ERRORS)
        errors.append(
            {
                "time": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds"),
                "route": outcome.route,
                "status": outcome.status,
                "upstream": outcome.endpoint,
                "reason": outcome.upstream_error or None,
                "requestId": outcome.request_id.decode("ascii", "replace"),
            }
        )

    # -- LiveState, for /api/tenants and the dashboard ---------------------------

    def in_flight(self, namespace: str) -> int:
        return self.tenant_in_flight(namespace)

    def ejected(self) -> set[Any]:
        return self.ejected_endpoints()

    def source_errors(self) -> dict[str, list[str]]:
        return self.source_problems()

    def now(self) -> float:
        return self.wall_clock()

    def traffic(self) -> dict[str, dict[str, object]]:
        """Per tenant: rates over the recent window, and totals since start."""
        return self.traffic_window.traffic(self.request_stats.totals())

    def recent_errors(self, namespace: str) -> list[dict[str, object]]:
        return list(self._errors.get(namespace, ()))

    def tls_selected(self, outcome: str) -> None:
        self.tls_certificate_selections.labels(outcome).inc()

    def tls_handshake(self, outcome: str) -> None:
        self.tls_handshakes.labels(outcome).inc()

    def upstream_error(self, tenant: str, route: str, kind: str) -> None:
        key = (tenant, route, kind)
        child = self._upstream_children.get(key)
        if child is None:
            child = self._upstream_children[key] = self.upstream_errors.labels(*key)
        child.inc()

    def snapshot_applied(self, current: Snapshot) -> None:
        """A pipeline listener: counts rebuilds, and configs as they become refused."""
        previous = self._previous
        self._previous = current
        self.config_rebuilds.inc()
        statuses = current.statuses
        visit = changed_namespaces(current, previous)
        if visit is None:
            visit = statuses
            self._rejected = set()
        rejected = self._rejected
        for namespace in visit:
            status = statuses.get(namespace)
            if status is None or status.state != STATE_REJECTED:
                rejected.discard(namespace)
            else:
                rejected.add(namespace)
            if (
                status is not None
                and status.state in REFUSED_STATES
                and previous.statuses.get(namespace) != status
            ):
                self.config_rejections.labels(namespace, status.state).inc()
        refused = bool(rejected)
        self.config_last_reload_successful.set(0 if refused else 1)
        if not refused:
            self.config_last_reload_success_timestamp.set(self.wall_clock())

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsResource(Resource):
    isLeaf = True

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return self.metrics.exposition()
