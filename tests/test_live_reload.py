"""
A running ``twistd tenantgw`` follows its directory source live: changes
apply without a restart, and a broken file or a rejected tenant update keeps
the last good config serving, with the reason visible in ``/api/tenants``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from tests.eventually import eventually
from tests.process_support import GatewayProcess, _UNIXEndpointFactory
from tests.support import Upstream, dump, tenant_objects


def _route(service: str) -> dict[str, Any]:
    return {
        "hosts": ["t.example"],
        "routes": [{"name": "all", "backends": [{"service": service, "port": 80}]}],
    }


class LiveReloadTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def setUp(self) -> Any:
        self.blue = Upstream("blue")
        self.green = Upstream("green")
        self.addCleanup(self.blue.stop)
        self.addCleanup(self.green.stop)
        workdir = os.path.abspath(self.mktemp())
        self.source = os.path.join(workdir, "tenants")
        os.makedirs(self.source)
        self.write("team.yaml", _route("blue"))
        self.gateway = GatewayProcess(workdir, self.source)
        self.addCleanup(self.gateway.stop)
        yield self.gateway.wait_ready()
        self.agent = Agent.usingEndpointFactory(
            reactor, _UNIXEndpointFactory(self.gateway.http_socket)
        )

    def write(self, name: str, tenant: Any, raw: str | None = None) -> None:
        services = {"blue": [self.blue.number], "green": [self.green.number]}
        text = (
            raw
            if raw is not None
            else dump({"kind": "List", "items": tenant_objects("team", dump(tenant), services)})
        )
        path = os.path.join(self.source, name)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)  # as kubectl cp or a ConfigMap volume swap would

    @inlineCallbacks
    def served_by(self) -> Any:
        response = yield self.agent.request(
            b"GET", b"http://t.example/", Headers({b"host": [b"t.example"]})
        )
        body = yield readBody(response)
        return json.loads(body)["upstream"] if response.code == 200 else response.code

    @inlineCallbacks
    def tenants(self) -> Any:
        response = yield self.gateway.admin_agent().request(b"GET", b"http://admin/api/tenants")
        body = yield readBody(response)
        return {t["namespace"]: t for t in json.loads(body)["tenants"]}

    @inlineCallbacks
    def test_changes_apply_live_and_bad_input_keeps_last_good(self) -> Any:
        first = yield self.served_by()
        self.assertEqual(first, "blue")
        pid = self.gateway.pid

        # A route change applies without a restart.
        self.write("team.yaml", _route("green"))
        yield eventually(
            self.served_by, "the route change served by green", expect="green", interval=0.1
        )

        # A file that no longer parses keeps the objects it held.
        self.write("team.yaml", None, raw="kind: [unclosed\n")
        # Once the gateway has read it (it says so), the old objects still serve.
        yield eventually(
            lambda: self.tenants().addCallback(
                lambda t: any("team.yaml refused" in m for m in t["team"]["messages"])
            ),
            "the unparsable file reported",
            interval=0.1,
        )
        still = yield self.served_by()
        self.assertEqual(still, "green")
        # ... and /api/tenants says so: Rejected while serving, naming the file.
        tenants = yield self.tenants()
        self.assertEqual((tenants["team"]["state"], tenants["team"]["serving"]), ("Rejected", True))
        self.assertIn("team.yaml refused", tenants["team"]["messages"][0])

        # A rejected tenant update keeps the last good config serving, and
        # says why, naming the field path.
        bad = _route("blue")
        bad["routes"][0]["backends"][0]["port"] = 70000
        self.write("team.yaml", bad)

        def state() -> Any:
            return self.tenants().addCallback(lambda t: t["team"]["state"])

        def port_refused() -> Any:
            return self.tenants().addCallback(
                lambda t: any("routes[0].backends[0].port" in m for m in t["team"]["messages"])
            )

        yield eventually(
            port_refused, "the bad port named in the messages", expect=True, interval=0.1
        )
        yield eventually(state, "the tenant Rejected", expect="Rejected", interval=0.1)
        tenants = yield self.tenants()
        self.assertTrue(tenants["team"]["serving"])
        self.assertTrue(
            any("routes[0].backends[0].port" in m for m in tenants["team"]["messages"]),
            tenants["team"]["messages"],
        )
        still = yield self.served_by()
        self.assertEqual(still, "green")

        # Deleting the tenant's file removes the tenant.
        os.remove(os.path.join(self.source, "team.yaml"))
        yield eventually(
            self.served_by, "the removed tenant answered 404", expect=404, interval=0.1
        )
        self.assertEqual(self.gateway.pid, pid)
        self.assertIsNone(self.gateway.process.poll())
