"""
WebSocket (HTTP/1.1 Upgrade) tunnelled through the gateway, with a real
WebSocket server and client (the ``websockets`` package) on both sides.
"""

from __future__ import annotations

import socket
import struct
import threading
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.sync.server import ServerConnection, serve

from tests.eventually import eventually
from tests.fronts import FrontMixin, both_fronts
from tests.support import GatewayUnderTest
from tests.support import serve as serve_gateway

BIG = bytes(range(256)) * 4096  # 1 MiB: more than any socket buffer holds


class EchoServer:
    """Echoes every message; closes when asked to; records what it saw."""

    def __init__(self) -> None:
        self.server = serve(self.handle, "127.0.0.1", 0)
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.client_closed = threading.Event()
        self.request_headers: Any = None

    def handle(self, connection: ServerConnection) -> None:
        self.request_headers = connection.request.headers if connection.request else None
        try:
            for message in connection:
                if message == "close-from-server":
                    connection.close()
                    return
                connection.send(message)
        except ConnectionClosed:
            pass
        self.client_closed.set()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


def echo_gateway(test: Any, tenant: dict[str, Any]) -> GatewayUnderTest:
    """A gateway serving C{tenant}, whose Service C{ws} is C{test.echo}."""
    return serve_gateway(test, tenant=tenant, services={"ws": [test.echo.port]})


class WebSocketTests(FrontMixin, TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.echo = EchoServer()
        self.addCleanup(self.echo.stop)
        self.gateway = echo_gateway(
            self,
            {
                "hosts": ["t.example"],
                "routes": [
                    {"name": "ws", "backends": [{"service": "ws", "port": 80}], "timeoutSeconds": 1}
                ],
            },
        )

    def client(self) -> Any:
        raw = socket.create_connection(("127.0.0.1", self.gateway.port))
        return connect(f"ws://t.example:{self.gateway.port}/chat", sock=raw, max_size=None)

    @inlineCallbacks
    def test_messages_flow_both_ways_with_backpressure_and_outlive_the_timeout(self) -> Any:
        def talk() -> list[Any]:
            import time

            with self.client() as ws:
                ws.send("hello")
                first = ws.recv(timeout=5)
                ws.send(BIG)
                big = ws.recv(timeout=10)
                time.sleep(1.5)  # longer than the route's timeoutSeconds
                ws.send("still here")
                last = ws.recv(timeout=5)
            return [first, big == BIG, last]

        results = yield deferToThread(talk)
        self.assertEqual(results, ["hello", True, "still here"])
        self.assertTrue((yield deferToThread(self.echo.client_closed.wait, 5)))
        headers = self.echo.request_headers
        self.assertEqual(headers["Host"], f"t.example:{self.gateway.port}")
        self.assertEqual(headers["X-Forwarded-For"], "127.0.0.1")
        self.assertTrue(headers["X-Request-Id"])

    @inlineCallbacks
    def test_close_from_the_server_reaches_the_client(self) -> Any:
        def talk() -> str:
            with self.client() as ws:
                ws.send("close-from-server")
                try:
                    ws.recv(timeout=5)
                except ConnectionClosed:
                    return "closed"
                return "still open"

        self.assertEqual((yield deferToThread(talk)), "closed")

    @inlineCallbacks
    def test_plain_requests_are_not_upgraded(self) -> Any:
        from tests.support import raw_exchange

        # Upgrade without "Connection: upgrade" is an ordinary request.
        request = (
            b"GET /chat HTTP/1.1\r\nHost: t.example\r\nUpgrade: websocket\r\n"
            b"Connection: close\r\n\r\n"
        )
        reply = yield raw_exchange(self.gateway.port, request)
        self.assertFalse(reply.startswith(b"HTTP/1.1 101"), reply)

    @inlineCallbacks
    def test_open_tunnel_is_in_flight_until_closed(self) -> Any:
        """What a drain waits for (up to --drain-timeout): open tunnels count."""
        gateway = self.gateway.gateway
        ws = yield deferToThread(self.client)
        self.assertEqual(
            (yield deferToThread(lambda: (ws.send("hi"), ws.recv(timeout=5))[1])), "hi"
        )
        self.assertEqual(gateway.requests_open, 1)
        yield deferToThread(ws.close)
        yield eventually(lambda: gateway.requests_open, "the tunnel no longer in flight", expect=0)


class WebSocketSlotTests(FrontMixin, TestCase):
    """A closed tunnel gives its tenant's concurrency slot back, whoever closes it."""

    timeout = 30

    def setUp(self) -> None:
        self.echo = EchoServer()
        self.addCleanup(self.echo.stop)
        self.gateway = echo_gateway(
            self,
            {
                "hosts": ["t.example"],
                "quota": {"maxConcurrentRequests": 1},
                "routes": [{"name": "ws", "backends": [{"service": "ws", "port": 80}]}],
            },
        )

    def talk_and_close(self) -> str:
        raw = socket.create_connection(("127.0.0.1", self.gateway.port))
        ws = connect(f"ws://t.example:{self.gateway.port}/chat", sock=raw, open_timeout=5)
        ws.send("hi")
        answer = ws.recv(timeout=5)
        ws.close()
        return str(answer)

    @inlineCallbacks
    def test_client_close_releases_the_slot(self) -> Any:
        in_flight = self.gateway.gateway.in_flight
        for _ in range(4):
            self.assertEqual((yield deferToThread(self.talk_and_close)), "hi")
            yield eventually(
                lambda: in_flight.current("team"), "the tenant's slot released", expect=0
            )

    @inlineCallbacks
    def test_client_abort_releases_the_slot(self) -> Any:
        in_flight = self.gateway.gateway.in_flight

        def abort() -> None:
            # By hand on a raw socket, so that no library thread still holds
            # it: the close below is a real RST, with no close frame first.
            raw = socket.create_connection(("127.0.0.1", self.gateway.port), timeout=5)
            raw.sendall(
                b"GET /chat HTTP/1.1\r\nHost: t.example\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            )
            reply = b""
            while b"\r\n\r\n" not in reply:
                reply += raw.recv(4096)
            assert reply.startswith(b"HTTP/1.1 101"), reply
            mask = b"\x01\x02\x03\x04"
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"hi"))
            raw.sendall(b"\x81\x82" + mask + payload)  # a masked text frame "hi"
            echoed = reply.partition(b"\r\n\r\n")[2]
            while len(echoed) < 4:
                echoed += raw.recv(4096)
            assert echoed[:4] == b"\x81\x02hi", echoed
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raw.close()

        for _ in range(3):
            yield deferToThread(abort)
            yield eventually(
                lambda: in_flight.current("team"), "the tenant's slot released", expect=0
            )
        self.assertEqual((yield deferToThread(self.talk_and_close)), "hi")


both_fronts(globals())
