"""
The fixture builders are shared by every data-plane test: a builder that
silently built a tenant the compile step refuses would make those tests
pass or fail for the wrong reason, so its two call shapes and the harness's
refusal are checked here.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tenantgw.compile.compiler import compile_snapshot
from tests.support import dump, one_tenant_snapshot, serve, tenant_objects


class TenantObjectsTests(SynchronousTestCase):
    def test_the_one_upstream_shorthand_is_the_general_form(self) -> None:
        shorthand = tenant_objects(9099, host="a.example")
        general = tenant_objects(
            "t",
            dump(
                {
                    "hosts": ["a.example"],
                    "routes": [{"name": "all", "backends": [{"service": "up", "port": 80}]}],
                }
            ),
            {"up": [9099]},
            annotations={"tenantgw.io/allowed-hosts": "a.example"},
        )
        self.assertEqual(shorthand, general)

    def test_one_tenant_snapshot_routes_to_the_given_endpoint(self) -> None:
        snapshot = one_tenant_snapshot(9099, host="a.example", upstream_address="10.0.0.9")
        self.assertEqual(set(snapshot.exact_hosts), {"a.example"})
        (route,) = snapshot.tenants["t"].routes
        ((endpoint,),) = [backend.endpoints for backend in route.backends]
        self.assertEqual((endpoint.address, endpoint.port), ("10.0.0.9", 9099))

    def test_several_services_secrets_and_the_default_allowance(self) -> None:
        objects = tenant_objects(
            "team",
            dump({"hosts": ["api.t.example"], "routes": []}),
            {"web": [1, 2], "empty": []},
            secrets={"keys": {"a": "k"}},
        )
        kinds = [(o["kind"], o["metadata"]["name"]) for o in objects]
        self.assertEqual(
            kinds,
            [
                ("Namespace", "team"),
                ("ConfigMap", "tenant"),
                ("Service", "web"),
                ("EndpointSlice", "web-0"),
                ("EndpointSlice", "web-1"),
                ("Service", "empty"),
                ("Secret", "keys"),
            ],
        )
        self.assertIn("team", compile_snapshot(objects).tenants)


class ServeTests(SynchronousTestCase):
    def test_a_refused_tenant_fails_naming_its_status(self) -> None:
        with self.assertRaises(AssertionError) as caught:
            serve(self, tenant={"hosts": ["t.example"], "routes": [{"nope": 1}]}, services={})
        self.assertIn("test tenant 'team' was not accepted", str(caught.exception))
        self.assertIn("routes[0]", str(caught.exception))
