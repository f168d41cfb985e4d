"""
Real-socket fixtures for data-plane tests: a recording upstream, a gateway
wired the way the service wires it, and snapshots built through the real
compile step from the same kind of manifests a tenant writes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import yaml
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from tenantgw.compile.compiler import CompileOptions, compile_snapshot
from tenantgw.dataplane.gateway import GatewaySite, gateway_on
from tenantgw.plans.snapshot import Snapshot


def tenant_objects(
    namespace: str,
    tenant_yaml: str,
    services: dict[str, Sequence[int]] | None = None,
    annotations: dict[str, str] | None = None,
    secrets: dict[str, dict[str, str]] | None = None,
    created: str = "2026-01-01T00:00:00Z",
) -> list[dict[str, Any]]:
    """
    A namespace with its Tenant ConfigMap; each service maps to the local
    ports of its ready endpoints (on 127.0.0.1), exposed as Service port 80
    named "http".  Unless told otherwise, the namespace may claim ``t.example``
    and its subdomains.
    """
    if annotations is None:
        annotations = {"tenantgw.io/allowed-hosts": "t.example,*.t.example"}
    objects: list[dict[str, Any]] = [
        {
            "kind": "Namespace",
            "metadata": {"name": namespace, "annotations": annotations},
        },
        {
            "kind": "ConfigMap",
            "metadata": {
                "name": "tenant",
                "namespace": namespace,
                "labels": {"tenantgw.io/tenant": "true"},
                "creationTimestamp": created,
            },
            "data": {"tenant.yaml": tenant_yaml},
        },
    ]
    for name, ports in (services or {}).items():
        objects.append(
            {
                "kind": "Service",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"ports": [{"name": "http", "port": 80}]},
            }
        )
        for i, port in enumerate(ports):
            objects.append(
                {
                    "kind": "EndpointSlice",
                    "metadata": {
                        "name": f"{name}-{i}",
                        "namespace": namespace,
                        "labels": {"kubernetes.io/service-name": name},
                    },
                    "addressType": "IPv4",
                    "ports": [{"name": "http", "port": port}],
                    "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
                }
            )
    for name, values in (secrets or {}).items():
        objects.append(
            {
                "kind": "Secret",
                "metadata": {"name": name, "namespace": namespace},
                "stringData": values,
            }
        )
    return objects


def snapshot_of(*object_lists: list[dict[str, Any]], base_domain: str | None = None) -> Snapshot:
    objects = [obj for objs in object_lists for obj in objs]
    return compile_snapshot(objects, CompileOptions(base_domain=base_domain))


def dump(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document)


class RecordingResource(Resource):
    """
    Answers every request with a JSON description of what it received, so a
    test can assert exactly what the gateway forwarded.  Special paths:
    ``/hang`` never answers; ``/status/N`` answers status N.
    """

    isLeaf = True

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.received: list[dict[str, Any]] = []
        self.hanging: list[Request] = []
        self.hang_lost: list[Deferred[None]] = []

    def render(self, request: Request) -> Any:
        body = request.content.read()
        record = {
            "upstream": self.name,
            "method": request.method.decode(),
            "uri": request.uri.decode(),
            "headers": {
                k.decode().lower(): [v.decode() for v in vs]
                for k, vs in request.requestHeaders.getAllRawHeaders()
            },
            "body_length": len(body),
        }
        self.received.append(record)
        if request.path == b"/hang":
            self.hanging.append(request)
            # Fires "lost" when the gateway abandons the request, never errbacks,
            # so a test that does not look at it leaves no unhandled error.
            self.hang_lost.append(
                request.notifyFinish().addCallbacks(lambda _: "finished", lambda _: "lost")
            )
            return NOT_DONE_YET
        if request.path.startswith(b"/status/"):
            request.setResponseCode(int(request.path.split(b"/")[2]))
        # ?cc=...&vary=...&cookie=1 shape the response, for cache tests.
        for arg, header in ((b"cc", b"cache-control"), (b"vary", b"vary")):
            if arg in request.args:
                request.setHeader(header, request.args[arg][0])
        if b"cookie" in request.args:
            request.setHeader(b"set-cookie", b"session=1")
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"server", b"recording-upstream")
        request.setHeader(b"x-upstream", self.name.encode())
        return json.dumps(record).encode()


class Upstream:
    def __init__(self, name: str, reactor: Any = global_reactor) -> None:
        self.resource = RecordingResource(name)
        self.site = Site(self.resource, reactor=reactor)
        self.port = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.number: int = self.port.getHost().port

    @property
    def received(self) -> list[dict[str, Any]]:
        return self.resource.received

    def stop(self) -> Deferred[None]:
        for request in self.resource.hanging:
            if request.channel is not None:
                request.channel.transport.abortConnection()
        return self.port.stopListening()


class RawServer(Protocol):
    """An upstream that writes fixed bytes on connection, for malformed-response tests."""

    def __init__(self, reply: bytes, close: bool) -> None:
        self.reply = reply
        self.close = close

    def dataReceived(self, data: bytes) -> None:
        if b"\r\n\r\n" in data:
            self.transport.write(self.reply)
            if self.close:
                self.transport.loseConnection()


def raw_upstream(reply: bytes, close: bool = True, reactor: Any = global_reactor) -> Any:
    factory = Factory.forProtocol(lambda: RawServer(reply, close))
    return reactor.listenTCP(0, factory, interface="127.0.0.1")


class GatewayUnderTest:
    """A gateway listening on a real port, as the service builds it."""

    def __init__(
        self,
        snapshot: Snapshot | None = None,
        reactor: Any = global_reactor,
        upstream_timeout: float = 10.0,
        trusted_proxies: tuple = (),
        upstream_trust: Any = None,
    ) -> None:
        self.gateway = gateway_on(
            reactor,
            trusted_proxies=trusted_proxies,
            upstream_timeout=upstream_timeout,
            upstream_trust=upstream_trust,
        )
        self.pool = self.gateway.pool
        if snapshot is not None:
            self.gateway.apply(snapshot)
        self.site = GatewaySite(self.gateway, reactor)
        self.listening = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.port: int = self.listening.getHost().port

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @inlineCallbacks
    def stop(self) -> Any:
        yield self.listening.stopListening()
        self.gateway.stop()


class _Collector(Protocol):
    def __init__(self, payload: bytes, done: Deferred[bytes], close_after: bool) -> None:
        self.payload = payload
        self.done = done
        self.close_after = close_after
        self.received = b""

    def connectionMade(self) -> None:
        self.transport.write(self.payload)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.close_after and b"\r\n\r\n" in self.received:
            head, _, body = self.received.partition(b"\r\n\r\n")
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:") and len(body) >= int(
                    line.split(b":")[1]
                ):
                    self.transport.loseConnection()

    def connectionLost(self, reason: object) -> None:
        self.done.callback(self.received)


def raw_exchange(
    port: int, payload: bytes, close_after: bool = False, reactor: Any = global_reactor
) -> Deferred[bytes]:
    """
    Sends raw bytes and returns everything received until the server closes
    (or, with C{close_after}, until one complete Content-Length response).
    """
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    done: Deferred[bytes] = Deferred()
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    connectProtocol(endpoint, _Collector(payload, done, close_after))
    return done
