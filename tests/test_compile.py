"""
Tests for L{tenantgw.compile.compiler}: from watched objects to a snapshot.

Every rule of the contract that decides *which* config serves is checked
here without a network: namespace selection, host ownership and conflicts,
host allowances, quota ceilings, isolation of Services and Secrets, the
EndpointSlice reading, route precedence and the last good config.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import itertools
import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tenantgw.compile.compiler import CompileOptions, compile_snapshot
from tenantgw.compile.selector import LabelSelector
from tenantgw.config.model import RateLimit
from tenantgw.plans.routes import Endpoint
from tenantgw.plans.snapshot import (
    STATE_ACCEPTED,
    STATE_CLAMPED,
    STATE_HOST_CONFLICT,
    STATE_REJECTED,
    Snapshot,
)

BASE = "apps.example.com"
OPTIONS = CompileOptions(base_domain=BASE)
ALLOWED = "tenantgw.io/allowed-hosts"

Obj = dict[str, Any]


# --- object builders ---------------------------------------------------------


def namespace(
    name: str,
    labels: dict[str, str] | None = None,
    annotations: dict[str, Any] | None = None,
) -> Obj:
    meta: Obj = {"name": name}
    if labels is not None:
        meta["labels"] = labels
    if annotations is not None:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def tenant_cm(
    ns: str,
    spec: Any = None,
    *,
    name: str = "tenant",
    created: Any = "2024-01-01T00:00:00Z",
    text: str | None = None,
    labels: dict[str, str] | None = None,
) -> Obj:
    """A Tenant ConfigMap; C{spec} is dumped as JSON (which is YAML)."""
    data: Obj = {}
    if text is not None:
        data["tenant.yaml"] = text
    elif spec is not None:
        data["tenant.yaml"] = json.dumps(spec)
    meta: Obj = {
        "name": name,
        "namespace": ns,
        "labels": {"tenantgw.io/tenant": "true"} if labels is None else labels,
    }
    if created is not None:
        meta["creationTimestamp"] = created
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def route(name: str, service: str = "web", port: Any = 80, **match: Any) -> Obj:
    r: Obj = {"name": name, "backends": [{"service": service, "port": port}]}
    if match:
        r["match"] = match
    return r


def simple_spec(*hosts: str, service: str = "web", port: Any = 80) -> Obj:
    spec: Obj = {"routes": [route("all", service, port)]}
    if hosts:
        spec["hosts"] = list(hosts)
    return spec


def service(ns: str, name: str, ports: list[Obj]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ports": ports},
    }


def endpoint_slice(
    ns: str,
    name: str,
    service_name: str | None,
    ports: Any,
    endpoints: Any,
    address_type: str | None = "IPv4",
) -> Obj:
    meta: Obj = {"name": name, "namespace": ns}
    if service_name is not None:
        meta["labels"] = {"kubernetes.io/service-name": service_name}
    obj: Obj = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": meta,
        "ports": ports,
        "endpoints": endpoints,
    }
    if address_type is not None:
        obj["addressType"] = address_type
    return obj


def ready(*addresses: Any, is_ready: bool | None = True) -> Obj:
    endpoint: Obj = {"addresses": list(addresses)}
    if is_ready is not None:
        endpoint["conditions"] = {"ready": is_ready}
    return endpoint


def secret(
    ns: str,
    name: str,
    data: dict[str, bytes] | None = None,
    string_data: dict[str, str] | None = None,
) -> Obj:
    obj: Obj = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}}
    if data is not None:
        obj["data"] = {k: base64.b64encode(v).decode("ascii") for k, v in data.items()}
    if string_data is not None:
        obj["stringData"] = string_data
    return obj


def web_backend(ns: str, address: str = "10.0.0.1") -> list[Obj]:
    """Service C{web} (port 80, unnamed) with one ready endpoint on 8080."""
    return [
        service(ns, "web", [{"port": 80}]),
        endpoint_slice(ns, "web-1", "web", [{"port": 8080}], [ready(address)]),
    ]


def tenant(
    ns: str, spec: Any, *, annotations: dict[str, Any] | None = None, **cm: Any
) -> list[Obj]:
    return [namespace(ns, annotations=annotations), tenant_cm(ns, spec, **cm)]


# --- namespace selection ---------------------------------------------------------


class NamespaceSelectionTests(SynchronousTestCase):
    def objects(self) -> list[Obj]:
        objects: list[Obj] = []
        for name, labels in [
            ("gold", {"tier": "gold"}),
            ("silver", {"tier": "silver"}),
            ("plain", {}),
            ("excluded", {"tier": "gold", "excluded": ""}),
        ]:
            objects += [namespace(name, labels), tenant_cm(name, simple_spec())]
        return objects

    def selected(self, selector: str) -> list[str]:
        options = CompileOptions(namespace_selector=LabelSelector.parse(selector))
        snapshot = compile_snapshot(self.objects(), options)
        self.assertEqual(sorted(snapshot.tenants), sorted(snapshot.statuses))
        return sorted(snapshot.tenants)

    def test_default_selects_every_namespace(self) -> None:
        self.assertEqual(self.selected(""), ["excluded", "gold", "plain", "silver"])

    def test_equality(self) -> None:
        self.assertEqual(self.selected("tier=gold"), ["excluded", "gold"])
        self.assertEqual(self.selected("tier==silver"), ["silver"])
        self.assertEqual(self.selected("tier!=gold"), ["plain", "silver"])

    def test_set_based(self) -> None:
        self.assertEqual(self.selected("tier in (gold, silver)"), ["excluded", "gold", "silver"])
        self.assertEqual(self.selected("tier notin (gold)"), ["plain", "silver"])

    def test_existence(self) -> None:
        self.assertEqual(self.selected("!excluded"), ["gold", "plain", "silver"])
        self.assertEqual(self.selected("excluded"), ["excluded"])
        self.assertEqual(self.selected("tier,!excluded"), ["gold", "silver"])

    def test_namespace_without_tenant_config_map_is_not_a_tenant(self) -> None:
        objects = [namespace("empty"), *tenant("shop", simple_spec())]
        snapshot = compile_snapshot(objects, OPTIONS)
        self.assertEqual(list(snapshot.tenants), ["shop"])
        self.assertEqual(list(snapshot.statuses), ["shop"])
        self.assertIsNone(snapshot.tenant_for_host(f"empty.{BASE}"))

    def test_reserved_derived_host_is_not_caught_by_a_wildcard(self) -> None:
        wildcard_spec = {"hosts": [f"*.{BASE}"], "routes": simple_spec()["routes"]}
        objects = [
            namespace("empty"),
            *tenant("shop", wildcard_spec, annotations={"tenantgw.io/allowed-hosts": f"*.{BASE}"}),
        ]
        snapshot = compile_snapshot(objects, OPTIONS)
        self.assertEqual(snapshot.tenant_for_host(f"other.{BASE}").namespace, "shop")
        self.assertIsNone(snapshot.tenant_for_host(f"empty.{BASE}"))

    def test_tenant_may_list_its_own_derived_host(self) -> None:
        spec = {"hosts": [f"shop.{BASE}"], "routes": simple_spec()["routes"]}
        snapshot = compile_snapshot(tenant("shop", spec), OPTIONS)
        self.assertEqual(snapshot.statuses["shop"].state, STATE_ACCEPTED)
        self.assertEqual(snapshot.tenants["shop"].hosts, (f"shop.{BASE}",))

    def test_config_maps_without_the_label_are_ignored(self) -> None:
        unlabeled = tenant_cm("a", simple_spec(), labels={})
        wrong_value = tenant_cm("b", simple_spec(), labels={"tenantgw.io/tenant": "false"})
        other_label = tenant_cm("c", simple_spec(), labels={"app": "tenant"})
        objects = [namespace("a"), namespace("b"), namespace("c"), unlabeled, wrong_value]
        snapshot = compile_snapshot([*objects, other_label], OPTIONS)
        self.assertEqual((snapshot.tenants, snapshot.statuses), ({}, {}))
        # Their namespaces serve nothing, but their derived hosts stay theirs.
        self.assertEqual(snapshot.reserved_hosts, {f"a.{BASE}", f"b.{BASE}", f"c.{BASE}"})

    def test_unlabeled_config_map_is_not_counted_as_a_second_tenant_config(self) -> None:
        older_unlabeled = tenant_cm(
            "shop", simple_spec(), name="aaa", created="2000-01-01T00:00:00Z", labels={}
        )
        objects = [*tenant("shop", simple_spec()), *web_backend("shop"), older_unlabeled]
        snapshot = compile_snapshot(objects, OPTIONS)
        status = snapshot.statuses["shop"]
        self.assertEqual(
            (status.state, status.config_map, status.messages), ("Accepted", "tenant", ())
        )

    def test_config_map_without_its_namespace_object_is_not_a_tenant(self) -> None:
        snapshot = compile_snapshot([tenant_cm("ghost", simple_spec())], OPTIONS)
        self.assertEqual((dict(snapshot.tenants), dict(snapshot.statuses)), ({}, {}))


# --- hosts --------------------------------------------------------------------------


class DerivedHostTests(SynchronousTestCase):
    def test_derived_host(self) -> None:
        options = CompileOptions(base_domain=".Apps.Example.COM.")
        snapshot = compile_snapshot(tenant("shop", simple_spec()), options)
        self.assertEqual(snapshot.tenants["shop"].hosts, (f"shop.{BASE}",))
        self.assertEqual(snapshot.tenant_for_host(f"shop.{BASE}").namespace, "shop")
        self.assertEqual(snapshot.statuses["shop"].hosts, (f"shop.{BASE}",))

    def test_no_base_domain_no_derived_host(self) -> None:
        snapshot = compile_snapshot(tenant("shop", simple_spec()))
        self.assertEqual(snapshot.tenants["shop"].hosts, ())
        self.assertEqual(dict(snapshot.exact_hosts), {})

    def test_derived_host_always_owned_by_its_namespace(self) -> None:
        """
        An older tenant allowed C{*.apps.example.com} cannot take another
        namespace's derived host; it keeps its other hosts.
        """
        objects = [
            *tenant(
                "grabber",
                simple_spec(f"victim.{BASE}", f"promo.{BASE}"),
                annotations={ALLOWED: f"*.{BASE}"},
                created="2000-01-01T00:00:00Z",
            ),
            *tenant("victim", simple_spec(), created="2024-01-01T00:00:00Z"),
        ]
        snapshot = compile_snapshot(objects, OPTIONS)
        self.assertEqual(snapshot.tenant_for_host(f"victim.{BASE}").namespace, "victim")
        self.assertEqual(snapshot.tenants["victim"].hosts, (f"victim.{BASE}",))
        self.assertEqual(snapshot.tenants["grabber"].hosts, (f"grabber.{BASE}", f"promo.{BASE}"))
        status = snapshot.statuses["grabber"]
        self.assertEqual((status.state, status.serving), (STATE_HOST_CONFLICT, True))
        self.assertTrue(any(f"victim.{BASE}" in m for m in status.messages), status.messages)
        self.assertEqual(snapshot.statuses["victim"].state, STATE_ACCEPTED)

    def test_derived_host_reserved_while_its_tenant_is_rejected(self) -> None:
        """
        A namespace whose tenant is rejected with no last good config still
        owns its derived host: nobody else serves its traffic meanwhile.
        """
        objects = [
            *tenant(
                "grabber",
                simple_spec(f"victim.{BASE}"),
                annotations={ALLOWED: f"*.{BASE}"},
            ),
            *tenant("victim", None, text="routes: [oops"),
        ]
        snapshot = compile_snapshot(objects, OPTIONS)
        self.assertNotIn("victim", snapshot.tenants)
        self.assertIsNone(snapshot.tenant_for_host(f"victim.{BASE}"))
        status = snapshot.statuses["grabber"]
        self.assertEqual(status.state, STATE_HOST_CONFLICT)
        self.assertTrue(any(f"victim.{BASE}" in m for m in status.messages), status.messages)

    def test_derived_host_reserved_for_selected_namespace_without_tenant(self) -> None:
        objects = [
            namespace("later"),
            *tenant("grabber", simple_spec(f"later.{BASE}"), annotations={ALLOWED: f"*.{BASE}"}),
        ]
        snapshot = compile_snapshot(objects, OPTIONS)
        self.assertIsNone(snapshot.tenant_for_host(f"later.{BASE}"))
        self.assertEqual(snapshot.statuses["grabber"].state, STATE_HOST_CONFLICT)

    def test_unselected_namespace_derived_host_is_not_reserved(self) -> None:
        options = CompileOptions(base_domain=BASE, namespace_selector=LabelSelector.parse("t"))
        objects = [
            namespace("kube-system"),
            namespace("grabber", {"t": ""}, {ALLOWED: f"*.{BASE}"}),
            tenant_cm("grabber", simple_spec(f"kube-system.{BASE}")),
        ]
        snapshot = compile_snapshot(objects, options)
        self.assertEqual(snapshot.tenant_for_host(f"kube-system.{BASE}").namespace, "grabber")
        self.assertEqual(snapshot.statuses["grabber"].state, STATE_ACCEPTED)


class HostAllowanceTests(SynchronousTestCase):
    def compile_claim(self, allowed: str | None, *hosts: str) -> Snapshot:
        annotations = {ALLOWED: allowed} if allowed is not None else None
        return compile_snapshot(
            tenant("shop", simple_spec(*hosts), annotations=annotations), OPTIONS
        )

    def assertAccepted(self, allowed: str | None, host: str) -> None:
        snapshot = self.compile_claim(allowed, host)
        status = snapshot.statuses["shop"]
        self.assertEqual(status.state, STATE_ACCEPTED, (allowed, host, status))
        self.assertIn(host, snapshot.tenants["shop"].hosts)

    def assertRefused(self, allowed: str | None, host: str) -> None:
        snapshot = self.compile_claim(allowed, "ok.example.org", host)
        status = snapshot.statuses["shop"]
        self.assertEqual((status.state, status.serving), (STATE_REJECTED, False), (allowed, host))
        self.assertNotIn("shop", snapshot.tenants)
        self.assertEqual(len(status.messages), 1, status.messages)
        self.assertTrue(status.messages[0].startswith("hosts[1]: "), status.messages)
        self.assertIn(repr(host), status.messages[0])
        self.assertIn("tenantgw.io/allowed-hosts", status.messages[0])

    def test_no_annotation_allows_no_extra_host(self) -> None:
        snapshot = self.compile_claim(None, "shop.example.com")
        status = snapshot.statuses["shop"]
        self.assertEqual(status.state, STATE_REJECTED)
        self.assertTrue(status.messages[0].startswith("hosts[0]: "), status.messages)

    def test_exact_allowance(self) -> None:
        allowed = "ok.example.org, shop.example.com"
        self.assertAccepted(allowed, "shop.example.com")
        self.assertRefused(allowed, "a.shop.example.com")
        self.assertRefused(allowed, "*.shop.example.com")
        self.assertRefused(allowed, "example.com")

    def test_wildcard_allowance(self) -> None:
        allowed = "ok.example.org,*.shop.example.com"
        for host in (
            "a.shop.example.com",
            "x.y.shop.example.com",
            "*.shop.example.com",
            "*.x.shop.example.com",
        ):
            self.assertAccepted(allowed, host)
        self.assertRefused(allowed, "shop.example.com")
        self.assertRefused(allowed, "ashop.example.com")
        self.assertRefused(allowed, "*.example.com")
        self.assertRefused(allowed, "a.shop.example.com.evil.org")

    def test_allowance_is_case_insensitive(self) -> None:
        snapshot = self.compile_claim("*.Shop.Example.COM", "A.SHOP.example.com")
        self.assertEqual(snapshot.statuses["shop"].state, STATE_ACCEPTED)
        self.assertIs(snapshot.tenant_for_host("a.shop.example.com"), snapshot.tenants["shop"])

    def test_refused_host_with_last_good_config_keeps_serving(self) -> None:
        first = self.compile_claim("shop.example.com", "shop.example.com")
        good = first.tenants["shop"]
        self.assertEqual(first.statuses["shop"].state, STATE_ACCEPTED)

        objects = tenant(
            "shop",
            {"hosts": ["shop.example.com", "evil.example.com"], "routes": [route("new")]},
            annotations={ALLOWED: "shop.example.com"},
        )
        second = compile_snapshot(objects, OPTIONS, first)
        served = second.tenants["shop"]
        self.assertEqual(served.generation, good.generation)
        self.assertEqual([r.name for r in served.routes], ["all"])
        self.assertEqual(served.hosts, (f"shop.{BASE}", "shop.example.com"))
        self.assertIs(second.tenant_for_host("shop.example.com"), served)
        status = second.statuses["shop"]
        self.assertEqual((status.state, status.serving), (STATE_REJECTED, True))
        self.assertTrue(status.messages[0].startswith("hosts[1]: "), status.messages)
        self.assertIn("'evil.example.com'", status.messages[0])
        self.assertIn(f"serving the last good config ({good.generation})", status.messages)
        self.assertEqual(second.last_good["shop"], first.last_good["shop"])

    def test_bad_allowed_hosts_entry_narrows_without_rejecting(self) -> None:
        snapshot = self.compile_claim("a.*.example.com, shop.example.com", "shop.example.com")
        status = snapshot.statuses["shop"]
        self.assertEqual((status.state, status.serving), (STATE_ACCEPTED, True))
        self.assertEqual(snapshot.tenants["shop"].hosts, (f"shop.{BASE}", "shop.example.com"))
        self.assertTrue(any("a.*.example.com" in m for m in status.messages), status.messages)


class HostConflictTests(SynchronousTestCase):
    CLAIMED = "shop.example.com"

    def claimant(self, ns: str, created: Any, cm_name: str = "tenant") -> list[Obj]:
        return tenant(
            ns,
            simple_spec(self.CLAIMED, f"{ns}.example.com"),
            annotations={ALLOWED: f"{self.CLAIMED},{ns}.example.com"},
            created=created,
            name=cm_name,
        )

    def test_oldest_config_map_wins(self) -> None:
        objects = [
            *self.claimant("aaa", "2024-03-01T00:00:00Z"),
            *self.claimant("mmm", "2024-01-01T00:00:00Z"),
            *self.claimant("zzz", "2024-02-01T00:00:00Z"),
        ]
        snapshot = compile_snapshot(objects, OPTIONS)
        self.assertEqual(snapshot.tenant_for_host(self.CLAIMED).namespace, "mmm")
        self.assertEqual(snapshot.statuses["mmm"].state, STATE_ACCEPTED)
        for loser in ("aaa", "zzz"):
            status = snapshot.statuses[loser]
            self.assertEqual((status.state, status.serving), (STATE_HOST_CONFLICT, True))
            self.assertTrue(any(repr(self.CLAIMED) in m for m in status.messages))
            # The loser is refused only that host; the rest keeps serving.
            self.assertEqual(
                snapshot.tenants[loser].hosts, (f"{loser}.{BASE}", f"{loser}.example.com")
            )
            self.assertEqual(snapshot.tenant_for_host(f"{loser}.example.com").namespace, loser)

    def test_namespace_then_name_break_timestamp_ties(self) -> None:
        """Contract section 10: creationTimestamp, then namespace/name, for every dialect."""
        same = "2024-01-01T00:00:00Z"
        objects = [*self.claimant("aaa", same, "zeta"), *self.claimant("zzz", same, "alpha")]
        snapshot = compile_snapshot(objects, OPTIONS)
        self.assertEqual(snapshot.tenant_for_host(self.CLAIMED).namespace, "aaa")
        self.assertEqual(snapshot.statuses["zzz"].state, STATE_HOST_CONFLICT)

    def test_missing_timestamp_counts_as_newest(self) -> None:
        objects = [*self.claimant("aaa", None), *self.claimant("zzz", "2024-01-01T00:00:00Z")]
        snapshot = compile_snapshot(objects, OPTIONS)
        self.assertEqual(snapshot.tenant_for_host(self.CLAIMED).namespace, "zzz")

    def test_timestamps_compared_as_instants(self) -> None:
        """
        A directory source hands over unquoted timestamps as C{datetime}s and
        quoted ones as strings; offsets must be compared as instants.
        """
        utc = datetime.timezone.utc
        cases = [
            # (older, newer)
            ("2024-01-01T09:00:00Z", datetime.datetime(2024, 1, 1, 10, 0, tzinfo=utc)),
            (datetime.datetime(2024, 1, 1, 9, 0, tzinfo=utc), "2024-01-01T10:00:00Z"),
            ("2024-01-01T10:00:00+02:00", "2024-01-01T09:00:00Z"),
            ("2024-01-01T09:00:00Z", "2024-01-01T09:00:00.500000Z"),
        ]
        for older, newer in cases:
            for first, second in (("aaa", "zzz"), ("zzz", "aaa")):
                objects = [*self.claimant(first, older), *self.claimant(second, newer)]
                snapshot = compile_snapshot(objects, OPTIONS)
                self.assertEqual(
                    snapshot.tenant_for_host(self.CLAIMED).namespace, first, (older, newer)
                )

    def test_independent_of_object_order(self) -> None:
        objects = [
            *self.claimant("aaa", "2024-03-01T00:00:00Z"),
            *self.claimant("mmm", "2024-01-01T00:00:00Z"),
            *self.claimant("zzz", "2024-01-01T00:00:00Z", cm_name="a-first"),
        ]
        expected = compile_snapshot(objects, OPTIONS)
        self.assertEqual(expected.tenant_for_host(self.CLAIMED).namespace, "mmm")
        for permutation in itertools.permutations(objects):
            self.assertEqual(compile_snapshot(list(permutation), OPTIONS), expected)

    def test_deleting_the_winner_hands_the_host_to_the_next_claimant(self) -> None:
        winner = self.claimant("mmm", "2024-01-01T00:00:00Z")
        rest = [
            *self.claimant("aaa", "2024-03-01T00:00:00Z"),
            *self.claimant("zzz", "2024-02-01T00:00:00Z"),
            *web_backend("zzz"),
        ]
        first = compile_snapshot([*winner, *rest], OPTIONS)
        self.assertEqual(first.tenant_for_host(self.CLAIMED).namespace, "mmm")
        # The ConfigMap goes, the namespace stays.
        second = compile_snapshot([winner[0], *rest], OPTIONS, first)
        self.assertEqual(second.tenant_for_host(self.CLAIMED).namespace, "zzz")
        self.assertNotIn("mmm", second.tenants)
        self.assertNotIn("mmm", second.statuses)
        self.assertEqual(second.statuses["zzz"].state, STATE_ACCEPTED)
        self.assertEqual(second.statuses["zzz"].messages, ())
        self.assertEqual(second.statuses["aaa"].state, STATE_HOST_CONFLICT)
        self.assertTrue(any("'zzz'" in m for m in second.statuses["aaa"].messages))

    def test_traffic_never_split(self) -> None:
        objects = [
            *self.claimant("aaa", "2024-03-01T00:00:00Z"),
            *self.claimant("mmm", "2024-01-01T00:00:00Z"),
        ]
        snapshot = compile_snapshot(objects, OPTIONS)
        owners = [ns for ns, t in snapshot.tenants.items() if self.CLAIMED in t.hosts]
        self.assertEqual(owners, ["mmm"])


class HostLookupTests(SynchronousTestCase):
    def snapshot(self) -> Snapshot:
        # Names chosen so that alphabetical order is *not* longest-first.
        return compile_snapshot(
            [
                *tenant(
                    "a-wide", simple_spec("*.example.com"), annotations={ALLOWED: "*.example.com"}
                ),
                *tenant(
                    "b-narrow",
                    simple_spec("*.shop.example.com"),
                    annotations={ALLOWED: "*.shop.example.com"},
                ),
                *tenant(
                    "c-exact",
                    simple_spec("x.shop.example.com"),
                    annotations={ALLOWED: "x.shop.example.com"},
                ),
            ]
        )

    def test_wildcards_sorted_longest_first(self) -> None:
        snapshot = self.snapshot()
        self.assertEqual(
            [(suffix, t.namespace) for suffix, t in snapshot.wildcard_hosts],
            [(".shop.example.com", "b-narrow"), (".example.com", "a-wide")],
        )
        self.assertEqual(list(snapshot.exact_hosts), ["x.shop.example.com"])

    def test_lookup(self) -> None:
        snapshot = self.snapshot()
        expected = {
            "x.shop.example.com": "c-exact",  # exact beats any wildcard
            "y.shop.example.com": "b-narrow",  # longer wildcard beats shorter
            "a.b.shop.example.com": "b-narrow",  # one or more labels
            "shop.example.com": "a-wide",  # *.shop.example.com never matches itself
            "a.example.com": "a-wide",
            "example.com": None,
            "xexample.com": None,
            "other.org": None,
        }
        for host, owner in expected.items():
            found = snapshot.tenant_for_host(host)
            self.assertEqual(found.namespace if found else None, owner, host)


class TenantConfigMapTests(SynchronousTestCase):
    def test_oldest_of_several_config_maps_is_used(self) -> None:
        objects = [
            namespace("shop"),
            tenant_cm(
                "shop", {"routes": [route("newer")]}, name="b", created="2024-02-01T00:00:00Z"
            ),
            tenant_cm(
                "shop", {"routes": [route("oldest")]}, name="z", created="2024-01-01T00:00:00Z"
            ),
            tenant_cm("shop", {"routes": [route("tie")]}, name="c", created="2024-02-01T00:00:00Z"),
        ]
        for permutation in itertools.permutations(objects):
            snapshot = compile_snapshot([*permutation, *web_backend("shop")], OPTIONS)
            self.assertEqual([r.name for r in snapshot.tenants["shop"].routes], ["oldest"])
            status = snapshot.statuses["shop"]
            self.assertEqual(status.config_map, "z")
            self.assertEqual(len(status.messages), 2, status.messages)
            self.assertIn("'b'", status.messages[0])
            self.assertIn("'c'", status.messages[1])

    def test_missing_tenant_yaml_key(self) -> None:
        cm = tenant_cm("shop", None)
        cm["data"] = {"tenant.yml": "routes: []"}
        snapshot = compile_snapshot([namespace("shop"), cm], OPTIONS)
        status = snapshot.statuses["shop"]
        self.assertEqual((status.state, status.serving), (STATE_REJECTED, False))
        self.assertEqual(len(status.messages), 1)
        self.assertTrue(status.messages[0].startswith("data.tenant.yaml"), status.messages)
        self.assertNotIn("shop", snapshot.tenants)
        self.assertIsNone(snapshot.tenant_for_host(f"shop.{BASE}"))

    def test_no_data_at_all(self) -> None:
        cm = tenant_cm("shop", None)
        del cm["data"]
        status = compile_snapshot([namespace("shop"), cm], OPTIONS).statuses["shop"]
        self.assertEqual(status.state, STATE_REJECTED)
        self.assertTrue(status.messages[0].startswith("data.tenant.yaml"))

    def test_empty_tenant_yaml_is_a_tenant_with_no_routes(self) -> None:
        snapshot = compile_snapshot(tenant("shop", None, text=""), OPTIONS)
        self.assertEqual(snapshot.tenants["shop"].routes, ())
        self.assertEqual(snapshot.statuses["shop"].state, STATE_ACCEPTED)


class LastGoodConfigTests(SynchronousTestCase):
    def test_rejected_without_previous_config(self) -> None:
        spec = {"routes": [{"name": "r", "backends": [{"service": "web", "port": "x y"}]}]}
        snapshot = compile_snapshot(tenant("shop", spec), OPTIONS)
        self.assertNotIn("shop", snapshot.tenants)
        self.assertNotIn("shop", snapshot.last_good)
        status = snapshot.statuses["shop"]
        self.assertEqual((status.state, status.serving), (STATE_REJECTED, False))
        self.assertEqual(status.config_map, "tenant")
        self.assertTrue(
            any(m.startswith("routes[0].backends[0].port") for m in status.messages),
            status.messages,
        )

    def test_last_good_survives_several_rejections_then_recovers(self) -> None:
        good = compile_snapshot(tenant("shop", simple_spec()), OPTIONS)
        generation = good.tenants["shop"].generation
        bad = tenant("shop", None, text="routes: {")
        once = compile_snapshot(bad, OPTIONS, good)
        twice = compile_snapshot(bad, OPTIONS, once)
        for snapshot in (once, twice):
            self.assertEqual(snapshot.tenants["shop"].generation, generation)
            self.assertEqual(snapshot.last_good["shop"][0], generation)
            status = snapshot.statuses["shop"]
            self.assertEqual((status.state, status.serving), (STATE_REJECTED, True))
            self.assertIs(snapshot.tenant_for_host(f"shop.{BASE}"), snapshot.tenants["shop"])
        fixed = compile_snapshot(tenant("shop", {"routes": [route("v2")]}), OPTIONS, twice)
        self.assertNotEqual(fixed.tenants["shop"].generation, generation)
        self.assertEqual([r.name for r in fixed.tenants["shop"].routes], ["v2"])
        self.assertEqual(fixed.statuses["shop"].state, STATE_ACCEPTED)

    def test_last_good_is_per_namespace(self) -> None:
        good = compile_snapshot(tenant("shop", simple_spec()), OPTIONS)
        snapshot = compile_snapshot(tenant("blog", None, text="routes: {"), OPTIONS, good)
        self.assertEqual(dict(snapshot.tenants), {})
        self.assertFalse(snapshot.statuses["blog"].serving)

    def test_removed_tenant_forgets_last_good(self) -> None:
        good = compile_snapshot(tenant("shop", simple_spec()), OPTIONS)
        gone = compile_snapshot([], OPTIONS, good)
        self.assertEqual(dict(gone.last_good), {})
        back = compile_snapshot(tenant("shop", None, text="routes: {"), OPTIONS, gone)
        self.assertNotIn("shop", back.tenants)


# --- quota ceilings ------------------------------------------------------------------


class QuotaCeilingTests(SynchronousTestCase):
    CEILINGS = {
        "tenantgw.io/max-requests-per-second": "50",
        "tenantgw.io/max-burst": "60",
        "tenantgw.io/max-concurrent-requests": "10",
        "tenantgw.io/max-request-body-bytes": "1000",
    }
    QUOTA = {
        "requestsPerSecond": 100,
        "burst": 200,
        "maxConcurrentRequests": 500,
        "maxRequestBodyBytes": 1000000,
    }

    def compile_quota(self, quota: Obj, annotations: dict[str, Any]) -> Snapshot:
        spec = {"quota": quota, "routes": [route("all")]}
        objects = [*tenant("shop", spec, annotations=annotations), *web_backend("shop")]
        return compile_snapshot(objects, OPTIONS)

    def test_values_above_ceilings_clamped(self) -> None:
        snapshot = self.compile_quota(self.QUOTA, self.CEILINGS)
        quota = snapshot.tenants["shop"].quota
        self.assertEqual(quota.rate, RateLimit(50.0, 60))
        self.assertEqual(quota.max_concurrent_requests, 10)
        self.assertEqual(quota.max_request_body_bytes, 1000)
        status = snapshot.statuses["shop"]
        self.assertEqual((status.state, status.serving), (STATE_CLAMPED, True))
        text = "\n".join(status.messages)
        for field in (
            "quota.requestsPerSecond",
            "quota.burst",
            "quota.maxConcurrentRequests",
            "quota.maxRequestBodyBytes",
        ):
            self.assertIn(field, text)
        # The tenant's own file is not rewritten; only the compiled quota is.
        self.assertEqual(snapshot.last_good["shop"][1].quota.max_concurrent_requests, 500)

    def test_values_within_ceilings_untouched(self) -> None:
        quota = {
            "requestsPerSecond": 5,
            "burst": 6,
            "maxConcurrentRequests": 7,
            "maxRequestBodyBytes": 8,
        }
        snapshot = self.compile_quota(quota, self.CEILINGS)
        self.assertEqual(snapshot.tenants["shop"].quota.rate, RateLimit(5.0, 6))
        self.assertEqual(snapshot.statuses["shop"].state, STATE_ACCEPTED)
        self.assertEqual(snapshot.statuses["shop"].messages, ())

    def test_one_field_clamped_named_alone(self) -> None:
        snapshot = self.compile_quota(
            {"maxConcurrentRequests": 11}, {"tenantgw.io/max-concurrent-requests": "10"}
        )
        status = snapshot.statuses["shop"]
        self.assertEqual(status.state, STATE_CLAMPED)
        self.assertEqual(len(status.messages), 1)
        self.assertIn("quota.maxConcurrentRequests", status.messages[0])

    def test_malformed_ceiling_rejects(self) -> None:
        for value in ("lots", "-1", "1e3", ""):
            snapshot = self.compile_quota(
                self.QUOTA, {"tenantgw.io/max-concurrent-requests": value}
            )
            status = snapshot.statuses["shop"]
            self.assertEqual((status.state, status.serving), (STATE_REJECTED, False), value)
            self.assertNotIn("shop", snapshot.tenants)
            self.assertTrue(
                any("tenantgw.io/max-concurrent-requests" in m for m in status.messages)
            )

    def test_unquoted_annotation_values(self) -> None:
        """
        A hand-written manifest may leave a ceiling unquoted; it is read as
        its text rather than crashing the compile.
        """
        snapshot = self.compile_quota(self.QUOTA, {"tenantgw.io/max-concurrent-requests": 10})
        self.assertEqual(snapshot.tenants["shop"].quota.max_concurrent_requests, 10)
        for value in (True, None, [1]):
            snapshot = self.compile_quota(
                self.QUOTA, {"tenantgw.io/max-concurrent-requests": value}
            )
            self.assertEqual(snapshot.statuses["shop"].state, STATE_REJECTED, value)


# --- backends ------------------------------------------------------------------------


class BackendResolutionTests(SynchronousTestCase):
    def backend(self, objects: list[Obj], port: Any = 80, service_name: str = "web") -> Any:
        snapshot = compile_snapshot(
            [*tenant("shop", simple_spec(service=service_name, port=port)), *objects], OPTIONS
        )
        self.status = snapshot.statuses["shop"]
        [compiled_route] = snapshot.tenants["shop"].routes
        [backend] = compiled_route.backends
        return backend

    def test_only_own_namespace(self) -> None:
        objects = [
            *web_backend("other", "10.9.9.9"),
            *web_backend("shop", "10.0.0.1"),
            # A slice in shop naming a Service of another namespace by label
            # still only counts for shop's Service of that name.
        ]
        backend = self.backend(objects)
        self.assertEqual(backend.endpoints, (Endpoint("10.0.0.1", 8080),))
        self.assertEqual(self.status.messages, ())

    def test_same_name_in_other_namespace_is_not_used(self) -> None:
        backend = self.backend(web_backend("other", "10.9.9.9"))
        self.assertEqual(backend.endpoints, ())
        self.assertEqual(self.status.state, STATE_ACCEPTED)
        self.assertEqual(len(self.status.messages), 1)
        self.assertTrue(self.status.messages[0].startswith("routes[0].backends[0].service"))
        self.assertIn("'web'", self.status.messages[0])

    def test_slices_of_other_namespace_not_merged(self) -> None:
        objects = [
            service("shop", "web", [{"port": 80}]),
            endpoint_slice("other", "web-x", "web", [{"port": 8080}], [ready("10.9.9.9")]),
        ]
        self.assertEqual(self.backend(objects).endpoints, ())

    def test_unknown_port(self) -> None:
        backend = self.backend(web_backend("shop"), port=81)
        self.assertEqual(backend.endpoints, ())
        self.assertTrue(self.status.messages[0].startswith("routes[0].backends[0].port"))

    def named_port_objects(self) -> list[Obj]:
        return [
            service(
                "shop",
                "web",
                [{"name": "metrics", "port": 9000}, {"name": "http", "port": 80}],
            ),
            endpoint_slice(
                "shop",
                "web-1",
                "web",
                [{"name": "metrics", "port": 9090}, {"name": "http", "port": 8080}],
                [ready("10.0.0.1")],
            ),
        ]

    def test_port_by_number_and_by_name(self) -> None:
        for port in (80, "http"):
            backend = self.backend(self.named_port_objects(), port=port)
            self.assertEqual(backend.port, 80, port)
            self.assertEqual(backend.endpoints, (Endpoint("10.0.0.1", 8080),), port)
        backend = self.backend(self.named_port_objects(), port="metrics")
        self.assertEqual((backend.port, backend.endpoints), (9000, (Endpoint("10.0.0.1", 9090),)))

    def test_named_port_needs_slice_port_of_same_name(self) -> None:
        objects = [
            service("shop", "web", [{"name": "http", "port": 80}]),
            endpoint_slice("shop", "web-1", "web", [{"port": 8080}], [ready("10.0.0.1")]),
            endpoint_slice(
                "shop", "web-2", "web", [{"name": "other", "port": 8081}], [ready("10.0.0.2")]
            ),
            endpoint_slice(
                "shop", "web-3", "web", [{"name": "http", "port": 8082}], [ready("10.0.0.3")]
            ),
        ]
        self.assertEqual(self.backend(objects).endpoints, (Endpoint("10.0.0.3", 8082),))

    def test_readiness(self) -> None:
        objects = [
            service("shop", "web", [{"port": 80}]),
            endpoint_slice(
                "shop",
                "web-1",
                "web",
                [{"port": 8080}],
                [
                    ready("10.0.0.1", is_ready=True),
                    ready("10.0.0.2", is_ready=False),
                    ready("10.0.0.3", is_ready=None),  # no conditions: ready
                    {"addresses": ["10.0.0.4"], "conditions": {}},  # no "ready": ready
                    {"addresses": ["10.0.0.5"], "conditions": {"ready": False, "serving": True}},
                ],
            ),
        ]
        self.assertEqual(
            [e.address for e in self.backend(objects).endpoints],
            ["10.0.0.1", "10.0.0.3", "10.0.0.4"],
        )

    def test_non_ip_addresses_and_fqdn_slices_ignored(self) -> None:
        objects = [
            service("shop", "web", [{"port": 80}]),
            endpoint_slice(
                "shop",
                "web-1",
                "web",
                [{"port": 8080}],
                [ready("pod.example.com", "", "10.0.0.1", "10.0.0.300", 167772161, None)],
            ),
            endpoint_slice(
                "shop", "web-2", "web", [{"port": 8080}], [ready("db.example.com")], "FQDN"
            ),
            # An FQDN slice is ignored even when it lists an IP address.
            endpoint_slice("shop", "web-3", "web", [{"port": 8080}], [ready("10.0.0.9")], "FQDN"),
        ]
        self.assertEqual(self.backend(objects).endpoints, (Endpoint("10.0.0.1", 8080),))

    def test_slices_merged_deduplicated_sorted(self) -> None:
        slices = [
            endpoint_slice(
                "shop", "web-a", "web", [{"port": 8080}], [ready("10.0.0.2", "10.0.0.10")]
            ),
            endpoint_slice("shop", "web-b", "web", [{"port": 8080}], [ready("10.0.0.2")]),
            endpoint_slice("shop", "web-c", "web", [{"port": 8081}], [ready("10.0.0.2")]),
            endpoint_slice(
                "shop", "web-d", "web", [{"port": 8080}], [ready("2001:DB8::1")], "IPv6"
            ),
            endpoint_slice(
                "shop", "web-e", "web", [{"port": 8080}], [ready("2001:db8::1")], "IPv6"
            ),
            endpoint_slice("shop", "web-f", "web", [{"port": 8080}], [ready("10.0.0.1")], None),
        ]
        expected = (
            Endpoint("10.0.0.1", 8080),
            Endpoint("10.0.0.10", 8080),
            Endpoint("10.0.0.2", 8080),
            Endpoint("10.0.0.2", 8081),
            Endpoint("2001:db8::1", 8080),
        )
        svc = service("shop", "web", [{"port": 80}])
        for permutation in itertools.permutations(slices):
            self.assertEqual(self.backend([svc, *permutation]).endpoints, expected)

    def test_slices_of_other_services_ignored(self) -> None:
        objects = [
            service("shop", "web", [{"port": 80}]),
            endpoint_slice("shop", "api-1", "api", [{"port": 8080}], [ready("10.0.0.1")]),
            endpoint_slice("shop", "web-1", None, [{"port": 8080}], [ready("10.0.0.2")]),
        ]
        self.assertEqual(self.backend(objects).endpoints, ())

    def test_malformed_objects_do_not_break_the_compile(self) -> None:
        objects = [
            service("shop", "web", [{"name": "http", "port": "eighty"}, "junk"]),
            endpoint_slice("shop", "web-1", "web", 5, [ready("10.0.0.1")]),
            endpoint_slice("shop", "web-2", "web", [{"name": "http", "port": 8080}], "x"),
            endpoint_slice(
                "shop", "web-3", "web", [{"name": "http", "port": 8080}], [{"addresses": 7}]
            ),
            endpoint_slice(
                "shop", "web-4", "web", [{"name": "http", "port": 8080}], [ready("10.0.0.4")]
            ),
            endpoint_slice("shop", "web-5", ["web"], [], []),
            {"kind": "Secret", "metadata": {"name": "s", "namespace": ["shop"]}},
        ]
        backend = self.backend(objects, port="http")
        self.assertEqual(backend.endpoints, (Endpoint("10.0.0.4", 8080),))
        self.assertEqual(backend.port, 0)

    def test_https_port_marks_tls(self) -> None:
        objects = [
            service("shop", "web", [{"name": "https", "port": 443}]),
            endpoint_slice(
                "shop", "web-1", "web", [{"name": "https", "port": 8443}], [ready("10.0.0.1")]
            ),
        ]
        self.assertEqual(self.backend(objects, port=443).tls_name, "web.shop.svc")
        self.assertIsNone(self.backend(web_backend("shop")).tls_name)


# --- secrets -------------------------------------------------------------------------


BCRYPT_Y = "$2y$05$abcdefghijklmnopqrstuu5p3l0Qq1Fhz5Ww7xJ3mO8jV1yYqG5Ke"
BCRYPT_B = "$2b$12$zyxwvutsrqponmlkjihgfeQ9b0b2Jq3Xn6kqS4fD2t8eZb4cR7Ymy"


class SecretResolutionTests(SynchronousTestCase):
    def access(self, access: Obj, objects: list[Obj], ns: str = "shop") -> Any:
        spec = {"access": access, "routes": [route("all")]}
        snapshot = compile_snapshot([*tenant(ns, spec), *web_backend(ns), *objects], OPTIONS)
        self.status = snapshot.statuses[ns]
        return snapshot.tenants[ns].access

    def test_basic_auth(self) -> None:
        htpasswd = f"# users\nalice:{BCRYPT_Y}\n\nbob:{BCRYPT_B}\ncarol:$apr1$xyz$abc\n"
        access = self.access(
            {"basicAuth": {"secretName": "users", "realm": "shop"}},
            [secret("shop", "users", data={"auth": htpasswd.encode()})],
        )
        self.assertEqual(access.basic_auth_realm, "shop")
        self.assertEqual(
            dict(access.basic_auth_users),
            {"alice": BCRYPT_Y.encode(), "bob": BCRYPT_B.encode()},
        )
        self.assertEqual(len(self.status.messages), 1)
        self.assertIn("line 5", self.status.messages[0])
        self.assertNotIn("$apr1$", self.status.messages[0])

    def test_basic_auth_from_string_data(self) -> None:
        access = self.access(
            {"basicAuth": {"secretName": "users"}},
            [secret("shop", "users", string_data={"auth": f"alice:{BCRYPT_Y}"})],
        )
        self.assertEqual(dict(access.basic_auth_users), {"alice": BCRYPT_Y.encode()})

    def test_basic_auth_secret_of_other_namespace_fails_closed(self) -> None:
        access = self.access(
            {"basicAuth": {"secretName": "users", "realm": "shop"}},
            [secret("other", "users", data={"auth": f"alice:{BCRYPT_Y}".encode()})],
        )
        self.assertEqual(access.basic_auth_realm, "shop")
        self.assertEqual(dict(access.basic_auth_users), {})
        self.assertTrue(access.checks_credentials)
        self.assertEqual(self.status.state, STATE_ACCEPTED)
        self.assertEqual(len(self.status.messages), 1)
        self.assertTrue(self.status.messages[0].startswith("access.basicAuth.secretName"))
        self.assertIn("'users'", self.status.messages[0])

    def test_basic_auth_secret_without_auth_key(self) -> None:
        access = self.access(
            {"basicAuth": {"secretName": "users"}},
            [secret("shop", "users", data={"htpasswd": f"alice:{BCRYPT_Y}".encode()})],
        )
        self.assertEqual(dict(access.basic_auth_users), {})
        self.assertTrue(any("'auth'" in m for m in self.status.messages), self.status.messages)

    def test_non_ascii_hash_ignored(self) -> None:
        access = self.access(
            {"basicAuth": {"secretName": "users"}},
            [
                secret(
                    "shop",
                    "users",
                    data={"auth": b"eve:$2y$05$\xff\xfe\nalice:" + BCRYPT_Y.encode()},
                )
            ],
        )
        self.assertEqual(dict(access.basic_auth_users), {"alice": BCRYPT_Y.encode()})

    def test_api_keys_from_data_and_string_data(self) -> None:
        keys = secret(
            "shop",
            "keys",
            data={"ci": b"key-one\n", "ops": b"key-two", "empty": b"  "},
            string_data={"dev": "key-three"},
        )
        keys["data"]["broken"] = "not base64!"
        access = self.access({"apiKeys": {"secretName": "keys"}}, [keys])
        self.assertEqual(
            access.api_key_digests,
            frozenset(hashlib.sha256(k).digest() for k in (b"key-one", b"key-two", b"key-three")),
        )
        self.assertEqual(self.status.messages, ())

    def test_string_data_overrides_data(self) -> None:
        keys = secret("shop", "keys", data={"k": b"old"}, string_data={"k": "new"})
        access = self.access({"apiKeys": {"secretName": "keys"}}, [keys])
        self.assertEqual(access.api_key_digests, frozenset({hashlib.sha256(b"new").digest()}))

    def test_api_keys_secret_of_other_namespace_fails_closed(self) -> None:
        access = self.access(
            {"apiKeys": {"secretName": "keys"}},
            [secret("other", "keys", string_data={"k": "stolen"})],
        )
        self.assertEqual(access.api_key_digests, frozenset())
        self.assertTrue(access.checks_credentials)
        self.assertEqual(len(self.status.messages), 1)
        self.assertTrue(self.status.messages[0].startswith("access.apiKeys.secretName"))

    def test_no_access_checks_nothing(self) -> None:
        access = self.access({}, [])
        self.assertIsNone(access.api_key_digests)
        self.assertIsNone(access.basic_auth_realm)
        self.assertFalse(access.checks_credentials)

    def test_route_access_narrows_tenant_access(self) -> None:
        spec = {
            "access": {"apiKeys": {"secretName": "keys"}},
            "routes": [
                {**route("admin"), "access": {"basicAuth": {"secretName": "admins"}}},
                route("open"),
            ],
        }
        objects = [
            *tenant("shop", spec),
            *web_backend("shop"),
            secret("shop", "keys", string_data={"k": "key"}),
            secret("other", "admins", string_data={"auth": f"root:{BCRYPT_Y}"}),
        ]
        snapshot = compile_snapshot(objects, OPTIONS)
        admin, open_route = snapshot.tenants["shop"].routes
        self.assertEqual(len(admin.access), 2)
        self.assertIs(admin.access[0], snapshot.tenants["shop"].access)
        self.assertEqual(dict(admin.access[1].basic_auth_users), {})
        self.assertEqual(open_route.access, (snapshot.tenants["shop"].access,))
        messages = snapshot.statuses["shop"].messages
        self.assertTrue(
            any(m.startswith("routes[0].access.basicAuth.secretName") for m in messages), messages
        )


# --- precedence ----------------------------------------------------------------------


class RoutePrecedenceTests(SynchronousTestCase):
    def test_precedence_order(self) -> None:
        header = {"name": "x-a", "value": "1"}
        header2 = {"name": "x-b", "value": "2"}
        query = {"name": "v", "value": "2"}
        declared = [
            route("root"),
            route("api", path="/api"),
            route("api-get", path="/api", methods=["GET"]),
            route("api-hdr2", path="/api", headers=[header, header2]),
            route("api-get-hdr", path="/api", methods=["GET"], headers=[header]),
            route(
                "api-get-hdr-q",
                path="/api",
                methods=["GET"],
                headers=[header],
                queryParams=[query],
            ),
            route("exact-short", path="/a", pathType="Exact"),
            route("exact-long", path="/api/v1", pathType="Exact"),
            route("api-v1", path="/api/v1"),
            route("api-again", path="/api"),
            route("api-q", path="/api", queryParams=[query]),
        ]
        snapshot = compile_snapshot([*tenant("shop", {"routes": declared}), *web_backend("shop")])
        self.assertEqual(
            [r.name for r in snapshot.tenants["shop"].routes],
            [
                "exact-long",
                "exact-short",  # Exact beats any prefix, however long
                "api-v1",  # longest prefix
                "api-get-hdr-q",  # then method, headers, query
                "api-get-hdr",
                "api-get",
                "api-hdr2",
                "api-q",
                "api",  # then declaration order
                "api-again",
                "root",
            ],
        )

    def test_declaration_order_is_the_last_tie_breaker(self) -> None:
        names = ["c", "a", "b"]
        snapshot = compile_snapshot(tenant("shop", {"routes": [route(n) for n in names]}))
        self.assertEqual([r.name for r in snapshot.tenants["shop"].routes], names)

    def test_backends_keep_declared_positions_in_messages(self) -> None:
        """Status paths name the declared position, not the precedence rank."""
        declared = [route("root", service="missing"), route("exact", path="/x", pathType="Exact")]
        snapshot = compile_snapshot([*tenant("shop", {"routes": declared}), *web_backend("shop")])
        self.assertEqual([r.name for r in snapshot.tenants["shop"].routes], ["exact", "root"])
        self.assertTrue(
            snapshot.statuses["shop"].messages[0].startswith("routes[0].backends[0].service")
        )


# --- scale ---------------------------------------------------------------------------


class ScaleTests(SynchronousTestCase):
    def test_thousand_tenants(self) -> None:
        """Works and is complete; its speed is measured by the benchmarks."""
        objects: list[Obj] = []
        for i in range(1000):
            ns = f"t{i:04d}"
            host = f"{ns}.example.com"
            spec = {
                "hosts": [host],
                "routes": [route("api", path=f"/api/{i}"), route("all")],
            }
            objects += tenant(ns, spec, annotations={ALLOWED: host})
            objects += web_backend(ns, f"10.{i // 250}.{i % 250}.1")
        snapshot = compile_snapshot(objects, OPTIONS)
        self.assertEqual(len(snapshot.tenants), 1000)
        self.assertEqual(len(snapshot.exact_hosts), 2000)
        self.assertEqual({s.state for s in snapshot.statuses.values()}, {STATE_ACCEPTED})
        t = snapshot.tenant_for_host("t0999.example.com")
        self.assertEqual(t.namespace, "t0999")
        self.assertEqual(t.routes[0].backends[0].endpoints, (Endpoint("10.3.249.1", 8080),))
