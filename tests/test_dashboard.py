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
import subprocess
import time
import urllib.request
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase
from twisted.web.client import readBody
from websockets.sync.client import connect

from tests.process_support import GatewayProcess, free_tcp_port

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


# Headless, sandbox off (root in CI), and nothing that reaches for the network:
# this machine has none, and Chromium retries such connections at every start.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


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
                *CHROMIUM_FLAGS,
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
    def example_gateway(self) -> Any:
        """A real gateway on a copy of the example tenants, admin on TCP for the browser."""
        tenants = os.path.abspath(self.mktemp())
        shutil.copytree(os.path.join(EXAMPLES, "tenants"), tenants)
        workdir = self.mktemp()
        os.makedirs(workdir)
        gateway = GatewayProcess(workdir, tenants, admin_port=free_tcp_port())
        self.addCleanup(gateway.stop)
        yield gateway.wait_ready()
        return tenants, gateway

    def rename_site_route(self, tenants: str) -> None:
        """The tenant's change the page must follow: route "site" becomes "storefront"."""
        path = os.path.join(tenants, "shop.yaml")
        with open(path) as f:
            shop = f.read()
        self.assertIn("- name: site\n", shop)
        with open(path, "w") as f:
            f.write(shop.replace("- name: site\n", "- name: storefront\n"))

    @inlineCallbacks
    def test_page_shows_tenants_and_follows_a_change(self) -> Any:
        tenants, gateway = yield self.example_gateway()
        url = gateway.admin_url("/").decode()

        dom = yield self.dump_dom(url)
        self.assertIn('id="tenant-shop"', dom)
        self.assertIn('id="tenant-blog"', dom)
        self.assertIn('id="tenant-docs"', dom)  # the Gateway API example
        self.assertIn("shop.example.com", dom)
        self.assertIn("Accepted", dom)
        self.assertIn("3 tenants, 3 serving", dom)
        self.assertNotIn("storefront", dom)

        # The tenant renames a route; the page shows it once the gateway applies it.
        self.rename_site_route(tenants)
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

    @inlineCallbacks
    def test_open_page_updates_live_without_a_reload(self) -> Any:
        """
        One page stays open (driven over the Chrome DevTools Protocol) while a
        tenant changes: its own polling must bring the change in.
        """
        tenants, gateway = yield self.example_gateway()
        browser = DevToolsBrowser(self.mktemp())
        self.addCleanup(browser.close)
        yield deferToThread(browser.open, gateway.admin_url("/").decode())
        text = yield deferToThread(browser.wait_for_text, "3 tenants, 3 serving", 20)
        self.assertIn("shop.example.com", text)
        self.assertNotIn("storefront", text)
        self.rename_site_route(tenants)
        text = yield deferToThread(browser.wait_for_text, "storefront", 20)
        self.assertIn("storefront", text)
        self.assertEqual(browser.navigations, 1, "the page was not reloaded")


class DevToolsBrowser:
    """Headless Chromium with one page, driven over the DevTools Protocol (blocking)."""

    def __init__(self, profile: str) -> None:
        os.makedirs(profile)
        self.process = subprocess.Popen(
            [
                chromium(),
                *CHROMIUM_FLAGS,
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={"HOME": profile, "PATH": os.environ.get("PATH", "")},
        )
        self.profile = profile
        self.connection: Any = None
        self.next_id = 0
        self.navigations = 0

    def _page_socket_url(self) -> str:
        marker = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if os.path.exists(marker):
                with open(marker) as f:
                    port = f.read().split()[0]
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as response:
                    pages = [t for t in json.load(response) if t["type"] == "page"]
                if pages:
                    return str(pages[0]["webSocketDebuggerUrl"])
            time.sleep(0.1)
        raise AssertionError("Chromium's DevTools endpoint did not come up")

    def call(self, method: str, **params: Any) -> Any:
        self.next_id += 1
        self.connection.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.connection.recv(timeout=20))
            if message.get("id") == self.next_id:
                return message.get("result")

    def open(self, url: str) -> None:
        self.connection = connect(self._page_socket_url(), max_size=None)
        self.call("Page.navigate", url=url)
        self.navigations += 1

    def text(self) -> str:
        result = self.call(
            "Runtime.evaluate", expression="document.body ? document.body.innerText : ''"
        )
        return str(result["result"].get("value", ""))

    def wait_for_text(self, wanted: str, seconds: float) -> str:
        deadline = time.monotonic() + seconds
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if wanted in text:
                return text
            time.sleep(0.2)
        raise AssertionError(f"{wanted!r} never appeared; the page shows:\n{text}")

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
