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
"""

from __future__ import annotations

import secrets
from typing import Optional

from twisted.internet.interfaces import IDelayedCall
from twisted.web import http

MAX_REQUEST_LINE_BYTES = 8 * 1024
MAX_HEADER_BYTES = 16 * 1024
MAX_HEADER_COUNT = 100
DEFAULT_HEADER_DEADLINE = 15.0

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


class GatewayChannel(http.HTTPChannel):
    # The line limit is a backstop: the specific limits below are checked
    # first so that each overflow gets its own status.
    MAX_LENGTH = MAX_HEADER_BYTES + 2
    maxHeaders = MAX_HEADER_COUNT
    totalHeadersSize = MAX_HEADER_BYTES
    header_deadline = DEFAULT_HEADER_DEADLINE

    _refused = False
    _first_line_pending = True
    _header_timer: Optional[IDelayedCall] = None

    # -- header phase -----------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        # The deadline starts with the first byte of a request, so an idle
        # keep-alive connection is governed by the idle timeout instead.
        if self._header_timer is None and self._first_line_pending and not self._handlingRequest:
            self._arm_header_deadline()
        super().dataReceived(data)

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
        if self.requests:
            self.refuse(408)
        else:
            # Idle between requests: nothing owed, just close.
            self.transport.loseConnection()

    def lineReceived(self, line: bytes) -> None:
        if self._refused:
            return
        if self._first_line_pending:
            if not line:
                # Leave the one tolerated empty line to twisted.web.
                super().lineReceived(line)
                return
            if len(line) > MAX_REQUEST_LINE_BYTES:
                self.refuse(414)
                return
            self._first_line_pending = False
            self._arm_header_deadline()
        elif line and line[0] in b" \t":
            # obs-fold: RFC 9112 lets a server refuse it, and it is a classic
            # way to make a proxy and a backend split headers differently.
            self.refuse(400)
            return
        elif line and self._receivedHeaderCount >= MAX_HEADER_COUNT:
            self.refuse(431)
            return
        if self._receivedHeaderSize + len(line) > MAX_HEADER_BYTES:
            self.refuse(431)
            return
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        self.refuse(414 if self._first_line_pending else 431)

    def _maybeChooseTransferDecoder(self, header: bytes, data: bytes) -> bool:
        if header == b"Transfer-Encoding" and data.lower() != b"chunked":
            # twisted.web accepts "identity"; a backend that honours it while
            # we frame by Content-Length is a desync, so only chunked passes.
            return self._failChooseTransferDecoder()
        return super()._maybeChooseTransferDecoder(header, data)

    def allHeadersReceived(self) -> None:
        """
        Replaces twisted.web's version: no cookie parsing (a proxy passes
        cookies through untouched) and no automatic 100 Continue, which the
        router sends only once it has decided to accept the body.
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
            request.headersReceived(self._command, self._path, self._version)

    def allContentReceived(self) -> None:
        if not self.requests or self.requests[-1].finished or self._refused:
            # The response was already sent (an early refusal) and the
            # connection is closing; the rest of the body is dropped.
            return
        self._first_line_pending = True
        super().allContentReceived()

    # -- refusals ------------------------------------------------------------------

    def refuse(self, status: int) -> None:
        if self._refused:
            return
        self._refused = True
        self._disarm_header_deadline()
        self.persistent = False
        self.setRawMode()
        for request in self.requests:
            request.channel_refused()
        self.transport.write(refusal(status))
        self.loseConnection()

    def _respondToBadRequestAndDisconnect(self) -> None:
        self.refuse(400)

    def rawDataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        super().rawDataReceived(data)

    def connectionLost(self, reason: object) -> None:
        self._disarm_header_deadline()
        super().connectionLost(reason)

    def send_continue(self) -> None:
        self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
