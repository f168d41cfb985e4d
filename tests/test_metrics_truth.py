"""
Metrics that tell the truth (issue: operability round 2): exact status codes,
which limit refused a request, concurrency refusals, the last reload's
outcome, build and process information, and the access log's host without
its port.  Driven with real requests over real sockets; each assertion reads
the exposition a Prometheus scrape would get.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase

from tenantgw.admin.access_log import host_without_port
from tenantgw.admin.metrics import Metrics
from tenantgw.compile.compiler import compile_snapshot
from tests.support import dump, snapshot_of, tenant_objects
from tests.test_metrics import ObservedGateway, _route, _tenant, sample


class ExactCodeTests(ObservedGateway):
    @inlineCallbacks
    def test_502_503_504_are_distinct(self) -> Any:
        upstream = self.upstream()
        gateway = self.serve(_tenant(_route("all", timeoutSeconds=0.3)), upstream)
        for path in ("/status/502", "/status/503", "/status/503", "/hang"):
            response = yield self.get(gateway, path)
            yield response.content()
        labels = {"tenant": "team", "route": "all", "method": "GET"}
        self.assertEqual(sample(self.metrics, "tenantgw_requests_total", code="502", **labels), 1.0)
        self.assertEqual(sample(self.metrics, "tenantgw_requests_total", code="503", **labels), 2.0)
        self.assertEqual(sample(self.metrics, "tenantgw_requests_total", code="504", **labels), 1.0)
        self.assertIsNone(sample(self.metrics, "tenantgw_requests_total", code="5xx", **labels))
        # An upstream's own 503 is not a quota refusal.
        self.assertIsNone(
            sample(
                self.metrics,
                "tenantgw_quota_rejections_total",
                tenant="team",
                kind="concurrency",
                limit="tenant",
            )
        )


class QuotaLimitTests(ObservedGateway):
    @inlineCallbacks
    def test_the_refusing_limit_is_named(self) -> Any:
        upstream = self.upstream()
        tenant = _tenant(_route("all"))
        tenant["quota"] = {
            "requestsPerSecond": 1000,
            "burst": 1000,
            "perClient": {"requestsPerSecond": 0.001, "burst": 2},
        }
        gateway = self.serve(tenant, upstream)
        codes = []
        for _ in range(4):
            response = yield self.get(gateway, "/")
            yield response.content()
            codes.append(response.code)
        self.assertEqual(codes, [200, 200, 429, 429])
        self.assertEqual(
            sample(
                self.metrics,
                "tenantgw_quota_rejections_total",
                tenant="team",
                kind="rate",
                limit="client",
            ),
            2.0,
        )

    @inlineCallbacks
    def test_concurrency_refusals_are_counted(self) -> Any:
        upstream = self.upstream()
        tenant = _tenant(_route("all"))
        tenant["quota"] = {"maxConcurrentRequests": 1}
        gateway = self.serve(tenant, upstream)
        held = self.get(gateway, "/hang")  # takes the one slot
        from tests.eventually import eventually

        yield eventually(
            lambda: upstream.resource.hanging, "the first request reached the upstream"
        )
        response = yield self.get(gateway, "/")
        yield response.content()
        self.assertEqual(response.code, 503)
        self.assertEqual(
            sample(
                self.metrics,
                "tenantgw_quota_rejections_total",
                tenant="team",
                kind="concurrency",
                limit="tenant",
            ),
            1.0,
        )
        held.cancel()
        held.addErrback(lambda _: None)


class ExpositionTests(SynchronousTestCase):
    def test_build_and_process_information(self) -> None:
        text = Metrics().exposition().decode()
        self.assertRegex(
            text, r'tenantgw_build_info\{python="[0-9.]+",twisted="[^"]+",version="[^"]+"\} 1.0'
        )
        self.assertIn("process_resident_memory_bytes", text)
        self.assertIn("process_open_fds", text)
        self.assertIn("python_info", text)

    def test_last_reload_outcome(self) -> None:
        moments = iter([100.0, 200.0, 300.0])
        metrics = Metrics(wall_clock=lambda: next(moments))
        good = snapshot_of(tenant_objects("team", dump(_tenant(_route("all")))))
        metrics.snapshot_applied(good)
        self.assertEqual(sample(metrics, "tenantgw_config_last_reload_successful"), 1.0)
        self.assertEqual(
            sample(metrics, "tenantgw_config_last_reload_success_timestamp_seconds"), 100.0
        )
        broken = compile_snapshot(tenant_objects("other", "routes: [{nope: 1}]\n"))
        metrics.snapshot_applied(broken)
        self.assertEqual(sample(metrics, "tenantgw_config_last_reload_successful"), 0.0)
        self.assertEqual(
            sample(metrics, "tenantgw_config_last_reload_success_timestamp_seconds"), 100.0
        )


class AccessLogHostTests(ObservedGateway):
    def test_host_without_port(self) -> None:
        self.assertEqual(host_without_port(b"a.example:8080"), b"a.example")
        self.assertEqual(host_without_port(b"a.example"), b"a.example")
        self.assertEqual(host_without_port(b"[::1]:8080"), b"[::1]")
        self.assertEqual(host_without_port(b"[::1]"), b"[::1]")

    @inlineCallbacks
    def test_the_logged_host_has_no_port(self) -> Any:
        upstream = self.upstream()
        gateway = self.serve(_tenant(_route("all")), upstream)
        response = yield self.get(gateway, "/", host="t.example:8080")
        yield response.content()
        (line,) = self.lines()
        self.assertEqual(line["host"], "t.example")


class EjectedEndpointTests(ObservedGateway):
    @inlineCallbacks
    def test_an_ejected_endpoint_is_not_ready_in_metrics_or_the_api(self) -> Any:
        import json

        from tenantgw.admin.resource import tenants_document

        closed = self.upstream()
        port = closed.number
        yield closed.stop()  # nothing listens: every attempt is a connect failure
        gateway = self.serve(_tenant(_route("all")), closed)
        health = gateway.gateway.health
        self.metrics.ejected_endpoints = lambda: health.unavailable
        labels = {"tenant": "team", "route": "all"}
        self.assertEqual(sample(self.metrics, "tenantgw_route_endpoints_ready", **labels), 1.0)
        for _ in range(health.passive_threshold):
            response = yield self.get(gateway, "/")
            yield response.content()
            self.assertEqual(response.code, 502)
        self.assertEqual(health.unavailable, {("127.0.0.1", port, None)})
        self.assertEqual(sample(self.metrics, "tenantgw_route_endpoints_ready", **labels), 0.0)
        document = json.loads(json.dumps(tenants_document(gateway.gateway.snapshot, self.metrics)))
        (tenant,) = document["tenants"]
        (backend,) = tenant["routes"][0]["backends"]
        self.assertEqual(backend["endpoints"], [])
        self.assertEqual(backend["ejected"], [f"127.0.0.1:{port}"])
        self.assertEqual(tenant["readyEndpoints"], 0)


class ExchangeHistogramTests(ObservedGateway):
    @inlineCallbacks
    def test_upstream_latency_and_sizes(self) -> Any:
        upstream = self.upstream()
        gateway = self.serve(_tenant(_route("all")), upstream)
        response = yield self.get(gateway, "/upload", method="POST", data=b"x" * 1500)
        body = yield response.content()
        response = yield self.get(gateway, "/nothing", host="unknown.example")
        yield response.content()
        labels = {"tenant": "team", "route": "all"}
        m = self.metrics
        self.assertEqual(sample(m, "tenantgw_upstream_response_seconds_count", **labels), 1.0)
        self.assertGreater(sample(m, "tenantgw_upstream_response_seconds_sum", **labels) or 0, 0)
        self.assertEqual(sample(m, "tenantgw_request_size_bytes_sum", **labels), 1500.0)
        self.assertEqual(
            sample(m, "tenantgw_request_size_bytes_bucket", le="1000.0", **labels), 0.0
        )
        self.assertEqual(
            sample(m, "tenantgw_request_size_bytes_bucket", le="10000.0", **labels), 1.0
        )
        self.assertEqual(sample(m, "tenantgw_response_size_bytes_sum", **labels), float(len(body)))
        # A request no tenant took is in none of them.
        self.assertIsNone(sample(m, "tenantgw_request_size_bytes_count", tenant="", route=""))
