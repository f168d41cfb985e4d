"""
Rate limits shared through a real Redis: the GCRA script's decisions, what
happens when Redis is down, hung or restarted, and the same 429/503 answers
over real sockets as the in-process limiter gives.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import HTTPConnectionPool

from tenantgw.config.model import RateLimit
from tenantgw.dataplane.limits import Bucket, Denial, RateLimiter
from tenantgw.dataplane.quota_redis import (
    HEARTBEAT_SHA,
    POOL_SIZE,
    REPLICAS_KEY,
    UNAVAILABLE,
    RedisQuota,
    connect,
    parse_redis_url,
    redis_key,
)
from tests.eventually import eventually
from tests.redis_support import RedisServer
from tests.support import GatewayUnderTest, Upstream, serve


def tenant(rate: float, burst: int) -> Bucket:
    return Bucket(("tenant", "team"), RateLimit(rate, burst), "tenant")


def client(address: str, rate: float, burst: int) -> Bucket:
    return Bucket(("client", "team", address), RateLimit(rate, burst), "client")


def evalsha_calls(stats: bytes) -> int:
    for line in stats.split(b"\r\n"):
        if line.startswith(b"cmdstat_evalsha:"):
            return int(line.split(b"calls=")[1].split(b",")[0])
    return 0


class KeysAndURLTests(SynchronousTestCase):
    def test_keys_carry_the_namespace_as_hash_tag(self) -> None:
        self.assertEqual(redis_key(("tenant", "team")), "tenantgw:{team}:tenant")
        self.assertEqual(
            redis_key(("client", "team", "2001:db8::1")), "tenantgw:{team}:client:2001:db8::1"
        )
        self.assertEqual(redis_key(("route", "team", "api")), "tenantgw:{team}:route:api")

    def test_urls(self) -> None:
        self.assertEqual(
            parse_redis_url("redis://:s3cret@redis.infra:6380/2"),
            ("redis.infra:6380", ("tcp", "redis.infra", 6380), 2, "s3cret"),
        )
        self.assertEqual(
            parse_redis_url("unix:///run/redis.sock?db=1"),
            ("/run/redis.sock", ("unix", "/run/redis.sock"), 1, None),
        )
        self.assertRaises(ValueError, parse_redis_url, "http://redis")


class _Connection:
    """Stands in for a txredisapi connection; the test answers each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], list[str], Deferred[Any]]] = []
        self.heartbeats: list[tuple[list[str], list[str], Deferred[Any]]] = []

    def evalsha(self, sha: str, keys: list[str], args: list[str]) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        (self.heartbeats if sha == HEARTBEAT_SHA else self.calls).append((keys, args, d))
        return d


class HeartbeatTests(SynchronousTestCase):
    """The replica count, with a clock driving time and the test answering for Redis."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.connection = _Connection()
        self.factory = SimpleNamespace(pool=[self.connection], disconnect=lambda: None)
        self.quota = RedisQuota(
            self.factory, self.clock, RateLimiter(self.clock), replicas=1, member="pod-a:1:x"
        )

    def answer(self, count: int) -> None:
        self.connection.heartbeats[-1][2].callback(count)

    def fallback_burst(self, burst: int = 12) -> int:
        """How many of a fresh tenant's burst the open fallback admits here."""
        bucket = Bucket(("tenant", f"t{self.clock.seconds()}"), RateLimit(0.001, burst), "tenant")
        return sum(self.quota._without_redis([bucket], "test") is None for _ in range(burst))

    def test_beats_every_five_seconds_and_counts(self) -> None:
        self.quota.start_heartbeat()
        self.clock.advance(0)
        [(keys, args, _)] = self.connection.heartbeats
        self.assertEqual((keys, args), ([REPLICAS_KEY], ["pod-a:1:x", "15.0", "1"]))
        self.assertEqual(self.quota.replicas, 1)
        self.answer(3)
        self.assertEqual((self.quota.counted_replicas, self.quota.replicas), (3, 3))
        self.assertEqual(self.fallback_burst(12), 4)
        self.clock.advance(4.9)
        self.assertEqual(len(self.connection.heartbeats), 1)
        self.clock.advance(0.1)
        self.assertEqual(len(self.connection.heartbeats), 2)
        self.answer(2)
        self.assertEqual(self.quota.replicas, 2)
        self.assertEqual(self.fallback_burst(12), 6)

    def test_waits_for_a_connection_then_beats(self) -> None:
        self.factory.pool = []
        self.quota.start_heartbeat()
        self.clock.advance(0)
        self.clock.advance(0.5)
        self.assertEqual(self.connection.heartbeats, [])
        self.factory.pool = [self.connection]
        self.clock.advance(0.5)  # retried every 0.5 s until the pool has a connection
        self.assertEqual(len(self.connection.heartbeats), 1)

    def test_last_count_kept_while_redis_cannot_answer(self) -> None:
        self.quota.start_heartbeat()
        self.clock.advance(0)
        self.answer(4)
        self.clock.advance(5)
        self.connection.heartbeats[-1][2].errback(ConnectionError("lost"))
        self.assertEqual(self.quota.replicas, 4)
        self.factory.pool = []  # Redis gone
        self.clock.advance(5)
        self.clock.advance(5)
        self.assertEqual(self.quota.replicas, 4)
        self.assertEqual(self.fallback_burst(12), 3)
        # A hung Redis: the heartbeat gives up after a second, the count stays.
        self.factory.pool = [self.connection]
        self.clock.advance(5)
        self.clock.advance(1)
        self.assertEqual(self.quota.replicas, 4)
        self.clock.advance(5)
        self.answer(1)
        self.assertEqual(self.quota.replicas, 1)

    def test_replicas_option_is_a_floor(self) -> None:
        self.quota.replica_floor = 3
        self.quota.start_heartbeat()
        self.clock.advance(0)
        self.answer(2)
        self.assertEqual(self.quota.replicas, 3)
        self.clock.advance(5)
        self.answer(5)
        self.assertEqual(self.quota.replicas, 5)

    def test_stop_leaves_the_count_and_stops_beating(self) -> None:
        disconnected = []
        self.factory.disconnect = lambda: disconnected.append(True) or succeed(None)
        self.quota.start_heartbeat()
        self.clock.advance(0)
        self.answer(2)
        stopped = self.quota.stop()
        [_, (_, args, d)] = self.connection.heartbeats
        self.assertEqual(args, ["pod-a:1:x", "15.0", "0"])
        self.assertEqual(disconnected, [])
        d.callback(1)
        self.successResultOf(stopped)
        self.assertEqual(disconnected, [True])
        self.clock.advance(60)
        self.assertEqual(len(self.connection.heartbeats), 2)


class BatchingTests(SynchronousTestCase):
    """What is sent and how answers are read, with a clock instead of a Redis."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.connection = _Connection()
        factory = SimpleNamespace(pool=[self.connection])
        self.quota = RedisQuota(factory, self.clock, RateLimiter(self.clock), replicas=3)

    def test_one_call_per_tenant_and_turn_with_each_key_once(self) -> None:
        decided = [self.quota.decide([tenant(2, 10), client(c, 0.5, 4)]) for c in "aab"]
        self.assertEqual(self.connection.calls, [])
        self.clock.advance(0)
        [(keys, args, d)] = self.connection.calls
        self.assertEqual(
            keys, ["tenantgw:{team}:tenant", "tenantgw:{team}:client:a", "tenantgw:{team}:client:b"]
        )
        self.assertEqual(args, ["2 1 0.5 10 2 2.0 4 2 1 0.5 10 2 2.0 4 2 1 0.5 10 3 2.0 4"])
        d.callback("0 2:1.500000 0")
        results = [self.successResultOf(x) for x in decided]
        self.assertEqual(results[0::2], [None, None])
        self.assertEqual(results[1], Denial("client", RateLimit(0.5, 4), 1.5))

    def test_unreadable_answer_falls_back_for_every_request(self) -> None:
        decided = [self.quota.decide([tenant(3, 10)]) for _ in range(5)]
        self.clock.advance(0)
        self.connection.calls[0][2].callback("0")  # one answer for five requests
        results = [self.successResultOf(x) for x in decided]
        # A third of the burst of 10 on this replica: 3 admitted, then refused.
        self.assertEqual(results[:3], [None, None, None])
        self.assertEqual([r.limit for r in results[3:]], [RateLimit(1, 3)] * 2)
        self.assertEqual((self.quota.failures, self.quota.fallback_admitted), (5, 3))

    def test_no_answer_within_50ms_falls_back(self) -> None:
        decided = self.quota.decide([tenant(3, 10)])
        self.clock.advance(0)
        self.clock.advance(0.049)
        self.assertNoResult(decided)
        self.clock.advance(0.001)
        self.assertIsNone(self.successResultOf(decided))
        self.assertEqual(self.quota.fallback_admitted, 1)


class RedisQuotaTests(TestCase):
    timeout = 30

    def setUp(self) -> Any:
        self.redis = RedisServer()
        self.addCleanup(self.redis.close)
        self.quota = self.connect()
        return self.connected(self.quota)

    def connect(self, fail_open: bool = True, replicas: int = 2) -> RedisQuota:
        quota = connect(
            self.redis.url, reactor, RateLimiter(reactor), replicas=replicas, fail_open=fail_open
        )
        self.addCleanup(quota.stop)
        return quota

    def connected(self, quota: RedisQuota) -> Any:
        return eventually(lambda: len(quota.factory.pool) == POOL_SIZE)

    @inlineCallbacks
    def decisions(self, buckets: list[Bucket], count: int, quota: RedisQuota | None = None) -> Any:
        results = []
        for _ in range(count):
            results.append((yield (quota or self.quota).decide(buckets)))
        return results

    @inlineCallbacks
    def test_burst_admitted_then_denied_with_retry_after(self) -> Any:
        results = yield self.decisions([tenant(0.01, 3)], 4)
        self.assertEqual(results[:3], [None, None, None])
        denial = results[3]
        self.assertIsInstance(denial, Denial)
        self.assertEqual((denial.policy_name, denial.limit), ("tenant", RateLimit(0.01, 3)))
        # One request's worth of a 0.01/s refill: 100 s, less the time the test took.
        self.assertTrue(99 < denial.retry_after <= 100, denial.retry_after)
        self.assertEqual(self.quota.failures, 0)

    @inlineCallbacks
    def test_refused_request_consumes_nothing(self) -> Any:
        first = yield self.decisions([tenant(0.01, 3), client("a", 0.01, 1)], 3)
        # "a" spent its one request; its refusals did not spend the tenant's.
        self.assertEqual([d and d.policy_name for d in first], [None, "client", "client"])
        others = yield self.decisions([tenant(0.01, 3), client("b", 0.01, 5)], 3)
        self.assertEqual([d and d.policy_name for d in others], [None, None, "tenant"])

    @inlineCallbacks
    def test_decisions_of_one_turn_go_in_one_call_in_arrival_order(self) -> Any:
        other = Bucket(("tenant", "other"), RateLimit(0.01, 1), "tenant")
        calls = self.redis.command(b"INFO", b"commandstats")
        pending = [self.quota.decide([tenant(0.01, 3), client(f"c{i}", 0.01, 1)]) for i in range(4)]
        pending += [self.quota.decide([other]) for _ in range(2)]
        results = yield gatherResults(pending)
        self.assertEqual(
            [r and r.policy_name for r in results],
            [None, None, None, "tenant", None, "tenant"],
        )
        # One script run per tenant, whatever the number of requests.
        self.assertEqual(
            evalsha_calls(self.redis.command(b"INFO", b"commandstats")) - evalsha_calls(calls), 2
        )

    @inlineCallbacks
    def test_keys_expire_when_the_bucket_is_full_again(self) -> Any:
        yield self.quota.decide([tenant(0.1, 5)])
        # One admission moves the TAT 10 s ahead of now: the key lives that long.
        reply = self.redis.command(b"PTTL", b"tenantgw:{team}:tenant")
        self.assertTrue(reply.startswith(b":"), reply)
        self.assertTrue(9000 < int(reply[1:]) <= 10001, reply)

    @inlineCallbacks
    def test_script_sent_again_after_redis_forgets_it(self) -> Any:
        yield self.decisions([tenant(0.01, 2)], 1)
        self.assertEqual(self.redis.command(b"SCRIPT", b"FLUSH"), b"+OK\r\n")
        results = yield self.decisions([tenant(0.01, 2)], 2)
        self.assertEqual(results[0], None)
        self.assertIsInstance(results[1], Denial)
        self.assertEqual(self.quota.failures, 0)

    @inlineCallbacks
    def test_open_without_redis_admits_this_replicas_share_and_counts(self) -> Any:
        self.redis.stop()
        yield eventually(lambda: not self.quota.factory.pool)
        decided = [self.quota.decide([tenant(0.01, 4)]) for _ in range(3)]
        # Redis known down: not asked, so answered before decide() returns.
        results = [self.successResultOf(d) for d in decided]
        # Two replicas: each admits half the burst on its own.
        self.assertEqual(results[:2], [None, None])
        self.assertEqual(results[2].limit, RateLimit(0.005, 2))
        self.assertEqual((self.quota.fallback_admitted, self.quota.failures), (2, 3))

    @inlineCallbacks
    def test_closed_without_redis_is_unavailable(self) -> Any:
        closed = self.connect(fail_open=False)
        yield self.connected(closed)
        self.redis.stop()
        yield eventually(lambda: not closed.factory.pool)
        results = yield self.decisions([tenant(100, 100)], 1, closed)
        self.assertEqual(results, [UNAVAILABLE])
        self.assertEqual(closed.fallback_admitted, 0)

    @inlineCallbacks
    def test_hung_redis_times_out_within_50ms(self) -> Any:
        self.redis.freeze()
        self.addCleanup(self.redis.thaw)
        started = time.monotonic()
        result = yield self.quota.decide([tenant(100, 100)])
        elapsed = time.monotonic() - started
        self.assertIsNone(result)
        self.assertEqual(self.quota.fallback_admitted, 1)
        # 50 ms, not txredisapi's 1 s reply timeout (slack for a busy machine).
        self.assertTrue(0.04 <= elapsed < 0.5, elapsed)

    @inlineCallbacks
    def test_used_again_after_restart(self) -> Any:
        self.redis.stop()
        yield eventually(lambda: not self.quota.factory.pool)
        self.assertIsNone((yield self.quota.decide([tenant(0.01, 2)])))
        self.assertFalse(self.quota.healthy)
        self.redis.start()
        yield self.connected(self.quota)
        results = yield self.decisions([tenant(0.01, 2)], 3)
        # The restarted Redis has an empty bucket: a full burst, then refused.
        self.assertEqual(results[:2], [None, None])
        self.assertIsInstance(results[2], Denial)
        self.assertTrue(self.quota.healthy)
        self.assertTrue(self.redis.command(b"EXISTS", b"tenantgw:{team}:tenant") == b":1\r\n")


class RedisGatewayTests(TestCase):
    """The gateway's answers with Redis deciding, over real sockets."""

    timeout = 30

    def setUp(self) -> Any:
        self.redis = RedisServer()
        self.addCleanup(self.redis.close)
        self.upstream = Upstream("web")
        self.addCleanup(self.upstream.stop)
        self.client_pool = HTTPConnectionPool(reactor, persistent=False)

    def serve_shared(self, quota: dict[str, Any], fail_open: bool = True) -> Any:
        """Fires with a gateway whose quota is decided by the test's Redis, once connected."""
        gateway = serve(
            self,
            tenant={
                "hosts": ["t.example"],
                "quota": quota,
                "routes": [{"name": "all", "backends": [{"service": "web", "port": 80}]}],
            },
            services={"web": [self.upstream.number]},
        )
        shared = connect(self.redis.url, reactor, gateway.gateway.limiter, fail_open=fail_open)
        self.addCleanup(shared.stop)
        gateway.gateway.shared_quota = shared
        return eventually(
            lambda: len(shared.factory.pool) == POOL_SIZE, "the Redis connection pool is full"
        ).addCallback(lambda _: gateway)

    @inlineCallbacks
    def get(self, gateway: GatewayUnderTest) -> Any:
        response = yield treq.get(
            gateway.url("/"), headers={"Host": ["t.example"]}, pool=self.client_pool
        )
        yield response.content()
        return response

    @inlineCallbacks
    def test_429_with_ratelimit_headers(self) -> Any:
        gateway = yield self.serve_shared({"requestsPerSecond": 1, "burst": 2})
        codes = []
        for _ in range(3):
            response = yield self.get(gateway)
            codes.append(response.code)
        self.assertEqual(codes, [200, 200, 429])
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["1"])
        self.assertEqual(response.headers.getRawHeaders("ratelimit-policy"), ['"tenant";q=2;w=2'])
        self.assertEqual(response.headers.getRawHeaders("ratelimit"), ['"tenant";r=0;t=1'])
        self.assertEqual(len(self.upstream.received), 2)

    @inlineCallbacks
    def test_concurrency_slot_released_after_429(self) -> Any:
        gateway = yield self.serve_shared(
            {"requestsPerSecond": 0.01, "burst": 1, "maxConcurrentRequests": 1}
        )
        codes = []
        for _ in range(3):
            codes.append((yield self.get(gateway)).code)
        self.assertEqual(codes, [200, 429, 429])
        self.assertEqual(gateway.gateway.in_flight.current("team"), 0)

    @inlineCallbacks
    def test_client_gone_while_redis_decides_releases_its_slot(self) -> Any:
        gateway = yield self.serve_shared(
            {"requestsPerSecond": 100, "burst": 100, "maxConcurrentRequests": 1}
        )
        self.redis.freeze()
        self.addCleanup(self.redis.thaw)
        connected = yield connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", gateway.port), Protocol()
        )
        connected.transport.write(b"GET / HTTP/1.1\r\nHost: t.example\r\n\r\n")
        yield eventually(lambda: gateway.gateway.in_flight.current("team") == 1)
        connected.transport.abortConnection()
        # Redis's answer (here: its timeout) arrives after the client left.
        yield eventually(lambda: gateway.gateway.shared_quota.failures == 1)
        self.assertEqual(gateway.gateway.in_flight.current("team"), 0)
        self.assertEqual(self.upstream.received, [])

    @inlineCallbacks
    def test_closed_answers_503_while_redis_is_down(self) -> Any:
        gateway = yield self.serve_shared({"requestsPerSecond": 100, "burst": 100}, fail_open=False)
        self.assertEqual((yield self.get(gateway)).code, 200)
        self.redis.stop()
        response = yield self.get(gateway)
        self.assertEqual(response.code, 503)
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["1"])
        self.assertEqual(len(self.upstream.received), 1)

    @inlineCallbacks
    def test_redis_stopped_and_restarted_under_load(self) -> Any:
        """
        Four clients in a loop while Redis goes away and comes back: every
        request is answered promptly (open: by this replica's share), and
        the decisions return to Redis on their own.
        """
        gateway = yield self.serve_shared({"requestsPerSecond": 1000, "burst": 1000})
        shared = gateway.gateway.shared_quota
        slowest = [0.0]
        codes: list[int] = []
        running = [True]

        @inlineCallbacks
        def load() -> Any:
            while running[0]:
                started = time.monotonic()
                response = yield self.get(gateway)
                slowest[0] = max(slowest[0], time.monotonic() - started)
                codes.append(response.code)

        clients = [load() for _ in range(4)]
        yield eventually(lambda: len(codes) >= 20)
        self.redis.stop()
        yield eventually(lambda: shared.fallback_admitted >= 20)
        self.redis.start()
        yield eventually(lambda: shared.healthy and len(shared.factory.pool) == POOL_SIZE)
        answered_before = len(codes)
        fallback_before = shared.fallback_admitted
        yield eventually(lambda: len(codes) >= answered_before + 40)
        running[0] = False
        yield gatherResults(clients)
        self.assertEqual(set(codes), {200})
        # Never stalled: Redis calls time out after 50 ms; a second allows for
        # a loaded CI machine without hiding a stall on the network timeout.
        self.assertLess(slowest[0], 1.0)
        # Decisions went back to Redis on their own: of the 40 requests after
        # the restart, at most a few fell back (one 50 ms timeout can trip
        # when the machine is busy), not the steady stream of the outage.
        self.assertLessEqual(shared.fallback_admitted - fallback_before, 4)
