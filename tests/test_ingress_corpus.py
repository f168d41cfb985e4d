"""
The Ingress corpus (tests/ingress_corpus.py) driven end to end: each case's
Ingresses compiled with the real compile step, served by a real gateway on a
real socket in front of real upstreams, and probed with real HTTP requests.
Also the figure the issue asks for: annotation coverage over the corpus.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import bcrypt
import treq
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import HTTPConnectionPool

from tenantgw.compile.compiler import CompileOptions, compile_snapshot
from tenantgw.translators import ingress as ingress_translator
from tenantgw.translators import ingress_annotations
from tests.ingress_corpus import CORPUS
from tests.support import Upstream, serve
from tests.test_gateway_api_policy import service_objects

HTPASSWD = b"alice:" + bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4))


def base_objects(upstreams: dict[str, Upstream]) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = [
        {
            "kind": "Namespace",
            "metadata": {
                "name": "shop",
                "annotations": {"tenantgw.io/allowed-hosts": "shop.test,*.shop.test"},
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": "tenantgw"},
            "spec": {"controller": "tenantgw.io/ingress-controller"},
        },
        {
            "kind": "Secret",
            "metadata": {"name": "htpasswd", "namespace": "shop"},
            "stringData": {"auth": HTPASSWD.decode()},
        },
    ]
    for name, upstream in upstreams.items():
        objects.extend(service_objects("shop", name, upstream.number))
    return objects


class IngressCorpusTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def run_case(self, case: dict[str, Any]) -> Any:
        upstreams = {name: Upstream(name) for name in ("web", "canary", "api")}
        for upstream in upstreams.values():
            self.addCleanup(upstream.stop)
        objects = base_objects(upstreams) + case["ingresses"]
        snapshot = compile_snapshot(objects, CompileOptions())
        messages = snapshot.statuses["shop"].messages if "shop" in snapshot.statuses else ()
        for key in ("rejected", "warning"):
            if key in case:
                self.assertTrue(
                    any(case[key] in m for m in messages),
                    f"{case['name']}: no message with {case[key]!r} in {messages}",
                )
        if "rejected" not in case:
            self.assertFalse(any("Rejected" in m for m in messages), f"{case['name']}: {messages}")
        gateway = serve(self, snapshot=snapshot)
        pool = HTTPConnectionPool(reactor, persistent=False)
        for number, probe in enumerate(case["probes"]):
            before = {name: len(u.received) for name, u in upstreams.items()}
            headers = {"Host": [probe["host"]], **{k: [v] for k, v in probe["headers"].items()}}
            response = yield treq.request(
                probe["method"],
                gateway.url(probe["path"]),
                headers=headers,
                data=probe.get("body"),
                pool=pool,
                allow_redirects=False,
            )
            body = yield response.content()
            where = f"{case['name']} probe {number} ({probe['method']} {probe['path']})"
            self.assertEqual(response.code, probe["status"], f"{where}: {body[:200]!r}")
            reached = [n for n, u in upstreams.items() if len(u.received) > before[n]]
            if "upstream" in probe:
                expected = [] if probe["upstream"] is None else [probe["upstream"]]
                self.assertEqual(reached, expected, where)
            elif probe["status"] >= 300:
                self.assertEqual(reached, [], f"{where}: a refused request reached {reached}")
            record = json.loads(body) if reached and body.startswith(b"{") else {}
            if "uri" in probe:
                self.assertEqual(record.get("uri"), probe["uri"], where)
            for name, value in probe.get("request_headers", {}).items():
                self.assertEqual(record["headers"].get(name), value, where)
            if "location" in probe:
                self.assertEqual(
                    response.headers.getRawHeaders("location"), [probe["location"]], where
                )
            for name, value in probe.get("response_headers", {}).items():
                got = response.headers.getRawHeaders(name)
                self.assertEqual(got, None if value is None else [value], f"{where}: {name}")
            if "set_cookie_prefix" in probe:
                cookies = response.headers.getRawHeaders("set-cookie") or []
                self.assertTrue(
                    any(c.startswith(probe["set_cookie_prefix"]) for c in cookies), where
                )


def _make_test(case: dict[str, Any]) -> Any:
    def test(self: IngressCorpusTests) -> Any:
        return self.run_case(case)

    test.__name__ = "test_" + case["name"].replace("-", "_")
    return test


for _case in CORPUS:
    setattr(IngressCorpusTests, "test_" + _case["name"].replace("-", "_"), _make_test(_case))


class RedirectAnnotationTests(SynchronousTestCase):
    """The redirect annotations' URL, validated, then kept as written."""

    def test_query_and_fragment_kept_request_query_not(self) -> None:
        redirect = ingress_translator._redirect_to("https://new.example/a?b=1#c", "k", 301)
        self.assertEqual(redirect.query, "?b=1#c")
        self.assertEqual((redirect.host, redirect.path), ("new.example", "/a"))
        plain = ingress_translator._redirect_to("https://new.example/a", "k", 301)
        self.assertEqual(plain.query, "", "the request's query would be appended")

    def test_control_characters_refused(self) -> None:
        for url in ("https://new.example/a\r\nSet-Cookie: x=1", "https://n.example/?a=1\tb"):
            with self.assertRaises(ingress_translator._Refused) as caught:
                ingress_translator._redirect_to(url, "permanent-redirect", 301)
            self.assertIn("permanent-redirect", str(caught.exception))

    def test_space_in_query_refused(self) -> None:
        with self.assertRaises(ingress_translator._Refused):
            ingress_translator._redirect_to("https://n.example/?a=1 b", "temporal-redirect", 302)

    def test_not_absolute_refused(self) -> None:
        with self.assertRaises(ingress_translator._Refused):
            ingress_translator._redirect_to("/relative?x=1", "permanent-redirect", 301)


class CoverageTests(SynchronousTestCase):
    def test_every_listed_annotation_appears_in_the_corpus(self) -> None:
        used: set[str] = set()
        for case in CORPUS:
            for ingress in case["ingresses"]:
                for key in ingress["metadata"]["annotations"]:
                    used.add(key.rsplit("/", 1)[1])
        missing = sorted(
            name
            for name in ingress_annotations.SERVED
            if name not in used and name not in ("auth-secret-type",)
        )
        self.assertEqual(missing, [], "served annotations without a corpus case")
        self.assertGreaterEqual(len(CORPUS), 30)

    def test_coverage_figure(self) -> None:
        """served / refused / unknown over the corpus (reported in docs/ingress.md)."""
        kinds: Counter[str] = Counter()
        for case in CORPUS:
            for ingress in case["ingresses"]:
                _, outcomes = ingress_annotations.collect(ingress["metadata"]["annotations"])
                kinds.update(o.kind for o in outcomes)
        self.assertEqual(set(kinds), {"served", "refused", "unknown"})
        self.assertGreater(kinds["served"], kinds["refused"] + kinds["unknown"])


class MigrateTests(SynchronousTestCase):
    def run_migrate(self, *args: str) -> tuple[int, str]:
        import io
        import os
        import sys

        import yaml

        from tenantgw.app.cli import main

        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "ingresses.yaml")
        documents = []
        for case in CORPUS:
            if case["name"] in (
                "rewrite-target-capture-groups",
                "configuration-snippet-refused",
                "unknown-annotation-served-with-warning",
                "default-backend-only",
            ):
                for ingress in case["ingresses"]:
                    document = json.loads(json.dumps(ingress))
                    document["spec"]["ingressClassName"] = "nginx"  # still the old class
                    documents.append(document)
        with open(path, "w") as f:
            yaml.safe_dump_all(documents, f)
        out = io.StringIO()
        saved, sys.stdout = sys.stdout, out
        try:
            status = main(["migrate", *args, path])
        finally:
            sys.stdout = saved
        return status, out.getvalue()

    def test_text_names_every_annotation_and_refusal(self) -> None:
        status, output = self.run_migrate()
        self.assertEqual(status, 1, output)
        self.assertIn("Ingress shop/rewrite: Accepted", output)
        self.assertIn("nginx.ingress.kubernetes.io/rewrite-target='/$2': served:", output)
        self.assertIn("Ingress shop/snippet: Rejected", output)
        self.assertIn("configuration-snippet", output)
        self.assertIn("proxy-buffering='on': unknown", output)
        self.assertIn("without host is not served", output)

    def test_json(self) -> None:
        status, output = self.run_migrate("--output", "json")
        self.assertEqual(status, 1)
        report = json.loads(output)
        by_name = {i["name"]: i for i in report["ingresses"]}
        self.assertEqual(by_name["snippet"]["state"], "Rejected")
        outcomes = {
            a["annotation"].rsplit("/", 1)[1]: a["outcome"]
            for a in by_name["rewrite"]["annotations"]
        }
        self.assertEqual(outcomes, {"rewrite-target": "served", "use-regex": "served"})
