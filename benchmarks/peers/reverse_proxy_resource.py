"""Peer: stock ``twisted.web.proxy.ReverseProxyResource`` in front of one backend.

This is the proxy Twisted itself ships, so it is the floor tenantgw has to beat: it
opens a fresh upstream connection per request (HTTP/1.0, ``Connection: close``) and
has no features.  It runs on the epoll reactor, like tenantgw does on Linux, and with
per-request access logging switched off so that only the proxying code is compared.

Run: ``python benchmarks/peers/reverse_proxy_resource.py --port P --backend-port B``
"""

from __future__ import annotations

import argparse
import sys
from typing import cast

from twisted.internet import epollreactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IReactorCore, IReactorTCP
from twisted.python.failure import Failure
from twisted.web.http import Request
from twisted.web.server import Site


class QuietSite(Site):
    """A Site without the per-request access log line.

    The default Site formats and emits one log event per request, which would make
    this peer measure Twisted's logging as much as its proxying.
    """

    def log(self, request: Request) -> None:
        """Skip the access log."""


def main() -> None:
    """Parse the command line and serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="listening port")
    parser.add_argument("--interface", default="127.0.0.1", help="listening address")
    parser.add_argument("--backend-host", default="127.0.0.1")
    parser.add_argument("--backend-port", type=int, required=True)
    args = parser.parse_args()

    # twisted.web.proxy imports the reactor, so it can only be imported after install().
    epollreactor.install()
    from twisted.internet import reactor
    from twisted.web.proxy import ReverseProxyResource

    resource = ReverseProxyResource(args.backend_host, args.backend_port, b"")
    tcp = cast(IReactorTCP, reactor)
    core = cast(IReactorCore, reactor)
    listening = TCP4ServerEndpoint(tcp, args.port, interface=args.interface).listen(
        QuietSite(resource)
    )

    def cannot_listen(failure: Failure) -> None:
        print(f"cannot listen: {failure.value}", file=sys.stderr)
        core.stop()

    listening.addErrback(cannot_listen)
    core.run()


if __name__ == "__main__":
    main()
