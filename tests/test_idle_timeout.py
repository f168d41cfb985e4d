"""
The client connection's idle timeout: it closes idle keep-alive connections
but never cuts a request in progress (that request has its own deadlines).
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tests.fronts import FrontMixin, both_fronts
from tests.support import build_gateway, complete_memory_connection, one_tenant_snapshot

IDLE = 10.0
REQUEST = b"GET / HTTP/1.1\r\nHost: t.example\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class IdleTimeoutTests(FrontMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.gateway, site = build_gateway(self.reactor, one_tenant_snapshot(9999), timeout=IDLE)
        self.gateway.upstream_timeout = 300.0
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
            peerAddress=IPv4Address("TCP", "192.0.2.7", 40001),
        )
        channel = site.buildProtocol(self.transport.getPeer())
        channel.makeConnection(self.transport)
        self.channel = channel

    def test_idle_keep_alive_connection_is_closed(self) -> None:
        self.channel.dataReceived(REQUEST)
        upstream = complete_memory_connection(self.reactor)
        upstream.protocol.dataReceived(RESPONSE)
        self.assertTrue(self.transport.value().endswith(b"ok"))
        self.reactor.advance(IDLE - 1)
        self.assertFalse(self.transport.disconnecting)
        self.reactor.advance(2)
        self.assertTrue(self.transport.disconnecting)

    def test_client_that_never_reads_is_aborted(self) -> None:
        """A close that cannot complete (the client reads nothing) must not hold the socket."""
        self.reactor.advance(IDLE + 1)
        self.assertTrue(self.transport.disconnecting)
        self.assertFalse(self.transport.disconnected)
        self.reactor.advance(16)
        self.assertTrue(self.transport.disconnected, "never aborted")

    def test_request_slower_than_idle_timeout_is_not_cut(self) -> None:
        self.channel.dataReceived(REQUEST)
        upstream = complete_memory_connection(self.reactor)
        for _ in range(5):
            self.reactor.advance(IDLE)
        self.assertFalse(self.transport.disconnecting)
        upstream.protocol.dataReceived(RESPONSE)
        self.assertIn(b"HTTP/1.1 200 OK", self.transport.value())
        # Idle time counts from the end of the response, not from the request.
        self.reactor.advance(IDLE - 1)
        self.assertFalse(self.transport.disconnecting)
        self.reactor.advance(2)
        self.assertTrue(self.transport.disconnecting)


both_fronts(globals())
