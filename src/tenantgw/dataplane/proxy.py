"""
One proxied exchange: a client request carried to one upstream endpoint and
its response carried back, both bodies streamed with backpressure.

Statuses this layer answers: 502 when the upstream refuses, resets or sends
something malformed, 504 when it does not answer within the route's timeout.
Once the response has started, an upstream failure can only be signalled by
cutting the client connection, which is what a truncated body means in HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.web.http import RESPONSES
from zope.interface import implementer

from tenantgw.dataplane.health import EndpointHealth
from tenantgw.dataplane.request import GatewayRequest
from tenantgw.dataplane.responses import grpc_trailers, respond
from tenantgw.dataplane.upstream import (
    EndpointKey,
    ResponseHeaders,
    UpstreamConnection,
)
from tenantgw.http2.client import SPEAKS_HTTP1
from tenantgw.wire import grpc
from tenantgw.wire.fields import HOP_BY_HOP, connection_options

if TYPE_CHECKING:
    from tenantgw.dataplane.context import Forward, RequestContext

_log = Logger()

# Never copied from the client's request: the hop-by-hop table (in the
# Header-Case twisted.web stores names in), framing, which the gateway
# writes itself, and the fields the gateway sets.
_NOT_COPIED = frozenset(
    {b"TE" if name == b"te" else name.title() for name in HOP_BY_HOP}
    | {
        b"Expect",
        b"Content-Length",
        b"Host",
        b"X-Forwarded-For",
        b"X-Forwarded-Proto",
        b"X-Forwarded-Host",
        b"X-Request-Id",
        b"X-Real-Ip",
        b"X-Forwarded-Port",
        b"X-Scheme",
        b"X-Original-Forwarded-For",
    }
)

# The same, lower case, for an HTTP/2 upstream (whose field names must be).
# TE is written by the exchange: "trailers" when the client accepts them.
_NOT_COPIED_H2 = frozenset(name.lower() for name in _NOT_COPIED)

# Backend protocols (tenantgw.plans.snapshot.BackendPlan.protocol).
PROTOCOL_HTTP1 = "h1"
PROTOCOL_H2C = "h2c"
# TLS, with h2 offered by ALPN: HTTP/2 when the upstream agrees, else HTTP/1.1.
PROTOCOL_TLS_ALPN = "tls"

_MAX_STALE_RETRIES = 2

# RFC 9110 section 9.2.2: asking these twice means the same as asking once.
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
_RETRIED_STATUSES = frozenset({502, 503})

# Framing headers make no sense on a switched connection; Upgrade and
# Connection are kept, since the client needs them to accept the switch.
_TUNNEL_DROPPED = frozenset({b"content-length", b"transfer-encoding", b"keep-alive"})


def upgrade_requested(request: GatewayRequest) -> bytes | None:
    """
    The protocol a client asks to switch to (RFC 9110 section 7.8), when the
    request can be tunnelled: an HTTP/1.1 GET on a connection of our own
    (HTTP/2 has no Upgrade) without a body.  Never h2c: after a 101 the
    bytes that follow reach the backend without any route, access or quota
    check, so an h2c upgrade is served as the plain HTTP/1.1 request it also
    is, and its Upgrade and HTTP2-Settings fields are dropped.
    """
    headers = request.requestHeaders
    upgrade = headers.getRawHeaders(b"upgrade")
    if not upgrade:
        return None  # nearly every request: one lookup and out
    if request.method != b"GET" or request.clientproto != b"HTTP/1.1" or request.multiplexed:
        return None
    connection = headers.getRawHeaders(b"connection")
    if not connection or request.declared_length != 0:
        return None
    if b"upgrade" not in connection_options(connection):
        return None
    offered = [token.split(b"/")[0].strip().lower() for token in upgrade[0].split(b",")]
    if b"h2c" in offered or len(upgrade) > 1:
        return None
    return upgrade[0]


def _expects_continue(request: GatewayRequest) -> bool:
    """The client waits for 100 Continue before it sends its body."""
    expect = request.requestHeaders.getRawHeaders(b"expect")
    return expect is not None and expect[0].lower() == b"100-continue"


@implementer(IPushProducer)
class _ClientBodyThrottle:
    """Registered with the upstream socket: a full upstream pauses the client."""

    def __init__(self, request: GatewayRequest) -> None:
        self.request = request

    def pauseProducing(self) -> None:
        self.request.pause_client()

    def resumeProducing(self) -> None:
        self.request.resume_client()

    def stopProducing(self) -> None:
        # The upstream socket is going away; the exchange decides what
        # happens to the client, not the throttle.
        pass


@implementer(IPushProducer)
class _UpstreamThrottle:
    """
    Registered with the client request: a slow client pauses the upstream.
    A separate object from the connection, so that a pooled connection never
    stays registered with a request that is already done.
    """

    def __init__(self, connection: UpstreamConnection) -> None:
        self.connection: UpstreamConnection | None = connection

    def pauseProducing(self) -> None:
        if self.connection is not None:
            self.connection.pauseProducing()

    def resumeProducing(self) -> None:
        if self.connection is not None:
            self.connection.resumeProducing()

    def stopProducing(self) -> None:
        if self.connection is not None:
            self.connection.abandon()


def _format_head(
    method: bytes,
    target: bytes,
    host: bytes,
    request: GatewayRequest,
    forwarded: Sequence[tuple[bytes, bytes]],
    body_length: int | None,
    upgrade: bytes | None = None,
) -> bytes:
    parts: list[bytes] = [method, b" ", target, b" HTTP/1.1\r\nHost: ", host, b"\r\n"]
    if upgrade is not None:
        parts += (b"Upgrade: ", upgrade, b"\r\nConnection: upgrade\r\n")
    # Fields the client's Connection nominated were removed on arrival
    # (tenantgw.dataplane.stages.hosts.strip_hop_by_hop), before any route edit.
    for name, values in request.requestHeaders.getAllRawHeaders():
        if name in _NOT_COPIED:
            continue
        for value in values:
            parts += (name, b": ", value, b"\r\n")
    for name, value in forwarded:
        parts += (name, b": ", value, b"\r\n")
    if body_length is None:
        parts.append(b"Transfer-Encoding: chunked\r\n\r\n")
    elif body_length or method in (b"POST", b"PUT", b"PATCH"):
        parts.append(b"Content-Length: %d\r\n\r\n" % body_length)
    else:
        parts.append(b"\r\n")
    return b"".join(parts)


def _h2_head(
    method: bytes,
    target: bytes,
    host: bytes,
    request: GatewayRequest,
    forwarded: Sequence[tuple[bytes, bytes]],
    body_length: int | None,
    secure: bool,
    grpc_timeout: bytes | None,
) -> list[tuple[bytes, bytes]]:
    """The request head for an HTTP/2 upstream: the same fields as L{_format_head}, lower case."""
    head = [
        (b":method", method),
        (b":scheme", b"https" if secure else b"http"),
        (b":authority", host),
        (b":path", target),
    ]
    if request.accepts_trailers:
        head.append((b"te", b"trailers"))
    for name, values in request.requestHeaders.getAllRawHeaders():
        name = name.lower()
        if name in _NOT_COPIED_H2:
            continue
        if name == b"grpc-timeout" and grpc_timeout is not None:
            head.append((name, grpc_timeout))
            continue
        for value in values:
            head.append((name, value))
    for name, value in forwarded:
        head.append((name.lower(), value))
    if body_length is not None and (body_length or method in (b"POST", b"PUT", b"PATCH")):
        head.append((b"content-length", b"%d" % body_length))
    return head


class Exchange:
    """Carries one request to one endpoint; reports back through callbacks."""

    def __init__(
        self,
        context: RequestContext,
        forward: Forward,
        done: Callable[[RequestContext], None],
    ) -> None:
        """
        C{context} names the request, its route and the endpoint picked;
        C{forward} is what the forwarding stage decided the upstream gets;
        C{done} is given the context once, when the exchange ends (admission's
        release of what the request held).
        """
        request = context.request
        route = context.route
        key = context.endpoint
        assert route is not None and key is not None
        gateway = context.gateway
        self.context = context
        self.request = request
        self.pool = gateway.pool
        # Backends that are not plain HTTP/1.1, by endpoint (None: none are).
        self.protocols: Mapping[EndpointKey, str] | None = route.protocols
        self.h2_pool = gateway.h2_pool
        self.h2 = False
        self.grpc = grpc.is_grpc(request.requestHeaders.getRawHeaders(b"content-type", [None])[0])
        self.h2_head: list[tuple[bytes, bytes]] | None = None
        method = request.method
        target, host, forwarded = forward.target, forward.host, forward.forwarded
        self._head_args = (method, target, host, forwarded)
        deadlines = self.deadlines = gateway.deadlines
        self.key = key
        self.method = method
        self.edit_response = route.edit_response
        self.done = done
        self.connection: UpstreamConnection | None = None
        self.throttle: _UpstreamThrottle | None = None
        self.body_length = request.declared_length
        self.has_body = self.body_length != 0
        self.upgrade = request.upgrade
        self.tunnel = False
        self.head = _format_head(
            method, target, host, request, forwarded, self.body_length, self.upgrade
        )
        timeout = self.timeout = route.timeout
        if self.grpc:
            timeout = self._grpc_deadline(timeout)
        self._choose_protocol(key)
        # A fresh bound method each time (equal, same hash): one kept on self
        # would tie the exchange to itself in a cycle.
        self.deadline: int | None = deadlines.add(timeout, self._timed_out)
        self.finished = False
        self.body_started = False
        self.stale_retries = 0
        self.status = 0
        self.request_sent = not self.has_body
        # Only policies that read in-flight counts need them kept.
        load = self.load = gateway.endpoint_load if route.picker.reads_load else None
        attempts = route.retry_attempts
        self.retry: Callable[[set[EndpointKey]], EndpointKey | None] | None = (
            route.another_endpoint if attempts else None
        )
        self.retries_left = attempts if method in _IDEMPOTENT else 0
        self.tried = {key}
        self.extra_response_headers = forward.extra_response_headers
        self.health: EndpointHealth | None = gateway.health
        self.cache_fill = forward.cache_fill
        if load is not None:
            load.enter(key)
        request.exchange = self

    def _grpc_deadline(self, timeout: float) -> float:
        """A gRPC call's own deadline, when shorter than the route's; never longer."""
        value = self.request.requestHeaders.getRawHeaders(b"grpc-timeout", [None])[0]
        asked = grpc.parse_timeout(value) if value is not None else None
        if asked is not None and asked < timeout:
            return asked
        # Missing, malformed or longer: the upstream is told the route's bound.
        self._grpc_timeout = grpc.format_timeout(timeout)
        return timeout

    _grpc_timeout: bytes | None = None

    def _choose_protocol(self, key: EndpointKey) -> None:
        """HTTP/2 for h2c backends, and TLS ones unless their endpoint chose HTTP/1.1."""
        protocols = self.protocols
        protocol = protocols.get(key, PROTOCOL_HTTP1) if protocols else PROTOCOL_HTTP1
        pool = self.h2_pool
        self.h2 = (
            pool is not None
            and self.upgrade is None
            and (
                protocol == PROTOCOL_H2C
                or (protocol == PROTOCOL_TLS_ALPN and not pool.known_http1(key))
            )
        )
        if self.h2 and self.h2_head is None:
            method, target, host, forwarded = self._head_args
            self.h2_head = _h2_head(
                method,
                target,
                host,
                self.request,
                forwarded,
                self.body_length,
                key[2] is not None,
                self._grpc_timeout,
            )

    def start(self) -> None:
        """
        Dials now for a request without a body, or one whose client waits
        for 100 Continue; otherwise once the first byte of the body is in,
        so that a client that declares a body and sends none never holds an
        upstream connection.
        """
        request = self.request
        if (
            self.has_body
            and not request.body_received
            and not request.body_complete
            and not _expects_continue(request)
        ):
            request.when_body_starts(self._dial)
            return
        self._dial()

    def _dial(self) -> None:
        if not self.finished:
            self._get(self.key)

    def _get(self, key: EndpointKey) -> None:
        pool: Any = self.h2_pool if self.h2 else self.pool
        pool.get(
            key,
            self._connected,
            self._connect_failed,
            tenant=self.request.tenant_namespace,
            wanted=self.wanted,
        )

    def wanted(self) -> bool:
        """Whether a connection is still of use to this exchange (queued dials ask)."""
        return not self.finished

    # -- connection ------------------------------------------------------------

    def _connected(self, connection: UpstreamConnection) -> None:
        if self.finished:
            connection.pool.release(connection)
            return
        self.connection = connection
        request = self.request
        h2 = self.h2
        head: Any = self.h2_head if h2 else self.head
        connection.start(self, head, self.method == b"HEAD", self.upgrade is not None)
        if not self.has_body:
            return
        self.body_started = True
        if request.clientproto == b"HTTP/1.1" and _expects_continue(request):
            request.gateway_channel.send_continue()
        connection.stream.registerProducer(_ClientBodyThrottle(request), True)
        if h2:
            request.stream_body(connection.write_body, self._h2_body_sent)
        elif self.body_length is None:
            request.stream_body(self._send_chunk, self._send_last_chunk)
        else:
            request.stream_body(connection.write_body, self._body_sent)

    def _send_chunk(self, data: bytes) -> None:
        if data and self.connection is not None:
            self.connection.stream.writeSequence((b"%x\r\n" % len(data), data, b"\r\n"))

    def _send_last_chunk(self) -> None:
        if self.connection is not None:
            trailers = self.request.request_trailers
            self.connection.write_body(
                b"".join([b"0\r\n", *(b"%s: %s\r\n" % field for field in trailers), b"\r\n"])
                if trailers
                else b"0\r\n\r\n"
            )
        self._body_sent()

    def _h2_body_sent(self) -> None:
        connection = self.connection
        if connection is not None:
            connection.end_body(self.request.request_trailers)  # type: ignore[attr-defined]
        self._body_sent()

    def _body_sent(self) -> None:
        self.request_sent = True
        if self.connection is not None:
            self.connection.stream.unregisterProducer()

    def _connect_failed(self, reason: str) -> None:
        if self.finished:
            return
        if self.h2 and reason == SPEAKS_HTTP1:
            # A TLS upstream that chose HTTP/1.1 by ALPN: asked again in it.
            self.h2 = False
            self._get(self.key)
            return
        _log.info("upstream {key} connect failed: {reason}", key=self.key, reason=reason)
        self.request.upstream_error = "connect"
        self._endpoint_failed()
        if not self._retry_elsewhere():
            self._fail(502)

    # -- ExchangeHandler -----------------------------------------------------------

    def upstream_head(self, code: int, reason: bytes, headers: ResponseHeaders) -> None:
        request = self.request
        if self.finished or request.channel is None or request.refused:
            return
        self.status = code
        if code == 101 and self.upgrade is not None:
            self._start_tunnel(headers)
            return
        if code >= 500:
            self._endpoint_failed()
        elif self.health is not None:
            self.health.succeeded(self.key)
        if code in _RETRIED_STATUSES and self.retries_left > 0 and not self.body_started:
            connection, self.connection = self.connection, None
            if self._retry_elsewhere():
                if connection is not None:
                    connection.abandon()  # its body is unread: never pooled
                return
            self.connection = connection
        if b"\r" in reason or b"\n" in reason or len(reason) > 128:
            reason = RESPONSES.get(code, b"")
        dropped = HOP_BY_HOP
        for name, value in headers:
            if name == b"connection":
                dropped = dropped | {t.strip().lower() for t in value.split(b",")}
        kept = [(name, value) for name, value in headers if name not in dropped]
        kept.append((b"x-request-id", request.request_id))
        kept.extend(self.extra_response_headers)
        if self.edit_response is not None:
            kept = self.edit_response(kept)
        if self.cache_fill is not None:
            self.cache_fill.head(code, reason, kept)
        assert self.connection is not None
        self.throttle = _UpstreamThrottle(self.connection)
        request.registerProducer(self.throttle, True)
        # For the upstream latency histogram: when the upstream's head arrived.
        request.upstream_answered_at = self.deadlines.now()
        # Headers go out now, even for an empty or slow body, so a client
        # sees the status as soon as the upstream has decided it.
        request.start_response(
            code,
            reason or RESPONSES.get(code, b"Unknown"),
            kept,
            head_only=getattr(self.connection, "head_only", False),
        )

    def upstream_trailers(self, trailers: ResponseHeaders) -> None:
        """An HTTP/2 upstream's trailers: to a client that can take them (L{GatewayRequest.send_trailers})."""
        request = self.request
        if not self.finished and request.channel is not None and not request.refused:
            request.send_trailers(trailers)

    def upstream_data(self, data: bytes) -> None:
        request = self.request
        if not self.finished and request.channel is not None and not request.refused:
            if self.tunnel:
                request.gateway_channel.stream.write(data)
            else:
                request.write(data)
                if self.cache_fill is not None:
                    self.cache_fill.data(data)

    def upstream_finished(self) -> None:
        if self.finished:
            return
        if self.tunnel:
            # The upstream ended the tunnel: so does the client connection.
            self._release_throttle()
            self._close(101)
            if self.request.channel is not None:
                self.request.gateway_channel.stream.loseConnection()
            return
        request = self.request
        if self.cache_fill is not None:
            self.cache_fill.finished()
        self._release_throttle()
        self._close(self.status or 502)
        if request.channel is not None and not request.finished:
            request.finish()

    def upstream_failed(self, reason: str, response_started: bool) -> None:
        if self.finished:
            return
        connection, self.connection = self.connection, None
        if (
            not response_started
            and connection is not None
            and connection.reused
            and not self.body_started
            and self.stale_retries < _MAX_STALE_RETRIES
        ):
            # A pooled connection the upstream had already closed: nothing
            # reached the application, so asking again is safe.
            self.stale_retries += 1
            self._get(self.key)
            return
        _log.info("upstream {key} failed: {reason}", key=self.key, reason=reason)
        self._endpoint_failed()
        self.request.upstream_error = "reset"
        if response_started:
            self._cut_short()
        elif not self._retry_elsewhere():
            self._fail(502)

    def _endpoint_failed(self) -> None:
        if self.health is not None:
            self.health.failed(self.key)

    def _retry_elsewhere(self) -> bool:
        """
        Asks another endpoint, when the route allows retries, the method is
        idempotent and no byte of a request body has been sent: only then is
        it certain that asking again changes nothing the first ask did.
        """
        if self.retries_left <= 0 or self.body_started or self.retry is None:
            return False
        key = self.retry(self.tried)
        if key is None:
            return False
        self.retries_left -= 1
        self.tried.add(key)
        if self.load is not None:
            self.load.leave(self.key)
            self.load.enter(key)
        self.key = self.context.endpoint = key
        self.stale_retries = 0
        self.request.upstream = f"{key[0]}:{key[1]}"
        if self.protocols:
            self._choose_protocol(key)
        self._get(key)
        return True

    def _start_tunnel(self, headers: ResponseHeaders) -> None:
        """
        The upstream switched protocols: its 101 goes to the client as it
        came (Upgrade and Connection included, which are hop-by-hop only for
        HTTP), and from here on bytes flow both ways untouched, each side
        throttling the other.  The exchange deadline no longer applies: a
        WebSocket may stay open for hours.
        """
        request = self.request
        connection = self.connection
        assert connection is not None
        self.tunnel = True
        deadline = self.deadline
        if deadline is not None:
            self.deadline = None
            self.deadlines.discard(deadline, self._timed_out)
        kept = [(name, value) for name, value in headers if name not in _TUNNEL_DROPPED]
        kept.append((b"x-request-id", request.request_id))
        request.code = 101
        request.startedWriting = 1
        head = [b"HTTP/1.1 101 Switching Protocols\r\n"]
        head += [b"%s: %s\r\n" % pair for pair in kept]
        head.append(b"\r\n")
        channel = request.gateway_channel
        channel.stream.write(b"".join(head))
        self.throttle = _UpstreamThrottle(connection)
        request.registerProducer(self.throttle, True)
        connection.stream.registerProducer(_ClientBodyThrottle(request), True)
        channel.start_tunnel(connection.write_body)

    # -- endings ---------------------------------------------------------------------

    def _timed_out(self) -> None:
        self.deadline = None
        if self.finished:
            return
        self._endpoint_failed()
        self.request.upstream_error = "timeout"
        self._drop_connection()
        request = self.request
        if request.startedWriting:
            if self.grpc and request.multiplexed and request.channel is not None:
                # A gRPC client reads a deadline from grpc-status, not a reset.
                self._release_throttle()
                self._close(self.status)
                request.send_trailers(grpc_trailers(504))
                request.finish()
                return
            self._cut_short()
        else:
            self._fail(504)

    def client_gone(self) -> None:
        """The client disconnected: cancel the upstream request with it."""
        if self.finished:
            return
        self._drop_connection()
        self._release_throttle()
        self._close(499)

    def _fail(self, status: int) -> None:
        self._drop_connection()
        self._close(status)
        respond(self.request, status)

    def _cut_short(self) -> None:
        """
        The response has started, so the only way left to report a failure
        is a truncated body: the client connection is aborted.
        """
        self._release_throttle()
        self._close(self.status)
        self.request.abort()

    def _drop_connection(self) -> None:
        """The upstream connection's state is unknown now: closed, never pooled."""
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.abandon()

    def _release_throttle(self) -> None:
        throttle = self.throttle
        if throttle is not None:
            throttle.connection = None
            self.throttle = None
            request = self.request
            # After the client's connection is gone there is no channel to
            # unregister from; raising here would skip the release of the
            # tenant's concurrency slot (a WebSocket closed by its client
            # leaked it for good).
            if request.producer is throttle and request.channel is not None:
                request.unregisterProducer()

    def _close(self, status: int) -> None:
        self.finished = True
        if self.load is not None:
            self.load.leave(self.key)
            self.load = None
        self.request.stop_body()
        if self.request._client_paused:
            self.request.resume_client()
        deadline = self.deadline
        if deadline is not None:
            self.deadline = None
            self.deadlines.discard(deadline, self._timed_out)
        self.done(self.context)
        # The request and its exchange point at each other: unlinked once the
        # exchange is over, both go when their last reference does, instead of
        # piling up for the cyclic collector (whose full passes over the heap
        # were the gateway's p99).
        if self.request.exchange is self:
            self.request.exchange = None
