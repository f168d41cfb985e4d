"""
Load-balancing policies and retries: the picker on its own, then through
real sockets (a refused endpoint, an endpoint answering 503, sticky cookies
across a reload).
"""

from __future__ import annotations

import random
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import HTTPConnectionPool

from tenantgw.dataplane.balancing import (
    AFFINITY_COOKIE,
    BackendPicker,
    EndpointLoad,
    affinity_token,
    endpoint_key,
)
from tenantgw.plans.routes import BackendPlan, Endpoint
from tests.support import (
    GatewayUnderTest,
    Upstream,
    dump,
    raw_upstream,
    serve,
    snapshot_of,
    tenant_objects,
)


def one_route(route: dict[str, Any]) -> dict[str, Any]:
    return {"hosts": ["t.example"], "routes": [route]}


A, B, C = Endpoint("10.0.0.1", 80), Endpoint("10.0.0.2", 80), Endpoint("10.0.0.3", 80)
WEB = BackendPlan("web", 80, 1, (A, B, C))


class PickerTests(SynchronousTestCase):
    def test_round_robin(self) -> None:
        picker = BackendPicker((WEB,), "RoundRobin", EndpointLoad())
        self.assertEqual([picker.pick()[1] for _ in range(4)], [A, B, C, A])

    def test_least_request_prefers_the_less_loaded_of_two(self) -> None:
        load = EndpointLoad()
        for _ in range(5):
            load.enter(endpoint_key(WEB, A))
            load.enter(endpoint_key(WEB, B))
        picker = BackendPicker((WEB,), "LeastRequest", load, random.Random(1))
        picks = [picker.pick()[1] for _ in range(60)]
        # C is idle: whenever it is one of the two candidates it wins.
        self.assertGreater(picks.count(C), 30)
        for _ in range(10):
            load.enter(endpoint_key(WEB, C))
        picks = [picker.pick()[1] for _ in range(60)]
        self.assertEqual(picks.count(C), 0)

    def test_cookie_pins_and_falls_back_when_the_endpoint_is_gone(self) -> None:
        picker = BackendPicker((WEB,), "Cookie", EndpointLoad())
        token = affinity_token(endpoint_key(WEB, B))
        self.assertEqual({picker.pick(token)[1] for _ in range(5)}, {B})
        shrunk = BackendPicker((BackendPlan("web", 80, 1, (A, C)),), "Cookie", EndpointLoad())
        self.assertIn(shrunk.pick(token)[1], (A, C))
        self.assertIn(picker.pick(b"forged")[1], (A, B, C))

    def test_weighted_split_over_a_thousand_requests(self) -> None:
        stable = BackendPlan("stable", 80, 90, (A,))
        canary = BackendPlan("canary", 80, 10, (B,))
        dark = BackendPlan("dark", 80, 0, (C,))
        picker = BackendPicker((stable, canary, dark), "RoundRobin", EndpointLoad())
        picks = [picker.pick()[0].service for _ in range(1000)]
        self.assertLessEqual(abs(picks.count("canary") - 100), 30)  # within 3 points
        self.assertEqual(picks.count("dark"), 0)
        # Interleaved, not in bursts: never more than 9 stable picks in a row.
        self.assertNotIn("stable," * 10, ",".join(picks) + ",")

    def test_a_backend_with_nothing_left_never_causes_503_while_another_serves(self) -> None:
        stable = BackendPlan("stable", 80, 90, (A,))
        canary = BackendPlan("canary", 80, 10, (B,))
        picker = BackendPicker((stable, canary), "RoundRobin", EndpointLoad())
        tried = {endpoint_key(stable, A)}
        self.assertEqual({picker.pick(exclude=tried)[0].service for _ in range(50)}, {"canary"})

    def test_exclude_skips_tried_endpoints(self) -> None:
        picker = BackendPicker((WEB,), "RoundRobin", EndpointLoad())
        tried = {endpoint_key(WEB, A), endpoint_key(WEB, B)}
        self.assertEqual({picker.pick(exclude=tried)[1] for _ in range(3)}, {C})
        tried.add(endpoint_key(WEB, C))
        self.assertIsNone(picker.pick(exclude=tried))


class BalancingOverSocketsTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.client_pool = HTTPConnectionPool(reactor, persistent=False)

    def upstream(self, name: str) -> Upstream:
        upstream = Upstream(name)
        self.addCleanup(upstream.stop)
        return upstream

    @inlineCallbacks
    def request(self, gateway: GatewayUnderTest, method: str = "GET", **kw: Any) -> Any:
        headers = {"Host": ["t.example"], **kw.pop("headers", {})}
        response = yield treq.request(
            method, gateway.url("/"), headers=headers, pool=self.client_pool, **kw
        )
        body = yield response.content()
        return response, body

    @inlineCallbacks
    def test_idempotent_requests_retry_on_another_endpoint(self) -> Any:
        good = self.upstream("good")
        refused = self.upstream("refused")
        yield refused.stop()
        unavailable = raw_upstream(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")
        self.addCleanup(unavailable.stopListening)
        ports = [refused.number, unavailable.getHost().port, good.number]
        route = {
            "name": "all",
            "backends": [{"service": "web", "port": 80}],
            "retries": {"attempts": 2},
        }
        gateway = serve(self, tenant=one_route(route), services={"web": ports})
        for _ in range(6):  # every rotation starts somewhere else
            response, _ = yield self.request(gateway)
            self.assertEqual(response.code, 200)

    @inlineCallbacks
    def test_non_idempotent_requests_are_never_retried(self) -> Any:
        good = self.upstream("good")
        refused = self.upstream("refused")
        yield refused.stop()
        route = {
            "name": "all",
            "backends": [{"service": "web", "port": 80}],
            "retries": {"attempts": 2},
        }
        gateway = serve(
            self, tenant=one_route(route), services={"web": [refused.number, good.number]}
        )
        codes = []
        for _ in range(2):  # one turn each: the refused endpoint once, the good one once
            response, _ = yield self.request(gateway, "POST", data=b"x")
            codes.append(response.code)
        self.assertEqual(sorted(codes), [200, 502])
        self.assertEqual(len(good.received), 1)

    @inlineCallbacks
    def test_a_request_whose_body_was_sent_is_never_retried(self) -> Any:
        good = self.upstream("good")
        unavailable = raw_upstream(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")
        self.addCleanup(unavailable.stopListening)
        route = {
            "name": "all",
            "backends": [{"service": "web", "port": 80}],
            "retries": {"attempts": 2},
        }
        gateway = serve(
            self,
            tenant=one_route(route),
            services={"web": [unavailable.getHost().port, good.number]},
        )
        codes = []
        for _ in range(2):
            response, _ = yield self.request(gateway, "PUT", data=b"payload")
            codes.append(response.code)
        # PUT is idempotent, but its body went to the first endpoint already.
        self.assertEqual(sorted(codes), [200, 503])
        self.assertEqual(len(good.received), 1)

    @inlineCallbacks
    def test_without_retries_a_failure_is_answered(self) -> Any:
        refused = self.upstream("refused")
        yield refused.stop()
        good = self.upstream("good")
        route = {"name": "all", "backends": [{"service": "web", "port": 80}]}
        gateway = serve(
            self, tenant=one_route(route), services={"web": [refused.number, good.number]}
        )
        codes = []
        for _ in range(2):
            response, _ = yield self.request(gateway)
            codes.append(response.code)
        self.assertEqual(sorted(codes), [200, 502])

    @inlineCallbacks
    def test_sticky_cookie_pins_and_follows_a_reload(self) -> Any:
        one, two = self.upstream("one"), self.upstream("two")
        route = {
            "name": "all",
            "backends": [{"service": "web", "port": 80}],
            "loadBalancer": {"policy": "Cookie"},
        }
        gateway = serve(self, tenant=one_route(route), services={"web": [one.number, two.number]})
        response, _ = yield self.request(gateway)
        cookie = response.headers.getRawHeaders("set-cookie")[0].split(";")[0]
        self.assertTrue(cookie.startswith(AFFINITY_COOKIE.decode() + "="))
        first = one if one.received else two
        for _ in range(5):
            response, _ = yield self.request(gateway, headers={"Cookie": [cookie]})
            self.assertIsNone(response.headers.getRawHeaders("set-cookie"))
        self.assertEqual(len(first.received), 6)
        # The pinned endpoint goes away: the client falls back and is re-pinned.
        other = two if first is one else one
        gateway.gateway.apply(
            snapshot_of(tenant_objects("team", dump(one_route(route)), {"web": [other.number]}))
        )
        response, _ = yield self.request(gateway, headers={"Cookie": [cookie]})
        self.assertEqual(response.code, 200)
        self.assertEqual(len(other.received), 1)
        self.assertNotEqual(response.headers.getRawHeaders("set-cookie")[0].split(";")[0], cookie)
