"""
A twisted.web request whose body streams instead of being spooled.

twisted.web collects a whole request body (in memory, or a temporary file
past 100 KB) before it calls a resource.  A proxy must instead start the
upstream exchange as soon as the headers are in and pass the body through
with backpressure, so this request is dispatched twice as far as the channel
is concerned: at the end of the headers (L{headersReceived}, for requests
with a body) and at the end of the body (L{requestReceived}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from twisted.internet.interfaces import IDelayedCall
from twisted.web import server
from twisted.web.http import NO_BODY_CODES

from tenantgw.dataplane.responses import respond
from tenantgw.wire.fields import NOT_IN_TRAILERS, is_token, valid_field_value

if TYPE_CHECKING:
    from tenantgw.dataplane.channel import GatewayChannel
    from tenantgw.dataplane.context import RequestContext
    from tenantgw.dataplane.proxy import Exchange

BodySink = Callable[[bytes], None]

# Bytes of request body held while the upstream connection is being set up;
# past this the client is paused, which is what bounds memory per request.
EARLY_BODY_BUFFER = 64 * 1024


class GatewayRequest(server.Request):
    # No default Content-Type on the gateway's own empty responses.
    defaultContentType = None

    declared_length: int | None = 0
    body_complete = True
    body_received = 0
    body_limit: int | None = None
    dispatched = False
    refused = False
    client_address = ""
    request_id = b""
    tenant_namespace = ""  # set by Gateway.route_to, which tells the metrics
    route_name = ""
    upstream = ""
    # "connect", "timeout" or "reset" when the upstream failed, for metrics.
    upstream_error = ""
    started = 0.0
    logged = False
    exchange: Exchange | None = None
    # What the data plane's stages know of this request (set on arrival).
    context: RequestContext | None = None
    # The protocol an HTTP/1.1 client asked to switch to, when the request
    # may be tunnelled (decided on arrival, before hop-by-hop fields go).
    upgrade: bytes | None = None
    # The client sent "TE: trailers" (read on arrival, before hop-by-hop
    # fields are removed): response trailers may be sent to it.
    accepts_trailers = False
    # The client's request trailers that may go upstream (checked and
    # filtered by the front, set before the body's end is reported).
    request_trailers: list[tuple[bytes, bytes]] = []
    # Trailers for an HTTP/1.1 chunked response, written by finish().
    _trailers: list[tuple[bytes, bytes]] | None = None
    # Which limit refused the request (tenant, client, route, route-client,
    # body), for the quota-rejection metric; "" when no quota refused it.
    quota_limit = ""
    # When the upstream's response head arrived (0: no upstream answered).
    upstream_answered_at = 0.0
    # The route's per-client concurrency slot held by this request, if any.
    client_slot: tuple[str, ...] | None = None
    # CORS headers for the response, decided when the route matched.
    cors_headers: list[tuple[bytes, bytes]] = []
    _body_idle: IDelayedCall | None = None
    _last_body_at = 0.0
    _body_starts: Callable[[], None] | None = None

    @property
    def gateway_channel(self) -> GatewayChannel:
        """The channel, typed as what it is; valid while C{self.channel} is not None."""
        return cast("GatewayChannel", self.channel)

    def __init__(self, channel: object, *args: object, **kw: object) -> None:
        super().__init__(channel, *args, **kw)
        self._body_sink: BodySink | None = None
        self._body_end: Callable[[], None] | None = None
        self._body_over_limit: Callable[[], None] | None = None
        self._early_body: list[bytes] = []
        self._early_bytes = 0
        self._client_paused = False
        # An HTTP/2 stream (tenantgw.http2.server.H2Stream) rather than a
        # connection of our own: framing, flow control and aborts go through
        # the stream, which dispatches like the HTTP/1.1 channel does.
        self.multiplexed = hasattr(channel, "streamID")

    # -- channel callbacks --------------------------------------------------------

    def gotLength(self, length: int | None) -> None:
        self.declared_length = length
        self.content = None

    def headersReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """The headers of a request with a body are in: route it now."""
        self._set_request_line(command, path, version)
        self.body_complete = False
        self.dispatched = True
        gateway = self.gateway_channel.site.gateway
        if gateway.body_timeout:
            self._last_body_at = self.started
            self._body_idle = gateway.clock.callLater(gateway.body_timeout, self._check_body_idle)
        gateway.handle(self)

    def _check_body_idle(self) -> None:
        """
        A client that declares a body and then stops sending it holds a
        connection (and, once dialled, an upstream one) for nothing: after
        C{--body-timeout} seconds without a byte of body it gets a 408, or
        its connection is cut if the answer has already started.  The timer
        is re-armed for the time left rather than reset on every chunk.
        """
        self._body_idle = None
        if self.body_complete or self.finished or self.channel is None:
            return
        gateway = self.gateway_channel.site.gateway
        clock = gateway.clock
        left = self._last_body_at + gateway.body_timeout - clock.seconds()
        if left > 0:
            self._body_idle = clock.callLater(left, self._check_body_idle)
            return
        exchange = self.exchange
        if exchange is not None:
            exchange.client_gone()
        if self.startedWriting:
            self.abort()
            return
        respond(self, 408, close=True)

    def _stop_body_idle(self) -> None:
        timer = self._body_idle
        if timer is not None:
            self._body_idle = None
            if timer.active():
                timer.cancel()

    def when_body_starts(self, callback: Callable[[], None]) -> None:
        """
        Calls C{callback} once the first byte of the body is in, or the body
        is known to be empty: an upstream connection is not dialled for a
        client that may never send its body.
        """
        if self.body_received or self.body_complete:
            callback()
        else:
            self._body_starts = callback

    def _body_started(self) -> None:
        starts = self._body_starts
        if starts is not None:
            self._body_starts = None
            starts()

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.dispatched:
            self.body_complete = True
            self._stop_body_idle()
            self._body_started()
            end = self._body_end
            if end is not None and not self.finished:
                end()
            return
        self._set_request_line(command, path, version)
        self.dispatched = True
        self.gateway_channel.site.gateway.handle(self)

    def _set_request_line(self, command: bytes, path: bytes, version: bytes) -> None:
        self.method = command
        self.uri = path
        self.clientproto = version
        self.site = site = self.gateway_channel.site
        gateway = site.gateway
        self.started = gateway.clock.seconds()
        gateway.requests_open += 1
        self.args = {}
        te = self.requestHeaders.getRawHeaders(b"te")
        if te is not None:
            self.accepts_trailers = any(
                token.split(b";")[0].strip().lower() == b"trailers"
                for value in te
                for token in value.split(b",")
            )
        query = path.find(b"?")
        self.path = path if query < 0 else path[:query]

    def handleContentChunk(self, data: bytes) -> None:
        if self.finished or self.refused:
            return
        self.body_received += len(data)
        if self._body_idle is not None:
            self._last_body_at = self.gateway_channel.site.gateway.clock.seconds()
        limit = self.body_limit
        if limit is not None and self.body_received > limit:
            over = self._body_over_limit
            self._body_over_limit = None
            self.body_limit = None
            if over is not None:
                over()
            return
        sink = self._body_sink
        if sink is not None:
            sink(data)
            return
        self._early_body.append(data)
        self._early_bytes += len(data)
        if self._early_bytes > EARLY_BODY_BUFFER:
            self.pause_client()
        if data:
            self._body_started()

    def channel_refused(self) -> None:
        """
        The channel refused the connection (a framing error): abandon the
        exchange too, whether or not its upstream connection is up yet, so
        that nothing of a refused request ever reaches a backend.
        """
        self.refused = True
        self._body_end = None
        self._body_sink = None
        self._body_starts = None
        self._stop_body_idle()
        exchange = self.exchange
        if exchange is not None:
            exchange.client_gone()

    # -- what the proxy uses ------------------------------------------------------------

    def stream_body(
        self,
        sink: BodySink,
        end: Callable[[], None],
    ) -> None:
        """
        Sends what arrived so far to C{sink}, then every later chunk.  The
        sink is in place before the client is resumed: an HTTP/2 stream
        delivers its buffered chunks, and even its end, inside
        C{resumeProducing}.
        """
        early, self._early_body = self._early_body, []
        self._early_bytes = 0
        for chunk in early:
            sink(chunk)
        if self.body_complete:
            if self._client_paused:
                self.resume_client()
            end()
            return
        self._body_sink = sink
        self._body_end = end
        if self._client_paused:
            self.resume_client()

    def stop_body(self) -> None:
        self._body_sink = None
        self._body_end = None

    def on_body_over_limit(self, limit: int, over: Callable[[], None]) -> None:
        self.body_limit = limit
        self._body_over_limit = over
        if self.body_received > limit:
            self.handleContentChunk(b"")

    def pause_client(self) -> None:
        """Stops reading the body: the TCP socket, or an HTTP/2 stream's flow-control window."""
        if not self._client_paused and self.channel is not None:
            self._client_paused = True
            self._producer_of_body().pauseProducing()

    def resume_client(self) -> None:
        if self._client_paused and self.channel is not None:
            self._client_paused = False
            self._producer_of_body().resumeProducing()

    def _producer_of_body(self) -> Any:
        return self.channel if self.multiplexed else self.gateway_channel.stream

    def abort(self) -> None:
        """Ends the exchange abruptly: an HTTP/2 stream is reset, a connection aborted."""
        if self.channel is None:
            return
        if self.multiplexed:
            cast(Any, self.channel).abortConnection()
        else:
            self.gateway_channel.stream.abortConnection()

    @property
    def server_name(self) -> str | None:
        """The TLS SNI name of the connection this request came on, if any."""
        return self.gateway_channel.server_name  # an HTTP/2 stream has one too

    def start_response(
        self,
        code: int,
        reason: bytes,
        headers: list[tuple[bytes, bytes]],
        head_only: bool = False,
    ) -> None:
        """
        Writes the status line and headers straight to the connection.

        twisted.web would copy the upstream's headers into a C{Headers}
        object, re-canonicalise every name and then serialise them again; the
        upstream's headers were already validated by the upstream parser, so
        they are written as they are.  Framing follows twisted.web's own rules
        so that L{write} and L{finish} continue as usual: chunked for HTTP/1.1
        when the length is unknown, nothing for HEAD and bodiless statuses.

        C{head_only}: the upstream's response ended with its head (gRPC's
        trailers-only form); an HTTP/2 client gets it as one HEADERS frame
        that ends the stream, which is the only form a gRPC client reads a
        status from.
        """
        if self.multiplexed:
            # HTTP/2 frames its own headers: the stream sends them as they are.
            self.code = code
            self.code_message = reason
            self.startedWriting = 1
            extra = [(n, v) for n, vs in self.responseHeaders.getAllRawHeaders() for v in vs]
            if head_only:
                cast(Any, self.channel).write_head_only(code, headers + extra)
                self.write = _discard  # type: ignore[method-assign]
                return
            cast(Any, self.channel).write_head(code, headers + extra if extra else headers)
            if self.method == b"HEAD" or code in NO_BODY_CODES:
                self.write = _discard  # type: ignore[method-assign]
            return
        self.code = code
        self.code_message = reason
        self.startedWriting = 1
        body_allowed = self.method != b"HEAD" and code not in NO_BODY_CODES
        parts = [self.clientproto, b" %d " % code, reason, b"\r\n"]
        has_length = False
        for name, value in headers:
            if name == b"content-length":
                has_length = True
            parts += (name, b": ", value, b"\r\n")
        for name, values in self.responseHeaders.getAllRawHeaders():
            for value in values:  # what twisted.web set, e.g. Connection: close
                parts += (name, b": ", value, b"\r\n")
        if body_allowed and not has_length and self.clientproto == b"HTTP/1.1":
            parts.append(b"Transfer-Encoding: chunked\r\n")
            self.chunked = 1
        parts.append(b"\r\n")
        # One joined write: writeSequence type-checks every fragment in Python.
        self.gateway_channel.stream.write(b"".join(parts))
        if not body_allowed:
            self.write = _discard  # type: ignore[method-assign]

    def send_trailers(self, trailers: list[tuple[bytes, bytes]]) -> None:
        """
        Response trailers (gRPC's grpc-status): on their own HEADERS frame
        for HTTP/2, after the last chunk for an HTTP/1.1 client that sent
        C{TE: trailers} and gets a chunked response, dropped otherwise (a
        Content-Length response has nowhere to put them).
        """
        if self.channel is None or self.finished:
            return
        if self.multiplexed:
            cast(Any, self.channel).write_trailers(trailers)
        elif self.chunked and self.accepts_trailers:
            self._trailers = (self._trailers or []) + trailers

    def finish(self) -> None:
        if self.channel is None or self.finished:
            # The client left first (or an answer raced another): nothing
            # is left to finish, and twisted.web would log a traceback-like
            # error for what is ordinary client behaviour.
            return
        trailers = self._trailers
        if trailers and self.chunked and self.startedWriting:
            self._trailers = None
            self.chunked = 0  # the last chunk is written here, with the trailer section
            parts = [b"0\r\n"]
            for name, value in trailers:
                if valid_trailer(name, value):
                    parts += (name, b": ", value, b"\r\n")
            parts.append(b"\r\n")
            self.gateway_channel.stream.write(b"".join(parts))
        self._stop_body_idle()
        self._body_starts = None
        if not self.body_complete and self.channel is not None:
            # The answer went out before the body finished arriving: the
            # rest of the body cannot be told from a next request, so this
            # connection ends here.
            self.channel.persistent = False
            self.stop_body()
        super().finish()

    def connectionLost(self, reason: object) -> None:
        self._stop_body_idle()
        self._body_starts = None
        if self.dispatched and not self.finished and not self.logged:
            # Never answered in full: logged and counted once, as nginx's 499.
            if not self.startedWriting:
                self.code = 499
            site = self.site
            if site is not None:
                site.log(self)
        super().connectionLost(reason)
        exchange = self.exchange
        if exchange is not None:
            exchange.client_gone()

    def processingFailed(self, reason: object) -> None:
        self.gateway_channel.site.gateway.internal_error(self, reason)


def valid_trailer(name: bytes, value: bytes) -> bool:
    """A trailer field an HTTP/1.1 client may be sent: a token name, a clean value, not framing."""
    return (
        is_token(name)
        and name.lower() not in NOT_IN_TRAILERS
        and valid_field_value(value)
        and value == value.strip(b" \t")
    )


def _discard(data: bytes) -> None:
    """The body of a HEAD or bodiless response goes nowhere."""
