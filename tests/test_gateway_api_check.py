"""
tenantgw check on Gateway API manifests: the objects' statuses in text and
JSON, and a refused route failing the check, as a tenant's CI needs.
"""

from __future__ import annotations

import io
import json
import os
import sys

import yaml
from twisted.trial.unittest import SynchronousTestCase

from tenantgw.app.cli import main
from tests.test_gateway_api_policy import gateway_objects, route_objects, service_objects


def write(directory: str, name: str, objects: list[dict]) -> str:
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        yaml.safe_dump_all(objects, f)
    return path


class GatewayApiCheckTests(SynchronousTestCase):
    def check(self, *objects: list[dict], extra: tuple[str, ...] = ()) -> tuple[int, str]:
        directory = self.mktemp()
        os.makedirs(directory)
        paths = [write(directory, f"{i}.yaml", objs) for i, objs in enumerate(objects)]
        out = io.StringIO()
        saved, sys.stdout = sys.stdout, out
        try:
            status = main(["check", "--base-domain", "apps.example", *extra, *paths])
        finally:
            sys.stdout = saved
        return status, out.getvalue()

    def test_accepted_route_passes_and_statuses_are_listed(self) -> None:
        status, output = self.check(
            gateway_objects(), route_objects("docs", ["docs.apps.example"], backend_port=9)
        )
        self.assertEqual(status, 0, output)
        self.assertIn("HTTPRoute docs/web: Accepted", output)
        self.assertIn("Gateway infra/edge: Accepted", output)
        self.assertIn("docs (Gateway API): Accepted", output)

    def test_backend_in_another_namespace_without_grant_fails(self) -> None:
        rules = [{"backendRefs": [{"name": "web", "namespace": "other", "port": 80}]}]
        status, output = self.check(
            gateway_objects(),
            route_objects("docs", ["docs.apps.example"], rules),
            service_objects("other", "web", 9),
        )
        self.assertEqual(status, 1, output)
        self.assertIn("ResolvedRefs False (RefNotPermitted)", output)
        self.assertIn("other/web", output)

    def test_json_carries_the_status_subresource(self) -> None:
        regex = [{"matches": [{"path": {"type": "RegularExpression", "value": "/a.*"}}]}]
        status, output = self.check(
            gateway_objects(),
            route_objects("docs", ["docs.apps.example"], regex),
            extra=("--output", "json"),
        )
        self.assertEqual(status, 1)
        report = json.loads(output)
        (route,) = [o for o in report["gatewayApi"] if o["kind"] == "HTTPRoute"]
        (parent,) = route["status"]["parents"]
        self.assertEqual(parent["parentRef"]["name"], "edge")
        accepted = next(c for c in parent["conditions"] if c["type"] == "Accepted")
        self.assertEqual((accepted["status"], accepted["reason"]), ("False", "UnsupportedValue"))
        self.assertIn("spec.rules[0].matches[0].path.type", accepted["message"])
        self.assertEqual(accepted["observedGeneration"], 2)
        self.assertFalse(report["ok"])


class ExamplesTests(SynchronousTestCase):
    def test_the_examples_pass_as_the_quick_start_serves_them(self) -> None:
        """All three dialects of examples/tenants, checked with the quick start's base domain."""
        examples = os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples", "tenants")
        out = io.StringIO()
        saved, sys.stdout = sys.stdout, out
        try:
            status = main(["check", "--strict", "--base-domain", "example.test", examples])
        finally:
            sys.stdout = saved
        output = out.getvalue()
        self.assertEqual(status, 0, output)
        self.assertIn("HTTPRoute docs/docs: Accepted", output)
        # The Ingress kept by the blog tenant serves next to its ConfigMap's routes.
        self.assertIn("Ingress legacy spec.rules[0].http.paths[0].backends[0]", output)
