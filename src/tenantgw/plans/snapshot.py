"""
The routing snapshot: every tenant's plan, resolved and frozen, with the
host tables that find them.

A snapshot is built by one pure function (L{tenantgw.compile.compiler}) from
the watched objects and is then only ever read.  The data plane swaps a whole
snapshot in one attribute assignment, so a request sees either the old world
or the new one, never half of each.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping
from typing import Any

from attrs import field, frozen

from tenantgw.plans.routes import AccessPlan, RoutePlan
from tenantgw.tls.certificates import ServingCertificate
from tenantgw.values import Quota

STATE_ACCEPTED = "Accepted"
STATE_CLAMPED = "Clamped"
STATE_REJECTED = "Rejected"
STATE_HOST_CONFLICT = "HostConflict"
STATE_CERTIFICATE_ERROR = "CertificateError"

# The host key of a route that names no host and sits on a listener that
# names none (Gateway API): every host no other tenant serves.
ANY_HOST = "*"


@frozen
class TenantPlan:
    namespace: str
    hosts: tuple[str, ...]
    quota: Quota  # after the namespace's ceilings
    routes: tuple[RoutePlan, ...]  # in match precedence order
    access: AccessPlan
    generation: str  # identifies the config that serves, for status and metrics
    # Hosts whose certificate is valid and covers them: served over HTTPS
    # with the tenant's own certificate, and redirected there from HTTP.
    https_hosts: frozenset[str] = frozenset()
    # Hosts whose plain-HTTP requests get a 308 to HTTPS (tenant.yaml
    # tls.httpRedirect; Ingress ssl-redirect / force-ssl-redirect).
    redirect_hosts: frozenset[str] = frozenset()
    # (scheme, host key) -> routes, when the tenant's hosts do not all serve
    # the same routes (Gateway API routes name their hostnames and
    # listeners).  Empty: every host and scheme serves C{routes}.
    host_routes: Mapping[tuple[str, str], tuple[RoutePlan, ...]] = field(factory=dict)


@frozen
class TenantStatus:
    """What a tenant (and the operator) should know about one namespace."""

    namespace: str
    state: str
    messages: tuple[str, ...] = ()
    config_map: str | None = None
    serving: bool = False
    hosts: tuple[str, ...] = ()


@frozen
class SnapshotDelta:
    """
    Which namespaces a spliced snapshot may differ in from the one it was
    spliced into (revision C{base}): everything outside them is the very
    same object.  Whoever kept the base can then visit those namespaces
    only, instead of comparing 5,000 tenants to find the one that changed.
    """

    base: int
    namespaces: frozenset[str]


_revisions = itertools.count(1)


def next_revision() -> int:
    """Unique in the process, so that no two snapshots' deltas can be confused."""
    return next(_revisions)


@frozen
class Snapshot:
    """
    Host lookup tables plus per-tenant status.  Wildcards are stored as
    suffixes (``*.a.b`` -> ``.a.b``) sorted longest first, which makes "a longer
    wildcard beats a shorter one" fall out of a linear scan.
    """

    tenants: Mapping[str, TenantPlan] = field(factory=dict)
    exact_hosts: Mapping[str, TenantPlan] = field(factory=dict)
    wildcard_hosts: tuple[tuple[str, TenantPlan], ...] = ()
    statuses: Mapping[str, TenantStatus] = field(factory=dict)
    # The specs serving now (generation, TenantSpec), kept so that a later
    # rejected update can fall back to them: this is the "last good config"
    # memory, carried from one compile to the next instead of being hidden
    # state in a source.  Opaque here: only compile reads it, and the plans
    # do not depend on the config model.
    last_good: Mapping[str, tuple[str, Any]] = field(factory=dict)
    # Derived hosts of namespaces that serve nothing right now: they must not
    # be caught by another tenant's wildcard while their owner is down.
    reserved_hosts: frozenset[str] = frozenset()
    # Host (exact, or "*.suffix") -> the tenant certificate serving it by SNI.
    certificates: Mapping[str, ServingCertificate] = field(factory=dict)
    # From --default-cert-secret, when given and usable; else the listener's
    # own default (--default-cert, or self-signed) serves.
    default_certificate: ServingCertificate | None = None
    default_certificate_problem: str | None = None
    # Gateway API HTTPS listeners' certificates (the operator's), by listener
    # hostname (exact or "*.suffix"): tried after the tenants' own.
    listener_certificates: Mapping[str, ServingCertificate] = field(factory=dict)
    # The tenant serving every host nobody else serves (a Gateway API route
    # without hostnames on a listener without one), if any.
    catch_all: TenantPlan | None = None
    # Gateway API objects' statuses (GatewayClass, Gateway, HTTPRoute), for
    # the status writer, /api/tenants and tenantgw check.
    object_statuses: tuple[Any, ...] = ()
    # Last good versions of Gateway API routes, by "namespace/name": a
    # refused edit keeps the previous version serving.
    last_good_objects: Mapping[str, Mapping[str, Any]] = field(factory=dict)
    # Identity and lineage, not content: left out of equality, so that a
    # spliced snapshot still equals the full compile of the same objects.
    # 0: made by a plain compile (no known base).
    revision: int = field(default=0, eq=False)
    delta: SnapshotDelta | None = field(default=None, eq=False)

    def certificate_for(self, server_name: str) -> ServingCertificate | None:
        """
        Exact name first, then the one-label wildcard above it (TLS rules);
        but a name some tenant serves exactly never gets another tenant's
        wildcard certificate.
        """
        certificate = self.certificates.get(server_name)
        if certificate is None and server_name not in self.exact_hosts:
            _, dot, parent = server_name.partition(".")
            if dot:
                certificate = self.certificates.get("*." + parent)
        if certificate is None and self.listener_certificates:
            # The operator's own certificate covers whatever its listener
            # serves, whichever tenant owns the name.
            listener = self.listener_certificates
            certificate = listener.get(server_name)
            labels = server_name.split(".")
            for i in range(1, len(labels)):
                if certificate is not None:
                    break
                candidate = listener.get("*." + ".".join(labels[i:]))
                if candidate is not None and candidate.covers(server_name):
                    certificate = candidate
        return certificate

    def tenant_for_host(self, host: str) -> TenantPlan | None:
        tenant = self.exact_hosts.get(host)
        if tenant is not None:
            return tenant
        if host in self.reserved_hosts:
            return None
        for suffix, candidate in self.wildcard_hosts:
            if host.endswith(suffix) and len(host) > len(suffix):
                return candidate
        return self.catch_all


EMPTY_SNAPSHOT = Snapshot()


def changed_namespaces(current: Snapshot, seen: Snapshot | None) -> Collection[str] | None:
    """
    The namespaces whose plan or status may differ between C{seen} (the
    snapshot a consumer handled last) and C{current}; None when that is not
    known, and the consumer must compare every namespace.
    """
    if seen is None:
        return None
    if current is seen:
        return ()
    delta = current.delta
    if delta is not None and seen.revision and delta.base == seen.revision:
        return delta.namespaces
    return None
