"""
Zero-drop reloads: a real ``twistd tenantgw`` under a steady request rate,
with a WebSocket open, while 100 tenant changes (routes, endpoints,
certificates, quotas) are applied one after another.  Every request must
succeed and the WebSocket must survive.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from websockets.sync.client import unix_connect

from tenantgw.tls.default import self_signed
from tests.eventually import eventually
from tests.fronts import FrontMixin
from tests.process_support import GatewayProcess, _UNIXEndpointFactory
from tests.support import Upstream, dump
from tests.test_websocket import EchoServer

CHANGES = 100
RATE = 100  # requests per second, steadily


def manifests(step: int, ports: dict[str, int], certificate: tuple[bytes, bytes]) -> str:
    """The tenant as it is after change C{step}: each step changes something that serves."""
    services = ["blue", "green"] if step % 3 else ["blue"]
    routes: list[dict[str, Any]] = [
        {"name": "web", "backends": [{"service": s, "port": 80} for s in services]},
        {"name": "ws", "match": {"path": "/ws"}, "backends": [{"service": "ws", "port": 80}]},
    ]
    if step % 2:
        routes.append(
            {
                "name": f"extra-{step}",
                "match": {"path": f"/extra/{step}"},
                "backends": [{"service": "green", "port": 80}],
            }
        )
    tenant = {
        "hosts": ["t.example"],
        "tls": {"secretName": "tls", "httpRedirect": False},
        "quota": {"requestsPerSecond": 10_000 + step, "burst": 10_000},
        "routes": routes,
    }
    objects: list[dict[str, Any]] = [
        {
            "kind": "Namespace",
            "metadata": {"name": "team", "annotations": {"tenantgw.io/allowed-hosts": "t.example"}},
        },
        {
            "kind": "ConfigMap",
            "metadata": {
                "name": "tenant",
                "namespace": "team",
                "labels": {"tenantgw.io/tenant": "true"},
            },
            "data": {"tenant.yaml": dump(tenant)},
        },
        {
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": "tls", "namespace": "team"},
            "stringData": {"tls.crt": certificate[0].decode(), "tls.key": certificate[1].decode()},
        },
    ]
    for name, port in ports.items():
        # Endpoints move too: every fifth step the blue Service gains an unready address.
        addresses = [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]
        if name == "blue" and step % 5 == 0:
            addresses.append({"addresses": ["127.0.0.2"], "conditions": {"ready": False}})
        objects += [
            {
                "kind": "Service",
                "metadata": {"name": name, "namespace": "team"},
                "spec": {"ports": [{"name": "http", "port": 80}]},
            },
            {
                "kind": "EndpointSlice",
                "metadata": {
                    "name": name,
                    "namespace": "team",
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": port}],
                "endpoints": addresses,
            },
        ]
    return dump({"kind": "List", "items": objects})


class ZeroDropReloadTests(FrontMixin, TestCase):
    timeout = 180

    @inlineCallbacks
    def test_no_request_fails_and_no_websocket_drops_across_100_changes(self) -> Any:
        blue, green = Upstream("blue"), Upstream("green")
        self.addCleanup(blue.stop)
        self.addCleanup(green.stop)
        echo = EchoServer()
        self.addCleanup(echo.stop)
        ports = {"blue": blue.number, "green": green.number, "ws": echo.port}
        certificates = [self_signed(("t.example",)) for _ in range(2)]
        workdir = os.path.abspath(self.mktemp())
        source = os.path.join(workdir, "tenants")
        os.makedirs(source)
        path = os.path.join(source, "team.yaml")

        def write(step: int) -> None:
            with open(path + ".tmp", "w") as f:
                f.write(manifests(step, ports, certificates[step % 2]))
            os.replace(path + ".tmp", path)

        write(0)
        gateway = GatewayProcess(workdir, source, ["--poll-interval=0.05", *self.front_args()])
        self.addCleanup(gateway.stop)
        yield gateway.wait_ready()
        agent = Agent.usingEndpointFactory(reactor, _UNIXEndpointFactory(gateway.http_socket))
        outcomes: dict[Any, int] = {}
        pending: list[Deferred[Any]] = []

        def one_request() -> None:
            d = agent.request(b"GET", b"http://t.example/", Headers({b"host": [b"t.example"]}))
            d.addCallback(lambda response: readBody(response).addCallback(lambda _: response.code))
            d.addErrback(lambda failure: failure.type.__name__)
            d.addCallback(
                lambda outcome: outcomes.__setitem__(outcome, outcomes.get(outcome, 0) + 1)
            )
            pending.append(d)

        @inlineCallbacks
        def generation() -> Any:
            response = yield gateway.admin_agent().request(b"GET", b"http://admin/api/tenants")
            body = yield readBody(response)
            return json.loads(body)["tenants"][0]["generation"]

        # One WebSocket stays open across every change, talking all along.
        websocket = yield deferToThread(unix_connect, gateway.http_socket, "ws://t.example/ws")
        self.addCleanup(websocket.close)
        echoes = []

        def talk(n: int) -> str:
            websocket.send(f"message {n}")
            return str(websocket.recv(timeout=5))

        load = LoopingCall(one_request)
        load.start(1.0 / RATE)
        started = time.monotonic()
        applied = 0
        try:
            for step in range(1, CHANGES + 1):
                before = yield generation()
                write(step)
                yield eventually(
                    generation,
                    f"change {step} applied",
                    until=lambda now, before=before: now != before,
                )
                applied += 1
                if step % 10 == 0:
                    echoes.append((yield deferToThread(talk, step)))
        finally:
            load.stop()
        yield gatherResults(pending)
        elapsed = time.monotonic() - started
        self.assertEqual(applied, CHANGES)
        self.assertEqual(echoes, [f"message {n}" for n in range(10, CHANGES + 1, 10)])
        self.assertEqual(list(outcomes), [200], outcomes)
        self.assertGreater(outcomes[200], RATE * elapsed * 0.5)
        print(
            f"\nzero-drop reload: {CHANGES} changes in {elapsed:.1f}s,"
            f" {outcomes[200]} requests, all 200; WebSocket kept {len(echoes)} exchanges"
        )


# Default front only: a whole gateway process per test; the twisted.web front's
# streaming and framing are covered by the modules that run on both fronts.
