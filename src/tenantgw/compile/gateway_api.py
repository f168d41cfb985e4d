"""
The Gateway API translation inside a compile: which namespaces' routes are
served, the last good version of a refused route, listener certificates, and
the statuses that only the whole compile can know (HostConflict, a
certificate Secret that is missing or invalid).
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from attrs import evolve, field, frozen

from tenantgw.plans.snapshot import ANY_HOST, Snapshot
from tenantgw.tls.certificates import (
    CertificateProblem,
    ServingCertificate,
    check_dates,
    load_certificate,
)
from tenantgw.translators.conditions import FALSE, Condition, ObjectKey, condition
from tenantgw.translators.gateway_api import (
    ACCEPTED,
    GATEWAY_API_KINDS,
    HOST_CONFLICT,
    INVALID_CERTIFICATE_REF,
    NOT_ALLOWED_BY_LISTENERS,
    PROGRAMMED,
    RESOLVED_REFS,
    ROUTE_KINDS,
    UNSUPPORTED_VALUE,
    GatewayApiOptions,
    GatewayApiTranslation,
    ListenerStatus,
    ObjectStatus,
    ParentStatus,
    TranslatedRoute,
    translate_gateway_api,
)
from tenantgw.translators.objects import KubeObject, name_of, namespace_of, secret_values

# What the translator reads besides its own kinds.
_CONTEXT_KINDS = ("Namespace", "Service")


class _HasSecrets(Protocol):
    @property
    def secrets(self) -> Mapping[str, KubeObject]: ...


@frozen
class GatewayApiCompile:
    translation: GatewayApiTranslation
    routes: Mapping[str, tuple[TranslatedRoute, ...]] = field(factory=dict)  # by namespace
    messages: Mapping[str, tuple[str, ...]] = field(factory=dict)  # for TenantStatus
    last_good_objects: Mapping[str, KubeObject] = field(factory=dict)


EMPTY = GatewayApiCompile(GatewayApiTranslation((), (), ()))


def _key(obj: KubeObject) -> str:
    """An HTTPRoute's "ns/name" (as before GRPCRoute), a GRPCRoute's "GRPCRoute ns/name"."""
    key = f"{namespace_of(obj)}/{name_of(obj)}"
    return key if obj.get("kind") != "GRPCRoute" else f"GRPCRoute {key}"


def compile_gateway_api(
    objects: Iterable[KubeObject],
    tenant_namespaces: set[str],
    options: GatewayApiOptions,
    previous: Snapshot,
) -> GatewayApiCompile:
    by_kind: dict[str, list[KubeObject]] = defaultdict(list)
    for obj in objects:
        kind = obj.get("kind")
        if kind in GATEWAY_API_KINDS or kind in _CONTEXT_KINDS:
            by_kind[str(kind)].append(obj)
    if not by_kind.get("GatewayClass"):
        return EMPTY

    translation = translate_gateway_api(by_kind, options)
    # A route refused for its own content keeps its last good version
    # serving, as a refused tenant.yaml does: translate again with the old
    # object in its place.
    refused = {
        s.key
        for s in translation.statuses
        if s.key.kind in ROUTE_KINDS
        and any(
            c.type == ACCEPTED and c.reason == UNSUPPORTED_VALUE
            for p in s.parents
            for c in p.conditions
        )
    }
    last_good: dict[str, KubeObject] = {}
    fallback: dict[str, KubeObject] = {}
    for kind in ROUTE_KINDS:
        for route in by_kind.get(kind, ()):
            key = ObjectKey(kind, namespace_of(route), name_of(route))
            if key in refused:
                old = previous.last_good_objects.get(_key(route))
                if old is not None:
                    fallback[_key(route)] = old
                    last_good[_key(route)] = old
            else:
                last_good[_key(route)] = route
    served = translation
    if fallback:
        replaced = dict(by_kind)
        for kind in ROUTE_KINDS:
            if kind in by_kind:
                replaced[kind] = [fallback.get(_key(r), r) for r in by_kind[kind]]
        served = translate_gateway_api(replaced, options)

    routes: dict[str, list[TranslatedRoute]] = defaultdict(list)
    messages: dict[str, list[str]] = defaultdict(list)
    for translated in served.routes:
        if translated.namespace in tenant_namespaces:
            routes[translated.namespace].append(translated)

    statuses = []
    for status in translation.statuses:
        if status.key.kind in ROUTE_KINDS:
            kind = status.key.kind
            status = _tenant_policy(status, tenant_namespaces)
            object_name = f"{status.key.namespace}/{status.key.name}"
            if kind != "HTTPRoute":
                object_name = f"{kind} {object_name}"
            for parent in status.parents:
                for c in parent.conditions:
                    if not c.ok:
                        messages[status.key.namespace].append(
                            f"{kind} {status.key.name} (parent {parent.gateway.namespace}/"
                            f"{parent.gateway.name}): {c.type} {c.reason}: {c.message}"
                        )
            if object_name in fallback:
                messages[status.key.namespace].append(
                    f"{kind} {status.key.name}: serving its last good version"
                )
        statuses.append(status)
    translation = evolve(translation, statuses=tuple(statuses))
    return GatewayApiCompile(
        translation,
        {ns: tuple(r) for ns, r in routes.items()},
        {ns: tuple(dict.fromkeys(m)) for ns, m in messages.items()},
        last_good,
    )


def _tenant_policy(status: ObjectStatus, tenant_namespaces: set[str]) -> ObjectStatus:
    """A route outside the tenant namespaces (--namespace-selector) is not served: say so."""
    if status.key.namespace in tenant_namespaces:
        return status
    parents = []
    for parent in status.parents:
        conditions = tuple(
            condition(
                ACCEPTED,
                False,
                NOT_ALLOWED_BY_LISTENERS,
                f"namespace {status.key.namespace!r} is not a tenant namespace"
                " (--namespace-selector)",
                generation=c.observed_generation,
            )
            if c.type == ACCEPTED
            else c
            for c in parent.conditions
        )
        parents.append(evolve(parent, conditions=conditions))
    return evolve(status, parents=tuple(parents))


def with_lost_hosts(
    statuses: tuple[ObjectStatus, ...],
    lost: Mapping[str, frozenset[str]],
    gateway_api: GatewayApiCompile,
) -> tuple[ObjectStatus, ...]:
    """
    HostConflict on the parents of a route that lost hosts to an older
    object of another namespace: Accepted False when it lost all of them,
    a message on Accepted True when it kept some.
    """
    result = []
    for status in statuses:
        hosts_lost = lost.get(str(status.key)) if status.key.kind in ROUTE_KINDS else None
        if not hosts_lost:
            result.append(status)
            continue
        namespace = status.key.namespace
        kept = {
            h
            for t in gateway_api.routes.get(namespace, ())
            if t.origin == status.key
            for h in t.hosts
            if h not in hosts_lost
        }
        listing = ", ".join(sorted(hosts_lost))
        parents = []
        for parent in status.parents:
            conditions = []
            for c in parent.conditions:
                if c.type == ACCEPTED and c.ok:
                    if kept:
                        c = evolve(
                            c, message=f"hosts served by an older object elsewhere: {listing}"
                        )
                    else:
                        c = Condition(
                            ACCEPTED,
                            FALSE,
                            HOST_CONFLICT,
                            f"every host is served by an older object of another namespace: {listing}",
                            c.observed_generation,
                        )
                conditions.append(c)
            parents.append(
                ParentStatus(parent.gateway, parent.section_name, parent.port, tuple(conditions))
            )
        result.append(evolve(status, parents=tuple(parents)))
    return tuple(result)


@frozen
class ListenerCertificates:
    by_host: Mapping[str, ServingCertificate]
    statuses: tuple[ObjectStatus, ...]


def gateway_listener_certificates(
    gateway_api: GatewayApiCompile,
    by_namespace: Mapping[str, _HasSecrets],
    now: datetime.datetime,
) -> ListenerCertificates:
    """
    An HTTPS listener's certificate serves its hostname by SNI, after the
    tenants' own certificates (L{Snapshot.certificate_for}).  A
    missing or unusable Secret makes the listener ResolvedRefs False,
    InvalidCertificateRef, and not Programmed.
    """
    by_host: dict[str, ServingCertificate] = {}
    problems: dict[tuple[ObjectKey, str], str] = {}
    for listener in gateway_api.translation.listeners:
        if listener.protocol != "HTTPS":
            continue
        for namespace, name in listener.certificate_refs:
            index = by_namespace.get(namespace)
            secret = index.secrets.get(name) if index is not None else None
            if secret is None:
                problems[(listener.gateway, listener.name)] = f"Secret {namespace}/{name} not found"
                continue
            try:
                values = secret_values(secret)
                certificate = load_certificate(
                    values.get("tls.crt", b""), values.get("tls.key", b"")
                )
                check_dates(certificate, now)
            except CertificateProblem as e:
                problems[(listener.gateway, listener.name)] = f"Secret {namespace}/{name}: {e}"
                continue
            host = listener.hostname or ANY_HOST
            by_host.setdefault(host, certificate)
    statuses = []
    for status in gateway_api.translation.statuses:
        if status.key.kind == "Gateway" and any(
            (status.key, lst.name) in problems for lst in status.listeners
        ):
            listeners = []
            for lst in status.listeners:
                problem = problems.get((status.key, lst.name))
                if problem is None:
                    listeners.append(lst)
                    continue
                conditions = tuple(
                    condition(
                        RESOLVED_REFS,
                        False,
                        INVALID_CERTIFICATE_REF,
                        problem,
                        generation=c.observed_generation,
                    )
                    if c.type == RESOLVED_REFS
                    else condition(
                        PROGRAMMED, False, "Invalid", problem, generation=c.observed_generation
                    )
                    if c.type == PROGRAMMED
                    else c
                    for c in lst.conditions
                )
                listeners.append(
                    ListenerStatus(lst.name, lst.attached_routes, lst.supported_kinds, conditions)
                )
            status = evolve(status, listeners=tuple(listeners))
        statuses.append(status)
    by_host.pop(ANY_HOST, None)  # a hostname-less listener's certificate: see docs (default cert)
    return ListenerCertificates(by_host, tuple(statuses))


def status_json(status: ObjectStatus) -> dict[str, Any]:
    """The status subresource body for one object (lastTransitionTime is the writer's)."""
    body: dict[str, Any] = {}
    if status.conditions:
        body["conditions"] = [c.to_json() for c in status.conditions]
    if status.key.kind in ROUTE_KINDS:
        body["parents"] = [
            {
                "parentRef": {
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "namespace": p.gateway.namespace,
                    "name": p.gateway.name,
                    **({"sectionName": p.section_name} if p.section_name else {}),
                    **({"port": p.port} if p.port else {}),
                },
                "controllerName": "tenantgw.io/gateway-controller",
                "conditions": [c.to_json() for c in p.conditions],
            }
            for p in status.parents
        ]
    if status.key.kind == "Gateway":
        body["listeners"] = [
            {
                "name": lst.name,
                "attachedRoutes": lst.attached_routes,
                "supportedKinds": [
                    {"group": "gateway.networking.k8s.io", "kind": k} for k in lst.supported_kinds
                ],
                "conditions": [c.to_json() for c in lst.conditions],
            }
            for lst in status.listeners
        ]
    return body
