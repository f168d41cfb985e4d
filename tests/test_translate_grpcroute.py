"""
GRPCRoute through the Gateway API translator and the compile step: how a
method match becomes a path match (and that the RE2 expressions mean what
the spec says when the data plane's matcher runs them), the precedence the
spec asks for, listener kinds, ReferenceGrants from a GRPCRoute, h2c to
every backend, and bad input refused naming the field.
"""

from __future__ import annotations

import datetime
import io
import os
import sys
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tenantgw.admin.resource import tenants_document
from tenantgw.app.cli import main
from tenantgw.compile.compiler import CompileOptions, compile_snapshot
from tenantgw.compile.gateway_api import status_json
from tenantgw.compile.lowering import plan_match
from tenantgw.compile.precedence import in_precedence_order
from tenantgw.config.model import PATH_EXACT, PATH_PREFIX, PATH_REGEX, HeaderModifier
from tenantgw.dataplane.matching import matches
from tenantgw.status.gateway_status import gateway_desires
from tenantgw.status.reconciler import gateway_api_events
from tenantgw.status.writer import StatusKey
from tenantgw.translators.gateway_api import GatewayApiTranslation
from tests.test_gateway_api_check import write
from tests.test_gateway_api_policy import gateway_objects, service_objects
from tests.test_translate_gateway_api import (
    gateway,
    grant,
    http_route,
    listener,
    service,
    translate,
)

SERVICE = "pkg.v1.Things"


def grpc_route(
    name: str = "web",
    namespace: str = "shop",
    rules: list[dict[str, Any]] | None = None,
    hostnames: list[str] | None = None,
    parents: list[dict[str, Any]] | None = None,
    created: str = "2026-01-01T00:00:00Z",
) -> dict[str, Any]:
    return http_route(
        name, namespace, parents, hostnames, rules, created, kind="GRPCRoute", generation=4
    )


def conditions(
    result: GatewayApiTranslation, name: str = "web", kind: str = "GRPCRoute", ns: str = "shop"
) -> dict[str, tuple[str, str, str]]:
    status = result.status_of(kind, ns, name)
    assert status is not None, f"no status for {kind} {ns}/{name}"
    (parent,) = status.parents
    return {c.type: (c.status, c.reason, c.message) for c in parent.conditions}


def method_rule(backend: str = "web", **method: str) -> dict[str, Any]:
    return {"matches": [{"method": method}], "backendRefs": [{"name": backend, "port": 8080}]}


def accepts(match: Any, path: str, headers: dict[str, str] | None = None) -> bool:
    """What the data plane decides for a POST of C{path} (gRPC's only method)."""
    lowered = {k.encode(): [v.encode()] for k, v in (headers or {}).items()}
    return matches(plan_match(match), b"POST", path.encode(), lowered.get, None)


class AttachmentTests(SynchronousTestCase):
    def test_attaches_like_an_httproute_with_h2c_backends(self) -> None:
        result = translate(gateway(), grpc_route())
        self.assertEqual(conditions(result)["Accepted"][:2], ("True", "Accepted"))
        self.assertEqual(conditions(result)["ResolvedRefs"][:2], ("True", "ResolvedRefs"))
        (route,) = result.routes
        self.assertEqual(str(route.origin), "GRPCRoute shop/web")
        self.assertEqual(route.source, "GRPCRoute web spec.rules[0]")
        # gRPC is HTTP/2: h2c, though the Service port says nothing of it.
        self.assertEqual([b.protocol for b in route.route.backends], ["H2C"])
        gw_status = result.status_of("Gateway", "infra", "gw")
        assert gw_status is not None
        (lst,) = gw_status.listeners
        self.assertEqual(
            (lst.attached_routes, lst.supported_kinds), (1, ("HTTPRoute", "GRPCRoute"))
        )
        body = status_json(result.status_of("GRPCRoute", "shop", "web"))  # type: ignore[arg-type]
        (parent,) = body["parents"]
        self.assertEqual(parent["controllerName"], "tenantgw.io/gateway-controller")
        self.assertEqual(parent["conditions"][0]["observedGeneration"], 4)

    def test_an_httproute_of_the_same_name_is_another_object(self) -> None:
        result = translate(
            gateway(),
            grpc_route(hostnames=["grpc.shop.test"]),
            http_route(hostnames=["www.shop.test"]),
        )
        self.assertEqual(conditions(result)["Accepted"][0], "True")
        self.assertEqual(conditions(result, kind="HTTPRoute")["Accepted"][0], "True")
        self.assertEqual({t.origin.kind for t in result.routes}, {"HTTPRoute", "GRPCRoute"})
        # Their model routes are named apart (metrics labels, /api/tenants).
        self.assertEqual(
            sorted(t.route.name for t in result.routes), ["grpc:web.rule-0", "web.rule-0"]
        )

    def test_an_httproute_and_a_grpcroute_never_share_a_hostname_on_a_listener(self) -> None:
        """
        GRPCRoute's spec: where an HTTPRoute and a GRPCRoute attached to one
        listener have intersecting hostnames, exactly one is accepted, the
        older (then by namespace/name); the other says why.
        """
        older = grpc_route(hostnames=["*.shop.test"], created="2026-01-01T00:00:00Z")
        younger = http_route("site", hostnames=["www.shop.test"], created="2026-02-01T00:00:00Z")
        apart = http_route("blog", hostnames=["blog.other.test"], created="2026-03-01T00:00:00Z")
        for order in ((older, younger, apart), (apart, younger, older)):
            result = translate(gateway(), *order)
            self.assertEqual(conditions(result)["Accepted"][0], "True")
            status, reason, message = conditions(result, "site", kind="HTTPRoute")["Accepted"]
            self.assertEqual((status, reason), ("False", "HostnameConflict"))
            self.assertIn("GRPCRoute shop/web", message)
            self.assertEqual(conditions(result, "blog", kind="HTTPRoute")["Accepted"][0], "True")
            self.assertEqual(
                sorted(t.origin.name for t in result.routes), ["blog", "web"], "site is not served"
            )
            gw_status = result.status_of("Gateway", "infra", "gw")
            assert gw_status is not None
            self.assertEqual(gw_status.listeners[0].attached_routes, 2)
        # The older one wins whichever kind it is.
        result = translate(
            gateway(),
            grpc_route(hostnames=["www.shop.test"], created="2026-02-01T00:00:00Z"),
            http_route("site", hostnames=["*.shop.test"], created="2026-01-01T00:00:00Z"),
        )
        self.assertEqual(conditions(result)["Accepted"][:2], ("False", "HostnameConflict"))
        self.assertEqual(conditions(result, "site", kind="HTTPRoute")["Accepted"][0], "True")

    def test_listener_kinds_admit_one_kind_or_the_other(self) -> None:
        http_only = listener(
            "http",
            allowed={"namespaces": {"from": "All"}, "kinds": [{"kind": "HTTPRoute"}]},
        )
        result = translate(gateway(listeners=[http_only]), grpc_route(), http_route())
        self.assertEqual(conditions(result)["Accepted"][:2], ("False", "NotAllowedByListeners"))
        self.assertEqual(conditions(result, kind="HTTPRoute")["Accepted"][0], "True")
        gw_status = result.status_of("Gateway", "infra", "gw")
        assert gw_status is not None
        self.assertEqual(gw_status.listeners[0].supported_kinds, ("HTTPRoute",))

        grpc_only = listener(
            "http",
            allowed={
                "namespaces": {"from": "All"},
                "kinds": [{"group": "gateway.networking.k8s.io", "kind": "GRPCRoute"}],
            },
        )
        result = translate(gateway(listeners=[grpc_only]), grpc_route(), http_route())
        self.assertEqual(conditions(result)["Accepted"][0], "True")
        self.assertEqual(
            conditions(result, kind="HTTPRoute")["Accepted"][:2], ("False", "NotAllowedByListeners")
        )

    def test_an_unknown_kind_beside_grpcroute_is_invalid_route_kinds(self) -> None:
        mixed = listener(
            "http",
            allowed={
                "namespaces": {"from": "All"},
                "kinds": [{"kind": "TLSRoute"}, {"kind": "GRPCRoute"}],
            },
        )
        result = translate(gateway(listeners=[mixed]), grpc_route())
        gw_status = result.status_of("Gateway", "infra", "gw")
        assert gw_status is not None
        (lst,) = gw_status.listeners
        self.assertEqual(lst.supported_kinds, ("GRPCRoute",))
        refs = next(c for c in lst.conditions if c.type == "ResolvedRefs")
        self.assertEqual((refs.status, refs.reason), ("False", "InvalidRouteKinds"))
        self.assertEqual(conditions(result)["Accepted"][0], "True")

    def test_hostnames_intersect_with_the_listeners(self) -> None:
        wildcard = listener(
            "http", hostname="*.example.com", allowed={"namespaces": {"from": "All"}}
        )
        result = translate(
            gateway(listeners=[wildcard]),
            grpc_route(hostnames=["a.example.com", "other.org"]),
        )
        self.assertEqual([t.hosts for t in result.routes], [("a.example.com",)])
        result = translate(gateway(listeners=[wildcard]), grpc_route(hostnames=["other.org"]))
        self.assertEqual(
            conditions(result)["Accepted"][:2], ("False", "NoMatchingListenerHostname")
        )
        self.assertEqual(result.routes, ())

    def test_section_name_and_port(self) -> None:
        two = [
            listener("a", hostname="a.example", allowed={"namespaces": {"from": "All"}}),
            listener("b", port=8080, hostname="b.example", allowed={"namespaces": {"from": "All"}}),
        ]
        result = translate(
            gateway(listeners=two),
            grpc_route(parents=[{"name": "gw", "namespace": "infra", "port": 8080}]),
        )
        self.assertEqual([t.hosts for t in result.routes], [("b.example",)])
        result = translate(
            gateway(listeners=two),
            grpc_route(parents=[{"name": "gw", "namespace": "infra", "sectionName": "c"}]),
        )
        self.assertEqual(conditions(result)["Accepted"][:2], ("False", "NoMatchingParent"))


class ReferenceTests(SynchronousTestCase):
    rules = [{"backendRefs": [{"name": "api", "namespace": "backend", "port": 9000}]}]

    def test_cross_namespace_needs_a_grant_from_grpcroute(self) -> None:
        objects = (gateway(), service("api", "backend"), grpc_route(rules=self.rules))
        result = translate(*objects)
        self.assertEqual(conditions(result)["ResolvedRefs"][:2], ("False", "RefNotPermitted"))
        # The refused backend keeps its weight as a share answered 500.
        (route,) = result.routes
        self.assertEqual((route.route.backends, route.route.refused_backend_weight), ((), 1))
        # A grant for HTTPRoutes does not cover GRPCRoutes.
        result = translate(*objects, grant("backend", "shop"))
        self.assertEqual(conditions(result)["ResolvedRefs"][1], "RefNotPermitted")
        result = translate(*objects, grant("backend", "shop", from_kind="GRPCRoute"))
        self.assertEqual(conditions(result)["ResolvedRefs"][:2], ("True", "ResolvedRefs"))
        (route,) = result.routes
        (ref,) = route.route.backends
        self.assertEqual((ref.namespace, ref.service, ref.protocol), ("backend", "api", "H2C"))

    def test_missing_service_and_weights(self) -> None:
        rules = [
            {
                "backendRefs": [
                    {"name": "web", "port": 8080, "weight": 3},
                    {"name": "gone", "port": 8080, "weight": 1},
                ]
            }
        ]
        result = translate(gateway(), grpc_route(rules=rules))
        self.assertEqual(conditions(result)["ResolvedRefs"][:2], ("False", "BackendNotFound"))
        (route,) = result.routes
        self.assertEqual([(b.service, b.weight) for b in route.route.backends], [("web", 3)])
        self.assertEqual(route.route.refused_backend_weight, 1)


class MatchTests(SynchronousTestCase):
    def match_of(self, rule: dict[str, Any]) -> Any:
        result = translate(gateway(), grpc_route(rules=[rule]))
        self.assertEqual(conditions(result)["Accepted"][0], "True", conditions(result))
        (route,) = result.routes
        return route.route.match

    def test_exact_service_and_method_is_an_exact_path(self) -> None:
        match = self.match_of(method_rule(service=SERVICE, method="Get"))
        self.assertEqual((match.path_type, match.path), (PATH_EXACT, f"/{SERVICE}/Get"))
        self.assertTrue(accepts(match, f"/{SERVICE}/Get"))
        self.assertFalse(accepts(match, f"/{SERVICE}/GetTwo"))

    def test_exact_service_alone_is_every_method_of_it(self) -> None:
        match = self.match_of(method_rule(service=SERVICE))
        self.assertEqual((match.path_type, match.path), (PATH_PREFIX, f"/{SERVICE}"))
        self.assertTrue(accepts(match, f"/{SERVICE}/Get"))
        self.assertFalse(accepts(match, f"/{SERVICE}2/Get"))

    def test_exact_method_alone_is_that_method_of_any_service(self) -> None:
        match = self.match_of(method_rule(method="Get"))
        self.assertEqual(match.path_type, PATH_REGEX)
        self.assertTrue(accepts(match, "/a.B/Get"))
        self.assertFalse(accepts(match, "/a.B/get"))  # case matters in gRPC names
        self.assertFalse(accepts(match, "/a.B/GetMore"))

    def test_regular_expressions_match_the_whole_name_case_sensitively(self) -> None:
        match = self.match_of(
            method_rule(type="RegularExpression", service=r"pkg\.v[0-9]+\.Things", method="Get.*")
        )
        self.assertTrue(accepts(match, f"/{SERVICE}/GetOne"))
        self.assertTrue(accepts(match, "/pkg.v22.Things/Get"))
        self.assertFalse(accepts(match, "/pkg.v1.things/GetOne"))
        self.assertFalse(accepts(match, "/x.pkg.v1.Things/GetOne"))
        self.assertFalse(accepts(match, f"/{SERVICE}/Put"))
        only_method = self.match_of(method_rule(type="RegularExpression", method="(Get|Put)"))
        self.assertTrue(accepts(only_method, "/any.Service/Put"))
        self.assertFalse(accepts(only_method, "/any.Service/Putt"))

    def test_headers_exact_and_regular_expression(self) -> None:
        headers = [
            {"name": "Version", "value": "two"},
            {"type": "RegularExpression", "name": "color", "value": "bl(ue|ack)"},
        ]
        match = self.match_of({"matches": [{"headers": headers}]})
        self.assertEqual((match.path_type, match.path), (PATH_PREFIX, "/"))
        self.assertTrue(accepts(match, "/a.B/C", {"version": "two", "color": "blue"}))
        self.assertFalse(accepts(match, "/a.B/C", {"version": "two", "color": "darkblue"}))
        self.assertFalse(accepts(match, "/a.B/C", {"color": "black"}))

    def test_no_match_is_everything(self) -> None:
        match = self.match_of({"backendRefs": [{"name": "web", "port": 8080}]})
        self.assertTrue(accepts(match, "/any.Service/Any"))

    def test_filters(self) -> None:
        rule = {
            "filters": [
                {
                    "type": "RequestHeaderModifier",
                    "requestHeaderModifier": {"set": [{"name": "x-a", "value": "1"}]},
                },
                {
                    "type": "ResponseHeaderModifier",
                    "responseHeaderModifier": {"remove": ["x-b"]},
                },
            ],
            "backendRefs": [{"name": "web", "port": 8080}],
        }
        result = translate(gateway(), grpc_route(rules=[rule]))
        (route,) = result.routes
        self.assertEqual(route.route.request_headers, HeaderModifier(set=(("x-a", "1"),)))
        self.assertEqual(route.route.response_headers, HeaderModifier(remove=("x-b",)))


class PrecedenceTests(SynchronousTestCase):
    """The spec's order: service characters, then method characters, then headers."""

    def test_order(self) -> None:
        rules = [
            {"backendRefs": [{"name": "web", "port": 1}]},
            method_rule(method="Get"),
            method_rule(service="pkg.v1.Things"),
            method_rule(service="pkg.v1.Things", method="Get"),
            {"matches": [{"headers": [{"name": "a", "value": "1"}]}]},
            {
                "matches": [
                    {
                        "method": {"service": "pkg.v1.Things"},
                        "headers": [{"name": "a", "value": "1"}],
                    }
                ]
            },
        ]
        result = translate(gateway(), grpc_route(rules=rules))
        self.assertEqual(conditions(result)["Accepted"][0], "True", conditions(result))
        ordered = in_precedence_order((t.route, t.order[-1]) for t in result.routes)
        self.assertEqual(ordered, (3, 5, 2, 1, 4, 0))


class RefusalTests(SynchronousTestCase):
    """A GRPCRoute we cannot serve as written is refused whole, naming the field."""

    def refused(self, rule: dict[str, Any]) -> str:
        good = grpc_route(name="good", created="2026-02-01T00:00:00Z")
        result = translate(gateway(), grpc_route(rules=[rule]), good)
        status, reason, message = conditions(result)["Accepted"]
        self.assertEqual((status, reason), ("False", "UnsupportedValue"))
        self.assertEqual(conditions(result, "good")["Accepted"][0], "True")
        self.assertEqual({t.origin.name for t in result.routes}, {"good"})
        return message

    def test_bad_regular_expression(self) -> None:
        message = self.refused(method_rule(type="RegularExpression", service="(unclosed"))
        self.assertIn("spec.rules[0].matches[0].method.service", message)
        self.assertIn("RE2", message)

    def test_bad_header_expression(self) -> None:
        headers = [{"type": "RegularExpression", "name": "x", "value": "a(?=b)"}]
        message = self.refused({"matches": [{"headers": headers}]})
        self.assertIn("spec.rules[0].matches[0].headers[0].value", message)

    def test_method_match_needs_a_service_or_a_method(self) -> None:
        message = self.refused({"matches": [{"method": {"type": "Exact"}}]})
        self.assertIn("spec.rules[0].matches[0].method", message)

    def test_exact_names_follow_the_crd_patterns(self) -> None:
        message = self.refused(method_rule(service="pkg/Things"))
        self.assertIn("spec.rules[0].matches[0].method.service", message)
        message = self.refused(method_rule(service=SERVICE, method="Get-It"))
        self.assertIn("spec.rules[0].matches[0].method.method", message)

    def test_http_only_fields_and_filters(self) -> None:
        message = self.refused({"matches": [{"path": {"value": "/x"}}]})
        self.assertIn("spec.rules[0].matches[0].path", message)
        message = self.refused({"timeouts": {"request": "1s"}})
        self.assertIn("spec.rules[0].timeouts", message)
        message = self.refused(
            {"filters": [{"type": "URLRewrite", "urlRewrite": {"hostname": "x"}}]}
        )
        self.assertIn("spec.rules[0].filters[0].type", message)

    def test_extension_ref_filter(self) -> None:
        message = self.refused(
            {
                "filters": [
                    {
                        "type": "ExtensionRef",
                        "extensionRef": {"group": "x", "kind": "Y", "name": "z"},
                    }
                ]
            }
        )
        self.assertIn("spec.rules[0].filters[0].type", message)
        self.assertIn("ExtensionRef", message)

    def test_request_mirror(self) -> None:
        """Mirroring copies only bodyless requests: on gRPC it would silently do nothing."""
        message = self.refused(
            {
                "filters": [
                    {
                        "type": "RequestMirror",
                        "requestMirror": {"backendRef": {"name": "web", "port": 8081}},
                    }
                ],
                "backendRefs": [{"name": "web", "port": 8080}],
            }
        )
        self.assertIn("spec.rules[0].filters[0].type", message)
        self.assertIn("body", message)

    def test_session_persistence(self) -> None:
        message = self.refused({"sessionPersistence": {"sessionName": "s"}})
        self.assertIn("spec.rules[0].sessionPersistence", message)


def _grpc_world() -> list[dict[str, Any]]:
    """The check/status world of tests.test_gateway_api_policy with a GRPCRoute in it."""
    route = grpc_route(name="rpc", namespace="docs", hostnames=["rpc.apps.example"])
    route["spec"]["parentRefs"] = [{"name": "edge", "namespace": "infra"}]
    route["spec"]["rules"] = [{"backendRefs": [{"name": "web", "port": 80}]}]
    route["metadata"]["uid"] = "u-rpc"
    route["metadata"]["resourceVersion"] = "1"
    return [
        *gateway_objects(),
        {"kind": "Namespace", "metadata": {"name": "docs"}},
        *service_objects("docs", "web", 9),
        route,
    ]


class ReportingTests(SynchronousTestCase):
    """check, /api/tenants, the status writer and Events take GRPCRoutes as they take HTTPRoutes."""

    def test_check_lists_it_from_a_directory(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        path = write(directory, "all.yaml", _grpc_world())
        out = io.StringIO()
        saved, sys.stdout = sys.stdout, out
        try:
            status = main(["check", "--base-domain", "apps.example", path])
        finally:
            sys.stdout = saved
        self.assertEqual(status, 0, out.getvalue())
        self.assertIn("GRPCRoute docs/rpc: Accepted", out.getvalue())

    def test_api_tenants_status_writer_and_events(self) -> None:
        objects = _grpc_world()
        snapshot = compile_snapshot(objects, CompileOptions(base_domain="apps.example"))
        (listed,) = [
            o for o in tenants_document(snapshot)["gatewayApi"] if o["kind"] == "GRPCRoute"
        ]
        self.assertEqual(
            (listed["namespace"], listed["name"], listed["state"]), ("docs", "rpc", "Accepted")
        )
        (parent,) = listed["status"]["parents"]
        self.assertEqual(parent["parentRef"]["name"], "edge")

        now = datetime.datetime(2026, 12, 3, 12, tzinfo=datetime.timezone.utc)
        desires = gateway_desires(objects, snapshot.object_statuses, None, lambda: now)
        route, desire = desires[StatusKey("GRPCRoute", "docs", "rpc")]
        (written,) = desire(route)["parents"]
        self.assertEqual(
            {c["type"]: c["status"] for c in written["conditions"]},
            {"Accepted": "True", "ResolvedRefs": "True"},
        )

        events = gateway_api_events(snapshot.object_statuses, objects, now, "tenantgw")
        event = events["GRPCRoute docs/rpc"]
        self.assertEqual(event["involvedObject"]["kind"], "GRPCRoute")
        self.assertEqual(event["involvedObject"]["uid"], "u-rpc")
        self.assertEqual((event["reason"], event["type"]), ("Accepted", "Normal"))

    def test_a_refused_update_keeps_the_last_good_version(self) -> None:
        options = CompileOptions(base_domain="apps.example")
        objects = _grpc_world()
        good = compile_snapshot(objects, options)
        route = dict(objects[-1])
        route["spec"] = {
            **route["spec"],
            "rules": [{"matches": [{"method": {"type": "RegularExpression", "service": "("}}]}],
        }
        refused = compile_snapshot([*objects[:-1], route], options, good)
        (listed,) = [o for o in tenants_document(refused)["gatewayApi"] if o["kind"] == "GRPCRoute"]
        self.assertIn("UnsupportedValue", listed["state"])
        self.assertIn(
            "GRPCRoute rpc: serving its last good version", refused.statuses["docs"].messages
        )
        plan = refused.tenants["docs"]
        (served,) = [r for r in plan.routes if r.source.startswith("GRPCRoute")]
        # The old rule: its backend, over h2c (the refused one had none).
        self.assertEqual([(b.service, b.protocol) for b in served.backends], [("web", "h2c")])
