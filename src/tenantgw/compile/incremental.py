"""
Recompiling only the namespaces a change can reach.

A full compile of 5,000 tenants takes more than a second of reactor time;
one tenant's edit must not pay for the other 4,999.  The compile step
stays one pure function (L{compile_snapshot}); what this module adds is the
knowledge of which namespaces a change can reach, so that the function runs
on their objects only and its result is spliced into the previous snapshot.
Unchanged tenants keep their L{TenantPlan} objects, so the data plane can
keep their handlers too (L{tenantgw.dataplane.gateway.HostTable}).

What one namespace's plan depends on, for a tenant served from a Tenant
ConfigMap: its own Namespace, ConfigMaps, Secrets, Services and
EndpointSlices (a tenant.yaml backend resolves only in its own namespace),
its previous last good config, and the owners of the hosts it claims.  Host
ownership is decided per host (the oldest claim wins, a derived host is its
namespace's), so the namespaces to recompile are the changed ones plus,
transitively, every namespace claiming one of their hosts (old claims and
new) or owning one as its derived host.

Anything else is cross-namespace in ways not tracked here, so it takes the
full compile, counted by reason: a Gateway API or Ingress object changing, a
change in a namespace that holds such objects or that they point into
(cross-namespace backendRefs, listener certificates), the
--default-cert-secret's namespace, a manifest list with two objects of one
name, a certificate of any tenant turning valid or expiring since the last
full compile, or a change reaching more than half of the tenants.
"""

from __future__ import annotations

import datetime
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from attrs import evolve

from tenantgw.compile.compiler import CompileOptions, CompileTrace, compile_snapshot
from tenantgw.compile.hosts import HostClaim
from tenantgw.plans.snapshot import (
    EMPTY_SNAPSHOT,
    Snapshot,
    SnapshotDelta,
    TenantPlan,
    next_revision,
)
from tenantgw.sources.kinds import KIND_NAMES
from tenantgw.translators.gateway_api import GATEWAY_API_KINDS
from tenantgw.translators.ingress import INGRESS_KINDS
from tenantgw.translators.objects import KubeObject, meta

# (kind, namespace, name); a Namespace is filed under its own name, and an
# object without a namespace under "default", as the compile step reads it.
ObjectKey = tuple[str, str, str]
Changes = Mapping[ObjectKey, KubeObject | None]

_CROSS_NAMESPACE_KINDS = frozenset(GATEWAY_API_KINDS) | frozenset(INGRESS_KINDS)
_KIND_ORDER = {kind: i for i, kind in enumerate(KIND_NAMES)}

MODE_FULL = "full"
MODE_INCREMENTAL = "incremental"


class Compile(Protocol):
    def __call__(
        self,
        objects: Iterable[KubeObject],
        options: CompileOptions,
        previous: Snapshot,
        now: datetime.datetime | None,
        trace: CompileTrace | None,
    ) -> Snapshot: ...


def object_key(obj: KubeObject) -> ObjectKey | None:
    """Where an object is filed, or None for one the compile step would skip anyway."""
    kind = obj.get("kind")
    fields = meta(obj)
    name = fields.get("name")
    if not isinstance(kind, str) or not isinstance(name, str):
        return None
    if kind == "Namespace":
        return (kind, name, name)
    namespace = fields.get("namespace") or "default"
    if not isinstance(namespace, str):
        return None
    return (kind, namespace, name)


_DEFAULT_OPTIONS = CompileOptions()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class IncrementalCompiler:
    """
    Holds the objects last compiled, what that compile learnt (host claims,
    certificate dates, which namespaces are cross-namespace), and the
    snapshot; each change produces the snapshot a full compile of the same
    objects would (C{tests.test_incremental_compile} checks it over random
    change sequences).

    C{compile} is the seam the tests count compiled tenants through.
    """

    # A change reaching more than this share of the tenants compiles them all:
    # the splice would cost as much as it saves.
    max_share = 0.5

    def __init__(
        self,
        options: CompileOptions = _DEFAULT_OPTIONS,
        compile: Compile = compile_snapshot,
        clock: Callable[[], datetime.datetime] = _now,
    ) -> None:
        self.options = options
        self.compile = compile
        self.clock = clock
        self.snapshot = EMPTY_SNAPSHOT
        self.synced = False
        self.objects: dict[str, dict[tuple[str, str], KubeObject]] = {}
        # Objects the index cannot file (an unusable name), or a list with
        # two objects under one key: compiled in full while there are any.
        self._unfiled: list[KubeObject] = []
        self._claims: dict[str, tuple[HostClaim, ...]] = {}
        self._claimers: dict[str, set[str]] = defaultdict(set)
        self._dates: dict[str, datetime.datetime] = {}
        self._boundary: datetime.datetime | None = None
        self._pinned: frozenset[str] = frozenset()
        self.compiles: Counter[str] = Counter()
        self.full_reasons: Counter[str] = Counter()
        self.tenants_compiled = 0
        self.last_mode = ""
        self.last_compiled: frozenset[str] = frozenset()

    # Input.

    def replace(
        self, objects: Iterable[KubeObject], now: datetime.datetime | None = None
    ) -> Snapshot:
        """Every object the source holds: what differs from the last call is the change."""
        fresh: dict[str, dict[tuple[str, str], KubeObject]] = {}
        unfiled: list[KubeObject] = []
        for obj in objects:
            key = object_key(obj)
            if key is None:
                unfiled.append(obj)
                continue
            kind, namespace, name = key
            bucket = fresh.setdefault(namespace, {})
            if (kind, name) in bucket:
                unfiled.append(obj)  # a second object under one name: see _unfiled
                continue
            bucket[(kind, name)] = obj
        changes: dict[ObjectKey, KubeObject | None] = {}
        for namespace in fresh.keys() | self.objects.keys():
            old = self.objects.get(namespace, {})
            new = fresh.get(namespace, {})
            if old is new:
                continue
            for kind_name in old.keys() | new.keys():
                before, after = old.get(kind_name), new.get(kind_name)
                if before is not after and before != after:
                    changes[(kind_name[0], namespace, kind_name[1])] = after
        if unfiled or self._unfiled:
            self.objects = fresh
            self._unfiled = unfiled
            return self._full(now, "objects without a usable or unique name")
        return self.apply(changes, now)

    def apply(self, changes: Changes, now: datetime.datetime | None = None) -> Snapshot:
        """The objects that changed since the last call, None for one deleted."""
        if now is None:
            now = self.clock()
        reason = None
        changed: set[str] = set()
        for (kind, namespace, name), obj in changes.items():
            bucket = self.objects.get(namespace)
            if obj is None:
                if bucket is not None:
                    bucket.pop((kind, name), None)
                    if not bucket:
                        del self.objects[namespace]
            else:
                if bucket is None:
                    bucket = self.objects[namespace] = {}
                bucket[(kind, name)] = obj
            changed.add(namespace)
            if kind in _CROSS_NAMESPACE_KINDS:
                reason = f"a {kind} changed"
        if not self.synced:
            reason = "first compile"
        elif reason is not None:
            pass
        elif self._unfiled:
            reason = "objects without a usable or unique name"
        elif changed & self._pinned:
            reason = "a change in a namespace with Gateway API or Ingress objects"
        elif self._boundary is not None and now >= self._boundary:
            reason = "a certificate turned valid or expired"
        if reason is not None:
            return self._full(now, reason)
        if not changed:
            self.last_mode, self.last_compiled = MODE_INCREMENTAL, frozenset()
            self.compiles[MODE_INCREMENTAL] += 1
            return self.snapshot
        return self._incremental(changed, now)

    # Compiles.

    def all_objects(self) -> list[KubeObject]:
        """In a fixed order (kind, namespace, name), whatever order changes came in."""
        keyed = [
            (_KIND_ORDER.get(kind, len(_KIND_ORDER)), kind, namespace, name, obj)
            for namespace, bucket in self.objects.items()
            for (kind, name), obj in bucket.items()
        ]
        keyed.sort(key=lambda entry: entry[:4])
        return [entry[-1] for entry in keyed] + self._unfiled

    def _full(self, now: datetime.datetime | None, reason: str) -> Snapshot:
        if now is None:
            now = self.clock()
        trace = CompileTrace()
        snapshot = evolve(
            self.compile(self.all_objects(), self.options, self.snapshot, now, trace),
            revision=next_revision(),
        )
        self.synced = True
        self._claims = {ns: tuple(claims) for ns, claims in trace.claims.items()}
        self._claimers = defaultdict(set)
        for namespace, claims in self._claims.items():
            for claim in claims:
                self._claimers[claim.host].add(namespace)
        self._dates = dict(trace.dates)
        for certificate in snapshot.listener_certificates.values():
            if certificate.not_after > now:
                current = self._dates.get("")
                if current is None or certificate.not_after < current:
                    self._dates[""] = certificate.not_after
        self._boundary = min(self._dates.values(), default=None)
        self._pinned = frozenset(self._cross_namespace())
        self.compiles[MODE_FULL] += 1
        self.full_reasons[reason] += 1
        self.tenants_compiled += trace.tenants_compiled
        self.last_mode, self.last_compiled = MODE_FULL, frozenset(snapshot.tenants)
        self.snapshot = snapshot
        return snapshot

    def _cross_namespace(self) -> Iterable[str]:
        """Namespaces whose objects a Gateway API or Ingress translation reads."""
        default = self.options.default_certificate_secret
        if default is not None:
            yield default[0]
        for namespace, bucket in self.objects.items():
            for kind, _ in bucket:
                if kind in _CROSS_NAMESPACE_KINDS:
                    yield namespace
                    break
            for (kind, _), obj in bucket.items():
                if kind not in ("HTTPRoute", "GRPCRoute", "Gateway"):
                    continue
                yield from _referenced_namespaces(kind, obj)

    def _derived(self, namespace: str) -> str | None:
        base = self.options.base_domain
        return f"{namespace}.{base.strip('.').lower()}" if base else None

    def _derived_owner(self, host: str) -> str | None:
        base = self.options.base_domain
        if not base:
            return None
        suffix = "." + base.strip(".").lower()
        return host[: -len(suffix)] if host.endswith(suffix) else None

    def _reach(self, namespaces: set[str], hosts: Iterable[str]) -> set[str]:
        """Namespaces outside C{namespaces} that claim one of C{hosts} or derive it."""
        found: set[str] = set()
        for host in hosts:
            for other in self._claimers.get(host, ()):
                if other not in namespaces:
                    found.add(other)
            owner = self._derived_owner(host)
            if owner is not None and owner not in namespaces and owner in self.objects:
                found.add(owner)
        return found

    def _closure(self, namespaces: set[str]) -> set[str]:
        reached = set(namespaces)
        pending = list(namespaces)
        while pending:
            namespace = pending.pop()
            hosts = {claim.host for claim in self._claims.get(namespace, ())}
            derived = self._derived(namespace)
            if derived:
                hosts.add(derived)
            more = self._reach(reached, hosts)
            reached |= more
            pending.extend(more)
        return reached

    def _incremental(self, changed: set[str], now: datetime.datetime) -> Snapshot:
        affected = self._closure(changed)
        while True:
            if affected & self._pinned:
                return self._full(
                    now, "a change in a namespace with Gateway API or Ingress objects"
                )
            if len(affected) > 8 and len(affected) > self.max_share * len(self.snapshot.tenants):
                return self._full(now, "a change reaching most tenants")
            trace = CompileTrace()
            objects = [
                obj
                for namespace in sorted(affected)
                for obj in self.objects.get(namespace, {}).values()
            ]
            partial = self.compile(objects, self.options, self.snapshot, now, trace)
            new_hosts = {c.host for ns in affected for c in trace.claims.get(ns, ())}
            more = self._reach(affected, new_hosts)
            if not more:
                break
            # A new claim on a host some other namespace claims: compile them
            # together (and whatever they reach).
            affected = self._closure(affected | more)
        self.snapshot = self._splice(partial, affected)
        for namespace in affected:
            for claim in self._claims.pop(namespace, ()):
                holders = self._claimers.get(claim.host)
                if holders is not None:
                    holders.discard(namespace)
                    if not holders:
                        del self._claimers[claim.host]
            claims = tuple(trace.claims.get(namespace, ()))
            if claims:
                self._claims[namespace] = claims
                for claim in claims:
                    self._claimers[claim.host].add(namespace)
            self._dates.pop(namespace, None)
            if namespace in trace.dates:
                self._dates[namespace] = trace.dates[namespace]
        self._boundary = min(self._dates.values(), default=None)
        self.compiles[MODE_INCREMENTAL] += 1
        self.tenants_compiled += trace.tenants_compiled
        self.last_mode, self.last_compiled = MODE_INCREMENTAL, frozenset(partial.tenants)
        return self.snapshot

    def _splice(self, partial: Snapshot, affected: set[str]) -> Snapshot:
        """
        The previous snapshot with the C{affected} namespaces' part replaced
        by C{partial}'s.  A recompiled plan equal to the one serving keeps
        the serving object, so the data plane keeps its handler too.
        """
        previous = self.snapshot
        tenants = dict(previous.tenants)
        exact = dict(previous.exact_hosts)
        certificates = dict(previous.certificates)
        statuses = dict(previous.statuses)
        last_good = dict(previous.last_good)
        for namespace in affected:
            old = tenants.pop(namespace, None)
            if old is not None:
                for host in old.hosts:
                    if exact.get(host) is old:
                        del exact[host]
                    certificates.pop(host, None)
            statuses.pop(namespace, None)
            last_good.pop(namespace, None)
        for namespace, plan in partial.tenants.items():
            old = previous.tenants.get(namespace)
            tenants[namespace] = old if old is not None and old == plan else plan
        for host, plan in partial.exact_hosts.items():
            exact[host] = tenants[plan.namespace]
        wildcards: list[tuple[str, TenantPlan]] = [
            (suffix, plan)
            for suffix, plan in previous.wildcard_hosts
            if plan.namespace not in affected
        ]
        wildcards.extend(
            (suffix, tenants[plan.namespace]) for suffix, plan in partial.wildcard_hosts
        )
        wildcards.sort(key=lambda pair: (-len(pair[0]), pair[0]))
        certificates.update(partial.certificates)
        statuses.update(partial.statuses)
        last_good.update(partial.last_good)
        derived = {self._derived(namespace) for namespace in affected}
        reserved = (previous.reserved_hosts - derived) | partial.reserved_hosts
        return evolve(
            previous,
            tenants=tenants,
            exact_hosts=exact,
            wildcard_hosts=tuple(wildcards),
            statuses=statuses,
            last_good=last_good,
            reserved_hosts=reserved,
            certificates=certificates,
            revision=next_revision(),
            delta=SnapshotDelta(previous.revision, frozenset(affected)),
        )


def _referenced_namespaces(kind: str, obj: KubeObject) -> Iterable[str]:
    """Other namespaces a route's backendRefs or a Gateway's certificateRefs name."""
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        return
    if kind in ("HTTPRoute", "GRPCRoute"):
        for rule in spec.get("rules") or ():
            refs = rule.get("backendRefs") if isinstance(rule, Mapping) else None
            for ref in refs if isinstance(refs, list) else ():
                if isinstance(ref, Mapping) and isinstance(ref.get("namespace"), str):
                    yield ref["namespace"]
        return
    for listener in spec.get("listeners") or ():
        tls = listener.get("tls") if isinstance(listener, Mapping) else None
        refs = tls.get("certificateRefs") if isinstance(tls, Mapping) else None
        for ref in refs if isinstance(refs, list) else ():
            if isinstance(ref, Mapping) and isinstance(ref.get("namespace"), str):
                yield ref["namespace"]
