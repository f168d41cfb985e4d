"""
/metrics and the access log, over real sockets: client -> gateway -> upstream.

The point is what an operator reads: the right series incremented with
labels from the tenant's declarations (never from what a client sent), and
one parseable JSON line per request, whoever answered it.
"""

from __future__ import annotations

import io
import json
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import HTTPConnectionPool

from tenantgw.admin.access_log import AccessLog
from tenantgw.admin.metrics import Metrics, method_label, status_class
from tenantgw.admin.resource import Readiness, admin_root
from tenantgw.plans.snapshot import EMPTY_SNAPSHOT
from tests.support import GatewayUnderTest, Upstream, dump, serve, snapshot_of, tenant_objects
from tests.test_admin_and_options import clocked, render


def _tenant(*routes: dict[str, Any]) -> dict[str, Any]:
    return {"hosts": ["t.example"], "routes": list(routes)}


def _route(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "backends": [{"service": "web", "port": 80}], **extra}


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


class ObservedGateway(TestCase):
    """A real gateway with metrics and an access log attached; no tests of its own."""

    timeout = 20

    def setUp(self) -> None:
        self.client_pool = HTTPConnectionPool(reactor, persistent=False)
        self.metrics = Metrics()
        self.log_out = io.BytesIO()
        self.access_log = AccessLog(self.log_out, reactor)

    def serve(self, tenant: dict[str, Any], upstream: Upstream) -> GatewayUnderTest:
        """Tenant C{team} on C{upstream}, counted in the test's metrics and access log."""
        return serve(
            self,
            tenant=tenant,
            services={"web": [upstream.number]},
            metrics=self.metrics,
            access_log=self.access_log,
        )

    def upstream(self) -> Upstream:
        upstream = Upstream("web")
        self.addCleanup(upstream.stop)
        return upstream

    def get(self, gateway: GatewayUnderTest, path: str, host: str = "t.example", **kw: Any) -> Any:
        headers = {"Host": [host], **kw.pop("headers", {})}
        return treq.request(
            kw.pop("method", "GET"),
            gateway.url(path),
            headers=headers,
            pool=self.client_pool,
            **kw,
        )

    def lines(self) -> list[dict[str, Any]]:
        self.access_log.flush()
        return [json.loads(line) for line in self.log_out.getvalue().splitlines()]


class ObservedGatewayTests(ObservedGateway):
    @inlineCallbacks
    def test_requests_are_counted_by_declared_names_only(self) -> Any:
        upstream = self.upstream()
        gateway = self.serve(_tenant(_route("api", match={"path": "/api"})), upstream)
        for path in ("/api/1", "/api/2"):
            response = yield self.get(gateway, path)
            yield response.content()
        response = yield self.get(gateway, "/api/x", method="PROPFIND")
        yield response.content()
        response = yield self.get(gateway, "/nothing-matches")
        yield response.content()
        self.assertEqual(response.code, 404)
        response = yield self.get(gateway, "/scan", host="random-12345.example")
        yield response.content()

        m = self.metrics
        labels = {"tenant": "team", "route": "api"}
        self.assertEqual(
            sample(m, "tenantgw_requests_total", method="GET", code="200", **labels), 2.0
        )
        self.assertEqual(
            sample(m, "tenantgw_requests_total", method="other", code="200", **labels), 1.0
        )
        self.assertEqual(
            sample(m, "tenantgw_requests_total", tenant="team", route="", method="GET", code="404"),
            1.0,
        )
        # Unknown hosts share one series, and nothing a client sent is a label.
        self.assertEqual(
            sample(m, "tenantgw_requests_total", tenant="", route="", method="GET", code="404"),
            1.0,
        )
        self.assertEqual(sample(m, "tenantgw_request_duration_seconds_count", **labels), 3.0)
        text = m.exposition().decode()
        for raw in ("random-12345", "/api/1", "nothing-matches", "PROPFIND"):
            self.assertNotIn(raw, text)
        self.assertEqual(
            sample(m, "tenantgw_route_endpoints_ready", tenant="team", route="api"), 1.0
        )
        self.assertEqual(
            sample(m, "tenantgw_tenant_state", tenant="team", state="Accepted", serving="true"),
            1.0,
        )
        self.assertEqual(sample(m, "tenantgw_requests_in_flight", tenant="team"), 0.0)
        self.assertEqual(sample(m, "tenantgw_requests_in_flight", tenant=""), 0.0)

    @inlineCallbacks
    def test_upstream_connect_failures_are_counted_and_remembered(self) -> Any:
        upstream = self.upstream()
        gateway = self.serve(_tenant(_route("all")), upstream)
        yield upstream.stop()
        response = yield self.get(gateway, "/")
        yield response.content()
        self.assertEqual(response.code, 502)
        self.assertEqual(
            sample(
                self.metrics,
                "tenantgw_upstream_errors_total",
                tenant="team",
                route="all",
                kind="connect",
            ),
            1.0,
        )
        (error,) = self.metrics.recent_errors("team")
        self.assertEqual(
            (error["route"], error["status"], error["reason"]), ("all", 502, "connect")
        )
        self.assertEqual(gateway.gateway.requests_open, 0)

    @inlineCallbacks
    def test_every_request_is_one_json_line(self) -> Any:
        upstream = self.upstream()
        gateway = self.serve(_tenant(_route("all")), upstream)
        response = yield self.get(gateway, "/a%22b", headers={"X-Request-Id": ["req-00000001"]})
        body = yield response.content()
        response = yield self.get(gateway, "/", host="nobody.example")
        yield response.content()
        served, unknown = self.lines()
        self.assertEqual(served["request_id"], "req-00000001")
        self.assertEqual(served["tenant"], "team")
        self.assertEqual(served["route"], "all")
        self.assertEqual(served["host"], "t.example")
        self.assertEqual(served["method"], "GET")
        self.assertEqual(served["path"], "/a%22b")
        self.assertEqual(served["status"], 200)
        self.assertEqual(served["bytes"], len(body))
        self.assertEqual(served["upstream"], f"127.0.0.1:{upstream.number}")
        self.assertEqual(served["client"], "127.0.0.1")
        self.assertGreaterEqual(served["duration_ms"], 0)
        self.assertIn("T", served["time"])
        self.assertEqual((unknown["tenant"], unknown["status"]), ("", 404))


class MetricsUnitTests(SynchronousTestCase):
    def test_labels_are_folded_into_fixed_sets(self) -> None:
        self.assertEqual(method_label(b"GET"), "GET")
        self.assertEqual(method_label(b"BREW"), "other")
        self.assertEqual(
            [status_class(c) for c in (101, 204, 308, 429, 504)],
            ["1xx", "2xx", "3xx", "4xx", "5xx"],
        )
        self.assertEqual(status_class(999), "other")

    def test_rebuilds_and_rejections_are_counted_once_per_change(self) -> None:
        metrics = Metrics()
        good = snapshot_of(tenant_objects("team", dump(_tenant(_route("all")))))
        bad = snapshot_of(tenant_objects("team", "hosts: [t.example]\nroutes: 7\n"))
        self.assertEqual(bad.statuses["team"].state, "Rejected")
        for snapshot in (good, bad, bad, good):
            metrics.snapshot_applied(snapshot)
        self.assertEqual(metrics.registry.get_sample_value("tenantgw_config_rebuilds_total"), 4)
        self.assertEqual(
            metrics.registry.get_sample_value(
                "tenantgw_config_rejections_total", {"tenant": "team", "reason": "Rejected"}
            ),
            1,
        )

    def test_metrics_and_api_are_served_on_the_admin_root(self) -> None:
        metrics = Metrics()
        metrics.watch_snapshot(lambda: EMPTY_SNAPSHOT)
        code, body = render(admin_root(Readiness(), lambda: EMPTY_SNAPSHOT, metrics), b"/metrics")
        self.assertEqual(code, 200)
        self.assertIn(b"# TYPE tenantgw_requests_total counter", body)
        self.assertIn(b"tenantgw_config_rebuilds_total 0.0", body)

    def test_api_tenants_adds_quota_use_and_recent_errors(self) -> None:
        tenant = _tenant(_route("all"))
        tenant["quota"] = {"requestsPerSecond": 10, "burst": 20, "maxConcurrentRequests": 5}
        snapshot = snapshot_of(tenant_objects("team", dump(tenant), {"web": [1234]}))
        metrics = Metrics()
        metrics.tenant_in_flight = lambda namespace: 3
        _, body = render(
            admin_root(
                Readiness(), lambda: snapshot, metrics, metrics, cooperate=clocked.cooperate
            ),
            b"/api/tenants",
        )
        (row,) = json.loads(body)["tenants"]
        self.assertEqual(row["readyEndpoints"], 1)
        self.assertEqual(row["quota"]["inFlight"], 3)
        self.assertEqual(row["quota"]["maxConcurrentRequests"], 5)
        self.assertEqual(row["quota"]["rate"], {"requestsPerSecond": 10, "burst": 20})
        self.assertEqual(row["recentErrors"], [])
        self.assertIsNone(row["certificateExpires"])

    def test_access_log_is_written_in_whole_lines_on_a_timer(self) -> None:
        clock = Clock()
        out = _RecordingWrites()
        log = AccessLog(out, clock)
        log.start()
        for _ in range(3):
            log.observer({"access_line": '{"n":1}\n'})
        self.assertEqual(out.writes, [])
        clock.advance(1.0)
        self.assertEqual(out.writes, [b'{"n":1}\n' * 3])
        log.observer({"access_line": '{"n":2}\n'})
        log.stop()
        self.assertEqual(out.writes[1:], [b'{"n":2}\n'])


class _RecordingWrites(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: Any) -> int:
        self.writes.append(bytes(data))
        return len(data)
