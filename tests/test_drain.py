"""
SIGTERM drains: a real ``twistd tenantgw`` is stopped with requests in flight,
and every one of them completes; meanwhile readiness says 503 and the data
listener takes no new connection.  The drain's timer logic is tested apart
with a clock.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody

from tenantgw.admin.resource import Readiness
from tenantgw.app.drain import DrainService
from tests.eventually import eventually
from tests.fronts import FrontMixin, both_fronts
from tests.process_support import GatewayProcess, _UNIXEndpointFactory, tenant_source
from tests.support import (
    Upstream,
    raw_exchange,
    serve,
)

IN_FLIGHT = 5


class DrainOnSIGTERMTests(FrontMixin, TestCase):
    timeout = 60

    @inlineCallbacks
    def test_requests_in_flight_at_sigterm_all_complete(self) -> Any:
        upstream = Upstream("slow")
        self.addCleanup(upstream.stop)
        tenant = {
            "hosts": ["t.example"],
            "routes": [{"name": "all", "backends": [{"service": "slow", "port": 80}]}],
        }
        source = tenant_source(self.mktemp(), tenant, {"slow": [upstream.number]})
        workdir = self.mktemp()
        os.makedirs(workdir)
        gateway = GatewayProcess(workdir, source, extra=["--drain-timeout=20", *self.front_args()])
        self.addCleanup(gateway.stop)
        yield gateway.wait_ready()
        agent = Agent.usingEndpointFactory(reactor, _UNIXEndpointFactory(gateway.http_socket))

        def get() -> Any:
            d = agent.request(b"GET", b"http://t.example/hang", _host_headers())
            return d.addCallback(lambda r: readBody(r).addCallback(lambda body: (r.code, body)))

        responses = gatherResults([get() for _ in range(IN_FLIGHT)])
        yield eventually(
            lambda: len(upstream.resource.hanging) == IN_FLIGHT, "requests upstream", timeout=15.0
        )
        response = yield gateway.admin_agent().request(b"GET", gateway.admin_url("/metrics"))
        metrics = (yield readBody(response)).decode()
        self.assertIn(f'tenantgw_requests_in_flight{{tenant="team"}} {IN_FLIGHT}.0', metrics)
        self.assertIn(f'tenantgw_open_connections{{listener="http"}} {IN_FLIGHT}.0', metrics)
        self.assertIn('tenantgw_open_connections{listener="https"} 0.0', metrics)

        os.kill(gateway.pid, signal.SIGTERM)

        @inlineCallbacks
        def readyz() -> Any:
            response = yield gateway.admin_agent().request(b"GET", gateway.admin_url("/readyz"))
            yield readBody(response)
            return response.code

        yield eventually(readyz, "/readyz 503 once draining", expect=503, interval=0.05)
        # The listener is closed: a new client is refused, not queued.
        yield eventually(
            lambda: not os.path.exists(gateway.http_socket), "listener closed", timeout=15.0
        )
        # Real time is the point here: the process must outlive its requests.
        yield deferLater(reactor, 1.0, lambda: None)
        self.assertIsNone(gateway.process.poll(), "exited with requests in flight")

        for request in upstream.resource.hanging:
            request.write(b"finished late")
            request.finish()
        upstream.resource.hanging.clear()
        results = yield responses
        self.assertEqual(results, [(200, b"finished late")] * IN_FLIGHT)
        yield eventually(
            lambda: gateway.process.poll() is not None, "the gateway to exit", timeout=15.0
        )
        # twistd ends by re-raising the signal it stopped on, once the reactor stops.
        self.assertEqual(gateway.process.returncode, -signal.SIGTERM, gateway.log())
        log = gateway.log()
        self.assertIn(f"draining: {IN_FLIGHT} requests in flight", log)
        self.assertIn("drained: every request answered", log)


def _host_headers() -> Any:
    from twisted.web.http_headers import Headers

    return Headers({b"host": [b"t.example"]})


class DrainServiceTests(SynchronousTestCase):
    def test_waits_for_open_requests_then_stops_its_children(self) -> None:
        clock = Clock()
        readiness = Readiness(synced=True)
        open_requests = [2]
        drained: list[bool] = []
        drain = DrainService(
            readiness, lambda: open_requests[0], clock, 10.0, lambda: drained.append(True)
        )
        drain.startService()
        finished = drain.stopService()
        self.assertFalse(readiness.ready)
        self.assertNoResult(finished)
        clock.advance(1.0)
        self.assertNoResult(finished)
        open_requests[0] = 0
        clock.advance(0.05)
        self.successResultOf(finished)
        self.assertEqual(drained, [True])
        self.assertFalse(drain.running)

    def test_gives_up_after_the_grace_period(self) -> None:
        clock = Clock()
        drain = DrainService(Readiness(synced=True), lambda: 1, clock, 3.0)
        drain.startService()
        finished = drain.stopService()
        clock.advance(2.9)
        self.assertNoResult(finished)
        clock.advance(0.2)
        self.successResultOf(finished)


class DrainingResponsesTests(FrontMixin, TestCase):
    """While draining, keep-alive clients are told to go (and are let go)."""

    timeout = 30

    @inlineCallbacks
    def test_responses_close_their_connection_once_draining(self) -> Any:
        upstream = Upstream("web")
        self.addCleanup(upstream.stop)
        tenant = {
            "hosts": ["t.example"],
            "routes": [{"name": "all", "backends": [{"service": "web", "port": 80}]}],
        }
        gateway = serve(self, tenant=tenant, services={"web": [upstream.number]})
        request = b"GET / HTTP/1.1\r\nHost: t.example\r\n\r\n"
        kept = yield raw_exchange(gateway.port, request, close_after=True)
        self.assertNotIn(b"connection: close", kept.lower())
        gateway.gateway.start_draining()
        # Without close_after: this only returns once the server closes.
        closed = yield raw_exchange(gateway.port, request)
        self.assertTrue(closed.startswith(b"HTTP/1.1 200 "), closed)
        self.assertIn(b"connection: close", closed.lower())


both_fronts(globals())
