"""
The front selection (C{--http1-front}) and HTTP/1.1 exchanges with bodies
on one connection, on both fronts: a pipelined POST then GET, and
100-continue, where the front must neither read the next request too soon
nor lose the body.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from tenantgw.app.options import Options
from tenantgw.dataplane.channel import GatewayChannel
from tenantgw.dataplane.gateway import GatewaySite
from tenantgw.dataplane.http1_front import NativeChannel
from tests.fronts import FrontMixin, both_fronts
from tests.support import build_gateway, complete_memory_connection, one_tenant_snapshot

UPSTREAM_PORT = 9999
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class OptionTests(SynchronousTestCase):
    def test_unknown_front_is_refused_naming_the_flag(self) -> None:
        options = Options()
        with self.assertRaises(usage.UsageError) as caught:
            options.parseOptions(["--source", "dir:" + self.mktemp(), "--http1-front", "fast"])
        self.assertIn("--http1-front", str(caught.exception))

    def test_site_builds_the_front_it_names(self) -> None:
        reactor = MemoryReactorClock()
        gateway, _ = build_gateway(reactor, one_tenant_snapshot(UPSTREAM_PORT))
        native = GatewaySite(gateway, reactor, http1_front="native")
        twisted = GatewaySite(gateway, reactor, http1_front="twisted")
        self.assertIsInstance(native.buildProtocol(None), NativeChannel)
        self.assertIsInstance(twisted.buildProtocol(None), GatewayChannel)
        with self.assertRaises(ValueError):
            GatewaySite(gateway, reactor, http1_front="fast")


class BodiesOnOneConnectionTests(FrontMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        _, site = build_gateway(self.reactor, one_tenant_snapshot(UPSTREAM_PORT))
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
            peerAddress=IPv4Address("TCP", "192.0.2.7", 40001),
        )
        self.channel = site.buildProtocol(self.transport.getPeer())
        self.channel.makeConnection(self.transport)

    def test_pipelined_post_then_get(self) -> None:
        post = b"POST /up HTTP/1.1\r\nHost: t.example\r\nContent-Length: 4\r\n\r\nbody"
        get = b"GET /down HTTP/1.1\r\nHost: t.example\r\n\r\n"
        self.channel.dataReceived(post + get)
        upstream = complete_memory_connection(self.reactor)
        self.assertTrue(upstream.value().endswith(b"\r\n\r\nbody"), upstream.value())
        self.assertNotIn(b"/down", upstream.value())
        upstream.protocol.dataReceived(OK)  # type: ignore[attr-defined]
        upstreams = [upstream] + [
            complete_memory_connection(self.reactor, i)
            for i in range(1, len(self.reactor.tcpClients))
        ]
        self.assertEqual(b"".join(u.value() for u in upstreams).count(b"GET /down "), 1)
        upstreams[-1].protocol.dataReceived(OK)  # type: ignore[attr-defined]
        self.assertEqual(self.transport.value().count(b"HTTP/1.1 200 OK\r\n"), 2)
        self.assertFalse(self.transport.disconnecting)

    def test_100_continue_then_body(self) -> None:
        self.channel.dataReceived(
            b"POST /up HTTP/1.1\r\nHost: t.example\r\nContent-Length: 4\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        self.assertEqual(self.transport.value(), b"")
        upstream = complete_memory_connection(self.reactor)
        self.assertEqual(self.transport.value(), b"HTTP/1.1 100 Continue\r\n\r\n")
        self.channel.dataReceived(b"body")
        self.assertTrue(upstream.value().endswith(b"\r\n\r\nbody"), upstream.value())
        upstream.protocol.dataReceived(OK)  # type: ignore[attr-defined]
        self.assertTrue(self.transport.value().endswith(b"\r\n\r\nok"))


both_fronts(globals())
