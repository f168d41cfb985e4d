"""``tenantgw check``: the offline validator tenants run in their own CI."""

from __future__ import annotations

import io
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
        self.assertEqual((status, output.strip().endswith("valid tenant.yaml")), (0, True))
        status, output = self.run_check(("tenant.yaml", BAD_TENANT))
        self.assertEqual(status, 1)
        self.assertIn("tenant.yaml: routes[1].backends[0].port", output)

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
        self.assertIn("broken.yaml: not valid YAML", output)

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
