"""
Leader election on a C{coordination.k8s.io/v1} Lease, so that with several
replicas exactly one writes statuses and Events (contract section 13).

The algorithm is client-go's: a candidate takes the Lease when it is absent,
released (empty holder) or expired; expiry is judged by the candidate's own
clock, from when it last saw the record change, never by comparing the
holder's C{renewTime} with local wall time (clocks of two nodes differ).
Every write carries the resourceVersion read, so of two candidates racing
for an expired Lease the API server lets one win and answers the other 409.

The blocking client calls run in a thread pool; all timing is the injected
reactor's C{callLater}, so the state machine runs under C{task.Clock}.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import secrets
import socket
from collections.abc import Callable
from typing import Any, Protocol

from attrs import evolve, frozen
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

_log = Logger()

LEASE_DURATION = 15.0  # seconds another candidate waits, after the last change it saw
RENEW_PERIOD = 5.0  # the leader renews this often
RENEW_DEADLINE = 10.0  # the leader gives up leading when it could not renew for this long
RETRY_PERIOD = 2.0  # a follower (or a leader whose renewal failed) tries this often
EXPIRY_MARGIN = 0.05  # a follower tries this long after another's Lease expires


class Conflict(Exception):
    """The Lease changed (or appeared) since it was read: another candidate wrote first."""


@frozen
class LeaseRecord:
    holder: str
    duration: int
    acquire_time: datetime.datetime | None = None
    renew_time: datetime.datetime | None = None
    transitions: int = 0
    resource_version: str | None = None


class LeaseAPI(Protocol):
    """The seam: what the elector needs of the API server (blocking calls)."""

    def read(self, namespace: str, name: str) -> LeaseRecord | None: ...

    def create(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord: ...

    def replace(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        """Raises L{Conflict} unless C{record.resource_version} is the stored one."""
        ...


def default_identity() -> str:
    """Pod name plus randomness: a restarted pod keeps its name but is a new candidate."""
    host = os.environ.get("HOSTNAME") or socket.gethostname()
    return f"{host}-{secrets.token_hex(4)}"


class LeaderElector(Service):
    """
    Campaigns for the Lease while running.  Observers read L{is_leader} or
    add callables to L{on_started_leading} / L{on_stopped_leading}.
    """

    def __init__(
        self,
        api: LeaseAPI,
        reactor: Any,
        namespace: str,
        name: str,
        identity: str | None = None,
        threadpool: Any = None,
    ) -> None:
        self.api = api
        self.reactor = reactor
        self.lease_namespace = namespace
        self.lease_name = name
        self.identity = identity or default_identity()
        self._own_pool = threadpool is None
        self.threadpool = (
            threadpool if threadpool is not None else ThreadPool(1, 1, "tenantgw-lease")
        )
        self.is_leader = False
        self.on_started_leading: list[Callable[[], object]] = []
        self.on_stopped_leading: list[Callable[[], object]] = []
        # The last record seen and when (reactor time) it was seen to change.
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._next: Any = None
        self._deadline: Any = None
        self._attempt: Deferred[Any] | None = None
        self._renewed = False  # whether the last attempt wrote the Lease

    # -- service --------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        if self._own_pool:
            self.threadpool.start()
        self._try()

    def stopService(self) -> Any:
        super().stopService()
        for call in (self._next, self._deadline):
            if call is not None and call.active():
                call.cancel()
        self._next = self._deadline = None
        self._set_leader(False)
        waiting = self._attempt if self._attempt is not None else succeed(None)
        # The release waits for an attempt in flight, which could otherwise
        # land after it and hold the Lease for another 15 s.  It reads first,
        # so a replica that did not hold the Lease writes nothing.
        waiting.addBoth(lambda _: None)
        waiting.addCallback(
            lambda _: deferToThreadPool(self.reactor, self.threadpool, self._release)
        )
        waiting.addErrback(_release_failed)
        if self._own_pool:
            waiting.addBoth(lambda _: self.threadpool.stop())
        return waiting

    # -- the loop -------------------------------------------------------------

    def _schedule(self, delay: float) -> None:
        if self.running:
            self._next = self.reactor.callLater(delay, self._try)

    def _try(self) -> None:
        self._next = None
        d = deferToThreadPool(self.reactor, self.threadpool, self._read)
        d.addCallback(self._decide)
        d.addCallbacks(self._held, self._not_held)
        d.addErrback(_log_unexpected)
        self._attempt = d

        def done(result: Any) -> Any:
            self._attempt = None
            self._schedule(
                RENEW_PERIOD if self.is_leader and self._renewed else self._retry_delay()
            )
            return result

        d.addBoth(done)

    def _retry_delay(self) -> float:
        """
        RETRY_PERIOD, or less when another's Lease expires (by our clock)
        sooner: the takeover then comes at the expiry, not up to one period
        after it.
        """
        observed = self._observed
        if observed is None or not observed.holder or observed.holder == self.identity:
            return RETRY_PERIOD
        left = self._observed_at + observed.duration - self.reactor.seconds()
        return min(RETRY_PERIOD, max(left, 0.0) + EXPIRY_MARGIN)

    def _read(self) -> LeaseRecord | None:
        return self.api.read(self.lease_namespace, self.lease_name)

    def _decide(self, record: LeaseRecord | None) -> Any:
        """Back in the reactor: take, renew or leave the Lease."""
        now = self.reactor.seconds()
        stamp = _wall(now)
        if record is None:
            wanted = LeaseRecord(self.identity, int(LEASE_DURATION), stamp, stamp, 0)
            return deferToThreadPool(
                self.reactor,
                self.threadpool,
                self.api.create,
                self.lease_namespace,
                self.lease_name,
                wanted,
            )
        if _changed(self._observed, record):
            self._observed = record
            self._observed_at = now
        if record.holder == self.identity:
            wanted = evolve(record, renew_time=stamp, duration=int(LEASE_DURATION))
        elif record.holder and self._observed_at + record.duration > now:
            return None  # held by another, and not expired by our clock
        else:
            wanted = evolve(
                record,
                holder=self.identity,
                duration=int(LEASE_DURATION),
                acquire_time=stamp,
                renew_time=stamp,
                transitions=record.transitions + 1,
            )
        return deferToThreadPool(
            self.reactor,
            self.threadpool,
            self.api.replace,
            self.lease_namespace,
            self.lease_name,
            wanted,
        )

    def _held(self, record: LeaseRecord | None) -> None:
        self._renewed = record is not None and record.holder == self.identity
        if record is None or record.holder != self.identity:
            if self.is_leader:
                _log.warn("lost the Lease {name}: another replica holds it", name=self.lease_name)
            self._set_leader(False)
            return
        self._observed = record
        self._observed_at = self.reactor.seconds()
        if not self.running:
            return
        if self._deadline is not None and self._deadline.active():
            self._deadline.reset(RENEW_DEADLINE)
        else:
            self._deadline = self.reactor.callLater(RENEW_DEADLINE, self._renewal_too_late)
        self._set_leader(True)

    def _not_held(self, failure: Failure) -> None:
        self._renewed = False
        if failure.check(Conflict):
            if self.is_leader:
                _log.warn("lost the Lease {name}: it changed under us (409)", name=self.lease_name)
            self._set_leader(False)
            return
        # The API is unreachable or failing: keep leading until the deadline.
        _log.failure("Lease {name}: the API server did not answer", failure, name=self.lease_name)

    def _renewal_too_late(self) -> None:
        self._deadline = None
        if self.is_leader:
            _log.warn(
                "lost the Lease {name}: no renewal for {s:g}s",
                name=self.lease_name,
                s=RENEW_DEADLINE,
            )
        self._set_leader(False)

    def _set_leader(self, leading: bool) -> None:
        if leading == self.is_leader:
            return
        self.is_leader = leading
        if not leading and self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
            self._deadline = None
        _log.info(
            "{identity} {what} leading (Lease {namespace}/{name})",
            identity=self.identity,
            what="started" if leading else "stopped",
            namespace=self.lease_namespace,
            name=self.lease_name,
        )
        for observer in list(self.on_started_leading if leading else self.on_stopped_leading):
            try:
                observer()
            except Exception:
                _log.failure("a leader-election observer failed")

    def _release(self) -> None:
        """Empties the holder, so that a follower takes over at its next try (2 s)."""
        record = self.api.read(self.lease_namespace, self.lease_name)
        if record is None or record.holder != self.identity:
            return
        stamp = _wall(self.reactor.seconds())
        # A conflict means someone else wrote it: nothing of ours to release.
        with contextlib.suppress(Conflict):
            self.api.replace(
                self.lease_namespace,
                self.lease_name,
                evolve(record, holder="", duration=1, renew_time=stamp),
            )


def _changed(seen: LeaseRecord | None, record: LeaseRecord) -> bool:
    if seen is None:
        return True
    return (seen.holder, seen.renew_time, seen.resource_version) != (
        record.holder,
        record.renew_time,
        record.resource_version,
    )


def _wall(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)


def _log_unexpected(failure: Failure) -> None:
    _log.failure("leader election failed unexpectedly", failure)


def _release_failed(failure: Failure) -> None:
    _log.failure("releasing the Lease failed; a follower takes over when it expires", failure)


class KubernetesLeaseAPI:
    """L{LeaseAPI} through the official client's CoordinationV1Api."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes.client import CoordinationV1Api

        self.api = CoordinationV1Api(api_client)

    def read(self, namespace: str, name: str) -> LeaseRecord | None:
        from kubernetes.client.exceptions import ApiException

        try:
            lease = self.api.read_namespaced_lease(name, namespace, _request_timeout=(5, 5))
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return _record_of(lease)

    def create(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        return self._write(namespace, name, record, create=True)

    def replace(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        return self._write(namespace, name, record, create=False)

    def _write(self, namespace: str, name: str, record: LeaseRecord, create: bool) -> LeaseRecord:
        from kubernetes.client import V1Lease, V1LeaseSpec, V1ObjectMeta
        from kubernetes.client.exceptions import ApiException

        body = V1Lease(
            metadata=V1ObjectMeta(
                name=name, namespace=namespace, resource_version=record.resource_version
            ),
            spec=V1LeaseSpec(
                holder_identity=record.holder,
                lease_duration_seconds=record.duration,
                acquire_time=record.acquire_time,
                renew_time=record.renew_time,
                lease_transitions=record.transitions,
            ),
        )
        try:
            if create:
                lease = self.api.create_namespaced_lease(namespace, body, _request_timeout=(5, 5))
            else:
                lease = self.api.replace_namespaced_lease(
                    name, namespace, body, _request_timeout=(5, 5)
                )
        except ApiException as e:
            if e.status == 409:
                raise Conflict(f"Lease {namespace}/{name} changed since it was read") from None
            raise
        return _record_of(lease)


def _record_of(lease: Any) -> LeaseRecord:
    spec = lease.spec
    return LeaseRecord(
        holder=spec.holder_identity or "",
        duration=spec.lease_duration_seconds or int(LEASE_DURATION),
        acquire_time=spec.acquire_time,
        renew_time=spec.renew_time,
        transitions=spec.lease_transitions or 0,
        resource_version=lease.metadata.resource_version,
    )


class LeaderGauge:
    """A Prometheus collector: 1 while C{leading()}, else 0 (read at scrape time)."""

    def __init__(self, name: str, documentation: str, leading: Callable[[], bool]) -> None:
        self.name = name
        self.documentation = documentation
        self.leading = leading

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        yield GaugeMetricFamily(self.name, self.documentation, value=1.0 if self.leading() else 0.0)
