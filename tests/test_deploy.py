"""
deploy/ renders with C{kubectl kustomize}, every object is valid against the
Kubernetes schemas, and the security properties the design relies on hold.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import kubernetes_validate
import yaml
from kubernetes_validate.utils import latest_version
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from twisted.trial.unittest import SynchronousTestCase

from tenantgw.compile.compiler import CompileOptions, compile_snapshot
from tenantgw.compile.selector import LabelSelector
from tenantgw.plans.snapshot import STATE_ACCEPTED
from tenantgw.sources.kinds import KINDS
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
        self.monitoring = render("monitoring")

    def test_every_object_is_valid_against_the_schemas(self) -> None:
        """The ServiceMonitor is a CRD the schemas do not know: ServiceMonitorTests."""
        version = latest_version()
        for obj in self.base + self.tenant + self.monitoring:
            if obj["apiVersion"] == "monitoring.coreos.com/v1":
                continue
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

    def test_cluster_role_grants_reading_what_is_watched_and_writing_statuses_and_events(
        self,
    ) -> None:
        (role,) = by_kind(self.base, "ClusterRole")
        granted: dict[tuple[str, str], set[str]] = {}
        for rule in role["rules"]:
            self.assertNotIn("resourceNames", rule)
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted.setdefault((group, resource), set()).update(rule["verbs"])
        read = {"get", "list", "watch"}
        # From the one list of kinds: a kind added to it without RBAC fails here.
        expected = {(k.group, k.plural): set(k.verbs) for k in KINDS}
        # Every kind is watched, but Secrets: those are read by name, get only.
        self.assertEqual({k.kind for k in KINDS} - {k.kind for k in watched_kinds()}, {"Secret"})
        self.assertTrue(all(set(k.verbs) == read for k in KINDS if k.kind != "Secret"))
        self.assertEqual(granted[("", "secrets")], {"get"})
        # Statuses through the status subresources only: the objects stay read-only.
        for k in KINDS:
            if k.status_verbs:
                expected[(k.group, k.status_resource)] = set(k.status_verbs)
        self.assertEqual(
            {r for (_, r) in expected if r.endswith("/status")},
            {
                "ingresses/status",
                "httproutes/status",
                "grpcroutes/status",
                "gateways/status",
                "gatewayclasses/status",
            },
        )
        self.assertTrue(all(v <= {"update", "patch"} for (_, r), v in expected.items() if "/" in r))
        # get: a repeated status raises the count of the Event already there.
        expected[("", "events")] = {"get", "create", "patch"}
        expected[("events.k8s.io", "events")] = {"create", "patch"}
        self.assertEqual(granted, expected)

    def test_leases_only_in_the_gateways_namespace(self) -> None:
        """Leader election: a namespaced Role, so no other Lease can be taken over."""
        (role,) = by_kind(self.base, "Role")
        self.assertEqual(role["metadata"]["namespace"], "tenantgw-system")
        self.assertEqual(
            role["rules"],
            [
                {
                    "apiGroups": ["coordination.k8s.io"],
                    "resources": ["leases"],
                    "verbs": ["get", "create", "update"],
                }
            ],
        )
        (binding,) = by_kind(self.base, "RoleBinding")
        self.assertEqual(binding["metadata"]["namespace"], "tenantgw-system")
        self.assertEqual(binding["roleRef"]["name"], role["metadata"]["name"])
        self.assertEqual(
            binding["subjects"],
            [{"kind": "ServiceAccount", "name": "tenantgw", "namespace": "tenantgw-system"}],
        )

    def test_gateway_deployment(self) -> None:
        deployment = next(
            d for d in by_kind(self.base, "Deployment") if d["metadata"]["name"] == "tenantgw"
        )
        spec = deployment["spec"]
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


def gateway_deployment(objects: list[Obj]) -> Obj:
    return next(d for d in by_kind(objects, "Deployment") if d["metadata"]["name"] == "tenantgw")


def flag(args: list[str], name: str) -> str | None:
    for arg in args:
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A label selector with matchLabels only (what deploy/ uses); {} selects all."""
    assert set(selector) <= {"matchLabels"}, selector
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def policy_admits(
    policy: Obj,
    container_ports: Mapping[str, int],
    port: int,
    source_namespace: Mapping[str, str],
    source_pod: Mapping[str, str],
    same_namespace: bool = False,
) -> bool:
    """
    NetworkPolicy ingress semantics, for the shapes deploy/ uses: a rule
    admits when one of its ports is C{port} (by number or container port
    name; no ports = all) and one of its peers matches (no from = anyone;
    namespaceSelector and podSelector in one peer are ANDed; a podSelector
    alone means the policy's own namespace).
    """
    for rule in policy["spec"].get("ingress", []):
        ports = rule.get("ports")
        if ports is not None and not any(
            container_ports.get(p["port"], p["port"]) == port for p in ports
        ):
            continue
        peers = rule.get("from")
        if peers is None:
            return True
        for peer in peers:
            assert "ipBlock" not in peer
            namespace_selector = peer.get("namespaceSelector")
            namespace_ok = (
                selector_matches(namespace_selector, source_namespace)
                if namespace_selector is not None
                else same_namespace
            )
            pod_ok = selector_matches(peer.get("podSelector", {}), source_pod)
            if namespace_ok and pod_ok:
                return True
    return False


class RolloutTests(SynchronousTestCase):
    """Rolling, scaling and evicting the gateway loses no request."""

    def setUp(self) -> None:
        self.base = render("base")
        self.deployment = gateway_deployment(self.base)
        self.pod = self.deployment["spec"]["template"]["spec"]
        (self.container,) = self.pod["containers"]

    def test_no_replicas_field_the_hpa_owns_the_count(self) -> None:
        self.assertNotIn("replicas", self.deployment["spec"])
        (hpa,) = by_kind(self.base, "HorizontalPodAutoscaler")
        self.assertEqual(hpa["spec"]["scaleTargetRef"]["name"], "tenantgw")
        self.assertGreaterEqual(hpa["spec"]["minReplicas"], 2)

    def test_prestop_sleep_then_drain_within_the_grace_period(self) -> None:
        pre_stop = self.container["lifecycle"]["preStop"]
        command = pre_stop["exec"]["command"]
        self.assertEqual(command[0], "sleep")
        sleep = float(command[1])
        self.assertGreaterEqual(sleep, 5)
        drain = float(flag(self.container["args"], "drain-timeout") or 30)
        grace = self.pod["terminationGracePeriodSeconds"]
        # The kubelet counts the preStop hook inside the grace period.
        self.assertGreaterEqual(grace, sleep + drain + 5, (grace, sleep, drain))
        self.assertNotEqual(grace, drain)

    def test_replicas_flag_is_the_hpa_floor(self) -> None:
        (hpa,) = by_kind(self.base, "HorizontalPodAutoscaler")
        self.assertEqual(
            int(flag(self.container["args"], "replicas") or 1), hpa["spec"]["minReplicas"]
        )

    def test_pdb_allows_one_eviction_at_a_time(self) -> None:
        (pdb,) = by_kind(self.base, "PodDisruptionBudget")
        self.assertEqual(pdb["spec"]["maxUnavailable"], 1)
        self.assertNotIn("minAvailable", pdb["spec"])
        self.assertTrue(
            selector_matches(
                pdb["spec"]["selector"], self.deployment["spec"]["template"]["metadata"]["labels"]
            )
        )


class AdminExposureTests(SynchronousTestCase):
    """The admin port (tenant configs, endpoints, errors) is for monitoring only."""

    def setUp(self) -> None:
        self.base = render("base")
        self.monitoring = render("monitoring")
        deployment = gateway_deployment(self.base)
        self.pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        self.ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        (self.policy,) = [
            p for p in by_kind(self.base, "NetworkPolicy") if p["metadata"]["name"] == "tenantgw"
        ]

    def admits(self, port: str, namespace: dict[str, str], pod: dict[str, str]) -> bool:
        return policy_admits(self.policy, self.ports, self.ports[port], namespace, pod)

    def test_policy_covers_the_gateway_pods(self) -> None:
        self.assertTrue(selector_matches(self.policy["spec"]["podSelector"], self.pod_labels))
        self.assertIn("Ingress", self.policy["spec"]["policyTypes"])
        self.assertEqual(self.policy["metadata"]["namespace"], "tenantgw-system")

    def test_who_reaches_which_port(self) -> None:
        monitoring = {"kubernetes.io/metadata.name": "monitoring"}
        prometheus = {"app.kubernetes.io/name": "prometheus"}
        tenant_namespace = {
            "kubernetes.io/metadata.name": "shop",
            "tenantgw.io/tenant-namespace": "true",
        }
        # A tenant labels its own pods as it likes, but not its namespace.
        sneaky_pod = {"tenantgw.io/admin-access": "true", "app.kubernetes.io/name": "prometheus"}
        granted_namespace = {
            "kubernetes.io/metadata.name": "ops",
            "tenantgw.io/admin-access": "true",
        }
        granted_pod = {"tenantgw.io/admin-access": "true"}
        cases = [
            # (source namespace, source pod, admin reachable)
            (monitoring, prometheus, True),
            (monitoring, {"app.kubernetes.io/name": "grafana"}, False),
            (tenant_namespace, sneaky_pod, False),
            (tenant_namespace, {}, False),
            (granted_namespace, granted_pod, True),
            (granted_namespace, {}, False),
            (
                {"kubernetes.io/metadata.name": "tenantgw-system"},
                {"app.kubernetes.io/name": "tenantgw-redis"},
                False,
            ),
        ]
        for namespace, pod, admin in cases:
            self.assertEqual(self.admits("admin", namespace, pod), admin, (namespace, pod))
            # The listeners serve everyone.
            for listener in ("http", "https"):
                self.assertTrue(self.admits(listener, namespace, pod), (listener, namespace, pod))

    def test_metrics_service_apart_from_the_load_balancer(self) -> None:
        services = {s["metadata"]["name"]: s for s in by_kind(self.base, "Service")}
        metrics = services["tenantgw-metrics"]
        self.assertEqual(metrics["spec"]["type"], "ClusterIP")
        self.assertTrue(
            selector_matches({"matchLabels": metrics["spec"]["selector"]}, self.pod_labels)
        )
        (port,) = metrics["spec"]["ports"]
        self.assertEqual((port["name"], port["targetPort"]), ("metrics", "admin"))
        public = services["tenantgw"]
        self.assertEqual(
            sorted(p["targetPort"] for p in public["spec"]["ports"]), ["http", "https"]
        )

    def test_service_monitor_fields(self) -> None:
        """Checked by hand: kubernetes-validate does not know the CRD."""
        (monitor,) = self.monitoring
        self.assertEqual(
            (monitor["apiVersion"], monitor["kind"]), ("monitoring.coreos.com/v1", "ServiceMonitor")
        )
        self.assertEqual(monitor["metadata"]["namespace"], "tenantgw-system")
        spec = monitor["spec"]
        self.assertEqual(
            set(spec), {"selector", "namespaceSelector", "endpoints"}, "unexpected spec fields"
        )
        services = by_kind(self.base, "Service")
        selected = [
            s for s in services if selector_matches(spec["selector"], s["metadata"]["labels"])
        ]
        self.assertEqual([s["metadata"]["name"] for s in selected], ["tenantgw-metrics"])
        self.assertEqual(spec["namespaceSelector"], {"matchNames": ["tenantgw-system"]})
        (endpoint,) = spec["endpoints"]
        self.assertLessEqual(set(endpoint), {"port", "path", "scheme", "interval", "scrapeTimeout"})
        self.assertEqual(endpoint["port"], selected[0]["spec"]["ports"][0]["name"])
        self.assertEqual((endpoint["path"], endpoint["scheme"]), ("/metrics", "http"))
        duration = re.compile(r"^(\d+(ms|s|m|h))+$")
        self.assertRegex(endpoint["interval"], duration)
        self.assertRegex(endpoint["scrapeTimeout"], duration)
        seconds = lambda d: int(d[:-1])  # noqa: E731 - "15s"
        self.assertLess(seconds(endpoint["scrapeTimeout"]), seconds(endpoint["interval"]))


def setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    return config


def dockerfile() -> str:
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        return f.read()


def load_script(name: str) -> Any:
    path = os.path.join(ROOT, "scripts", name)
    spec = importlib.util.spec_from_file_location(name.replace("-", "_").removesuffix(".py"), path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ImageTests(SynchronousTestCase):
    """The image is versioned and reproducible."""

    def test_image_tag_is_the_release_version(self) -> None:
        base = render("base")
        version = setup_cfg()["metadata"]["version"]
        images = [
            c["image"]
            for d in by_kind(base, "Deployment")
            for c in d["spec"]["template"]["spec"]["containers"]
        ]
        self.assertIn(f"tenantgw:{version}", images)
        for image in images:
            self.assertNotIn(":latest", image)
            self.assertRegex(image, r":\d+(\.\d+)+", image)

    def test_base_image_is_a_python_that_tox_tests(self) -> None:
        text = dockerfile()
        (image,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
        match = re.fullmatch(r"python:(\d+)\.(\d+)[\w.-]*(@sha256:[0-9a-f]{64})?", image)
        self.assertIsNotNone(match, image)
        assert match is not None
        froms = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
        self.assertEqual(set(froms), {"${PYTHON_IMAGE}"})
        tox = configparser.ConfigParser()
        tox.read(os.path.join(ROOT, "tox.ini"))
        envs = [e.strip() for e in tox["tox"]["env_list"].split(",")]
        self.assertIn(f"py{match.group(1)}{match.group(2)}", envs)

    def test_dependencies_come_from_the_constraints_file(self) -> None:
        text = dockerfile()
        self.assertIn("COPY constraints.txt", text)
        self.assertIn("pip install --constraint /tmp/constraints.txt", text)
        self.assertIn("not pinned by constraints.txt", text)

    def test_constraints_pin_exactly_the_runtime_dependencies(self) -> None:
        script = load_script("update-constraints.py")
        python = script.image_python()
        with open(os.path.join(ROOT, "constraints.txt")) as f:
            lines = [line.strip() for line in f if line.strip() and not line.startswith("#")]
        pins = {}
        for line in lines:
            name, _, version = line.partition("==")
            self.assertTrue(version, f"not an exact pin: {line}")
            pins[canonicalize_name(name)] = version
        closure = set(script.runtime_closure(python))
        if f"{sys.version_info[0]}.{sys.version_info[1]}" == python:
            # The image's Python (tox's env of that version): the installed
            # closure is exactly what the image installs.
            self.assertEqual(set(pins), closure)
        else:
            # Another Python resolves some packages to other versions with
            # other requirements (six on 3.10): no pin may be stray, but the
            # closure may hold more.
            self.assertLessEqual(set(pins), closure)
        # Each pin satisfies setup.cfg's own requirement on it.
        for text in setup_cfg()["options"]["install_requires"].strip().splitlines():
            requirement = Requirement(text)
            pinned = pins[canonicalize_name(requirement.name)]
            self.assertTrue(
                requirement.specifier.contains(pinned, prereleases=True), (text, pinned)
            )
        # Test and dev tools stay out of the image.
        for tool in ("treq", "hypothesis", "ruff", "mypy", "tox", "kubernetes-validate"):
            self.assertNotIn(tool, pins)

    def test_pin_base_image_writes_the_digest(self) -> None:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(directory, "bin"))
        digest = "sha256:" + "0123456789abcdef" * 4
        crane = os.path.join(directory, "bin", "crane")
        with open(crane, "w") as f:
            f.write(f'#!/bin/sh\n[ "$1" = digest ] && echo "$2" >> "$0.log" && echo {digest}\n')
        os.chmod(crane, stat.S_IRWXU)
        copy = os.path.join(directory, "Dockerfile")
        with open(copy, "w") as f:
            f.write(dockerfile())
        env = {**os.environ, "PATH": f"{directory}/bin:{os.environ['PATH']}", "DOCKERFILE": copy}
        script = os.path.join(ROOT, "scripts", "pin-base-image.sh")
        subprocess.run(["bash", script], env=env, check=True, capture_output=True, timeout=30)
        with open(copy) as f:
            pinned = f.read()
        (image,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", pinned, re.MULTILINE)
        (current,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile(), re.MULTILINE)
        self.assertEqual(image, current.split("@")[0] + "@" + digest)
        # Run again (a newer base): the tag is kept, the digest replaced, not appended.
        subprocess.run(["bash", script], env=env, check=True, capture_output=True, timeout=30)
        with open(copy) as f:
            self.assertEqual(f.read(), pinned)
        with open(crane + ".log") as f:
            self.assertEqual(f.read().split(), [current.split("@")[0]] * 2)
        # A reply that is not a digest changes nothing.
        with open(crane, "w") as f:
            f.write("#!/bin/sh\necho 'UNAUTHORIZED'\n")
        result = subprocess.run(["bash", script], env=env, capture_output=True, timeout=30)
        self.assertEqual(result.returncode, 1)
        with open(copy) as f:
            self.assertEqual(f.read(), pinned)
