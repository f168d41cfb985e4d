"""
Two real ``twistd tenantgw`` processes on one real Redis admit one tenant's
budget between them, not each.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from tests.eventually import eventually
from tests.process_support import GatewayProcess, _UNIXEndpointFactory, tenant_source
from tests.redis_support import RedisServer
from tests.support import Upstream

RATE = 4.0
BURST = 20
CLIENTS_PER_PROCESS = 4
SECONDS = 1.5


def connected_clients(redis: RedisServer) -> int:
    for line in redis.command(b"INFO", b"clients").split(b"\r\n"):
        if line.startswith(b"connected_clients:"):
            return int(line.split(b":")[1])
    return 0


class TwoProcessesShareOneBudget(TestCase):
    timeout = 60

    @inlineCallbacks
    def setUp(self) -> Any:
        self.redis = RedisServer()
        self.addCleanup(self.redis.close)
        self.upstream = Upstream("web")
        self.addCleanup(self.upstream.stop)
        workdir = os.path.abspath(self.mktemp())
        source = os.path.join(workdir, "tenants")
        tenant = {
            "hosts": ["t.example"],
            "quota": {"requestsPerSecond": RATE, "burst": BURST},
            "routes": [{"name": "all", "backends": [{"service": "web", "port": 80}]}],
        }
        tenant_source(source, tenant, {"web": [self.upstream.number]})
        self.processes = []
        for name in ("a", "b"):
            directory = os.path.join(workdir, name)
            os.makedirs(directory)
            process = GatewayProcess(
                directory, source, [f"--redis={self.redis.url}", "--replicas=2"]
            )
            self.addCleanup(process.stop)
            self.processes.append(process)
        yield gatherResults([p.wait_ready() for p in self.processes])
        # Both processes' Redis pools connected (two connections each, plus
        # the one asking): a decision before that would go to the fallback.
        wanted = 2 * len(self.processes) + 1
        yield eventually(
            lambda: connected_clients(self.redis),
            f"{wanted} Redis clients (the gateways' pools and the asking one)",
            until=lambda clients: clients >= wanted,
            interval=0.05,
        )
        self.pool = HTTPConnectionPool(reactor)
        self.pool.maxPersistentPerHost = CLIENTS_PER_PROCESS
        self.addCleanup(self.pool.closeCachedConnections)

    @inlineCallbacks
    def test_parallel_clients_at_the_limit_get_exactly_the_budget(self) -> Any:
        agents = [
            Agent.usingEndpointFactory(reactor, _UNIXEndpointFactory(p.http_socket), pool=self.pool)
            for p in self.processes
        ]
        codes: list[int] = []

        @inlineCallbacks
        def client(agent: Agent, until: float) -> Any:
            while time.monotonic() < until:
                response = yield agent.request(
                    b"GET", b"http://t.example/", Headers({b"host": [b"t.example"]})
                )
                yield readBody(response)
                codes.append(response.code)

        started = time.monotonic()
        yield gatherResults(
            [
                client(agent, started + SECONDS)
                for agent in agents
                for _ in range(CLIENTS_PER_PROCESS)
            ]
        )
        elapsed = time.monotonic() - started
        admitted = codes.count(200)
        self.assertEqual(set(codes), {200, 429})
        # GCRA from an empty bucket admits at most BURST + floor(RATE * t) by
        # time t after the first decision (Redis's clock, inside our elapsed
        # time).  Clients are never idle, so a token that appears is taken
        # within one round trip, except possibly the last one, which may
        # appear after the last request was sent: hence the 1 below.
        most = BURST + math.floor(RATE * elapsed)
        self.assertTrue(most - 1 <= admitted <= most, (admitted, most, elapsed))
        self.assertEqual(len(self.upstream.received), admitted)
        # Each process on its own would have admitted BURST + RATE * t.
        self.assertGreater(len(codes), 2 * most)
