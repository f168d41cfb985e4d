"""
How long one snapshot rebuild takes for a cluster of N tenants (default
1,000), each with a Namespace, a Tenant ConfigMap (two routes, quota, an
API-key scope), a Service, an EndpointSlice with three ready endpoints and
an API-key Secret.

"cold" is the first compile in a process (every tenant.yaml parsed);
"rebuild" is what the Kubernetes source does after an event: the same
objects plus one change, compiled against the previous snapshot, so
unchanged tenant.yaml texts come from the parse cache.  "rebuild and
apply" adds what the gateway does next: building the serving tree.
"unrelated update" is the reactor time the Kubernetes source spends on one
EndpointSlice update in a namespace nothing routes to (kube-system): it is
stored and dropped from the rebuild, so no compile follows.

    python benchmarks/compile_rebuild.py [TENANTS] [REPEATS]
"""

from __future__ import annotations

import base64
import statistics
import sys
import time
from typing import Any

from tenantgw.compile.compiler import CompileOptions, compile_snapshot
from tenantgw.sources.kubernetes import ObjectStore

TENANT_YAML = """\
hosts: [{ns}.example.com]
quota: {{requestsPerSecond: 100, burst: 200}}
access:
  apiKeys: {{secretName: keys}}
routes:
  - name: api
    match: {{path: /api, methods: [GET, POST]}}
    backends: [{{service: web, port: http, weight: 90}}]
  - name: all
    backends: [{{service: web, port: 80}}]
"""


def tenant_objects(i: int) -> list[dict[str, Any]]:
    ns = f"tenant-{i:05d}"
    created = f"2024-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z"
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": ns,
                "annotations": {"tenantgw.io/allowed-hosts": f"{ns}.example.com"},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "tenant",
                "namespace": ns,
                "creationTimestamp": created,
                "labels": {"tenantgw.io/tenant": "true"},
            },
            "data": {"tenant.yaml": TENANT_YAML.format(ns=ns)},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "keys", "namespace": ns},
            "data": {"ci": base64.b64encode(f"key-{i}".encode()).decode()},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "web-1",
                "namespace": ns,
                "labels": {"kubernetes.io/service-name": "web"},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [
                {"addresses": [f"10.{i // 250}.{i % 250}.{j}"], "conditions": {"ready": True}}
                for j in range(1, 4)
            ],
        },
    ]


def main(tenants: int = 1000, repeats: int = 10) -> None:
    objects = [obj for i in range(tenants) for obj in tenant_objects(i)]
    store = ObjectStore(["Namespace", "ConfigMap", "Secret", "Service", "EndpointSlice"])
    for obj in objects:
        store.objects[obj["kind"]][
            (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        ] = obj
    store.update_references()
    options = CompileOptions()

    started = time.perf_counter()
    snapshot = compile_snapshot(store.all_objects(), options)
    cold = time.perf_counter() - started
    accepted = sum(1 for s in snapshot.statuses.values() if s.state == "Accepted")
    assert accepted == tenants, [s for s in snapshot.statuses.values() if s.state != "Accepted"][:3]

    timings = []
    for r in range(repeats):
        slice_ = store.objects["EndpointSlice"][("tenant-00000", "web-1")]
        slice_["endpoints"][0]["conditions"]["ready"] = r % 2 == 0
        started = time.perf_counter()
        snapshot = compile_snapshot(store.all_objects(), options, snapshot)
        timings.append(time.perf_counter() - started)
    # What the gateway does per rebuild: compile, then build the serving tree.
    from twisted.internet import reactor

    from tenantgw.admin.resource import Readiness
    from tenantgw.app.pipeline import ConfigPipeline
    from tenantgw.dataplane.gateway import gateway_on

    pipeline = ConfigPipeline(gateway_on(reactor), options, Readiness())
    pipeline.objects_changed(store.all_objects())
    applied = []
    for r in range(repeats):
        slice_ = store.objects["EndpointSlice"][("tenant-00000", "web-1")]
        slice_["endpoints"][0]["conditions"]["ready"] = r % 2 == 0
        started = time.perf_counter()
        pipeline.objects_changed(store.all_objects())
        applied.append(time.perf_counter() - started)

    unrelated, rebuilds = unrelated_update_cost(objects, repeats * 100)
    p50, p99 = incremental_change_cost(objects, 50)

    print(f"{tenants} tenants, {len(objects)} objects")
    print(f"cold compile (every tenant.yaml parsed): {cold * 1000:.0f} ms")
    print(
        f"rebuild after one change: median {statistics.median(timings) * 1000:.0f} ms,"
        f" max {max(timings) * 1000:.0f} ms over {repeats}"
    )
    print(
        f"rebuild and apply (compile + serving tree): median"
        f" {statistics.median(applied) * 1000:.0f} ms, max {max(applied) * 1000:.0f} ms"
    )
    print(
        f"unrelated EndpointSlice update (kube-system): {unrelated * 1e6:.1f} us on the reactor,"
        f" {rebuilds} rebuilds"
    )
    print(
        f"one tenant change, incremental (event to snapshot serving): p50 {p50 * 1000:.2f} ms,"
        f" p99 {p99 * 1000:.2f} ms over 50"
    )


def unrelated_update_cost(objects: list[dict[str, Any]], updates: int) -> tuple[float, int]:
    """Median seconds per unrelated update through KubernetesSource.changed, and rebuilds."""
    from twisted.internet.task import Clock

    from tenantgw.sources.kinds import KINDS
    from tenantgw.sources.kubernetes import KubernetesSource

    clock = Clock()
    source = KubernetesSource(None, clock, lambda objects: None)
    for kind in [k.kind for k in KINDS]:
        source.listed(kind, [o for o in objects if o["kind"] == kind])
    clock.advance(1)
    before = source.rebuilds
    timings = []
    for i in range(updates):
        slice_ = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "kube-dns",
                "namespace": "kube-system",
                "labels": {"kubernetes.io/service-name": "kube-dns"},
            },
            "endpoints": [{"addresses": [f"10.96.{i // 250 % 250}.{i % 250}"]}],
        }
        started = time.perf_counter()
        source.changed("EndpointSlice", "MODIFIED", slice_)
        timings.append(time.perf_counter() - started)
        clock.advance(1)
    return statistics.median(timings), source.rebuilds - before


def incremental_change_cost(objects: list[dict[str, Any]], changes: int) -> tuple[float, float]:
    """
    p50 and p99 seconds from one tenant's EndpointSlice event to its snapshot
    serving: KubernetesSource.changed, the coalesced rebuild handing over
    only the change, the incremental compile, and the patched serving tree.
    """
    import copy

    from twisted.internet.task import Clock
    from twisted.python.threadpool import ThreadPool

    from tenantgw.admin.resource import Readiness
    from tenantgw.app.pipeline import ConfigPipeline
    from tenantgw.dataplane.gateway import gateway_on
    from tenantgw.sources.kinds import KINDS
    from tenantgw.sources.kubernetes import KubernetesSource

    clock = Clock()
    gateway = gateway_on(clock, threadpool=ThreadPool())
    pipeline = ConfigPipeline(gateway, CompileOptions(), Readiness())
    source = KubernetesSource(
        None, clock, pipeline.objects_changed, on_changes=pipeline.objects_delta
    )
    for kind in [k.kind for k in KINDS]:
        source.listed(kind, [o for o in objects if o["kind"] == kind])
    clock.advance(1)
    timings = []
    for r in range(changes):
        slice_ = copy.deepcopy(source.store.objects["EndpointSlice"][("tenant-00007", "web-1")])
        slice_["endpoints"][0]["conditions"]["ready"] = r % 2 == 1
        started = time.perf_counter()
        source.changed("EndpointSlice", "MODIFIED", slice_)
        clock.advance(1)
        timings.append(time.perf_counter() - started)
    assert pipeline.compiler.compiles["incremental"] == changes, pipeline.compiler.compiles
    timings.sort()
    return statistics.median(timings), timings[max(0, int(len(timings) * 0.99) - 1)]


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
