"""
Shared helpers for data-plane tests: a one-tenant snapshot, a gateway and
site built around any reactor, and a tiny real upstream that records what
it receives.

Kept generic on purpose: the helpers take the reactor, host, port and
deadline as arguments, so both C{MemoryReactorClock} tests and real-socket
tests can use them.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.python.threadpool import ThreadPool

from tenantgw.compile.compiler import compile_snapshot
from tenantgw.dataplane.gateway import Gateway, GatewaySite, gateway_on
from tenantgw.plans.snapshot import Snapshot


def tenant_objects(
    upstream_port: int,
    host: str = "t.example",
    namespace: str = "t",
    upstream_address: str = "127.0.0.1",
    tenant_yaml: str | None = None,
) -> list[dict[str, Any]]:
    """
    The watched objects for one tenant: C{host}, one route C{/} to a Service
    whose single ready endpoint is C{upstream_address:upstream_port}.
    C{tenant_yaml} replaces the default tenant.yaml (its backend must name
    service C{up}, port 80).
    """
    if tenant_yaml is None:
        tenant_yaml = (
            f"hosts: [{host}]\nroutes:\n  - name: all\n    backends: [{{service: up, port: 80}}]\n"
        )
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": namespace,
                "annotations": {"tenantgw.io/allowed-hosts": host},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "tenant",
                "namespace": namespace,
                "labels": {"tenantgw.io/tenant": "true"},
            },
            "data": {"tenant.yaml": tenant_yaml},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "up", "namespace": namespace},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": upstream_port}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "up-1",
                "namespace": namespace,
                "labels": {"kubernetes.io/service-name": "up"},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": upstream_port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [upstream_address], "conditions": {"ready": True}}],
        },
    ]


def one_tenant_snapshot(upstream_port: int, host: str = "t.example", **kw: Any) -> Snapshot:
    """A compiled snapshot serving one tenant (see L{tenant_objects})."""
    snapshot = compile_snapshot(tenant_objects(upstream_port, host=host, **kw))
    if host not in snapshot.exact_hosts:
        raise AssertionError(f"test tenant was not accepted: {snapshot.statuses}")
    return snapshot


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
