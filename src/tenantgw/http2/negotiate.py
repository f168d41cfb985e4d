"""
The protocol the HTTPS listener builds per connection: HTTP/2 or HTTP/1.1,
as ALPN decided.

It becomes our L{H2ServerConnection} when the TLS handshake negotiated
C{h2}, and the hardened HTTP/1.1 L{GatewayChannel} otherwise.  The choice is
made when the handshake completes (the TLS transport tells an
C{IHandshakeListener}), or at the first data for a transport that does not,
and from then on every call goes straight to the chosen protocol.

Until then the connection is bounded by the site's idle timeout, as the
HTTP/1.1 channel bounds an idle connection: a client that opens TCP and
never completes a handshake does not hold the socket forever.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IDelayedCall, IHandshakeListener, IProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from tenantgw.http2.server import H2ServerConnection

if TYPE_CHECKING:
    from tenantgw.dataplane.gateway import GatewaySite


class _HeldUntilChosen(Protocol):
    """
    A connection whose protocol is not known yet (ALPN, or the first bytes):
    an idle timer until then, and once chosen, the connection handed over
    whole, every later call going straight to the chosen protocol.
    C{http1} builds the HTTP/1.1 channel (configured as the site configures
    it); C{clock} is the gateway's reactor, for timers.
    """

    def __init__(self, site: GatewaySite, clock: Any, http1: Callable[[], IProtocol]) -> None:
        self.site = site
        self.clock = clock
        self._http1 = http1
        self.chosen: IProtocol | None = None
        self._idle: IDelayedCall | None = None

    def connectionMade(self) -> None:
        timeout = self.site.timeOut
        if timeout:
            self._idle = self.clock.callLater(timeout, self._idle_hit)

    def _idle_hit(self) -> None:
        self._idle = None
        if self.chosen is None and self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def _hand_over(self, http2: bool) -> IProtocol:
        idle = self._idle
        if idle is not None:
            self._idle = None
            if idle.active():
                idle.cancel()
        chosen: IProtocol
        if http2:
            chosen = H2ServerConnection(self.site, self.clock)
        else:
            chosen = self._http1()
        self.chosen = chosen
        # Straight through from now on.
        self.dataReceived = chosen.dataReceived  # type: ignore[method-assign]
        self.connectionLost = chosen.connectionLost  # type: ignore[method-assign,assignment]
        assert self.transport is not None
        chosen.makeConnection(self.transport)
        return chosen

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        idle = self._idle
        if idle is not None and idle.active():
            idle.cancel()
        self._idle = None
        if self.chosen is not None:
            self.chosen.connectionLost(reason)


@implementer(IHandshakeListener)
class NegotiatingProtocol(_HeldUntilChosen):
    """The HTTPS listener's protocol: HTTP/2 or HTTP/1.1, as ALPN decided."""

    def handshakeCompleted(self) -> None:
        if self.chosen is None:
            self._choose()

    def _choose(self) -> IProtocol:
        negotiated = getattr(self.transport, "negotiatedProtocol", None)
        return self._hand_over(negotiated == b"h2")

    def dataReceived(self, data: bytes) -> None:
        chosen = self.chosen if self.chosen is not None else self._choose()
        chosen.dataReceived(data)


# RFC 9113 section 3.4: what a client with prior knowledge sends first.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class PriorKnowledgeProtocol(_HeldUntilChosen):
    """
    The protocol the plain HTTP listener builds per connection: HTTP/2
    (h2c with prior knowledge, RFC 9113 section 3.3, what gRPC clients in a
    cluster send) when the first bytes are the HTTP/2 connection preface,
    the hardened HTTP/1.1 L{GatewayChannel} otherwise.

    The first bytes decide: an HTTP/1.1 request line can never begin with
    the preface (C{PRI} is no method the gateway serves), and a client that
    sends part of it waits with it, so a short read is held until the
    preface is complete or has been contradicted.  After the choice every
    call goes straight to the chosen protocol.
    """

    def __init__(self, site: GatewaySite, clock: Any, http1: Callable[[], IProtocol]) -> None:
        super().__init__(site, clock, http1)
        self._held = b""

    def dataReceived(self, data: bytes) -> None:
        held = self._held + data
        if len(held) < len(PREFACE) and PREFACE.startswith(held):
            self._held = held  # could still be the preface
            return
        self._held = b""
        self._hand_over(held.startswith(PREFACE)).dataReceived(held)
