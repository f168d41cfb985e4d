"""
A corpus of realistic annotated Ingresses, each with the requests that show
what it became.  Written for tenantgw's tests (shapes as platform teams
write them for ingress-nginx); every listed annotation and the canary
combinations appear at least once.

Each case: Ingress manifests (the corpus namespace is ``shop``, allowed
``shop.test`` and ``*.shop.test``; Services ``web``, ``canary`` and ``api``
answer with their name), and probes ``(method, host, path, headers,
expected)`` where ``expected`` holds ``status``, optionally ``upstream``
(which Service answered), ``uri`` (what it received), ``location``,
``response_headers`` and ``request_headers`` (what the upstream saw).
``ORACLE_PROBES`` (at the end) adds edge requests for the nginx oracle only.
"""

from __future__ import annotations

from typing import Any

NGINX = "nginx.ingress.kubernetes.io/"


def ingress(
    name: str,
    paths: list[tuple[str, str, str]] | None = None,
    host: str | None = "shop.test",
    annotations: dict[str, str] | None = None,
    tls: list[dict[str, Any]] | None = None,
    default_backend: str | None = None,
    class_name: str | None = "tenantgw",
    created: str = "2026-01-01T00:00:00Z",
) -> dict[str, Any]:
    """C{paths}: (path, pathType, service); services listen on port 80."""
    spec: dict[str, Any] = {}
    if class_name is not None:
        spec["ingressClassName"] = class_name
    if paths is not None:
        rule: dict[str, Any] = {
            "http": {
                "paths": [
                    {
                        "path": path,
                        "pathType": path_type,
                        "backend": {"service": {"name": service, "port": {"number": 80}}},
                    }
                    for path, path_type, service in paths
                ]
            }
        }
        if host is not None:
            rule["host"] = host
        spec["rules"] = [rule]
    if tls is not None:
        spec["tls"] = tls
    if default_backend is not None:
        spec["defaultBackend"] = {"service": {"name": default_backend, "port": {"number": 80}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "creationTimestamp": created,
            "annotations": {
                NGINX + k if "/" not in k else k: v for k, v in (annotations or {}).items()
            },
        },
        "spec": spec,
    }


def probe(
    path: str,
    status: int = 200,
    host: str = "shop.test",
    method: str = "GET",
    headers: dict[str, str] | None = None,
    **expected: Any,
) -> dict[str, Any]:
    return {
        "method": method,
        "host": host,
        "path": path,
        "headers": headers or {},
        "status": status,
        **expected,
    }


SITE = [("/", "Prefix", "web")]

CORPUS: list[dict[str, Any]] = [
    {
        "name": "plain-prefix",
        "ingresses": [ingress("site", SITE)],
        "probes": [probe("/", upstream="web"), probe("/a/b?x=1", upstream="web", uri="/a/b?x=1")],
    },
    {
        "name": "exact-and-prefix",
        "ingresses": [ingress("mix", [("/login", "Exact", "api"), ("/", "Prefix", "web")])],
        "probes": [probe("/login", upstream="api"), probe("/login/x", upstream="web")],
    },
    {
        "name": "implementation-specific-is-prefix",
        "ingresses": [ingress("impl", [("/api", "ImplementationSpecific", "api")])],
        "probes": [probe("/api/v1", upstream="api"), probe("/apix", 404)],
    },
    {
        "name": "two-ingresses-merge-on-a-host",
        "ingresses": [ingress("site", SITE), ingress("api", [("/api", "Prefix", "api")])],
        "probes": [probe("/api/x", upstream="api"), probe("/", upstream="web")],
    },
    {
        "name": "default-backend-only",
        "ingresses": [ingress("fallback", None, default_backend="web", host=None)],
        "probes": [probe("/anything", 404)],  # hostless: refused in a multi-tenant gateway
        "rejected": "rule without host",
    },
    {
        "name": "default-backend-with-rules",
        "ingresses": [ingress("both", [("/api", "Prefix", "api")], default_backend="web")],
        "probes": [probe("/api", upstream="api"), probe("/other", upstream="web")],
    },
    {
        "name": "rewrite-target-capture-groups",
        "ingresses": [
            ingress(
                "rewrite",
                [("/something(/|$)(.*)", "ImplementationSpecific", "api")],
                annotations={"rewrite-target": "/$2", "use-regex": "true"},
            )
        ],
        "probes": [
            probe("/something/new", upstream="api", uri="/new"),
            probe("/something", upstream="api", uri="/"),
            probe("/SOMETHING/x", upstream="api", uri="/x"),
        ],
    },
    {
        "name": "use-regex-paths",
        "ingresses": [
            ingress(
                "regex",
                [("/v[0-9]+/users", "ImplementationSpecific", "api")],
                annotations={"use-regex": "true"},
            )
        ],
        "probes": [probe("/v2/users/7", upstream="api"), probe("/vx/users", 404)],
    },
    {
        "name": "rewrite-target-on-exact",
        "ingresses": [
            ingress("exact", [("/old", "Exact", "api")], annotations={"rewrite-target": "/new"})
        ],
        "probes": [probe("/old", upstream="api", uri="/new")],
    },
    {
        "name": "ssl-redirect-false-keeps-http",
        "ingresses": [ingress("plain", SITE, annotations={"ssl-redirect": "false"})],
        "probes": [probe("/", upstream="web")],
    },
    {
        "name": "force-ssl-redirect",
        "ingresses": [ingress("forced", SITE, annotations={"force-ssl-redirect": "true"})],
        "probes": [probe("/pay?x=1", 308, location="https://shop.test/pay?x=1")],
    },
    {
        "name": "proxy-body-size",
        "ingresses": [ingress("upload", SITE, annotations={"proxy-body-size": "1k"})],
        "probes": [
            probe("/up", 413, method="POST", body=b"x" * 2048),
            probe("/up", 200, method="POST", body=b"x" * 512, upstream="web"),
        ],
    },
    {
        "name": "proxy-timeouts",
        "ingresses": [
            ingress(
                "slow",
                SITE,
                annotations={
                    "proxy-read-timeout": "1",
                    "proxy-send-timeout": "1",
                    "proxy-connect-timeout": "5",
                },
            )
        ],
        "probes": [probe("/hang", 504, upstream="web")],
    },
    {
        "name": "limit-rps",
        "ingresses": [
            ingress("limited", SITE, annotations={"limit-rps": "1", "limit-burst-multiplier": "2"})
        ],
        # nginx's limit_req: the burst (1 x 2) beyond the first request, at once.
        "probes": [probe("/", upstream="web")] * 3 + [probe("/", 429)],
    },
    {
        "name": "limit-connections",
        "ingresses": [ingress("conns", SITE, annotations={"limit-connections": "1"})],
        "probes": [
            probe("/", upstream="web"),
            probe("/", upstream="web"),
        ],  # sequential: slot released
    },
    {
        "name": "whitelist-source-range-allows",
        "ingresses": [
            ingress(
                "allow", SITE, annotations={"whitelist-source-range": "127.0.0.0/8, 10.0.0.0/8"}
            )
        ],
        "probes": [probe("/", upstream="web")],
    },
    {
        "name": "whitelist-source-range-refuses",
        "ingresses": [
            ingress("office", SITE, annotations={"whitelist-source-range": "192.0.2.0/24"})
        ],
        "probes": [probe("/", 403)],
    },
    {
        "name": "denylist-source-range",
        "ingresses": [ingress("deny", SITE, annotations={"denylist-source-range": "127.0.0.1/32"})],
        "probes": [probe("/", 403)],
    },
    {
        "name": "basic-auth",
        "ingresses": [
            ingress(
                "private",
                SITE,
                annotations={
                    "auth-type": "basic",
                    "auth-secret": "htpasswd",
                    "auth-realm": "Staff only",
                },
            )
        ],
        "probes": [
            probe(
                "/",
                401,
                response_headers={"www-authenticate": 'Basic realm="Staff only", charset="UTF-8"'},
            ),
            probe("/", headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"}, upstream="web"),
        ],
    },
    {
        "name": "canary-weight-all",
        "ingresses": [
            ingress("site", SITE),
            ingress(
                "site-canary",
                [("/", "Prefix", "canary")],
                annotations={"canary": "true", "canary-weight": "100"},
            ),
        ],
        "probes": [probe("/", upstream="canary"), probe("/", upstream="canary")],
    },
    {
        "name": "canary-weight-total",
        "ingresses": [
            ingress("site", SITE),
            ingress(
                "site-canary",
                [("/", "Prefix", "canary")],
                annotations={
                    "canary": "true",
                    "canary-weight": "1000",
                    "canary-weight-total": "1000",
                },
            ),
        ],
        "probes": [probe("/", upstream="canary")],
    },
    {
        "name": "canary-weight-zero",
        "ingresses": [
            ingress("site", SITE),
            ingress(
                "site-canary",
                [("/", "Prefix", "canary")],
                annotations={"canary": "true", "canary-weight": "0"},
            ),
        ],
        "probes": [probe("/", upstream="web"), probe("/", upstream="web")],
    },
    {
        "name": "canary-by-header",
        "ingresses": [
            ingress("site", SITE),
            ingress(
                "site-canary",
                [("/", "Prefix", "canary")],
                annotations={
                    "canary": "true",
                    "canary-by-header": "X-Canary",
                    "canary-weight": "100",
                },
            ),
        ],
        "probes": [
            probe("/", headers={"X-Canary": "always"}, upstream="canary"),
            probe("/", headers={"X-Canary": "never"}, upstream="web"),
            probe("/", upstream="canary"),  # no header: the weight decides
        ],
    },
    {
        "name": "canary-by-header-value",
        "ingresses": [
            ingress("site", SITE),
            ingress(
                "site-canary",
                [("/", "Prefix", "canary")],
                annotations={
                    "canary": "true",
                    "canary-by-header": "X-Region",
                    "canary-by-header-value": "eu-west",
                },
            ),
        ],
        "probes": [
            probe("/", headers={"X-Region": "eu-west"}, upstream="canary"),
            probe("/", headers={"X-Region": "us"}, upstream="web"),
        ],
    },
    {
        "name": "canary-by-header-pattern",
        "ingresses": [
            ingress("site", SITE),
            ingress(
                "site-canary",
                [("/", "Prefix", "canary")],
                annotations={
                    "canary": "true",
                    "canary-by-header": "X-User",
                    "canary-by-header-pattern": "^beta-[0-9]+$",
                },
            ),
        ],
        "probes": [
            probe("/", headers={"X-User": "beta-42"}, upstream="canary"),
            probe("/", headers={"X-User": "gamma"}, upstream="web"),
        ],
    },
    {
        "name": "canary-by-cookie",
        "ingresses": [
            ingress("site", SITE),
            ingress(
                "site-canary",
                [("/", "Prefix", "canary")],
                annotations={"canary": "true", "canary-by-cookie": "try_new"},
            ),
        ],
        "probes": [
            probe("/", headers={"Cookie": "a=1; try_new=always"}, upstream="canary"),
            probe("/", headers={"Cookie": "try_new=never"}, upstream="web"),
            probe("/", upstream="web"),
        ],
    },
    {
        "name": "canary-header-beats-cookie",
        "ingresses": [
            ingress("site", SITE),
            ingress(
                "site-canary",
                [("/", "Prefix", "canary")],
                annotations={
                    "canary": "true",
                    "canary-by-header": "X-Canary",
                    "canary-by-cookie": "c",
                },
            ),
        ],
        "probes": [probe("/", headers={"X-Canary": "never", "Cookie": "c=always"}, upstream="web")],
    },
    {
        "name": "canary-without-primary",
        "ingresses": [
            ingress(
                "lonely-canary",
                [("/", "Prefix", "canary")],
                annotations={"canary": "true", "canary-weight": "50"},
            )
        ],
        "probes": [probe("/", 404)],
        "rejected": "canary without a primary",
    },
    {
        "name": "cookie-affinity",
        "ingresses": [
            ingress(
                "sticky", SITE, annotations={"affinity": "cookie", "session-cookie-name": "route"}
            )
        ],
        "probes": [probe("/", upstream="web", set_cookie_prefix="route=")],
    },
    {
        "name": "backend-protocol-http",
        "ingresses": [ingress("proto", SITE, annotations={"backend-protocol": "HTTP"})],
        "probes": [probe("/", upstream="web")],
    },
    {
        "name": "enable-cors-defaults",
        "ingresses": [ingress("cors", SITE, annotations={"enable-cors": "true"})],
        "probes": [
            probe(
                "/",
                method="OPTIONS",
                headers={"Origin": "https://app.example", "Access-Control-Request-Method": "PUT"},
                response_headers={"access-control-allow-origin": "https://app.example"},
                upstream=None,
            )
        ],
    },
    {
        "name": "cors-specific-origin",
        "ingresses": [
            ingress(
                "cors2",
                SITE,
                annotations={
                    "enable-cors": "true",
                    "cors-allow-origin": "https://shop.example",
                    "cors-allow-methods": "GET, POST",
                    "cors-allow-credentials": "false",
                    "cors-max-age": "60",
                    "cors-allow-headers": "X-Token, Content-Type",
                    "cors-expose-headers": "X-Trace",
                },
            )
        ],
        "probes": [
            probe(
                "/",
                method="OPTIONS",
                headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"},
                response_headers={
                    "access-control-allow-methods": "GET, POST",
                    "access-control-max-age": "60",
                },
                upstream=None,
            ),
            probe(
                "/",
                headers={"Origin": "https://evil.example"},
                upstream="web",
                response_headers={"access-control-allow-origin": None},
            ),
        ],
    },
    {
        "name": "app-root",
        "ingresses": [ingress("app", SITE, annotations={"app-root": "/app1"})],
        "probes": [
            probe("/", 302, location="http://shop.test/app1"),
            probe("/app1", upstream="web"),
        ],
    },
    {
        "name": "permanent-redirect",
        "ingresses": [
            ingress(
                "moved", SITE, annotations={"permanent-redirect": "https://new.example/landing"}
            )
        ],
        "probes": [probe("/x", 301, location="https://new.example/landing")],
    },
    {
        # ingress-nginx sends the URL as written: its own query and fragment
        # stay, the request's query is not added.
        "name": "permanent-redirect-query-fragment",
        "ingresses": [
            ingress(
                "movedq",
                SITE,
                annotations={"permanent-redirect": "https://new.example/landing?from=old#top"},
            )
        ],
        "probes": [
            probe("/x?y=1", 301, location="https://new.example/landing?from=old#top"),
        ],
    },
    {
        "name": "permanent-redirect-code",
        "ingresses": [
            ingress(
                "moved308",
                SITE,
                annotations={
                    "permanent-redirect": "https://new.example/",
                    "permanent-redirect-code": "308",
                },
            )
        ],
        "probes": [probe("/", 308, location="https://new.example/")],
    },
    {
        "name": "temporal-redirect",
        "ingresses": [
            ingress("maint", SITE, annotations={"temporal-redirect": "https://status.example/"})
        ],
        "probes": [probe("/", 302, location="https://status.example/")],
    },
    {
        "name": "upstream-vhost",
        "ingresses": [ingress("vhost", SITE, annotations={"upstream-vhost": "internal.svc"})],
        "probes": [probe("/", upstream="web", request_headers={"host": ["internal.svc"]})],
    },
    {
        "name": "tenantgw-prefix-wins",
        "ingresses": [
            ingress(
                "both-prefixes",
                SITE,
                annotations={
                    "whitelist-source-range": "192.0.2.0/24",
                    "tenantgw.io/whitelist-source-range": "127.0.0.0/8",
                },
            )
        ],
        "probes": [probe("/", upstream="web")],
    },
    {
        "name": "configuration-snippet-refused",
        "ingresses": [
            ingress(
                "snippet", SITE, annotations={"configuration-snippet": "more_set_headers 'X: y';"}
            )
        ],
        "probes": [probe("/", 404)],
        "rejected": "configuration-snippet",
    },
    {
        "name": "server-alias-refused",
        "ingresses": [ingress("alias", SITE, annotations={"server-alias": "other.example"})],
        "probes": [probe("/", 404)],
        "rejected": "server-alias",
    },
    {
        "name": "auth-url-refused",
        "ingresses": [
            ingress("extauth", SITE, annotations={"auth-url": "http://auth.example/verify"})
        ],
        "probes": [probe("/", 404)],
        "rejected": "auth-url",
    },
    {
        "name": "unknown-annotation-served-with-warning",
        "ingresses": [ingress("extra", SITE, annotations={"proxy-buffering": "on"})],
        "probes": [probe("/", upstream="web")],
        "warning": "proxy-buffering",
    },
    {
        "name": "malformed-size-refused",
        "ingresses": [ingress("badsize", SITE, annotations={"proxy-body-size": "8 megs"})],
        "probes": [probe("/", 404)],
        "rejected": "proxy-body-size",
    },
    {
        "name": "regex-re2-refuses",
        "ingresses": [
            ingress(
                "backref",
                [("/(a)\\1", "ImplementationSpecific", "web")],
                annotations={"use-regex": "true"},
            )
        ],
        "probes": [probe("/aa", 404)],
        "rejected": "RE2",
    },
    {
        "name": "tls-secret-in-another-namespace",
        "ingresses": [
            ingress("tls-other", SITE, tls=[{"hosts": ["shop.test"], "secretName": "other/cert"}])
        ],
        "probes": [probe("/", 404)],
        "rejected": "another namespace",
    },
    {
        "name": "host-outside-the-allowance",
        "ingresses": [ingress("grab", SITE, host="bank.example")],
        "probes": [probe("/", 404, host="bank.example")],
        "rejected": "not among the hosts",
    },
    {
        "name": "wildcard-host",
        "ingresses": [ingress("wild", SITE, host="*.shop.test")],
        "probes": [probe("/", host="eu.shop.test", upstream="web")],
    },
    {
        "name": "other-class-ignored",
        "ingresses": [ingress("nginx-owned", SITE, class_name="nginx")],
        "probes": [probe("/", 404)],
    },
]


def oracle_probe(
    path: str,
    host: str = "shop.test",
    method: str = "GET",
    headers: dict[str, str] | None = None,
    compare: tuple[str, ...] = (),
    **extra: Any,
) -> dict[str, Any]:
    """
    A request for the nginx oracle only (tests/test_ingress_nginx_oracle.py):
    no expectation of its own, tenantgw's answer must be nginx's; C{compare}
    names response headers to compare besides the usual fields.
    """
    return {
        "method": method,
        "host": host,
        "path": path,
        "headers": headers or {},
        "compare_headers": compare,
        **extra,
    }


CORS_HEADERS = (
    "access-control-allow-origin",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-allow-credentials",
    "access-control-expose-headers",
    "access-control-max-age",
)

# Metadata for the nginx oracle: edge requests of some cases, where
# ingress-nginx's rendering is subtle (prefix twins, regex anchoring, query
# strings through rewrites and redirects, case in canary values).  The
# corpus test does not send them.
ORACLE_PROBES: dict[str, list[dict[str, Any]]] = {
    "plain-prefix": [
        oracle_probe("/a%20b?x=1"),
        oracle_probe("/", method="HEAD"),
        # A client's own values of the proxy's fields are replaced on both sides.
        oracle_probe(
            "/",
            headers={
                "X-Real-IP": "10.9.9.9",
                "X-Scheme": "https",
                "X-Original-Forwarded-For": "10.8.8.8",
            },
        ),
    ],
    "exact-and-prefix": [
        oracle_probe("/login?x=1"),
        oracle_probe("/login/"),
        oracle_probe("/LOGIN"),
    ],
    "implementation-specific-is-prefix": [oracle_probe("/api"), oracle_probe("/api/")],
    "two-ingresses-merge-on-a-host": [
        oracle_probe("/api/../x"),
        oracle_probe("//api/x"),
        oracle_probe("/x/../api/y"),
        oracle_probe("/api/%2e%2e/x"),
        oracle_probe("/API/x"),
        oracle_probe("/api;x"),
        oracle_probe("/api"),
        oracle_probe("/api/"),
        oracle_probe("/apix"),
    ],
    "default-backend-with-rules": [oracle_probe("/api/x"), oracle_probe("/apix")],
    "rewrite-target-capture-groups": [
        oracle_probe("/something/a%20b"),
        oracle_probe("/something//x"),
        oracle_probe("/something/x/../y"),
        oracle_probe("/something/%2Fx"),
        oracle_probe("/something/new?x=1"),
        oracle_probe("/somethingelse"),
        oracle_probe("/other"),
    ],
    "use-regex-paths": [oracle_probe("/V2/USERS"), oracle_probe("/x/v2/users")],
    "rewrite-target-on-exact": [oracle_probe("/old?x=1"), oracle_probe("/old/x")],
    "force-ssl-redirect": [oracle_probe("/"), oracle_probe("/a%20b")],
    "proxy-body-size": [oracle_probe("/up", method="POST", body=b"x" * 1024)],
    "basic-auth": [oracle_probe("/", headers={"Authorization": "Basic YWxpY2U6d3Jvbmc="})],
    "canary-by-header": [oracle_probe("/", headers={"X-Canary": "NEVER"})],
    "canary-by-header-value": [
        oracle_probe("/"),
        oracle_probe("/", headers={"X-Region": "EU-WEST"}),
        oracle_probe("/", headers={"X-Region": "always"}),
    ],
    "canary-by-header-pattern": [
        oracle_probe("/", headers={"X-User": "xbeta-42"}),
        oracle_probe("/", headers={"X-User": "never"}),
    ],
    "canary-by-cookie": [oracle_probe("/", headers={"Cookie": "try_new=ALWAYS"})],
    "canary-header-beats-cookie": [
        oracle_probe("/", headers={"X-Canary": "always"}),
        oracle_probe("/", headers={"Cookie": "c=always"}),
        oracle_probe("/", headers={"X-Canary": "other", "Cookie": "c=never"}),
    ],
    "enable-cors-defaults": [
        oracle_probe(
            "/",
            method="OPTIONS",
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "PUT"},
            compare=CORS_HEADERS,
        ),
        oracle_probe("/", headers={"Origin": "https://app.example"}, compare=CORS_HEADERS),
    ],
    "cors-specific-origin": [
        oracle_probe("/", headers={"Origin": "https://shop.example"}, compare=CORS_HEADERS),
        oracle_probe(
            "/",
            method="OPTIONS",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
            compare=CORS_HEADERS,
        ),
    ],
    "app-root": [oracle_probe("/?x=1"), oracle_probe("/other")],
    "permanent-redirect": [oracle_probe("/x?y=1"), oracle_probe("/")],
    "temporal-redirect": [oracle_probe("/deep/path?q=1")],
    "wildcard-host": [
        oracle_probe("/", host="a.b.shop.test"),
        oracle_probe("/", host="shop.test"),
        oracle_probe("/", host="EU.SHOP.TEST"),
    ],
    "whitelist-source-range-refuses": [oracle_probe("/other?x=1")],
}
