"""
The one home of the test fixtures: tenant manifests built through the real
compile step, a gateway and site around any reactor (for
C{MemoryReactorClock} tests), real-socket upstreams that record what they
receive, and L{serve}, the one harness that starts a gateway on a real port
for the tests whose point is the socket.

Kept generic on purpose: the helpers take the reactor, host, port and
deadline as arguments, so both in-memory and real-socket tests use them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from typing import Protocol as TypingProtocol

import yaml
from twisted.internet import reactor as global_reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.python.threadpool import ThreadPool
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from tenantgw.compile.compiler import CompileOptions, compile_snapshot
from tenantgw.dataplane.gateway import Gateway, GatewaySite, gateway_on
from tenantgw.plans.snapshot import Snapshot

DEFAULT_ALLOWED_HOSTS = "t.example,*.t.example"


def tenant_objects(
    namespace: str | int,
    tenant_yaml: str | None = None,
    services: Mapping[str, Sequence[int]] | None = None,
    annotations: Mapping[str, str] | None = None,
    secrets: Mapping[str, Mapping[str, str]] | None = None,
    created: str = "2026-01-01T00:00:00Z",
    *,
    host: str | None = None,
    upstream_address: str = "127.0.0.1",
) -> list[dict[str, Any]]:
    """
    The watched objects of one tenant: its Namespace, its Tenant ConfigMap
    (C{tenant_yaml}), and for each of C{services} a Service (port 80, named
    "http") whose ready endpoints are C{upstream_address} at the listed
    ports, plus C{secrets} as Secrets.

    Unless C{annotations} says otherwise, the namespace may claim C{host}
    or, without one, C{t.example} and its subdomains.  Without
    C{tenant_yaml}, the tenant serves C{host} (default C{t.example}) with
    one route "all" to the first service.

    The one-upstream shorthand of the former C{tests.support} builder still
    works: an int in place of C{namespace} is the port of the only endpoint
    of service "up" in namespace "t" (C{tenant_objects(port, host=...)}).
    """
    if isinstance(namespace, int):
        return tenant_objects(
            "t",
            tenant_yaml,
            {"up": [namespace]},
            annotations,
            secrets,
            created,
            host=host or "t.example",
            upstream_address=upstream_address,
        )
    services = dict(services or {})
    if annotations is None:
        annotations = {"tenantgw.io/allowed-hosts": host or DEFAULT_ALLOWED_HOSTS}
    if tenant_yaml is None:
        routes = [{"name": "all", "backends": [{"service": name, "port": 80}]} for name in services]
        tenant_yaml = dump({"hosts": [host or "t.example"], "routes": routes[:1]})
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "annotations": dict(annotations)},
        },
        {
            "apiVersion": "v1",
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
    for name, ports in services.items():
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"ports": [{"name": "http", "port": 80}]},
            }
        )
        for i, port in enumerate(ports):
            objects.append(
                {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "name": f"{name}-{i}",
                        "namespace": namespace,
                        "labels": {"kubernetes.io/service-name": name},
                    },
                    "addressType": "IPv4",
                    "ports": [{"name": "http", "port": port}],
                    "endpoints": [{"addresses": [upstream_address], "conditions": {"ready": True}}],
                }
            )
    for name, values in (secrets or {}).items():
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": namespace},
                "stringData": dict(values),
            }
        )
    return objects


def one_tenant_snapshot(
    upstream_port: int,
    host: str = "t.example",
    namespace: str = "t",
    upstream_address: str = "127.0.0.1",
    tenant_yaml: str | None = None,
) -> Snapshot:
    """
    A compiled snapshot serving one tenant: C{host}, one route to service
    "up" whose single ready endpoint is C{upstream_address:upstream_port}
    (C{tenant_yaml}, if given, must route to service "up", port 80).
    """
    snapshot = compile_snapshot(
        tenant_objects(
            namespace,
            tenant_yaml,
            {"up": [upstream_port]},
            host=host,
            upstream_address=upstream_address,
        )
    )
    if host not in snapshot.exact_hosts:
        raise AssertionError(f"test tenant was not accepted: {snapshot.statuses}")
    return snapshot


def snapshot_of(*object_lists: list[dict[str, Any]], base_domain: str | None = None) -> Snapshot:
    """The snapshot the real compile step makes of all of C{object_lists}."""
    objects = [obj for objs in object_lists for obj in objs]
    return compile_snapshot(objects, CompileOptions(base_domain=base_domain))


def dump(document: Any) -> str:
    return yaml.safe_dump(document)


def build_gateway(
    reactor: Any,
    snapshot: Snapshot,
    header_deadline: float = 15.0,
    timeout: float = 60.0,
    threadpool: ThreadPool | None = None,
) -> tuple[Gateway, GatewaySite]:
    """
    A L{Gateway} with C{snapshot} applied and the L{GatewaySite} in front of
    it, both on C{reactor} (which also serves as the clock), wired as
    L{tenantgw.app.service} wires them.  The upstream pool is not started,
    so no sweeper call is left behind.  C{threadpool} is only used for basic
    auth; an unstarted pool is used when none is given.
    """
    gateway = gateway_on(reactor, threadpool or ThreadPool(0, 1, "test-credentials"))
    gateway.apply(snapshot)
    site = GatewaySite(gateway, reactor, timeout=timeout, header_deadline=header_deadline)
    return gateway, site


class _RecordingProtocol(Protocol):
    def connectionMade(self) -> None:
        self.factory.connections += 1
        self.factory.protocols.append(self)
        self._pending = b""

    def dataReceived(self, data: bytes) -> None:
        factory = self.factory
        factory.received += data
        self._pending += data
        # Answers each request head (bodies are not parsed: only requests
        # without a body are expected to be answered).
        while b"\r\n\r\n" in self._pending:
            _, self._pending = self._pending.split(b"\r\n\r\n", 1)
            self.transport.write(factory.response)

    def connectionLost(self, reason: object) -> None:
        self.factory.protocols.remove(self)


class RecordingUpstream(Factory):
    """
    A tiny upstream: records every byte it receives (C{received}) and the
    number of connections (C{connections}), and answers every request head
    with the fixed C{response}.
    """

    protocol = _RecordingProtocol

    def __init__(
        self,
        response: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n",
    ) -> None:
        self.response = response
        self.received = b""
        self.connections = 0
        self.protocols: list[_RecordingProtocol] = []


class _NoDelayStringTransport(StringTransport):
    """A StringTransport that also accepts TCP socket options."""

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass

    def setTcpKeepAlive(self, enabled: bool) -> None:
        pass


def complete_memory_connection(reactor: MemoryReactor, index: int = 0) -> StringTransport:
    """
    Completes the C{index}th C{connectTCP} that C{reactor} recorded: builds
    its protocol and connects it to a fresh StringTransport, whose C{value()}
    is then everything written to that "server".  The client protocol is
    left on the transport as C{protocol}, so a test can play the server's
    side by calling its C{dataReceived}.
    """
    host, port, factory, _timeout, _bind = reactor.tcpClients[index]
    protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
    transport = _NoDelayStringTransport(
        hostAddress=IPv4Address("TCP", "127.0.0.1", 40000 + index),
        peerAddress=IPv4Address("TCP", host, port),
    )
    transport.protocol = protocol
    protocol.makeConnection(transport)
    return transport


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


class _HasCleanups(TypingProtocol):
    def addCleanup(self, f: Any, *args: Any, **kwargs: Any) -> None: ...


def serve(
    test: _HasCleanups,
    *object_lists: list[dict[str, Any]],
    tenant: Mapping[str, Any] | None = None,
    namespace: str = "team",
    services: Mapping[str, Sequence[int]] | None = None,
    annotations: Mapping[str, str] | None = None,
    secrets: Mapping[str, Mapping[str, str]] | None = None,
    snapshot: Snapshot | None = None,
    base_domain: str | None = None,
    accepted: bool = True,
    metrics: Any = None,
    access_log: Any = None,
    cache_clock: Any = None,
    cache_budget: int | None = None,
    reactor: Any = global_reactor,
    upstream_timeout: float = 10.0,
    trusted_proxies: tuple = (),
    upstream_trust: Any = None,
) -> GatewayUnderTest:
    """
    A gateway on a real port serving C{snapshot}, or else the compiled
    C{object_lists} plus, with C{tenant} (a tenant.yaml document), that
    tenant in C{namespace} routed to C{services} (with its C{annotations}
    and C{secrets}, as L{tenant_objects}); stopped when C{test} ends.

    A C{tenant} the compile step refuses fails the test here, naming its
    status, unless C{accepted} is false: a fixture mistake must not pass
    for the behaviour under test.  C{metrics} and C{access_log} replace the
    gateway's own; C{cache_clock} and C{cache_budget} set its response
    cache's clock and per-tenant budget.
    """
    if snapshot is None:
        lists = list(object_lists)
        if tenant is not None:
            lists.append(
                tenant_objects(namespace, dump(dict(tenant)), services, annotations, secrets)
            )
        snapshot = snapshot_of(*lists, base_domain=base_domain)
    if tenant is not None and accepted and namespace not in snapshot.tenants:
        raise AssertionError(
            f"test tenant {namespace!r} was not accepted: {snapshot.statuses.get(namespace)}"
        )
    gateway = GatewayUnderTest(
        snapshot,
        reactor=reactor,
        upstream_timeout=upstream_timeout,
        trusted_proxies=trusted_proxies,
        upstream_trust=upstream_trust,
    )
    test.addCleanup(gateway.stop)
    if metrics is not None:
        gateway.gateway.metrics = metrics
        metrics.watch_snapshot(lambda: gateway.gateway.snapshot)
    if access_log is not None:
        gateway.gateway.access_log = access_log
    if cache_clock is not None:
        gateway.gateway.cache.clock = cache_clock
    if cache_budget is not None:
        gateway.gateway.cache.budget_per_tenant = cache_budget
    return gateway
