"""
The HTTP/2 upstream client (L{tenantgw.http2.client}) without sockets: the
pool dials through a C{MemoryReactorClock}, each connection runs over a
C{StringTransport}, and the upstream is C{h2}'s own server-side state
machine, driven by the test frame by frame.  Time is the reactor's clock.
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
from h2.errors import ErrorCodes
from h2.settings import SettingCodes, Settings
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tenantgw.http2.client import (
    PING_INTERVAL,
    PING_TIMEOUT,
    H2UpstreamPool,
    H2UpstreamStream,
)

KEY = ("10.0.0.1", 50051, None)
HEAD = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":authority", b"g.example"),
    (b":path", b"/test.Echo/Echo"),
    (b"content-type", b"application/grpc"),
    (b"te", b"trailers"),
]


class _Transport(StringTransport):
    def setTcpNoDelay(self, enabled: bool) -> None:
        pass


class Handler:
    """What an exchange would be told, recorded."""

    def __init__(self, with_body: bool = False) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.request_sent = not with_body

    def upstream_head(self, code: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.events.append(("head", code, headers))

    def upstream_data(self, data: bytes) -> None:
        self.events.append(("data", data))

    def upstream_trailers(self, trailers: list[tuple[bytes, bytes]]) -> None:
        self.events.append(("trailers", trailers))

    def upstream_finished(self) -> None:
        self.events.append(("finished",))

    def upstream_failed(self, reason: str, started: bool) -> None:
        self.events.append(("failed", reason, started))


class Upstream:
    """One upstream connection: h2's server side on the other end of a StringTransport."""

    def __init__(self, pool_reactor: MemoryReactorClock, index: int, max_streams: int = 100):
        _, _, factory, _, _ = pool_reactor.tcpClients[index]
        self.protocol = factory.buildProtocol(None)
        self.transport = _Transport()
        self.protocol.makeConnection(self.transport)
        self.server = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        self.server.local_settings = Settings(
            client=False, initial_values={SettingCodes.MAX_CONCURRENT_STREAMS: max_streams}
        )
        self.server.initiate_connection()
        self.events: list[Any] = []
        self.exchange()

    def exchange(self) -> None:
        """Delivers what each side wrote to the other until both are quiet."""
        while True:
            written = self.transport.value()
            self.transport.clear()
            if written:
                self.events += self.server.receive_data(written)
            reply = self.server.data_to_send()
            if reply:
                self.protocol.dataReceived(reply)
            if not written and not reply:
                return

    def requests(self) -> list[int]:
        return [e.stream_id for e in self.events if isinstance(e, h2.events.RequestReceived)]

    def respond(self, stream_id: int, body: bytes = b"ok", status: bytes = b"0") -> None:
        self.server.send_headers(
            stream_id, [(b":status", b"200"), (b"content-type", b"application/grpc")]
        )
        self.server.send_data(stream_id, body)
        self.server.send_headers(stream_id, [(b"grpc-status", status)], end_stream=True)
        self.exchange()


class ClientTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.pool = H2UpstreamPool(self.reactor, self.reactor, idle_timeout=50.0)
        self.addCleanup(self.pool.stop)

    def open(self, handler: Handler) -> H2UpstreamStream:
        got: list[H2UpstreamStream] = []
        failed: list[str] = []
        self.pool.get(KEY, got.append, failed.append)
        if got:
            got[0].start(handler, HEAD, False)
            return got[0]
        self.pending = (got, failed, handler)
        return None  # type: ignore[return-value]

    def test_one_connection_carries_many_streams_with_trailers(self) -> None:
        handlers = [Handler() for _ in range(3)]
        self.open(handlers[0])
        upstream = Upstream(self.reactor, 0)
        got, _, handler = self.pending
        got[0].start(handler, HEAD, False)
        for h in handlers[1:]:
            self.open(h)
        upstream.exchange()
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertEqual(upstream.requests(), [1, 3, 5])
        for stream_id in (1, 3, 5):
            upstream.respond(stream_id, b"r%d" % stream_id)
        self.assertEqual(
            handlers[1].events,
            [
                ("head", 200, [(b"content-type", b"application/grpc")]),
                ("data", b"r3"),
                ("trailers", [(b"grpc-status", b"0")]),
                ("finished",),
            ],
        )

    def _connected(self, max_streams: int = 100) -> Upstream:
        first = Handler()
        self.open(first)
        upstream = Upstream(self.reactor, 0, max_streams=max_streams)
        got, _, handler = self.pending
        got[0].start(handler, HEAD, False)
        upstream.exchange()
        self.first = first
        return upstream

    def test_max_concurrent_streams_is_honoured(self) -> None:
        upstream = self._connected(max_streams=2)
        later = [Handler() for _ in range(3)]
        for h in later:
            self.open(h)
        upstream.exchange()
        self.assertEqual(upstream.requests(), [1, 3])  # two open, the rest wait
        upstream.respond(1)
        self.assertEqual(upstream.requests(), [1, 3, 5])
        upstream.respond(3)
        upstream.respond(5)
        self.assertEqual(upstream.requests(), [1, 3, 5, 7])
        upstream.respond(7)
        self.assertTrue(all(h.events[-1] == ("finished",) for h in later))

    def test_goaway_replays_unprocessed_streams_on_a_new_connection(self) -> None:
        upstream = self._connected()
        body = Handler(with_body=True)
        stream = self.open(body)
        stream.write_body(b"\x00\x00\x00\x00\x02hi")
        stream.end_body()
        upstream.exchange()
        self.assertEqual(upstream.requests(), [1, 3])
        # Graceful: stream 1 was processed and may finish; 3 was not.
        upstream.server.close_connection(last_stream_id=1)
        upstream.exchange()
        self.assertEqual(len(self.reactor.tcpClients), 2)
        fresh = Upstream(self.reactor, 1)
        fresh.exchange()
        self.assertEqual(fresh.requests(), [1])
        received = [e for e in fresh.events if isinstance(e, h2.events.DataReceived)]
        self.assertEqual(b"".join(e.data for e in received), b"\x00\x00\x00\x00\x02hi")
        fresh.respond(1, b"again")
        self.assertEqual(body.events[-1], ("finished",))
        self.assertIn(("data", b"again"), body.events)
        # The stream at the GOAWAY's last id was neither failed nor moved:
        # it may still finish on the old connection.
        self.assertEqual(self.first.events, [])
        self.assertIn(1, upstream.protocol.streams)

    def test_refused_stream_is_replayed(self) -> None:
        upstream = self._connected()
        upstream.server.reset_stream(1, ErrorCodes.REFUSED_STREAM)
        upstream.exchange()
        self.assertEqual(upstream.requests(), [1, 3])
        upstream.respond(3)
        self.assertEqual(self.first.events[-1], ("finished",))

    def test_reset_after_response_started_fails_the_exchange(self) -> None:
        upstream = self._connected()
        upstream.server.send_headers(1, [(b":status", b"200")])
        upstream.server.reset_stream(1, ErrorCodes.INTERNAL_ERROR)
        upstream.exchange()
        self.assertEqual(self.first.events[-1][0], "failed")
        self.assertTrue(self.first.events[-1][2])

    def test_abandon_cancels_only_the_stream(self) -> None:
        upstream = self._connected()
        stream = upstream.protocol.streams[1]
        stream.abandon()
        upstream.exchange()
        resets = [e for e in upstream.events if isinstance(e, h2.events.StreamReset)]
        self.assertEqual([(r.stream_id, r.error_code) for r in resets], [(1, ErrorCodes.CANCEL)])
        self.assertFalse(upstream.transport.disconnecting)
        self.open(Handler())
        upstream.exchange()
        self.assertEqual(upstream.requests(), [1, 3])

    def test_paused_stream_withholds_window_updates(self) -> None:
        upstream = self._connected()
        stream = upstream.protocol.streams[1]
        stream.pauseProducing()
        upstream.server.send_headers(1, [(b":status", b"200")])
        window = upstream.server.local_flow_control_window(1)
        chunk = b"x" * 16384
        for _ in range(window // len(chunk)):
            upstream.server.send_data(1, chunk)
        upstream.exchange()
        # All of the window is spent and none returned while paused.
        self.assertLess(upstream.server.local_flow_control_window(1), len(chunk))
        stream.resumeProducing()
        upstream.exchange()
        self.assertGreater(upstream.server.local_flow_control_window(1), window // 2)

    def test_request_body_waits_for_the_upstream_window_and_pauses_the_client(self) -> None:
        upstream = self._connected()
        handler = Handler(with_body=True)
        stream = self.open(handler)
        paused: list[str] = []

        class Producer:
            def pauseProducing(self) -> None:
                paused.append("pause")

            def resumeProducing(self) -> None:
                paused.append("resume")

            def stopProducing(self) -> None:
                pass

        stream.registerProducer(Producer(), True)
        stream.write_body(b"y" * (512 * 1024))
        upstream.exchange()
        self.assertEqual(paused, ["pause"])
        got = sum(len(e.data) for e in upstream.events if isinstance(e, h2.events.DataReceived))
        self.assertEqual(got, 65_535)  # the upstream's default stream window
        upstream.server.increment_flow_control_window(1024 * 1024, stream_id=3)
        upstream.server.increment_flow_control_window(1024 * 1024)
        upstream.exchange()
        self.assertEqual(paused, ["pause", "resume"])

    def test_quiet_connection_is_pinged_and_dropped_without_an_answer(self) -> None:
        upstream = self._connected()
        self.reactor.advance(PING_INTERVAL + 10)
        upstream.exchange()
        pings = [e for e in upstream.events if isinstance(e, h2.events.PingReceived)]
        self.assertEqual(len(pings), 1)  # answered by h2's server side
        self.assertFalse(upstream.transport.disconnecting)
        # Now the upstream goes silent: the next PING is never answered.
        self.reactor.advance(PING_INTERVAL + 10)
        self.assertIsNotNone(upstream.protocol.ping_sent_at)
        self.reactor.advance(PING_TIMEOUT + 10)
        self.assertTrue(upstream.transport.disconnecting)

    def test_idle_connection_closes(self) -> None:
        upstream = self._connected()
        upstream.respond(1)
        for _ in range(12):
            self.reactor.advance(5)
            upstream.exchange()
        self.assertTrue(upstream.transport.disconnecting)
        self.assertEqual(self.pool.live_connections(), 0)

    def test_settings_advertise_our_windows(self) -> None:
        upstream = self._connected()
        settings = upstream.server.remote_settings
        self.assertEqual(settings[SettingCodes.ENABLE_PUSH], 0)
        self.assertEqual(settings[SettingCodes.INITIAL_WINDOW_SIZE], 1024 * 1024)


class HostileUpstreamTests(SynchronousTestCase):
    """An upstream's fields reach clients as they are: malformed ones fail the exchange."""

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.pool = H2UpstreamPool(self.reactor, self.reactor)
        self.addCleanup(self.pool.stop)
        self.handler = Handler()
        got: list[H2UpstreamStream] = []
        self.pool.get(KEY, got.append, lambda why: None)
        self.upstream = Upstream(self.reactor, 0)
        got[0].start(self.handler, HEAD, False)
        self.upstream.exchange()
        # Sent raw: h2's own sender would refuse these.
        self.upstream.server.config.validate_outbound_headers = False

    def test_cr_lf_in_a_response_field(self) -> None:
        self.upstream.server.send_headers(
            1, [(b":status", b"200"), (b"x-a", b"1\r\nset-cookie: stolen=1")]
        )
        self.upstream.exchange()
        # h2 refuses it as a protocol error: the connection is cut, and
        # its loss fails the exchange; no head ever reached the handler.
        self.assertTrue(self.upstream.transport.disconnecting)
        self.upstream.protocol.connectionLost(Failure(ConnectionLost("aborted")))
        self.assertEqual([e[0] for e in self.handler.events], ["failed"])

    def test_control_character_in_a_response_value(self) -> None:
        self.upstream.server.send_headers(1, [(b":status", b"200"), (b"x-a", b"1\x7f")])
        self.upstream.exchange()
        self.assertEqual([e[0] for e in self.handler.events], ["failed"])

    def test_control_character_in_trailers(self) -> None:
        self.upstream.server.send_headers(1, [(b":status", b"200")])
        self.upstream.server.send_headers(1, [(b"grpc-message", b"a\x01b")], end_stream=True)
        self.upstream.exchange()
        self.assertEqual(self.handler.events[0][0], "head")
        self.assertEqual(self.handler.events[-1][0], "failed")
        self.assertFalse(any(e[0] == "trailers" for e in self.handler.events))
