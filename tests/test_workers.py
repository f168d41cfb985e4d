"""
--workers 2: a real ``twistd tenantgw`` supervisor with two worker processes
on the same listening sockets.  Both workers answer requests, and SIGTERM to
the supervisor stops every process.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from tenantgw.app.workers import worker_arguments
from tests.eventually import eventually
from tests.process_support import GatewayProcess, _UNIXEndpointFactory, tenant_source
from tests.support import Upstream

REQUESTS = 20


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class WorkersTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_two_workers_share_the_listener_and_stop_together(self) -> Any:
        upstream = Upstream("web")
        self.addCleanup(upstream.stop)
        tenant = {
            "hosts": ["t.example"],
            "routes": [{"name": "all", "backends": [{"service": "web", "port": 80}]}],
        }
        source = tenant_source(self.mktemp(), tenant, {"web": [upstream.number]})
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        gateway = GatewayProcess(workdir, source, extra=["--workers=2"])
        self.addCleanup(gateway.stop)
        yield gateway.wait_ready()
        # Ready means one worker is; both must be listening before the test goes on.
        yield eventually(
            lambda: gateway.log().count("GatewaySite starting on"),
            "both workers listening (log lines 'GatewaySite starting on')",
            30,
            expect=2,
            interval=0.05,
        )

        # A new connection per request, many at once, so that both workers accept.
        agent = Agent.usingEndpointFactory(
            reactor,
            _UNIXEndpointFactory(gateway.http_socket),
            pool=HTTPConnectionPool(reactor, persistent=False),
        )

        def get() -> Any:
            d = agent.request(b"GET", b"http://t.example/", Headers({b"host": [b"t.example"]}))
            return d.addCallback(lambda r: readBody(r).addCallback(lambda _: r.code))

        access_log = os.path.join(workdir, "access.log")

        def answered_by() -> set[int]:
            if not os.path.exists(access_log):
                return set()
            with open(access_log) as f:
                return {json.loads(line)["pid"] for line in f}

        # Which worker accepts is the kernel's choice: batches go on until
        # both have answered (each worker writes its log once a second).
        sent = 0
        deadline = time.monotonic() + 20
        while len(answered_by()) < 2:
            self.assertLess(time.monotonic(), deadline, f"answered by {answered_by()} only")
            codes = yield gatherResults([get() for _ in range(REQUESTS)])
            self.assertEqual(codes, [200] * REQUESTS)
            sent += REQUESTS
            yield deferLater(reactor, 0.5, lambda: None)

        os.kill(gateway.pid, signal.SIGTERM)
        yield eventually(
            lambda: gateway.process.poll() is not None, "the gateway exited", 20, interval=0.05
        )

        with open(access_log) as f:
            lines = [json.loads(line) for line in f]
        # Every request logged once, the last ones flushed by the drain.
        self.assertEqual(len(lines), sent)
        pids = {line["pid"] for line in lines}
        self.assertEqual(len(pids), 2)
        self.assertNotIn(gateway.pid, pids)
        for pid in pids:
            self.assertFalse(_alive(pid), f"worker {pid} outlived its supervisor")


class WorkerArgumentsTests(SynchronousTestCase):
    def test_workers_option_is_dropped_in_both_spellings(self) -> None:
        argv = ["twistd", "-n", "tenantgw", "--source", "dir:x", "--workers", "2", "--http=tcp:1"]
        self.assertEqual(worker_arguments(argv), ["--source", "dir:x", "--http=tcp:1"])
        argv = ["twistd", "tenantgw", "--workers=3", "--admin", "unix:/a"]
        self.assertEqual(worker_arguments(argv), ["--admin", "unix:/a"])
