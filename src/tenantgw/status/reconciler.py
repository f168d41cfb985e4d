"""
After every rebuild: what the objects' statuses and their Events (per
Ingress, HTTPRoute, GRPCRoute and Gateway) should say, handed to the writer
and to the Events poster, which act only while this replica leads.

Everything here runs in the reactor and does no I/O; the published
Service's address is looked up in what the watches already hold, and
checked every few seconds, since a Service outside the tenant namespaces
does not trigger a rebuild when its load balancer gets its address.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable
from typing import Any

from twisted.application.service import Service
from twisted.internet.task import LoopingCall

from tenantgw.plans.snapshot import STATE_ACCEPTED, Snapshot
from tenantgw.status.events import StatusEvents, object_event
from tenantgw.status.gateway_status import gateway_desires
from tenantgw.status.ingress_report import IngressReport, describe, ingress_reports
from tenantgw.status.ingress_status import (
    IngressPublisher,
    PublishOptions,
    ServiceLookup,
    gateway_addresses,
)
from tenantgw.status.writer import StatusWriter
from tenantgw.translators.gateway_api import ROUTE_KINDS, ObjectStatus
from tenantgw.translators.ingress import IngressOptions
from tenantgw.translators.objects import KubeObject, name_of, namespace_of

SERVICE_CHECK_INTERVAL = 5.0  # seconds between looks at --publish-service's address

_GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1"
# The namespaced Gateway API kinds that get an Event each.
_EVENT_KINDS = (*ROUTE_KINDS, "Gateway")
# Condition reasons that are the contract's Event reasons of the same name.
_EVENT_REASONS = {"HostConflict": "HostConflict", "InvalidCertificateRef": "CertificateError"}


def gateway_api_events(
    statuses: Iterable[ObjectStatus],
    objects: Iterable[KubeObject],
    now: datetime.datetime,
    component: str,
) -> dict[str, dict[str, Any]]:
    """
    An Event for each namespaced Gateway API object (HTTPRoute, GRPCRoute,
    Gateway),
    with the contract's reasons (section 9, for every dialect): C{Accepted}
    when every condition is good, C{Rejected} when the object itself is not
    accepted, C{HostConflict} or C{CertificateError} when a condition says
    so; anything else that fails (a missing backend, a listener not
    programmed) is C{Accepted} as a Warning naming that condition.
    """
    uids = {
        (o.get("kind"), namespace_of(o), name_of(o)): str(
            (o.get("metadata") or {}).get("uid") or ""
        )
        for o in objects
        if o.get("kind") in _EVENT_KINDS
    }
    events = {}
    for status in statuses:
        key = status.key
        if not key.namespace or key.kind not in _EVENT_KINDS:
            continue
        failing = status.failing()
        if failing is None:
            reason, message = "Accepted", _accepted_message(status)
        else:
            reason = _EVENT_REASONS.get(failing.reason) or (
                "Rejected" if failing.type == "Accepted" else "Accepted"
            )
            message = status.summary(with_message=True)
        events[str(key)] = object_event(
            key.kind,
            _GATEWAY_API_VERSION,
            key.namespace,
            key.name,
            uids.get((key.kind, key.namespace, key.name), ""),
            reason,
            message,
            failing is not None,
            now,
            component,
        )
    return events


def _accepted_message(status: ObjectStatus) -> str:
    if status.key.kind in ROUTE_KINDS:
        parents = ", ".join(f"{p.gateway.namespace}/{p.gateway.name}" for p in status.parents)
        return "attached to Gateway " + (parents or "(none)")
    listeners = ", ".join(f"{lst.name} ({lst.attached_routes} routes)" for lst in status.listeners)
    return "listeners: " + (listeners or "(none)")


def ingress_events(
    reports: Iterable[IngressReport], now: datetime.datetime, component: str
) -> dict[str, dict[str, Any]]:
    return {
        f"Ingress {r.namespace}/{r.name}": object_event(
            "Ingress",
            "networking.k8s.io/v1",
            r.namespace,
            r.name,
            r.uid,
            r.state,
            describe(r),
            r.refused or r.state != STATE_ACCEPTED,
            now,
            component,
        )
        for r in reports
    }


class StatusReconciler(Service):
    def __init__(
        self,
        writer: StatusWriter,
        events: StatusEvents | None,
        reactor: Any,
        ingress: IngressOptions,
        publish: PublishOptions,
        lookup: ServiceLookup,
        now: Callable[[], datetime.datetime] | None = None,
        component: str = "tenantgw",
        gateways: frozenset[tuple[str, str]] | None = None,
    ) -> None:
        self.writer = writer
        self.events = events
        self.reactor = reactor
        self.ingress = ingress
        self.publish = publish
        self.publisher = IngressPublisher(publish, lookup)
        self.now = now or (lambda: datetime.datetime.now(datetime.timezone.utc))
        self.component = component
        self.gateways = gateways  # --gateway: the Gateways this deployment owns
        self._latest: tuple[list[KubeObject], Snapshot] | None = None
        self._checking = LoopingCall(self._check_service)
        self._checking.clock = reactor

    def startService(self) -> None:
        super().startService()
        if self.publish.service is not None and not self.publish.addresses:
            self._checking.start(SERVICE_CHECK_INTERVAL, now=False)

    def stopService(self) -> Any:
        if self._checking.running:
            self._checking.stop()
        return super().stopService()

    def applied(
        self,
        objects: list[KubeObject],
        snapshot: Snapshot,
        reports: dict[tuple[str, str], IngressReport] | None = None,
    ) -> list[Any]:
        """
        A rebuild applied C{snapshot}, compiled from C{objects}; the
        Deferreds, for tests.  C{reports}: the Ingresses' reports, when the
        caller worked them out already.
        """
        self._latest = (objects, snapshot)
        if reports is None:
            reports = ingress_reports(objects, snapshot, self.ingress)
        desires = self.publisher.desires(objects, reports)
        addresses = gateway_addresses(self.publisher.balancer) if self.publish.enabled else None
        desires.update(
            gateway_desires(objects, snapshot.object_statuses, addresses, self.now, self.gateways)
        )
        pending = self.writer.update(desires)
        if self.events is not None:
            events = ingress_events(reports.values(), self.now(), self.component)
            events.update(
                gateway_api_events(snapshot.object_statuses, objects, self.now(), self.component)
            )
            pending += self.events.objects_reported(events)
        return pending

    def _check_service(self) -> None:
        if self._latest is not None and self.publisher.addresses_changed():
            self.applied(*self._latest)
