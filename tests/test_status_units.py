"""
The status writers' logic without a network: which addresses are published
(ingress-nginx's rule), which Ingresses get them, what the Gateway API
objects' statuses become (others' HTTPRoute parents kept, transition times
kept), and the writer's leader gating, compare-first and conflict retry,
on task.Clock with the 'threads' inline.
"""

from __future__ import annotations

import copy
import datetime
from typing import Any

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from tenantgw.app.options import parse_publish
from tenantgw.compile.compiler import CompileOptions, compile_snapshot
from tenantgw.status.gateway_status import CONTROLLER, gateway_desires, merge_conditions
from tenantgw.status.ingress_report import ingress_reports
from tenantgw.status.ingress_status import (
    IngressPublisher,
    PublishOptions,
    entries,
    published,
    service_addresses,
)
from tenantgw.status.reconciler import (
    SERVICE_CHECK_INTERVAL,
    StatusReconciler,
    gateway_api_events,
)
from tenantgw.status.writer import (
    FORBIDDEN_RETRY,
    Conflict,
    Forbidden,
    StatusKey,
    StatusWriter,
    key_of,
)
from tenantgw.translators.conditions import Condition, ObjectKey
from tenantgw.translators.gateway_api import ObjectStatus, ParentStatus
from tenantgw.translators.ingress import IngressOptions
from tests.ingress_corpus import ingress
from tests.test_compile import namespace, service, tenant_cm
from tests.test_leader import InlinePool, ThreadlessClock
from tests.test_translate_gateway_api import gateway, gateway_class, http_route

NOW = datetime.datetime(2026, 12, 3, 12, 0, tzinfo=datetime.timezone.utc)
LATER = NOW + datetime.timedelta(minutes=5)
ALLOWED = {"tenantgw.io/allowed-hosts": "shop.test,*.shop.test"}
INGRESS_CLASS = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "IngressClass",
    "metadata": {"name": "tenantgw"},
    "spec": {"controller": "tenantgw.io/ingress-controller"},
}


def lb_service(**spec: Any) -> dict[str, Any]:
    status = spec.pop("status", None)
    obj: dict[str, Any] = {"kind": "Service", "metadata": {"name": "gw", "namespace": "infra"}}
    obj["spec"] = spec
    if status is not None:
        obj["status"] = status
    return obj


class AddressTests(SynchronousTestCase):
    """ingress-nginx's statusAddressFromService, type by type."""

    def test_load_balancer_ingress_then_external_ips(self) -> None:
        svc = lb_service(
            type="LoadBalancer",
            clusterIP="10.96.0.9",
            externalIPs=["203.0.113.5", "198.51.100.1"],
            status={"loadBalancer": {"ingress": [{"ip": "198.51.100.1"}, {"hostname": "lb.x"}]}},
        )
        self.assertEqual(service_addresses(svc), ["198.51.100.1", "lb.x", "203.0.113.5"])
        self.assertEqual(
            entries(service_addresses(svc)),
            [{"ip": "198.51.100.1"}, {"ip": "203.0.113.5"}, {"hostname": "lb.x"}],
        )

    def test_a_pending_load_balancer_publishes_nothing(self) -> None:
        svc = lb_service(type="LoadBalancer", clusterIP="10.96.0.9")
        self.assertEqual(service_addresses(svc), [])

    def test_other_types(self) -> None:
        self.assertEqual(service_addresses(lb_service(clusterIP="10.96.0.9")), ["10.96.0.9"])
        self.assertEqual(service_addresses(lb_service(clusterIP="None")), [])
        node_port = lb_service(type="NodePort", clusterIP="10.96.0.9")
        self.assertEqual(service_addresses(node_port), ["10.96.0.9"])
        node_port["spec"]["externalIPs"] = ["203.0.113.5"]
        self.assertEqual(service_addresses(node_port), ["203.0.113.5"])
        external = lb_service(type="ExternalName", externalName="gw.example.net")
        self.assertEqual(entries(service_addresses(external)), [{"hostname": "gw.example.net"}])
        self.assertEqual(service_addresses(None), [])

    def test_publish_address_wins_over_publish_service(self) -> None:
        both = parse_publish("infra/gw", "192.0.2.1, gw.example.net,2001:db8::1")
        self.assertEqual(
            published(both, lambda ns, name: lb_service(clusterIP="10.96.0.9")),
            [{"ip": "192.0.2.1"}, {"ip": "2001:db8::1"}, {"hostname": "gw.example.net"}],
        )
        only_service = parse_publish("infra/gw", "")
        self.assertEqual(
            published(only_service, lambda ns, name: lb_service(clusterIP="10.96.0.9")),
            [{"ip": "10.96.0.9"}],
        )

    def test_bad_flags_name_the_flag(self) -> None:
        error = self.assertRaises(usage.UsageError, parse_publish, "gw", "")
        self.assertIn("--publish-service", str(error))
        error = self.assertRaises(usage.UsageError, parse_publish, None, "a b")
        self.assertIn("--publish-address", str(error))


def ingress_world(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    objects = [
        namespace("shop", annotations=ALLOWED),
        tenant_cm("shop", {"routes": []}),
        INGRESS_CLASS,
        service("shop", "web", [{"port": 80}]),
        *extra,
    ]
    for i, obj in enumerate(objects):
        obj.setdefault("metadata", {}).setdefault("uid", f"uid-{i}")
    return objects


def reports_of(objects: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
    snapshot = compile_snapshot(objects, CompileOptions(), now=NOW)
    return ingress_reports(objects, snapshot, IngressOptions())


class IngressReportTests(SynchronousTestCase):
    def test_states_from_what_the_compile_said(self) -> None:
        objects = ingress_world(
            ingress("good", [("/", "Prefix", "web")]),
            ingress("warned", [("/w", "Prefix", "web")], annotations={"unknown-thing": "1"}),
            ingress("snippet", [("/s", "Prefix", "web")], annotations={"server-snippet": "x"}),
            ingress("stranger", [("/", "Prefix", "web")], host="not-allowed.example"),
            ingress("theirs", [("/", "Prefix", "web")], class_name="nginx"),
        )
        reports = reports_of(objects)
        self.assertNotIn(("shop", "theirs"), reports)
        good, warned = reports[("shop", "good")], reports[("shop", "warned")]
        self.assertEqual((good.state, good.served, good.refused), ("Accepted", True, False))
        self.assertEqual((warned.state, warned.served, warned.refused), ("Accepted", True, False))
        self.assertIn("nginx.ingress.kubernetes.io/unknown-thing", warned.messages[0])
        snippet = reports[("shop", "snippet")]
        self.assertEqual((snippet.state, snippet.served), ("Rejected", False))
        self.assertIn("server-snippet", snippet.messages[0])
        stranger = reports[("shop", "stranger")]
        self.assertTrue(stranger.refused)
        self.assertIn("not-allowed.example", stranger.messages[0])
        self.assertEqual(
            good.uid, next(o for o in objects if o["metadata"]["name"] == "good")["metadata"]["uid"]
        )

    def test_host_conflict_and_certificate_error(self) -> None:
        older = ingress("first", [("/", "Prefix", "web")], host="shared.test")
        older["metadata"]["namespace"] = "other"
        newer = ingress(
            "second",
            [("/", "Prefix", "web")],
            host="shared.test",
            created="2026-02-01T00:00:00Z",
        )
        tls = ingress(
            "secure", [("/", "Prefix", "web")], tls=[{"hosts": ["shop.test"], "secretName": "nope"}]
        )
        shared = {"tenantgw.io/allowed-hosts": "shop.test,shared.test"}
        objects = ingress_world(
            namespace("other", annotations=shared),
            tenant_cm("other", {"routes": []}),
            service("other", "web", [{"port": 80}]),
            older,
            newer,
            tls,
        )
        objects[0]["metadata"]["annotations"] = shared
        reports = reports_of(objects)
        self.assertEqual(reports[("other", "first")].state, "Accepted")
        second = reports[("shop", "second")]
        self.assertEqual(second.state, "HostConflict")
        self.assertIn("shared.test", second.messages[0])
        self.assertEqual(reports[("shop", "secure")].state, "CertificateError")


class FakeStatusAPI:
    """Objects by key, with the API server's resourceVersion check; counts writes."""

    def __init__(self, *objects: dict[str, Any]) -> None:
        self.stored = {key_of(o): copy.deepcopy(o) for o in objects}
        self.version = 100
        self.writes: list[StatusKey] = []
        self.reads = 0
        self.meddle: Any = None  # called before a write lands, to play a racing writer
        self.forbid = False  # 403 on every write, as with a ClusterRole from before statuses
        self.attempts = 0

    def read(self, key: StatusKey) -> dict[str, Any] | None:
        self.reads += 1
        found = self.stored.get(key)
        return copy.deepcopy(found) if found is not None else None

    def replace_status(self, key: StatusKey, obj: Any) -> dict[str, Any] | None:
        self.attempts += 1
        if self.forbid:
            raise Forbidden(str(key))
        if self.meddle is not None:
            meddle, self.meddle = self.meddle, None
            meddle(self)
        current = self.stored.get(key)
        if current is None:
            return None
        if obj["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]:
            raise Conflict(str(key))
        self.writes.append(key)
        self.bump(key, obj["status"])
        return copy.deepcopy(self.stored[key])

    def bump(self, key: StatusKey, status: Any) -> None:
        self.version += 1
        self.stored[key]["status"] = copy.deepcopy(status)
        self.stored[key]["metadata"]["resourceVersion"] = str(self.version)


def with_version(obj: dict[str, Any], version: str = "1") -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["metadata"]["resourceVersion"] = version
    return obj


class WriterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = ThreadlessClock()
        self.route = with_version(ingress("web", [("/", "Prefix", "web")]))
        self.api = FakeStatusAPI(self.route)
        self.key = key_of(self.route)

    def writer(self, active: bool) -> StatusWriter:
        return StatusWriter(self.api, self.clock, threadpool=InlinePool(), active=active)

    @staticmethod
    def desire(address: str) -> Any:
        return lambda obj: {"loadBalancer": {"ingress": [{"ip": address}]}}

    def test_a_follower_writes_nothing_until_it_leads(self) -> None:
        follower = self.writer(active=False)
        self.assertEqual(follower.update({self.key: (self.route, self.desire("192.0.2.1"))}), [])
        self.assertEqual(self.api.writes, [])
        follower.start_writing()
        self.assertEqual(self.api.writes, [self.key])
        follower.stop_writing()
        current = self.api.stored[self.key]
        follower.update({self.key: (current, self.desire("192.0.2.2"))})
        self.assertEqual(self.api.writes, [self.key])

    def test_no_write_when_the_object_says_it_already(self) -> None:
        leader = self.writer(active=True)
        leader.update({self.key: (self.route, self.desire("192.0.2.1"))})
        # The watch has not delivered our write yet: the old object again.
        leader.update({self.key: (self.route, self.desire("192.0.2.1"))})
        # Then it has.
        leader.update({self.key: (self.api.stored[self.key], self.desire("192.0.2.1"))})
        self.assertEqual(self.api.writes, [self.key])
        self.assertEqual(leader.writes, 1)

    def test_a_conflict_is_retried_from_a_fresh_read(self) -> None:
        leader = self.writer(active=True)
        seen: list[Any] = []

        def desire(obj: Any) -> Any:
            seen.append(obj.get("status"))
            return {**(obj.get("status") or {}), "loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}

        self.api.meddle = lambda api: api.bump(self.key, {"other": "field"})
        results = leader.update({self.key: (self.route, desire)})
        self.assertEqual([r.result for r in results], ["written"])
        self.assertEqual(leader.conflicts, 1)
        self.assertEqual(self.api.stored[self.key]["status"]["other"], "field")
        self.assertEqual(seen[-1], {"other": "field"})

    def test_a_forbidden_kind_is_left_alone_for_a_minute(self) -> None:
        leader = self.writer(active=True)
        self.api.forbid = True
        desires = {self.key: (self.route, self.desire("192.0.2.1"))}
        results = leader.update(desires)
        self.assertEqual([r.result for r in results], ["forbidden"])
        for _ in range(10):
            leader.update(desires)
        self.assertEqual(self.api.attempts, 1)
        self.api.forbid = False
        self.clock.advance(FORBIDDEN_RETRY)
        leader.update(desires)
        self.assertEqual(self.api.writes, [self.key])


def gateway_world() -> list[dict[str, Any]]:
    objects = [
        namespace("infra"),
        namespace("shop", annotations=ALLOWED),
        tenant_cm("shop", {"routes": []}),
        service("shop", "web", [{"port": 8080}]),
        gateway_class(),
        gateway(),
        http_route(
            hostnames=["shop.test"],
            parents=[
                {"name": "gw", "namespace": "infra"},
                {"name": "theirs", "namespace": "infra"},
            ],
        ),
    ]
    return [with_version(o) for o in objects]


class GatewayStatusTests(SynchronousTestCase):
    def desires(self, objects: list[dict[str, Any]], now: datetime.datetime = NOW) -> Any:
        snapshot = compile_snapshot(objects, CompileOptions(), now=NOW)
        return gateway_desires(
            objects, snapshot.object_statuses, [{"type": "IPAddress", "value": "192.0.2.1"}],
            lambda: now,
        )  # fmt: skip

    def test_class_gateway_and_route(self) -> None:
        objects = gateway_world()
        desires = self.desires(objects)
        by_kind = {k.kind: (obj, d) for k, (obj, d) in desires.items()}
        obj, desire = by_kind["GatewayClass"]
        (accepted,) = desire(obj)["conditions"]
        self.assertEqual((accepted["type"], accepted["status"]), ("Accepted", "True"))
        self.assertEqual(accepted["observedGeneration"], 1)
        self.assertEqual(accepted["lastTransitionTime"], "2026-12-03T12:00:00Z")
        obj, desire = by_kind["Gateway"]
        status = desire(obj)
        self.assertEqual(status["addresses"], [{"type": "IPAddress", "value": "192.0.2.1"}])
        self.assertEqual({c["type"] for c in status["conditions"]}, {"Accepted", "Programmed"})
        (listener,) = status["listeners"]
        self.assertEqual((listener["name"], listener["attachedRoutes"]), ("http", 1))
        self.assertEqual(listener["supportedKinds"][0]["kind"], "HTTPRoute")
        obj, desire = by_kind["HTTPRoute"]
        (parent,) = desire(obj)["parents"]
        self.assertEqual(parent["controllerName"], CONTROLLER)
        self.assertEqual(parent["parentRef"]["name"], "gw")
        self.assertEqual([c["type"] for c in parent["conditions"]], ["Accepted", "ResolvedRefs"])

    def test_another_controllers_parent_survives_and_ours_goes_when_unreferenced(self) -> None:
        objects = gateway_world()
        route = objects[-1]
        theirs = {
            "parentRef": {"name": "theirs", "namespace": "infra"},
            "controllerName": "example.com/other",
            "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted"}],
        }
        route["status"] = {"parents": [theirs]}
        key = key_of(route)
        status = self.desires(objects)[key][1](route)
        self.assertEqual(status["parents"][0], theirs)
        self.assertEqual(len(status["parents"]), 2)
        route["status"] = status
        # Unchanged a rebuild later, minutes on: nothing to write.
        self.assertIsNone(self.desires(objects, LATER)[key][1](route))
        # The route drops our Gateway: our entry goes, theirs stays.
        route["spec"]["parentRefs"] = [{"name": "theirs", "namespace": "infra"}]
        self.assertEqual(self.desires(objects)[key][1](route), {"parents": [theirs]})

    def test_with_gateway_flags_another_deployments_entries_are_its_own(self) -> None:
        """--gateway: one tenantgw deployment per Gateway, each writing its own parent entries."""
        objects = gateway_world()
        route = objects[-1]
        route["spec"]["parentRefs"] = [
            {"name": "gw", "namespace": "infra"},
            {"name": "gw2", "namespace": "infra"},
        ]
        sibling = {
            "parentRef": {"name": "gw2", "namespace": "infra"},
            "controllerName": CONTROLLER,
            "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted"}],
        }
        route["status"] = {"parents": [sibling]}
        snapshot = compile_snapshot(objects, CompileOptions(), now=NOW)
        owned = frozenset({("infra", "gw")})
        desires = gateway_desires(objects, snapshot.object_statuses, None, lambda: NOW, owned)
        parents = desires[key_of(route)][1](route)["parents"]
        self.assertEqual(parents[0], sibling)
        self.assertEqual([p["parentRef"]["name"] for p in parents], ["gw2", "gw"])
        # Without --gateway every entry of our controller is this deployment's.
        desires = gateway_desires(objects, snapshot.object_statuses, None, lambda: NOW)
        parents = desires[key_of(route)][1](route)["parents"]
        self.assertEqual([p["parentRef"]["name"] for p in parents], ["gw"])

    def test_transition_time_moves_only_with_the_status(self) -> None:
        existing = [
            {"type": "Accepted", "status": "True", "reason": "Old", "lastTransitionTime": "T0"}
        ]
        kept = merge_conditions(
            existing, [{"type": "Accepted", "status": "True", "reason": "New"}], "T1"
        )
        self.assertEqual(kept[0]["lastTransitionTime"], "T0")
        self.assertEqual(kept[0]["reason"], "New")
        moved = merge_conditions(
            existing, [{"type": "Accepted", "status": "False", "reason": "X"}], "T1"
        )
        self.assertEqual(moved[0]["lastTransitionTime"], "T1")


class PublisherTests(SynchronousTestCase):
    def test_ours_published_theirs_untouched_and_cleared_when_we_stop_serving(self) -> None:
        address = [{"ip": "192.0.2.1"}]
        publisher = IngressPublisher(PublishOptions(addresses=("192.0.2.1",)), lambda ns, n: None)
        mine = with_version(ingress("mine", [("/", "Prefix", "web")]))
        theirs = with_version(ingress("theirs", [("/", "Prefix", "web")], class_name="nginx"))
        theirs["status"] = {"loadBalancer": {"ingress": [{"ip": "198.51.100.9"}]}}
        objects = ingress_world(mine, theirs)
        desires = publisher.desires(objects, reports_of(objects))
        self.assertEqual(set(k.name for k in desires), {"mine"})
        ((obj, desire),) = desires.values()
        self.assertEqual(desire(obj), {"loadBalancer": {"ingress": address}})
        mine["status"] = desire(obj)
        # mine moves to another class: its address is cleared, once.
        mine["spec"]["ingressClassName"] = "nginx"
        desires = publisher.desires(objects, reports_of(objects))
        ((obj, desire),) = desires.values()
        self.assertEqual(desire(obj), {"loadBalancer": {}})
        mine["status"] = {"loadBalancer": {}}
        self.assertEqual(publisher.desires(objects, reports_of(objects)), {})

    def test_nothing_without_a_publish_flag(self) -> None:
        publisher = IngressPublisher(PublishOptions(), lambda ns, n: None)
        objects = ingress_world(ingress("mine", [("/", "Prefix", "web")]))
        self.assertEqual(publisher.desires(objects, reports_of(objects)), {})


class ReconcilerTests(SynchronousTestCase):
    """The published Service is looked at every 5 s (it rebuilds nothing by itself)."""

    def test_a_service_address_change_is_written_at_the_next_check(self) -> None:
        clock = ThreadlessClock()
        front = lb_service(
            type="LoadBalancer", status={"loadBalancer": {"ingress": [{"ip": "198.51.100.1"}]}}
        )
        mine = with_version(ingress("mine", [("/", "Prefix", "web")]))
        objects = ingress_world(mine)
        api = FakeStatusAPI(mine)
        writer = StatusWriter(api, clock, threadpool=InlinePool(), active=True)
        reconciler = StatusReconciler(
            writer, None, clock, IngressOptions(), parse_publish("infra/gw", ""),
            lambda ns, name: front if (ns, name) == ("infra", "gw") else None,
            now=lambda: NOW,
        )  # fmt: skip
        reconciler.startService()
        self.addCleanup(reconciler.stopService)
        snapshot = compile_snapshot(objects, CompileOptions(), now=NOW)
        reconciler.applied(objects, snapshot)
        key = key_of(mine)
        self.assertEqual(api.writes, [key])
        objects[-1] = api.stored[key]  # the watch delivers our write
        reconciler.applied(objects, snapshot)
        self.assertEqual(api.writes, [key])
        front["status"]["loadBalancer"]["ingress"] = [{"ip": "198.51.100.2"}]
        clock.advance(SERVICE_CHECK_INTERVAL - 0.1)
        self.assertEqual(len(api.writes), 1)
        clock.advance(0.1)
        self.assertEqual(len(api.writes), 2)
        self.assertEqual(
            api.stored[key]["status"], {"loadBalancer": {"ingress": [{"ip": "198.51.100.2"}]}}
        )
        clock.advance(SERVICE_CHECK_INTERVAL * 3)  # unchanged since: no more writes
        self.assertEqual(len(api.writes), 2)


class GatewayApiEventTests(SynchronousTestCase):
    """The contract's Event reasons from Gateway API conditions (section 9, every dialect)."""

    NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)

    def event(self, *conditions: Condition) -> dict[str, Any]:
        key = ObjectKey("HTTPRoute", "shop", "web")
        gateway = ObjectKey("Gateway", "infra", "gw")
        status = ObjectStatus(key, parents=(ParentStatus(gateway, None, None, conditions),))
        route = {"kind": "HTTPRoute", "metadata": {"namespace": "shop", "name": "web", "uid": "u"}}
        (event,) = gateway_api_events([status], [route], self.NOW, "tenantgw").values()
        return event

    def said(self, event: dict[str, Any]) -> tuple[str, str, str]:
        return event["reason"], event["type"], event["message"]

    def test_good_conditions_are_accepted(self) -> None:
        event = self.event(Condition("Accepted", "True", "Accepted"))
        self.assertEqual(self.said(event), ("Accepted", "Normal", "attached to Gateway infra/gw"))
        self.assertEqual(event["involvedObject"]["uid"], "u")

    def test_a_route_not_accepted_is_rejected(self) -> None:
        event = self.event(Condition("Accepted", "False", "NotAllowedByListeners", "no listener"))
        self.assertEqual(
            self.said(event),
            ("Rejected", "Warning", "Accepted False (NotAllowedByListeners): no listener"),
        )

    def test_a_missing_backend_is_an_accepted_warning(self) -> None:
        event = self.event(
            Condition("Accepted", "True", "Accepted"),
            Condition("ResolvedRefs", "False", "BackendNotFound", "no Service 'gone'"),
        )
        self.assertEqual(
            self.said(event),
            ("Accepted", "Warning", "ResolvedRefs False (BackendNotFound): no Service 'gone'"),
        )

    def test_host_conflict_keeps_its_name(self) -> None:
        event = self.event(Condition("Accepted", "False", "HostConflict", "taken"))
        self.assertEqual(self.said(event)[:2], ("HostConflict", "Warning"))

    def test_cluster_scoped_objects_get_none(self) -> None:
        status = ObjectStatus(ObjectKey("GatewayClass", "", "tenantgw"))
        self.assertEqual(gateway_api_events([status], [], self.NOW, "tenantgw"), {})
