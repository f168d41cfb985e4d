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

from typing import TYPE_CHECKING, Callable, List, Optional

from twisted.web import server

if TYPE_CHECKING:
    from tenantgw.dataplane.proxy import Exchange

BodySink = Callable[[bytes], None]

# Bytes of request body held while the upstream connection is being set up;
# past this the client is paused, which is what bounds memory per request.
EARLY_BODY_BUFFER = 64 * 1024


class GatewayRequest(server.Request):
    # No default Content-Type on the gateway's own empty responses.
    defaultContentType = None

    declared_length: Optional[int] = 0
    body_complete = True
    body_received = 0
    body_limit: Optional[int] = None
    dispatched = False
    refused = False
    client_address = ""
    request_id = b""
    tenant_namespace = ""
    route_name = ""
    upstream = ""
    exchange: Optional[Exchange] = None

    def __init__(self, channel: object, *args: object, **kw: object) -> None:
        super().__init__(channel, *args, **kw)
        self._body_sink: Optional[BodySink] = None
        self._body_end: Optional[Callable[[], None]] = None
        self._body_over_limit: Optional[Callable[[], None]] = None
        self._early_body: List[bytes] = []
        self._early_bytes = 0
        self._client_paused = False

    # -- channel callbacks --------------------------------------------------------

    def gotLength(self, length: Optional[int]) -> None:
        self.declared_length = length
        self.content = None

    def headersReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """The headers of a request with a body are in: route it now."""
        self._set_request_line(command, path, version)
        self.body_complete = False
        self.dispatched = True
        self.site.gateway.handle(self)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.dispatched:
            self.body_complete = True
            end = self._body_end
            if end is not None and not self.finished:
                end()
            return
        self._set_request_line(command, path, version)
        self.dispatched = True
        self.site.gateway.handle(self)

    def _set_request_line(self, command: bytes, path: bytes, version: bytes) -> None:
        self.method = command
        self.uri = path
        self.clientproto = version
        self.site = self.channel.site
        self.args = {}
        query = path.find(b"?")
        self.path = path if query < 0 else path[:query]

    def handleContentChunk(self, data: bytes) -> None:
        if self.finished or self.refused:
            return
        self.body_received += len(data)
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

    def channel_refused(self) -> None:
        """The channel refused the connection (framing error): abandon everything."""
        self.refused = True
        end = self._body_end
        self._body_end = None
        self._body_sink = None
        if end is not None:
            self.notify_body_aborted()

    def notify_body_aborted(self) -> None:
        aborted = getattr(self, "_on_body_aborted", None)
        if aborted is not None:
            aborted()

    # -- what the proxy uses ------------------------------------------------------------

    def stream_body(
        self,
        sink: BodySink,
        end: Callable[[], None],
        aborted: Callable[[], None],
    ) -> None:
        """Sends what arrived so far to C{sink}, then every later chunk."""
        self._on_body_aborted = aborted
        early, self._early_body = self._early_body, []
        self._early_bytes = 0
        for chunk in early:
            sink(chunk)
        if self._client_paused:
            self.resume_client()
        if self.body_complete:
            end()
            return
        self._body_sink = sink
        self._body_end = end

    def stop_body(self) -> None:
        self._body_sink = None
        self._body_end = None
        self._on_body_aborted = None

    def on_body_over_limit(self, limit: int, over: Callable[[], None]) -> None:
        self.body_limit = limit
        self._body_over_limit = over
        if self.body_received > limit:
            self.handleContentChunk(b"")

    def pause_client(self) -> None:
        if not self._client_paused and self.channel is not None:
            self._client_paused = True
            self.channel.transport.pauseProducing()

    def resume_client(self) -> None:
        if self._client_paused and self.channel is not None:
            self._client_paused = False
            self.channel.transport.resumeProducing()

    def finish(self) -> None:
        if not self.body_complete and self.channel is not None:
            # The answer went out before the body finished arriving: the
            # rest of the body cannot be told from a next request, so this
            # connection ends here.
            self.channel.persistent = False
            self.stop_body()
        super().finish()

    def connectionLost(self, reason: object) -> None:
        super().connectionLost(reason)
        exchange = self.exchange
        if exchange is not None:
            exchange.client_gone()

    def processingFailed(self, reason: object) -> None:
        self.site.gateway.internal_error(self, reason)
