"""
The native HTTP/1.1 front: a Protocol of our own over the wire layer.

twisted.web's L{HTTPChannel} reads a head one line at a time through three
layers of C{lineReceived}, and issue 15 measured it costing more per
request than every gateway feature together.  This protocol reads a whole
head in one pass (L{tenantgw.http1.head.head_end} to find its end, or to
refuse it before the limits are buffered past, then
L{tenantgw.http1.head.parse_request_head}), frames bodies with the strict
L{tenantgw.http1.chunked.ChunkedDecoder}, and drives a L{GatewayRequest}
the way the HTTP/2 front's C{H2Stream} does: it is the request's
"channel" (C{writeHeaders}, C{write}, C{requestDone}, C{registerProducer},
C{getPeer}/C{getHost}/C{isSecure}, C{loseConnection}).

The rules are the wire layer's, so a head gets the answer the twisted.web
front gives it; the limits are the same (see L{tenantgw.dataplane.channel}).
Every refusal answers with the fixed response table and closes.

Pipelining: requests are served one at a time, in order.  While a request
whose body is complete waits for its answer, later bytes are held (and the
socket paused past a bound, as twisted.web does), and the next head is read
only once the answer is done, so answers cannot be reordered and nothing of
a refused request, or of anything after it, reaches the router.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IAddress, IDelayedCall, ISSLTransport
from twisted.internet.protocol import Protocol, connectionDone
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from twisted.web.http_headers import _nameEncoder

from tenantgw.dataplane.transport import StreamTransport, sni_name, stream_of
from tenantgw.http1.chunked import ChunkedDecoder, ChunkedError
from tenantgw.http1.fields import forwardable_trailers
from tenantgw.http1.head import HeadError, head_end, parse_request_head
from tenantgw.http1.request_id import new_request_id
from tenantgw.http1.responses import refusal, wants_json

if TYPE_CHECKING:
    from tenantgw.dataplane.gateway import GatewaySite
    from tenantgw.dataplane.request import GatewayRequest

__all__ = ["DEFAULT_HTTP1_FRONT", "HTTP1_FRONTS", "NativeChannel"]

# What --http1-front may name: this front, or twisted.web's hardened channel.
HTTP1_FRONTS = ("native", "twisted")
DEFAULT_HTTP1_FRONT = "native"

# twisted.web's canonical spelling of a field name (cached there).
_canonical_name = _nameEncoder.encode

# Seconds a connection closed for idleness gets to finish closing.
ABORT_AFTER = 15.0

# Bytes held for later requests while one is answered; past this the socket
# is paused.  A whole head at its limits fits.
HELD_BYTES = 64 * 1024


class NativeChannel(Protocol, TimeoutMixin):
    """One client connection speaking HTTP/1.1; see the module docstring."""

    header_deadline = 15.0
    persistent = True

    def __init__(self, site: GatewaySite) -> None:
        self.site = site
        self.factory = site  # twisted.web's Request logs through channel.factory
        self.requestFactory = site.requestFactory
        clock: Any = site.reactor
        self.callLater = clock.callLater  # type: ignore[method-assign]
        self.timeOut = site.timeOut  # type: ignore[assignment]
        self.header_deadline = site.header_deadline
        self.request: GatewayRequest | None = None
        self._held = b""
        self._head_timer: IDelayedCall | None = None
        # Body framing of the request being read: bytes left, or a decoder.
        self._left = 0
        self._chunked: ChunkedDecoder | None = None
        self._reading_body = False
        # The current request's head and body are in; its answer is awaited.
        self._waiting = False
        self._paused = False
        self._closing = False
        self._refused = False
        self._in_process = False
        self._head: bytes | None = None  # a response head held for its first body bytes
        self._first = True  # the one tolerated empty line before a request line

    # -- connection -------------------------------------------------------------

    def connectionMade(self) -> None:
        self.setTimeout(self.timeOut)

    def dataReceived(self, data: bytes) -> None:
        tunnel = self._tunnel
        if tunnel is not None:
            tunnel(data)
            return
        if self._closing:
            return
        self.resetTimeout()
        if self._reading_body:
            data = self._body(data)
            if self._closing or not data:
                return
        self._held = self._held + data if self._held else data
        if self._waiting or self._in_process:
            if len(self._held) > HELD_BYTES and not self._paused:
                self._paused = True
                stream_of(self.transport).pauseProducing()
            return
        self._process()

    def _process(self) -> None:
        """Reads heads from what is held, one request at a time."""
        self._in_process = True
        try:
            while self._held and not (self._waiting or self._closing or self._reading_body):
                if not self._next_request():
                    break
        finally:
            self._in_process = False

    def _next_request(self) -> bool:
        """Takes one request from the held bytes; False: wait for more."""
        held = self._held
        if self._first and held[:2] == b"\r\n":
            self._first = False
            held = self._held = held[2:]
            if not held:
                return False
        try:
            end = head_end(held)
        except HeadError as error:
            self.refuse(error.status)
            return False
        if end < 0:
            self._arm_head_timer()
            return False
        try:
            head = parse_request_head(held[:end], self.site.underscores)
        except HeadError as error:
            self.refuse(error.status)
            return False
        self._disarm_head_timer()
        self._held = held[end:]
        self._first = True
        request: GatewayRequest = self.requestFactory(self, queued=False)
        self.request = request
        connection: list[bytes] | None = None
        raw = getattr(request.requestHeaders, "_rawHeaders", None)
        if raw is not None and not raw:
            # Straight into twisted.web's table (canonical name -> values):
            # the values were checked by the parser, so addRawHeader's
            # type tests and whitespace sanitizing have nothing to do.
            encode = _canonical_name
            for name, value in head.fields:
                key = encode(name)
                values = raw.get(key)
                if values is None:
                    raw[key] = [value]
                else:
                    values.append(value)
                if key == b"Connection":
                    connection = (connection or []) + [value]
        else:
            add = request.requestHeaders.addRawHeader
            for name, value in head.fields:
                add(name, value)
                if len(name) == 10 and name.lower() == b"connection":
                    connection = (connection or []) + [value]
        version = head.version
        if version != b"HTTP/1.1":
            self.persistent = False
        elif connection is not None and any(
            token.strip().lower() == b"close" for value in connection for token in value.split(b",")
        ):
            self.persistent = False
            request.responseHeaders.setRawHeaders(b"connection", [b"close"])
        length = head.length
        request.gotLength(length)
        if length == 0:
            self._waiting = True
            request.requestReceived(head.method, head.target, version)
            return True
        self._reading_body = True
        self._method, self._target, self._version = head.method, head.target, version
        if length is None:
            self._chunked = ChunkedDecoder()
        else:
            self._left = length
        rest, self._held = self._held, b""
        # The body bytes that came with the head are judged before the
        # router sees the request, so a framing error in them is refused
        # before any upstream is contacted.
        rest = self._body(rest) if rest else rest
        if self._closing:
            return False
        if self._reading_body and self.request is request and not request.dispatched:
            request.headersReceived(head.method, head.target, version)
        if rest:
            self._held = rest + self._held
        return True

    def _body(self, data: bytes) -> bytes:
        """Passes body bytes on; returns what follows the body."""
        request = self.request
        decoder = self._chunked
        rest = b""
        if decoder is None:
            left = self._left
            if len(data) > left:
                data, rest = data[:left], data[left:]
            self._left = left - len(data)
            if request is not None and data:
                request.handleContentChunk(data)
            done = not self._left
        else:
            try:
                pieces = decoder.feed(data)
            except ChunkedError:
                self.refuse(400)
                return b""
            if request is not None:
                for piece in pieces:
                    request.handleContentChunk(piece)
            done = decoder.done
            if done:
                rest, decoder.rest = decoder.rest, b""
                if request is not None and decoder.trailers:
                    request.request_trailers = forwardable_trailers(decoder.trailers)
        if done and not self._closing:
            self._reading_body = False
            self._chunked = None
            if request is None or request.finished or self.request is not request:
                # Answered before its body ended: the connection ends.
                self._closing = True
                self._lose()
                return b""
            self._waiting = True
            request.requestReceived(self._method, self._target, self._version)
        return rest

    # -- deadlines ----------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        if self.header_deadline and self._head_timer is None:
            self._head_timer = self.callLater(self.header_deadline, self._head_deadline_hit)

    def _disarm_head_timer(self) -> None:
        timer = self._head_timer
        if timer is not None:
            self._head_timer = None
            if timer.active():
                timer.cancel()

    def _head_deadline_hit(self) -> None:
        self._head_timer = None
        self.refuse(408)

    def timeoutConnection(self) -> None:
        if self.request is not None or self._reading_body:
            # A request in progress has its own deadlines.
            self.setTimeout(self.timeOut)
            return
        self._closing = True
        self._lose()
        # A client that never reads does not let a close complete: as
        # twisted.web does, the connection is aborted a while later.
        self._abort_call = self.callLater(ABORT_AFTER, self._abort)

    _abort_call: IDelayedCall | None = None

    def _abort(self) -> None:
        self._abort_call = None
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    # -- what a GatewayRequest calls ------------------------------------------------

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        parts = [version, b" ", code, b" ", reason, b"\r\n"]
        for name, values in headers.getAllRawHeaders():
            for value in values:
                parts += (name, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        # Held for the first body bytes: one transport write for both.
        self._head = b"".join(parts)

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            data = head + data
        transport = self.transport
        if transport is not None:
            transport.write(data)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def _flush(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            if self.transport is not None:
                self.transport.write(head)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._flush()
        stream_of(self.transport).registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        stream_of(self.transport).unregisterProducer()

    def requestDone(self, request: object) -> None:
        self._flush()
        if request is not self.request:
            return
        self.request = None
        self._waiting = False
        self.resetTimeout()  # idle time counts from the end of the response
        if self._reading_body or not self.persistent or self._closing:
            self._closing = True
            self._reading_body = False
            self._lose()
            return
        if self._paused:
            self._paused = False
            stream_of(self.transport).resumeProducing()
        if self._held and not self._in_process:
            self._process()

    def loseConnection(self) -> None:
        self._closing = True
        self._lose()

    def _lose(self) -> None:
        self._flush()
        self._disarm_head_timer()
        transport = self.transport
        if transport is not None:
            transport.loseConnection()

    def _respondToBadRequestAndDisconnect(self) -> None:
        self.refuse(400)

    def send_continue(self) -> None:
        if self.transport is not None and not self._closing:
            self._flush()
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    # -- refusals ---------------------------------------------------------------------

    def refuse(self, status: int) -> None:
        """
        Answers C{status} with a fixed body and closes; aborts instead if an
        answer has already started (a second status line would corrupt it).
        """
        if self._refused:
            return
        self._refused = True
        self._closing = True
        held = self._held if not self._reading_body else b""
        self._reading_body = False
        self._held = b""
        self._disarm_head_timer()
        self.persistent = False
        request = self.request
        answered = False
        accept: Sequence[bytes] | None = _accept_of(held) if held else None
        if request is not None:
            answered = bool(request.startedWriting)
            accept = request.requestHeaders.getRawHeaders(b"accept")
            request.channel_refused()
        transport: Any = self.transport
        if transport is None or transport.disconnecting:
            return
        if answered:
            transport.abortConnection()
            return
        transport.write(refusal(status, new_request_id(), wants_json(accept)))
        transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        abort = self._abort_call
        if abort is not None and abort.active():
            abort.cancel()
        self._abort_call = None
        self._closing = True
        self._reading_body = False
        self._held = b""
        self._disarm_head_timer()
        self.setTimeout(None)
        request, self.request = self.request, None
        if request is not None and not request.finished:
            request.connectionLost(reason)

    # -- per-connection facts ---------------------------------------------------------

    _secure: bool | None = None
    _host_address: IAddress | None = None
    _peer_address: IAddress | None = None
    _server_name: str | bool | None = False  # False: not looked up yet

    def isSecure(self) -> bool:
        secure = self._secure
        if secure is None:
            secure = self._secure = ISSLTransport(self.transport, None) is not None
        return secure

    def getPeer(self) -> IAddress:
        address = self._peer_address
        if address is None:
            address = self._peer_address = self.transport.getPeer()  # type: ignore[union-attr]
        return address

    def getHost(self) -> IAddress:
        address = self._host_address
        if address is None:
            address = self._host_address = self.transport.getHost()  # type: ignore[union-attr]
        return address

    @property
    def server_name(self) -> str | None:
        """The TLS SNI name this connection was opened for (lower case), if any."""
        name = self._server_name
        if name is False:
            name = self._server_name = sni_name(self.transport)
        return name  # type: ignore[return-value]

    @property
    def stream(self) -> StreamTransport:
        self._flush()
        return stream_of(self.transport)

    _tunnel: Callable[[bytes], None] | None = None

    def start_tunnel(self, upstream: Callable[[bytes], None]) -> None:
        """
        From now on every byte from the client goes to C{upstream}, starting
        with what arrived while the switch was being negotiated.  HTTP's idle
        timeout no longer applies.
        """
        self._flush()
        self._tunnel = upstream
        self._disarm_head_timer()
        self.setTimeout(None)
        held, self._held = self._held, b""
        if held:
            upstream(held)
        self._paused = False
        stream_of(self.transport).resumeProducing()


def _accept_of(held: bytes) -> list[bytes] | None:
    """
    The Accept values among the complete field lines of a refused head, so
    that its refusal is JSON when the client asked for it, as the router's
    answers are.  Only on the refusal path: nothing else reads it.
    """
    section = held.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    if not held.endswith(b"\r\n") and b"\r\n\r\n" not in held:
        section = section[:-1]  # the line still arriving
    found = [
        line.partition(b":")[2].strip(b" \t") for line in section if line[:7].lower() == b"accept:"
    ]
    return found or None
