"""
Failover between two real ``twistd tenantgw`` replicas on one API server.

Both follow the cluster and serve; only the Lease holder writes Events.  The
leader is killed with SIGKILL (no release, as when a node dies), and the
other replica must take the Lease within the lease duration plus one retry
period, then be the one that writes.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase
from twisted.web.client import readBody

from tenantgw.status.leader import LEASE_DURATION, RETRY_PERIOD
from tenantgw.testing.fake_apiserver import FakeAPIServer
from tests.eventually import eventually
from tests.process_support import GatewayProcess
from tests.test_compile import namespace, simple_spec, tenant_cm


class TwoReplicasTests(TestCase):
    timeout = 120

    def replica(self, kubeconfig: str) -> GatewayProcess:
        workdir = self.mktemp()
        os.makedirs(workdir)
        process = GatewayProcess(
            workdir,
            "",
            source="kubernetes",
            extra=[f"--kubeconfig={kubeconfig}", "--leader-election-namespace=tenantgw-system"],
        )
        self.addCleanup(process.stop)
        return process

    @inlineCallbacks
    def leads(self, process: GatewayProcess) -> Any:
        """What the replica's own /metrics says of it."""
        response = yield process.admin_agent().request(b"GET", process.admin_url("/metrics"))
        body = (yield readBody(response)).decode()
        return "\ntenantgw_leader 1.0\n" in body

    @inlineCallbacks
    def leaders(self, replicas: list[GatewayProcess]) -> Any:
        found = []
        for process in replicas:
            if process.process.poll() is None and (yield self.leads(process)):
                found.append(process)
        return found

    def wait_for_one_leader(self, replicas: list[GatewayProcess], timeout: float) -> Any:
        """Fires with the only leader among C{replicas}; two at once fails at once."""

        def one_leader() -> Any:
            def check(found: list[GatewayProcess]) -> GatewayProcess | None:
                self.assertLessEqual(len(found), 1, "two replicas lead at once")
                return found[0] if found else None

            return self.leaders(replicas).addCallback(check)

        return eventually(one_leader, "a single leader", timeout=timeout, interval=0.2)

    @inlineCallbacks
    def test_the_other_replica_takes_over_after_the_leader_is_killed(self) -> Any:
        server = FakeAPIServer(bookmark_interval=0.5)
        server.start()
        self.addCleanup(server.stop)
        directory = tempfile.mkdtemp()
        kubeconfig = server.write_kubeconfig(os.path.join(directory, "config"))
        self.addCleanup(os.rmdir, directory)
        self.addCleanup(os.remove, kubeconfig)
        server.create(namespace("shop"))
        server.create(tenant_cm("shop", simple_spec()))

        replicas = [self.replica(kubeconfig), self.replica(kubeconfig)]
        for process in replicas:
            yield process.wait_ready(60)
        leader = yield self.wait_for_one_leader(replicas, 30)
        (follower,) = [p for p in replicas if p is not leader]
        (lease,) = server.objects("Lease")
        first_holder = lease["spec"]["holderIdentity"]
        self.assertTrue(first_holder)

        # One Event for the tenant, from the leader alone.
        yield eventually(lambda: len(server.objects("Event")) == 1, "the leader's Event")
        yield _sleep(1.0)
        events = server.objects("Event")
        self.assertEqual(len(events), 1, events)
        self.assertEqual(events[0]["reason"], "Accepted")

        # The renewal just happened, so the whole lease is still to run.
        renewed = lease["spec"]["renewTime"]
        yield eventually(
            lambda: server.objects("Lease")[0]["spec"]["renewTime"] != renewed,
            "a renewal",
            timeout=LEASE_DURATION,
        )
        os.kill(leader.pid, signal.SIGKILL)
        killed = time.monotonic()
        leader.process.wait()

        new_leader = yield self.wait_for_one_leader([follower], LEASE_DURATION + RETRY_PERIOD + 5)
        took = time.monotonic() - killed
        self.assertIs(new_leader, follower)
        (lease,) = server.objects("Lease")
        self.assertNotEqual(lease["spec"]["holderIdentity"], first_holder)
        self.assertLess(took, LEASE_DURATION + RETRY_PERIOD + 1)
        print(f"\nfailover after SIGKILL of the leader: {took:.1f}s (lease {LEASE_DURATION:g}s)")

        # The new leader is the status writer: a refused config gets its Warning.
        server.update(tenant_cm("shop", {"routes": [{"name": "x"}]}))
        yield eventually(
            lambda: any(e.get("type") == "Warning" for e in server.objects("Event")),
            "the new leader's Warning Event",
            timeout=20,
        )


def _sleep(seconds: float) -> Any:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    return deferLater(reactor, seconds, lambda: None)
