"""
A real h2c-only backend (HTTP/2 with prior knowledge, no HTTP/1.1 at all),
on the reactor, built on the C{h2} library: what a gRPC server looks like
to anything that is not an HTTP/2 client.  It answers every request with
C{status} once the request has ended, and records each request's headers,
body and trailers.
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
from twisted.internet.protocol import Factory, Protocol

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class _H2cServer(Protocol):
    def __init__(self, backend: H2cBackend) -> None:
        self.backend = backend
        self.machine = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.seen = b""
        self.bodies: dict[int, bytes] = {}

    def connectionMade(self) -> None:
        self.machine.initiate_connection()
        self.transport.write(self.machine.data_to_send())  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        if len(self.seen) < len(PREFACE):
            self.seen += data[: len(PREFACE)]
            if not PREFACE.startswith(self.seen[: len(PREFACE)]):
                self.backend.refused += 1  # HTTP/1.1, or anything else: not served
                self.transport.loseConnection()  # type: ignore[union-attr]
                return
        try:
            events = self.machine.receive_data(data)
        except Exception:
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self.backend.requests.append(dict(event.headers or ()))
                self.bodies[event.stream_id] = b""
            elif isinstance(event, h2.events.DataReceived):
                self.bodies[event.stream_id] = self.bodies.get(event.stream_id, b"") + event.data
                self.machine.acknowledge_received_data(
                    event.flow_controlled_length, event.stream_id
                )
            elif isinstance(event, h2.events.TrailersReceived):
                self.backend.trailers.append(list(event.headers or ()))
            elif isinstance(event, h2.events.StreamEnded):
                self.backend.bodies.append(self.bodies.pop(event.stream_id, b""))
                self.machine.send_headers(
                    event.stream_id,
                    [(b":status", b"%d" % self.backend.status), (b"content-length", b"2")],
                )
                self.machine.send_data(event.stream_id, b"ok", end_stream=True)
        self.transport.write(self.machine.data_to_send())  # type: ignore[union-attr]


class H2cBackend:
    def __init__(self, reactor: Any, status: int = 200) -> None:
        self.status = status
        self.requests: list[dict[bytes, bytes]] = []
        self.bodies: list[bytes] = []
        self.trailers: list[list[tuple[bytes, bytes]]] = []
        self.refused = 0
        factory = Factory.forProtocol(lambda: _H2cServer(self))
        self.listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.port: int = self.listening.getHost().port

    def stop(self) -> Any:
        return self.listening.stopListening()
