"""
Graceful GOAWAY on drain, and h2c prior knowledge on the plain listener,
with the raw HTTP/2 client over plain TCP: the streams in flight finish,
a stream opened after the GOAWAY is refused (REFUSED_STREAM: never
processed, safe to retry elsewhere) and reaches no backend, and the
connection closes once the last stream has ended.
"""

from __future__ import annotations

from typing import Any

from hyperframe.frame import SettingsFrame
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tenantgw.dataplane.gateway import PlainGatewaySite, gateway_on
from tests.h2_raw import NO_ERROR, PREFACE, REFUSED_STREAM, RawH2Client, request_headers
from tests.support import Upstream, one_tenant_snapshot, raw_exchange


class _PlainClient(RawH2Client):
    """h2c with prior knowledge: the preface at once, no TLS."""

    def connectionMade(self) -> None:
        self.transport.write(PREFACE + SettingsFrame(0).serialize())  # type: ignore[union-attr]


class DrainTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.upstream = Upstream("web")
        self.addCleanup(self.upstream.stop)
        self.gateway = gateway_on(reactor)
        self.gateway.apply(one_tenant_snapshot(self.upstream.number))
        self.addCleanup(self.gateway.stop)
        self.listening = reactor.listenTCP(
            0, PlainGatewaySite(self.gateway, reactor), interface="127.0.0.1"
        )
        self.addCleanup(self.listening.stopListening)
        self.port = self.listening.getHost().port

    @inlineCallbacks
    def connect(self) -> Any:
        client = _PlainClient()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port)
        yield connectProtocol(endpoint, client)
        yield client.ready
        self.addCleanup(client.abort)
        return client

    @inlineCallbacks
    def test_h2c_prior_knowledge_and_http1_share_the_listener(self) -> Any:
        client = yield self.connect()
        client.send_headers(1, request_headers(authority=b"t.example", path=b"/a"), end_stream=True)
        yield client.answered(1)
        self.assertEqual(client.response(1).status, 200)
        self.assertEqual(self.upstream.received[-1]["headers"]["x-forwarded-proto"], ["http"])
        reply = yield raw_exchange(
            self.port, b"GET /b HTTP/1.1\r\nHost: t.example\r\n\r\n", close_after=True
        )
        self.assertTrue(reply.startswith(b"HTTP/1.1 200 "), reply)

    @inlineCallbacks
    def test_drain_lets_streams_in_flight_finish_and_refuses_new_ones(self) -> Any:
        client = yield self.connect()
        client.send_headers(
            1, request_headers(authority=b"t.example", path=b"/hang"), end_stream=True
        )
        for _ in range(200):
            if self.upstream.resource.hanging:
                break
            yield deferLater(reactor, 0.02, lambda: None)
        self.gateway.start_draining()
        yield client.wait_for(lambda: client.goaway is not None)
        self.assertEqual(client.goaway.last_stream_id, 1)
        self.assertEqual(client.goaway.error_code, NO_ERROR)
        self.assertFalse(client.lost)
        # A stream the client opened before it read the GOAWAY: refused, unseen.
        client.send_headers(
            3, request_headers(authority=b"t.example", path=b"/late"), end_stream=True
        )
        yield client.answered(3)
        self.assertEqual(client.response(3).reset, REFUSED_STREAM)
        self.assertEqual([r["uri"] for r in self.upstream.received], ["/hang"])
        # The stream in flight is answered in full, then the connection ends.
        hanging = self.upstream.resource.hanging[0]
        hanging.write(b"finally")
        hanging.finish()
        self.upstream.resource.hanging.clear()
        yield client.answered(1)
        self.assertEqual(client.response(1).status, 200)
        self.assertEqual(client.response(1).data, b"finally")
        yield client.wait_for(lambda: client.lost, timeout=10)

    @inlineCallbacks
    def test_malformed_h2c_request_is_refused_and_reaches_no_backend(self) -> Any:
        client = yield self.connect()
        smuggled = request_headers(authority=b"t.example", path=b"/x HTTP/1.1\r\nHost: other")
        client.send_headers(1, smuggled, end_stream=True)
        yield client.answered(1)
        self.assertEqual(client.response(1).status, 400)
        # The same connection still serves a well-formed request.
        client.send_headers(
            3, request_headers(authority=b"t.example", path=b"/ok"), end_stream=True
        )
        yield client.answered(3)
        self.assertEqual(client.response(3).status, 200)
        self.assertEqual([r["uri"] for r in self.upstream.received], ["/ok"])

    @inlineCallbacks
    def test_a_partial_preface_then_http1_is_http1(self) -> Any:
        # The first 11 bytes could still be the preface; what follows says
        # it is not, so the HTTP/1.1 channel judges it (asterisk-form: 400).
        reply = yield raw_exchange(self.port, b"PRI * HTTP/1.1\r\nHost: t.example\r\n\r\n")
        self.assertTrue(reply.startswith(b"HTTP/1.1 400 "), reply)
        self.assertEqual(self.upstream.received, [])
