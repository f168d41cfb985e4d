"""Peer: the "bare pooled twisted.web proxy", the reference bar for tenantgw.

A twisted.web Site whose single leaf resource forwards every request through
``twisted.web.client.Agent`` over a persistent ``HTTPConnectionPool`` and streams the
response body back as it arrives.  No routing, no quotas, no access checks, no header
rewriting beyond dropping hop-by-hop headers.  It shows what the best plain Twisted
proxy costs on this machine, so the gap between it and tenantgw is the price of
tenantgw's features (and whatever it saves by not using twisted.web, if it doesn't).

Run: ``python benchmarks/peers/bare_pooled_proxy.py --port P --backend-port B``
"""

from __future__ import annotations

import argparse
import sys
from typing import cast

from twisted.internet import epollreactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IReactorCore, IReactorTCP
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    FileBodyProducer,
    HTTPConnectionPool,
    ResponseDone,
)
from twisted.web.http import PotentialDataLoss, Request
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

# RFC 9110 section 7.6.1, plus the legacy names proxies still strip.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)


def _end_to_end(headers: Headers) -> Headers:
    """Copy *headers* without hop-by-hop ones: they describe one connection, not the message."""
    out = Headers()
    for name, values in headers.getAllRawHeaders():
        if name.lower() not in HOP_BY_HOP:
            out.setRawHeaders(name, values)
    return out


_DONE = Failure(ResponseDone())


class _Relay(Protocol):
    """Writes upstream body chunks to the client as they arrive, then finishes."""

    def __init__(self, request: Request, client_gone: list[bool]) -> None:
        self._request = request
        self._client_gone = client_gone

    def dataReceived(self, data: bytes) -> None:
        """Forward one chunk; nothing is buffered here."""
        if not self._client_gone[0]:
            self._request.write(data)

    def connectionLost(self, reason: Failure = _DONE) -> None:
        """Finish the client response, or cut it if the upstream body was truncated."""
        if self._client_gone[0]:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self._request.finish()
        else:
            # Headers are already sent: closing is the only honest signal left.
            self._request.channel.transport.loseConnection()  # type: ignore[union-attr]


class PooledProxyResource(Resource):
    """Leaf resource forwarding every request to one backend over pooled connections."""

    isLeaf = True

    def __init__(self, agent: Agent, base_url: bytes) -> None:
        super().__init__()
        self._agent = agent
        self._base_url = base_url

    def render(self, request: Request) -> object:
        """Start the upstream request and return NOT_DONE_YET; callbacks finish it."""
        client_gone = [False]
        request.notifyFinish().addErrback(lambda _: client_gone.__setitem__(0, True))

        producer = None
        content = request.content
        if content is not None:
            size = content.seek(0, 2)
            content.seek(0)
            if size:
                producer = FileBodyProducer(content)

        d = self._agent.request(
            request.method,
            self._base_url + request.uri,
            _end_to_end(request.requestHeaders),
            producer,
        )

        def respond(response: IResponse) -> None:
            if client_gone[0]:
                return
            request.setResponseCode(response.code, response.phrase)
            request.responseHeaders = _end_to_end(response.headers)
            response.deliverBody(_Relay(request, client_gone))

        def fail(_failure: Failure) -> None:
            if client_gone[0]:
                return
            if request.startedWriting:
                request.channel.transport.loseConnection()  # type: ignore[union-attr]
                return
            request.setResponseCode(502)
            request.responseHeaders = Headers({b"content-type": [b"text/plain"]})
            request.write(b"bad gateway\n")
            request.finish()

        d.addCallbacks(respond, fail)
        return NOT_DONE_YET


class QuietSite(Site):
    """A Site without the per-request access log line (measure proxying, not logging)."""

    def log(self, request: Request) -> None:
        """Skip the access log."""


def main() -> None:
    """Parse the command line and serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="listening port")
    parser.add_argument("--interface", default="127.0.0.1", help="listening address")
    parser.add_argument("--backend-host", default="127.0.0.1")
    parser.add_argument("--backend-port", type=int, required=True)
    parser.add_argument(
        "--pool-size",
        type=int,
        default=50,
        help="maxPersistentPerHost; match the load generator's connection count",
    )
    args = parser.parse_args()

    # Installed here, not at import time, so the classes above can be reused elsewhere.
    epollreactor.install()
    from twisted.internet import reactor

    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = args.pool_size
    agent = Agent(reactor, pool=pool)
    base_url = f"http://{args.backend_host}:{args.backend_port}".encode("ascii")
    site = QuietSite(PooledProxyResource(agent, base_url))
    tcp = cast(IReactorTCP, reactor)
    core = cast(IReactorCore, reactor)
    listening = TCP4ServerEndpoint(tcp, args.port, interface=args.interface).listen(site)

    def cannot_listen(failure: Failure) -> None:
        print(f"cannot listen: {failure.value}", file=sys.stderr)
        core.stop()

    listening.addErrback(cannot_listen)
    core.run()


if __name__ == "__main__":
    main()
