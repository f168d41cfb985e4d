"""
The documentation explains the project on its own: docs/reference.md names
every tenant.yaml field, every twistd flag, every tenant state and every
metric the code has, and every relative link in README.md and docs/ lands.
"""

from __future__ import annotations

import os
import re

from twisted.trial.unittest import SynchronousTestCase

from tenantgw.app.options import Options
from tenantgw.config import parse
from tenantgw.plans import snapshot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")


def read(*parts: str) -> str:
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to '-'."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, re.MULTILINE):
        text = re.sub(r"[`*]", "", heading).strip().lower()
        found.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text)))
    return found


class ReferenceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reference = read("docs", "reference.md")

    def test_every_tenant_yaml_field(self) -> None:
        sections = {
            "": parse.TENANT_FIELDS,
            "tls.": parse.TLS_FIELDS,
            "quota.": parse.QUOTA_FIELDS,
            "quota.perClient.": parse.RATE_FIELDS,
            "access.": parse.ACCESS_FIELDS,
            "access.basicAuth.": parse.BASIC_AUTH_FIELDS,
            "access.apiKeys.": parse.API_KEYS_FIELDS,
            "match.": parse.MATCH_FIELDS,
            "backends[].": parse.BACKEND_FIELDS,
            "rewrite.": parse.REWRITE_FIELDS,
            "requestHeaders.": parse.HEADER_MODIFIER_FIELDS,
            "responseHeaders.": parse.HEADER_MODIFIER_FIELDS,
            "redirect.": parse.REDIRECT_FIELDS,
            "retries.": parse.RETRIES_FIELDS,
            "loadBalancer.": parse.LOAD_BALANCER_FIELDS,
            "healthCheck.": parse.HEALTH_CHECK_FIELDS,
            "cache.": parse.CACHE_FIELDS,
        }
        missing = [
            prefix + name
            for prefix, names in sections.items()
            for name in names
            # A mapping field is documented by its own fields (`quota.perClient.burst`).
            if f"`{prefix}{name}`" not in self.reference
            and f"`{prefix}{name}." not in self.reference
        ]
        # A route's own fields are written bare in the routes[] table.
        missing = [m for m in missing if f"| `{m}` |" not in self.reference]
        self.assertEqual(missing, [])
        for name in parse.ROUTE_FIELDS:
            self.assertRegex(self.reference, rf"\| `{name}(\.\w+)?`", name)

    def test_every_flag(self) -> None:
        names = [p[0] for p in Options.optParameters] + [f[0] for f in Options.optFlags]
        missing = [n for n in names if f"`--{n}" not in self.reference]
        self.assertEqual(missing, [])

    def test_every_tenant_state(self) -> None:
        states = [v for k, v in vars(snapshot).items() if k.startswith("STATE_")]
        self.assertGreaterEqual(len(states), 5)
        for state in [*states, "NotSelected"]:
            self.assertIn(f"| `{state}` |", self.reference)

    def test_every_metric(self) -> None:
        code = read("src", "tenantgw", "admin", "metrics.py") + read(
            "src", "tenantgw", "app", "service.py"
        )
        metrics = set(re.findall(r'"(tenantgw_[a-z_]+)"', code))
        self.assertGreater(len(metrics), 10)
        documented = set(re.findall(r"`(tenantgw_[a-z_]+)`", self.reference))
        missing = sorted(
            m for m in metrics if m not in documented and f"{m}_total" not in documented
        )
        self.assertEqual(missing, [])

    def test_every_http_status_of_the_gateway(self) -> None:
        for status in (400, 401, 403, 404, 408, 413, 414, 421, 429, 431, 502, 503, 504, 308):
            self.assertIn(f"| {status} |", self.reference)


class SelfContainedTests(SynchronousTestCase):
    def pages(self) -> dict[str, str]:
        pages = {"README.md": read("README.md"), "deploy/README.md": read("deploy", "README.md")}
        for name in os.listdir(DOCS):
            if name.endswith(".md"):
                pages[f"docs/{name}"] = read("docs", name)
        return pages

    def test_no_page_points_outside_the_repository(self) -> None:
        for name, text in self.pages().items():
            self.assertNotIn("TENANT-SPEC", text, name)
            self.assertNotIn("../shared", text, name)

    def test_relative_links_and_anchors_resolve(self) -> None:
        pages = self.pages()
        broken = []
        for name, text in pages.items():
            for target in re.findall(r"\]\(([^)\s]+)\)", text):
                if re.match(r"[a-z]+://", target):
                    continue
                path, _, anchor = target.partition("#")
                resolved = (
                    os.path.normpath(os.path.join(os.path.dirname(name), path)) if path else name
                )
                if not os.path.exists(os.path.join(ROOT, resolved)):
                    broken.append(f"{name}: {target}")
                elif anchor and resolved.endswith(".md"):
                    linked = pages.get(resolved) or read(resolved)
                    if anchor not in anchors(linked):
                        broken.append(f"{name}: {target} (no such heading)")
        self.assertEqual(broken, [])

    def test_readme_stays_short_and_links_the_reference(self) -> None:
        readme = read("README.md")
        self.assertIn("(docs/reference.md)", readme)
        self.assertLess(len(readme.splitlines()), 200)
