"""
A GRPCRoute read from a cluster: a whole gateway (as twistd builds it)
watching the fake API server, with a GRPCRoute whose backend is a Service
in another namespace permitted by a ReferenceGrant from GRPCRoute.  The
route is served (h2c to the other namespace's endpoints: the Kubernetes
source has to follow the backendRef into that namespace) and the leader
writes its C{status.parents} through C{grpcroutes/status}, as RBAC allows.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tenantgw.app.service import Options, build
from tenantgw.testing.fake_apiserver import FakeAPIServer
from tests.eventually import eventually
from tests.test_compile import namespace, service
from tests.test_translate_gateway_api import gateway, gateway_class, grant
from tests.test_translate_grpcroute import grpc_route


class GrpcRouteFromTheClusterTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.server = FakeAPIServer(bookmark_interval=0.2)
        self.server.start()
        self.addCleanup(self.server.stop)
        directory = tempfile.mkdtemp()
        self.kubeconfig = self.server.write_kubeconfig(os.path.join(directory, "config"))
        self.addCleanup(os.rmdir, directory)
        self.addCleanup(os.remove, self.kubeconfig)

    @inlineCallbacks
    def test_served_and_its_status_written(self) -> Any:
        server = self.server
        server.create(namespace("tenantgw-system"))
        server.create(namespace("infra"))
        server.create(namespace("shop", annotations={"tenantgw.io/allowed-hosts": "*.shop.test"}))
        server.create(namespace("backend"))
        server.create(service("backend", "api", [{"name": "http", "port": 9000}]))
        server.create(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": "api-1",
                    "namespace": "backend",
                    "labels": {"kubernetes.io/service-name": "api"},
                },
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 50051}],
                "endpoints": [{"addresses": ["192.0.2.9"], "conditions": {"ready": True}}],
            }
        )
        server.create(
            {
                **grant("backend", "shop", from_kind="GRPCRoute"),
                "apiVersion": "gateway.networking.k8s.io/v1beta1",
            }
        )
        server.create(gateway_class())
        server.create(gateway())
        server.create(
            grpc_route(
                name="rpc",
                hostnames=["rpc.shop.test"],
                rules=[
                    {
                        "matches": [{"method": {"service": "pkg.v1.Things"}}],
                        "backendRefs": [{"name": "api", "namespace": "backend", "port": 9000}],
                    }
                ],
            )
        )
        options = Options()
        options.parseOptions(
            [
                "--source=kubernetes",
                f"--kubeconfig={self.kubeconfig}",
                "--http=tcp:0:interface=127.0.0.1",
                "--https=tcp:0:interface=127.0.0.1",
                "--admin=tcp:0:interface=127.0.0.1",
                "--leader-election-namespace=tenantgw-system",
                "--access-log=off",
            ]
        )
        services = build(options, reactor)
        services.startService()
        self.addCleanup(lambda: services.stopService() if services.running else None)

        def ours() -> dict[str, Any] | None:
            route = server.get("GRPCRoute", "shop", "rpc") or {}
            parents = (route.get("status") or {}).get("parents") or ()
            return next(
                (p for p in parents if p["controllerName"] == "tenantgw.io/gateway-controller"),
                None,
            )

        yield eventually(lambda: ours() is not None, "GRPCRoute status written")
        parent = ours()
        assert parent is not None
        self.assertEqual(
            {c["type"]: (c["status"], c["reason"]) for c in parent["conditions"]},
            {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs")},
        )
        self.assertEqual(parent["conditions"][0]["observedGeneration"], 1)  # the server counts
        # Statuses are written one object at a time: the Gateway's may come after.
        yield eventually(
            lambda: (
                "listeners" in ((server.get("Gateway", "infra", "gw") or {}).get("status") or {})
            ),
            "Gateway status written",
        )
        gw = server.get("Gateway", "infra", "gw") or {}
        (listener,) = gw["status"]["listeners"]
        self.assertEqual(
            [k["kind"] for k in listener["supportedKinds"]], ["HTTPRoute", "GRPCRoute"]
        )
        self.assertEqual(listener["attachedRoutes"], 1)

        plan = services.gateway.snapshot.tenants["shop"]
        (route,) = [r for r in plan.routes if r.source == "GRPCRoute rpc spec.rules[0]"]
        (target,) = route.backends
        self.assertEqual(target.protocol, "h2c")
        self.assertEqual([(e.address, e.port) for e in target.endpoints], [("192.0.2.9", 50051)])
