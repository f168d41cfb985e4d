"""
The one-pass request head path and the line-by-line path agree.

A request that arrives in one read takes L{GatewayChannel}'s fast path when
it is plain; the same bytes fed one at a time take twisted.web's line path.
For every shape below the upstream must receive exactly the same request,
and for every refused shape both paths must refuse identically.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tests.fronts import FrontMixin, both_fronts
from tests.support import build_gateway, complete_memory_connection, one_tenant_snapshot

UPSTREAM_PORT = 9999
ID = b"X-Request-Id: fixed-request-id-0001\r\n"

ACCEPTED = {
    "minimal": b"GET / HTTP/1.1\r\nHost: t.example\r\n" + ID + b"\r\n",
    "many fields, duplicates, odd case": (
        b"GET /a/b?c=d&e HTTP/1.1\r\nhOsT: t.example\r\nAccept: */*\r\nX-A: 1\r\n"
        b"x-a: 2\r\nCookie: a=b; c=d\r\nX-Empty:\r\nX-Tab:\tv\t\r\n" + ID + b"\r\n"
    ),
    "obs-text value": b"GET / HTTP/1.1\r\nHost: t.example\r\nX-Latin: caf\xe9\r\n" + ID + b"\r\n",
    "HTTP/1.0": b"GET / HTTP/1.0\r\nHost: t.example\r\n" + ID + b"\r\n",
    "absolute form": b"GET http://t.example/x HTTP/1.1\r\nHost: t.example\r\n" + ID + b"\r\n",
    "hundred fields": (
        b"GET / HTTP/1.1\r\nHost: t.example\r\n"
        + ID
        + b"".join(b"X-F%03d: v\r\n" % i for i in range(98))
        + b"\r\n"
    ),
    "connection tokens": (
        b"GET / HTTP/1.1\r\nHost: t.example\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
        + ID
        + b"\r\n"
    ),
}

REFUSED = {
    "no host": b"GET / HTTP/1.1\r\n\r\n",
    "two hosts": b"GET / HTTP/1.1\r\nHost: t.example\r\nHost: t.example\r\n\r\n",
    "space before colon": b"GET / HTTP/1.1\r\nHost : t.example\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: t.example\r\nX: a\r\n b\r\n\r\n",
    "bare LF": b"GET / HTTP/1.1\nHost: t.example\r\n\r\n",
    "NUL": b"GET / HTTP/1.1\r\nHost: t.example\r\nX: a\x00b\r\n\r\n",
    "bad version": b"GET / HTTP/1.2\r\nHost: t.example\r\n\r\n",
    "hundred and one fields": (
        b"GET / HTTP/1.1\r\nHost: t.example\r\n"
        + b"".join(b"X-F%03d: v\r\n" % i for i in range(100))
        + b"\r\n"
    ),
}


class _Harness:
    def __init__(self) -> None:
        self.reactor = MemoryReactorClock()
        _, site = build_gateway(self.reactor, one_tenant_snapshot(UPSTREAM_PORT))
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
            peerAddress=IPv4Address("TCP", "192.0.2.7", 40001),
        )
        self.channel = site.buildProtocol(self.transport.getPeer())
        self.channel.makeConnection(self.transport)

    def upstream_bytes(self) -> bytes:
        if not self.reactor.tcpClients:
            return b""
        return complete_memory_connection(self.reactor).value()


def whole(data: bytes) -> _Harness:
    harness = _Harness()
    harness.channel.dataReceived(data)
    return harness


def bytewise(data: bytes) -> _Harness:
    harness = _Harness()
    for i in range(len(data)):
        harness.channel.dataReceived(data[i : i + 1])
    return harness


def _status(harness: _Harness) -> bytes:
    return harness.transport.value().split(b"\r\n", 1)[0]


class FastPathEquivalenceTests(FrontMixin, SynchronousTestCase):
    def test_accepted_shapes_reach_upstream_identically(self) -> None:
        for name, data in ACCEPTED.items():
            fast, slow = whole(data), bytewise(data)
            sent = fast.upstream_bytes()
            self.assertTrue(sent.startswith(b"GET "), (name, sent))
            self.assertEqual(sent, slow.upstream_bytes(), name)
            self.assertEqual(fast.transport.value(), b"", name)

    def test_refused_shapes_are_refused_identically(self) -> None:
        for name, data in REFUSED.items():
            fast, slow = whole(data), bytewise(data)
            self.assertEqual(_status(fast), _status(slow), name)
            self.assertTrue(_status(fast).startswith(b"HTTP/1.1 4"), (name, _status(fast)))
            self.assertEqual(fast.reactor.tcpClients, [], name)
            self.assertTrue(fast.transport.disconnecting, name)

    def test_hop_by_hop_fields_named_in_connection_are_dropped(self) -> None:
        sent = whole(ACCEPTED["connection tokens"]).upstream_bytes().lower()
        self.assertNotIn(b"x-hop", sent)
        self.assertNotIn(b"\r\nconnection:", sent)


both_fronts(globals())
