"""
Choosing an endpoint: weighted backends, then a load-balancing policy.

The weighted choice between backends (canary splits) comes first and is
nginx's smooth weighted round robin: deterministic, and a 90/10 split is
interleaved rather than bursty.  Within the chosen backend the route's
policy picks the endpoint:

- RoundRobin: each in turn.
- LeastRequest: the power of two choices: two endpoints at random, the one
  with fewer requests in flight.  Nearly as good as scanning all, at a
  constant cost, and without the herd that "always the least loaded" causes.
- Cookie: sticky sessions.  The gateway sets an opaque cookie naming the
  endpoint (a digest, so no internal address leaks); while that endpoint is
  ready the client returns to it, and when it goes away the client falls
  back to round robin and gets a new cookie.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from tenantgw.plans.routes import BackendPlan, Endpoint
from tenantgw.values import LB_COOKIE, LB_LEAST_REQUEST, LB_ROUND_ROBIN

AFFINITY_COOKIE = b"tgw-affinity"

EndpointKey = tuple[str, int, "str | None"]


def endpoint_key(backend: BackendPlan, endpoint: Endpoint) -> EndpointKey:
    return (endpoint.address, endpoint.port, backend.tls_name)


def affinity_token(key: EndpointKey) -> bytes:
    return hashlib.sha256(f"{key[0]}|{key[1]}|{key[2]}".encode()).hexdigest()[:20].encode()


class EndpointLoad:
    """Requests in flight per endpoint, across snapshots (a reload keeps the counts)."""

    def __init__(self) -> None:
        self.counts: dict[EndpointKey, int] = {}

    def enter(self, key: EndpointKey) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def leave(self, key: EndpointKey) -> None:
        count = self.counts.get(key, 0) - 1
        if count > 0:
            self.counts[key] = count
        else:
            self.counts.pop(key, None)


class EndpointPolicy(Protocol):
    """
    How a route chooses among one backend's eligible endpoints.  C{sticky}:
    a client's affinity cookie is honoured (and set) before the choice;
    C{reads_load}: the choice reads requests in flight, so exchanges must
    keep L{EndpointLoad} counts for it (others spare that cost).
    """

    sticky: bool
    reads_load: bool

    def choose(
        self, picker: BackendPicker, index: int, backend: BackendPlan, endpoints: Sequence[Endpoint]
    ) -> Endpoint: ...


class RoundRobin:
    """Each endpoint in turn, one cursor per backend."""

    sticky = False
    reads_load = False

    def choose(
        self, picker: BackendPicker, index: int, backend: BackendPlan, endpoints: Sequence[Endpoint]
    ) -> Endpoint:
        cursor = picker.cursors[index]
        picker.cursors[index] = cursor + 1
        return endpoints[cursor % len(endpoints)]


class LeastRequest:
    """The power of two choices: the less loaded of two endpoints drawn at random."""

    sticky = False
    reads_load = True

    def choose(
        self, picker: BackendPicker, index: int, backend: BackendPlan, endpoints: Sequence[Endpoint]
    ) -> Endpoint:
        if len(endpoints) < 2:
            return endpoints[0]
        first, second = picker.rng.sample(endpoints, 2)
        counts = picker.load.counts
        if counts.get(endpoint_key(backend, first), 0) <= counts.get(
            endpoint_key(backend, second), 0
        ):
            return first
        return second


class Cookie(RoundRobin):
    """Sticky sessions: the endpoint the cookie names while it is ready, else round robin."""

    sticky = True


# The policies a route may name (RoutePlan.balancing), by name.
POLICIES: dict[str, EndpointPolicy] = {
    LB_ROUND_ROBIN: RoundRobin(),
    LB_LEAST_REQUEST: LeastRequest(),
    LB_COOKIE: Cookie(),
}


def policy_named(name: str) -> EndpointPolicy:
    """The registered policy; a clear error naming the field for any other name."""
    policy = POLICIES.get(name)
    if policy is None:
        raise ValueError(
            f"balancing: unknown load-balancing policy {name!r} (known: {', '.join(POLICIES)})"
        )
    return policy


class _SmoothWeightedChoice:
    def __init__(self, weights: list[int]) -> None:
        self.weights = weights
        self.current = [0] * len(weights)
        self.total = sum(weights)

    def pick(self) -> int:
        best = -1
        current = self.current
        for i, weight in enumerate(self.weights):
            current[i] += weight
            if best < 0 or current[i] > current[best]:
                best = i
        current[best] -= self.total
        return best


class BackendPicker:
    """Weighted backend choice, then the route's policy among its ready endpoints."""

    def __init__(
        self,
        backends: tuple[BackendPlan, ...],
        policy: str,
        load: EndpointLoad,
        rng: random.Random | None = None,
        available: Callable[[EndpointKey], bool] | None = None,
        unavailable: set[EndpointKey] | None = None,
    ) -> None:
        usable = [b for b in backends if b.weight > 0 and b.endpoints]
        self.backends = usable
        self.choice = _SmoothWeightedChoice([b.weight for b in usable]) if len(usable) > 1 else None
        self.cursors = [0] * len(usable)
        self.policy = policy
        self.strategy = strategy = policy_named(policy)
        self.reads_load = strategy.reads_load
        self.round_robin = type(strategy) is RoundRobin
        self.load = load
        self.rng = rng or random.Random()
        # Health: C{unavailable} is empty while every endpoint is healthy,
        # which keeps the common case free of any filtering.
        self.available = available
        self.unavailable = unavailable if unavailable is not None else set()
        self.sticky = strategy.sticky
        self.by_token: dict[bytes, tuple[BackendPlan, Endpoint]] = {}
        if self.sticky:
            for backend in usable:
                for endpoint in backend.endpoints:
                    self.by_token[affinity_token(endpoint_key(backend, endpoint))] = (
                        backend,
                        endpoint,
                    )

    def pick(
        self, affinity: bytes | None = None, exclude: Iterable[EndpointKey] = ()
    ) -> tuple[BackendPlan, Endpoint] | None:
        if not self.backends:
            return None
        unhealthy = self.unavailable
        if affinity is not None:
            pinned = self.by_token.get(affinity)
            if (
                pinned is not None
                and endpoint_key(*pinned) not in exclude
                and (not unhealthy or self._healthy(endpoint_key(*pinned)))
            ):
                return pinned
        excluded: set[EndpointKey] | None = None
        if exclude or unhealthy:
            excluded = set(exclude)
            if unhealthy:
                excluded.update(
                    key
                    for backend in self.backends
                    for key in (endpoint_key(backend, e) for e in backend.endpoints)
                    if not self._healthy(key)
                )
        index = self.choice.pick() if self.choice is not None else 0
        backend = self.backends[index]
        endpoints = self._eligible(backend, excluded)
        if not endpoints:
            # The weighted choice fell on a backend with nothing left: any
            # other backend with an endpoint serves, so 503 only when none has.
            fallback = next(
                (
                    (i, candidate, eligible)
                    for i, candidate in enumerate(self.backends)
                    if (eligible := self._eligible(candidate, excluded))
                ),
                None,
            )
            if fallback is None:
                return None
            index, backend, endpoints = fallback
        if self.round_robin:  # the default policy, inlined: no call for most routes
            cursor = self.cursors[index]
            self.cursors[index] = cursor + 1
            return backend, endpoints[cursor % len(endpoints)]
        return backend, self.strategy.choose(self, index, backend, endpoints)

    @staticmethod
    def _eligible(
        backend: BackendPlan, excluded: set[EndpointKey] | None
    ) -> tuple[Endpoint, ...] | list[Endpoint]:
        if not excluded:
            return backend.endpoints
        return [e for e in backend.endpoints if endpoint_key(backend, e) not in excluded]

    def _healthy(self, key: EndpointKey) -> bool:
        return self.available is None or self.available(key)


def cookie_value(cookie_headers: Iterable[bytes] | None, name: bytes) -> bytes | None:
    if not cookie_headers:
        return None
    for header in cookie_headers:
        for part in header.split(b";"):
            key, equals, value = part.strip().partition(b"=")
            if equals and key == name:
                return value
    return None
