"""
In-process quota decisions: GCRA rate limits and in-flight counters.

GCRA (the generic cell rate algorithm) is a token bucket stored as a single
number per key, the "theoretical arrival time" (TAT).  A request is admitted
when C{TAT - burst_window <= now}; admitting it moves TAT forward by one
emission interval.  Over any window of length T it admits at most
C{burst + rate * T} requests, which is the over-admission bound stated in
the docs.  One float per key also makes the Redis variant (issue: shared
quotas) a single atomic script over the same state.

A request passes every applicable limit (tenant, client, route) or consumes
nothing: the decision computes all new TATs first and commits them only when
all admit.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

from attrs import frozen
from twisted.internet.interfaces import IReactorTime

from tenantgw.values import RateLimit

# Keys idle for longer than their bucket takes to refill are indistinguishable
# from absent keys, so they are dropped; this bounds memory by the number of
# clients active within one burst window, not by every address ever seen.
SWEEP_EVERY_DECISIONS = 4096


@frozen
class Denial:
    """Why a request was refused, with what a client needs to retry politely."""

    policy_name: str
    limit: RateLimit
    retry_after: float


@frozen
class Bucket:
    """
    One limit applied to one key; C{name} shows in the RateLimit headers.
    Keys are C{(kind, namespace, ...)}: the namespace second is what shared
    quotas group a tenant's keys by.
    """

    key: tuple[str, ...]
    limit: RateLimit
    name: str


class RateLimiter:
    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._tat: dict[Hashable, float] = {}
        self._decisions = 0

    def try_acquire(self, buckets: Sequence[Bucket]) -> Denial | None:
        now = self._clock.seconds()
        updates: list[tuple[Hashable, float]] = []
        worst: Denial | None = None
        tat_of = self._tat
        for bucket in buckets:
            limit = bucket.limit
            interval = 1.0 / limit.requests_per_second
            tat = tat_of.get(bucket.key, now)
            if tat < now:
                tat = now
            new_tat = tat + interval
            allow_at = new_tat - interval * limit.burst
            if allow_at > now:
                wait = allow_at - now
                if worst is None or wait > worst.retry_after:
                    worst = Denial(bucket.name, limit, wait)
            else:
                updates.append((bucket.key, new_tat))
        if worst is not None:
            return worst
        for key, new_tat in updates:
            tat_of[key] = new_tat
        self._decisions += 1
        if self._decisions >= SWEEP_EVERY_DECISIONS:
            self._decisions = 0
            self.sweep(now)
        return None

    def remaining(self, bucket: Bucket) -> tuple[int, float]:
        """Requests left in the bucket now, and seconds until it is full again."""
        now = self._clock.seconds()
        limit = bucket.limit
        interval = 1.0 / limit.requests_per_second
        tat = max(self._tat.get(bucket.key, now), now)
        used = (tat - now) / interval
        return max(0, int(limit.burst - math.ceil(used))), tat - now

    def sweep(self, now: float | None = None) -> None:
        if now is None:
            now = self._clock.seconds()
        stale = [key for key, tat in self._tat.items() if tat <= now]
        for key in stale:
            del self._tat[key]

    def __len__(self) -> int:
        return len(self._tat)


class InFlight:
    """Counts requests in flight per key, for C{maxConcurrentRequests}."""

    def __init__(self) -> None:
        self._counts: dict[Hashable, int] = {}

    def try_enter(self, key: Hashable, limit: int) -> bool:
        count = self._counts.get(key, 0)
        if count >= limit:
            return False
        self._counts[key] = count + 1
        return True

    def leave(self, key: Hashable) -> None:
        count = self._counts.get(key, 0) - 1
        if count <= 0:
            self._counts.pop(key, None)
        else:
            self._counts[key] = count

    def current(self, key: Hashable) -> int:
        return self._counts.get(key, 0)
