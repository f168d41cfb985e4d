"""
Writes objects' C{.status} through the status subresource, for the replica
holding the leader-election Lease only (contract section 13).

The callers (L{tenantgw.status.ingress_status},
L{tenantgw.status.gateway_status}) say, per object, how its status should
look given the object as it is: a pure function, so it can be applied again
to a fresh read.  The writer compares first and writes only what differs:
a rebuild that changes nothing (a resync, another tenant's edit, the watch
event of our own write) issues no request at all.

Every write is a PUT carrying the resourceVersion it was computed from; a
409 means someone else wrote in between (another controller's HTTPRoute
parent entry, a former leader's last write), so the object is read again
and the function re-applied to what is there now, a few times at most.
Blocking client calls run in the writer's own small thread pool; results
come back to the reactor, where all bookkeeping lives.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from attrs import frozen
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from tenantgw.sources.kinds import KINDS

_log = Logger()

MAX_ATTEMPTS = 5  # a PUT and up to four re-reads after conflicts
FORBIDDEN_RETRY = 60.0  # seconds a kind whose status writes got 403 is left alone

# The current object -> the whole status it should have (None: leave it).
Desire = Callable[[Mapping[str, Any]], Any]


@frozen(order=True)
class StatusKey:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"


class Conflict(Exception):
    """The object changed since it was read (409)."""


class Forbidden(Exception):
    """The RBAC does not let us write this kind's status (403)."""


class StatusAPI(Protocol):
    """The seam: blocking calls on the API server."""

    def read(self, key: StatusKey) -> dict[str, Any] | None: ...

    def replace_status(self, key: StatusKey, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        """PUT .../status with C{obj}'s resourceVersion; L{Conflict} on 409, None if gone."""
        ...


def key_of(obj: Mapping[str, Any]) -> StatusKey:
    meta = obj.get("metadata") or {}
    return StatusKey(str(obj.get("kind") or ""), meta.get("namespace") or "", meta.get("name", ""))


def _version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def wanted(obj: Mapping[str, Any], desire: Desire) -> Any:
    """The status to write, or None when C{obj} already has it (or the desire leaves it)."""
    status = desire(obj)
    if status is None or status == (obj.get("status") or {}):
        return None
    return status


class StatusWriter(Service):
    """
    Call L{update} with every rebuild's desires (and the watched objects they
    apply to); L{start_writing} / L{stop_writing} follow the leader election.
    """

    def __init__(
        self,
        api: StatusAPI,
        reactor: Any,
        threadpool: Any = None,
        active: bool = False,
    ) -> None:
        self.api = api
        self.reactor = reactor
        self.active = active
        self._own_pool = threadpool is None
        self.threadpool = (
            threadpool if threadpool is not None else ThreadPool(1, 2, "tenantgw-status")
        )
        self.stopping = False
        # The latest desires and objects, for a new leader to converge on.
        self.latest: dict[StatusKey, tuple[Mapping[str, Any], Desire]] = {}
        # key -> (resourceVersion written from, status written): the watch
        # may hand back the pre-write object once more; it is not rewritten.
        self.written: dict[StatusKey, tuple[str, Any]] = {}
        self._in_flight: dict[StatusKey, Deferred[Any]] = {}
        self._queued: dict[StatusKey, tuple[Mapping[str, Any], Desire]] = {}
        self.writes = 0  # PUTs answered 2xx (tenantgw_status_writes)
        self.conflicts = 0  # PUTs answered 409 (tenantgw_status_conflicts)
        self.failures = 0  # writes given up (errors, too many conflicts)
        # kind -> reactor time until which its writes are not tried (403):
        # an old ClusterRole must cost one log line a minute, not one per object.
        self.forbidden: dict[str, float] = {}

    def startService(self) -> None:
        super().startService()
        if self._own_pool:
            self.threadpool.start()

    def stopService(self) -> Any:
        self.stopping = True
        if self._own_pool:
            self.threadpool.stop()
        return super().stopService()

    # -- leadership -----------------------------------------------------------

    def start_writing(self) -> list[Deferred[Any]]:
        """Became leader: write whatever the objects do not say yet."""
        self.active = True
        self.written.clear()
        return self._write_changes(self.latest)

    def stop_writing(self) -> None:
        self.active = False
        self._queued.clear()

    # -- rebuilds -------------------------------------------------------------

    def update(self, desires: Mapping[StatusKey, tuple[Mapping[str, Any], Desire]]) -> list[Any]:
        """C{desires}: key -> (the object as watched, its desire); the Deferreds, for tests."""
        self.latest = dict(desires)
        for gone in set(self.written) - set(desires):
            del self.written[gone]
        if not self.active:
            return []
        return self._write_changes(self.latest)

    def _write_changes(
        self, desires: Mapping[StatusKey, tuple[Mapping[str, Any], Desire]]
    ) -> list[Deferred[Any]]:
        pending = []
        now = self.reactor.seconds()
        for key, (obj, desire) in sorted(desires.items()):
            if self.forbidden.get(key.kind, now) > now:
                continue
            status = wanted(obj, desire)
            if status is None:
                continue
            if self.written.get(key) == (_version(obj), status):
                continue  # written already; the watch has not shown it yet
            if key in self._in_flight:
                self._queued[key] = (obj, desire)
                continue
            pending.append(self._start(key, obj, desire))
        return pending

    def _start(self, key: StatusKey, obj: Mapping[str, Any], desire: Desire) -> Deferred[Any]:
        d = deferToThreadPool(self.reactor, self.threadpool, self._write, key, obj, desire)
        self._in_flight[key] = d
        d.addCallbacks(self._written, self._failed, (key,), errbackArgs=(key,))
        return d

    def _written(self, outcome: tuple[str, Any, int] | None, key: StatusKey) -> str:
        self._in_flight.pop(key, None)
        done = "unchanged"
        if outcome is not None:
            version, status, conflicts = outcome
            self.conflicts += conflicts
            if status is not None:
                self.writes += 1
                self.written[key] = (version, status)
                done = "written"
        self._next(key)
        return done

    def _failed(self, failure: Failure, key: StatusKey) -> str:
        self._in_flight.pop(key, None)
        self.failures += 1
        if failure.check(Forbidden):
            now = self.reactor.seconds()
            if self.forbidden.get(key.kind, now) <= now:
                _log.warn(
                    "the RBAC forbids writing {kind} statuses ({key}): grant update on"
                    " {kind}s/status; not tried again for {s:g}s",
                    kind=key.kind,
                    key=str(key),
                    s=FORBIDDEN_RETRY,
                )
            self.forbidden[key.kind] = now + FORBIDDEN_RETRY
            self._queued.pop(key, None)
            return "forbidden"
        _log.failure("writing the status of {key} failed", failure, key=str(key))
        self._next(key)
        return "failed"

    def _next(self, key: StatusKey) -> None:
        queued = self._queued.pop(key, None)
        if queued is not None and self.active and not self.stopping:
            obj, desire = queued
            if wanted(obj, desire) is not None:
                self._start(key, obj, desire)

    # -- in the thread pool ---------------------------------------------------

    def _write(
        self, key: StatusKey, obj: Mapping[str, Any], desire: Desire
    ) -> tuple[str, Any, int] | None:
        """(resourceVersion written from, status written or None, conflicts met)."""
        conflicts = 0
        current: Mapping[str, Any] | None = obj
        for _ in range(MAX_ATTEMPTS):
            if self.stopping or not self.active or current is None:
                return ("", None, conflicts)
            status = wanted(current, desire)
            if status is None:
                return ("", None, conflicts)
            body = copy.deepcopy(dict(current))
            body["status"] = status
            try:
                result = self.api.replace_status(key, body)
            except Conflict:
                conflicts += 1
                current = self.api.read(key)
                continue
            if result is None:
                return ("", None, conflicts)  # deleted meanwhile
            return (_version(current), status, conflicts)
        raise RuntimeError(f"{key}: still conflicting after {MAX_ATTEMPTS} attempts")


_PLURALS = {k.kind: k for k in KINDS if k.status_verbs}


class KubernetesStatusAPI:
    """L{StatusAPI} through the official client (any kind: its generic call)."""

    def __init__(self, api_client: Any) -> None:
        self.api_client = api_client
        self.timeout = (5, 10)

    def _path(self, key: StatusKey) -> str:
        kind = _PLURALS[key.kind]
        prefix = kind.collection_path.rsplit("/", 1)[0]
        if kind.namespaced:
            return f"{prefix}/namespaces/{key.namespace}/{kind.plural}/{key.name}"
        return f"{prefix}/{kind.plural}/{key.name}"

    def _call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        import json

        method, url, headers, data, _ = self.api_client.param_serialize(
            method,
            path,
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api_client.call_api(
            method, url, header_params=headers, body=data, _request_timeout=self.timeout
        )
        raw = response.read()
        return response.status, (json.loads(raw) if raw else None)

    def read(self, key: StatusKey) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        code, found = self._call("GET", self._path(key))
        if code == 404:
            return None
        if not 200 <= code < 300:
            raise ApiException(status=code, reason=f"reading {key}")
        return dict(found or {})

    def replace_status(self, key: StatusKey, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        code, found = self._call("PUT", self._path(key) + "/status", dict(obj))
        if code == 409:
            raise Conflict(str(key))
        if code == 403:
            raise Forbidden(str(key))
        if code == 404:
            return None
        if not 200 <= code < 300:
            raise ApiException(status=code, reason=f"writing the status of {key}")
        return dict(found or {})
