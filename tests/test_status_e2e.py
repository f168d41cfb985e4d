"""
Statuses written end to end: two whole gateways (as twistd builds them)
against the fake API server, one elected.  The leader writes Ingress
addresses and Gateway API statuses through the status subresources; the
follower writes nothing; a rebuild that changes nothing writes nothing;
another controller's HTTPRoute parent entry survives; when the Service's
address moves the statuses follow; when leadership moves the new leader
writes only what differs.  Read back with the official client.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from typing import Any

from kubernetes import client
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tenantgw.app.service import Options, build
from tenantgw.status.writer import wanted
from tenantgw.testing.fake_apiserver import FakeAPIServer
from tests.eventually import eventually
from tests.ingress_corpus import ingress
from tests.test_compile import namespace, service, tenant_cm
from tests.test_translate_gateway_api import gateway, gateway_class, http_route

KUBECTL = shutil.which("kubectl")
ALLOWED = {"tenantgw.io/allowed-hosts": "shop.test,*.shop.test"}
OTHER = "example.com/other-controller"
TIMEOUT = (5, 10)


class RecordingAPI:
    """Wraps a replica's status API: every write it attempts is seen."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.writes: list[str] = []

    def read(self, key: Any) -> Any:
        return self.api.read(key)

    def replace_status(self, key: Any, obj: Any) -> Any:
        self.writes.append(str(key))
        return self.api.replace_status(key, obj)


def front_service(address: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "tenantgw", "namespace": "tenantgw-system"},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10"},
        "status": {"loadBalancer": {"ingress": [{"ip": address}]}},
    }


class StatusEndToEndTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.server = FakeAPIServer(bookmark_interval=0.2)
        self.server.start()
        self.addCleanup(self.server.stop)
        directory = tempfile.mkdtemp()
        self.kubeconfig = self.server.write_kubeconfig(os.path.join(directory, "config"))
        self.addCleanup(os.rmdir, directory)
        self.addCleanup(os.remove, self.kubeconfig)
        configuration = client.Configuration()
        configuration.host = self.server.url
        self.api_client = client.ApiClient(configuration)
        server = self.server
        server.create(namespace("tenantgw-system"))
        server.create(front_service("198.51.100.7"))
        server.create(namespace("infra"))
        server.create(namespace("shop", annotations=ALLOWED))
        server.create(tenant_cm("shop", {"routes": []}))
        server.create(service("shop", "web", [{"port": 80}]))
        server.create(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "IngressClass",
                "metadata": {"name": "tenantgw"},
                "spec": {"controller": "tenantgw.io/ingress-controller"},
            }
        )
        server.create(ingress("mine", [("/", "Prefix", "web")]))
        server.create(
            ingress("refused", [("/r", "Prefix", "web")], annotations={"server-snippet": "x"})
        )
        server.create(ingress("theirs", [("/", "Prefix", "web")], class_name="nginx"))
        server.create(gateway_class())
        server.create(gateway())
        route = http_route(
            hostnames=["api.shop.test"],
            parents=[
                {"name": "gw", "namespace": "infra"},
                {"name": "elsewhere", "namespace": "infra"},
            ],
            rules=[{"backendRefs": [{"name": "web", "port": 80}]}],
        )
        server.create(route)
        self.theirs = {
            "parentRef": {"name": "elsewhere", "namespace": "infra"},
            "controllerName": OTHER,
            "conditions": [
                {
                    "type": "Accepted",
                    "status": "True",
                    "reason": "Accepted",
                    "message": "",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                    "observedGeneration": 1,
                }
            ],
        }
        server.write_status("HTTPRoute", "shop", "web", {"parents": [self.theirs]})

    def replica(self) -> tuple[Any, RecordingAPI]:
        options = Options()
        options.parseOptions(
            [
                "--source=kubernetes",
                f"--kubeconfig={self.kubeconfig}",
                "--http=tcp:0:interface=127.0.0.1",
                "--https=tcp:0:interface=127.0.0.1",
                "--admin=tcp:0:interface=127.0.0.1",
                "--leader-election-namespace=tenantgw-system",
                "--publish-service=tenantgw-system/tenantgw",
                "--access-log=off",
            ]
        )
        services = build(options, reactor)
        recording = RecordingAPI(services.status_writer.api)
        services.status_writer.api = recording
        services.startService()
        self.addCleanup(lambda: services.stopService() if services.running else None)
        return services, recording

    def status_puts(self, path: str = "") -> int:
        """Status PUTs so far, or only those whose path contains C{path}."""
        return sum(
            1 for m, p in list(self.server.requests) if m == "PUT" and "/status" in p and path in p
        )

    def ingress_ip(self, name: str) -> Any:
        found = self.server.get("Ingress", "shop", name)
        balancer = ((found or {}).get("status") or {}).get("loadBalancer") or {}
        return [e.get("ip") for e in balancer.get("ingress") or ()]

    @inlineCallbacks
    def test_the_leader_writes_the_follower_does_not_and_no_op_rebuilds_write_nothing(
        self,
    ) -> Any:
        (a, a_api), (b, b_api) = self.replica(), self.replica()
        yield eventually(lambda: a.elector.is_leader or b.elector.is_leader, "a leader")
        (leader, leader_api), (follower, follower_api) = sorted(
            [(a, a_api), (b, b_api)], key=lambda r: not r[0].elector.is_leader
        )
        yield eventually(lambda: self.ingress_ip("mine") == ["198.51.100.7"], "mine published")

        def gateway_api_written() -> bool:
            route = self.server.get("HTTPRoute", "shop", "web") or {}
            gw = self.server.get("Gateway", "infra", "gw") or {}
            cls = self.server.get("GatewayClass", "", "tenantgw") or {}
            return (
                len((route.get("status") or {}).get("parents") or ()) == 2
                and bool((gw.get("status") or {}).get("listeners"))
                and bool((cls.get("status") or {}).get("conditions"))
            )

        yield eventually(gateway_api_written, "Gateway API statuses written")

        # Read back through the official client.
        networking = client.NetworkingV1Api(self.api_client)
        mine = networking.read_namespaced_ingress_status("mine", "shop", _request_timeout=TIMEOUT)
        self.assertEqual(mine.status.load_balancer.ingress[0].ip, "198.51.100.7")
        custom = client.CustomObjectsApi(self.api_client)
        gw = custom.get_namespaced_custom_object_status(
            "gateway.networking.k8s.io", "v1", "infra", "gateways", "gw", _request_timeout=TIMEOUT
        )
        self.assertEqual(
            gw["status"]["addresses"], [{"type": "IPAddress", "value": "198.51.100.7"}]
        )
        conditions = {c["type"]: c for c in gw["status"]["conditions"]}
        self.assertEqual(conditions["Accepted"]["status"], "True")
        self.assertEqual(conditions["Accepted"]["observedGeneration"], 1)
        self.assertEqual(gw["status"]["listeners"][0]["attachedRoutes"], 1)
        route = custom.get_namespaced_custom_object_status(
            "gateway.networking.k8s.io", "v1", "shop", "httproutes", "web",
            _request_timeout=TIMEOUT,
        )  # fmt: skip
        parents = route["status"]["parents"]
        self.assertEqual(parents[0], self.theirs)  # another controller's entry, untouched
        self.assertEqual(parents[1]["controllerName"], "tenantgw.io/gateway-controller")
        self.assertEqual(
            {c["type"]: c["status"] for c in parents[1]["conditions"]},
            {"Accepted": "True", "ResolvedRefs": "True"},
        )
        gc = custom.get_cluster_custom_object_status(
            "gateway.networking.k8s.io", "v1", "gatewayclasses", "tenantgw",
            _request_timeout=TIMEOUT,
        )  # fmt: skip
        self.assertEqual(gc["status"]["conditions"][0]["type"], "Accepted")

        # Not ours, or refused: no address.
        self.assertNotIn("status", self.server.get("Ingress", "shop", "theirs") or {})
        self.assertEqual(self.ingress_ip("refused"), [])

        # Per-Ingress Events, on the Ingress's uid.
        def ingress_events() -> dict[str, Any]:
            return {
                e["involvedObject"]["name"]: e
                for e in self.server.objects("Event")
                if e["involvedObject"]["kind"] == "Ingress"
            }

        yield eventually(lambda: set(ingress_events()) == {"mine", "refused"}, "Ingress Events")
        events = ingress_events()
        uid = (self.server.get("Ingress", "shop", "mine") or {})["metadata"]["uid"]
        self.assertEqual(events["mine"]["involvedObject"]["uid"], uid)
        self.assertEqual((events["mine"]["reason"], events["mine"]["type"]), ("Accepted", "Normal"))
        self.assertEqual(
            (events["refused"]["reason"], events["refused"]["type"]), ("Rejected", "Warning")
        )
        self.assertIn("server-snippet", events["refused"]["message"])

        # The Gateway API objects get theirs too (contract section 13: every dialect).
        def gateway_api_event(kind: str, namespace: str, name: str) -> Any:
            for e in self.server.objects("Event"):
                involved = e["involvedObject"]
                if (involved["kind"], involved["namespace"], involved["name"]) == (
                    kind,
                    namespace,
                    name,
                ):
                    return e
            return None

        route_event = yield eventually(
            lambda: gateway_api_event("HTTPRoute", "shop", "web"), "the HTTPRoute's Event"
        )
        route_uid = (self.server.get("HTTPRoute", "shop", "web") or {})["metadata"]["uid"]
        self.assertEqual(route_event["involvedObject"]["uid"], route_uid)
        self.assertEqual(
            route_event["involvedObject"]["apiVersion"], "gateway.networking.k8s.io/v1"
        )
        gateway_event = yield eventually(
            lambda: gateway_api_event("Gateway", "infra", "gw"), "the Gateway's Event"
        )
        self.assertEqual(gateway_event["reason"], "Accepted")
        self.assertEqual(
            (route_event["reason"], route_event["type"], route_event["message"]),
            ("Accepted", "Normal", "attached to Gateway infra/gw"),
        )

        # The watch events of our own writes rebuild both replicas: nothing more to write.
        yield deferLater(reactor, 1.0, lambda: None)
        written = self.status_puts()
        self.assertEqual(follower_api.writes, [])
        self.assertEqual(follower.status_writer.writes, 0)
        self.assertEqual(len(leader_api.writes), leader.status_writer.writes)
        # A rebuild that changes no status (a label on the tenant's Namespace) writes nothing.
        rebuilds = leader.pipeline.rebuilds
        self.server.update(namespace("shop", labels={"team": "x"}, annotations=ALLOWED))
        yield eventually(lambda: leader.pipeline.rebuilds > rebuilds, "a rebuild")
        yield deferLater(reactor, 0.5, lambda: None)
        self.assertEqual(self.status_puts(), written)

        # The Service's load balancer moves: the statuses follow (within 5 s).
        self.server.update(front_service("198.51.100.8"))
        yield eventually(
            lambda: self.ingress_ip("mine") == ["198.51.100.8"], "re-published", timeout=8
        )
        yield eventually(
            lambda: (
                ((self.server.get("Gateway", "infra", "gw") or {})["status"]["addresses"])
                == [{"type": "IPAddress", "value": "198.51.100.8"}]
            ),
            "Gateway addresses follow",
        )
        self.assertEqual(follower_api.writes, [])
        scraped = leader.metrics.exposition().decode()
        self.assertIn(f"tenantgw_status_writes_total {float(leader.status_writer.writes)}", scraped)
        self.assertIn("tenantgw_status_writes_total 0.0", follower.metrics.exposition().decode())

        # Leadership moves: the new leader writes what differs, nothing else.
        yield eventually(lambda: not leader.status_writer._in_flight, "writes settled")
        # "Already right" is what the follower saw: its watch (slower than the
        # leader's writes on a loaded machine) must have shown them.  A view
        # still stale would try a PUT on the old resourceVersion, answered 409.
        yield eventually(
            lambda: all(
                wanted(obj, desire) is None
                for obj, desire in follower.status_writer.latest.values()
            ),
            "the follower's watch shows the leader's writes",
        )
        yield leader.stopService()
        yield eventually(lambda: follower.elector.is_leader, "the follower leads", timeout=8)
        yield deferLater(reactor, 1.0, lambda: None)
        self.assertEqual(follower_api.writes, [])  # every status already right
        self.server.create(ingress("later", [("/later", "Prefix", "web")]))
        yield eventually(lambda: self.ingress_ip("later") == ["198.51.100.8"], "new leader writes")
        self.assertEqual(follower_api.writes, ["Ingress shop/later"])

    @inlineCallbacks
    def test_an_ingress_we_stop_serving_is_cleared_and_our_route_entry_removed(self) -> Any:
        _leader, api = self.replica()
        yield eventually(lambda: self.ingress_ip("mine") == ["198.51.100.7"], "published")
        # What an operator sees: kubectl's ADDRESS column.
        if KUBECTL is None:
            raise AssertionError("kubectl is needed (scripts/test.sh installs kubernetes-client)")
        home = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, home)
        shown = yield deferToThread(
            subprocess.run,
            [KUBECTL, "--kubeconfig", self.kubeconfig, "get", "ingress", "-n", "shop", "-o", "wide"],
            capture_output=True, text=True, timeout=30, env={**os.environ, "HOME": home},
        )  # fmt: skip
        rows = [line.split() for line in shown.stdout.splitlines()]
        address = rows[0].index("ADDRESS")
        published = {r[0]: r[address] for r in rows[1:] if len(r) == len(rows[0])}
        self.assertEqual(published, {"mine": "198.51.100.7"})
        yield eventually(
            lambda: (
                len(
                    ((self.server.get("HTTPRoute", "shop", "web") or {}).get("status") or {}).get(
                        "parents"
                    )
                    or ()
                )
                == 2
            ),
            "our parent entry",
        )
        moved = ingress("mine", [("/", "Prefix", "web")], class_name="nginx")
        self.server.update(moved)
        yield eventually(lambda: self.ingress_ip("mine") == [], "cleared")
        stored = self.server.get("Ingress", "shop", "mine") or {}
        self.assertEqual(stored["status"], {"loadBalancer": {}})
        route = self.server.get("HTTPRoute", "shop", "web") or {}
        route["spec"]["parentRefs"] = [{"name": "elsewhere", "namespace": "infra"}]
        self.server.update(route)
        yield eventually(
            lambda: (
                ((self.server.get("HTTPRoute", "shop", "web") or {}).get("status") or {}).get(
                    "parents"
                )
                == [self.theirs]
            ),
            "only their entry left",
        )
        # Another controller then publishes its own address: we leave it.
        self.server.write_status(
            "Ingress", "shop", "mine", {"loadBalancer": {"ingress": [{"ip": "203.0.113.1"}]}}
        )
        # (Only that Ingress's writes count: the Gateway's attachedRoutes may
        # still be catching up with the route that left.)
        puts = self.status_puts("/ingresses/mine/")
        self.assertGreater(puts, 0)  # we wrote it (its address, then cleared)
        yield deferLater(reactor, 1.0, lambda: None)
        self.assertEqual(self.ingress_ip("mine"), ["203.0.113.1"])
        self.assertEqual(self.status_puts("/ingresses/mine/"), puts)
        self.assertNotIn("Ingress shop/theirs", api.writes)

    @inlineCallbacks
    def test_a_forbidden_status_kind_does_not_stop_the_others(self) -> Any:
        """A ClusterRole without ingresses/status: Ingresses wait, Gateway API statuses go on."""
        self.server.forbid_status("Ingress", "update")
        replica, _api = self.replica()
        yield eventually(lambda: "Ingress" in replica.status_writer.forbidden, "403 seen")
        yield eventually(
            lambda: "status" in (self.server.get("GatewayClass", "", "tenantgw") or {}),
            "GatewayClass written all the same",
        )
        self.assertEqual(self.ingress_ip("mine"), [])
        self.assertGreaterEqual(replica.status_writer.failures, 1)
