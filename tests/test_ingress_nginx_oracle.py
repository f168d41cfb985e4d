"""
The Ingress corpus against the real nginx configured as ingress-nginx would
render it (tests/nginx_oracle.py): each probe is sent to tenantgw and to
nginx, both in front of the same three upstreams, and the answers compared
(status, which upstream answered, the URI and forwarded headers it received,
the Location header, the probe's listed response and request headers).

A difference fails the test unless it is listed in L{DIFFERENCES} with the
value each side gives and the sentence of docs/ingress.md's "Where tenantgw
differs from ingress-nginx" that documents it; a listed difference that no
longer occurs fails too, so the list cannot go stale.
"""

from __future__ import annotations

import os
import re
from typing import Any

import treq
from attrs import frozen
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import HTTPConnectionPool

from tenantgw.compile.compiler import CompileOptions, compile_snapshot
from tests.ingress_corpus import CORPUS, ORACLE_PROBES, ingress
from tests.nginx_oracle import Nginx, NotRenderable, build_servers, render
from tests.support import Upstream, serve
from tests.test_ingress_corpus import base_objects

DOCS = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "ingress.md")

# Headers every proxied request carries from both proxies, compared as received.
# X-Forwarded-Port is each proxy's own listening port, so it cannot agree.
FORWARDED = (
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "x-scheme",
    "x-original-forwarded-for",
)

# Corpus cases the oracle does not run, each with why.
EXCLUDED: dict[str, str] = {
    "default-backend-only": "tenantgw rejects a rule without host on purpose; "
    "ingress-nginx would serve it on its default server",
    "cookie-affinity": "the affinity cookie is set by ingress-nginx's Lua balancer "
    "(sticky sessions), which plain nginx has no equivalent for",
    "canary-without-primary": "tenantgw rejects it (named in status); ingress-nginx drops "
    "the canary silently: both answer 404, nothing to learn from nginx",
    "configuration-snippet-refused": "refused on purpose: a snippet is nginx configuration text",
    "server-alias-refused": "refused on purpose: server-alias claims hosts outside the allowance",
    "auth-url-refused": "refused on purpose: external auth sends requests outside the route model",
    "malformed-size-refused": "tenantgw rejects a malformed value; ingress-nginx logs it "
    "and serves the Ingress with the default",
    "regex-re2-refuses": "tenantgw runs tenant expressions on RE2 only; nginx's PCRE "
    "accepts the backreference",
    "tls-secret-in-another-namespace": "refused on purpose: a TLS Secret must be in the "
    "Ingress's namespace",
    "host-outside-the-allowance": "refused on purpose: hosts come from the namespace's allowance",
}


@frozen
class Difference:
    """One field of one probe where tenantgw answers otherwise, on purpose."""

    field: str
    tenantgw: Any
    nginx: Any  # or a frozenset of the values nginx may show
    documented: str  # words of docs/ingress.md's differences section


def _as_documented(got: tuple[Any, Any], known: Difference) -> bool:
    nginx_ok = (
        got[1] in known.nginx if isinstance(known.nginx, frozenset) else got[1] == known.nginx
    )
    return got[0] == known.tenantgw and nginx_ok


ORIGIN_ECHO = "echoes an allowed `Origin`"
PREFLIGHT_200 = "answers a CORS preflight 200"
CORS_ACTUAL = "only `Access-Control-Allow-Origin`, `-Allow-Credentials` and `-Expose-Headers`"
CORS_LISTS = "lower-case, `, `-separated"
CORS_PREFLIGHT = "any preflight, from an allowed origin or not"
CHARACTER_PREFIX = "`pathType: ImplementationSpecific` is Prefix (element-wise)"
EXACT_STAYS = "An `Exact` path with `rewrite-target` stays exact"
OUR_PREFIX = "`tenantgw.io/` annotations"
REALM_CHARSET = 'adds `charset="UTF-8"`'
RATE_429 = "rate limit answers 429"
WILDCARD = "one label or more"
NORMALISED = "forwarded as normalised"
PATH_PARAMETERS = "Path parameters (`;x`) are ignored for matching"
ESCAPED_SLASH = "`%2F` in a path is refused (400)"


def served_by_one(
    ours: bool, status: tuple[int, int], upstream: str, uri: str, host: str, documented: str
) -> tuple[Difference, ...]:
    """A probe only one side proxies (C{ours}: tenantgw's side), field by field."""

    def pair(value: Any) -> tuple[Any, Any]:
        return (value, None) if ours else (None, value)

    return (
        Difference("status", *status, documented),
        Difference("upstream", *pair(upstream), documented),
        Difference("uri", *pair(uri), documented),
        Difference("request x-forwarded-for", *pair(["127.0.0.1"]), documented),
        Difference("request x-forwarded-proto", *pair(["http"]), documented),
        Difference("request x-forwarded-host", *pair([host]), documented),
        Difference("request x-real-ip", *pair(["127.0.0.1"]), documented),
        Difference("request x-scheme", *pair(["http"]), documented),
    )


def cors_actual(methods: str, headers: str, max_age: str) -> tuple[Difference, ...]:
    return (
        Difference("response access-control-allow-methods", None, [methods], CORS_ACTUAL),
        Difference("response access-control-allow-headers", None, [headers], CORS_ACTUAL),
        Difference("response access-control-max-age", None, [max_age], CORS_ACTUAL),
    )


DEFAULT_CORS_HEADERS = (
    "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,"
    "Content-Type,Range,Authorization"
)

# (case, probe index) -> the differences of that probe (the corpus's probes,
# then its ORACLE_PROBES).
DIFFERENCES: dict[tuple[str, int], tuple[Difference, ...]] = {
    ("implementation-specific-is-prefix", 1): served_by_one(
        False, (404, 200), "api", "/apix", "shop.test", CHARACTER_PREFIX
    ),
    ("rewrite-target-on-exact", 2): served_by_one(
        False, (404, 200), "api", "/new", "shop.test", EXACT_STAYS
    ),
    ("two-ingresses-merge-on-a-host", 2): (Difference("uri", "/x", "/api/../x", NORMALISED),),
    # nginx passes the path as the client wrote it; treq writes "//api/x" as
    # "////api/x" on Python 3.13 (its URL parsing changed), so either is nginx's.
    ("two-ingresses-merge-on-a-host", 3): (
        Difference("uri", "/api/x", frozenset({"//api/x", "////api/x"}), NORMALISED),
    ),
    ("two-ingresses-merge-on-a-host", 4): (Difference("uri", "/api/y", "/x/../api/y", NORMALISED),),
    ("two-ingresses-merge-on-a-host", 5): (Difference("uri", "/x", "/api/%2e%2e/x", NORMALISED),),
    ("two-ingresses-merge-on-a-host", 7): (Difference("upstream", "api", "web", PATH_PARAMETERS),),
    ("rewrite-target-capture-groups", 6): served_by_one(
        False, (400, 200), "api", "/x", "shop.test", ESCAPED_SLASH
    ),
    ("wildcard-host", 1): served_by_one(True, (200, 404), "web", "/", "a.b.shop.test", WILDCARD),
    ("tenantgw-prefix-wins", 0): served_by_one(
        True, (200, 403), "web", "/", "shop.test", OUR_PREFIX
    ),
    ("basic-auth", 0): (
        Difference(
            "response www-authenticate",
            ['Basic realm="Staff only", charset="UTF-8"'],
            ['Basic realm="Staff only"'],
            REALM_CHARSET,
        ),
    ),
    ("limit-rps", 3): (Difference("status", 429, 503, RATE_429),),
    ("enable-cors-defaults", 0): (
        Difference("status", 200, 204, PREFLIGHT_200),
        Difference(
            "response access-control-allow-origin", ["https://app.example"], ["*"], ORIGIN_ECHO
        ),
    ),
    ("enable-cors-defaults", 1): (
        Difference("status", 200, 204, PREFLIGHT_200),
        Difference(
            "response access-control-allow-origin", ["https://app.example"], ["*"], ORIGIN_ECHO
        ),
        Difference(
            "response access-control-allow-headers",
            [", ".join(DEFAULT_CORS_HEADERS.lower().split(","))],
            [DEFAULT_CORS_HEADERS],
            CORS_LISTS,
        ),
    ),
    ("enable-cors-defaults", 2): (
        Difference(
            "response access-control-allow-origin", ["https://app.example"], ["*"], ORIGIN_ECHO
        ),
        *cors_actual("GET, PUT, POST, DELETE, PATCH, OPTIONS", DEFAULT_CORS_HEADERS, "1728000"),
    ),
    ("cors-specific-origin", 0): (Difference("status", 200, 204, PREFLIGHT_200),),
    ("cors-specific-origin", 2): (
        *cors_actual("GET, POST", "X-Token, Content-Type", "60"),
        Difference("response access-control-expose-headers", ["x-trace"], ["X-Trace"], CORS_LISTS),
    ),
    ("cors-specific-origin", 3): served_by_one(
        False, (200, 200), "web", "/", "shop.test", CORS_PREFLIGHT
    )[1:],
}


def compared_cases() -> list[dict[str, Any]]:
    return [case for case in CORPUS if case["name"] not in EXCLUDED]


def figures() -> dict[str, int]:
    """Cases and probes compared, probes agreeing, documented differences."""
    cases = compared_cases()
    probes = sum(len(case["probes"]) + len(ORACLE_PROBES.get(case["name"], [])) for case in cases)
    return {
        "cases": len(cases),
        "probes": probes,
        "agreeing": probes - len(DIFFERENCES),
        "differing": len(DIFFERENCES),
        "excluded": len(EXCLUDED),
    }


@inlineCallbacks
def observe(
    url: str, probe: dict[str, Any], upstreams: dict[str, Upstream], pool: HTTPConnectionPool
) -> Any:
    """What one proxy made of one probe, field by field."""
    before = {name: len(u.received) for name, u in upstreams.items()}
    headers = {"Host": [probe["host"]], **{k: [v] for k, v in probe["headers"].items()}}
    response = yield treq.request(
        probe["method"],
        url,
        headers=headers,
        data=probe.get("body"),
        pool=pool,
        allow_redirects=False,
    )
    yield response.content()
    reached = [n for n, u in upstreams.items() if len(u.received) > before[n]]
    record = upstreams[reached[0]].received[-1] if len(reached) == 1 else {}
    seen: dict[str, Any] = {
        "status": response.code,
        "upstream": ",".join(reached) or None,
        "uri": record.get("uri"),
        "location": response.headers.getRawHeaders("location"),
    }
    for name in (*probe.get("response_headers", {}), *probe.get("compare_headers", ())):
        seen[f"response {name}"] = response.headers.getRawHeaders(name)
    for name in (*probe.get("request_headers", {}), *FORWARDED):
        seen[f"request {name}"] = record.get("headers", {}).get(name)
    return seen


class NginxOracleTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def compare_case(self, case: dict[str, Any]) -> Any:
        upstreams = {name: Upstream(name) for name in ("web", "canary", "api")}
        for upstream in upstreams.values():
            self.addCleanup(upstream.stop)
        objects = base_objects(upstreams) + case["ingresses"]
        gateway = serve(self, snapshot=compile_snapshot(objects, CompileOptions()))
        nginx = Nginx(objects, {name: u.number for name, u in upstreams.items()})
        self.addCleanup(nginx.stop)
        pool = HTTPConnectionPool(reactor, persistent=False)
        probes = case["probes"] + ORACLE_PROBES.get(case["name"], [])
        problems = []
        for number, probe in enumerate(probes):
            ours = yield observe(gateway.url(probe["path"]), probe, upstreams, pool)
            theirs = yield observe(nginx.url(probe["path"]), probe, upstreams, pool)
            where = f"probe {number} ({probe['method']} {probe['host']}{probe['path']})"
            expected = {d.field: d for d in DIFFERENCES.get((case["name"], number), ())}
            for name in sorted(set(ours) | set(theirs)):
                got = (ours.get(name), theirs.get(name))
                known = expected.pop(name, None)
                if known is None and got[0] != got[1]:
                    problems.append(f"{where}: {name}: tenantgw {got[0]!r}, nginx {got[1]!r}")
                elif known is not None and not _as_documented(got, known):
                    problems.append(f"{where}: {name}: documented difference changed: {got!r}")
            problems += [f"{where}: {name}: not a field" for name in expected]
        if problems:
            self.fail("\n".join([case["name"], *problems, "nginx.conf:", nginx.config]))


def _make_test(case: dict[str, Any]) -> Any:
    def test(self: NginxOracleTests) -> Any:
        return self.compare_case(case)

    test.__name__ = "test_" + case["name"].replace("-", "_")
    return test


for _case in compared_cases():
    setattr(NginxOracleTests, "test_" + _case["name"].replace("-", "_"), _make_test(_case))


def _differences_section() -> str:
    with open(DOCS) as f:
        text = f.read()
    start = text.index("## Where tenantgw differs from ingress-nginx")
    end = text.index("\n## ", start + 1)
    return re.sub(r"\s+", " ", text[start:end])


class OracleBookkeepingTests(SynchronousTestCase):
    def test_exclusions_name_corpus_cases(self) -> None:
        names = {case["name"] for case in CORPUS}
        self.assertEqual(sorted(set(EXCLUDED) - names), [])
        self.assertEqual(sorted({case for case, _ in DIFFERENCES} - names), [])

    def test_every_refused_case_is_excluded(self) -> None:
        """The oracle covers accepted Ingresses only: tenantgw serves nothing of the others."""
        refused = {case["name"] for case in CORPUS if "rejected" in case}
        self.assertEqual(sorted(refused - set(EXCLUDED)), [])

    def test_excluded_accepted_cases_are_beyond_the_renderer(self) -> None:
        """An accepted case is excluded only because plain nginx cannot reproduce it."""
        for case in CORPUS:
            if case["name"] in EXCLUDED and "rejected" not in case:
                directory = self.mktemp()
                os.makedirs(directory)
                with self.assertRaises(NotRenderable, msg=case["name"]):
                    render(base_objects_stub() + case["ingresses"], SERVICES, 8080, directory)

    def test_compared_cases_render(self) -> None:
        for case in compared_cases():
            directory = self.mktemp()
            os.makedirs(directory)
            conf = render(base_objects_stub() + case["ingresses"], SERVICES, 8080, directory)
            self.assertIn("server {", conf)

    def test_differences_are_documented(self) -> None:
        section = _differences_section()
        for differences in DIFFERENCES.values():
            for difference in differences:
                self.assertIn(difference.documented, section)

    def test_figures_are_in_the_docs(self) -> None:
        with open(DOCS) as f:
            text = re.sub(r"\s+", " ", f.read())
        f = figures()
        oracle = sum(len(p) for name, p in ORACLE_PROBES.items() if name not in EXCLUDED)
        for words in (
            f"{f['cases']} corpus cases, {f['probes']} probes compared",
            f"the corpus's {f['probes'] - oracle} and {oracle} edge requests",
            f"{f['agreeing']} agree, {f['differing']} differ as documented",
            f"{f['excluded']} cases are not compared",
        ):
            self.assertIn(words, text)


SERVICES = {"web": 1, "canary": 2, "api": 3}


def base_objects_stub() -> list[dict[str, Any]]:
    return [
        {
            "kind": "Secret",
            "metadata": {"name": "htpasswd", "namespace": "shop"},
            "stringData": {"auth": "alice:x"},
        }
    ]


class RendererTests(SynchronousTestCase):
    """The renderer's own rules, against ingress-nginx's template and controller."""

    def conf(self, *ingresses: dict[str, Any]) -> str:
        directory = self.mktemp()
        os.makedirs(directory)
        return render(base_objects_stub() + list(ingresses), SERVICES, 8080, directory)

    def test_prefix_gets_a_slash_location_and_an_exact_twin(self) -> None:
        conf = self.conf(ingress("a", [("/api", "Prefix", "api"), ("/login", "Exact", "web")]))
        self.assertIn("location /api/ {", conf)
        self.assertIn("location = /api {", conf)
        self.assertIn("location = /login {", conf)
        self.assertIn("location / {", conf)  # the default backend's root

    def test_implementation_specific_is_a_plain_prefix(self) -> None:
        conf = self.conf(ingress("a", [("/api", "ImplementationSpecific", "api")]))
        self.assertIn("location /api {", conf)

    def test_a_rewrite_makes_every_location_of_the_server_a_regex(self) -> None:
        conf = self.conf(
            ingress("a", [("/old", "Exact", "api")], annotations={"rewrite-target": "/new"}),
            ingress("b", [("/web", "Prefix", "web")], created="2026-02-01T00:00:00Z"),
        )
        self.assertIn('location ~* "^/old" {', conf)
        self.assertIn('rewrite "(?i)/old" /new break;', conf)
        self.assertIn('location ~* "^/web/" {', conf)
        self.assertIn('location ~* "^/" {', conf)
        self.assertLess(conf.index('"^/web/"'), conf.index('"^/old"'))  # longest first

    def test_oldest_ingress_keeps_a_path(self) -> None:
        servers = build_servers(
            [
                ingress("new", [("/", "Prefix", "api")], created="2026-02-01T00:00:00Z"),
                ingress("old", [("/", "Prefix", "web")], created="2026-01-01T00:00:00Z"),
            ]
        )
        self.assertEqual([(loc.path, loc.service) for loc in servers[0].locations], [("/", "web")])

    def test_random_canary_weight_is_not_rendered(self) -> None:
        with self.assertRaises(NotRenderable):
            self.conf(
                ingress("site", [("/", "Prefix", "web")]),
                ingress(
                    "c",
                    [("/", "Prefix", "canary")],
                    annotations={"canary": "true", "canary-weight": "30"},
                ),
            )

    def test_only_the_nginx_prefix_is_read(self) -> None:
        conf = self.conf(
            ingress(
                "a",
                [("/", "Prefix", "web")],
                annotations={"tenantgw.io/whitelist-source-range": "10.0.0.0/8"},
            )
        )
        self.assertNotIn("allow", conf)

    def test_unreproduced_annotation_is_refused(self) -> None:
        with self.assertRaises(NotRenderable) as caught:
            self.conf(ingress("a", [("/", "Prefix", "web")], annotations={"affinity": "cookie"}))
        self.assertIn("affinity", str(caught.exception))
