"""
The client-facing HTTP/1.1 connection: twisted.web's parser, hardened.

The rules (limits, smuggling shapes, strict chunked bodies) are the wire
layer's, L{tenantgw.http1}, and so are the refusals' fixed answers; this
subclass applies them to twisted.web's line-by-line reading, answers the
size limits with their own statuses (414, 431) instead of a bare 400,
bounds the time a client may take to send its headers (slowloris), and
hands a request with a body to the router as soon as its headers are in, so
that the body streams instead of being spooled to disk.  A whole head that
arrives in one read, without a body, is parsed in one pass by
L{tenantgw.http1.head.parse_request_head}; one it refuses takes the line
path, which refuses it the same way.

Every refusal here answers with a fixed body (JSON when the fields read so
far ask for it) and closes the connection: after a framing error nothing
later on the connection can be trusted.

Limits, exactly (L{tenantgw.http1.head}):

  - request line (without its CRLF): at most 8192 bytes, else 414;
  - header section (every field line with its CRLF, not counting the
    request line or the empty line that ends the section): at most 16384
    bytes, else 431;
  - at most 100 field lines, else 431;
  - the whole header phase, from the first byte of a request to the end of
    its headers: at most C{header_deadline} seconds, else 408.

This module leans on twisted.web internals (C{_maybeChooseTransferDecoder},
its transfer-decoder interface, L{LineReceiver}'s buffer), which are pinned
by the Twisted version the project depends on; the tests in
C{tests/test_http_hardening.py} pin the behaviour.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IAddress, IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web import http

from tenantgw.dataplane.transport import StreamTransport, sni_name, stream_of
from tenantgw.http1.chunked import ChunkedDecoder, ChunkedError
from tenantgw.http1.fields import (
    UNDERSCORES_DROP,
    UNDERSCORES_REJECT,
    forwardable_trailers,
)
from tenantgw.http1.head import (
    MAX_BODY_LENGTH,
    MAX_HEADER_BYTES,
    MAX_HEADER_COUNT,
    MAX_REQUEST_LINE_BYTES,
    HeadError,
    content_length,
    field_line_status,
    host_count_status,
    parse_request_head,
    pending_line_status,
    request_line_status,
    transfer_coding_status,
)
from tenantgw.http1.request_id import new_request_id
from tenantgw.http1.responses import refusal, wants_json

if TYPE_CHECKING:
    from tenantgw.dataplane.gateway import GatewaySite
    from tenantgw.dataplane.request import GatewayRequest

__all__ = [
    "DEFAULT_HEADER_DEADLINE",
    "MAX_BODY_LENGTH",
    "MAX_HEADER_BYTES",
    "MAX_HEADER_COUNT",
    "MAX_REQUEST_LINE_BYTES",
    "GatewayChannel",
]

DEFAULT_HEADER_DEADLINE = 15.0


class _ChunkedBody:
    """
    twisted.web's transfer-decoder interface over the wire layer's strict
    L{ChunkedDecoder} (whose rules are documented there): twisted.web's own
    decoder accepts chunk sizes of any length, junk extensions, trailer
    lines that are not field lines, and waits forever on a bare LF.  The
    body bytes a read completes are passed on only once the whole read has
    been judged, so a framing error later in it stops them too.
    """

    def __init__(
        self, data_callback: Callable[[bytes], None], finish_callback: Callable[[bytes], None]
    ) -> None:
        self.dataCallback = data_callback
        self.finishCallback = finish_callback
        self.decoder = ChunkedDecoder()
        self._finished = False

    def dataReceived(self, data: bytes) -> None:
        decoder = self.decoder
        try:
            pieces = decoder.feed(data)
        except ChunkedError as error:
            raise http._MalformedChunkedDataError(str(error)) from None
        for piece in pieces:
            self.dataCallback(piece)
        if decoder.done and not self._finished:
            self._finished = True
            rest, decoder.rest = decoder.rest, b""
            self.finishCallback(rest)

    def noMoreData(self) -> None:
        if not self._finished:
            raise http._DataLoss("chunked body cut short")


class GatewayChannel(http.HTTPChannel):
    # Our own checks in lineReceived fire first, each with its status; these
    # twisted.web limits are only backstops and must never be what trips.
    # No valid line is longer than a whole header section.
    MAX_LENGTH = MAX_HEADER_BYTES
    maxHeaders = MAX_HEADER_COUNT
    # twisted.web counts the request line and the field lines (without their
    # CRLFs) against one total; ours are two separate budgets.
    totalHeadersSize = MAX_REQUEST_LINE_BYTES + MAX_HEADER_BYTES
    header_deadline = DEFAULT_HEADER_DEADLINE
    site: GatewaySite  # set by the Site that builds this channel

    _refused = False
    # Set once the connection is known to be ending (a refusal, or the
    # response went out before the body ended): every later byte is dropped.
    _closing = False
    _first_line_pending = True
    _header_bytes = 0
    _header_lines = 0
    _header_timer: IDelayedCall | None = None
    # The head was parsed whole by the wire layer (the one-pass path).
    _head_checked = False
    _pending_dispatch: tuple[GatewayRequest, bytes, bytes, bytes] | None = None

    # -- header phase -----------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        tunnel = self._tunnel
        if tunnel is not None:
            tunnel(data)
            return
        if (
            self.line_mode
            and self._first_line_pending
            and not self._buffer
            and not self._handlingRequest
            and not self._busyReceiving
            and not self._closing
            and self.persistent
            and self._take_plain_request(data)
        ):
            return
        if self._busyReceiving:
            # Re-entered (a request answered synchronously replays buffered
            # data): LineReceiver only queues it; the outer call does the rest.
            super().dataReceived(data)
            return
        if self._closing:
            return
        super().dataReceived(data)
        if self._closing:
            return
        self._check_partial_line()
        self._dispatch_pending()
        if not self._closing and self.line_mode and (self._buffer or not self._first_line_pending):
            # Part of a request's head is in: its deadline runs from here
            # (an idle keep-alive connection is left to the idle timeout).
            self._arm_header_deadline()

    def _take_plain_request(self, data: bytes) -> bool:
        """
        Takes a whole request head without a body that arrived in one read
        (the common case: a GET) in one pass of the wire layer's parser,
        instead of line by line through three layers of C{lineReceived}.
        Returns False, having changed nothing, for anything else, refused
        heads included: the line-by-line path then refuses them, so a head
        gets the same answer however its bytes were split.
        """
        if data[-4:] != b"\r\n\r\n" or data.find(b"\r\n\r\n") + 4 != len(data):
            return False  # partial, pipelined or with a body: the general path
        try:
            head = parse_request_head(data, self.site.underscores)
        except HeadError:
            return False
        if head.length != 0:
            return False  # the body's decoder is chosen on the general path
        self.resetTimeout()
        request = self.requestFactory(self, len(self.requests))
        self.requests.append(request)
        add = request.requestHeaders.addRawHeader
        for name, value in head.fields:
            add(name, value)
        self._command, self._path, self._version = head.method, head.target, head.version
        self.length = 0
        self._head_checked = True
        self.allHeadersReceived()
        if not self._closing:
            self.allContentReceived()
        return True

    def _check_partial_line(self) -> None:
        """
        Judges the unterminated line LineReceiver is holding.  Without this a
        request whose lines end in a bare LF would wait for a CRLF that never
        comes (and get a 408 instead of a 400), and an overlong line would be
        buffered up to L{MAX_LENGTH} before being refused.
        """
        pending = self._buffer
        if not self.line_mode or not pending:
            return
        status = pending_line_status(pending, self._first_line_pending, self._header_bytes)
        if status:
            self.refuse(status)

    def _arm_header_deadline(self) -> None:
        if self.header_deadline and self._header_timer is None:
            self._header_timer = self.callLater(self.header_deadline, self._header_deadline_hit)

    def _disarm_header_deadline(self) -> None:
        timer = self._header_timer
        if timer is not None:
            self._header_timer = None
            if timer.active():
                timer.cancel()

    def _header_deadline_hit(self) -> None:
        self._header_timer = None
        self.refuse(408)

    def lineReceived(self, line: bytes) -> None:
        if self._closing:
            return
        if self._first_line_pending:
            if not line:
                # Leave the one tolerated empty line to twisted.web.
                super().lineReceived(line)
                return
            status = request_line_status(line)
            if status:
                self.refuse(status)
                return
            self._first_line_pending = False
            self._header_bytes = 0
            self._header_lines = 0
        elif line:
            if line[0] in b" \t":
                # obs-fold: RFC 9112 lets a server refuse it, and it is a
                # classic way to make a proxy and a backend split headers
                # differently.
                self.refuse(400)
                return
            # Counted here, as each line arrives: twisted.web counts a header
            # only when the next line arrives, so its own maxHeaders check
            # fires one line late (on the empty line) and answers 400.
            self._header_lines += 1
            self._header_bytes += len(line) + 2
            if self._header_lines > MAX_HEADER_COUNT or self._header_bytes > MAX_HEADER_BYTES:
                self.refuse(431)
                return
            if field_line_status(line):
                # Judged here rather than by twisted.web, which sees a line
                # only once the next one is in.
                self.refuse(400)
                return
            name = line.partition(b":")[0]
            if b"_" in name:
                action = self.site.underscores
                if action == UNDERSCORES_REJECT:
                    self.refuse(400)
                    return
                if action == UNDERSCORES_DROP:
                    return
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        self.refuse(414 if self._first_line_pending else 431)

    def _maybeChooseTransferDecoder(self, header: bytes, data: bytes) -> bool:
        if header == b"Content-Length":
            # The wire layer's rule first (plain digits, 64 bits); twisted.web
            # then refuses a second framing field.
            try:
                content_length(data)
            except HeadError:
                return self._failChooseTransferDecoder()
            return super()._maybeChooseTransferDecoder(header, data)
        if header == b"Transfer-Encoding":
            # Only chunked, only HTTP/1.1, never after another framing field
            # (twisted.web accepts "identity", a desync with a backend that
            # honours it while the gateway frames by Content-Length).
            if transfer_coding_status(data, self._version, self._transferDecoder is not None):
                return self._failChooseTransferDecoder()
            self.length = None
            self._transferDecoder = _ChunkedBody(
                self.requests[-1].handleContentChunk, self._finishRequestBody
            )
            return True
        return super()._maybeChooseTransferDecoder(header, data)

    def allHeadersReceived(self) -> None:
        """
        Replaces twisted.web's version: no cookie parsing (a proxy passes
        cookies through untouched) and no automatic 100 Continue, which the
        router sends only once it has decided to accept the body.

        A request with a body is handed to the router at the end of the
        current read rather than here, so that a framing error in the body
        bytes that arrived with the headers is refused before any upstream
        is contacted; if the whole body is in that read, the request is
        dispatched complete, by L{allContentReceived}.
        """
        self._disarm_header_deadline()
        request = self.requests[-1]
        if self._head_checked:
            self._head_checked = False  # the wire layer's parser checked Host
        elif host_count_status(
            len(request.requestHeaders.getRawHeaders(b"host", ())), self._version
        ):
            self.refuse(400)
            return
        self.persistent = self.checkPersistence(request, self._version)
        request.gotLength(self.length)
        if self.length != 0:
            self._pending_dispatch = (request, self._command, self._path, self._version)

    def _dispatch_pending(self) -> None:
        pending = self._pending_dispatch
        if pending is None:
            return
        self._pending_dispatch = None
        request, command, path, version = pending
        if self._closing or request.finished or request not in self.requests:
            return
        request.headersReceived(command, path, version)

    def allContentReceived(self) -> None:
        if self._closing or not self.requests or self.requests[-1].finished:
            # The response was already sent (an early answer such as a 413)
            # and the connection is closing; the rest is dropped.
            self._closing = True
            return
        self._pending_dispatch = None
        self._first_line_pending = True
        decoder = self._transferDecoder
        if isinstance(decoder, _ChunkedBody) and decoder.decoder.trailers:
            self.requests[-1].request_trailers = forwardable_trailers(decoder.decoder.trailers)
        # twisted.web cancels the idle timer here and arms a new one when the
        # response is done: two timer operations per request.  The timer is
        # left running instead, and timeoutConnection spares a connection
        # whose request is in progress (that request has its own deadlines).
        idle, self.timeOut = self.timeOut, None
        try:
            super().allContentReceived()
        finally:
            self.timeOut = idle

    def requestDone(self, request: http.Request) -> None:
        super().requestDone(request)
        self.resetTimeout()  # idle time counts from the end of the response

    def timeoutConnection(self) -> None:
        if self._handlingRequest:
            self.setTimeout(self.timeOut)
            return
        super().timeoutConnection()

    # -- refusals ------------------------------------------------------------------

    def refuse(self, status: int) -> None:
        """
        Answers C{status} with a fixed body and closes the connection.

        If a response has already started on this connection (a body
        framing error while the upstream's answer streams back), a second
        status line would corrupt it, so the connection is aborted instead;
        if the connection is already closing after an earlier answer,
        nothing more is written.
        """
        if self._refused:
            return
        self._refused = True
        self._closing = True
        self._pending_dispatch = None
        self._disarm_header_deadline()
        self.persistent = False
        self.setRawMode()
        answered = any(request.startedWriting for request in self.requests)
        for request in self.requests:
            request.channel_refused()
        transport: Any = self.transport
        if transport is None or transport.disconnecting:
            return
        if answered:
            transport.abortConnection()
            return
        # JSON if the request asked for it in the fields read so far; the id
        # is always a new one: a refused request's own fields are not trusted.
        accept = (
            self.requests[-1].requestHeaders.getRawHeaders(b"accept") if self.requests else None
        )
        transport.write(refusal(status, new_request_id(), wants_json(accept)))
        self.loseConnection()

    def _respondToBadRequestAndDisconnect(self) -> None:
        self.refuse(400)

    def rawDataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        super().rawDataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._closing = True
        self._pending_dispatch = None
        self._disarm_header_deadline()
        super().connectionLost(reason)

    # -- per-connection facts, asked for on every request ------------------------

    _secure: bool | None = None
    _host_address: IAddress | None = None

    def isSecure(self) -> bool:
        """Cached: the adaptation to ISSLTransport is costly and never changes."""
        secure = self._secure
        if secure is None:
            secure = self._secure = bool(super().isSecure())
        return secure

    _peer_address: IAddress | None = None

    def getPeer(self) -> IAddress:
        """Cached: twisted.web asks on every request, and each ask builds an address."""
        address = self._peer_address
        if address is None:
            address = self._peer_address = super().getPeer()
        return address

    _server_name: str | bool | None = False  # False: not looked up yet

    @property
    def server_name(self) -> str | None:
        """The TLS SNI name this connection was opened for (lower case), if any."""
        name = self._server_name
        if name is False:
            name = self._server_name = sni_name(self.transport)
        return name  # type: ignore[return-value]

    def getHost(self) -> IAddress:
        """Cached: twisted.web asks on every request, and each ask is a syscall."""
        address = self._host_address
        if address is None:
            address = self._host_address = super().getHost()
        return address

    @property
    def stream(self) -> StreamTransport:
        return stream_of(self.transport)

    _tunnel: Callable[[bytes], None] | None = None

    def start_tunnel(self, upstream: Callable[[bytes], None]) -> None:
        """
        From now on every byte from the client goes to C{upstream}, starting
        with what arrived while the switch was being negotiated.  HTTP's idle
        timeout no longer applies.
        """
        self._tunnel = upstream
        self._disarm_header_deadline()
        self.setTimeout(None)
        buffered = b"".join(self._dataBuffer)
        self._dataBuffer = []
        if buffered:
            upstream(buffered)
        self.stream.resumeProducing()

    def send_continue(self) -> None:
        if self.transport is not None and not self._closing:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
