"""
Tests for L{tenantgw.config.parse}: every kind of refusal names the field
path a tenant would look for, and everything accepted lands in the model.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tenantgw.config.errors import TenantConfigError
from tenantgw.config.model import (
    TLS,
    Access,
    BackendRef,
    BasicAuthRef,
    Cache,
    FieldError,
    HeaderMatch,
    HeaderModifier,
    HealthCheck,
    LoadBalancer,
    QueryParamMatch,
    Quota,
    RateLimit,
    Redirect,
    Retries,
    Rewrite,
    Route,
    RouteMatch,
    SecretRef,
    TenantSpec,
)
from tenantgw.config.parse import (
    MAX_DOCUMENT_BYTES,
    parse_tenant_document,
    parse_tenant_yaml,
)

SECTION_4_EXAMPLE = """\
hosts: [shop.example.com, "*.shop.example.com"]
tls:
  secretName: shop-tls          # served by SNI for this tenant's hosts
  httpRedirect: true            # default true when tls is set: http -> https, 308
quota:
  requestsPerSecond: 100        # whole tenant, all hosts and routes, across all replicas
  burst: 200
  perClient: {requestsPerSecond: 10, burst: 20}   # key: client address
  maxConcurrentRequests: 500    # in flight, per tenant
  maxRequestBodyBytes: 10485760
access:
  allowCIDRs: [10.0.0.0/8]      # empty = everyone; deny wins over allow
  denyCIDRs: [10.9.0.0/16]
  basicAuth: {secretName: shop-users, realm: shop}
  apiKeys: {secretName: shop-keys}      # "Authorization: Bearer K" or "X-API-Key: K"
routes:
  - name: api
    match:
      path: /api                # default "/"
      pathType: Prefix          # Prefix (default) | Exact
      methods: [GET, POST]      # default: any
      headers: [{name: x-canary, value: "1"}]      # exact value, name case-insensitive
      queryParams: [{name: v, value: "2"}]          # exact, name case-sensitive
    backends:
      - {service: api, port: 8080, weight: 90}
      - {service: api-v2, port: http, weight: 10}
    rewrite: {replacePrefix: /, host: api.internal}
    requestHeaders:  {set: {x-env: prod}, add: {x-tag: a}, remove: [x-debug]}
    responseHeaders: {set: {}, add: {}, remove: [server]}
    redirect: {scheme: https, host: h, port: 443, path: /p, statusCode: 301}  # instead of backends
    timeoutSeconds: 30
    retries: {attempts: 2}      # idempotent methods only, on connect failure / 502 / 503
    loadBalancer: {policy: RoundRobin}    # RoundRobin | LeastRequest | Cookie (sticky)
    healthCheck: {path: /healthz, intervalSeconds: 5, unhealthyThreshold: 3, healthyThreshold: 2}
    access: {...}               # same shape as tenant access; narrows it, never widens
    quota: {requestsPerSecond: 10, burst: 10}     # sub-limit inside the tenant's quota
    cache: {maxAgeSeconds: 60, maxBodyBytes: 1048576}   # response cache, per tenant
"""

# The section 4 example is illustrative: its one route shows both
# backends and "redirect (instead of backends)" and elides route access.
# Made valid by moving the redirect to a route of its own.
SECTION_4_VALID = (
    SECTION_4_EXAMPLE.replace(
        "    redirect: {scheme: https, host: h, port: 443, path: /p, statusCode: 301}"
        "  # instead of backends\n",
        "",
    ).replace("    access: {...}", "    access: {denyCIDRs: ['10.1.2.0/24']}")
    + """\
  - name: moved
    match: {path: /old, pathType: Exact}
    redirect: {scheme: https, host: h, port: 443, path: /p, statusCode: 301}
"""
)


def tenant_with_route(**fields: Any) -> dict[str, Any]:
    """A valid one-route tenant, with C{fields} added to or replacing the route's."""
    route: dict[str, Any] = {"name": "r", "backends": [{"service": "api", "port": 80}]}
    route.update(fields)
    return {"routes": [route]}


def tenant_with_backend(**fields: Any) -> dict[str, Any]:
    backend: dict[str, Any] = {"service": "api", "port": 80}
    backend.update(fields)
    return tenant_with_route(backends=[backend])


class ParseTestCase(SynchronousTestCase):
    def errors(self, document: object) -> list[FieldError]:
        """The errors refusing C{document} (YAML text, or already loaded)."""
        if isinstance(document, str):
            error = self.assertRaises(TenantConfigError, parse_tenant_yaml, document)
        else:
            error = self.assertRaises(TenantConfigError, parse_tenant_document, document)
        return list(error.errors)

    def assertRejected(self, document: object, path: str, fragment: str) -> None:
        """C{document} is refused for exactly one reason, at C{path}."""
        errors = self.errors(document)
        self.assertEqual([error.path for error in errors], [path], errors)
        self.assertIn(fragment, errors[0].message)

    def route(self, document: object) -> Route:
        spec = (
            parse_tenant_yaml(document)
            if isinstance(document, str)
            else parse_tenant_document(document)
        )
        self.assertEqual(len(spec.routes), 1)
        return spec.routes[0]


class ExampleTests(ParseTestCase):
    def test_section_4_example(self) -> None:
        spec = parse_tenant_yaml(SECTION_4_VALID)
        expected_api = Route(
            name="api",
            match=RouteMatch(
                path="/api",
                path_type="Prefix",
                methods=("GET", "POST"),
                headers=(HeaderMatch(name="x-canary", value="1"),),
                query_params=(QueryParamMatch(name="v", value="2"),),
            ),
            backends=(
                BackendRef(service="api", port=8080, weight=90),
                BackendRef(service="api-v2", port="http", weight=10),
            ),
            rewrite=Rewrite(replace_prefix="/", host="api.internal"),
            request_headers=HeaderModifier(
                set=(("x-env", "prod"),), add=(("x-tag", "a"),), remove=("x-debug",)
            ),
            response_headers=HeaderModifier(remove=("server",)),
            timeout_seconds=30.0,
            retries=Retries(attempts=2),
            load_balancer=LoadBalancer(policy="RoundRobin"),
            health_check=HealthCheck(
                path="/healthz",
                interval_seconds=5.0,
                unhealthy_threshold=3,
                healthy_threshold=2,
            ),
            access=Access(deny_cidrs=(ipaddress.ip_network("10.1.2.0/24"),)),
            quota=RateLimit(requests_per_second=10.0, burst=10),
            cache=Cache(max_age_seconds=60, max_body_bytes=1048576),
        )
        expected_moved = Route(
            name="moved",
            match=RouteMatch(path="/old", path_type="Exact"),
            redirect=Redirect(scheme="https", host="h", port=443, path="/p", status_code=301),
        )
        expected = TenantSpec(
            hosts=("shop.example.com", "*.shop.example.com"),
            tls=TLS(secret_name="shop-tls", http_redirect=True),
            quota=Quota(
                rate=RateLimit(requests_per_second=100.0, burst=200),
                per_client=RateLimit(requests_per_second=10.0, burst=20),
                max_concurrent_requests=500,
                max_request_body_bytes=10485760,
            ),
            access=Access(
                allow_cidrs=(ipaddress.ip_network("10.0.0.0/8"),),
                deny_cidrs=(ipaddress.ip_network("10.9.0.0/16"),),
                basic_auth=BasicAuthRef(secret_name="shop-users", realm="shop"),
                api_keys=SecretRef(secret_name="shop-keys"),
            ),
            routes=(expected_api, expected_moved),
        )
        self.assertEqual(spec.routes[0], expected_api)
        self.assertEqual(spec, expected)
        self.assertIsInstance(spec.quota.rate and spec.quota.rate.requests_per_second, float)

    def test_section_4_example_verbatim_is_refused(self) -> None:
        """
        Taken literally, the example route both forwards and redirects, and
        C{{...}} is a mapping with an unknown field named C{...}.
        """
        errors = self.errors(SECTION_4_EXAMPLE)
        self.assertEqual(
            [error.path for error in errors],
            ["routes[0].redirect", "routes[0].rewrite", "routes[0].access...."],
        )


class DefaultTests(ParseTestCase):
    def test_empty_documents(self) -> None:
        """An empty tenant.yaml is a tenant with nothing routed (404 for all)."""
        for text in ["", "# nothing yet\n", "---\n", "{}", "routes: []", "routes:\n"]:
            self.assertEqual(parse_tenant_yaml(text), TenantSpec(), text)
        self.assertEqual(parse_tenant_document(None), TenantSpec())

    def test_nulls_are_absent(self) -> None:
        spec = parse_tenant_yaml(
            "hosts: ~\ntls: null\nquota: null\naccess: null\n"
            "routes:\n- name: r\n  match: null\n  backends: [{service: a, port: 1}]\n"
            "  redirect: null\n  cache: null\n  timeoutSeconds: null\n"
        )
        self.assertEqual(
            spec, TenantSpec(routes=(Route(name="r", backends=(BackendRef("a", 1),)),))
        )

    def test_route_defaults(self) -> None:
        route = self.route(tenant_with_route())
        self.assertEqual(route.match, RouteMatch(path="/", path_type="Prefix"))
        self.assertEqual(route.backends, (BackendRef(service="api", port=80, weight=1),))
        self.assertEqual(route.retries, Retries(attempts=0))
        self.assertEqual(route.load_balancer, LoadBalancer(policy="RoundRobin"))
        self.assertEqual(route.request_headers, HeaderModifier())
        self.assertIsNone(route.timeout_seconds)
        self.assertIsNone(route.health_check)
        self.assertIsNone(route.cache)
        self.assertIsNone(route.access)

    def test_empty_sections_take_defaults(self) -> None:
        route = self.route(
            tenant_with_route(
                match={}, healthCheck={}, cache={}, retries={}, loadBalancer={}, access={}
            )
        )
        self.assertEqual(route.match, RouteMatch())
        self.assertEqual(route.health_check, HealthCheck("/healthz", 5.0, 3, 2))
        self.assertEqual(route.cache, Cache(60, 1048576))
        self.assertEqual(route.access, Access())

    def test_tls_redirects_by_default(self) -> None:
        spec = parse_tenant_document({"tls": {"secretName": "t"}})
        self.assertEqual(spec.tls, TLS(secret_name="t", http_redirect=True))
        spec = parse_tenant_document({"tls": {"secretName": "t", "httpRedirect": False}})
        self.assertEqual(spec.tls, TLS(secret_name="t", http_redirect=False))

    def test_default_realm(self) -> None:
        spec = parse_tenant_document({"access": {"basicAuth": {"secretName": "users"}}})
        self.assertEqual(spec.access.basic_auth, BasicAuthRef("users", "tenantgw"))

    def test_burst_defaults_to_one_second(self) -> None:
        spec = parse_tenant_document(
            {"quota": {"requestsPerSecond": 2.5, "perClient": {"requestsPerSecond": 0.5}}}
        )
        self.assertEqual(spec.quota.rate, RateLimit(2.5, 3))
        self.assertEqual(spec.quota.per_client, RateLimit(0.5, 1))

    def test_redirect_status_defaults_to_302(self) -> None:
        route = self.route({"routes": [{"name": "r", "redirect": {"scheme": "https"}}]})
        self.assertEqual(route.redirect, Redirect(scheme="https", status_code=302))
        self.assertEqual(route.backends, ())

    def test_zero_body_limit_and_all_zero_weights_are_valid(self) -> None:
        """All weights zero is Gateway API's "serve 503", not a mistake."""
        spec = parse_tenant_document(
            {
                "quota": {"maxRequestBodyBytes": 0},
                "routes": [
                    {
                        "name": "r",
                        "backends": [
                            {"service": "a", "port": 1, "weight": 0},
                            {"service": "b", "port": 2, "weight": 0},
                        ],
                    }
                ],
            }
        )
        self.assertEqual(spec.quota.max_request_body_bytes, 0)
        self.assertEqual([b.weight for b in spec.routes[0].backends], [0, 0])


class NormalizationTests(ParseTestCase):
    def test_hosts_lowercased_without_trailing_dot(self) -> None:
        spec = parse_tenant_document({"hosts": ["Shop.Example.COM.", "*.Api.Example.com"]})
        self.assertEqual(spec.hosts, ("shop.example.com", "*.api.example.com"))

    def test_methods_uppercased(self) -> None:
        route = self.route(tenant_with_route(match={"methods": ["get", "Purge"]}))
        self.assertEqual(route.match.methods, ("GET", "PURGE"))

    def test_header_names_lowercased_query_names_not(self) -> None:
        route = self.route(
            tenant_with_route(
                match={
                    "headers": [{"name": "X-Canary", "value": "On"}],
                    "queryParams": [{"name": "Version", "value": "V2"}],
                },
                requestHeaders={"set": {"X-Env": "Prod"}, "remove": ["X-Debug"]},
            )
        )
        self.assertEqual(route.match.headers, (HeaderMatch("x-canary", "On"),))
        self.assertEqual(route.match.query_params, (QueryParamMatch("Version", "V2"),))
        self.assertEqual(route.request_headers.set, (("x-env", "Prod"),))
        self.assertEqual(route.request_headers.remove, ("x-debug",))

    def test_ipv6_and_single_address_cidrs(self) -> None:
        spec = parse_tenant_document({"access": {"allowCIDRs": ["2001:db8::/32", "192.0.2.7"]}})
        self.assertEqual(
            spec.access.allow_cidrs,
            (ipaddress.ip_network("2001:db8::/32"), ipaddress.ip_network("192.0.2.7/32")),
        )

    def test_redirect_scheme_lowercased(self) -> None:
        route = self.route({"routes": [{"name": "r", "redirect": {"scheme": "HTTPS"}}]})
        self.assertEqual(route.redirect, Redirect(scheme="https"))


class YamlSafetyTests(ParseTestCase):
    def test_document_too_large(self) -> None:
        text = "hosts: []\n" + "#" * MAX_DOCUMENT_BYTES
        self.assertRejected(text, "", "larger than 1048576 bytes")

    def test_size_counts_bytes_not_characters(self) -> None:
        text = "# " + "é" * (MAX_DOCUMENT_BYTES // 2)
        self.assertRejected(text, "", "larger than")

    def test_billion_laughs(self) -> None:
        text = 'a: &a ["lol","lol"]\nb: &b [*a,*a]\nc: [*b,*b]\n'
        self.assertRejected(text, "", "anchors (&name) are not allowed")

    def test_alias(self) -> None:
        """Even an alias to nothing is refused as an alias, before resolution."""
        self.assertRejected("hosts: *h\n", "", "aliases (*name) are not allowed")

    def test_merge_key(self) -> None:
        self.assertRejected("<<: {hosts: []}\n", "", "merge keys (<<) are not allowed")

    def test_duplicate_key(self) -> None:
        self.assertRejected(
            "hosts: [a.example]\nhosts: [b.example]\n",
            "",
            "line 2, column 1: duplicate key 'hosts'",
        )

    def test_deep_nesting(self) -> None:
        self.assertRejected("[" * 100 + "]" * 100, "", "nested more than 32 levels deep")

    def test_too_many_values(self) -> None:
        text = "hosts: [" + ",".join(["a"] * 100_000) + "]\n"
        self.assertRejected(text, "", "more than 100000 values")

    def test_syntax_error_names_line(self) -> None:
        self.assertRejected("hosts: [a\nroutes: {\n", "", "invalid YAML at line")

    def test_no_python_objects(self) -> None:
        self.assertRejected("hosts: !!python/object/apply:os.system ['true']\n", "", "invalid YAML")

    def test_single_document_only(self) -> None:
        self.assertRejected("hosts: []\n---\nhosts: []\n", "", "invalid YAML")

    def test_top_level_not_a_mapping(self) -> None:
        self.assertRejected("- routes\n", "", "must be a mapping of fields")
        self.assertRejected("just text\n", "", "got a string")

    def test_non_string_key(self) -> None:
        self.assertRejected("1: x\n", "1", "field names must be strings, got an integer")
        self.assertRejected(
            {"routes": [{"name": "r", "redirect": {"scheme": "https", True: 1}}]},
            "routes[0].redirect.True",
            "field names must be strings, got a boolean",
        )

    def test_every_problem_reported_at_once(self) -> None:
        errors = self.errors(
            {
                "hosts": ["a.example", "a.example"],
                "tls": {"secretName": "x/y"},
                "routes": [{"name": "r", "backends": [{"service": "a", "port": 0}]}],
            }
        )
        self.assertEqual(
            [error.path for error in errors],
            ["hosts[1]", "tls.secretName", "routes[0].backends[0].port"],
        )

    def test_error_text_lists_every_path(self) -> None:
        error = self.assertRaises(TenantConfigError, parse_tenant_document, {"bogus": 1, "tls": {}})
        self.assertEqual(
            str(error),
            "tenant.yaml rejected (2 problems):\n"
            "  - bogus: unknown field\n"
            "  - tls.secretName: required field is missing",
        )


class UnknownFieldTests(ParseTestCase):
    def test_top_level(self) -> None:
        self.assertRejected({"route": []}, "route", "unknown field (did you mean 'routes'?)")

    def test_suggests_case_fix(self) -> None:
        self.assertRejected(
            {"access": {"allowCidrs": ["10.0.0.0/8"]}},
            "access.allowCidrs",
            "did you mean 'allowCIDRs'?",
        )

    def test_every_level(self) -> None:
        cases = [
            ({"tls": {"secretName": "t", "x": 1}}, "tls.x"),
            ({"quota": {"perClient": {"requestsPerSecond": 1, "x": 1}}}, "quota.perClient.x"),
            ({"access": {"basicAuth": {"secretName": "s", "x": 1}}}, "access.basicAuth.x"),
            ({"access": {"apiKeys": {"secretName": "s", "x": 1}}}, "access.apiKeys.x"),
            (tenant_with_route(x=1), "routes[0].x"),
            (tenant_with_route(match={"x": 1}), "routes[0].match.x"),
            (
                tenant_with_route(match={"headers": [{"name": "a", "value": "b", "x": 1}]}),
                "routes[0].match.headers[0].x",
            ),
            (
                tenant_with_route(match={"queryParams": [{"name": "a", "value": "b", "x": 1}]}),
                "routes[0].match.queryParams[0].x",
            ),
            (tenant_with_backend(x=1), "routes[0].backends[0].x"),
            (tenant_with_route(rewrite={"x": 1}), "routes[0].rewrite.x"),
            (tenant_with_route(requestHeaders={"x": 1}), "routes[0].requestHeaders.x"),
            (tenant_with_route(responseHeaders={"x": 1}), "routes[0].responseHeaders.x"),
            (tenant_with_route(retries={"x": 1}), "routes[0].retries.x"),
            (tenant_with_route(loadBalancer={"x": 1}), "routes[0].loadBalancer.x"),
            (tenant_with_route(healthCheck={"x": 1}), "routes[0].healthCheck.x"),
            (tenant_with_route(access={"x": 1}), "routes[0].access.x"),
            (tenant_with_route(quota={"requestsPerSecond": 1, "x": 1}), "routes[0].quota.x"),
            (tenant_with_route(cache={"x": 1}), "routes[0].cache.x"),
            (
                {"routes": [{"name": "r", "redirect": {"scheme": "https", "x": 1}}]},
                "routes[0].redirect.x",
            ),
        ]
        for document, path in cases:
            self.assertRejected(document, path, "unknown field")


class TypeTests(ParseTestCase):
    def test_bool_is_not_a_port(self) -> None:
        self.assertRejected(
            "routes:\n- name: r\n  backends: [{service: a, port: true}]\n",
            "routes[0].backends[0].port",
            "expected an integer, got a boolean",
        )

    def test_bool_is_not_a_number(self) -> None:
        self.assertRejected(
            {"quota": {"requestsPerSecond": True}},
            "quota.requestsPerSecond",
            "expected a number, got a boolean",
        )

    def test_float_is_not_an_integer(self) -> None:
        self.assertRejected(
            {"quota": {"requestsPerSecond": 5, "burst": 2.5}},
            "quota.burst",
            "expected an integer, got a number",
        )

    def test_quoted_weight(self) -> None:
        self.assertRejected(
            tenant_with_backend(weight="1"),
            "routes[0].backends[0].weight",
            "expected an integer, got a string",
        )

    def test_yaml_boolean_where_string_expected(self) -> None:
        """YAML 1.1 reads an unquoted C{yes} as true; say so."""
        self.assertRejected(
            "routes:\n- name: r\n  backends: [{service: a, port: 1}]\n"
            "  requestHeaders: {set: {x-flag: yes}}\n",
            "routes[0].requestHeaders.set.x-flag",
            "got a boolean (quote it",
        )

    def test_string_where_list_expected(self) -> None:
        self.assertRejected({"hosts": "a.example"}, "hosts", "expected a list, got a string")

    def test_list_where_mapping_expected(self) -> None:
        self.assertRejected({"routes": [["r"]]}, "routes[0]", "expected a mapping, got a list")

    def test_string_where_bool_expected(self) -> None:
        self.assertRejected(
            {"tls": {"secretName": "t", "httpRedirect": "true"}},
            "tls.httpRedirect",
            "expected true or false, got a string",
        )

    def test_infinite_numbers(self) -> None:
        self.assertRejected(
            "quota: {requestsPerSecond: .inf}\n", "quota.requestsPerSecond", "finite"
        )
        self.assertRejected(
            "quota: {requestsPerSecond: .nan}\n", "quota.requestsPerSecond", "finite"
        )


class HostTests(ParseTestCase):
    def test_invalid_hosts(self) -> None:
        cases = [
            ("a.*.example.com", "whole leftmost label"),
            ("*example.com", "whole leftmost label"),
            ("*", "whole leftmost label"),
            ("192.0.2.1", "IP addresses are not allowed"),
            ("2001:db8::1", "IP addresses are not allowed"),
            ("[2001:db8::1]", "IP addresses are not allowed"),
            ("shop.example.com:8443", "must not include a port"),
            ("bad_host.example.com", "must be a DNS name"),
            ("-bad.example.com", "must be a DNS name"),
            ("a..example.com", "must be a DNS name"),
            ("bücher.example", "punycode"),
            ("", "must not be empty"),
            ("a" * 64 + ".example", "at most 63"),
        ]
        for host, fragment in cases:
            self.assertRejected({"hosts": ["ok.example", host]}, "hosts[1]", fragment)

    def test_duplicate_after_normalization(self) -> None:
        self.assertRejected(
            {"hosts": ["shop.example.com", "SHOP.example.com."]},
            "hosts[1]",
            "duplicate host 'shop.example.com' (first at hosts[0])",
        )


class AccessTests(ParseTestCase):
    def test_ipv4_host_bits_set(self) -> None:
        self.assertRejected(
            {"access": {"allowCIDRs": ["10.0.0.0/8", "10.0.0.1/8"]}},
            "access.allowCIDRs[1]",
            "10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?",
        )

    def test_ipv6_host_bits_set(self) -> None:
        self.assertRejected(
            {"access": {"denyCIDRs": ["2001:db8::1/32"]}},
            "access.denyCIDRs[0]",
            "did you mean 2001:db8::/32?",
        )

    def test_not_a_cidr(self) -> None:
        for text in ["10.0.0.0/33", "10.0.0/8", "any", "010.0.0.0/8", " 10.0.0.0/8"]:
            self.assertRejected(
                {"access": {"allowCIDRs": [text]}},
                "access.allowCIDRs[0]",
                "not an IPv4 or IPv6 address or CIDR",
            )

    def test_route_access_cidr(self) -> None:
        self.assertRejected(
            tenant_with_route(access={"denyCIDRs": ["10.0.0.1/24"]}),
            "routes[0].access.denyCIDRs[0]",
            "host bits set",
        )

    def test_realm(self) -> None:
        for realm, fragment in [
            ('say "hi"', 'without " or \\'),
            ("back\\slash", 'without " or \\'),
            ("naïve", "printable ASCII"),
            ("tab\there", "printable ASCII"),
            ("r" * 65, "1 to 64 characters"),
            ("", "1 to 64 characters"),
        ]:
            self.assertRejected(
                {"access": {"basicAuth": {"secretName": "users", "realm": realm}}},
                "access.basicAuth.realm",
                fragment,
            )

    def test_secret_required(self) -> None:
        self.assertRejected(
            {"access": {"apiKeys": {}}}, "access.apiKeys.secretName", "required field"
        )


class NamespaceReferenceTests(ParseTestCase):
    def test_service_in_other_namespace(self) -> None:
        for service in ["other-ns/api", "api.other-ns", "api.other-ns.svc.cluster.local"]:
            self.assertRejected(
                tenant_with_backend(service=service),
                "routes[0].backends[0].service",
                "references to other namespaces are not allowed",
            )

    def test_secret_in_other_namespace(self) -> None:
        cases = [
            ({"tls": {"secretName": "other/shop-tls"}}, "tls.secretName"),
            (
                {"access": {"basicAuth": {"secretName": "other/users"}}},
                "access.basicAuth.secretName",
            ),
            ({"access": {"apiKeys": {"secretName": "other/keys"}}}, "access.apiKeys.secretName"),
            (
                tenant_with_route(access={"apiKeys": {"secretName": "other/keys"}}),
                "routes[0].access.apiKeys.secretName",
            ),
        ]
        for document, path in cases:
            self.assertRejected(document, path, "references to other namespaces are not allowed")

    def test_invalid_service_names(self) -> None:
        for service in ["Api", "1api", "api-", "", "a" * 64]:
            self.assertRejected(
                tenant_with_backend(service=service), "routes[0].backends[0].service", "must"
            )

    def test_invalid_secret_names(self) -> None:
        for secret in ["Shop-TLS", "shop_tls", "-shop", "shop..tls", "s" * 254]:
            self.assertRejected({"tls": {"secretName": secret}}, "tls.secretName", "must")

    def test_dotted_secret_name_is_local(self) -> None:
        """A dot in a Secret name is just part of the name (DNS-1123 subdomain)."""
        spec = parse_tenant_document({"tls": {"secretName": "shop.example.com-tls"}})
        self.assertEqual(spec.tls, TLS("shop.example.com-tls"))


class BackendTests(ParseTestCase):
    def test_neither_backends_nor_redirect(self) -> None:
        self.assertRejected(
            {"routes": [{"name": "r"}]}, "routes[0].backends", "or set redirect instead"
        )

    def test_both_backends_and_redirect(self) -> None:
        self.assertRejected(
            tenant_with_route(redirect={"scheme": "https"}),
            "routes[0].redirect",
            "cannot be combined with backends",
        )

    def test_empty_backends(self) -> None:
        self.assertRejected(
            tenant_with_route(backends=[]), "routes[0].backends", "must not be empty"
        )

    def test_too_many_backends(self) -> None:
        backends = [{"service": f"s{i}", "port": 80} for i in range(17)]
        self.assertRejected(
            tenant_with_route(backends=backends), "routes[0].backends", "at most 16 items"
        )

    def test_weight_bounds(self) -> None:
        for weight in [-1, 1_000_001]:
            self.assertRejected(
                tenant_with_backend(weight=weight),
                "routes[0].backends[0].weight",
                "must be between 0 and 1000000",
            )

    def test_port_numbers(self) -> None:
        for port in [0, 65536, -80]:
            self.assertRejected(
                tenant_with_backend(port=port),
                "routes[0].backends[0].port",
                "must be between 1 and 65535",
            )

    def test_port_names(self) -> None:
        cases = [
            ("8080", "without quotes"),
            ("HTTP", "port name"),
            ("http--alt", "port name"),
            ("-http", "port name"),
            ("http-", "port name"),
            ("a-very-long-port", "1 to 15 characters"),
            ("", "1 to 15 characters"),
        ]
        for port, fragment in cases:
            self.assertRejected(
                tenant_with_backend(port=port), "routes[0].backends[0].port", fragment
            )

    def test_port_required(self) -> None:
        self.assertRejected(
            tenant_with_route(backends=[{"service": "a"}]),
            "routes[0].backends[0].port",
            "required field is missing",
        )


class RouteNameTests(ParseTestCase):
    def names(self, routes: list[dict[str, Any]]) -> list[str]:
        return [route.name for route in parse_tenant_document({"routes": routes}).routes]

    def test_name_is_optional_and_derived_from_the_position(self) -> None:
        """Contract section 4: every field but backends (or redirect) is optional."""
        backend = {"backends": [{"service": "a", "port": 1}]}
        redirect = {"redirect": {"scheme": "https"}}
        self.assertEqual(
            self.names([backend, dict(backend, name="api"), redirect, backend]),
            ["route-0", "api", "route-2", "route-3"],
        )

    def test_derived_names_are_stable_across_reloads(self) -> None:
        text = "routes:\n- backends: [{service: a, port: 1}]\n- redirect: {scheme: https}\n"
        first = parse_tenant_yaml(text)
        again = [parse_tenant_yaml(text) for _ in range(3)]
        self.assertEqual({spec.routes for spec in again}, {first.routes})
        self.assertEqual([r.name for r in first.routes], ["route-0", "route-1"])

    def test_derived_names_never_take_a_given_name(self) -> None:
        backend = {"backends": [{"service": "a", "port": 1}]}
        self.assertEqual(
            self.names([backend, dict(backend, name="route-0"), dict(backend, name="route-0-2")]),
            ["route-0-3", "route-0", "route-0-2"],
        )
        # Also when the given name comes later in the file than the route it would clash with.
        self.assertEqual(
            self.names([backend, backend, dict(backend, name="route-1")]),
            ["route-0", "route-1-2", "route-1"],
        )

    def test_explicit_null_name_is_derived(self) -> None:
        self.assertEqual(
            self.names([{"name": None, "backends": [{"service": "a", "port": 1}]}]), ["route-0"]
        )

    def test_errors_of_unnamed_routes_still_name_the_field_path(self) -> None:
        self.assertRejected(
            {"routes": [{"backends": [{"service": "a", "port": "x y"}]}]},
            "routes[0].backends[0].port",
            "must be a port number or a port name",
        )

    def test_name_must_be_dns_label(self) -> None:
        for name in ["API", "a_b", "a.b", "-a", "a" * 64]:
            self.assertRejected(tenant_with_route(name=name), "routes[0].name", "must")

    def test_duplicate_route_names(self) -> None:
        route = {"name": "r", "backends": [{"service": "a", "port": 1}]}
        self.assertRejected(
            {"routes": [route, dict(route, name="s"), route]},
            "routes[2].name",
            "duplicate route name 'r' (first at routes[0])",
        )


class MatchTests(ParseTestCase):
    def test_path_type(self) -> None:
        self.assertRejected(
            tenant_with_route(match={"pathType": "Regex"}),
            "routes[0].match.pathType",
            "must be one of Prefix, Exact",
        )

    def test_bad_paths(self) -> None:
        cases = [
            ("api", "must start with '/'"),
            ("/a?b=1", "no query or fragment"),
            ("/a#frag", "no query or fragment"),
            ("/a/../b", "'..' segments"),
            ("/a/..", "'..' segments"),
            ("/a/./b", "'..' segments"),
            ("/a\r\nX-Injected: 1", "CR, LF or NUL"),
            ("/a\0", "CR, LF or NUL"),
            ("/a//b", "'//'"),
            ("/a%2Fb", "encoded slashes"),
            ("/a b", "URL path characters"),
            ("/" + "a" * 1024, "at most 1024"),
        ]
        for path, fragment in cases:
            self.assertRejected(
                tenant_with_route(match={"path": path}), "routes[0].match.path", fragment
            )

    def test_methods(self) -> None:
        self.assertRejected(
            tenant_with_route(match={"methods": ["GET", "GET /x"]}),
            "routes[0].match.methods[1]",
            "must be an HTTP token",
        )
        self.assertRejected(
            tenant_with_route(match={"methods": ["GET", "get"]}),
            "routes[0].match.methods[1]",
            "duplicate method GET",
        )

    def test_header_match_name(self) -> None:
        self.assertRejected(
            tenant_with_route(match={"headers": [{"name": "x canary", "value": "1"}]}),
            "routes[0].match.headers[0].name",
            "must be an HTTP token",
        )

    def test_header_match_value(self) -> None:
        for value in ["a\rb", "a\nb", "a\0b"]:
            self.assertRejected(
                tenant_with_route(match={"headers": [{"name": "x", "value": value}]}),
                "routes[0].match.headers[0].value",
                "must not contain CR, LF or NUL",
            )

    def test_header_match_needs_value(self) -> None:
        self.assertRejected(
            tenant_with_route(match={"headers": [{"name": "x"}]}),
            "routes[0].match.headers[0].value",
            "required field is missing",
        )

    def test_duplicate_header_match(self) -> None:
        self.assertRejected(
            tenant_with_route(
                match={"headers": [{"name": "X-A", "value": "1"}, {"name": "x-a", "value": "2"}]}
            ),
            "routes[0].match.headers[1].name",
            "duplicate name 'x-a'",
        )

    def test_query_param_match(self) -> None:
        self.assertRejected(
            tenant_with_route(match={"queryParams": [{"name": "v", "value": "1\n2"}]}),
            "routes[0].match.queryParams[0].value",
            "control characters",
        )
        self.assertRejected(
            tenant_with_route(match={"queryParams": [{"name": "v=1", "value": "1"}]}),
            "routes[0].match.queryParams[0].name",
            "HTTP token",
        )


class HeaderModifierTests(ParseTestCase):
    def test_invalid_header_name(self) -> None:
        self.assertRejected(
            tenant_with_route(requestHeaders={"set": {"x env": "prod"}}),
            "routes[0].requestHeaders.set.x env",
            "must be an HTTP token",
        )
        self.assertRejected(
            tenant_with_route(responseHeaders={"remove": ["x:y"]}),
            "routes[0].responseHeaders.remove[0]",
            "must be an HTTP token",
        )

    def test_value_with_cr_lf_nul(self) -> None:
        for field in ["set", "add"]:
            for value in ["prod\r\nSet-Cookie: a=b", "a\nb", "a\0b"]:
                self.assertRejected(
                    tenant_with_route(responseHeaders={field: {"x-env": value}}),
                    f"routes[0].responseHeaders.{field}.x-env",
                    "must not contain CR, LF or NUL",
                )

    def test_value_with_other_control_characters(self) -> None:
        self.assertRejected(
            tenant_with_route(requestHeaders={"add": {"x-a": "a\x1bb"}}),
            "routes[0].requestHeaders.add.x-a",
            "control characters",
        )

    def test_non_ascii_value(self) -> None:
        self.assertRejected(
            tenant_with_route(requestHeaders={"set": {"x-a": "café"}}),
            "routes[0].requestHeaders.set.x-a",
            "must be ASCII",
        )

    def test_framing_headers_are_the_gateways(self) -> None:
        for name in ["Content-Length", "transfer-encoding", "Connection", "upgrade"]:
            self.assertRejected(
                tenant_with_route(requestHeaders={"set": {name: "1"}}),
                f"routes[0].requestHeaders.set.{name}",
                "cannot be modified",
            )
        self.assertRejected(
            tenant_with_route(requestHeaders={"remove": ["Host"]}),
            "routes[0].requestHeaders.remove[0]",
            "set the upstream Host with rewrite.host",
        )

    def test_case_insensitive_duplicates(self) -> None:
        self.assertRejected(
            tenant_with_route(requestHeaders={"set": {"X-Env": "a", "x-env": "b"}}),
            "routes[0].requestHeaders.set.x-env",
            "duplicate header 'x-env'",
        )
        self.assertRejected(
            tenant_with_route(requestHeaders={"remove": ["X-A", "x-a"]}),
            "routes[0].requestHeaders.remove[1]",
            "duplicate header 'x-a'",
        )


class QuotaTests(ParseTestCase):
    def test_rate_must_be_positive(self) -> None:
        for rate in [0, -1, 0.0]:
            self.assertRejected(
                {"quota": {"requestsPerSecond": rate}},
                "quota.requestsPerSecond",
                "must be greater than 0",
            )

    def test_burst_at_least_one(self) -> None:
        self.assertRejected(
            {"quota": {"requestsPerSecond": 1, "burst": 0}},
            "quota.burst",
            "must be between 1 and",
        )

    def test_burst_needs_rate(self) -> None:
        self.assertRejected({"quota": {"burst": 10}}, "quota.burst", "needs requestsPerSecond")

    def test_per_client_needs_rate(self) -> None:
        self.assertRejected(
            {"quota": {"perClient": {"burst": 20}}},
            "quota.perClient.requestsPerSecond",
            "required field is missing",
        )

    def test_per_client_burst(self) -> None:
        self.assertRejected(
            {"quota": {"perClient": {"requestsPerSecond": 1, "burst": -5}}},
            "quota.perClient.burst",
            "must be between 1",
        )

    def test_concurrency_and_body(self) -> None:
        self.assertRejected(
            {"quota": {"maxConcurrentRequests": 0}},
            "quota.maxConcurrentRequests",
            "must be between 1",
        )
        self.assertRejected(
            {"quota": {"maxRequestBodyBytes": -1}},
            "quota.maxRequestBodyBytes",
            "must be between 0",
        )

    def test_route_quota(self) -> None:
        self.assertRejected(
            tenant_with_route(quota={"burst": 10}),
            "routes[0].quota.requestsPerSecond",
            "required field is missing",
        )
        self.assertRejected(
            tenant_with_route(quota={"requestsPerSecond": -1}),
            "routes[0].quota.requestsPerSecond",
            "greater than 0",
        )


class RedirectTests(ParseTestCase):
    def redirect(self, **fields: Any) -> dict[str, Any]:
        return {"routes": [{"name": "r", "redirect": fields}]}

    def test_status_code(self) -> None:
        for status in [200, 304, 600]:
            self.assertRejected(
                self.redirect(scheme="https", statusCode=status),
                "routes[0].redirect.statusCode",
                "must be one of 301, 302, 303, 307, 308",
            )

    def test_scheme(self) -> None:
        self.assertRejected(
            self.redirect(scheme="ftp"), "routes[0].redirect.scheme", "must be one of http, https"
        )

    def test_port(self) -> None:
        self.assertRejected(
            self.redirect(port=0), "routes[0].redirect.port", "must be between 1 and 65535"
        )

    def test_host(self) -> None:
        self.assertRejected(
            self.redirect(host="*.example.com"), "routes[0].redirect.host", "wildcards"
        )

    def test_path(self) -> None:
        self.assertRejected(self.redirect(path="p"), "routes[0].redirect.path", "start with '/'")

    def test_must_change_something(self) -> None:
        self.assertRejected(
            self.redirect(statusCode=301), "routes[0].redirect", "must change at least one"
        )

    def test_not_with_rewrite(self) -> None:
        self.assertRejected(
            {
                "routes": [
                    {"name": "r", "redirect": {"scheme": "https"}, "rewrite": {"host": "a.b"}}
                ]
            },
            "routes[0].rewrite",
            "cannot be combined with redirect",
        )


class RewriteTests(ParseTestCase):
    def test_replace_prefix_starts_with_slash(self) -> None:
        self.assertRejected(
            tenant_with_route(rewrite={"replacePrefix": "v2"}),
            "routes[0].rewrite.replacePrefix",
            "must start with '/'",
        )

    def test_replace_prefix_needs_prefix_match(self) -> None:
        self.assertRejected(
            tenant_with_route(
                match={"path": "/a", "pathType": "Exact"}, rewrite={"replacePrefix": "/b"}
            ),
            "routes[0].rewrite.replacePrefix",
            "only allowed when match.pathType is Prefix",
        )

    def test_host(self) -> None:
        for host in ["api internal", "api.internal:8080", "*.internal"]:
            self.assertRejected(
                tenant_with_route(rewrite={"host": host}), "routes[0].rewrite.host", ""
            )


class RouteSettingTests(ParseTestCase):
    def test_timeout(self) -> None:
        for timeout in [0, -1, 3601]:
            self.assertRejected(
                tenant_with_route(timeoutSeconds=timeout),
                "routes[0].timeoutSeconds",
                "must be greater than 0 and at most 3600",
            )
        self.assertEqual(self.route(tenant_with_route(timeoutSeconds=3600)).timeout_seconds, 3600)
        self.assertEqual(self.route(tenant_with_route(timeoutSeconds=0.25)).timeout_seconds, 0.25)

    def test_retries(self) -> None:
        for attempts in [-1, 11]:
            self.assertRejected(
                tenant_with_route(retries={"attempts": attempts}),
                "routes[0].retries.attempts",
                "must be between 0 and 10",
            )

    def test_load_balancer(self) -> None:
        self.assertRejected(
            tenant_with_route(loadBalancer={"policy": "roundrobin"}),
            "routes[0].loadBalancer.policy",
            "must be one of RoundRobin, LeastRequest, Cookie",
        )
        route = self.route(tenant_with_route(loadBalancer={"policy": "Cookie"}))
        self.assertEqual(route.load_balancer, LoadBalancer("Cookie"))

    def test_health_check(self) -> None:
        cases = [
            ({"intervalSeconds": 0.5}, "intervalSeconds", "at least 1 and at most 300"),
            ({"intervalSeconds": 301}, "intervalSeconds", "at least 1 and at most 300"),
            ({"unhealthyThreshold": 0}, "unhealthyThreshold", "between 1 and 100"),
            ({"healthyThreshold": 101}, "healthyThreshold", "between 1 and 100"),
            ({"path": "healthz"}, "path", "must start with '/'"),
        ]
        for fields, key, fragment in cases:
            self.assertRejected(
                tenant_with_route(healthCheck=fields), f"routes[0].healthCheck.{key}", fragment
            )

    def test_cache(self) -> None:
        self.assertRejected(
            tenant_with_route(cache={"maxAgeSeconds": 0}),
            "routes[0].cache.maxAgeSeconds",
            "between 1 and 86400",
        )
        self.assertRejected(
            tenant_with_route(cache={"maxBodyBytes": 64 * 1024 * 1024 + 1}),
            "routes[0].cache.maxBodyBytes",
            "between 1 and 67108864",
        )


class TLSTests(ParseTestCase):
    def test_secret_name_required(self) -> None:
        self.assertRejected({"tls": {"httpRedirect": True}}, "tls.secretName", "required field")

    def test_http_redirect_bool(self) -> None:
        self.assertRejected(
            "tls: {secretName: t, httpRedirect: 1}\n", "tls.httpRedirect", "expected true or false"
        )
