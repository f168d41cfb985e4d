"""
The Gateway API translator on its own: objects in, tenant-model routes and
statuses out.  Scenarios follow the upstream conformance suite's (listener
hostname matching, hostname intersection, cross-namespace references,
invalid backends) with manifests of our own.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tenantgw.compile.selector import LabelSelector, SelectorError
from tenantgw.config.model import PATH_EXACT, BackendRef, Redirect
from tenantgw.translators.durations import parse_duration
from tenantgw.translators.gateway_api import (
    ANY_HOST,
    CONTROLLER_NAME,
    GatewayApiOptions,
    GatewayApiTranslation,
    intersect_hostnames,
    translate_gateway_api,
)

GROUP = "gateway.networking.k8s.io/v1"


def gateway_class(name: str = "tenantgw", controller: str = CONTROLLER_NAME) -> dict[str, Any]:
    return {
        "apiVersion": GROUP,
        "kind": "GatewayClass",
        "metadata": {"name": name, "generation": 1},
        "spec": {"controllerName": controller},
    }


def gateway(
    name: str = "gw",
    namespace: str = "infra",
    listeners: list[dict[str, Any]] | None = None,
    class_name: str = "tenantgw",
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": GROUP,
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": namespace, "generation": 3},
        "spec": {
            "gatewayClassName": class_name,
            "listeners": listeners
            if listeners is not None
            else [listener("http", allowed={"namespaces": {"from": "All"}})],
            **spec,
        },
    }


def listener(
    name: str,
    protocol: str = "HTTP",
    port: int = 80,
    hostname: str | None = None,
    allowed: dict[str, Any] | None = None,
    tls: dict[str, Any] | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {"name": name, "protocol": protocol, "port": port}
    if hostname is not None:
        result["hostname"] = hostname
    if allowed is not None:
        result["allowedRoutes"] = allowed
    if tls is not None:
        result["tls"] = tls
    return result


def http_route(
    name: str = "web",
    namespace: str = "shop",
    parents: list[dict[str, Any]] | None = None,
    hostnames: list[str] | None = None,
    rules: list[dict[str, Any]] | None = None,
    created: str = "2026-01-01T00:00:00Z",
    kind: str = "HTTPRoute",
    generation: int = 7,
) -> dict[str, Any]:
    """An HTTPRoute (or, with C{kind}, a GRPCRoute: the same outer shape)."""
    spec: dict[str, Any] = {
        "parentRefs": parents if parents is not None else [{"name": "gw", "namespace": "infra"}],
        "rules": rules if rules is not None else [{"backendRefs": [{"name": "web", "port": 8080}]}],
    }
    if hostnames is not None:
        spec["hostnames"] = hostnames
    return {
        "apiVersion": GROUP,
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "generation": generation,
            "creationTimestamp": created,
        },
        "spec": spec,
    }


def service(name: str, namespace: str) -> dict[str, Any]:
    return {"kind": "Service", "metadata": {"name": name, "namespace": namespace}}


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def grant(
    namespace: str, from_namespace: str, to_kind: str = "Service", from_kind: str = "HTTPRoute"
) -> dict[str, Any]:
    return {
        "kind": "ReferenceGrant",
        "metadata": {"name": "allow", "namespace": namespace},
        "spec": {
            "from": [
                {
                    "group": "gateway.networking.k8s.io",
                    "kind": from_kind,
                    "namespace": from_namespace,
                }
            ],
            "to": [{"group": "", "kind": to_kind}],
        },
    }


def translate(*objects: dict[str, Any], **options: Any) -> GatewayApiTranslation:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    everything = list(objects)
    if not any(o["kind"] == "GatewayClass" for o in everything):
        everything.append(gateway_class())
    if not any(o["kind"] == "Service" for o in everything):
        everything.append(service("web", "shop"))
    for obj in everything:
        by_kind.setdefault(obj["kind"], []).append(obj)
    return translate_gateway_api(by_kind, GatewayApiOptions(**options))


def parent_conditions(
    result: GatewayApiTranslation, route: str = "web", ns: str = "shop"
) -> dict[str, tuple[str, str, str]]:
    status = result.status_of("HTTPRoute", ns, route)
    assert status is not None, f"no status for HTTPRoute {ns}/{route}"
    (parent,) = status.parents
    return {c.type: (c.status, c.reason, c.message) for c in parent.conditions}


class AttachmentTests(SynchronousTestCase):
    def test_route_attaches_and_serves_any_host(self) -> None:
        result = translate(gateway(), http_route())
        self.assertEqual(parent_conditions(result)["Accepted"][:2], ("True", "Accepted"))
        self.assertEqual(parent_conditions(result)["ResolvedRefs"][:2], ("True", "ResolvedRefs"))
        (translated,) = result.routes
        self.assertEqual(translated.hosts, (ANY_HOST,))
        self.assertEqual(translated.scheme, "http")
        self.assertEqual(translated.namespace, "shop")
        self.assertEqual(translated.route.backends, (BackendRef("web", 8080),))
        gw = result.status_of("Gateway", "infra", "gw")
        assert gw is not None
        self.assertEqual(gw.listeners[0].attached_routes, 1)
        self.assertEqual(
            {c.type: c.status for c in gw.listeners[0].conditions},
            {
                "Accepted": "True",
                "ResolvedRefs": "True",
                "Conflicted": "False",
                "Programmed": "True",
            },
        )

    def test_observed_generation_is_each_objects_own(self) -> None:
        result = translate(gateway(), http_route())
        status = result.status_of("HTTPRoute", "shop", "web")
        assert status is not None
        self.assertEqual({c.observed_generation for c in status.parents[0].conditions}, {7})
        gw = result.status_of("Gateway", "infra", "gw")
        assert gw is not None
        self.assertEqual({c.observed_generation for c in gw.conditions}, {3})

    def test_same_namespace_listener_refuses_other_namespaces(self) -> None:
        result = translate(gateway(listeners=[listener("http")]), http_route())
        self.assertEqual(
            parent_conditions(result)["Accepted"][:2], ("False", "NotAllowedByListeners")
        )
        self.assertEqual(result.routes, ())

    def test_selector_admits_by_namespace_labels(self) -> None:
        gw = gateway(
            listeners=[
                listener(
                    "http",
                    allowed={
                        "namespaces": {
                            "from": "Selector",
                            "selector": {"matchLabels": {"team": "shop"}},
                        }
                    },
                )
            ]
        )
        admitted = translate(gw, http_route(), namespace("shop", team="shop"))
        self.assertEqual(parent_conditions(admitted)["Accepted"][0], "True")
        refused = translate(gw, http_route(), namespace("shop", team="other"))
        self.assertEqual(parent_conditions(refused)["Accepted"][1], "NotAllowedByListeners")

    def test_unknown_section_name_is_no_matching_parent(self) -> None:
        route = http_route(parents=[{"name": "gw", "namespace": "infra", "sectionName": "nope"}])
        result = translate(gateway(), route)
        self.assertEqual(parent_conditions(result)["Accepted"][:2], ("False", "NoMatchingParent"))

    def test_parent_of_another_controller_gets_no_status_from_us(self) -> None:
        theirs = gateway(name="theirs", class_name="other")
        route = http_route(parents=[{"name": "theirs", "namespace": "infra"}])
        result = translate(
            theirs, gateway_class("other", "example.com/other"), gateway_class(), route
        )
        self.assertIsNone(result.status_of("HTTPRoute", "shop", "web"))
        self.assertIsNone(result.status_of("GatewayClass", "", "other"))
        self.assertEqual(result.routes, ())

    def test_gateway_option_narrows_the_gateways_served(self) -> None:
        result = translate(gateway(), http_route(), gateways=frozenset({("infra", "other")}))
        self.assertIsNone(result.status_of("Gateway", "infra", "gw"))
        self.assertEqual(result.routes, ())

    def test_unsupported_listener_protocol(self) -> None:
        result = translate(gateway(listeners=[listener("tcp", protocol="TCP")]), http_route())
        gw = result.status_of("Gateway", "infra", "gw")
        assert gw is not None
        accepted = next(c for c in gw.listeners[0].conditions if c.type == "Accepted")
        self.assertEqual((accepted.status, accepted.reason), ("False", "UnsupportedProtocol"))
        self.assertEqual(result.listeners, ())

    def test_conflicting_listeners_are_not_served(self) -> None:
        all_ns = {"namespaces": {"from": "All"}}
        result = translate(
            gateway(
                listeners=[listener("a", allowed=all_ns), listener("b", port=8080, allowed=all_ns)]
            ),
            http_route(),
        )
        gw = result.status_of("Gateway", "infra", "gw")
        assert gw is not None
        for status in gw.listeners:
            conflicted = next(c for c in status.conditions if c.type == "Conflicted")
            self.assertEqual((conflicted.status, conflicted.reason), ("True", "HostnameConflict"))
        self.assertEqual(result.routes, ())


class HostnameTests(SynchronousTestCase):
    def test_intersection(self) -> None:
        cases = [
            (None, [], (ANY_HOST,)),
            ("bar.com", [], ("bar.com",)),
            (None, ["a.com"], ("a.com",)),
            ("bar.com", ["bar.com"], ("bar.com",)),
            ("bar.com", ["foo.bar.com"], ()),
            ("*.bar.com", ["foo.bar.com", "bar.com"], ("foo.bar.com",)),
            ("*.bar.com", ["a.b.bar.com"], ("a.b.bar.com",)),
            ("*.bar.com", ["*.foo.bar.com"], ("*.foo.bar.com",)),
            ("foo.bar.com", ["*.bar.com"], ("foo.bar.com",)),
            ("*.bar.com", ["*.bar.com"], ("*.bar.com",)),
            ("*.foo.com", ["*.bar.com"], ()),
        ]
        for listener_host, route_hosts, expected in cases:
            self.assertEqual(
                intersect_hostnames(listener_host, route_hosts),
                expected,
                f"listener {listener_host!r} x route {route_hosts!r}",
            )

    def test_no_intersection_is_reported(self) -> None:
        gw = gateway(
            listeners=[
                listener("http", hostname="bar.com", allowed={"namespaces": {"from": "All"}})
            ]
        )
        result = translate(gw, http_route(hostnames=["other.com"]))
        self.assertEqual(
            parent_conditions(result)["Accepted"][:2], ("False", "NoMatchingListenerHostname")
        )

    def test_route_gets_the_hosts_of_each_listener(self) -> None:
        all_ns = {"namespaces": {"from": "All"}}
        gw = gateway(
            listeners=[
                listener("one", hostname="bar.com", allowed=all_ns),
                listener("two", hostname="*.bar.com", allowed=all_ns),
                listener(
                    "tls",
                    protocol="HTTPS",
                    port=443,
                    hostname="secure.bar.com",
                    allowed=all_ns,
                    tls={"certificateRefs": [{"name": "cert"}]},
                ),
            ]
        )
        result = translate(gw, http_route(hostnames=["bar.com", "x.bar.com", "secure.bar.com"]))
        served = sorted((r.scheme, r.hosts) for r in result.routes)
        self.assertEqual(
            served,
            [
                ("http", ("bar.com",)),
                ("http", ("x.bar.com", "secure.bar.com")),
                ("https", ("secure.bar.com",)),
            ],
        )
        (https,) = [lst for lst in result.listeners if lst.protocol == "HTTPS"]
        self.assertEqual(https.certificate_refs, (("infra", "cert"),))


class ReferenceTests(SynchronousTestCase):
    def cross_namespace_route(self) -> dict[str, Any]:
        return http_route(
            rules=[{"backendRefs": [{"name": "api", "namespace": "backend", "port": 80}]}]
        )

    def test_cross_namespace_backend_needs_a_grant(self) -> None:
        result = translate(gateway(), self.cross_namespace_route(), service("api", "backend"))
        status, reason, message = parent_conditions(result)["ResolvedRefs"]
        self.assertEqual((status, reason), ("False", "RefNotPermitted"))
        self.assertIn("backend/api", message)
        # Still accepted: the rule answers 500 instead of forwarding.
        self.assertEqual(parent_conditions(result)["Accepted"][0], "True")
        (translated,) = result.routes
        self.assertEqual(translated.route.backends, ())
        self.assertEqual(translated.route.refused_backend_weight, 1)

    def test_grant_in_the_target_namespace_permits(self) -> None:
        result = translate(
            gateway(),
            self.cross_namespace_route(),
            service("api", "backend"),
            grant("backend", "shop"),
        )
        self.assertEqual(parent_conditions(result)["ResolvedRefs"][0], "True")
        (translated,) = result.routes
        self.assertEqual(translated.route.backends, (BackendRef("api", 80, namespace="backend"),))

    def test_grant_for_another_namespace_does_not_permit(self) -> None:
        result = translate(
            gateway(),
            self.cross_namespace_route(),
            service("api", "backend"),
            grant("backend", "elsewhere"),
        )
        self.assertEqual(parent_conditions(result)["ResolvedRefs"][1], "RefNotPermitted")

    def test_missing_service_keeps_its_weight_as_500s(self) -> None:
        route = http_route(
            rules=[
                {
                    "backendRefs": [
                        {"name": "web", "port": 8080, "weight": 3},
                        {"name": "gone", "port": 8080, "weight": 1},
                    ]
                }
            ]
        )
        result = translate(gateway(), route, service("web", "shop"))
        self.assertEqual(
            parent_conditions(result)["ResolvedRefs"][:2], ("False", "BackendNotFound")
        )
        (translated,) = result.routes
        self.assertEqual(translated.route.backends, (BackendRef("web", 8080, weight=3),))
        self.assertEqual(translated.route.refused_backend_weight, 1)

    def test_non_service_backend_is_invalid_kind(self) -> None:
        route = http_route(
            rules=[{"backendRefs": [{"group": "x.io", "kind": "Bucket", "name": "b"}]}]
        )
        result = translate(gateway(), route)
        self.assertEqual(parent_conditions(result)["ResolvedRefs"][1], "InvalidKind")

    def test_https_certificate_in_another_namespace(self) -> None:
        tls = {"certificateRefs": [{"name": "cert", "namespace": "certs"}]}
        gw = gateway(
            listeners=[
                listener("https", "HTTPS", 443, allowed={"namespaces": {"from": "All"}}, tls=tls)
            ]
        )
        refused = translate(gw, http_route())
        status = refused.status_of("Gateway", "infra", "gw")
        assert status is not None
        refs = next(c for c in status.listeners[0].conditions if c.type == "ResolvedRefs")
        self.assertEqual((refs.status, refs.reason), ("False", "RefNotPermitted"))
        self.assertEqual(refused.listeners, ())
        permitted = translate(gw, http_route(), grant("certs", "infra", "Secret", "Gateway"))
        (served,) = permitted.listeners
        self.assertEqual(served.certificate_refs, (("certs", "cert"),))


class RuleTests(SynchronousTestCase):
    def only_route(self, rule: dict[str, Any]) -> Any:
        result = translate(gateway(), http_route(rules=[rule]))
        self.assertEqual(
            parent_conditions(result)["Accepted"][0], "True", parent_conditions(result)
        )
        return [t.route for t in result.routes]

    def test_matches_become_one_route_each(self) -> None:
        routes = self.only_route(
            {
                "matches": [
                    {"path": {"type": "Exact", "value": "/a"}, "method": "POST"},
                    {
                        "headers": [{"name": "X-Version", "value": "2"}],
                        "queryParams": [{"name": "q", "value": "1"}],
                    },
                ],
                "backendRefs": [{"name": "web", "port": 8080}],
            }
        )
        self.assertEqual(len(routes), 2)
        self.assertEqual((routes[0].match.path, routes[0].match.path_type), ("/a", PATH_EXACT))
        self.assertEqual(routes[0].match.methods, ("POST",))
        self.assertEqual(routes[1].match.headers[0].name, "x-version")
        self.assertEqual(routes[1].match.query_params[0].name, "q")
        self.assertEqual({r.name for r in routes}, {"web.rule-0"})

    def test_filters(self) -> None:
        (route,) = self.only_route(
            {
                "filters": [
                    {
                        "type": "RequestHeaderModifier",
                        "requestHeaderModifier": {
                            "set": [{"name": "X-A", "value": "1"}],
                            "add": [{"name": "X-B", "value": "2"}],
                            "remove": ["X-C"],
                        },
                    },
                    {
                        "type": "URLRewrite",
                        "urlRewrite": {
                            "hostname": "internal.example",
                            "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"},
                        },
                    },
                    {
                        "type": "RequestMirror",
                        "requestMirror": {
                            "backendRef": {"name": "web", "port": 9090},
                            "fraction": {"numerator": 1, "denominator": 4},
                        },
                    },
                    {
                        "type": "CORS",
                        "cors": {
                            "allowOrigins": ["https://app.example.com"],
                            "allowMethods": ["GET"],
                            "allowCredentials": True,
                            "maxAge": 600,
                        },
                    },
                ],
                "backendRefs": [{"name": "web", "port": 8080}],
                "timeouts": {"request": "10s", "backendRequest": "2s"},
            }
        )
        self.assertEqual(route.request_headers.set, (("x-a", "1"),))
        self.assertEqual(route.request_headers.add, (("x-b", "2"),))
        self.assertEqual(route.request_headers.remove, ("x-c",))
        assert route.rewrite is not None
        self.assertEqual(
            (route.rewrite.host, route.rewrite.replace_prefix), ("internal.example", "/v2")
        )
        self.assertEqual(route.mirrors[0].backend, BackendRef("web", 9090))
        self.assertEqual(route.mirrors[0].percent, 25.0)
        assert route.cors is not None
        self.assertEqual(route.cors.allow_origins, ("https://app.example.com",))
        self.assertTrue(route.cors.allow_credentials)
        self.assertEqual(route.cors.max_age_seconds, 600)
        self.assertEqual((route.timeout_seconds, route.backend_timeout_seconds), (10.0, 2.0))

    def test_redirect_ports_follow_the_spec(self) -> None:
        def redirect(filter_body: dict[str, Any], listener_port: int = 80) -> Redirect:
            all_ns = {"namespaces": {"from": "All"}}
            result = translate(
                gateway(listeners=[listener("http", port=listener_port, allowed=all_ns)]),
                http_route(
                    rules=[
                        {"filters": [{"type": "RequestRedirect", "requestRedirect": filter_body}]}
                    ]
                ),
            )
            (translated,) = result.routes
            assert translated.route.redirect is not None
            self.assertEqual(translated.route.backends, ())
            self.assertEqual(translated.route.refused_backend_weight, 0)
            return translated.route.redirect

        self.assertEqual(redirect({"hostname": "a.com"}).port, None)
        self.assertEqual(redirect({"hostname": "a.com"}, listener_port=8080).port, 8080)
        self.assertEqual(redirect({"scheme": "https"}, listener_port=8080).port, None)
        self.assertEqual(redirect({"scheme": "https", "port": 8443}).port, 8443)
        self.assertEqual(redirect({"port": 80}).port, None)
        self.assertEqual(redirect({"statusCode": 301, "hostname": "a.com"}).status_code, 301)
        prefix = redirect({"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}})
        self.assertEqual(prefix.replace_prefix, "/new")

    def test_rule_without_backends_answers_500(self) -> None:
        (route,) = self.only_route({"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]})
        self.assertEqual((route.backends, route.refused_backend_weight), ((), 1))


class RefusalTests(SynchronousTestCase):
    """A route we cannot serve as written is refused whole, naming the field."""

    def refused(self, rule: dict[str, Any]) -> str:
        good = http_route(name="good", created="2026-02-01T00:00:00Z")
        result = translate(gateway(), http_route(rules=[rule]), good)
        status, reason, message = parent_conditions(result)["Accepted"]
        self.assertEqual((status, reason), ("False", "UnsupportedValue"))
        # The other route is untouched.
        self.assertEqual(parent_conditions(result, "good")["Accepted"][0], "True")
        self.assertEqual({t.origin.name for t in result.routes}, {"good"})
        return message

    def test_regular_expression_path(self) -> None:
        message = self.refused(
            {
                "matches": [{"path": {"type": "RegularExpression", "value": "/a.*"}}],
                "backendRefs": [{"name": "web", "port": 80}],
            }
        )
        self.assertIn("spec.rules[0].matches[0].path.type", message)

    def test_regular_expression_header(self) -> None:
        message = self.refused(
            {
                "matches": [
                    {"headers": [{"type": "RegularExpression", "name": "x", "value": ".*"}]}
                ],
                "backendRefs": [{"name": "web", "port": 80}],
            }
        )
        self.assertIn("spec.rules[0].matches[0].headers[0].type", message)

    def test_unknown_filter(self) -> None:
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

    def test_unmodifiable_header(self) -> None:
        message = self.refused(
            {
                "filters": [
                    {
                        "type": "RequestHeaderModifier",
                        "requestHeaderModifier": {
                            "set": [{"name": "Transfer-Encoding", "value": "chunked"}]
                        },
                    }
                ],
                "backendRefs": [{"name": "web", "port": 80}],
            }
        )
        self.assertIn("transfer-encoding cannot be modified", message)

    def test_header_value_with_crlf(self) -> None:
        message = self.refused(
            {
                "filters": [
                    {
                        "type": "ResponseHeaderModifier",
                        "responseHeaderModifier": {
                            "add": [{"name": "X-A", "value": "a\r\nSet-Cookie: x"}]
                        },
                    }
                ],
                "backendRefs": [{"name": "web", "port": 80}],
            }
        )
        self.assertIn("spec.rules[0].filters[0].responseHeaderModifier.add[0].value", message)

    def test_prefix_replacement_without_prefix_match(self) -> None:
        message = self.refused(
            {
                "matches": [{"path": {"type": "Exact", "value": "/a"}}],
                "filters": [
                    {
                        "type": "URLRewrite",
                        "urlRewrite": {
                            "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/b"}
                        },
                    }
                ],
                "backendRefs": [{"name": "web", "port": 80}],
            }
        )
        self.assertIn("ReplacePrefixMatch requires PathPrefix", message)

    def test_redirect_and_rewrite_together(self) -> None:
        message = self.refused(
            {
                "filters": [
                    {"type": "RequestRedirect", "requestRedirect": {"hostname": "a.com"}},
                    {"type": "URLRewrite", "urlRewrite": {"hostname": "b.com"}},
                ]
            }
        )
        self.assertIn("exclude each other", message)

    def test_backend_timeout_longer_than_request(self) -> None:
        message = self.refused(
            {
                "backendRefs": [{"name": "web", "port": 80}],
                "timeouts": {"request": "1s", "backendRequest": "2s"},
            }
        )
        self.assertIn("spec.rules[0].timeouts.backendRequest", message)

    def test_bad_duration(self) -> None:
        message = self.refused(
            {"backendRefs": [{"name": "web", "port": 80}], "timeouts": {"request": "1.5s"}}
        )
        self.assertIn("not a Gateway API duration", message)

    def test_unknown_field_has_a_suggestion(self) -> None:
        message = self.refused({"backendref": [{"name": "web", "port": 80}]})
        self.assertIn("did you mean 'backendRefs'", message)


class DurationTests(SynchronousTestCase):
    def test_valid(self) -> None:
        for text, seconds in [
            ("1h", 3600.0),
            ("500ms", 0.5),
            ("1m30s", 90.0),
            ("0s", 0.0),
            ("1h2m3s4ms", 3723.004),
        ]:
            self.assertAlmostEqual(parse_duration(text), seconds)

    def test_invalid(self) -> None:
        for text in ["", "1", "1.5s", "-1s", "1d", "1s1s", "123456s", "1 s", "s"]:
            with self.assertRaises(ValueError, msg=text):
                parse_duration(text)


class SelectorObjectTests(SynchronousTestCase):
    def test_match_labels_and_expressions(self) -> None:
        selector = LabelSelector.from_object(
            {
                "matchLabels": {"team": "a"},
                "matchExpressions": [
                    {"key": "env", "operator": "In", "values": ["prod", "stage"]},
                    {"key": "legacy", "operator": "DoesNotExist"},
                ],
            }
        )
        self.assertTrue(selector.matches({"team": "a", "env": "prod"}))
        self.assertFalse(selector.matches({"team": "a", "env": "dev"}))
        self.assertFalse(selector.matches({"team": "a", "env": "prod", "legacy": "y"}))
        self.assertTrue(LabelSelector.from_object({}).matches({"anything": "x"}))

    def test_bad_operator(self) -> None:
        with self.assertRaises(SelectorError):
            LabelSelector.from_object(
                {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}
            )
