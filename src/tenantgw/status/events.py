"""
Kubernetes Events in each tenant's namespace, so tenants learn why their
config does (not) serve without the gateway's logs (contract section 9).

One Event per change of a tenant's status: the reason is the state
(C{Accepted}, C{Clamped}, C{Rejected}, C{HostConflict}, C{CertificateError})
and the message its messages.  A status that did not change posts nothing,
so a rebuild triggered by another tenant, or a resync, is silent.  Posting
runs in the reactor's thread pool (the client blocks); a failed post is
logged and forgotten, so the same status is posted again on its next change
only.

With several replicas only the leader posts (L{tenantgw.status.leader}):
a follower keeps the latest snapshot and, on becoming leader, posts every
status whose Event in the cluster says something else, so a failover or a
restart with unchanged statuses adds nothing.  Events are aggregated as
kubectl shows them: one Event per (ConfigMap uid, reason), by a name derived
from both; saying the same again raises its C{count}.
"""

from __future__ import annotations

import datetime
import hashlib
import socket
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from tenantgw.plans.snapshot import STATE_ACCEPTED, Snapshot, TenantStatus, changed_namespaces

_log = Logger()

MAX_MESSAGE = 1024  # the API server refuses Event messages much beyond this

# (namespace, event, resync) -> what was done: "created", "counted",
# "replaced" or "unchanged" (only when resync: the cluster already says it).
EventPoster = Callable[[str, dict[str, Any], bool], str]


def event_name(config_map: str, uid: str, reason: str) -> str:
    """The same name for the same (ConfigMap, reason), so a repeat is counted, not added."""
    digest = hashlib.sha256(f"{uid or config_map}/{reason}".encode()).hexdigest()[:10]
    return f"{config_map}.{digest}"


def event_for(status: TenantStatus, now: datetime.datetime, component: str) -> dict[str, Any]:
    """The core/v1 Event saying C{status}, about the tenant's ConfigMap."""
    if status.messages:
        message = "; ".join(status.messages)
    elif status.state == STATE_ACCEPTED:
        message = "serving hosts: " + (", ".join(status.hosts) or "(none)")
    else:
        message = status.state
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "generateName": f"{status.config_map or 'tenant'}.",
            "namespace": status.namespace,
        },
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "namespace": status.namespace,
            "name": status.config_map or "",
        },
        "reason": status.state,
        "message": message,
        # Clamped is a Warning too: the tenant asked for more than it got.
        "type": "Normal" if status.state == STATE_ACCEPTED else "Warning",
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": socket.gethostname(),
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


def object_event(
    kind: str,
    api_version: str,
    namespace: str,
    name: str,
    uid: str,
    reason: str,
    message: str,
    warning: bool,
    now: datetime.datetime,
    component: str,
) -> dict[str, Any]:
    """An Event about any object (an Ingress): its uid is known from the watch."""
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    involved = {"apiVersion": api_version, "kind": kind, "namespace": namespace, "name": name}
    if uid:
        involved["uid"] = uid
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{name}.", "namespace": namespace},
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "type": "Warning" if warning else "Normal",
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": socket.gethostname(),
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class StatusEvents(Service):
    """
    Call L{snapshot_applied} with every applied snapshot.

    Posting has its own small thread pool (unless one is given): a first
    sync of a thousand tenants queues a thousand posts, which must not delay
    bcrypt checks in the reactor's pool, nor shutdown: once stopping, queued
    posts are skipped.
    """

    def __init__(
        self,
        post: EventPoster,
        reactor: Any,
        threadpool: Any = None,
        component: str = "tenantgw",
        now: Callable[[], datetime.datetime] | None = None,
        active: bool = True,
    ) -> None:
        self.post = post
        # False while another replica leads: snapshots are kept, not posted.
        self.active = active
        self.latest: Snapshot | None = None
        self.reactor = reactor
        self._own_pool = threadpool is None
        self.threadpool = (
            threadpool if threadpool is not None else ThreadPool(1, 2, "tenantgw-events")
        )
        self.stopping = False
        self.component = component
        self.now = now or (lambda: datetime.datetime.now(datetime.timezone.utc))
        # namespace -> (reason, message) last posted
        self.posted: dict[str, tuple[str, str]] = {}
        # The snapshot last gone through: the next one's delta names the
        # only namespaces worth looking at again.
        self._seen: Snapshot | None = None
        # Events about other objects (Ingresses), by "Kind namespace/name":
        # the latest wanted, and (reason, message) last posted.
        self.latest_objects: dict[str, dict[str, Any]] = {}
        self.posted_objects: dict[str, tuple[str, str]] = {}

    def startService(self) -> None:
        super().startService()
        if self._own_pool:
            self.threadpool.start()

    def stopService(self) -> Any:
        self.stopping = True
        if self._own_pool:
            self.threadpool.stop()
        return super().stopService()

    def _post_unless_stopping(self, namespace: str, event: dict[str, Any], resync: bool) -> str:
        if self.stopping or not self.active:
            return "skipped"
        return self.post(namespace, event, resync)

    def start_posting(self) -> list[Any]:
        """Became leader: post what the cluster does not say yet (the Deferreds, for tests)."""
        self.active = True
        self.posted.clear()
        self.posted_objects.clear()
        self._seen = None
        pending = self._post_object_changes(self.latest_objects, resync=True)
        if self.latest is None:
            return pending
        return self._post_changes(self.latest, resync=True) + pending

    def stop_posting(self) -> None:
        self.active = False

    def snapshot_applied(self, snapshot: Snapshot) -> list[Any]:
        """Posts an Event for every tenant whose status changed; the Deferreds, for tests."""
        self.latest = snapshot
        if not self.active:
            return []
        return self._post_changes(snapshot, resync=False)

    def objects_reported(self, events: dict[str, dict[str, Any]]) -> list[Any]:
        """
        C{events}: "Kind namespace/name" -> the Event its state says now
        (L{object_event}); posted when its reason or message changed.
        """
        self.latest_objects = events
        if not self.active:
            return []
        return self._post_object_changes(events, resync=False)

    def _post_object_changes(self, events: dict[str, dict[str, Any]], resync: bool) -> list[Any]:
        pending = []
        for key, event in sorted(events.items()):
            said = (event["reason"], event["message"])
            if self.posted_objects.get(key) == said:
                continue
            self.posted_objects[key] = said
            namespace = event["involvedObject"]["namespace"]
            d = deferToThreadPool(
                self.reactor, self.threadpool, self._post_unless_stopping, namespace, event, resync
            )
            d.addErrback(_post_failed, namespace)
            pending.append(d)
        for gone in set(self.posted_objects) - set(events):
            del self.posted_objects[gone]
        return pending

    def _post_changes(self, snapshot: Snapshot, resync: bool) -> list[Any]:
        pending = []
        statuses = snapshot.statuses
        visit = changed_namespaces(snapshot, self._seen)
        self._seen = snapshot
        for namespace in sorted(statuses if visit is None else visit):
            status = statuses.get(namespace)
            if status is None:
                self.posted.pop(namespace, None)
                continue
            if status.config_map is None:
                continue  # no ConfigMap to attach the Event to
            event = event_for(status, self.now(), self.component)
            said = (event["reason"], event["message"])
            if self.posted.get(namespace) == said:
                continue
            self.posted[namespace] = said
            d = deferToThreadPool(
                self.reactor, self.threadpool, self._post_unless_stopping, namespace, event, resync
            )
            d.addErrback(_post_failed, namespace)
            pending.append(d)
        if visit is None:
            for gone in set(self.posted) - set(statuses):
                del self.posted[gone]
        return pending


def _post_failed(failure: Failure, namespace: str) -> None:
    _log.failure("posting an Event to namespace {namespace} failed", failure, namespace=namespace)


def kubernetes_poster(api_client: Any) -> EventPoster:
    """
    Posts through the official client.  The ConfigMap's uid is read here,
    in the posting thread (the snapshot keeps names only): one GET per
    change of a tenant's status, and it makes the Event's name and
    involvedObject exact across ConfigMaps deleted and re-created.
    """
    from kubernetes.client import CoreV1Api
    from kubernetes.client.exceptions import ApiException

    core = CoreV1Api(api_client)
    timeout = (5, 10)

    def uid_of(namespace: str, config_map: str) -> str:
        try:
            found = core.read_namespaced_config_map(config_map, namespace, _request_timeout=timeout)
        except ApiException as e:
            if e.status == 404:
                return ""  # deleted since: the Event still names it
            raise
        return (found.metadata.uid if found.metadata else None) or ""

    def create(namespace: str, event: dict[str, Any]) -> None:
        method, url, headers, body, _ = api_client.param_serialize(
            "POST",
            "/api/v1/namespaces/{namespace}/events",
            path_params={"namespace": namespace},
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            body=event,
            auth_settings=["BearerToken"],
        )
        response = api_client.call_api(
            method, url, header_params=headers, body=body, _request_timeout=timeout
        )
        response.read()
        if not 200 <= response.status < 300:
            raise ApiException(http_resp=response)

    def post(namespace: str, event: dict[str, Any], resync: bool) -> str:
        involved = event["involvedObject"]
        # An Ingress's uid comes from the watch; a ConfigMap's is read here.
        uid = involved.get("uid") or ""
        if not uid and involved["kind"] == "ConfigMap":
            uid = uid_of(namespace, involved["name"])
        if uid:
            involved["uid"] = uid
        name = event_name(involved["name"], uid, event["reason"])
        event["metadata"] = {"name": name, "namespace": namespace}
        try:
            existing = core.read_namespaced_event(name, namespace, _request_timeout=timeout)
        except ApiException as e:
            if e.status != 404:
                raise
            create(namespace, event)
            return "created"
        if existing.message == event["message"] and existing.type == event["type"]:
            if resync:
                return "unchanged"
            change = {"count": (existing.count or 1) + 1, "lastTimestamp": event["lastTimestamp"]}
            done = "counted"
        else:
            change = {
                key: event[key]
                for key in ("message", "type", "involvedObject", "firstTimestamp", "lastTimestamp")
            }
            change["count"] = 1
            done = "replaced"
        core.patch_namespaced_event(
            name,
            namespace,
            change,
            _content_type="application/merge-patch+json",
            _request_timeout=timeout,
        )
        return done

    return post
