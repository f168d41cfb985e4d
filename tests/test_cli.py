"""``tenantgw check``: the offline validator tenants run in their own CI."""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from tenantgw.app.cli import main

GOOD_TENANT = """\
routes:
  - name: web
    backends: [{service: web, port: 80}]
"""

BAD_TENANT = """\
routes:
  - name: web
    backends: [{service: web, port: 80}]
  - name: api
    backends: [{service: other-ns/api, port: 99999}]
"""


def manifests(tenant_yaml: str, namespace: str = "shop", hosts: str = "") -> str:
    indented = "".join(f"    {line}\n" for line in tenant_yaml.splitlines())
    return (
        f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n"
        f"  annotations: {{tenantgw.io/allowed-hosts: '{hosts}'}}\n---\n"
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: tenant\n  namespace: {namespace}\n"
        f"  labels: {{tenantgw.io/tenant: 'true'}}\ndata:\n  tenant.yaml: |\n{indented}"
    )


class CheckTests(SynchronousTestCase):
    def run_check(self, *files: tuple[str, str], extra: tuple[str, ...] = ()) -> tuple[int, str]:
        directory = self.mktemp()
        os.makedirs(directory)
        paths = []
        for name, text in files:
            path = os.path.join(directory, name)
            with open(path, "w") as f:
                f.write(text)
            paths.append(path)
        out = io.StringIO()
        sys_stdout, sys.stdout = sys.stdout, out
        try:
            status = main(["check", *extra, *paths])
        finally:
            sys.stdout = sys_stdout
        return status, out.getvalue()

    def test_valid_manifests_pass(self) -> None:
        status, output = self.run_check(("shop.yaml", manifests(GOOD_TENANT)))
        self.assertEqual(status, 0, output)
        self.assertIn("shop/tenant: Accepted", output)

    def test_every_error_is_printed_with_its_field_path(self) -> None:
        status, output = self.run_check(("shop.yaml", manifests(BAD_TENANT)))
        self.assertEqual(status, 1)
        self.assertIn("shop/tenant: Rejected", output)
        self.assertIn("routes[1].backends[0].service", output)
        self.assertIn("routes[1].backends[0].port", output)

    def test_bare_tenant_yaml(self) -> None:
        status, output = self.run_check(("tenant.yaml", GOOD_TENANT))
        self.assertEqual((status, output.splitlines()[0].endswith("valid tenant.yaml")), (0, True))
        status, output = self.run_check(("tenant.yaml", BAD_TENANT))
        self.assertEqual(status, 1)
        self.assertIn("tenant.yaml: error: routes[1].backends[0].port", output)

    def test_host_outside_allowance_and_conflicts_fail(self) -> None:
        claims = "hosts: [shop.example.com]\n" + GOOD_TENANT
        status, output = self.run_check(("a.yaml", manifests(claims)))
        self.assertEqual(status, 1)
        self.assertIn("hosts[0]", output)
        status, output = self.run_check(
            ("a.yaml", manifests(claims, "a", "shop.example.com")),
            ("b.yaml", manifests(claims, "b", "shop.example.com")),
        )
        self.assertEqual(status, 1)
        self.assertIn("HostConflict", output)

    def test_unparseable_file_fails(self) -> None:
        status, output = self.run_check(("broken.yaml", "kind: [\n"))
        self.assertEqual(status, 1)
        self.assertIn("broken.yaml: error: not valid YAML", output)

    def test_runs_as_a_program(self) -> None:
        """The module runs in a real process, as the console script does."""
        result = subprocess.run(
            [sys.executable, "-m", "tenantgw.app.cli", "check", "--help"],
            capture_output=True,
            text=True,
            check=False,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("FILE_OR_DIR", result.stdout)


def console_script() -> list[str]:
    """The installed C{tenantgw} console script, next to this interpreter."""
    script = os.path.join(os.path.dirname(sys.executable), "tenantgw")
    if os.path.exists(script):
        return [script]
    return [sys.executable, "-m", "tenantgw.app.cli"]  # pragma: no cover


def config_map(tenant_yaml: str, namespace: str | None = "shop", name: str = "tenant") -> str:
    indented = "".join(f"    {line}\n" for line in tenant_yaml.splitlines())
    where = f"  namespace: {namespace}\n" if namespace else ""
    return (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n{where}"
        f"  labels: {{tenantgw.io/tenant: 'true'}}\ndata:\n  tenant.yaml: |\n{indented}"
    )


def namespace_object(name: str = "shop", labels: str = "{}", annotations: str = "{}") -> str:
    return (
        f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"
        f"  labels: {labels}\n  annotations: {annotations}\n"
    )


SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  ports: [{name: http, port: 80}]
"""

ENDPOINTS = """\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.0.0.7], conditions: {ready: true}}]
"""

UNNAMED_WITH_TLS = """\
tls: {secretName: shop-tls}
routes:
  - backends: [{service: web, port: 80}]
"""


class ConsoleScriptTests(SynchronousTestCase):
    """C{tenantgw} as CI runs it: a process, its exit status and its output."""

    def tenantgw(self, *args: str, files: dict[str, str] | None = None) -> tuple[int, str, str]:
        directory = self.mktemp()
        os.makedirs(directory)
        paths = []
        for name, text in (files or {}).items():
            path = os.path.join(directory, name)
            with open(path, "w") as f:
                f.write(text)
            paths.append(path)
        result = subprocess.run(
            [*console_script(), *args, *paths],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return result.returncode, result.stdout, result.stderr

    def json_check(self, *args: str, files: dict[str, str]) -> tuple[int, dict[str, object]]:
        status, out, err = self.tenantgw("check", "--output", "json", *args, files=files)
        self.assertEqual(err, "")
        return status, json.loads(out)

    def test_version(self) -> None:
        status, out, _ = self.tenantgw("--version")
        self.assertEqual(status, 0)
        self.assertEqual(out.strip(), f"tenantgw {importlib.metadata.version('tenantgw')}")

    def test_twistd_plugin_version(self) -> None:
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        result = subprocess.run(
            [twistd, "tenantgw", "--version"], capture_output=True, text=True, check=False, cwd="/"
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(
            result.stdout.strip(), f"tenantgw {importlib.metadata.version('tenantgw')}"
        )

    def test_usage_error_exits_2(self) -> None:
        status, _, err = self.tenantgw("check", "--output", "xml", "x.yaml")
        self.assertEqual(status, 2)
        self.assertIn("--output", err)
        status, _, err = self.tenantgw("check", "--namespace-selector", "a in (", "x.yaml")
        self.assertEqual(status, 2)

    def test_config_map_without_its_namespace_is_checked(self) -> None:
        """The issue's case: this used to print nothing and exit 0."""
        bad = 'routes:\n  - backends: [{service: web, port: "x y"}]\n'
        status, out, _ = self.tenantgw("check", files={"tenant.yaml": config_map(bad)})
        self.assertEqual(status, 1, out)
        self.assertIn("shop/tenant: Rejected", out)
        self.assertIn("shop/tenant: error: routes[0].backends[0].port: must be", out)
        self.assertIn("warning: Namespace 'shop' is not among the files", out)

    def test_assumed_namespace_has_no_allowance_nor_ceilings(self) -> None:
        claims = "hosts: [shop.example.com]\nquota: {requestsPerSecond: 1000000}\n" + GOOD_TENANT
        status, report = self.json_check(files={"cm.yaml": config_map(claims)})
        self.assertEqual(status, 1)
        (tenant,) = report["tenants"]  # type: ignore[misc]
        self.assertTrue(tenant["namespaceAssumed"])
        self.assertEqual([e["path"] for e in tenant["errors"]], ["hosts[0]"])
        # With its Namespace in the files, the allowance applies.
        status, report = self.json_check(
            files={
                "ns.yaml": namespace_object(
                    annotations="{tenantgw.io/allowed-hosts: shop.example.com}"
                ),
                "cm.yaml": config_map(claims),
            }
        )
        self.assertEqual(status, 0, report)

    def test_missing_service_and_tls_secret_warn_and_fail_strict(self) -> None:
        files = {"ns.yaml": namespace_object(), "cm.yaml": config_map(UNNAMED_WITH_TLS)}
        status, report = self.json_check(files=files)
        self.assertEqual(status, 0, report)
        (tenant,) = report["tenants"]  # type: ignore[misc]
        self.assertEqual(tenant["state"], "CertificateError")
        self.assertEqual(tenant["errors"], [])
        self.assertEqual(
            sorted(w["path"] for w in tenant["warnings"]),
            ["routes[0].backends[0].service", "tls.secretName"],
        )
        status, report = self.json_check("--strict", files=files)
        self.assertEqual(status, 1)
        (tenant,) = report["tenants"]  # type: ignore[misc]
        self.assertEqual(
            sorted(e["path"] for e in tenant["errors"]),
            ["routes[0].backends[0].service", "tls.secretName"],
        )
        self.assertFalse(report["ok"])
        self.assertTrue(report["strict"])

    def test_strict_wants_ready_endpoints_and_the_namespace(self) -> None:
        files = {"cm.yaml": config_map(GOOD_TENANT), "svc.yaml": SERVICE}
        status, out, _ = self.tenantgw("check", "--strict", files=files)
        self.assertEqual(status, 1, out)
        self.assertIn("error: Namespace 'shop' is not among the files", out)
        self.assertIn(
            "error: routes[0].backends[0].service: Service 'web' has no ready endpoints", out
        )
        files.update({"ns.yaml": namespace_object(), "eps.yaml": ENDPOINTS})
        status, out, _ = self.tenantgw("check", "--strict", files=files)
        self.assertEqual(status, 0, out)
        self.assertIn("shop/tenant: Accepted", out)

    def test_wrong_port_of_a_present_service_is_an_error(self) -> None:
        wrong = "routes:\n  - name: web\n    backends: [{service: web, port: 81}]\n"
        files = {"ns.yaml": namespace_object(), "cm.yaml": config_map(wrong), "svc.yaml": SERVICE}
        status, report = self.json_check(files=files)
        self.assertEqual(status, 1)
        (tenant,) = report["tenants"]  # type: ignore[misc]
        self.assertEqual([e["path"] for e in tenant["errors"]], ["routes[0].backends[0].port"])

    def test_clamped_quota_is_a_warning(self) -> None:
        files = {
            "ns.yaml": namespace_object(annotations="{tenantgw.io/max-requests-per-second: '10'}"),
            "cm.yaml": config_map("quota: {requestsPerSecond: 50}\n" + GOOD_TENANT),
        }
        status, report = self.json_check(files=files)
        self.assertEqual(status, 0, report)
        (tenant,) = report["tenants"]  # type: ignore[misc]
        self.assertEqual(tenant["state"], "Clamped")
        self.assertEqual(
            [w["path"] for w in tenant["warnings"]],
            ["quota.requestsPerSecond", "routes[0].backends[0].service"],
        )

    def test_namespace_option_places_objects_that_name_none(self) -> None:
        files = {"ns.yaml": namespace_object(), "cm.yaml": config_map(GOOD_TENANT, namespace=None)}
        status, report = self.json_check("--namespace", "shop", files=files)
        self.assertEqual(status, 0, report)
        (tenant,) = report["tenants"]  # type: ignore[misc]
        self.assertEqual((tenant["namespace"], tenant["namespaceAssumed"]), ("shop", False))

    def test_second_config_map_and_unselected_namespace(self) -> None:
        files = {
            "ns.yaml": namespace_object(),
            "a.yaml": config_map(GOOD_TENANT, name="a"),
            "b.yaml": config_map(GOOD_TENANT, name="b"),
        }
        status, report = self.json_check(files=files)
        self.assertEqual(status, 1)
        (tenant,) = report["tenants"]  # type: ignore[misc]
        self.assertIn("ConfigMap 'b' ignored", tenant["errors"][0]["message"])
        files = {
            "ns.yaml": namespace_object(labels="{team: x}"),
            "cm.yaml": config_map(GOOD_TENANT),
        }
        status, report = self.json_check("--namespace-selector", "team=y", files=files)
        self.assertEqual(status, 0, report)
        (tenant,) = report["tenants"]  # type: ignore[misc]
        self.assertEqual(tenant["state"], "NotSelected")
        self.assertEqual(len(tenant["warnings"]), 1)
        status, report = self.json_check("--strict", "--namespace-selector", "team=y", files=files)
        self.assertEqual(status, 1)

    def test_json_lists_file_errors_with_paths(self) -> None:
        status, report = self.json_check(
            files={"tenant.yaml": BAD_TENANT, "broken.yaml": "kind: [\n"}
        )
        self.assertEqual(status, 1)
        files = {os.path.basename(f["file"]): f for f in report["files"]}  # type: ignore[attr-defined]
        self.assertEqual(files["tenant.yaml"]["kind"], "tenant.yaml")
        self.assertEqual(
            [e["path"] for e in files["tenant.yaml"]["errors"]],
            ["routes[1].backends[0].service", "routes[1].backends[0].port"],
        )
        self.assertEqual(files["broken.yaml"]["errors"][0]["path"], "")
        self.assertEqual(report["summary"]["errors"], 3)  # type: ignore[index]


PROTOCOL_TENANT = """\
routes:
  - name: web
    backends: [{service: web, port: 80}]
  - name: rpc
    backends: [{service: rpc, port: grpc}, {service: h2, port: 8080}]
  - name: secure
    backends: [{service: secure, port: 443}]
"""


def _service(name: str, port: dict[str, object]) -> str:
    return (
        f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\n"
        f"spec:\n  ports: [{json.dumps(port)}]\n"
    )


class CheckProtocolTests(SynchronousTestCase):
    run_check = CheckTests.run_check

    def test_each_backend_s_protocol_is_reported(self) -> None:
        text = (
            manifests(PROTOCOL_TENANT)
            + _service("web", {"name": "http", "port": 80})
            + _service("rpc", {"name": "grpc", "port": 50051})
            + _service("h2", {"name": "web", "port": 8080, "appProtocol": "kubernetes.io/h2c"})
            + _service("secure", {"name": "https", "port": 443})
        )
        status, output = self.run_check(("shop.yaml", text))
        self.assertEqual(status, 0, output)
        self.assertIn("routes[0].backends[0]: Service 'web' port 80: HTTP/1.1", output)
        self.assertIn("routes[1].backends[0]: Service 'rpc' port 50051: HTTP/2 cleartext", output)
        self.assertIn("routes[1].backends[1]: Service 'h2' port 8080: HTTP/2 cleartext", output)
        self.assertIn("routes[2].backends[0]: Service 'secure' port 443: TLS; HTTP/2 if", output)
        status, output = self.run_check(("shop.yaml", text), extra=("--output", "json"))
        backends = json.loads(output)["tenants"][0]["backends"]
        self.assertEqual([b["protocol"] for b in backends], ["h1", "h2c", "h2c", "tls"])
