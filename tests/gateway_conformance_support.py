"""
Fixtures for the Gateway API conformance port: an echo backend answering
the way the upstream suite's echo server does (JSON naming what it received
and which backend it is), the base objects (GatewayClass, Gateways, the
infra / app-backend / web-backend namespaces and their backends), all
compiled through the real compile step and served on real sockets.
Manifests are our own, written from the upstream suite's scenarios.
"""

from __future__ import annotations

import json
from typing import Any

import treq
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IPolicyForHTTPS
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

from tenantgw.compile.compiler import CompileOptions, compile_snapshot
from tenantgw.dataplane.gateway import MultiplexingGatewaySite
from tenantgw.plans.snapshot import Snapshot
from tenantgw.tls.certificates import load_certificate
from tenantgw.tls.default import self_signed
from tenantgw.tls.sni import SNIContexts
from tests.support import GatewayUnderTest
from tests.tls_support import TestCA

GW_API = "gateway.networking.k8s.io/v1"
INFRA = "gateway-conformance-infra"
APP = "gateway-conformance-app-backend"
WEB = "gateway-conformance-web-backend"
BACKENDS = {
    INFRA: ("infra-backend-v1", "infra-backend-v2", "infra-backend-v3"),
    APP: ("app-backend-v1", "app-backend-v2"),
    WEB: ("web-backend",),
}


class EchoResource(Resource):
    """
    Answers with JSON: path, host, method, headers, namespace, pod and
    service, like echo-basic.  ``?delay=S`` (or an ``x-delay`` header)
    answers after S seconds, for the timeout tests.
    """

    isLeaf = True

    def __init__(self, namespace: str, service: str, reactor: Any) -> None:
        super().__init__()
        self.namespace, self.service, self.reactor = namespace, service, reactor
        self.seen = 0
        self.paths: list[str] = []

    def render(self, request: Request) -> Any:
        self.seen += 1
        self.paths.append(request.uri.decode())
        body = json.dumps(
            {
                "path": request.uri.decode(),
                "host": (request.getHeader(b"host") or b"").decode(),
                "method": request.method.decode(),
                "proto": request.clientproto.decode(),
                "headers": {
                    k.decode().lower(): [v.decode() for v in vs]
                    for k, vs in request.requestHeaders.getAllRawHeaders()
                },
                "namespace": self.namespace,
                "service": self.service,
                "pod": f"{self.service}-0",
            }
        ).encode()
        request.setHeader(b"content-type", b"application/json")
        # As echo-basic: X-Echo-Set-Header "Name:value,Name2:value2" sets
        # response headers, for the response header modifier tests.
        for item in (request.getHeader(b"x-echo-set-header") or b"").split(b","):
            name, colon, value = item.partition(b":")
            if colon:
                request.responseHeaders.addRawHeader(name.strip(), value.strip())
        delay = request.args.get(b"delay", [None])[0] or request.getHeader(b"x-delay")
        if delay:
            seconds = _duration(delay.decode())
            call = self.reactor.callLater(seconds, self._finish, request, body)
            request.notifyFinish().addErrback(lambda _: call.active() and call.cancel())
            return NOT_DONE_YET
        return body

    @staticmethod
    def _finish(request: Request, body: bytes) -> None:
        if not request.finished and request.channel is not None:
            request.write(body)
            request.finish()


def _duration(text: str) -> float:
    """A Go duration as echo-basic's ?delay= takes it ("1s", "500ms"), or plain seconds."""
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * scale
    return float(text)


def joined(values: list[str] | None) -> str | None:
    """Header values as the upstream suite compares them: joined with commas."""
    return None if values is None else ",".join(values)


def service_objects(namespace: str, name: str, port: int) -> list[dict[str, Any]]:
    return [
        {
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"ports": [{"name": "http", "port": 8080}]},
        },
        {
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{name}-ep",
                "namespace": namespace,
                "labels": {"kubernetes.io/service-name": name},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": port}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
        },
    ]


def listener(
    name: str, hostname: str | None = None, same_ns: bool = False, **extra: Any
) -> dict[str, Any]:
    result: dict[str, Any] = {"protocol": "HTTP", "port": 80, **extra, "name": name}
    if hostname is not None:
        result["hostname"] = hostname
    result.setdefault("allowedRoutes", {"namespaces": {"from": "Same" if same_ns else "All"}})
    return result


def https_listener(
    name: str,
    secret: str,
    hostname: str | None = None,
    secret_namespace: str = INFRA,
    same_ns: bool = True,
) -> dict[str, Any]:
    """An HTTPS listener on 443 terminating TLS with C{secret}."""
    tls = {
        "certificateRefs": [
            {"group": "", "kind": "Secret", "name": secret, "namespace": secret_namespace}
        ]
    }
    return listener(name, hostname, same_ns=same_ns, protocol="HTTPS", port=443, tls=tls)


def tls_secret(namespace: str, name: str, certificate: tuple[bytes, bytes]) -> dict[str, Any]:
    chain, key = certificate
    return {
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {"tls.crt": chain.decode(), "tls.key": key.decode()},
    }


@implementer(IPolicyForHTTPS)
class SNIPolicy:
    """
    Client TLS as the upstream suite's TLS round tripper does it: SNI
    C{server_name} whatever the URL says, and the certificate verified
    against C{ca} for that name, so a wrong certificate fails the request.
    """

    def __init__(self, server_name: str, ca: bytes) -> None:
        self.server_name, self.trust = server_name, Certificate.loadPEM(ca)

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return optionsForClientTLS(self.server_name, trustRoot=self.trust)


def gateway(name: str, *listeners: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": GW_API,
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": INFRA, "generation": 1},
        "spec": {"gatewayClassName": "gateway-conformance", "listeners": list(listeners)},
    }


def base_objects(ports: dict[tuple[str, str], int]) -> list[dict[str, Any]]:
    """The base manifests: class, namespaces, backends, and the two shared Gateways."""
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": GW_API,
            "kind": "GatewayClass",
            "metadata": {"name": "gateway-conformance", "generation": 1},
            "spec": {"controllerName": "tenantgw.io/gateway-controller"},
        },
        gateway("same-namespace", listener("http", same_ns=True)),
        gateway("all-namespaces", listener("http")),
        gateway(
            "backend-namespaces",
            listener(
                "http",
                allowedRoutes={
                    "namespaces": {
                        "from": "Selector",
                        "selector": {"matchLabels": {"gateway-conformance": "backend"}},
                    }
                },
            ),
        ),
    ]
    for ns in BACKENDS:
        labels = {"gateway-conformance": "backend" if ns != INFRA else "infra"}
        objects.append({"kind": "Namespace", "metadata": {"name": ns, "labels": labels}})
    for (ns, name), port in ports.items():
        objects.extend(service_objects(ns, name, port))
    return objects


def http_route(
    name: str,
    rules: list[dict[str, Any]],
    namespace: str = INFRA,
    gateway_name: str = "same-namespace",
    hostnames: list[str] | None = None,
    parents: list[dict[str, Any]] | None = None,
    created: str = "2026-01-01T00:00:00Z",
    kind: str = "HTTPRoute",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "parentRefs": parents or [{"name": gateway_name, "namespace": INFRA}],
        "rules": rules,
    }
    if hostnames is not None:
        spec["hostnames"] = hostnames
    return {
        "apiVersion": GW_API,
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "generation": 1,
            "creationTimestamp": created,
        },
        "spec": spec,
    }


def grpc_route(name: str, rules: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    """A GRPCRoute: an HTTPRoute's shape (parentRefs, hostnames, rules) with its own kind."""
    return http_route(name, rules, kind="GRPCRoute", **options)


def backend(name: str, port: int = 8080, **extra: Any) -> dict[str, Any]:
    return {"name": name, "port": port, **extra}


def https_factory(gateway: Any) -> TLSMemoryBIOFactory:
    """
    The HTTPS listener as the service wires it: the certificate by SNI from
    the gateway's snapshot, ALPN (h2, http/1.1), the listener's own
    self-signed default.
    """
    default = load_certificate(*self_signed(("default.invalid",)))
    sni = SNIContexts(lambda: gateway.snapshot, default)
    return TLSMemoryBIOFactory(sni.options, False, MultiplexingGatewaySite(gateway, global_reactor))


class ConformanceCase(TestCase):
    """One real echo backend per base Service, a gateway per test's manifests."""

    timeout = 20

    def setUp(self) -> None:
        self.pool = HTTPConnectionPool(global_reactor, persistent=False)
        self.echo: dict[tuple[str, str], EchoResource] = {}
        self.ports: dict[tuple[str, str], int] = {}
        for ns, names in BACKENDS.items():
            for name in names:
                resource = EchoResource(ns, name, global_reactor)
                port = global_reactor.listenTCP(0, Site(resource), interface="127.0.0.1")
                self.addCleanup(port.stopListening)
                self.echo[(ns, name)] = resource
                self.ports[(ns, name)] = port.getHost().port

    def compile(
        self,
        *objects: dict[str, Any],
        extra: list[dict[str, Any]] = (),  # type: ignore[assignment]
        options: CompileOptions | None = None,
        previous: Snapshot | None = None,
    ) -> Snapshot:
        everything = base_objects(self.ports) + list(extra) + list(objects)
        if previous is None:
            return compile_snapshot(everything, options or CompileOptions())
        return compile_snapshot(everything, options or CompileOptions(), previous)

    def serve(
        self,
        *objects: dict[str, Any],
        upstream_timeout: float = 10.0,
        options: CompileOptions | None = None,
    ) -> GatewayUnderTest:
        self.snapshot = self.compile(*objects, options=options)
        gw = GatewayUnderTest(self.snapshot, upstream_timeout=upstream_timeout)
        self.addCleanup(gw.stop)
        return gw

    def serve_https(
        self, *objects: dict[str, Any], options: CompileOptions | None = None
    ) -> tuple[GatewayUnderTest, int]:
        """
        The gateway with its HTTPS listener wired as the service wires it
        (certificate by SNI from the snapshot, ALPN, the listener's own
        self-signed default); returns the gateway and the TLS port.
        """
        gw = self.serve(*objects, options=options)
        listening = global_reactor.listenTCP(0, https_factory(gw.gateway), interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        return gw, listening.getHost().port

    @inlineCallbacks
    def expect_tls(
        self,
        port: int,
        ca: TestCA,
        server_name: str,
        host: str,
        status: int = 200,
        backend: str | None = None,
        namespace: str = INFRA,
        path: str = "/",
        location: str | None = None,
    ) -> Any:
        """
        One upstream TLS ExpectedResponse: a request over real TLS with SNI
        C{server_name}, the certificate verified for it against C{ca}, and
        C{host} in the Host header.
        """
        agent = Agent(global_reactor, contextFactory=SNIPolicy(server_name, ca.pem), pool=self.pool)
        response = yield treq.request(
            "GET",
            f"https://127.0.0.1:{port}{path}",
            headers={"Host": [host]},
            agent=agent,
            allow_redirects=False,
        )
        body = yield response.content()
        case = f"SNI {server_name} Host {host}{path}"
        self.assertEqual(response.code, status, case)
        if backend is not None:
            echoed = json.loads(body)
            self.assertEqual((echoed["namespace"], echoed["service"]), (namespace, backend), case)
            self.assertEqual(echoed["host"], host, case)
        if location is not None:
            self.assertEqual(response.headers.getRawHeaders("location"), [location], case)
        return response

    @inlineCallbacks
    def request(
        self,
        gw: GatewayUnderTest,
        path: str = "/",
        host: str = "example.com",
        method: str = "GET",
        headers: dict[str, str] | None = None,
    ) -> Any:
        all_headers = {"Host": [host], **{k: [v] for k, v in (headers or {}).items()}}
        response = yield treq.request(
            method, gw.url(path), headers=all_headers, pool=self.pool, allow_redirects=False
        )
        body = yield response.content()
        echoed = None
        if response.headers.getRawHeaders("content-type") == ["application/json"]:
            try:
                echoed = json.loads(body)
            except ValueError:
                echoed = None
        return response, echoed

    @inlineCallbacks
    def expect(
        self,
        gw: GatewayUnderTest,
        path: str = "/",
        host: str = "example.com",
        status: int = 200,
        backend: str | None = None,
        namespace: str = INFRA,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        expect_path: str | None = None,
        expect_host: str | None = None,
        expect_headers: dict[str, str] | None = None,
        absent_headers: tuple[str, ...] = (),
        response_headers: dict[str, str] | None = None,
        absent_response_headers: tuple[str, ...] = (),
        location: str | None = None,
    ) -> Any:
        """
        One upstream ExpectedResponse: status; for a backend, which one saw
        what (path, Host, headers present and absent, values joined with
        commas as the suite compares them); headers of the response; the
        redirect's Location.
        """
        response, echoed = yield self.request(gw, path, host, method, headers)
        case = f"{method} {host}{path} {headers or ''}"
        self.assertEqual(response.code, status, case)
        if backend is not None:
            self.assertIsNotNone(echoed, case)
            self.assertEqual((echoed["namespace"], echoed["service"]), (namespace, backend), case)
            if expect_path is not None:
                self.assertEqual(echoed["path"], expect_path, case)
            if expect_host is not None:
                self.assertEqual(echoed["host"], expect_host, case)
            seen = echoed["headers"]
            for name, value in (expect_headers or {}).items():
                self.assertEqual(joined(seen.get(name.lower())), value, f"{case}: {name}")
            for name in absent_headers:
                self.assertNotIn(name.lower(), seen, case)
        get = response.headers.getRawHeaders
        for name, value in (response_headers or {}).items():
            self.assertEqual(joined(get(name)), value, f"{case}: response {name}")
        for name in absent_response_headers:
            self.assertIsNone(get(name), f"{case}: response {name}")
        if location is not None:
            self.assertEqual(get("location"), [location], case)
        return response, echoed

    def parent_conditions(
        self, namespace: str, name: str, kind: str = "HTTPRoute"
    ) -> dict[str, tuple[str, str]]:
        return route_conditions(self.snapshot, namespace, name, kind)


def route_conditions(
    snapshot: Snapshot, namespace: str, name: str, kind: str = "HTTPRoute"
) -> dict[str, tuple[str, str]]:
    """A route's one parent's conditions: type -> (status, reason)."""
    status = next(
        s
        for s in snapshot.object_statuses
        if (s.key.kind, s.key.namespace, s.key.name) == (kind, namespace, name)
    )
    (parent,) = status.parents
    return {c.type: (c.status, c.reason) for c in parent.conditions}
