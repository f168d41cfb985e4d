"""
The replica count that the open failure mode divides quotas by, counted
through a real Redis by real gateways: heartbeats every interval, members
expiring after the TTL on Redis's clock, the last count kept while Redis is
down, and a clean stop leaving the count at once.
"""

from __future__ import annotations

import os
import time
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from tenantgw.dataplane.quota_redis import POOL_SIZE, REPLICAS_KEY, RedisQuota, connect
from tests.eventually import eventually
from tests.process_support import GatewayProcess
from tests.redis_support import RedisServer
from tests.support import GatewayUnderTest, Upstream, dump, serve, snapshot_of, tenant_objects

# Short, so that expiry happens within the test; the defaults are 5 s and 15 s.
INTERVAL = 0.2
TTL = 0.6
BURST = 10


def members(redis: RedisServer) -> int:
    reply = redis.command(b"ZCARD", REPLICAS_KEY.encode())
    assert reply.startswith(b":"), reply
    return int(reply[1:])


class TwoGatewaysCountEachOther(TestCase):
    timeout = 60

    def setUp(self) -> Any:
        self.redis = RedisServer()
        self.addCleanup(self.redis.close)
        self.upstream = Upstream("web")
        self.addCleanup(self.upstream.stop)
        self.client_pool = HTTPConnectionPool(reactor, persistent=False)
        tenants = []
        for namespace in ("early", "late"):
            document = {
                "hosts": [f"{namespace}.t.example"],
                # A budget that does not refill during the test.
                "quota": {"requestsPerSecond": 0.001, "burst": BURST},
                "routes": [{"backends": [{"service": "web", "port": 80}]}],
            }
            tenants.append(
                tenant_objects(namespace, dump(document), {"web": [self.upstream.number]})
            )
        self.snapshot = snapshot_of(*tenants)
        self.gateways = [self.gateway() for _ in range(2)]
        self.quotas: list[RedisQuota] = [g.gateway.shared_quota for g in self.gateways]
        return eventually(lambda: all(len(q.factory.pool) == POOL_SIZE for q in self.quotas))

    def gateway(self) -> GatewayUnderTest:
        gateway = serve(self, snapshot=self.snapshot)
        shared = connect(
            self.redis.url,
            reactor,
            gateway.gateway.limiter,
            heartbeat_interval=INTERVAL,
            heartbeat_ttl=TTL,
        )
        self.addCleanup(shared.stop)
        gateway.gateway.shared_quota = shared
        return gateway

    @inlineCallbacks
    def admitted(self, gateway: GatewayUnderTest, tenant: str, count: int) -> Any:
        codes = []
        for _ in range(count):
            response = yield treq.get(
                gateway.url("/"), headers={"Host": [f"{tenant}.t.example"]}, pool=self.client_pool
            )
            yield response.content()
            codes.append(response.code)
        self.assertEqual(set(codes) - {200, 429}, set(), codes)
        return codes.count(200)

    @inlineCallbacks
    def test_count_reaches_two_and_the_fail_open_budget_is_halved(self) -> Any:
        yield eventually(lambda: [q.replicas for q in self.quotas] == [2, 2])
        self.assertEqual(members(self.redis), 2)
        self.redis.stop()
        yield eventually(lambda: not self.quotas[0].factory.pool)
        # Redis down: the last count holds, and each gateway admits half.
        yield deferLater(reactor, 3 * INTERVAL, lambda: None)
        self.assertEqual([q.replicas for q in self.quotas], [2, 2])
        admitted = yield self.admitted(self.gateways[0], "early", BURST)
        self.assertEqual(admitted, BURST // 2)
        admitted = yield self.admitted(self.gateways[1], "early", BURST)
        self.assertEqual(admitted, BURST // 2)
        self.assertEqual(self.quotas[0].fallback_admitted, BURST // 2)

    @inlineCallbacks
    def test_a_gateway_that_dies_drops_out_after_the_ttl(self) -> Any:
        yield eventually(lambda: [q.replicas for q in self.quotas] == [2, 2])
        # As if killed: no more heartbeats, and no goodbye.
        self.quotas[1]._stop_heartbeat()
        died = time.monotonic()
        yield eventually(lambda: self.quotas[0].counted_replicas == 1)
        elapsed = time.monotonic() - died
        # Gone once its last heartbeat's TTL passed, seen at the next beat.
        self.assertTrue(TTL - INTERVAL <= elapsed <= TTL + 2 * INTERVAL + 0.5, elapsed)
        self.redis.stop()
        yield eventually(lambda: not self.quotas[0].factory.pool)
        admitted = yield self.admitted(self.gateways[0], "late", BURST)
        self.assertEqual(admitted, BURST)

    @inlineCallbacks
    def test_a_gateway_that_stops_cleanly_leaves_at_once(self) -> Any:
        yield eventually(lambda: [q.replicas for q in self.quotas] == [2, 2])
        yield self.quotas[1].stop()
        self.assertEqual(members(self.redis), 1)
        stopped = time.monotonic()
        yield eventually(lambda: self.quotas[0].counted_replicas == 1)
        self.assertLess(time.monotonic() - stopped, INTERVAL + 0.5)


class TwoProcessesRegister(TestCase):
    """Real C{twistd tenantgw} processes, default heartbeat, no --replicas."""

    timeout = 60

    @inlineCallbacks
    def test_each_process_registers_and_a_stopped_one_leaves(self) -> Any:
        redis = RedisServer()
        self.addCleanup(redis.close)
        workdir = os.path.abspath(self.mktemp())
        source = os.path.join(workdir, "tenants")
        os.makedirs(source)
        processes = []
        for name in ("a", "b"):
            os.makedirs(os.path.join(workdir, name))
            process = GatewayProcess(os.path.join(workdir, name), source, [f"--redis={redis.url}"])
            self.addCleanup(process.stop)
            processes.append(process)
        yield gatherResults([p.wait_ready() for p in processes])
        yield eventually(lambda: members(redis) == 2)
        entries = redis.command(b"ZRANGE", REPLICAS_KEY.encode(), b"0", b"-1")
        for process in processes:
            self.assertIn(f":{process.pid}:".encode(), entries)
        reply = redis.command(b"PTTL", REPLICAS_KEY.encode())
        self.assertTrue(0 < int(reply[1:]) <= 15000, reply)
        processes[1].stop()  # SIGTERM: drains, then leaves the count
        self.assertEqual(members(redis), 1)
        self.assertIn("2 gateway process(es) share Redis", processes[0].log() + processes[1].log())
