"""
The dashboard's traffic figures and the metrics added with them: the
quantile computed the way Prometheus' histogram_quantile does, rates over a
window on a clock the test holds, relative certificate expiry, requests in
flight by tenant, and the replica count the quota divides by.  The last two
are driven through real requests and a real Redis; the value read is the one
a scrape would get.
"""

from __future__ import annotations

import json
import math
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tenantgw.admin.metrics import Metrics
from tenantgw.admin.resource import tenants_document
from tenantgw.admin.traffic import (
    DAY,
    Totals,
    TrafficWindow,
    certificate_document,
    histogram_quantile,
    relative_time,
)
from tenantgw.app.service import _count_elsewhere
from tenantgw.dataplane.quota_redis import connect
from tests.eventually import eventually
from tests.redis_support import RedisServer
from tests.support import serve
from tests.test_metrics import ObservedGateway, _route, _tenant, sample

INF = math.inf
BOUNDS = (0.1, 0.25, 0.5, INF)


class QuantileTests(SynchronousTestCase):
    def test_interpolates_inside_the_bucket_holding_the_rank(self) -> None:
        # 36 under 100 ms, 4 in (250 ms, 500 ms]: rank 39.6 is 0.9 into the last.
        self.assertAlmostEqual(histogram_quantile(0.99, BOUNDS, [36, 36, 40, 40]), 0.475)

    def test_first_bucket_starts_at_zero(self) -> None:
        self.assertAlmostEqual(histogram_quantile(0.5, BOUNDS, [10, 10, 10, 10]), 0.05)

    def test_rank_in_inf_gives_the_highest_finite_bound(self) -> None:
        self.assertEqual(histogram_quantile(0.99, BOUNDS, [0, 0, 0, 5]), 0.5)

    def test_edges(self) -> None:
        self.assertTrue(math.isnan(histogram_quantile(0.99, BOUNDS, [0, 0, 0, 0])))
        self.assertEqual(histogram_quantile(1.5, BOUNDS, [1, 1, 1, 1]), INF)
        self.assertEqual(histogram_quantile(-1, BOUNDS, [1, 1, 1, 1]), -INF)
        # q = 1 is the bound of the last bucket holding anything.
        self.assertEqual(histogram_quantile(1.0, BOUNDS, [3, 4, 4, 4]), 0.25)


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def totals(requests: int, errors: int, too_many: int, buckets: tuple[float, ...]) -> Totals:
    return Totals(requests, errors, too_many, buckets)


class TrafficWindowTests(SynchronousTestCase):
    def test_rates_over_the_window(self) -> None:
        clock = FakeClock(1000.0)
        window = TrafficWindow(clock, BOUNDS[:-1], window=30.0)
        clock.now = 1010.0
        (team,) = window.traffic({"team": totals(40, 4, 4, (36, 0, 4, 0))}).values()
        self.assertEqual(team["requestsPerSecond"], 4.0)
        self.assertEqual(team["errorRatio"], 0.1)
        self.assertEqual(team["tooManyRequestsPerSecond"], 0.4)
        self.assertAlmostEqual(team["p99Seconds"], 0.475)  # type: ignore[arg-type]
        self.assertEqual(team["tooManyRequests"], 4)

        # Quiet for longer than the window: nothing in it, totals kept.
        clock.now = 1050.0
        team = window.traffic({"team": totals(40, 4, 4, (36, 0, 4, 0))})["team"]
        self.assertEqual(team["requestsPerSecond"], 0.0)
        self.assertIsNone(team["errorRatio"])
        self.assertIsNone(team["p99Seconds"])
        self.assertEqual(team["requests"], 40)

        # The base is the newest sample at least a window old (t=1010 here).
        clock.now = 1060.0
        team = window.traffic({"team": totals(70, 4, 4, (66, 0, 4, 0))})["team"]
        self.assertEqual(team["windowSeconds"], 50.0)
        self.assertEqual(team["requestsPerSecond"], 0.6)
        self.assertEqual(team["errorRatio"], 0.0)
        self.assertAlmostEqual(team["p99Seconds"], 0.1 * 29.7 / 30)  # type: ignore[arg-type]

    def test_samples_are_spaced_and_bounded(self) -> None:
        clock = FakeClock(0.0)
        window = TrafficWindow(clock, BOUNDS[:-1], window=30.0, spacing=1.0)
        for step in range(1000):
            clock.now = step * 0.5
            window.traffic({"team": totals(step, 0, 0, (step, 0, 0, 0))})
        self.assertLessEqual(len(window.samples), 32)

    def test_no_time_elapsed_gives_no_rate(self) -> None:
        window = TrafficWindow(FakeClock(5.0), BOUNDS[:-1])
        team = window.traffic({"team": totals(1, 0, 0, (1, 0, 0, 0))})["team"]
        self.assertIsNone(team["requestsPerSecond"])


class RelativeTimeTests(SynchronousTestCase):
    def test_words(self) -> None:
        self.assertEqual(relative_time(12.5 * DAY), "in 12 days")
        self.assertEqual(relative_time(-3.2 * DAY), "expired 3 days ago")
        self.assertEqual(relative_time(DAY + 5), "in 1 day")
        self.assertEqual(relative_time(5 * 3600 + 10), "in 5 hours")
        self.assertEqual(relative_time(-90), "expired 1 minute ago")
        self.assertEqual(relative_time(30), "in under a minute")

    def test_warning_levels(self) -> None:
        self.assertEqual(certificate_document(100 * DAY, 0)["level"], "ok")
        self.assertEqual(certificate_document(13 * DAY, 0)["level"], "warn")
        self.assertEqual(certificate_document(-1, 0)["level"], "expired")


class InFlightByTenantTests(ObservedGateway):
    @inlineCallbacks
    def test_a_held_request_counts_for_its_tenant_until_answered(self) -> Any:
        upstream = self.upstream()
        gateway = self.serve(_tenant(_route("all")), upstream)
        self.metrics.count_in_flight(lambda: gateway.gateway.requests_open)
        held = self.get(gateway, "/hang")
        yield eventually(lambda: upstream.resource.hanging, "the request reached the upstream")
        self.assertEqual(sample(self.metrics, "tenantgw_requests_in_flight", tenant="team"), 1.0)
        self.assertEqual(sample(self.metrics, "tenantgw_requests_in_flight", tenant=""), 0.0)
        # A request for no tenant is answered at once and leaves nothing behind.
        response = yield self.get(gateway, "/", host="nobody.example")
        yield response.content()
        self.assertEqual(response.code, 404)
        self.assertEqual(sample(self.metrics, "tenantgw_requests_in_flight", tenant=""), 0.0)
        (request,) = upstream.resource.hanging
        upstream.resource.hanging.clear()
        request.write(b"done")
        request.finish()
        response = yield held
        yield response.content()
        self.assertEqual(sample(self.metrics, "tenantgw_requests_in_flight", tenant="team"), 0.0)
        self.assertEqual(self.metrics.open_by_tenant, {})
        # The tenant's traffic in /api/tenants is the request just answered.
        document = json.loads(json.dumps(tenants_document(gateway.gateway.snapshot, self.metrics)))
        (tenant,) = document["tenants"]
        self.assertEqual(tenant["traffic"]["requests"], 1)
        self.assertEqual(tenant["traffic"]["errors"], 0)


class QuotaReplicasTests(TestCase):
    timeout = 30

    def test_in_process_quota_is_one_replica(self) -> None:
        metrics = Metrics()
        _count_elsewhere(metrics, _NoRedisGateway(), object())
        self.assertEqual(sample(metrics, "tenantgw_quota_replicas"), 1.0)

    @inlineCallbacks
    def test_replicas_counted_through_redis(self) -> Any:
        redis = RedisServer()
        self.addCleanup(redis.close)
        pairs = []
        for _ in range(3):
            gateway = serve(self)
            shared = connect(redis.url, reactor, gateway.gateway.limiter, heartbeat_interval=0.2)
            self.addCleanup(shared.stop)
            gateway.gateway.shared_quota = shared
            metrics = Metrics()
            _count_elsewhere(metrics, gateway.gateway, object())
            pairs.append((shared, metrics))
        yield eventually(
            lambda: all(s.counted_replicas == 3 for s, _ in pairs), "3 replicas counted"
        )
        self.assertEqual([sample(m, "tenantgw_quota_replicas") for _, m in pairs], [3.0, 3.0, 3.0])
        shared, _ = pairs.pop()
        yield shared.stop()
        yield eventually(
            lambda: all(s.counted_replicas == 2 for s, _ in pairs), "2 replicas counted"
        )
        self.assertEqual([sample(m, "tenantgw_quota_replicas") for _, m in pairs], [2.0, 2.0])


class _NoRedisGateway:
    """A gateway without --redis, as far as the metric looks."""

    shared_quota = None
