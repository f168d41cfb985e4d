"""
The HTTP/2 server connection: C{h2}'s state machine driven by Twisted, with
the limits a gateway in front of many tenants needs.

One L{H2ServerConnection} per TLS connection that negotiated C{h2}; one
L{H2Stream} per request, which is the "channel" a L{GatewayRequest} talks to
(the same surface twisted.web's own C{H2Stream} offered, so the request code
is shared with HTTP/1.1).

How a read is handled (L{H2ServerConnection.dataReceived}):

  1. the L{FrameScanner} follows frame headers: a header block that stays
     open past the header deadline, or grows past
     L{MAX_HEADER_BLOCK_BYTES}, ends the connection (GOAWAY
     ENHANCE_YOUR_CALM);
  2. C{h2} turns the bytes into events; a C{ProtocolError} becomes a GOAWAY
     with C{h2}'s error code, never a traceback;
  3. every event of the read is applied: heads are validated
     (L{parse_request_head}; a malformed one is answered 400 or 501 on its
     stream), bodies are buffered, client resets spend the reset budget;
  4. only then are the requests that are still open handed to the gateway,
     so a stream opened and reset in the same read never costs an
     upstream connection (CVE-2023-44487, "rapid reset");
  5. what the read produced is written in one transport write.

Responses are sent as far as the flow-control windows allow, at once, and
the rest when a WINDOW_UPDATE arrives; a stream whose unsent data passes
L{OUTBOUND_HIGH_WATER} pauses its producer (the upstream connection).  A
request body is taken off the stream's window only as the request consumes
it: a paused request withholds WINDOW_UPDATE, so the client stops sending.
"""

from __future__ import annotations

import contextlib
import secrets
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from h2.errors import ErrorCodes
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame
from twisted.internet._producer_helpers import _PullToPush
from twisted.internet.error import ConnectionAborted, ConnectionLost
from twisted.internet.interfaces import IAddress, IDelayedCall, IPushProducer, ISSLTransport
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from tenantgw.dataplane.transport import sni_name
from tenantgw.http2.flow import next_chunk
from tenantgw.http2.frames import MAX_HEADER_BLOCK_BYTES, FrameScanner
from tenantgw.http2.hpack_out import StaticEncoder
from tenantgw.http2.machine import ServerMachine
from tenantgw.http2.request_head import (
    CONNECTION_SPECIFIC,
    Refusal,
    RequestHead,
    check_trailers,
    parse_request_head,
)
from tenantgw.wire.fields import UNDERSCORES_DROP, forwardable_trailers

if TYPE_CHECKING:
    from tenantgw.dataplane.gateway import GatewaySite
    from tenantgw.dataplane.request import GatewayRequest

_log = Logger()

# Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS,
# advertised and enforced): one more is refused with RST_STREAM
# REFUSED_STREAM and the connection stays up.
MAX_CONCURRENT_STREAMS = 100

# The reset budget, a token bucket per connection.  Every stream that ends
# without an ordinary exchange because of the client (the client reset it,
# or its request was malformed and refused) takes a token; an empty bucket
# means GOAWAY ENHANCE_YOUR_CALM and the connection is closed.  A browser
# cancels a handful of streams when a user navigates away; a rapid-reset
# attack (CVE-2023-44487) needs thousands per second.  A burst of 100 (one
# full set of concurrent streams) and 10 a second after that keep the first
# unaffected and bound the second to ~10 wasted requests a second.
RESET_BURST = 100
RESET_RATE = 10.0

# Flow control, inbound.  Each stream gets a 256 KiB window (a 64 KiB one
# capped uploads at a window per round trip), so a stream that is not read
# holds at most that much; the connection window is
# opened wide enough for every stream's window at once, so that paused
# streams can never starve the others of connection-level credit.
STREAM_WINDOW = 256 * 1024
# A stream whose body is being read has its window doubled each time it has
# passed a whole window's worth to the upstream, up to MAX_STREAM_WINDOW: an
# upload is then not held to 256 KiB per round trip, which on a busy host
# (the client waiting for our WINDOW_UPDATE behind other work, the upstream
# pausing us every 64 KiB it has not yet taken) halved its speed.  What
# streams gain together is bounded per connection by STREAM_GROWTH, given
# back when a stream ends: a connection's streams hold at most
# MAX_CONCURRENT_STREAMS * STREAM_WINDOW + STREAM_GROWTH unread.
MAX_STREAM_WINDOW = 4 * 1024 * 1024
STREAM_GROWTH = 2 * MAX_STREAM_WINDOW
# The connection window covers every stream's window at once, grown ones too.
CONNECTION_WINDOW = MAX_CONCURRENT_STREAMS * STREAM_WINDOW + STREAM_GROWTH
# RFC 9113 section 6.9.2: SETTINGS do not change the connection's initial window.
_INITIAL_CONNECTION_WINDOW = 65_535

# Flow control, outbound: unsent response bytes per stream above which its
# producer (the upstream connection) is paused, and below which it resumes.
OUTBOUND_HIGH_WATER = 128 * 1024
OUTBOUND_LOW_WATER = 32 * 1024
# At most this much of one stream per pass, so that streams share the
# connection window instead of the first taking all of it.
_QUANTUM = 64 * 1024

# After our GOAWAY, the connection keeps reading (and discarding) for up to
# this long before it closes: closing a socket with unread input makes the
# kernel send a TCP RST, which can destroy the GOAWAY before the client has
# read it.  A client that reads the GOAWAY and closes ends this early.
LINGER_AFTER_GOAWAY = 2.0
# After that, a client that does not read what we sent is cut after this long.
ABORT_AFTER = 10.0

# Request heads remembered per connection (see _request_received).
_VERDICTS_MAX = 32

_END = None  # end of the request body, in a stream's inbound queue

_REFUSAL_BODY = {400: b"bad request\n", 501: b"not implemented\n"}


class ResetBudget:
    """The token bucket of L{RESET_BURST} and L{RESET_RATE}."""

    def __init__(
        self, seconds: Callable[[], float], burst: int = RESET_BURST, rate: float = RESET_RATE
    ):
        self._seconds = seconds
        self.burst = burst
        self.rate = rate
        self.tokens = float(burst)
        self._stamp = seconds()

    def spend(self) -> bool:
        """Takes a token; False when there was none left."""
        now = self._seconds()
        # Clamped: a wall clock stepping back must not drain the bucket.
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        self.tokens = min(float(self.burst), self.tokens + elapsed * self.rate)
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@implementer(IPushProducer)
class H2Stream:
    """
    One request/response exchange on an L{H2ServerConnection}: the channel
    of its L{GatewayRequest}.
    """

    # twisted.web's Request copies its channel's transport; HTTP/2 has none
    # of its own to offer.
    transport = None
    persistent = True  # set by the gateway for HTTP/1.1; meaningless here

    def __init__(self, connection: H2ServerConnection, stream_id: int) -> None:
        self._conn = connection
        self.streamID = stream_id
        self.site = connection.site
        self.factory = connection.site  # twisted.web logs through channel.factory
        self.head: RequestHead | None = None
        self.request: GatewayRequest | None = None
        self.remote_ended = False
        self.closed = False
        self.body_bytes = 0
        # Inbound body: (data, flow-controlled length) chunks, then _END.
        self._inbound: deque[tuple[bytes, int] | None] = deque()
        self._paused = False
        self._dispatched = False
        # Inbound window growth (MAX_STREAM_WINDOW): the window now, what it
        # gained, and the body bytes read since it last grew.
        self.window = STREAM_WINDOW
        self.grown = 0
        self._read_since_growth = 0
        # The response is complete (or was never ours to send): body bytes
        # still arriving are discarded and their credit returned.
        self._discarding = False
        # Outbound.
        self._out: deque[bytes] = deque()
        self._out_bytes = 0
        self._headers_sent = False
        self._end_queued = False
        self._end_sent = False
        # Response trailers: sent on a HEADERS frame that ends the stream.
        self._trailers: list[tuple[bytes, bytes]] | None = None
        # The client's request trailers, kept until the request exists.
        self.received_trailers: list[tuple[bytes, bytes]] = []
        self.producer: Any = None
        self._streaming = True
        self._producer_paused = False

    # -- from the connection --------------------------------------------------

    def receive_data(self, data: bytes, flow_controlled: int) -> None:
        if self._discarding:
            self._conn.acknowledge(self.streamID, flow_controlled)
            return
        self.body_bytes += len(data)
        self._inbound.append((data, flow_controlled))
        if self.request is not None and not self._paused:
            self._feed()

    def receive_end(self) -> None:
        self.remote_ended = True
        if self._discarding:
            return
        self._inbound.append(_END)
        if self.request is not None and not self._paused:
            self._feed()

    def dispatch(self) -> None:
        """Hands the request to the gateway: at the end of the read its head came in."""
        head = self.head
        assert head is not None
        site = self.site
        request: GatewayRequest = site.requestFactory(self, queued=False)
        self.request = request
        headers = request.requestHeaders
        for name, value in head.headers:
            headers.addRawHeader(name, value)
        length = head.content_length
        if self.remote_ended and (length is not None or not self.received_trailers):
            # All of it is here: forwarded with its length, unless that would
            # leave its trailers nowhere to go on an HTTP/1.1 upstream.
            length = self.body_bytes
        request.gotLength(length)
        if self.received_trailers:
            request.request_trailers = self.received_trailers
        self._feed()
        if not self._dispatched and self.request is not None:
            self._dispatched = True
            request.headersReceived(head.method, head.path, b"HTTP/2")
            if (
                self.request is not None
                and not request.startedWriting
                and not request.finished
                and _expects_continue(head.headers)
            ):
                self.send_continue()

    def _feed(self) -> None:
        request = self.request
        inbound = self._inbound
        consumed = 0
        while inbound and not self._paused and self.request is not None and not self._discarding:
            item = inbound.popleft()
            if item is _END:
                head = self.head
                assert head is not None and request is not None
                self._dispatched = True
                request.requestReceived(head.method, head.path, b"HTTP/2")
            else:
                data, flow_controlled = item
                consumed += flow_controlled
                assert request is not None
                request.handleContentChunk(data)
        if consumed:
            self._conn.acknowledge(self.streamID, consumed)
            self._read_since_growth += consumed
            if (
                self._read_since_growth >= self.window
                and self.window < MAX_STREAM_WINDOW
                and not self.remote_ended
            ):
                self._conn.grow_window(self)

    def _release_inbound(self) -> None:
        """Returns the credit of body bytes that will never be read."""
        held = sum(item[1] for item in self._inbound if item is not _END)
        self._inbound.clear()
        if held:
            self._conn.acknowledge(self.streamID, held)

    def lost(self, reason: Failure) -> None:
        """The client reset the stream, or the connection went away."""
        if self.closed:
            return
        self.closed = True
        self._discarding = True
        self._inbound.clear()
        self._out.clear()
        self._out_bytes = 0
        request, self.request = self.request, None
        producer, self.producer = self.producer, None
        if producer is not None and not self._streaming:
            producer.stopStreaming()
        if request is not None and not request.finished:
            if request.producer is not None:
                # Unregistered here: the request's own unregister would
                # reach for a channel it no longer has.
                request.producer = None
            request.connectionLost(reason)

    # -- outbound ---------------------------------------------------------------

    def writeHeaders(self, version: bytes, code: bytes | int, reason: bytes, headers: Any) -> None:
        if self.closed or self._headers_sent:
            return
        self._headers_sent = True
        status = code if isinstance(code, bytes) else b"%d" % code
        pairs: Iterable[tuple[bytes, bytes]]
        if hasattr(headers, "getAllRawHeaders"):
            pairs = [(k, v) for k, values in headers.getAllRawHeaders() for v in values]
        else:
            pairs = headers
        block = [(b":status", status)]
        for name, value in pairs:
            name = name.lower()
            if name not in CONNECTION_SPECIFIC:
                block.append((name, value))
        self._conn.send_headers(self.streamID, block)

    def write_head(self, code: int, headers: Iterable[tuple[bytes, bytes]]) -> None:
        """The response head from already lower-case, validated pairs (the proxy's)."""
        self.writeHeaders(b"HTTP/2", code, b"", list(headers))

    def write_head_only(self, code: int, headers: Iterable[tuple[bytes, bytes]]) -> None:
        """
        A response that is all head: one HEADERS frame with END_STREAM (what
        gRPC calls trailers-only, the form its clients read a status from).
        """
        if self.closed or self._headers_sent or self._end_queued:
            return
        self._headers_sent = True
        self._end_queued = True
        self._end_sent = True
        self._discarding = True
        self._release_inbound()
        block = [(b":status", b"%d" % code)]
        for name, value in headers:
            name = name.lower()
            if name not in CONNECTION_SPECIFIC:
                block.append((name, value))
        self._conn.send_headers(self.streamID, block, end_stream=True)
        self._finished()

    def write_trailers(self, trailers: Iterable[tuple[bytes, bytes]]) -> None:
        """Trailers for the response, sent after its last DATA; valid until it ends."""
        if self.closed or self._end_queued or not self._headers_sent:
            return
        kept = [
            (name.lower(), value)
            for name, value in trailers
            if not name.startswith(b":") and name.lower() not in CONNECTION_SPECIFIC
        ]
        if kept:
            self._trailers = (self._trailers or []) + kept

    def write(self, data: bytes) -> None:
        if not data or self.closed or self._end_queued:
            return
        self._out.append(data)
        self._out_bytes += len(data)
        self._conn.ready(self)
        if (
            self._out_bytes > OUTBOUND_HIGH_WATER
            and self.producer is not None
            and not self._producer_paused
        ):
            self._producer_paused = True
            self.producer.pauseProducing()

    def writeSequence(self, iovec: Iterable[bytes]) -> None:
        self.write(b"".join(iovec))

    def requestDone(self, request: object) -> None:
        """The response is complete: END_STREAM once its data is out."""
        self.request = None
        self._end_response()

    def loseConnection(self) -> None:
        self._end_response()

    def _end_response(self) -> None:
        if self.closed or self._end_queued:
            return
        self._end_queued = True
        self._discarding = True
        self._release_inbound()
        self._conn.ready(self)

    def send_some(self, h2conn: ServerMachine, budget: int) -> int:
        """Sends what the windows allow, up to C{budget} bytes; returns bytes sent."""
        stream_id = self.streamID
        out = self._out
        sent = 0
        try:
            while out and sent < budget:
                chunk = next_chunk(out, h2conn, stream_id, budget - sent)
                if chunk is None:
                    break
                size = len(chunk)
                self._out_bytes -= size
                sent += size
                last = not out and self._end_queued and self._trailers is None
                h2conn.send_chunk(stream_id, chunk, end_stream=last)
                if last:
                    self._end_sent = True
            if not out and self._end_queued and not self._end_sent:
                if self._trailers is not None:
                    h2conn.send_response_headers(stream_id, self._trailers, end_stream=True)
                else:
                    h2conn.send_chunk(stream_id, b"", end_stream=True)
                self._end_sent = True
        except h2.exceptions.StreamClosedError:
            self.lost(Failure(ConnectionLost("stream closed")))
            self._conn.forget(self)
            return sent
        if self._end_sent:
            self._finished()
        elif self._producer_paused and self._out_bytes <= OUTBOUND_LOW_WATER:
            self._producer_paused = False
            if self.producer is not None:
                self.producer.resumeProducing()
        return sent

    @property
    def has_output(self) -> bool:
        return bool(self._out) or (self._end_queued and not self._end_sent)

    def _finished(self) -> None:
        """END_STREAM is out; RFC 9113 section 8.1: reset a request still arriving."""
        self.closed = True
        if not self.remote_ended:
            self._conn.reset(self.streamID, ErrorCodes.NO_ERROR)
        self._conn.forget(self)

    def refuse(self, refusal: Refusal) -> None:
        """Answers a malformed request itself; nothing reaches the gateway."""
        body = _REFUSAL_BODY.get(refusal.status, b"bad request\n")
        self._discarding = True
        self._release_inbound()
        self.writeHeaders(
            b"HTTP/2",
            refusal.status,
            b"",
            [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"%d" % len(body)),
                (b"cache-control", b"no-store"),
                (b"x-request-id", secrets.token_hex(16).encode("ascii")),
            ],
        )
        self.write(body)
        self._end_response()

    def send_continue(self) -> None:
        if not self.closed and not self._headers_sent:
            self._conn.send_headers(self.streamID, [(b":status", b"100")])

    # -- what twisted.web's Request asks of its channel ---------------------------

    def getPeer(self) -> IAddress:
        return self._conn.peer

    def getHost(self) -> IAddress:
        return self._conn.host

    def isSecure(self) -> bool:
        return self._conn.secure

    @property
    def server_name(self) -> str | None:
        return self._conn.server_name

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        if self.producer is not None:
            raise ValueError(
                f"registering producer {producer} before {self.producer} was unregistered"
            )
        if not streaming:
            producer = _PullToPush(producer, self)
            producer.startStreaming()
        self.producer = producer
        self._streaming = streaming
        self._producer_paused = False
        if self._out_bytes > OUTBOUND_HIGH_WATER:
            self._producer_paused = True
            producer.pauseProducing()

    def unregisterProducer(self) -> None:
        producer, self.producer = self.producer, None
        if producer is not None and not self._streaming:
            producer.stopStreaming()
        self._producer_paused = False

    def _respondToBadRequestAndDisconnect(self) -> None:
        if self._headers_sent:
            self.abortConnection()
            return
        self.refuse(Refusal(400, "bad request body"))

    def abortConnection(self) -> None:
        """Resets the stream: a response cut short, or a request abandoned."""
        if self.closed:
            return
        self._conn.reset(self.streamID, ErrorCodes.INTERNAL_ERROR)
        self.lost(Failure(ConnectionAborted("stream reset by the gateway")))
        self._conn.forget(self)

    # -- IPushProducer, for the request body ---------------------------------------

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        if not self._paused:
            return
        self._paused = False
        if self.request is not None:
            self._feed()
        self._conn.flush()

    def stopProducing(self) -> None:
        self.abortConnection()


def _expects_continue(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name == b"expect" and value.lower() == b"100-continue" for name, value in headers)


@implementer(IPushProducer)
class H2ServerConnection(Protocol, TimeoutMixin):
    """One client connection that negotiated h2 (see the module docstring)."""

    def __init__(self, site: GatewaySite, clock: Any) -> None:
        self.site = site
        self.clock = clock
        self.callLater = clock.callLater  # type: ignore[method-assign]
        self.timeOut = site.timeOut  # type: ignore[assignment]
        self.header_deadline: float = getattr(site, "header_deadline", 0.0) or 0.0
        self.underscores: str = getattr(site, "underscores", UNDERSCORES_DROP)
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            # parse_request_head does this, per stream (see request_head).
            validate_inbound_headers=False,
            normalize_inbound_headers=True,
            # What we send is already lower-case and validated: the upstream
            # parsers check every field, and writeHeaders / write_trailers
            # drop connection-specific ones.  h2's checks cost as much again.
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        machine = ServerMachine(config=config)
        machine.encoder = StaticEncoder()  # type: ignore[assignment]
        machine.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
                SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_BLOCK_BYTES,
                SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            },
        )
        self._h2 = machine
        self.streams: dict[int, H2Stream] = {}
        self._new: list[H2Stream] = []
        self._ready: dict[int, H2Stream] = {}
        self._batch: list[bytes] | None = None
        self._transport_paused = False
        self._closing = False
        self._lost = False
        self._scanner = FrameScanner()
        self._budget = ResetBudget(clock.seconds)
        self._header_timer: IDelayedCall | None = None
        self._first_request_timer: IDelayedCall | None = None
        self._abort_timer: IDelayedCall | None = None
        self._linger_timer: IDelayedCall | None = None
        self.requests_seen = 0
        self.growth_left = STREAM_GROWTH
        self._verdicts: dict[tuple[Any, ...], RequestHead | Refusal] = {}
        self.goaway_code: ErrorCodes | None = None
        # Set by drain(): the last stream this connection still serves.
        self.drain_last_stream: int | None = None

    # -- connection lifetime ------------------------------------------------------

    def connectionMade(self) -> None:
        transport: Any = self.transport
        self.peer = transport.getPeer()
        self.host = transport.getHost()
        self.secure = ISSLTransport(transport, None) is not None
        self._h2.initiate_connection()
        self._h2.increment_flow_control_window(CONNECTION_WINDOW - _INITIAL_CONNECTION_WINDOW)
        self._write_out()
        transport.registerProducer(self, True)
        gateway = getattr(self.site, "gateway", None)
        if gateway is not None:
            gateway.h2_connections.add(self)
        self.setTimeout(self.timeOut)
        if self.header_deadline:
            self._first_request_timer = self.callLater(self.header_deadline, self._no_request)

    _server_name: str | bool | None = False

    @property
    def server_name(self) -> str | None:
        """The TLS SNI name (lower case, no trailing dot), looked up once."""
        name = self._server_name
        if name is False:
            name = self._server_name = sni_name(self.transport)
        return name  # type: ignore[return-value]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost = True
        self._closing = True
        self.setTimeout(None)
        timers = (
            self._header_timer,
            self._first_request_timer,
            self._abort_timer,
            self._linger_timer,
        )
        for timer in timers:
            if timer is not None and timer.active():
                timer.cancel()
        self._header_timer = self._first_request_timer = self._abort_timer = None
        self._linger_timer = None
        flush, self._flush_call = self._flush_call, None
        if flush is not None and flush.active():
            flush.cancel()
        streams = list(self.streams.values())
        self.streams.clear()
        self._ready.clear()
        self._new = []
        for stream in streams:
            stream.lost(reason)

    def timeoutConnection(self) -> None:
        if self.streams:
            # Requests in progress have their own deadlines.
            self.setTimeout(self.timeOut)
            return
        self.go_away(ErrorCodes.NO_ERROR, "idle")

    def _no_request(self) -> None:
        self._first_request_timer = None
        if self.requests_seen:
            return
        if self._scanner.in_header_block:
            self._header_deadline_hit()  # the first request's block, too slow
        else:
            self.go_away(ErrorCodes.NO_ERROR, "no request within the header deadline")

    def _header_deadline_hit(self) -> None:
        self._header_timer = None
        self.go_away(ErrorCodes.ENHANCE_YOUR_CALM, "header block not finished within the deadline")

    def drain(self) -> None:
        """
        Graceful GOAWAY (RFC 9113 section 6.8), for a gateway about to stop:
        the client is told the last stream that will be served, opens its
        next streams on another replica, and the streams in flight finish
        here; the connection closes once the last of them has.

        h2 closes its state machine on any GOAWAY it sends, after which it
        would refuse the frames of the streams still finishing, so this
        GOAWAY is queued as a bare frame.
        """
        if self._closing or self.drain_last_stream is not None:
            return
        machine = self._h2
        last = machine.highest_inbound_stream_id
        self.drain_last_stream = last
        machine._prepare_for_sending(
            [GoAwayFrame(0, error_code=ErrorCodes.NO_ERROR, last_stream_id=last)]
        )
        self._write_out()
        if not self.streams:
            self.go_away(ErrorCodes.NO_ERROR, "drained")

    def go_away(self, code: ErrorCodes, why: str) -> None:
        """GOAWAY with C{code}, then close; a client that does not read is cut."""
        if self._closing:
            return
        self._closing = True
        self.goaway_code = code
        _log.info("HTTP/2 connection from {peer} closed: {why}", peer=self.peer, why=why)
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._h2.close_connection(error_code=code)  # unless h2 has queued its own
        self._close_transport(linger=True)

    def _close_transport(self, linger: bool = False) -> None:
        self._closing = True
        self._write_out()
        transport: Any = self.transport
        if transport is None or self._lost:
            return
        if linger:
            if self._linger_timer is None:
                if self._transport_paused:
                    transport.resumeProducing()  # reading on, to discard
                self._linger_timer = self.callLater(LINGER_AFTER_GOAWAY, self._close_transport)
            return
        timer, self._linger_timer = self._linger_timer, None
        if timer is not None and timer.active():
            timer.cancel()
        transport.unregisterProducer()
        transport.loseConnection()
        if self._abort_timer is None:
            self._abort_timer = self.callLater(ABORT_AFTER, self._abort)

    def _abort(self) -> None:
        self._abort_timer = None
        if not self._lost and self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    # -- IPushProducer: the transport's backpressure on our writes ---------------

    def pauseProducing(self) -> None:
        """The client is not reading: send no more DATA, and read no more frames."""
        if not self._transport_paused:
            self._transport_paused = True
            if self.transport is not None and not self._closing:
                self.transport.pauseProducing()  # type: ignore[attr-defined]

    def resumeProducing(self) -> None:
        if self._transport_paused:
            self._transport_paused = False
            if self.transport is not None and not self._closing:
                self.transport.resumeProducing()  # type: ignore[attr-defined]
            self.flush()

    def stopProducing(self) -> None:
        pass  # connectionLost follows

    # -- reading -----------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        scanner = self._scanner
        scanner.feed(data)
        if scanner.oversized:
            self.go_away(ErrorCodes.ENHANCE_YOUR_CALM, "header block too large")
            return
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            # h2 has queued a GOAWAY with the error's code.
            self.goaway_code = e.error_code
            _log.info("HTTP/2 protocol error from {peer}: {error}", peer=self.peer, error=str(e))
            self._close_transport(linger=True)
            return
        self.resetTimeout()
        self._batch = []
        try:
            handlers = _HANDLERS
            for event in events:
                handler = handlers.get(type(event))
                if handler is not None:
                    handler(self, event)
                    if self._closing:
                        break
            new, self._new = self._new, []
            if not self._closing:
                for stream in new:
                    if not stream.closed and stream.request is None:
                        self._dispatch(stream)
        finally:
            self._pump()
            self._write_out()
            batch, self._batch = self._batch, None
            if batch:
                self._transport_write(batch)
        if self._closing:
            return
        if scanner.in_header_block:
            if self._header_timer is None and self.header_deadline:
                self._header_timer = self.callLater(self.header_deadline, self._header_deadline_hit)
        elif self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _dispatch(self, stream: H2Stream) -> None:
        try:
            stream.dispatch()
        except Exception:
            # A bug in the gateway, not anything the client did.
            request = stream.request
            failure = Failure()
            if request is not None and not request.finished and not request.startedWriting:
                request.processingFailed(failure)
            else:
                _log.failure("HTTP/2 request failed inside the gateway", failure)
                stream.abortConnection()

    def _request_received(self, event: h2.events.RequestReceived) -> None:
        self.requests_seen += 1
        timer = self._first_request_timer
        if timer is not None:
            self._first_request_timer = None
            timer.cancel()
        drain_last = self.drain_last_stream
        if drain_last is not None and event.stream_id > drain_last:
            # Sent before the client read our GOAWAY: never processed, so
            # the client may safely ask another replica.
            self.reset(event.stream_id, ErrorCodes.REFUSED_STREAM)
            return
        stream = H2Stream(self, event.stream_id)
        self.streams[event.stream_id] = stream
        fields = event.headers or ()
        if self._h2.request_decoder.last_hit:
            # A block seen before: the same fields, so the same verdict
            # (parse_request_head is pure).  Remembered only then, so the
            # memo holds fields the decoder's memo holds anyway.
            key = tuple(fields)
            verdict = self._verdicts.get(key)
            if verdict is None:
                verdict = parse_request_head(fields, self.underscores)
                if len(self._verdicts) >= _VERDICTS_MAX:
                    self._verdicts.clear()
                self._verdicts[key] = verdict
        else:
            verdict = parse_request_head(fields, self.underscores)
        if isinstance(verdict, Refusal):
            if not self._budget.spend():
                self.go_away(ErrorCodes.ENHANCE_YOUR_CALM, "too many refused streams")
                return
            stream.refuse(verdict)
            return
        stream.head = verdict
        self._new.append(stream)

    def _data_received(self, event: h2.events.DataReceived) -> None:
        stream_id = event.stream_id
        stream = self.streams.get(stream_id)
        flow_controlled = event.flow_controlled_length or 0
        if stream is None:
            # A stream we no longer track (answered, reset): only the credit matters.
            self.acknowledge(stream_id, flow_controlled)
            return
        stream.receive_data(event.data or b"", flow_controlled)

    def _stream_ended(self, event: h2.events.StreamEnded) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.receive_end()

    def _stream_reset(self, event: h2.events.StreamReset) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            self.forget(stream)
            stream.lost(Failure(ConnectionLost(f"stream reset by the client ({event.error_code})")))
        if event.remote_reset and not self._budget.spend():
            self.go_away(ErrorCodes.ENHANCE_YOUR_CALM, "too many stream resets")

    def _trailers_received(self, event: h2.events.TrailersReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return
        problem = check_trailers(event.headers or ())
        if problem is not None:
            self.reset(stream.streamID, ErrorCodes.PROTOCOL_ERROR)
            stream.lost(Failure(ConnectionLost(f"malformed trailers: {problem}")))
            self.forget(stream)
        else:
            # Before StreamEnded (h2 reports both for the last HEADERS), so
            # the proxy has them when it sends the body's end.
            stream.received_trailers = forwardable_trailers(event.headers or ())
            if stream.request is not None:
                stream.request.request_trailers = stream.received_trailers

    def _window_updated(self, event: Any) -> None:
        if event.stream_id:
            stream = self.streams.get(event.stream_id)
            if stream is not None and stream.has_output:
                self._ready[stream.streamID] = stream
        else:
            for stream in self.streams.values():
                if stream.has_output:
                    self._ready[stream.streamID] = stream

    def _settings_changed(self, event: Any) -> None:
        # A new INITIAL_WINDOW_SIZE or MAX_FRAME_SIZE changes what may be sent.
        self._window_updated(_Everything)

    def _peer_goaway(self, event: Any) -> None:
        # h2 accepts no frame after a GOAWAY (its connection is CLOSED), so
        # the streams in flight cannot finish: close as twisted.web did.
        self._close_transport()

    # -- writing -----------------------------------------------------------------------

    def _transport_write(self, parts: list[bytes]) -> None:
        if parts and self.transport is not None and not self._lost:
            self.transport.writeSequence(parts)

    def _write_out(self) -> None:
        parts = self._h2.take_output()
        if parts:
            batch = self._batch
            if batch is not None:
                batch.extend(parts)
            else:
                self._transport_write(parts)

    def send_headers(
        self, stream_id: int, headers: list[tuple[bytes, bytes]], end_stream: bool = False
    ) -> None:
        try:
            self._h2.send_response_headers(stream_id, headers, end_stream=end_stream)
        except h2.exceptions.StreamClosedError:
            return
        if self._batch is None:
            self._flush_soon()

    def ready(self, stream: H2Stream) -> None:
        """
        C{stream} has something to send: at the end of the current read, or
        (from an upstream's read) in this reactor turn.
        """
        self._ready[stream.streamID] = stream
        if self._batch is None:
            self._flush_soon()

    _flush_call: IDelayedCall | None = None

    def _flush_soon(self) -> None:
        """
        One flush per connection per reactor turn.  A response usually
        arrives whole in one upstream read (head, body, end): flushed at
        once, each call became its own h2 call, frame and transport write,
        and the end of the stream an empty DATA frame.  Flushed at the end
        of the turn it is one HEADERS, one DATA with END_STREAM, one write.
        Nothing waits longer: the transport writes only when the reactor
        next polls anyway.
        """
        if self._flush_call is None and not self._lost:
            self._flush_call = self.callLater(0, self._flush_now)

    def _flush_now(self) -> None:
        self._flush_call = None
        if self._batch is None and not self._lost:
            self._pump()
            self._write_out()

    def flush(self) -> None:
        if self._batch is None:
            self._pump()
            self._write_out()

    def _pump(self) -> None:
        if self._transport_paused or self._lost:
            return
        ready = self._ready
        h2conn = self._h2
        progress = True
        while ready and progress:
            progress = False
            for stream_id, stream in list(ready.items()):
                if stream.send_some(h2conn, _QUANTUM):
                    progress = True
                if not stream.has_output or stream.closed:
                    ready.pop(stream_id, None)
            if h2conn.outbound_flow_control_window <= 0:
                break
        if self._batch is None:
            self.resetTimeout()

    def acknowledge(self, stream_id: int, size: int) -> None:
        """Returns C{size} bytes of credit: to the stream (if open) and the connection."""
        if size and not self._closing:
            self._h2.acknowledge_received_data(size, stream_id)
            if self._batch is None:
                self._flush_soon()

    def reset(self, stream_id: int, code: ErrorCodes) -> None:
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            self._h2.reset_stream(stream_id, code)
        if self._batch is None:
            self._write_out()

    def grow_window(self, stream: H2Stream) -> None:
        """Doubles C{stream}'s receive window, within what the connection has left to give."""
        grow = min(stream.window, MAX_STREAM_WINDOW - stream.window, self.growth_left)
        if grow <= 0 or self._closing:
            return
        try:
            self._h2.increment_flow_control_window(grow, stream.streamID)
        except (KeyError, h2.exceptions.ProtocolError):
            return  # h2 no longer has the stream open
        self.growth_left -= grow
        stream.grown += grow
        stream.window += grow
        stream._read_since_growth = 0
        if self._batch is None:
            self._flush_soon()

    def forget(self, stream: H2Stream) -> None:
        self.growth_left += stream.grown
        stream.grown = 0
        self.streams.pop(stream.streamID, None)
        self._ready.pop(stream.streamID, None)
        if self.drain_last_stream is not None and not self.streams:
            self.go_away(ErrorCodes.NO_ERROR, "drained")


class _Everything:
    """A WindowUpdated look-alike for the whole connection."""

    stream_id = 0


_HANDLERS: dict[type, Callable[[H2ServerConnection, Any], None]] = {
    h2.events.RequestReceived: H2ServerConnection._request_received,
    h2.events.DataReceived: H2ServerConnection._data_received,
    h2.events.StreamEnded: H2ServerConnection._stream_ended,
    h2.events.StreamReset: H2ServerConnection._stream_reset,
    h2.events.TrailersReceived: H2ServerConnection._trailers_received,
    h2.events.WindowUpdated: H2ServerConnection._window_updated,
    h2.events.RemoteSettingsChanged: H2ServerConnection._settings_changed,
    h2.events.ConnectionTerminated: H2ServerConnection._peer_goaway,
}
