"""The shared deadline wheel: fires late by at most one slot, never early."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tenantgw.dataplane.deadlines import Deadlines


class DeadlinesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.deadlines = Deadlines(self.clock, resolution=0.1)
        self.fired: list[str] = []

    def expiry(self, name: str):  # type: ignore[no-untyped-def]
        return lambda: self.fired.append(name)

    def test_fires_not_early_and_at_most_one_slot_late(self) -> None:
        self.deadlines.add(0.25, self.expiry("a"))
        self.clock.advance(0.24)
        self.assertEqual(self.fired, [])
        self.clock.advance(0.07)  # 0.31: inside the slot after the deadline
        self.assertEqual(self.fired, ["a"])

    def test_in_order_across_slots_and_earlier_deadline_reschedules(self) -> None:
        self.deadlines.add(1.0, self.expiry("late"))
        self.deadlines.add(0.2, self.expiry("early"))
        self.clock.advance(0.21)
        self.assertEqual(self.fired, ["early"])
        self.clock.advance(0.8)
        self.assertEqual(self.fired, ["early", "late"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_discarded_entries_never_fire_and_leave_no_timer(self) -> None:
        expire = self.expiry("x")
        slot = self.deadlines.add(0.5, expire)
        self.deadlines.discard(slot, expire)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(1)
        self.assertEqual(self.fired, [])
        self.assertEqual(len(self.deadlines), 0)

    def test_discarding_one_of_a_slot_keeps_the_other(self) -> None:
        first, second = self.expiry("1"), self.expiry("2")
        slot = self.deadlines.add(0.5, first)
        self.assertEqual(self.deadlines.add(0.5, second), slot)
        self.deadlines.discard(slot, first)
        self.clock.advance(0.51)
        self.assertEqual(self.fired, ["2"])
