"""
deploy/ renders with C{kubectl kustomize}, every object is valid against the
Kubernetes schemas, and the security properties the design relies on hold.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import kubernetes_validate
import yaml
from kubernetes_validate.utils import latest_version
from twisted.trial.unittest import SynchronousTestCase

from tenantgw.compile.compiler import CompileOptions, compile_snapshot
from tenantgw.compile.selector import LabelSelector
from tenantgw.compile.snapshot import STATE_ACCEPTED
from tenantgw.sources.kubernetes import watched_kinds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KUBECTL = shutil.which("kubectl")

Obj = dict[str, Any]


def render(directory: str) -> list[Obj]:
    if KUBECTL is None:
        raise AssertionError("kubectl is needed to render deploy/ (kubectl kustomize)")
    output = subprocess.run(
        [KUBECTL, "kustomize", os.path.join(ROOT, "deploy", directory)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def by_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


class ManifestTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.base = render("base")
        self.tenant = render("example-tenant")

    def test_every_object_is_valid_against_the_schemas(self) -> None:
        version = latest_version()
        for obj in self.base + self.tenant:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                self.fail(f"{obj['kind']}/{obj['metadata']['name']}: {e.message}")

    def test_the_base_holds_every_part(self) -> None:
        kinds = sorted({o["kind"] for o in self.base})
        for kind in (
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Service",
            "PodDisruptionBudget",
            "HorizontalPodAutoscaler",
        ):
            self.assertIn(kind, kinds)
        names = {o["metadata"]["name"] for o in by_kind(self.base, "Deployment")}
        self.assertEqual(names, {"tenantgw", "tenantgw-redis"})

    def test_cluster_role_grants_only_reading_what_is_watched_and_writing_events(self) -> None:
        (role,) = by_kind(self.base, "ClusterRole")
        granted: dict[tuple[str, str], set[str]] = {}
        for rule in role["rules"]:
            self.assertNotIn("resourceNames", rule)
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted.setdefault((group, resource), set()).update(rule["verbs"])
        read = {"get", "list", "watch"}
        plurals = {
            "Namespace": ("", "namespaces"),
            "ConfigMap": ("", "configmaps"),
            "Secret": ("", "secrets"),
            "Service": ("", "services"),
            "EndpointSlice": ("discovery.k8s.io", "endpointslices"),
        }
        expected = {plurals[k.kind]: read for k in watched_kinds()}
        expected[("", "events")] = {"create", "patch"}
        expected[("events.k8s.io", "events")] = {"create", "patch"}
        self.assertEqual(granted, expected)

    def test_gateway_deployment(self) -> None:
        deployment = next(
            d for d in by_kind(self.base, "Deployment") if d["metadata"]["name"] == "tenantgw"
        )
        spec = deployment["spec"]
        self.assertEqual(spec["replicas"], 2)
        pod = spec["template"]["spec"]
        self.assertTrue(pod["securityContext"]["runAsNonRoot"])
        self.assertIn("podAntiAffinity", pod["affinity"])
        (container,) = pod["containers"]
        self.assertTrue(container["securityContext"]["readOnlyRootFilesystem"])
        self.assertFalse(container["securityContext"]["allowPrivilegeEscalation"])
        self.assertEqual(container["livenessProbe"]["httpGet"]["path"], "/healthz")
        self.assertEqual(container["readinessProbe"]["httpGet"]["path"], "/readyz")
        self.assertIn("--admin=tcp:9090", container["args"])
        self.assertIn("--source=kubernetes", container["args"])
        self.assertIn("requests", container["resources"])
        self.assertEqual(pod["serviceAccountName"], "tenantgw")

    def test_service_is_a_load_balancer(self) -> None:
        service = next(
            s for s in by_kind(self.base, "Service") if s["metadata"]["name"] == "tenantgw"
        )
        self.assertEqual(service["spec"]["type"], "LoadBalancer")

    def test_example_tenant_is_selected_and_accepted(self) -> None:
        (deployment, _) = sorted(
            by_kind(self.base, "Deployment"), key=lambda d: d["metadata"]["name"]
        )
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        selector = next(a.split("=", 1)[1] for a in args if a.startswith("--namespace-selector"))
        options = CompileOptions(namespace_selector=LabelSelector.parse(selector))
        snapshot = compile_snapshot(self.tenant, options)
        self.assertEqual(snapshot.statuses["shop"].state, STATE_ACCEPTED)
        self.assertIn("shop.example.com", snapshot.statuses["shop"].hosts)
