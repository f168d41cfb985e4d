"""Peer: the lean proxy, the Python/Twisted ceiling tenantgw is measured against (issue 15).

A bare Twisted ``Protocol`` on each side with httptools parsing requests and responses,
and a pool of keep-alive upstream connections.  No routing, quotas, access checks,
metrics or logs; bodies are small here, so each message is buffered whole and sent with
a Content-Length.  Requests on one client connection are answered one at a time, in
order.  What tenantgw costs above this is the price of its features and of its glue.

Run: ``python benchmarks/peers/lean_proxy.py --port P --backend-port B``
"""

from __future__ import annotations

import argparse
from collections import deque

import httptools
from twisted.internet import epollreactor

epollreactor.install()
from twisted.internet import protocol, reactor  # noqa: E402

HOP_BY_HOP = frozenset(
    b"connection keep-alive proxy-connection te trailer transfer-encoding upgrade".split()
)


class Upstream(protocol.Protocol):
    """One keep-alive connection to the backend; back to the pool after each response."""

    def connectionMade(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.factory.connected(self)

    def send(self, head: bytes, body: bytes, client: Client) -> None:
        self.client, self.headers, self.body = client, [], []
        self.transport.write(head + body)

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in HOP_BY_HOP and name.lower() != b"content-length":
            self.headers.append(b"%s: %s\r\n" % (name, value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self.body)
        status = self.parser.get_status_code()
        head = b"HTTP/1.1 %d \r\n%sContent-Length: %d\r\n\r\n" % (
            status,
            b"".join(self.headers),
            len(body),
        )
        client, self.client = self.client, None
        self.factory.idle.append(self)
        client.respond(head + body)

    def dataReceived(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def connectionLost(self, reason: object = None) -> None:
        if self in self.factory.idle:
            self.factory.idle.remove(self)


class Pool(protocol.ClientFactory):
    protocol = Upstream

    def __init__(self, port: int) -> None:
        self.port, self.idle, self.waiting = port, [], deque()

    def request(self, head: bytes, body: bytes, client: Client) -> None:
        if self.idle:
            self.idle.pop().send(head, body, client)
        else:
            self.waiting.append((head, body, client))
            reactor.connectTCP("127.0.0.1", self.port, self)

    def connected(self, upstream: Upstream) -> None:
        upstream.send(*self.waiting.popleft())


class Client(protocol.Protocol):
    """One client connection: parse, forward, answer in order."""

    def connectionMade(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.queue, self.busy = deque(), False

    def on_message_begin(self) -> None:
        self.url, self.headers, self.body = b"", [], []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in HOP_BY_HOP and name.lower() != b"content-length":
            self.headers.append(b"%s: %s\r\n" % (name, value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self.body)
        head = b"%s %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n" % (
            self.parser.get_method(),
            self.url,
            b"".join(self.headers),
            len(body),
        )
        self.queue.append((head, body))
        self.next()

    def next(self) -> None:
        if not self.busy and self.queue:
            self.busy = True
            head, body = self.queue.popleft()
            self.factory.pool.request(head, body, self)

    def respond(self, data: bytes) -> None:
        self.busy = False
        self.transport.write(data)
        self.next()

    def dataReceived(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            self.transport.loseConnection()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend-port", type=int, required=True)
    args = parser.parse_args()
    factory = protocol.Factory.forProtocol(Client)
    factory.pool = Pool(args.backend_port)
    reactor.listenTCP(args.port, factory, interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main()
