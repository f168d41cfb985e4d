"""
HTTP/1.1 pipelining on the client connection, on both fronts: requests sent
in one write are answered in order, each reaching the backend once, and a
smuggling shape among them stops the connection there, so that nothing from
the refused request or after it reaches a backend.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tests.fronts import FrontMixin, both_fronts
from tests.support import build_gateway, complete_memory_connection, one_tenant_snapshot

UPSTREAM_PORT = 9999


def get(path: bytes) -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: t.example\r\n\r\n"


def answer(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def statuses_and_bodies(data: bytes) -> list[tuple[bytes, bytes]]:
    """(status code, body) of each Content-Length-framed response in C{data}."""
    out = []
    while data:
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        out.append((lines[0].split(b" ")[1], data[:length]))
        data = data[length:]
    return out


class PipeliningTests(FrontMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        _, site = build_gateway(self.reactor, one_tenant_snapshot(UPSTREAM_PORT))
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
            peerAddress=IPv4Address("TCP", "192.0.2.7", 40001),
        )
        self.channel = site.buildProtocol(self.transport.getPeer())
        self.channel.makeConnection(self.transport)
        self.upstreams: list[StringTransport] = []

    def serve(self, body: bytes) -> None:
        """Answers the request the backend was sent last, on whichever connection."""
        while len(self.upstreams) < len(self.reactor.tcpClients):
            self.upstreams.append(complete_memory_connection(self.reactor, len(self.upstreams)))
        upstream = self.upstreams[-1]
        upstream.protocol.dataReceived(answer(body))  # type: ignore[attr-defined]

    def backend_saw(self) -> bytes:
        while len(self.upstreams) < len(self.reactor.tcpClients):
            self.upstreams.append(complete_memory_connection(self.reactor, len(self.upstreams)))
        return b"".join(upstream.value() for upstream in self.upstreams)

    def test_three_in_one_write_answered_in_order(self) -> None:
        self.channel.dataReceived(get(b"/one") + get(b"/two") + get(b"/three"))
        for done, path in enumerate((b"/one", b"/two", b"/three")):
            seen = self.backend_saw()
            # The next request reaches the backend only once the one before is answered.
            self.assertEqual(seen.count(b"GET "), done + 1, seen)
            self.assertEqual(seen.count(b"GET " + path + b" "), 1, seen)
            self.serve(b"answer " + path)
        self.assertEqual(
            statuses_and_bodies(self.transport.value()),
            [(b"200", b"answer /one"), (b"200", b"answer /two"), (b"200", b"answer /three")],
        )
        self.assertEqual(self.backend_saw().count(b"GET "), 3)
        self.assertFalse(self.transport.disconnecting)

    def test_smuggling_shape_second_stops_the_connection_there(self) -> None:
        smuggled = (
            b"POST /two HTTP/1.1\r\nHost: t.example\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        self.channel.dataReceived(get(b"/one") + smuggled + get(b"/three"))
        self.assertEqual(self.backend_saw().count(b"GET /one "), 1)
        self.serve(b"first")
        answers = statuses_and_bodies(self.transport.value())
        self.assertEqual([status for status, _ in answers], [b"200", b"400"])
        self.assertEqual(answers[0][1], b"first")
        self.assertIn(b"\r\nConnection: close\r\n", self.transport.value())
        self.assertTrue(self.transport.disconnecting)
        seen = self.backend_saw()
        self.assertNotIn(b"/two", seen)
        self.assertNotIn(b"/three", seen)
        self.assertEqual(seen.count(b"HTTP/1.1\r\n"), 1)


both_fronts(globals())
