"""
Endpoint health: passive ejection with exponential re-admission, active
probes, and traffic routed around real backend processes that are killed
and restarted under load.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import HTTPConnectionPool

from tenantgw.dataplane.health import BASE_EJECTION, EndpointHealth
from tests.eventually import eventually, eventually_blocking
from tests.grpc_support import grpc_tenant
from tests.h2c_support import H2cBackend
from tests.support import serve

KEY = ("10.0.0.1", 80, None)

BACKEND = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
name, port = sys.argv[1], int(sys.argv[2])
class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
HTTPServer.allow_reuse_address = True
HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


class PassiveAndActiveTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.health = EndpointHealth(self.clock, passive_threshold=3)

    def test_ejected_after_consecutive_failures_then_readmitted_on_probation(self) -> None:
        for _ in range(2):
            self.health.failed(KEY)
        self.health.succeeded(KEY)  # a success breaks the run
        for _ in range(2):
            self.health.failed(KEY)
        self.assertTrue(self.health.available(KEY))
        self.health.failed(KEY)
        self.assertFalse(self.health.available(KEY))
        self.clock.advance(BASE_EJECTION)
        self.assertTrue(self.health.available(KEY))
        # On probation: one failure ejects again, for twice as long.
        self.health.failed(KEY)
        self.assertFalse(self.health.available(KEY))
        self.clock.advance(BASE_EJECTION * 2 - 1)
        self.assertFalse(self.health.available(KEY))
        self.clock.advance(1)
        self.assertTrue(self.health.available(KEY))
        self.health.succeeded(KEY)
        self.health.failed(KEY)
        self.assertTrue(self.health.available(KEY), "a success clears the record")

    def test_probe_thresholds(self) -> None:
        self.health.probed(KEY, False, unhealthy=2, healthy=2)
        self.assertTrue(self.health.available(KEY))
        self.health.probed(KEY, False, unhealthy=2, healthy=2)
        self.assertFalse(self.health.available(KEY))
        self.health.probed(KEY, True, unhealthy=2, healthy=2)
        self.assertFalse(self.health.available(KEY))
        self.health.probed(KEY, True, unhealthy=2, healthy=2)
        self.assertTrue(self.health.available(KEY))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class KilledBackendTests(TestCase):
    timeout = 60

    def start_backend(self, name: str, port: int) -> subprocess.Popen[bytes]:
        process = subprocess.Popen([sys.executable, "-c", BACKEND, name, str(port)])
        self.addCleanup(lambda: process.poll() is None and process.kill())
        eventually_blocking(
            lambda: socket.create_connection(("127.0.0.1", port), timeout=0.2).close() or True,
            f"backend {name} accepts connections",
            ignoring=(OSError,),
            interval=0.05,
        )
        return process

    @inlineCallbacks
    def test_traffic_routes_around_a_killed_backend_and_returns_after_restart(self) -> Any:
        ports = {"a": _free_port(), "b": _free_port()}
        backends = {name: self.start_backend(name, port) for name, port in ports.items()}
        route = {
            "name": "all",
            "backends": [{"service": "web", "port": 80}],
            "healthCheck": {
                "path": "/",
                "intervalSeconds": 1,
                "unhealthyThreshold": 1,
                "healthyThreshold": 1,
            },
        }
        tenant = {"hosts": ["t.example"], "routes": [route]}
        gateway = serve(self, tenant=tenant, services={"web": list(ports.values())})
        pool = HTTPConnectionPool(reactor, persistent=False)

        @inlineCallbacks
        def load(seconds: float) -> Any:
            served: list[Any] = []
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                response = yield treq.get(
                    gateway.url("/"), headers={"Host": ["t.example"]}, pool=pool
                )
                body = yield response.content()
                outcome = body.decode() if response.code == 200 else response.code
                served.append((time.monotonic(), outcome))
                yield deferLater(reactor, 0.02, lambda: None)
            return served

        before = yield load(0.5)
        self.assertEqual({outcome for _, outcome in before}, {"a", "b"})
        backends["a"].send_signal(signal.SIGKILL)
        backends["a"].wait()
        killed_at = time.monotonic()
        during = yield load(3.0)
        # Detection takes at most one probe interval (or five failed
        # requests); after it the dead backend is never tried again.
        settled = [outcome for at, outcome in during if at > killed_at + 1.5]
        self.assertTrue(settled)
        self.assertEqual(set(settled), {"b"}, during)
        backends["a"] = self.start_backend("a", ports["a"])
        after = yield load(2.5)
        self.assertEqual({outcome for _, outcome in after[-20:]}, {"a", "b"})
        self.assertNotIn(502, {outcome for _, outcome in after})


class H2cProbeTests(TestCase):
    """
    An h2c backend (a gRPC server) answers no HTTP/1.1 request: probed over
    HTTP/1.1, a healthy one would be taken out of service.  The probes go
    over real sockets; their schedule is on a clock, so a probe interval
    passes when the test says, not after a real second.
    """

    timeout = 30

    def gateway_with_probed_h2c_backend(self, status: int) -> tuple[Any, H2cBackend, Any]:
        backend = H2cBackend(reactor, status)
        self.addCleanup(backend.stop)
        check = (
            "    healthCheck: {path: /ready, intervalSeconds: 1,"
            " unhealthyThreshold: 2, healthyThreshold: 1}\n"
        )
        gateway = serve(self)
        self.clock = Clock()
        gateway.gateway.active_checks.clock = self.clock
        gateway.gateway.health._clock = self.clock
        gateway.gateway.apply(grpc_tenant(backend.port, port_name="h2c", route_extra=check))
        return gateway, backend, ("127.0.0.1", backend.port, None)

    @inlineCallbacks
    def test_a_healthy_h2c_backend_is_probed_over_http2_and_stays_in(self) -> Any:
        gateway, backend, key = self.gateway_with_probed_h2c_backend(200)
        yield eventually(lambda: len(backend.requests) == 1, "the first probe, at once")
        self.clock.advance(1)
        yield eventually(lambda: len(backend.requests) == 2, "the second probe, a second later")
        probe = backend.requests[0]
        self.assertEqual(probe[b":path"], b"/ready")
        self.assertEqual(probe[b"user-agent"], b"tenantgw-health-check")
        self.assertEqual(backend.refused, 0)
        self.assertEqual(gateway.gateway.health.state(key), "healthy")
        # One HTTP/2 connection carries the probes, as it carries requests.
        self.assertEqual(gateway.gateway.h2_pool.connections_opened, 1)

    @inlineCallbacks
    def test_a_failing_h2c_backend_is_taken_out(self) -> Any:
        gateway, backend, key = self.gateway_with_probed_h2c_backend(503)
        health = gateway.gateway.health
        yield eventually(
            lambda: key in health._records and health._records[key].probe_failures == 1,
            "the first probe failed",
        )
        self.assertEqual(health.state(key), "healthy")  # one failure is below the threshold
        self.clock.advance(1)
        yield eventually(lambda: health.state(key) == "unhealthy", "the endpoint probed out")
        self.assertEqual(len(backend.requests), 2)
        backend.status = 200
        self.clock.advance(1)
        yield eventually(lambda: health.state(key) == "healthy", "the endpoint back in")
        self.assertEqual(len(backend.requests), 3)
