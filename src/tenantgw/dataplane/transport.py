"""
What the data plane needs of a connection's transport, as one type.

Twisted types C{Protocol.transport} as an optional C{ITransport}, which
has no producer methods; every transport the gateway runs on (TCP, UNIX,
TLS) is also a push producer and consumer.  Naming that once keeps the
type checker useful instead of silenced line by line.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, cast

from twisted.internet.interfaces import IAddress, IPushProducer


class StreamTransport(Protocol):
    def write(self, data: bytes) -> None: ...

    def writeSequence(self, data: Iterable[bytes]) -> None: ...

    def loseConnection(self) -> None: ...

    def abortConnection(self) -> None: ...

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None: ...

    def unregisterProducer(self) -> None: ...

    def getPeer(self) -> IAddress: ...

    def setTcpNoDelay(self, enabled: bool) -> None: ...


def stream_of(transport: object) -> StreamTransport:
    return cast(StreamTransport, transport)


def sni_name(transport: object) -> str | None:
    """
    The TLS SNI name a connection was opened for (lower case, no trailing
    dot), or L{None} on a plain connection or one that named no server.
    """
    get_handle = getattr(transport, "getHandle", None)
    if get_handle is None:
        return None
    raw = getattr(get_handle(), "get_servername", lambda: None)()
    return raw.decode("ascii", "replace").lower().rstrip(".") if raw else None
