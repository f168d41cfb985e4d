"""
Timeouts for many in-flight exchanges on one timer.

Arming a C{callLater} for every request and cancelling it when the response
arrives costs a heap push and a cancellation per request, on a path that
otherwise does little more.  Upstream timeouts need no millisecond
precision, so deadlines are gathered into slots of C{resolution} seconds
and one delayed call serves the earliest slot; a finished exchange simply
leaves its slot (a set removal).  A deadline fires at most one resolution
late, never early.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

Expiry = Callable[[], None]


class Deadlines:
    def __init__(self, clock: IReactorTime, resolution: float = 0.05) -> None:
        self._clock = clock
        self._resolution = resolution
        self._slots: dict[int, set[Expiry]] = {}
        self._timer: IDelayedCall | None = None
        self._timer_slot = 0

    def now(self) -> float:
        return self._clock.seconds()

    def add(self, seconds: float, expire: Expiry) -> int:
        """Calls C{expire} once C{seconds} have passed; returns a slot for L{discard}."""
        slot = math.ceil((self._clock.seconds() + seconds) / self._resolution)
        entries = self._slots.get(slot)
        if entries is None:
            entries = self._slots[slot] = set()
            if self._timer is None or slot < self._timer_slot:
                self._schedule(slot)
        entries.add(expire)
        return slot

    def discard(self, slot: int, expire: Expiry) -> None:
        entries = self._slots.get(slot)
        if entries is None:
            return
        entries.discard(expire)
        if not entries:
            del self._slots[slot]
            if not self._slots and self._timer is not None:
                # Nothing left to time: leave no delayed call behind.
                self._timer.cancel()
                self._timer = None

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._slots.values())

    def _schedule(self, slot: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, slot * self._resolution - self._clock.seconds())
        self._timer_slot = slot
        self._timer = self._clock.callLater(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now_slot = math.floor(self._clock.seconds() / self._resolution + 1e-9)
        due = sorted(slot for slot in self._slots if slot <= now_slot)
        for slot in due:
            for expire in self._slots.pop(slot, ()):
                expire()
        if self._slots and self._timer is None:
            self._schedule(min(self._slots))
