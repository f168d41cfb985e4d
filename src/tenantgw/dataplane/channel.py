"""
The client-facing HTTP/1.1 connection: twisted.web's parser, hardened.

A gateway in front of many backends is where request-smuggling shapes do
their damage, because the gateway and the backend may disagree on where one
request ends.  twisted.web already refuses most of them; this subclass closes
the rest, answers the size limits with their own statuses (414, 431) instead
of a bare 400, bounds the time a client may take to send its headers
(slowloris), and hands a request with a body to the router as soon as its
headers are in, so that the body streams instead of being spooled to disk.

Every refusal here answers with a fixed body and closes the connection:
after a framing error nothing later on the connection can be trusted.

Limits, exactly:

  - request line (without its CRLF): at most 8192 bytes, else 414;
  - header section (every field line with its CRLF, not counting the
    request line or the empty line that ends the section): at most 16384
    bytes, else 431;
  - at most 100 field lines, else 431;
  - the whole header phase, from the first byte of a request to the end of
    its headers: at most C{header_deadline} seconds, else 408.

This module leans on twisted.web internals (C{_ChunkedTransferDecoder},
C{_maybeChooseTransferDecoder}, L{LineReceiver}'s buffer), which are pinned
by the Twisted version the project depends on; the tests in
C{tests/test_http_hardening.py} pin the behaviour.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IAddress, IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web._abnf import _istoken

from tenantgw.dataplane.transport import StreamTransport, sni_name, stream_of
from tenantgw.wire.fields import (
    UNDERSCORES_DROP,
    UNDERSCORES_REJECT,
    forwardable_trailers,
    valid_field_value,
)

if TYPE_CHECKING:
    from tenantgw.dataplane.gateway import GatewaySite
    from tenantgw.dataplane.request import GatewayRequest

MAX_REQUEST_LINE_BYTES = 8 * 1024
MAX_HEADER_BYTES = 16 * 1024
MAX_HEADER_COUNT = 100
DEFAULT_HEADER_DEADLINE = 15.0
# Content-Length and chunk sizes above this are refused: a backend that keeps
# lengths in a signed 64-bit integer would read a larger one differently.
MAX_BODY_LENGTH = 2**63 - 1

_STATUS_TEXT = {
    400: b"Bad Request",
    408: b"Request Timeout",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
}
_BODY_TEXT = {
    400: b"bad request\n",
    408: b"request timeout\n",
    414: b"request line too long\n",
    431: b"request header fields too large\n",
}

# Visible ASCII and SP: anything else in a request line (HTAB, DEL, a bare CR,
# bytes above 0x7E) is refused.  twisted.web's own check lets 0x7F-0xB0
# through in the request-target (it compares against 176, meant as octal).
_REQUEST_LINE_BYTES = bytes(range(0x20, 0x7F))

# RFC 9112 section 7.1: chunk-size [ chunk-ext ] CRLF, with
# chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ).
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_CHUNK_LINE = re.compile(
    rb"\A([0-9A-Fa-f]{1,16})(?:[ \t]*;[ \t]*"
    + _TOKEN
    + rb"(?:[ \t]*=[ \t]*(?:"
    + _TOKEN
    + rb"|"
    + _QUOTED
    + rb"))?)*\Z"
)


# The fast path's idea of an unremarkable request head.  Anything that does
# not match exactly goes through the line-by-line path, which alone decides
# refusals; so these patterns may be stricter than HTTP, never looser.
_PLAIN_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) (HTTP/1\.[01])\Z")
_PLAIN_FIELD_LINE = re.compile(rb"(" + _TOKEN + rb"):([\t\x20-\x7e\x80-\xff]*)\Z")
# Body framing stays with twisted.web's decoders and our checks on them.
_FRAMING_FIELDS = frozenset({b"content-length", b"transfer-encoding"})


def refusal(status: int) -> bytes:
    """A complete, fixed response for a request the parser refused."""
    body = _BODY_TEXT[status]
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (status, _STATUS_TEXT[status]),
            b"Content-Type: text/plain; charset=utf-8\r\n",
            b"Content-Length: %d\r\n" % len(body),
            b"Connection: close\r\n",
            b"X-Request-Id: %s\r\n\r\n" % secrets.token_hex(16).encode("ascii"),
            body,
        )
    )


def _valid_field_line(line: bytes) -> bool:
    name, colon, value = line.partition(b":")
    return bool(colon) and _istoken(name) and len(value.translate(None, b"\x00\r\n")) == len(value)


class _StrictChunkedDecoder(http._ChunkedTransferDecoder):
    """
    twisted.web's chunked decoder with the lenient corners removed.

    twisted.web accepts a chunk size of any number of hex digits, chunk
    extensions made of any printable junk, trailer lines that are not field
    lines (so data after the last chunk is swallowed as a "trailer"), and it
    waits for a CRLF forever when a line ends in a bare LF.  A backend that
    parses any of these differently reads a different body, so each is a 400.
    Well-formed trailers are kept (L{trailers}) for the proxy to pass on.
    """

    def _dataReceived_CHUNK_LENGTH(self) -> bool:
        """
        Replaces twisted.web's version, whose character filter for chunk
        extensions is both too loose (any printable junk) and too strict (no
        backslash, so no quoted-pair): the grammar above decides instead.
        """
        buffer = self._buffer
        eol = buffer.find(b"\r\n")
        line = buffer if eol < 0 else buffer[:eol]
        if b"\n" in line:
            raise http._MalformedChunkedDataError("bare LF in a chunk-size line")
        if len(line) > http.maxChunkSizeLineLength:
            raise http._MalformedChunkedDataError("chunk-size line too long")
        if eol < 0:
            return False
        match = _CHUNK_LINE.match(line)
        if match is None:
            raise http._MalformedChunkedDataError("malformed chunk-size line")
        length = int(match.group(1), 16)
        if length > MAX_BODY_LENGTH:
            raise http._MalformedChunkedDataError("chunk size too large")
        self.state = "TRAILER" if length == 0 else "BODY"
        self.length = length
        del buffer[: eol + 2]
        self._start = 0
        return True

    def _dataReceived_CRLF(self) -> bool:
        if self._buffer[:1] == b"\n":
            raise http._MalformedChunkedDataError("chunk data ended with a bare LF")
        return super()._dataReceived_CRLF()

    def trailers(self) -> list[tuple[bytes, bytes]]:
        """The trailer section's fields, as (name, value) pairs; each line was checked."""
        fields = []
        for line in self._trailerHeaders:
            name, _, value = bytes(line).partition(b":")
            fields.append((name, value))
        return fields

    def _dataReceived_TRAILER(self) -> bool:
        buffer = self._buffer
        eol = buffer.find(b"\r\n")
        line = buffer if eol < 0 else buffer[:eol]
        if b"\n" in line or (eol > 0 and not _valid_field_line(bytes(line))):
            raise http._MalformedChunkedDataError("malformed trailer section")
        return super()._dataReceived_TRAILER()


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
        Takes a whole, bodyless, unremarkable request head that arrived in
        one read (the common case: a GET) in one pass, instead of line by
        line through three layers of C{lineReceived}.  Returns False, having
        changed nothing, for anything else.
        """
        end = data.find(b"\r\n\r\n")
        if end < 0 or end + 4 != len(data):
            return False  # partial, pipelined or with a body: the general path
        head = data[:end]
        lines = head.split(b"\r\n")
        line_ends = len(lines) - 1
        if head.count(b"\n") != line_ends or head.count(b"\r") != line_ends:
            return False
        request_line = lines[0]
        matched = _PLAIN_REQUEST_LINE.match(request_line)
        if (
            matched is None
            or len(request_line) > MAX_REQUEST_LINE_BYTES
            or line_ends > MAX_HEADER_COUNT
            or len(head) - len(request_line) + 2 > MAX_HEADER_BYTES
        ):
            return False
        fields = []
        for line in lines[1:]:
            field = _PLAIN_FIELD_LINE.match(line)
            if field is None:
                return False
            name = field.group(1)
            if name.lower() in _FRAMING_FIELDS or b"_" in name:
                return False
            fields.append((name, field.group(2).strip(b" \t")))
        self.resetTimeout()
        request = self.requestFactory(self, len(self.requests))
        self.requests.append(request)
        headers = request.requestHeaders
        for name, value in fields:
            headers.addRawHeader(name, value)
        self._command, self._path, self._version = matched.groups()
        self.length = 0
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
        if b"\n" in pending:
            # Every line of the header phase that contains an LF is invalid.
            self.refuse(400)
            return
        length = len(pending) - (1 if pending.endswith(b"\r") else 0)
        if self._first_line_pending:
            if length > MAX_REQUEST_LINE_BYTES:
                self.refuse(414)
        elif self._header_bytes + length + 2 > MAX_HEADER_BYTES:
            self.refuse(431)

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
            if len(line) > MAX_REQUEST_LINE_BYTES:
                self.refuse(414)
                return
            if line.translate(None, _REQUEST_LINE_BYTES):
                self.refuse(400)
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
            name, _, value = line.partition(b":")
            if not valid_field_value(value):
                self.refuse(400)
                return
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
            # The length check comes first: int() refuses more than 4300
            # digits with a ValueError that would escape dataReceived.
            if data.isdigit() and (len(data) > 19 or int(data) > MAX_BODY_LENGTH):
                return self._failChooseTransferDecoder()
            return super()._maybeChooseTransferDecoder(header, data)
        if header == b"Transfer-Encoding":
            # twisted.web accepts "identity"; a backend that honours it while
            # we frame by Content-Length is a desync, so only chunked passes.
            # RFC 9112 section 6.1: Transfer-Encoding in HTTP/1.0 is faulty
            # framing.  A second Transfer-Encoding, or one after a
            # Content-Length, finds a decoder already chosen.
            if (
                data.lower() != b"chunked"
                or self._version != b"HTTP/1.1"
                or self._transferDecoder is not None
            ):
                return self._failChooseTransferDecoder()
            self.length = None
            self._transferDecoder = _StrictChunkedDecoder(
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
        hosts = request.requestHeaders.getRawHeaders(b"host")
        if (hosts is None and self._version == b"HTTP/1.1") or (hosts and len(hosts) > 1):
            # RFC 9112 section 3.2: exactly one Host in HTTP/1.1.  Two Host
            # headers are how a request gets routed as one tenant's and
            # served as another's.
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
        if isinstance(decoder, _StrictChunkedDecoder) and decoder._trailerHeaders:
            self.requests[-1].request_trailers = forwardable_trailers(decoder.trailers())
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
        transport.write(refusal(status))
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
