"""
Routes without a C{name} (optional in contract section 4) serve through a
real C{twistd tenantgw}, named C{route-<index>} in status and metrics, and
keep those names across reloads; C{tenantgw check} accepts the same file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from tests.eventually import eventually
from tests.process_support import GatewayProcess, _UNIXEndpointFactory
from tests.support import Upstream, dump, tenant_objects


def tenant(weight: int) -> dict[str, Any]:
    return {
        "hosts": ["t.example"],
        "routes": [
            {
                "match": {"path": "/api"},
                "backends": [{"service": "api", "port": 80, "weight": weight}],
            },
            {"backends": [{"service": "web", "port": 80}]},
        ],
    }


class UnnamedRoutesTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def setUp(self) -> Any:
        self.upstreams = {name: Upstream(name) for name in ("api", "web")}
        for upstream in self.upstreams.values():
            self.addCleanup(upstream.stop)
        workdir = os.path.abspath(self.mktemp())
        self.source = os.path.join(workdir, "tenants")
        os.makedirs(self.source)
        self.write(tenant(weight=1))
        self.gateway = GatewayProcess(workdir, self.source)
        self.addCleanup(self.gateway.stop)
        yield self.gateway.wait_ready()
        self.agent = Agent.usingEndpointFactory(
            reactor, _UNIXEndpointFactory(self.gateway.http_socket)
        )

    def write(self, document: dict[str, Any]) -> None:
        services = {name: [u.number] for name, u in self.upstreams.items()}
        objects = tenant_objects("team", dump(document), services)
        path = os.path.join(self.source, "team.yaml")
        with open(path + ".new", "w") as f:
            f.write(dump({"kind": "List", "items": objects}))
        os.replace(path + ".new", path)

    @inlineCallbacks
    def get(self, path: str) -> Any:
        response = yield self.agent.request(
            b"GET", f"http://t.example{path}".encode(), Headers({b"host": [b"t.example"]})
        )
        body = yield readBody(response)
        return response.code, body

    @inlineCallbacks
    def admin(self, path: str) -> Any:
        response = yield self.gateway.admin_agent().request(b"GET", self.gateway.admin_url(path))
        return (yield readBody(response))

    @inlineCallbacks
    def route_names(self) -> Any:
        document = json.loads((yield self.admin("/api/tenants")))
        (team,) = [t for t in document["tenants"] if t["namespace"] == "team"]
        return team["state"], {r["path"]: r["name"] for r in team["routes"]}

    @inlineCallbacks
    def test_unnamed_routes_serve_and_are_named_by_position(self) -> Any:
        state, names = yield self.route_names()
        self.assertEqual((state, names), ("Accepted", {"/api": "route-0", "/": "route-1"}))
        for path, upstream in [("/api/x", "api"), ("/other", "web")]:
            code, body = yield self.get(path)
            self.assertEqual(code, 200, body)
            self.assertEqual(json.loads(body)["upstream"], upstream)
        metrics = (yield self.admin("/metrics")).decode()
        for route in ("route-0", "route-1"):
            self.assertTrue(
                any(
                    line.startswith("tenantgw_requests_total{")
                    and f'route="{route}"' in line
                    and 'tenant="team"' in line
                    for line in metrics.splitlines()
                ),
                metrics,
            )

        # A reload of a changed file keeps the names: same positions.
        self.write(tenant(weight=5))

        @inlineCallbacks
        def team_now() -> Any:
            document = json.loads((yield self.admin("/api/tenants")))
            (team,) = [t for t in document["tenants"] if t["namespace"] == "team"]
            return team

        team = yield eventually(
            team_now,
            "the reloaded weight 5",
            until=lambda team: team["routes"][0]["backends"][0]["weight"] == 5,
            interval=0.1,
        )
        self.assertEqual(
            {r["path"]: r["name"] for r in team["routes"]}, {"/api": "route-0", "/": "route-1"}
        )
        code, _ = yield self.get("/api/y")
        self.assertEqual(code, 200)

    def test_check_accepts_the_same_file(self) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "tenantgw.app.cli", "check", "--strict", self.source],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("team/tenant: Accepted", result.stdout)
