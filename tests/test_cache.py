"""
Per-route response caching: what is stored, for how long, under which key,
and that tenants never share entries.  Real sockets; the cache's clock is
driven by the test.
"""

from __future__ import annotations

from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from tests.support import Upstream, dump, serve, tenant_objects


def cached_route(max_age: int = 60, max_body: int = 1_000_000) -> dict[str, Any]:
    return {
        "name": "all",
        "backends": [{"service": "web", "port": 80}],
        "cache": {"maxAgeSeconds": max_age, "maxBodyBytes": max_body},
    }


class CacheTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.client_pool = HTTPConnectionPool(reactor, persistent=False)
        self.upstream = Upstream("web")
        self.addCleanup(self.upstream.stop)
        self.clock = Clock()
        self.clock.advance(1000)

    def serve(self, *tenants: tuple[str, str, dict[str, Any]], budget: int | None = None) -> Any:
        """One tenant per (namespace, host, route), all on the recording upstream."""
        objects = []
        for namespace, host, route in tenants:
            objects += tenant_objects(
                namespace,
                dump({"hosts": [host], "routes": [route]}),
                {"web": [self.upstream.number]},
                annotations={"tenantgw.io/allowed-hosts": host},
            )
        return serve(self, objects, cache_clock=self.clock, cache_budget=budget)

    @inlineCallbacks
    def get(self, gateway: Any, path: str, host: str = "t.example", **headers: str) -> Any:
        all_headers = {"Host": [host], **{k.replace("_", "-"): [v] for k, v in headers.items()}}
        response = yield treq.get(gateway.url(path), headers=all_headers, pool=self.client_pool)
        body = yield response.content()
        return response.headers.getRawHeaders("x-cache", [None])[0], body, response

    @inlineCallbacks
    def test_miss_then_hit_until_fresh_no_longer(self) -> Any:
        gateway = self.serve(("team", "t.example", cached_route(max_age=60)))
        first = yield self.get(gateway, "/a?cc=max-age%3D10")
        second = yield self.get(gateway, "/a?cc=max-age%3D10")
        self.assertEqual((first[0], second[0]), ("MISS", "HIT"))
        self.assertEqual(first[1], second[1])
        self.assertEqual(second[2].headers.getRawHeaders("age"), ["0"])
        self.assertEqual(len(self.upstream.received), 1)
        self.clock.advance(9)
        third = yield self.get(gateway, "/a?cc=max-age%3D10")
        self.assertEqual((third[0], third[2].headers.getRawHeaders("age")), ("HIT", ["9"]))
        self.clock.advance(2)  # max-age 10 has passed
        fourth = yield self.get(gateway, "/a?cc=max-age%3D10")
        self.assertEqual(fourth[0], "MISS")
        # The route's maxAgeSeconds caps the response's own max-age.
        yield self.get(gateway, "/b?cc=max-age%3D100000")
        self.clock.advance(61)
        capped = yield self.get(gateway, "/b?cc=max-age%3D100000")
        self.assertEqual(capped[0], "MISS")

    @inlineCallbacks
    def test_not_stored_when_the_response_or_request_says_so(self) -> Any:
        gateway = self.serve(("team", "t.example", cached_route()))
        for path in (
            "/p?cc=private",
            "/p?cc=no-store",
            "/p?cc=no-cache",
            "/p?vary=%2A",
            "/p?cookie=1",
        ):
            yield self.get(gateway, path)
            again = yield self.get(gateway, path)
            self.assertEqual(again[0], "MISS", path)
        yield self.get(gateway, "/q")
        authorized = yield self.get(gateway, "/q", Authorization="Bearer x")
        self.assertIsNone(authorized[0], "a request with credentials bypasses the cache")
        hit = yield self.get(gateway, "/q")
        self.assertEqual(hit[0], "HIT")

    @inlineCallbacks
    def test_vary_splits_entries(self) -> Any:
        gateway = self.serve(("team", "t.example", cached_route()))
        yield self.get(gateway, "/v?vary=accept-language", Accept_Language="fr")
        french = yield self.get(gateway, "/v?vary=accept-language", Accept_Language="fr")
        german = yield self.get(gateway, "/v?vary=accept-language", Accept_Language="de")
        self.assertEqual((french[0], german[0]), ("HIT", "MISS"))

    @inlineCallbacks
    def test_tenants_never_share_entries(self) -> Any:
        gateway = self.serve(
            ("one", "one.example", cached_route()), ("two", "two.example", cached_route())
        )
        yield self.get(gateway, "/same", host="one.example")
        other = yield self.get(gateway, "/same", host="two.example")
        self.assertEqual(other[0], "MISS")
        self.assertEqual(set(gateway.gateway.cache.tenants), {"one", "two"})

    @inlineCallbacks
    def test_budget_and_body_limit_bound_memory(self) -> Any:
        # The upstream echoes the request's fields (the forwarded ones too) in its
        # body: the limit leaves room for a small one, not for the padded one.
        gateway = self.serve(("team", "t.example", cached_route(max_body=500)), budget=2000)
        yield self.get(gateway, "/big?pad=" + "x" * 500)
        again = yield self.get(gateway, "/big?pad=" + "x" * 500)
        self.assertEqual(again[0], "MISS", "a body over maxBodyBytes is not stored")
        for i in range(20):
            yield self.get(gateway, f"/small/{i}")
        tenant_cache = gateway.gateway.cache.tenants["team"]
        self.assertLessEqual(tenant_cache.size, 2000)
        newest = yield self.get(gateway, "/small/19")
        oldest = yield self.get(gateway, "/small/0")
        self.assertEqual((newest[0], oldest[0]), ("HIT", "MISS"))
