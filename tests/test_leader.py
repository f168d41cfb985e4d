"""
Leader election: exactly one replica leads; a follower takes over when the
leader stops renewing, a 409 on renewal ends leading, and stopping releases
the Lease so a rolling update fails over in one retry period.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from attrs import evolve
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tenantgw.sources.kubernetes import api_client_from
from tenantgw.status.leader import (
    LEASE_DURATION,
    RETRY_PERIOD,
    Conflict,
    KubernetesLeaseAPI,
    LeaderElector,
    LeaseRecord,
)
from tenantgw.testing.fake_apiserver import FakeAPIServer
from tests.eventually import ThreadedClock, eventually_advancing


class FakeLeases:
    """In-memory Leases with the API server's resourceVersion check."""

    def __init__(self) -> None:
        self.stored: dict[tuple[str, str], LeaseRecord] = {}
        self.version = 0
        self.down = False  # every call fails, as when the API server is unreachable
        self.writes = 0

    def _check(self) -> None:
        if self.down:
            raise OSError("API server unreachable")

    def read(self, namespace: str, name: str) -> LeaseRecord | None:
        self._check()
        return self.stored.get((namespace, name))

    def _store(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        self.version += 1
        self.writes += 1
        stored = evolve(record, resource_version=str(self.version))
        self.stored[namespace, name] = stored
        return stored

    def create(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        self._check()
        if (namespace, name) in self.stored:
            raise Conflict("exists")
        return self._store(namespace, name, record)

    def replace(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        self._check()
        current = self.stored.get((namespace, name))
        if current is None or current.resource_version != record.resource_version:
            raise Conflict("changed")
        return self._store(namespace, name, record)


class ThreadlessClock(Clock):
    """task.Clock that also takes callFromThread (the 'threads' run inline)."""

    def callFromThread(self, f: Any, *args: Any, **kw: Any) -> None:
        f(*args, **kw)


class InlinePool:
    def callInThreadWithCallback(self, on_result: Any, f: Any, *args: Any, **kw: Any) -> None:
        from twisted.python.failure import Failure

        try:
            result = f(*args, **kw)
        except Exception:
            on_result(False, Failure())
        else:
            on_result(True, result)


class StateMachineTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = ThreadlessClock()
        self.clock.advance(1_700_000_000)
        self.leases = FakeLeases()
        self.log: list[tuple[str, str]] = []

    def elector(self, identity: str, api: Any = None) -> LeaderElector:
        elector = LeaderElector(
            api or self.leases,
            self.clock,
            "tenantgw-system",
            "tenantgw-status",
            identity=identity,
            threadpool=InlinePool(),
        )
        elector.on_started_leading.append(lambda: self.log.append((identity, "started")))
        elector.on_stopped_leading.append(lambda: self.log.append((identity, "stopped")))
        return elector

    def advance(self, seconds: float, step: float = 0.5) -> None:
        for _ in range(int(seconds / step)):
            self.clock.advance(step)

    def holder(self) -> str:
        return self.leases.stored["tenantgw-system", "tenantgw-status"].holder

    def test_one_of_two_candidates_leads(self) -> None:
        a, b = self.elector("a"), self.elector("b")
        a.startService()
        b.startService()
        self.advance(30)
        self.assertEqual((a.is_leader, b.is_leader), (True, False))
        self.assertEqual(self.holder(), "a")
        self.assertEqual(self.log, [("a", "started")])
        record = self.leases.stored["tenantgw-system", "tenantgw-status"]
        self.assertEqual(record.duration, 15)
        # Renewed every 5 s: 1 create + 6 renewals in 30 s.
        self.assertEqual(self.leases.writes, 7)

    def test_the_follower_takes_over_when_the_leader_stops_renewing(self) -> None:
        a, b = self.elector("a"), self.elector("b")
        a.startService()
        b.startService()
        self.advance(6)
        # a's process freezes: its timers never fire again, nothing is released.
        a._next.cancel()
        a._deadline.cancel()
        self.advance(14)
        self.assertFalse(b.is_leader, "the Lease has not expired by b's clock yet")
        self.advance(3)
        self.assertTrue(b.is_leader)
        self.assertEqual(self.holder(), "b")
        record = self.leases.stored["tenantgw-system", "tenantgw-status"]
        self.assertEqual(record.transitions, 1)

    def test_the_takeover_comes_at_the_expiry_not_at_the_next_retry(self) -> None:
        a, b = self.elector("a"), self.elector("b")
        a.startService()
        b.startService()
        self.advance(6)  # b saw a's renewal of t=5 at its try of t=6: expiry t=21
        a._next.cancel()
        a._deadline.cancel()
        self.advance(14.9, step=0.1)  # t=20.9, just before the expiry
        self.assertFalse(b.is_leader)
        self.advance(0.3, step=0.1)  # t=21.2: before b's next 2 s retry

        self.assertTrue(b.is_leader, "b waited for its next 2 s retry (t=22)")

    def test_a_conflict_on_renewal_ends_leading(self) -> None:
        a = self.elector("a")
        a.startService()
        self.assertTrue(a.is_leader)
        # Someone else rewrites the Lease between a's read and its replace.
        real_replace = self.leases.replace

        def racing_replace(namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
            current = self.leases.stored[namespace, name]
            self.leases._store(namespace, name, evolve(current, holder="intruder"))
            return real_replace(namespace, name, record)

        self.leases.replace = racing_replace  # type: ignore[method-assign]
        self.advance(5)
        self.assertFalse(a.is_leader)
        self.assertEqual(self.log, [("a", "started"), ("a", "stopped")])
        self.assertEqual(self.holder(), "intruder")

    def test_a_leader_that_cannot_renew_for_10s_stops_leading(self) -> None:
        a = self.elector("a")
        a.startService()
        self.leases.down = True
        self.advance(9.5)
        self.assertTrue(a.is_leader, "still within the renew deadline")
        self.advance(1)
        self.assertFalse(a.is_leader)
        self.flushLoggedErrors(OSError)
        # The API comes back: the Lease still names a, so a leads again.
        self.leases.down = False
        self.advance(2.5)
        self.assertTrue(a.is_leader)

    def test_stop_releases_and_the_follower_takes_over_in_one_retry(self) -> None:
        a, b = self.elector("a"), self.elector("b")
        a.startService()
        b.startService()
        self.advance(6)
        self.successResultOf(a.stopService())
        self.assertFalse(a.is_leader)
        record = self.leases.stored["tenantgw-system", "tenantgw-status"]
        self.assertEqual((record.holder, record.duration), ("", 1))
        self.advance(2)
        self.assertTrue(b.is_leader)

    def test_a_follower_stops_without_writing(self) -> None:
        a, b = self.elector("a"), self.elector("b")
        a.startService()
        b.startService()
        writes = self.leases.writes
        self.successResultOf(b.stopService())
        self.assertEqual(self.leases.writes, writes)
        self.assertEqual(self.holder(), "a")


def forget_timers(elector: LeaderElector) -> None:
    for call in (elector._next, elector._deadline):
        if call is not None and call.active():
            call.cancel()


class FakeAPIServerTests(TestCase):
    """
    Election through the fake API server's Lease over real HTTP, with the
    electors' time on a clock: the 15 s of a Lease pass at once, and the
    takeover time is measured exactly instead of against wall time.
    """

    timeout = 40

    def setUp(self) -> None:
        self.clock = ThreadedClock()
        self.electors: list[LeaderElector] = []

    def api(self, server: FakeAPIServer) -> KubernetesLeaseAPI:
        directory = tempfile.mkdtemp()
        path = server.write_kubeconfig(os.path.join(directory, "config"))
        self.addCleanup(os.rmdir, directory)
        self.addCleanup(os.remove, path)
        return KubernetesLeaseAPI(api_client_from(path, None))

    def elector(self, server: FakeAPIServer) -> LeaderElector:
        pool = ThreadPool(1, 1)
        pool.start()
        self.addCleanup(pool.stop)
        elector = LeaderElector(
            self.api(server), self.clock, "tenantgw-system", "tenantgw-status", threadpool=pool
        )
        elector.startService()
        self.addCleanup(lambda: elector.stopService() if elector.running else None)
        self.electors.append(elector)
        return elector

    def run_until(self, check: Any, what: str, timeout: float) -> Any:
        """Clock time until C{check()}, advancing only while no Lease call is in flight."""
        return eventually_advancing(
            self.clock,
            check,
            what,
            timeout,
            settled=lambda: all(e._attempt is None for e in self.electors),
        )

    @inlineCallbacks
    def test_exactly_one_leads_and_the_other_takes_over(self) -> Any:
        server = FakeAPIServer()
        server.start()
        self.addCleanup(server.stop)
        electors = [self.elector(server), self.elector(server)]
        yield self.run_until(lambda: any(e.is_leader for e in electors), "a leader", 1)
        leader = next(e for e in electors if e.is_leader)
        follower = next(e for e in electors if e is not leader)
        self.assertFalse(follower.is_leader)
        (lease,) = server.objects("Lease")
        self.assertEqual(lease["spec"]["holderIdentity"], leader.identity)
        self.assertEqual(lease["spec"]["leaseDurationSeconds"], 15)

        # The follower has seen the leader's record (as it has in a cluster
        # where the leader ran a while); then the leader freezes without
        # releasing: it tries nothing more.
        yield self.run_until(
            lambda: follower._observed is not None and follower._observed.holder == leader.identity,
            "the follower saw the Lease",
            RETRY_PERIOD + 1,
        )
        leader.running = False
        forget_timers(leader)
        observed_at = follower._observed_at
        stopped = self.clock.seconds()
        took = yield self.run_until(lambda: follower.is_leader, "the follower leads", 15 + 2 + 1)
        self.assertLess(took, 17.5)
        # ... and not before the Lease it saw expired by its own clock.
        self.assertGreaterEqual(stopped + took, observed_at + LEASE_DURATION)
        (lease,) = server.objects("Lease")
        self.assertEqual(lease["spec"]["holderIdentity"], follower.identity)

    @inlineCallbacks
    def test_a_stopped_leader_releases_for_a_fast_failover(self) -> Any:
        server = FakeAPIServer()
        server.start()
        self.addCleanup(server.stop)
        first = self.elector(server)
        yield self.run_until(lambda: first.is_leader, "the first leads", 1)
        second = self.elector(server)
        yield first.stopService()
        (lease,) = server.objects("Lease")
        self.assertEqual(lease["spec"]["holderIdentity"], "")
        took = yield self.run_until(lambda: second.is_leader, "the second leads", 4)
        self.assertLess(took, 3)
