"""
Endpoint health: what the gateway has learned about each endpoint, both from
real traffic (passive) and from its own probes (active).

Passive ejection: after C{unhealthy_threshold} consecutive failures (connect
errors, resets, timeouts, 5xx) an endpoint is left out of load balancing
for a while, twice as long each time it is ejected again (up to a cap), and
then re-admitted on probation: one more failure ejects it again, a success
clears its record.  Active checks: an endpoint whose route declares a
C{healthCheck} is probed every C{interval_seconds}; it is out after
C{unhealthy_threshold} failed probes and back after C{healthy_threshold}
good ones.

An endpoint is available when neither mechanism has it out.  State is kept
per endpoint, not per snapshot, so a reload neither forgets a dead pod nor
resets a good one's record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from attrs import define, frozen
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from tenantgw.dataplane.balancing import EndpointKey
from tenantgw.dataplane.upstream import ResponseHeaders, UpstreamPool

_log = Logger()

PASSIVE_THRESHOLD = 5
BASE_EJECTION = 10.0
MAX_EJECTION = 300.0


@define
class _Record:
    failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0
    probe_failures: int = 0
    probe_successes: int = 0
    probed_out: bool = False


class EndpointHealth:
    def __init__(self, clock: IReactorTime, passive_threshold: int = PASSIVE_THRESHOLD) -> None:
        self._clock = clock
        self.passive_threshold = passive_threshold
        self._records: dict[EndpointKey, _Record] = {}
        # Endpoints out right now (ejected or failing probes): empty in the
        # healthy common case, so balancing skips all filtering.
        self.unavailable: set[EndpointKey] = set()

    def available(self, key: EndpointKey) -> bool:
        if key not in self.unavailable:
            return True
        record = self._records[key]
        if record.probed_out:
            return False
        if record.ejected_until <= self._clock.seconds():
            # Probation: back in rotation; the next outcome decides.
            self.unavailable.discard(key)
            record.failures = self.passive_threshold - 1
            return True
        return False

    def succeeded(self, key: EndpointKey) -> None:
        record = self._records.get(key)
        if record is not None and not record.probed_out:
            record.failures = 0
            record.ejections = 0

    def failed(self, key: EndpointKey) -> None:
        record = self._records.setdefault(key, _Record())
        record.failures += 1
        if record.failures >= self.passive_threshold:
            ejection = min(MAX_EJECTION, BASE_EJECTION * 2**record.ejections)
            record.ejections += 1
            record.failures = 0
            record.ejected_until = self._clock.seconds() + ejection
            self.unavailable.add(key)
            _log.warn(
                "endpoint {address}:{port} ejected for {seconds:.0f}s after repeated failures",
                address=key[0],
                port=key[1],
                seconds=ejection,
            )

    def probed(self, key: EndpointKey, ok: bool, unhealthy: int, healthy: int) -> None:
        record = self._records.setdefault(key, _Record())
        if ok:
            record.probe_failures = 0
            record.probe_successes += 1
            if record.probed_out and record.probe_successes >= healthy:
                record.probed_out = False
                record.failures = 0
                record.ejected_until = 0.0
                self.unavailable.discard(key)
                _log.info("endpoint {address}:{port} healthy again", address=key[0], port=key[1])
        else:
            record.probe_successes = 0
            record.probe_failures += 1
            if not record.probed_out and record.probe_failures >= unhealthy:
                record.probed_out = True
                self.unavailable.add(key)
                _log.warn(
                    "endpoint {address}:{port} failed its health check", address=key[0], port=key[1]
                )

    def state(self, key: EndpointKey) -> str:
        return "healthy" if self.available(key) else "unhealthy"


@frozen
class ProbeTarget:
    key: EndpointKey
    host: str
    path: str
    interval: float
    unhealthy_threshold: int
    healthy_threshold: int
    # What the endpoint speaks ("h1", "h2c", "tls"): an h2c endpoint (a gRPC
    # server) answers no HTTP/1.1 request, so it is probed over HTTP/2.
    protocol: str = "h1"


class _Probe:
    """
    One GET, on a fresh HTTP/1.1 connection or on a new stream of the
    endpoint's HTTP/2 connection; reports its outcome exactly once.
    """

    request_sent = True

    def __init__(self, report: Callable[[bool], None], clock: IReactorTime, timeout: float) -> None:
        self.report: Callable[[bool], None] | None = report
        # An UpstreamConnection, or an HTTP/2 upstream stream: both take
        # start() and abandon() (a stream's abandon keeps its connection).
        self.connection: Any = None
        self.deadline = clock.callLater(timeout, self.finish, False)

    def connected(self, connection: Any, head: Any) -> None:
        if self.report is None:  # timed out while connecting
            connection.abandon()
            return
        self.connection = connection
        connection.start(self, head, head_request=False)

    def finish(self, ok: bool) -> None:
        report, self.report = self.report, None
        if report is None:
            return
        if self.deadline.active():
            self.deadline.cancel()
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.abandon()  # probes never share or keep connections
        report(ok)

    def upstream_head(self, code: int, reason: bytes, headers: ResponseHeaders) -> None:
        self.finish(200 <= code < 400)

    def upstream_data(self, data: bytes) -> None:
        pass

    def upstream_finished(self) -> None:
        self.finish(False)

    def upstream_failed(self, reason: str, response_started: bool) -> None:
        self.finish(False)


class ActiveChecks:
    """
    Probes the endpoints of every route that declares a C{healthCheck}.
    L{configure} is called with each new snapshot's targets; probes of
    targets that remain keep their schedule.
    """

    def __init__(
        self,
        health: EndpointHealth,
        pool: UpstreamPool,
        clock: IReactorTime,
        timeout: float = 2.0,
        # The HTTP/2 upstream pool, once there is one (its get() hands a
        # new stream on the endpoint's connection): h2c endpoints' probes.
        streams: Callable[[], Any] = lambda: None,
    ) -> None:
        self.health = health
        self.pool = pool
        self.streams = streams
        self.clock = clock
        self.timeout = timeout
        self._loops: dict[ProbeTarget, LoopingCall] = {}

    def configure(self, targets: Iterable[ProbeTarget]) -> None:
        wanted = set(targets)
        for target in list(self._loops):
            if target not in wanted:
                self._loops.pop(target).stop()
        for target in wanted - set(self._loops):
            loop = LoopingCall(self._probe, target)
            loop.clock = self.clock
            self._loops[target] = loop
            loop.start(target.interval, now=True)

    def stop(self) -> None:
        self.configure(())

    def _probe(self, target: ProbeTarget) -> None:
        def report(ok: bool) -> None:
            self.health.probed(target.key, ok, target.unhealthy_threshold, target.healthy_threshold)

        probe = _Probe(report, self.clock, self.timeout)
        streams = self.streams() if target.protocol == "h2c" else None
        if streams is not None:
            h2_head = [
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":authority", target.host.encode()),
                (b":path", target.path.encode()),
                (b"user-agent", b"tenantgw-health-check"),
            ]
            streams.get(
                target.key,
                lambda stream: probe.connected(stream, h2_head),
                lambda reason: probe.finish(False),
            )
            return
        head = (
            b"GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tenantgw-health-check\r\n"
            b"Connection: close\r\n\r\n" % (target.path.encode(), target.host.encode())
        )
        self.pool.connect_fresh(
            target.key,
            lambda connection: probe.connected(connection, head),
            lambda reason: probe.finish(False),
        )
