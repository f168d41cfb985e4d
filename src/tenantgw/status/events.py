"""
Kubernetes Events in each tenant's namespace, so tenants learn why their
config does (not) serve without the gateway's logs (contract section 9).

One Event per change of a tenant's status: the reason is the state
(C{Accepted}, C{Clamped}, C{Rejected}, C{HostConflict}, C{CertificateError})
and the message its messages.  A status that did not change posts nothing,
so a rebuild triggered by another tenant, or a resync, is silent.  Posting
runs in the reactor's thread pool (the client blocks); a failed post is
logged and forgotten, so the same status is posted again on its next change
only.  Every replica posts: Events are advisory, and deduplicating across
replicas would need leader election for no gain a tenant can see.
"""

from __future__ import annotations

import datetime
import socket
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from tenantgw.plans.snapshot import STATE_ACCEPTED, Snapshot, TenantStatus

_log = Logger()

MAX_MESSAGE = 1024  # the API server refuses Event messages much beyond this

EventPoster = Callable[[str, dict[str, Any]], None]


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
        "type": "Normal" if status.state == STATE_ACCEPTED else "Warning",
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
    ) -> None:
        self.post = post
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

    def startService(self) -> None:
        super().startService()
        if self._own_pool:
            self.threadpool.start()

    def stopService(self) -> Any:
        self.stopping = True
        if self._own_pool:
            self.threadpool.stop()
        return super().stopService()

    def _post_unless_stopping(self, namespace: str, event: dict[str, Any]) -> None:
        if not self.stopping:
            self.post(namespace, event)

    def snapshot_applied(self, snapshot: Snapshot) -> list[Any]:
        """Posts an Event for every tenant whose status changed; the Deferreds, for tests."""
        pending = []
        for namespace, status in sorted(snapshot.statuses.items()):
            if status.config_map is None:
                continue  # no ConfigMap to attach the Event to
            event = event_for(status, self.now(), self.component)
            said = (event["reason"], event["message"])
            if self.posted.get(namespace) == said:
                continue
            self.posted[namespace] = said
            d = deferToThreadPool(
                self.reactor, self.threadpool, self._post_unless_stopping, namespace, event
            )
            d.addErrback(_post_failed, namespace)
            pending.append(d)
        for gone in set(self.posted) - set(snapshot.statuses):
            del self.posted[gone]
        return pending


def _post_failed(failure: Failure, namespace: str) -> None:
    _log.failure("posting an Event to namespace {namespace} failed", failure, namespace=namespace)


def kubernetes_poster(api_client: Any) -> EventPoster:
    """Posts through the official client (raw JSON, no model round trip)."""
    from kubernetes.client.exceptions import ApiException

    def post(namespace: str, event: dict[str, Any]) -> None:
        method, url, headers, body, _ = api_client.param_serialize(
            "POST",
            "/api/v1/namespaces/{namespace}/events",
            path_params={"namespace": namespace},
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            body=event,
            auth_settings=["BearerToken"],
        )
        response = api_client.call_api(
            method, url, header_params=headers, body=body, _request_timeout=(5, 10)
        )
        response.read()
        if not 200 <= response.status < 300:
            raise ApiException(http_resp=response)

    return post
