"""
Tests for L{tenantgw.compile.incremental}: recompiling only what a change
reaches gives the snapshot a full compile gives, and compiles nothing else.
"""

from __future__ import annotations

import base64
import collections
import datetime
import json
import random
from collections.abc import Iterable
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tenantgw.compile.compiler import CompileOptions, CompileTrace, compile_snapshot
from tenantgw.compile.incremental import (
    MODE_FULL,
    MODE_INCREMENTAL,
    IncrementalCompiler,
    ObjectKey,
    object_key,
)
from tenantgw.plans.snapshot import EMPTY_SNAPSHOT, Snapshot, changed_namespaces
from tenantgw.sources.kinds import KIND_NAMES
from tenantgw.translators.gateway_api import CONTROLLER_NAME
from tenantgw.translators.ingress import CONTROLLER as INGRESS_CONTROLLER

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)
OPTIONS = CompileOptions(base_domain="apps.example.com")
Obj = dict[str, Any]

# A small pool, so that random claims collide often.
HOSTS = [
    "a.example.com",
    "b.example.com",
    "c.example.com",
    "*.shared.example.com",
    *(f"h{n}.example.com" for n in range(30)),
]
TIMES = ["2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z"]
TENANTS = 50
INGRESS_TENANTS = range(40, 45)
ROUTE_TENANTS = range(45, 50)


def ns_name(i: int) -> str:
    return f"t{i:02d}"


def namespace_obj(i: int, allowed: str = "*.example.com") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": ns_name(i), "annotations": {"tenantgw.io/allowed-hosts": allowed}},
    }


def config_map(i: int, rng: random.Random) -> Obj:
    ns = ns_name(i)
    choice = rng.random()
    if choice < 0.1:
        text = "hosts: [unclosed"  # refused: the last good config serves
    else:
        hosts = rng.sample([*HOSTS, f"{ns_name(rng.randrange(TENANTS))}.apps.example.com"], 2)
        spec: Obj = {
            "hosts": hosts[: rng.randint(1, 2)],
            "routes": [
                {
                    "name": "all",
                    "backends": [{"service": "web", "port": rng.choice([80, "http", 81])}],
                }
            ],
        }
        if rng.random() < 0.3:
            spec["access"] = {"apiKeys": {"secretName": "keys"}}
        if i % 3 == 0:  # a third of the tenants probe their endpoints
            spec["routes"][0]["healthCheck"] = {"path": "/healthz"}
        text = json.dumps(spec)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "tenant",
            "namespace": ns,
            "creationTimestamp": rng.choice(TIMES),
            "labels": {"tenantgw.io/tenant": "true"},
        },
        "data": {"tenant.yaml": text},
    }


def backend(i: int, rng: random.Random) -> list[Obj]:
    ns = ns_name(i)
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {"ports": [{"name": "http", "port": 80}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "web-1",
                "namespace": ns,
                "labels": {"kubernetes.io/service-name": "web"},
            },
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [
                {"addresses": [f"10.0.{i}.{j}"], "conditions": {"ready": rng.random() < 0.8}}
                for j in range(1, 3)
            ],
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "keys", "namespace": ns},
            "data": {"k": base64.b64encode(f"key-{rng.randrange(3)}".encode()).decode()},
        },
    ]


def ingress(i: int, rng: random.Random) -> Obj:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": "web",
            "namespace": ns_name(i),
            "creationTimestamp": rng.choice(TIMES),
        },
        "spec": {
            "ingressClassName": "tenantgw",
            "rules": [
                {
                    "host": rng.choice(HOSTS[:3]),
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "web", "port": {"number": 80}}},
                            }
                        ]
                    },
                }
            ],
        },
    }


def http_route(i: int, rng: random.Random) -> Obj:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": "web",
            "namespace": ns_name(i),
            "generation": 1,
            "creationTimestamp": rng.choice(TIMES),
        },
        "spec": {
            "parentRefs": [{"name": "gw", "namespace": "infra"}],
            "hostnames": [rng.choice(HOSTS[:3])],
            "rules": [{"backendRefs": [{"name": "web", "port": 80}]}],
        },
    }


def cluster_objects() -> list[Obj]:
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": "tenantgw"},
            "spec": {"controller": INGRESS_CONTROLLER},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": "tenantgw", "generation": 1},
            "spec": {"controllerName": CONTROLLER_NAME},
        },
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "infra"}},
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "infra", "generation": 1},
            "spec": {
                "gatewayClassName": "tenantgw",
                "listeners": [
                    {
                        "name": "http",
                        "protocol": "HTTP",
                        "port": 80,
                        "allowedRoutes": {"namespaces": {"from": "All"}},
                    }
                ],
            },
        },
    ]


def initial_objects(rng: random.Random) -> dict[ObjectKey, Obj]:
    objects: list[Obj] = cluster_objects()
    for i in range(TENANTS):
        objects.append(namespace_obj(i))
        objects.extend(backend(i, rng))
        if i in INGRESS_TENANTS:
            objects.append(ingress(i, rng))
        elif i in ROUTE_TENANTS:
            objects.append(http_route(i, rng))
        else:
            objects.append(config_map(i, rng))
    result = {}
    for obj in objects:
        key = object_key(obj)
        assert key is not None
        result[key] = obj
    return result


def random_change(rng: random.Random, state: dict[ObjectKey, Obj]) -> dict[ObjectKey, Obj | None]:
    """One event as a source would hand it over: an object added, changed or deleted."""
    i = rng.randrange(TENANTS)
    ns = ns_name(i)
    what = rng.random()
    obj: Obj | None
    if what < 0.35:
        if i in INGRESS_TENANTS:
            obj, key = ingress(i, rng), ("Ingress", ns, "web")
        elif i in ROUTE_TENANTS:
            obj, key = http_route(i, rng), ("HTTPRoute", ns, "web")
        else:
            obj, key = config_map(i, rng), ("ConfigMap", ns, "tenant")
        return {key: None if rng.random() < 0.15 else obj}
    if what < 0.65:
        objects = backend(i, rng)
        obj = rng.choice(objects)
        filed = object_key(obj)
        assert filed is not None
        return {filed: obj if rng.random() < 0.9 else None}
    if what < 0.85:
        allowed = rng.choice(["*.example.com", "a.example.com", "*.example.com,b.example.com"])
        obj = namespace_obj(i, allowed)
        return {("Namespace", ns, ns): obj if rng.random() < 0.9 else None}
    # A brand new tenant in a new namespace, claiming a contested host.
    j = TENANTS + rng.randrange(5)
    return {
        ("Namespace", ns_name(j), ns_name(j)): namespace_obj(j),
        ("ConfigMap", ns_name(j), "tenant"): config_map(j, rng),
    }


_ORDER = {kind: i for i, kind in enumerate(KIND_NAMES)}


def ordered(state: dict[ObjectKey, Obj]) -> list[Obj]:
    """As a source lists them: by kind, then namespace and name."""
    return [state[k] for k in sorted(state, key=lambda k: (_ORDER[k[0]], k[1], k[2]))]


class Counting:
    """The compile seam: records which tenants each compile produced plans for."""

    def __init__(self) -> None:
        self.compiled: list[set[str]] = []

    def __call__(
        self,
        objects: Iterable[Any],
        options: CompileOptions,
        previous: Snapshot,
        now: datetime.datetime | None,
        trace: CompileTrace | None,
    ) -> Snapshot:
        snapshot = compile_snapshot(objects, options, previous, now, trace)
        self.compiled.append(set(snapshot.tenants))
        return snapshot


class EqualityTests(SynchronousTestCase):
    def test_random_change_sequences(self) -> None:
        """
        Over random sequences of changes (contested hosts, refused configs,
        deleted namespaces, all three dialects) every incremental snapshot
        equals the full compile of the same objects after the same history.
        """
        rng = random.Random(14)
        modes: dict[str, int] = {MODE_FULL: 0, MODE_INCREMENTAL: 0}
        reasons: collections.Counter[str] = collections.Counter()
        for sequence in range(200):
            state = initial_objects(rng)
            compiler = IncrementalCompiler(OPTIONS, clock=lambda: NOW)
            compiler.replace(ordered(state))
            full = compile_snapshot(ordered(state), OPTIONS, EMPTY_SNAPSHOT, NOW)
            self.assertEqual(compiler.snapshot, full)
            for step in range(4):
                change = random_change(rng, state)
                for key, obj in change.items():
                    if obj is None:
                        state.pop(key, None)
                    else:
                        state[key] = obj
                incremental = compiler.apply(change, NOW)
                modes[compiler.last_mode] += 1
                full = compile_snapshot(ordered(state), OPTIONS, full, NOW)
                if incremental != full:
                    self.fail(f"sequence {sequence} step {step}: {change!r} differs")
            reasons.update(compiler.full_reasons)
        # Both paths were exercised, and the fallbacks for their reasons.
        self.assertGreater(modes[MODE_INCREMENTAL], 250, (modes, reasons))
        self.assertGreater(modes[MODE_FULL], 250, (modes, reasons))
        self.assertGreater(reasons["a HTTPRoute changed"], 20, reasons)
        self.assertGreater(reasons["a Ingress changed"], 20, reasons)

    def test_replace_diffs_full_lists(self) -> None:
        """A source that hands over every object (a directory) is diffed, then spliced."""
        rng = random.Random(7)
        state = {
            k: v for k, v in initial_objects(rng).items() if k[0] not in ("Ingress", "HTTPRoute")
        }
        compiler = IncrementalCompiler(OPTIONS, clock=lambda: NOW)
        compiler.replace(ordered(state))
        state[("ConfigMap", "t03", "tenant")] = config_map(3, rng)
        snapshot = compiler.replace(ordered(state), NOW)
        self.assertEqual(compiler.last_mode, MODE_INCREMENTAL)
        self.assertEqual(snapshot, compile_snapshot(ordered(state), OPTIONS, EMPTY_SNAPSHOT, NOW))

    def test_duplicate_names_compile_in_full(self) -> None:
        """Two objects under one name (two manifest files) are what a full compile sees."""
        rng = random.Random(8)
        objects = ordered(initial_objects(rng))
        twice = [*objects, config_map(3, rng)]
        compiler = IncrementalCompiler(OPTIONS, clock=lambda: NOW)
        snapshot = compiler.replace(twice, NOW)
        self.assertEqual(snapshot, compile_snapshot(twice, OPTIONS, EMPTY_SNAPSHOT, NOW))
        compiler.replace(twice, NOW)
        self.assertEqual(compiler.last_mode, MODE_FULL)


def plain_tenants(count: int) -> dict[ObjectKey, Obj]:
    """Tenants that each claim only their own host: nothing is contested."""
    state: dict[ObjectKey, Obj] = {}
    rng = random.Random(1)
    for i in range(count):
        objects = [namespace_obj(i), *backend(i, rng)]
        cm = config_map(i, rng)
        cm["data"]["tenant.yaml"] = json.dumps(
            {
                "hosts": [f"own-{i}.example.com"],
                "routes": [{"name": "all", "backends": [{"service": "web", "port": 80}]}],
            }
        )
        objects.append(cm)
        for obj in objects:
            key = object_key(obj)
            assert key is not None
            state[key] = obj
    return state


class ScopeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.state = plain_tenants(TENANTS)
        self.counting = Counting()
        self.compiler = IncrementalCompiler(OPTIONS, compile=self.counting, clock=lambda: NOW)
        self.compiler.replace(ordered(self.state))

    def test_one_tenant_change_compiles_one_tenant(self) -> None:
        """An EndpointSlice edit in one namespace compiles that tenant and no other."""
        before = self.compiler.snapshot
        key = ("EndpointSlice", "t07", "web-1")
        edited = json.loads(json.dumps(self.state[key]))
        edited["endpoints"][0]["conditions"]["ready"] = not edited["endpoints"][0]["conditions"][
            "ready"
        ]
        after = self.compiler.apply({key: edited}, NOW)
        self.assertEqual(self.counting.compiled[-1], {"t07"})
        self.assertEqual(self.compiler.last_mode, MODE_INCREMENTAL)
        self.assertEqual(self.compiler.tenants_compiled, TENANTS + 1)
        # Every other tenant's plan is the very object that served before.
        for namespace, plan in after.tenants.items():
            if namespace != "t07":
                self.assertIs(plan, before.tenants[namespace])

    def test_contested_host_compiles_its_claimants(self) -> None:
        """A new claim on another tenant's host compiles both, and only both."""
        key = ("ConfigMap", "t09", "tenant")
        cm = json.loads(json.dumps(self.state[key]))
        cm["data"]["tenant.yaml"] = json.dumps(
            {
                "hosts": ["own-9.example.com", "own-3.example.com"],
                "routes": [{"name": "all", "backends": [{"service": "web", "port": 80}]}],
            }
        )
        cm["metadata"]["creationTimestamp"] = "2020-01-01T00:00:00Z"  # older: it wins
        snapshot = self.compiler.apply({key: cm}, NOW)
        self.assertEqual(self.counting.compiled[-1], {"t03", "t09"})
        self.assertEqual(snapshot.exact_hosts["own-3.example.com"].namespace, "t09")
        self.state[key] = cm
        self.assertEqual(
            snapshot, compile_snapshot(ordered(self.state), OPTIONS, EMPTY_SNAPSHOT, NOW)
        )

    def test_gateway_api_change_compiles_in_full(self) -> None:
        """Listeners are shared by every namespace: their change is not spliced."""
        gateway_class = cluster_objects()[1]
        self.compiler.apply({("GatewayClass", "default", "tenantgw"): gateway_class}, NOW)
        self.assertEqual(self.compiler.last_mode, MODE_FULL)
        self.assertEqual(self.compiler.full_reasons["a GatewayClass changed"], 1)

    def test_certificate_date_forces_full_compile(self) -> None:
        """Past a recorded certificate date, plans of untouched tenants may be stale."""
        self.compiler._dates["t01"] = NOW + datetime.timedelta(days=1)
        self.compiler._boundary = NOW + datetime.timedelta(days=1)
        key = ("EndpointSlice", "t07", "web-1")
        self.compiler.apply({key: self.state[key]}, NOW + datetime.timedelta(days=2))
        self.assertEqual(self.compiler.last_mode, MODE_FULL)


def table_view(table: Any) -> tuple[Any, ...]:
    """A host table by value: which namespace (or nobody) each host key leads to."""

    def name(handler: Any) -> str | None:
        return None if handler is None else handler.namespace

    return (
        {host: name(h) for host, h in table.exact.items()},
        [(suffix, name(h)) for suffix, h in table.wildcards],
        name(table.catch_all),
        {ns: h.compiled for ns, h in table.handlers.items()},
    )


class ServingTreeTests(SynchronousTestCase):
    def test_patched_table_equals_a_built_one(self) -> None:
        """
        Applying each incremental snapshot patches the serving table; it
        leads every host where a table built from scratch leads it, and an
        unchanged tenant keeps its handler.
        """
        from twisted.internet.testing import MemoryReactorClock
        from twisted.python.threadpool import ThreadPool

        from tenantgw.dataplane.gateway import HostTable, gateway_on

        gateway = gateway_on(MemoryReactorClock(), threadpool=ThreadPool())
        rng = random.Random(21)
        state = {k: v for k, v in initial_objects(rng).items() if k[0] not in ("Ingress",)}
        compiler = IncrementalCompiler(OPTIONS, clock=lambda: NOW)
        gateway.apply(compiler.replace(ordered(state), NOW))
        kept = 0
        for _ in range(150):
            before = gateway.table
            change = random_change(rng, state)
            for key, obj in change.items():
                if obj is None:
                    state.pop(key, None)
                else:
                    state[key] = obj
            gateway.apply(compiler.apply(change, NOW))
            self.assertEqual(
                table_view(gateway.table), table_view(HostTable(gateway, gateway.snapshot))
            )
            for namespace, handler in gateway.table.handlers.items():
                if before.handlers.get(namespace) is handler:
                    kept += 1
        self.assertGreater(kept, 50 * TENANTS)


class DeltaTests(SynchronousTestCase):
    """
    A spliced snapshot names the namespaces it may differ in, so that the
    serving table, the health checks, the metrics, the log and the Events
    visit those only instead of 5,000 tenants per change.
    """

    def sequences(self, seed: int, count: int) -> Iterable[tuple[IncrementalCompiler, Snapshot]]:
        rng = random.Random(seed)
        for _ in range(count):
            state = initial_objects(rng)
            compiler = IncrementalCompiler(OPTIONS, clock=lambda: NOW)
            yield compiler, compiler.replace(ordered(state), NOW)
            for _ in range(4):
                change = random_change(rng, state)
                for key, obj in change.items():
                    if obj is None:
                        state.pop(key, None)
                    else:
                        state[key] = obj
                yield compiler, compiler.apply(change, NOW)

    def test_nothing_outside_the_delta_changed(self) -> None:
        """Outside the delta every plan and status is the very object the base had."""
        previous: Snapshot | None = None
        visited = 0
        for compiler, current in self.sequences(33, 30):
            visit = changed_namespaces(current, previous)
            if previous is not None and compiler.last_mode == MODE_INCREMENTAL:
                self.assertIsNotNone(visit)
            if previous is not None and visit is not None:
                visited += 1
                everyone = (
                    previous.tenants.keys()
                    | current.tenants.keys()
                    | previous.statuses.keys()
                    | current.statuses.keys()
                )
                for namespace in everyone - set(visit):
                    self.assertIs(current.tenants.get(namespace), previous.tenants.get(namespace))
                    self.assertIs(current.statuses.get(namespace), previous.statuses.get(namespace))
            previous = current
        self.assertGreater(visited, 40)

    def test_a_delta_is_used_only_from_its_own_base(self) -> None:
        """Skipping a snapshot (a follower, a lost listener call) means a full pass."""
        rng = random.Random(5)
        state = initial_objects(rng)
        compiler = IncrementalCompiler(OPTIONS, clock=lambda: NOW)
        first = compiler.replace(ordered(state), NOW)

        # The same EndpointSlice again, for a tenant whose hosts nobody
        # contests (else the change reaches its rivals too).
        def one_namespace(i: int) -> bool:
            before = compiler.snapshot
            after = compiler.apply({object_key(backend(i, rng)[1]): backend(i, rng)[1]}, NOW)
            return changed_namespaces(after, before) == {ns_name(i)}

        i = next(i for i in range(TENANTS) if one_namespace(i))
        ns = ns_name(i)
        first = compiler.snapshot
        second = compiler.apply({object_key(backend(i, rng)[1]): backend(i, rng)[1]}, NOW)
        third = compiler.apply({object_key(backend(i, rng)[1]): backend(i, rng)[1]}, NOW)
        self.assertEqual(compiler.last_mode, MODE_INCREMENTAL)
        self.assertEqual(set(changed_namespaces(third, second) or ()), {ns})
        self.assertIsNone(changed_namespaces(third, first))
        self.assertIsNone(changed_namespaces(third, None))
        self.assertIsNone(changed_namespaces(first, EMPTY_SNAPSHOT))
        self.assertEqual(changed_namespaces(third, third), ())

    def test_consumers_reach_what_a_full_pass_reaches(self) -> None:
        """
        Fed the same snapshots, each consumer ends where one that compares
        every namespace ends: the health checks probe the same endpoints,
        the reload gauge reads the same, and the same Events were posted.
        """
        from twisted.internet.testing import MemoryReactorClock
        from twisted.python.threadpool import ThreadPool

        from tenantgw.admin.metrics import Metrics
        from tenantgw.dataplane.gateway import gateway_on, probe_targets
        from tenantgw.plans.snapshot import STATE_REJECTED
        from tenantgw.status.events import StatusEvents
        from tests.test_events import _CallFromThread, _ImmediatePool

        def events(posted: dict[str, str]) -> StatusEvents:
            def post(namespace: str, event: dict[str, Any], resync: bool) -> str:
                posted[namespace] = event["message"]
                return "created"

            return StatusEvents(
                post, _CallFromThread(), threadpool=_ImmediatePool(), now=lambda: NOW
            )

        gateway = gateway_on(MemoryReactorClock(), threadpool=ThreadPool())
        metrics = Metrics()
        posted: dict[str, str] = {}
        listener = events(posted)
        probing = 0
        for _, snapshot in self.sequences(8, 20):
            gateway.apply(snapshot)
            metrics.snapshot_applied(snapshot)
            listener.snapshot_applied(snapshot)
            wanted = probe_targets(snapshot)
            probing += bool(wanted)
            self.assertEqual(set(gateway.active_checks._loops), wanted)
            refused = any(s.state == STATE_REJECTED for s in snapshot.statuses.values())
            self.assertEqual(
                metrics.config_last_reload_successful._value.get(), 0 if refused else 1
            )
            fresh: dict[str, str] = {}
            events(fresh).snapshot_applied(snapshot)
            self.assertEqual({ns: posted[ns] for ns in fresh}, fresh)
        gateway.stop()
        self.assertGreater(probing, 50)


class KubernetesSourceTests(SynchronousTestCase):
    def test_changes_handed_over_compile_as_everything(self) -> None:
        """
        What the Kubernetes source hands over after its first rebuild is
        only what changed; compiling that gives the snapshot a compile of
        every object it holds gives.
        """
        from twisted.internet.task import Clock

        from tenantgw.sources.kinds import KINDS
        from tenantgw.sources.kubernetes import KubernetesSource

        clock = Clock()
        compiler = IncrementalCompiler(OPTIONS, clock=lambda: NOW)
        calls: list[str] = []

        def everything(objects: list[Any]) -> None:
            calls.append("all")
            compiler.replace(objects, NOW)

        def changes(delta: Any) -> None:
            calls.append("delta")
            compiler.apply(delta, NOW)

        source = KubernetesSource(None, clock, everything, on_changes=changes)
        rng = random.Random(5)
        state = initial_objects(rng)
        for kind in [k.kind for k in KINDS]:
            source.listed(kind, [o for k, o in state.items() if k[0] == kind])
        clock.advance(1)
        for _ in range(120):
            for (kind, _, _), obj in random_change(rng, state).items():
                if obj is None:
                    continue
                event = "DELETED" if rng.random() < 0.1 else "MODIFIED"
                source.changed(kind, event, obj)
                state_key = object_key(obj)
                if event == "DELETED" and state_key is not None:
                    state.pop(state_key, None)
            # The Secret reader's round: every wanted Secret, read by name.
            source.listed(
                "Secret",
                [o for k, o in state.items() if k[0] == "Secret" and source._wants_secret(k[1:])],
            )
            clock.advance(1)
            self.assertEqual(
                compiler.snapshot,
                compile_snapshot(source.store.all_objects(), OPTIONS, compiler.snapshot, NOW),
            )
        self.assertEqual(calls[0], "all")
        self.assertGreater(calls.count("delta"), 40)
