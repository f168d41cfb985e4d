"""
The admin dashboard in a real browser: headless Chromium loads the page from
a real ``twistd tenantgw`` process, runs its script, and the DOM it renders
shows the example tenants, and then a tenant's change.

Chromium is a test dependency (scripts/test.sh installs it); a missing
browser fails this test rather than skipping it.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase
from twisted.web.client import readBody

from tests.process_support import GatewayProcess, free_tcp_port

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError("chromium is not installed: apt-get install chromium (scripts/test.sh)")


class DashboardInBrowserTests(TestCase):
    timeout = 90

    @inlineCallbacks
    def dump_dom(self, url: str) -> Any:
        profile = self.mktemp()
        os.makedirs(profile)
        out, err, code = yield getProcessOutputAndValue(
            chromium(),
            [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=3000",
                "--dump-dom",
                url,
            ],
            env={"HOME": profile, "PATH": os.environ.get("PATH", "")},
        )
        self.assertEqual(code, 0, err.decode(errors="replace")[-2000:])
        return out.decode("utf-8")

    @inlineCallbacks
    def test_page_shows_tenants_and_follows_a_change(self) -> Any:
        tenants = os.path.abspath(self.mktemp())
        shutil.copytree(os.path.join(EXAMPLES, "tenants"), tenants)
        workdir = self.mktemp()
        os.makedirs(workdir)
        gateway = GatewayProcess(workdir, tenants, admin_port=free_tcp_port())
        self.addCleanup(gateway.stop)
        yield gateway.wait_ready()
        url = gateway.admin_url("/").decode()

        dom = yield self.dump_dom(url)
        self.assertIn('id="tenant-shop"', dom)
        self.assertIn('id="tenant-blog"', dom)
        self.assertIn("shop.example.com", dom)
        self.assertIn("Accepted", dom)
        self.assertIn("2 tenants, 2 serving", dom)
        self.assertNotIn("storefront", dom)

        # The tenant renames a route; the page shows it once the gateway applies it.
        path = os.path.join(tenants, "shop.yaml")
        with open(path) as f:
            text = f.read()
        self.assertIn("- name: site\n", text)
        with open(path, "w") as f:
            f.write(text.replace("- name: site\n", "- name: storefront\n"))
        for _ in range(100):
            response = yield gateway.admin_agent().request(
                b"GET", gateway.admin_url("/api/tenants")
            )
            body = yield readBody(response)
            routes = [r["name"] for t in json.loads(body)["tenants"] for r in t["routes"]]
            if "storefront" in routes:
                break
            yield deferLater(reactor, 0.1, lambda: None)
        else:
            self.fail(f"the change never applied:\n{gateway.log()}")

        dom = yield self.dump_dom(url)
        self.assertIn("storefront", dom)
