"""
Pooled, keep-alive HTTP/1.1 connections to upstream endpoints.

This is a deliberately small client.  C{twisted.web.client.Agent} allocates a
chain of Deferreds, a Response and a body protocol per request, which caps a
proxy built on it at a few thousand requests a second on one core; a proxy
needs none of that generality.  Here one L{UpstreamConnection} parses the
response head itself and hands events straight to the L{ExchangeHandler}
that is using it, and a connection goes back to its endpoint's idle list the
moment its response is complete.

Backpressure is plain Twisted producer/consumer: the connection is an
L{IPushProducer} that the client-facing request registers, so a slow client
pauses reading from the upstream socket.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from typing import Protocol

from twisted.internet.interfaces import IPushProducer, IReactorTCP, IReactorTime
from twisted.internet.protocol import ClientFactory
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import _ChunkedTransferDecoder, _MalformedChunkedDataError
from zope.interface import implementer

from tenantgw.dataplane.transport import StreamTransport, stream_of
from tenantgw.tls.upstream import UpstreamTrust

MAX_RESPONSE_HEAD_BYTES = 64 * 1024
# RFC 9110 token characters: header names are forwarded as received.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+\Z")
MAX_RESPONSE_HEADERS = 200

# (address, port, TLS name or None): TLS and plain connections never share a pool.
EndpointKey = tuple[str, int, "str | None"]
ResponseHeaders = list[tuple[bytes, bytes]]
# A request for a connection waiting for a dial slot: key, on_ready, on_fail, wanted.
_Waiting = tuple[
    EndpointKey,
    Callable[["UpstreamConnection"], None],
    Callable[[str], None],
    "Callable[[], bool] | None",
]
# Dials in progress per tenant before further ones wait in line.
DEFAULT_MAX_PENDING_CONNECTS = 64

_log = Logger()


class UpstreamProtocolError(Exception):
    """The upstream answered something that is not a well-formed HTTP/1.1 response."""


class ExchangeHandler(Protocol):
    """What an L{UpstreamConnection} reports to while it carries one exchange."""

    def upstream_head(self, code: int, reason: bytes, headers: ResponseHeaders) -> None: ...

    def upstream_data(self, data: bytes) -> None: ...

    def upstream_finished(self) -> None: ...

    def upstream_failed(self, reason: str, response_started: bool) -> None: ...

    @property
    def request_sent(self) -> bool:
        """False while the request body is still streaming: such a connection is not reusable."""


_IDLE, _HEAD, _BODY_LENGTH, _BODY_CHUNKED, _BODY_UNTIL_CLOSE, _CLOSED = range(6)


@implementer(IPushProducer)
class UpstreamConnection(TwistedProtocol):
    """One TCP connection to one endpoint, carrying one exchange at a time."""

    def __init__(self, pool: UpstreamPool, key: EndpointKey) -> None:
        self.pool = pool
        self.key = key
        self.handler: ExchangeHandler | None = None
        self.idle_since = 0.0
        self.reused = False
        self._state = _IDLE
        self._buffer = b""
        self._remaining = 0
        self._keep_alive = True
        self._head_request = False
        self._response_started = False
        self._chunked: _ChunkedTransferDecoder | None = None
        self._upgrade = False
        self._paused = False
        self.announce: Callable[[UpstreamConnection], None] | None = None

    @property
    def stream(self) -> StreamTransport:
        return stream_of(self.transport)

    # -- driving an exchange ----------------------------------------------------

    def start(
        self, handler: ExchangeHandler, head: bytes, head_request: bool, upgrade: bool = False
    ) -> None:
        self.handler = handler
        self._upgrade = upgrade
        self._state = _HEAD
        self._buffer = b""
        self._keep_alive = True
        self._head_request = head_request
        self._response_started = False
        self.stream.write(head)

    def write_body(self, data: bytes) -> None:
        self.stream.write(data)

    def abandon(self) -> None:
        """The client went away or timed out: this connection's state is unknown now."""
        self.handler = None
        if self._state != _CLOSED:
            self._state = _CLOSED
            self.stream.abortConnection()

    # -- IPushProducer, registered with the client-facing request ---------------

    def pauseProducing(self) -> None:
        if not self._paused and self._state != _CLOSED:
            self._paused = True
            self.stream.pauseProducing()

    def resumeProducing(self) -> None:
        if self._paused and self._state != _CLOSED:
            self._paused = False
            self.stream.resumeProducing()

    def stopProducing(self) -> None:
        self.abandon()

    # -- protocol ------------------------------------------------------------------

    def connectionMade(self) -> None:
        self.stream.setTcpNoDelay(True)
        announce, self.announce = self.announce, None
        if announce is not None:
            announce(self)

    def dataReceived(self, data: bytes) -> None:
        state = self._state
        if state == _BODY_LENGTH:
            self._body_with_length(data)
        elif state == _HEAD:
            self._head_data(data)
        elif state == _BODY_CHUNKED:
            self._body_chunked(data)
        elif state == _BODY_UNTIL_CLOSE:
            self._deliver(data)
        elif state == _IDLE:
            # Nothing was asked: an idle connection that talks is broken.
            self._fail_and_close("unsolicited data from upstream")

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        state = self._state
        self._state = _CLOSED
        self.pool.forget(self)
        if self._paused:
            self._paused = False
        handler = self.handler
        self.handler = None
        if handler is None:
            return
        if state == _BODY_UNTIL_CLOSE:
            handler.upstream_finished()
        elif state in (_HEAD, _BODY_LENGTH, _BODY_CHUNKED):
            # The reason names a failed TLS verification, which the operator
            # must be able to tell from a plain reset.
            why = reason.getErrorMessage() if reason is not None else "closed"
            if self._response_started:
                handler.upstream_failed(f"upstream connection lost mid-response: {why}", True)
            else:
                handler.upstream_failed(f"upstream connection lost: {why}", False)

    # -- response parsing --------------------------------------------------------------

    def _head_data(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_RESPONSE_HEAD_BYTES:
                    self._fail_and_close("upstream response head too large")
                else:
                    self._buffer = buffer
                return
            try:
                code, reason, headers, framing = self._parse_head(buffer[:end])
            except UpstreamProtocolError as e:
                self._fail_and_close(str(e))
                return
            buffer = buffer[end + 4 :]
            if code == 101 and self._upgrade:
                # Switching protocols: final, and what follows is the new
                # protocol's bytes until the connection closes.
                framing = None
                break
            if 100 <= code < 200:
                # Interim responses (100 Continue, 103 Early Hints) are
                # consumed here; the client sees the final one only.
                continue
            break
        self._buffer = b""
        self._response_started = True
        handler = self.handler
        assert handler is not None
        no_body = self._head_request or code in (204, 304)
        if no_body:
            framing = 0
        if framing is None:
            self._state = _BODY_UNTIL_CLOSE
            self._keep_alive = False
        elif framing == -1:
            self._state = _BODY_CHUNKED
            self._chunked = _ChunkedTransferDecoder(self._deliver, self._chunked_done)
        else:
            self._state = _BODY_LENGTH
            self._remaining = framing
        handler.upstream_head(code, reason, headers)
        if self.handler is not handler:
            return  # the handler gave up on us while handling the head
        if self._state == _BODY_LENGTH and self._remaining == 0:
            if buffer and not no_body:
                self._fail_and_close("upstream sent more than it declared")
                return
            self._complete()
        elif buffer:
            self.dataReceived(buffer)

    def _parse_head(self, head: bytes) -> tuple[int, bytes, ResponseHeaders, int | None]:
        """
        Returns the framing as the body length, -1 for chunked, or None for
        "until the connection closes".  Anything ambiguous is an error, since
        a proxy that guesses at framing is a proxy that can be desynchronised.
        """
        lines = head.split(b"\r\n")
        status = lines[0]
        line_ends = head.count(b"\r\n")
        if head.count(b"\n") != line_ends or head.count(b"\r") != line_ends:
            raise UpstreamProtocolError("bare LF or CR in upstream response head")
        if len(status) < 12 or not status.startswith(b"HTTP/1.") or status[8:9] != b" ":
            raise UpstreamProtocolError("malformed upstream status line")
        code_bytes = status[9:12]
        if not code_bytes.isdigit() or (len(status) > 12 and status[12:13] != b" "):
            raise UpstreamProtocolError("malformed upstream status code")
        code = int(code_bytes)
        if code < 100:
            raise UpstreamProtocolError("malformed upstream status code")
        reason = status[13:]
        http10 = status[7:8] == b"0"
        if len(lines) - 1 > MAX_RESPONSE_HEADERS:
            raise UpstreamProtocolError("too many upstream response headers")
        headers: ResponseHeaders = []
        content_length: int | None = None
        chunked = False
        transfer_encoding = False
        connection_tokens: list[bytes] = []
        for line in lines[1:]:
            field = _FIELDS.get(line)
            if field is None:
                field = _parse_field(line)
            name, value = field
            if name == b"content-length":
                if not value.isdigit() or (
                    content_length is not None and content_length != int(value)
                ):
                    raise UpstreamProtocolError("bad upstream Content-Length")
                content_length = int(value)
            elif name == b"transfer-encoding":
                transfer_encoding = True
                codings = [c.strip().lower() for c in value.split(b",")]
                chunked = codings[-1] == b"chunked"
            elif name == b"connection":
                connection_tokens.extend(t.strip().lower() for t in value.split(b","))
            headers.append((name, value))
        if transfer_encoding and content_length is not None:
            raise UpstreamProtocolError("upstream sent both Content-Length and Transfer-Encoding")
        if b"close" in connection_tokens or (http10 and b"keep-alive" not in connection_tokens):
            self._keep_alive = False
        framing: int | None
        if transfer_encoding:
            framing = -1 if chunked and not http10 else None
        elif content_length is not None:
            framing = content_length
        else:
            framing = None
        return code, reason, headers, framing

    def _body_with_length(self, data: bytes) -> None:
        remaining = self._remaining
        if len(data) < remaining:
            self._remaining = remaining - len(data)
            self._deliver(data)
            return
        if len(data) > remaining:
            self._fail_and_close("upstream sent more than it declared")
            return
        self._remaining = 0
        self._deliver(data)
        self._complete()

    def _body_chunked(self, data: bytes) -> None:
        assert self._chunked is not None
        try:
            self._chunked.dataReceived(data)
        except _MalformedChunkedDataError:
            self._fail_and_close("malformed chunked body from upstream")

    def _chunked_done(self, extra: bytes) -> None:
        self._chunked = None
        if extra:
            self._keep_alive = False
        self._complete()

    def _deliver(self, data: bytes) -> None:
        handler = self.handler
        if handler is not None and data:
            handler.upstream_data(data)

    def _complete(self) -> None:
        handler = self.handler
        self.handler = None
        if self._keep_alive and handler is not None and handler.request_sent:
            self._state = _IDLE
            if self._paused:
                self._paused = False
                self.stream.resumeProducing()
            self.pool.release(self)
        else:
            self._state = _CLOSED
            self.stream.loseConnection()
        if handler is not None:
            handler.upstream_finished()

    def _fail_and_close(self, reason: str) -> None:
        handler = self.handler
        self.handler = None
        started = self._response_started
        self._state = _CLOSED
        self.stream.abortConnection()
        if handler is not None:
            _log.info("upstream {key} protocol error: {reason}", key=self.key, reason=reason)
            handler.upstream_failed(reason, started)


# Validated field lines, keyed by the raw line: an upstream sends the same
# Server, Content-Type and Connection lines on every response, so most lines
# are checked once.  Bounded by clearing, which is rare and cheap.
_FIELDS: dict[bytes, tuple[bytes, bytes]] = {}
_FIELDS_MAX = 4096


def _parse_field(line: bytes) -> tuple[bytes, bytes]:
    colon = line.find(b":")
    if colon <= 0 or line[0] in b" \t":
        raise UpstreamProtocolError("malformed upstream header")
    name = line[:colon].lower()
    if _TOKEN.match(name) is None:
        raise UpstreamProtocolError("malformed upstream header name")
    value = line[colon + 1 :].strip(b" \t")
    if b"\x00" in value:
        raise UpstreamProtocolError("NUL in upstream header")
    if len(_FIELDS) >= _FIELDS_MAX:
        _FIELDS.clear()
    field = (name, value)
    _FIELDS[line] = field
    return field


class _Connect(ClientFactory):
    """
    Announces a connection to its requester only once TCP is established, so
    that a pending exchange never writes into a half-open socket.
    """

    noisy = False

    def __init__(
        self,
        pool: UpstreamPool,
        key: EndpointKey,
        on_ready: Callable[[UpstreamConnection], None],
        on_fail: Callable[[str], None],
        tenant: str = "",
    ) -> None:
        self.pool = pool
        self.key = key
        self.on_ready = on_ready
        self.on_fail = on_fail
        self.tenant = tenant

    def buildProtocol(self, addr: object) -> UpstreamConnection:
        connection = UpstreamConnection(self.pool, self.key)
        connection.announce = self._ready
        return connection

    def _ready(self, connection: UpstreamConnection) -> None:
        self.pool.dial_settled(self.tenant)
        self.on_ready(connection)

    def clientConnectionFailed(self, connector: object, reason: Failure) -> None:
        self.pool.dial_settled(self.tenant)
        self.on_fail(reason.getErrorMessage())


class UpstreamPool:
    """
    Idle keep-alive connections per endpoint.  Idle connections are swept on
    a timer rather than each carrying its own delayed call, because arming
    and cancelling a timer per request costs more than the whole lookup.
    """

    def __init__(
        self,
        reactor: IReactorTCP,
        clock: IReactorTime,
        max_idle_per_endpoint: int = 256,
        idle_timeout: float = 50.0,
        connect_timeout: float = 5.0,
        trust: UpstreamTrust | None = None,
        max_pending_connects: int = DEFAULT_MAX_PENDING_CONNECTS,
    ) -> None:
        self._reactor = reactor
        self._trust = trust or UpstreamTrust()
        self._clock = clock
        self.max_idle_per_endpoint = max_idle_per_endpoint
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.max_pending_connects = max_pending_connects
        self._pending: dict[str, int] = {}
        self._waiting: dict[str, deque[_Waiting]] = {}
        self._idle: dict[EndpointKey, list[UpstreamConnection]] = {}
        self._sweeper = LoopingCall(self.close_expired)
        self._sweeper.clock = clock
        self.connections_opened = 0

    def start(self) -> None:
        if not self._sweeper.running:
            self._sweeper.start(max(1.0, self.idle_timeout / 5), now=False)

    def stop(self) -> None:
        if self._sweeper.running:
            self._sweeper.stop()
        for connections in list(self._idle.values()):
            for connection in list(connections):
                connection.abandon()
        self._idle.clear()

    def get(
        self,
        key: EndpointKey,
        on_ready: Callable[[UpstreamConnection], None],
        on_fail: Callable[[str], None],
        tenant: str = "",
        wanted: Callable[[], bool] | None = None,
    ) -> None:
        """
        Calls C{on_ready} with a connection, synchronously when one is idle.

        At most C{max_pending_connects} connections are being dialled for one
        C{tenant} at a time; further requests wait in line for one of those
        dials to end and are dropped from the line once C{wanted} says they
        are no longer of use.  Without the bound, a client that opens and
        abandons requests faster than connections complete (HTTP/2 rapid
        reset) turns each request into a TCP connect to the tenant's pods.
        """
        if self._take_idle(key, on_ready):
            return
        if tenant:
            pending = self._pending.get(tenant, 0)
            if pending >= self.max_pending_connects:
                self._waiting.setdefault(tenant, deque()).append((key, on_ready, on_fail, wanted))
                return
            self._pending[tenant] = pending + 1
        self.connect_fresh(key, on_ready, on_fail, tenant)

    def _take_idle(self, key: EndpointKey, on_ready: Callable[[UpstreamConnection], None]) -> bool:
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if connection._state == _IDLE:
                connection.reused = True
                on_ready(connection)
                return True
        return False

    def dial_settled(self, tenant: str) -> None:
        """One of C{tenant}'s dials ended: its slot goes to the next request in line."""
        if not tenant:
            return
        waiting = self._waiting.get(tenant)
        while waiting:
            key, on_ready, on_fail, wanted = waiting.popleft()
            if wanted is not None and not wanted():
                continue
            if not waiting:
                del self._waiting[tenant]
            if self._take_idle(key, on_ready):
                continue  # served without a dial: the slot is still free
            self.connect_fresh(key, on_ready, on_fail, tenant)
            return
        self._waiting.pop(tenant, None)
        left = self._pending.get(tenant, 1) - 1
        if left > 0:
            self._pending[tenant] = left
        else:
            self._pending.pop(tenant, None)

    def pending_connects(self, tenant: str) -> int:
        return self._pending.get(tenant, 0)

    def connect_fresh(
        self,
        key: EndpointKey,
        on_ready: Callable[[UpstreamConnection], None],
        on_fail: Callable[[str], None],
        tenant: str = "",
    ) -> None:
        """A new connection, never one from the idle list (health probes use this)."""
        self.connections_opened += 1
        connect = _Connect(self, key, on_ready, on_fail, tenant)
        address, port, tls_name = key
        if tls_name is None:
            self._reactor.connectTCP(address, port, connect, timeout=self.connect_timeout)
        else:
            # Writes made before the handshake completes are buffered by the
            # TLS layer, so the exchange may start as soon as TCP is up.
            self._reactor.connectSSL(  # type: ignore[attr-defined]
                address,
                port,
                connect,
                self._trust.options_for(tls_name),
                timeout=self.connect_timeout,
            )

    def release(self, connection: UpstreamConnection) -> None:
        idle = self._idle.setdefault(connection.key, [])
        if len(idle) >= self.max_idle_per_endpoint:
            connection._state = _CLOSED
            connection.stream.loseConnection()
            return
        connection.idle_since = self._clock.seconds()
        idle.append(connection)

    def forget(self, connection: UpstreamConnection) -> None:
        idle = self._idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)
            if not idle:
                del self._idle[connection.key]

    def idle_count(self, key: EndpointKey | None = None) -> int:
        if key is not None:
            return len(self._idle.get(key, ()))
        return sum(len(v) for v in self._idle.values())

    def close_expired(self) -> None:
        deadline = self._clock.seconds() - self.idle_timeout
        for key in list(self._idle):
            for connection in [c for c in self._idle.get(key, ()) if c.idle_since <= deadline]:
                connection.abandon()
                self.forget(connection)
