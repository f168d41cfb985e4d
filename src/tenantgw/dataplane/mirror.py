"""
Request mirroring (Gateway API RequestMirror): a copy of a request is sent to
another backend and its answer thrown away.

The copy is fire-and-forget on its own connection pool, so a slow, failing
or unreachable mirror never delays or changes what the client gets, and it
never holds a connection the real exchange could use.  Only requests without
a body are mirrored: streaming one body to two peers would make the client's
upload wait for the slower of them.  Mirrors are bounded in flight per
gateway process; beyond the bound a copy is dropped, not queued.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from tenantgw.plans.routes import BackendPlan

MAX_MIRRORS_IN_FLIGHT = 256
# Marks a copy: a request carrying it is never mirrored again (loops).
MIRROR_HEADER = b"X-Tenantgw-Mirror"
MIRROR_TIMEOUT_SECONDS = 10.0

_log = Logger()


class MirrorTarget:
    """One mirror of a route: its backend's endpoints in turn, and a sampling share."""

    def __init__(self, backend: BackendPlan, percent: float) -> None:
        self.endpoints = backend.endpoints
        self.percent = percent
        self.next = 0

    def endpoint(self) -> tuple[str, int] | None:
        if not self.endpoints:
            return None
        endpoint = self.endpoints[self.next % len(self.endpoints)]
        self.next += 1
        return endpoint.address, endpoint.port


class Mirrors:
    def __init__(self, reactor: object, chance: Callable[[], float]) -> None:
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = 4
        self.agent = Agent(reactor, pool=self.pool, connectTimeout=MIRROR_TIMEOUT_SECONDS)
        self.chance = chance
        self.in_flight = 0
        self.sent = 0
        self.dropped = 0

    def send(
        self,
        targets: Iterable[MirrorTarget],
        method: bytes,
        target: bytes,
        headers: Iterable[tuple[bytes, Sequence[bytes]]],
    ) -> None:
        copied = {name: list(values) for name, values in headers}
        for mirror in targets:
            if mirror.percent < 100.0 and self.chance() * 100.0 >= mirror.percent:
                continue
            endpoint = mirror.endpoint()
            if endpoint is None or self.in_flight >= MAX_MIRRORS_IN_FLIGHT:
                self.dropped += 1
                continue
            address, port = endpoint
            authority = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
            url = b"http://" + authority.encode("ascii") + target
            self.in_flight += 1
            self.sent += 1
            sent = self.agent.request(method, url, Headers(copied))
            sent.addCallback(readBody).addErrback(self._failed, url).addBoth(self._done)

    def _failed(self, failure: Failure, url: bytes) -> None:
        _log.debug("mirror to {url} failed: {failure}", url=url, failure=failure)

    def _done(self, _: object) -> None:
        self.in_flight -= 1

    def stop(self) -> Deferred[None]:
        return self.pool.closeCachedConnections()
