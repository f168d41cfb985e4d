"""
HTTP/2 to upstreams: C{h2}'s client state machine over Twisted transports,
one connection per endpoint carrying many exchanges at once.

An L{H2UpstreamStream} offers the proxy (L{tenantgw.dataplane.proxy.Exchange})
the surface of an HTTP/1.1 L{tenantgw.dataplane.upstream.UpstreamConnection}:
C{start}, C{write_body}, C{abandon}, pause and resume, and it is its own
C{stream} for the request body's producer.  So the exchange, its deadlines,
retries and backpressure are the same whatever protocol the backend speaks.

What the connection does for its streams:

  - flow control both ways.  Response data is delivered at once, but a
    stream's window is reopened only while its client reads (a paused
    stream withholds WINDOW_UPDATE, so the upstream stops sending); the
    connection window is reopened as data arrives, so one paused stream
    cannot starve the others.  Request data goes out as the upstream's
    windows allow; a stream holding more than L{OUTBOUND_HIGH_WATER} unsent
    bytes pauses its client.
  - SETTINGS_MAX_CONCURRENT_STREAMS: streams past the upstream's limit wait
    in line, in order, for one to end.
  - GOAWAY: no new stream starts on the connection.  Streams the upstream
    says it never processed (above the GOAWAY's last stream id, or reset
    with REFUSED_STREAM) start again on a new connection, with the request
    body they had sent (kept up to L{REPLAY_LIMIT}); the others finish.
  - PING keepalive: a connection whose upstream has said nothing for
    L{PING_INTERVAL} is pinged; no answer within L{PING_TIMEOUT} ends it,
    and its exchanges fail as a reset would.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from h2.errors import ErrorCodes
from h2.settings import SettingCodes, Settings
from twisted.internet.interfaces import IHandshakeListener, IPushProducer, IReactorTCP, IReactorTime
from twisted.internet.protocol import ClientFactory, Protocol, connectionDone
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tenantgw.dataplane.upstream import EndpointKey, ExchangeHandler, ResponseHeaders
from tenantgw.http2.flow import next_chunk
from tenantgw.tls.upstream import UpstreamTrust
from tenantgw.wire.fields import is_token, valid_field_value

_log = Logger()

# Inbound windows: per stream, what an upstream may send before its client
# has read it (so the memory one slow client can hold); per connection,
# wide enough that paused streams never stall the others.
STREAM_WINDOW = 1024 * 1024
CONNECTION_WINDOW = 16 * 1024 * 1024
# Reopened once this much of a window is used, not on every frame.
_REOPEN_AT = 4

# Unsent request body per stream above which the client is paused, and
# below which it resumes.
OUTBOUND_HIGH_WATER = 128 * 1024
OUTBOUND_LOW_WATER = 32 * 1024

# Request body kept per stream until the upstream answers, so that a
# stream the upstream never processed can be sent again elsewhere.
REPLAY_LIMIT = 64 * 1024

# grpc-core servers count a PING that comes sooner than 5 minutes after the
# last one (grpc.http2.min_recv_ping_interval_without_data_ms) as abuse, and
# after two such strikes end the connection with GOAWAY ENHANCE_YOUR_CALM
# "too_many_pings", which would cut long, quiet streaming calls.  So a
# connection is pinged only after 5 minutes without a frame from its
# upstream (idle ones are closed well before: see the pool's idle timeout).
PING_INTERVAL = 300.0
PING_TIMEOUT = 20.0

# The client's own limit on streams it opens to one upstream, whatever the
# upstream advertises (h2 assumes 100 until the upstream's SETTINGS arrive).
MAX_STREAMS = 1000

_QUANTUM = 64 * 1024

_QUEUED, _OPEN, _DONE = range(3)


class _ClientMachine(h2.connection.H2Connection):
    """
    h2's client connection, kept open by a GOAWAY.

    h2 closes its state machine on any GOAWAY and then refuses every frame
    that follows, so the streams a graceful GOAWAY lets finish (those at or
    below its last stream id, RFC 9113 section 6.8) could never receive
    their responses.  Here a GOAWAY only produces its event; the connection
    itself starts no new stream afterwards.
    """

    def _receive_goaway_frame(self, frame: Any) -> tuple[list[Any], list[Any]]:
        event = h2.events.ConnectionTerminated()
        try:
            event.error_code = ErrorCodes(frame.error_code)
        except ValueError:
            event.error_code = frame.error_code
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]


def _well_formed(fields: ResponseHeaders) -> bool:
    """
    Lower-case token names and values without control characters: HPACK
    carries any byte, and these fields are written as they are to HTTP/1.1
    clients (where CR or LF would split the response) and to HTTP/2 clients.
    """
    return all(
        is_token(name) and name.lower() == name and valid_field_value(value)
        for name, value in fields
    )


@implementer(IPushProducer)
class H2UpstreamStream:
    """One exchange on an L{H2UpstreamConnection} (see the module docstring)."""

    reused = False  # a refused stream is replayed here, never by the exchange
    # The response is all head (HEADERS with END_STREAM): gRPC's
    # trailers-only form, which must reach an HTTP/2 client in that form.
    head_only = False

    def __init__(self, pool: H2UpstreamPool, key: EndpointKey) -> None:
        self.pool = pool
        self.key = key
        self.connection: H2UpstreamConnection | None = None
        self.stream_id = 0
        self.state = _QUEUED
        self.handler: ExchangeHandler | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.response_started = False
        self._out: deque[bytes] = deque()
        self._out_bytes = 0
        self._end_body = False
        self._end_sent = False
        # The client's request trailers: a HEADERS frame that ends the stream.
        self._end_trailers: list[tuple[bytes, bytes]] = []
        self._replay: list[bytes] | None = []
        self._replay_bytes = 0
        self.producer: Any = None
        self._producer_paused = False
        self._paused = False
        self._unacked = 0  # response bytes read while paused: credit not yet returned
        self.credit = 0  # response bytes read, credit not yet returned (batched)

    @property
    def stream(self) -> H2UpstreamStream:
        """The exchange registers its body producer with C{connection.stream}."""
        return self

    # -- driven by the exchange --------------------------------------------------

    def start(
        self,
        handler: ExchangeHandler,
        head: Any,
        head_request: bool,
        upgrade: bool = False,
    ) -> None:
        self.handler = handler
        self.headers = head
        self._end_body = handler.request_sent  # no body: END_STREAM on the HEADERS
        connection = self.connection
        if connection is not None:
            connection.enqueue(self)

    def write_body(self, data: bytes) -> None:
        if not data or self.state == _DONE or self._end_body:
            return
        if self._replay is not None:
            if self._replay_bytes + len(data) <= REPLAY_LIMIT:
                self._replay.append(data)
                self._replay_bytes += len(data)
            else:
                self._replay = None
        self._out.append(data)
        self._out_bytes += len(data)
        if (
            self._out_bytes > OUTBOUND_HIGH_WATER
            and self.producer is not None
            and not self._producer_paused
        ):
            self._producer_paused = True
            self.producer.pauseProducing()
        if self.state == _OPEN and self.connection is not None:
            self.connection.ready(self)

    def end_body(self, trailers: list[tuple[bytes, bytes]] | None = None) -> None:
        if self.state == _DONE or self._end_body:
            return
        self._end_body = True
        if trailers:
            self._end_trailers = trailers
        if self.state == _OPEN and self.connection is not None:
            self.connection.ready(self)

    def abandon(self) -> None:
        """The exchange is over for the client: the stream is cancelled, the connection kept."""
        self.handler = None
        self._drop_producer()
        if self.state == _DONE:
            return
        state, self.state = self.state, _DONE
        connection = self.connection
        if connection is not None:
            if state == _OPEN:
                connection.cancel(self)
            else:
                connection.unqueue(self)

    # -- IPushProducer, registered with the client-facing request -----------------

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        if not self._paused:
            return
        self._paused = False
        unacked, self._unacked = self._unacked, 0
        if unacked and self.state == _OPEN and self.connection is not None:
            self.connection.reopen_stream(self, unacked)

    def stopProducing(self) -> None:
        self.abandon()

    # -- the request body's producer (what the exchange registers on .stream) -----

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer
        self._producer_paused = False
        if self._out_bytes > OUTBOUND_HIGH_WATER:
            self._producer_paused = True
            producer.pauseProducing()

    def unregisterProducer(self) -> None:
        self.producer = None
        self._producer_paused = False

    def _drop_producer(self) -> None:
        producer, self.producer = self.producer, None
        if producer is not None and self._producer_paused:
            self._producer_paused = False
            producer.resumeProducing()

    # -- driven by the connection ---------------------------------------------------

    def send_some(self, machine: h2.connection.H2Connection, budget: int) -> int:
        stream_id = self.stream_id
        out = self._out
        sent = 0
        while out and sent < budget:
            chunk = next_chunk(out, machine, stream_id, budget - sent)
            if chunk is None:
                break
            size = len(chunk)
            self._out_bytes -= size
            sent += size
            last = not out and self._end_body and not self._end_trailers
            machine.send_data(stream_id, chunk, end_stream=last)
            if last:
                self._end_sent = True
        if not out and self._end_body and not self._end_sent:
            if self._end_trailers:
                machine.send_headers(stream_id, self._end_trailers, end_stream=True)
            else:
                machine.end_stream(stream_id)
            self._end_sent = True
        if self._producer_paused and self._out_bytes <= OUTBOUND_LOW_WATER:
            self._producer_paused = False
            if self.producer is not None:
                self.producer.resumeProducing()
        return sent

    @property
    def has_output(self) -> bool:
        return bool(self._out) or (self._end_body and not self._end_sent)

    def opened(self, connection: H2UpstreamConnection, stream_id: int) -> None:
        self.connection = connection
        self.stream_id = stream_id
        self.state = _OPEN

    def replayable(self) -> bool:
        """Nothing of the response came, and every body byte sent is still held."""
        return self.state != _DONE and not self.response_started and self._replay is not None

    def rewind(self) -> None:
        """Back to the start, for another connection: the body again from its first byte."""
        replay = self._replay or []
        self._out = deque(replay)
        self._out_bytes = self._replay_bytes
        self._end_sent = False
        self.stream_id = 0
        self.state = _QUEUED
        self.connection = None

    def response_head(self, headers: list[tuple[bytes, bytes]], ended: bool = False) -> None:
        self.response_started = True
        self.head_only = ended
        self._replay = None
        status = 0
        kept: ResponseHeaders = []
        for name, value in headers:
            if name == b":status":
                status = int(value) if value.isdigit() and len(value) == 3 else 0
            elif not name.startswith(b":"):
                kept.append((name, value))
        handler = self.handler
        if handler is None:
            return
        if status < 200:
            self.fail("malformed upstream :status")
            return
        if not _well_formed(kept):
            self.fail("malformed upstream response field")
            return
        handler.upstream_head(status, b"", kept)

    def response_data(self, data: bytes, flow_controlled: int) -> None:
        """Delivered now; the stream's credit comes back only while the client reads."""
        if self._paused:
            self._unacked += flow_controlled
        elif self.connection is not None and flow_controlled:
            self.connection.reopen_stream(self, flow_controlled)
        handler = self.handler
        if handler is not None and data:
            handler.upstream_data(data)

    def response_trailers(self, headers: list[tuple[bytes, bytes]]) -> None:
        handler = self.handler
        deliver = getattr(handler, "upstream_trailers", None)
        if deliver is None:
            return
        trailers = [(n, v) for n, v in headers if not n.startswith(b":")]
        if not _well_formed(trailers):
            self.fail("malformed upstream trailer field")
            return
        deliver(trailers)

    def response_end(self) -> None:
        handler = self.handler
        self.handler = None
        self.state = _DONE
        self._drop_producer()
        if handler is not None:
            if not self.response_started:
                handler.upstream_failed("upstream ended the stream without a response", False)
            else:
                handler.upstream_finished()

    def fail(self, reason: str) -> None:
        handler = self.handler
        self.handler = None
        was_open = self.state == _OPEN
        self.state = _DONE
        self._drop_producer()
        if was_open and self.connection is not None:
            self.connection.cancel(self, ErrorCodes.PROTOCOL_ERROR)
        if handler is not None:
            handler.upstream_failed(reason, self.response_started)


@implementer(IPushProducer, IHandshakeListener)
class H2UpstreamConnection(Protocol):
    """One connection to one endpoint; see the module docstring."""

    def __init__(self, pool: H2UpstreamPool, key: EndpointKey, tls: bool) -> None:
        self.pool = pool
        self.key = key
        self.tls = tls
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        machine = _ClientMachine(config=config)
        # Initial values, so that initiate_connection advertises them (h2
        # would hold values set later as pending until acknowledged).
        machine.local_settings = Settings(
            client=True,
            initial_values={
                SettingCodes.ENABLE_PUSH: 0,
                SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                SettingCodes.MAX_CONCURRENT_STREAMS: 0,
            },
        )
        self._h2 = machine
        self.streams: dict[int, H2UpstreamStream] = {}
        self._queued: deque[H2UpstreamStream] = deque()
        self._ready: dict[int, H2UpstreamStream] = {}
        self.going_away = False
        self.lost = False
        self.usable = False  # connected (and, over TLS, h2 agreed)
        self._transport_paused = False
        self._in_read = False
        self._connection_unacked = 0
        self.idle_since = 0.0
        self.heard_at = 0.0
        self.ping_sent_at: float | None = None
        self.announce: Callable[[H2UpstreamConnection | None, str], None] | None = None

    # -- lifetime ------------------------------------------------------------------

    def connectionMade(self) -> None:
        transport: Any = self.transport
        with contextlib.suppress(AttributeError):
            transport.setTcpNoDelay(True)
        self.heard_at = self.idle_since = self.pool.clock.seconds()
        transport.registerProducer(self, True)
        if not self.tls:
            self._usable()

    def handshakeCompleted(self) -> None:
        negotiated = getattr(self.transport, "negotiatedProtocol", None)
        if negotiated == b"h2":
            self._usable()
            return
        # The upstream speaks HTTP/1.1 on this port: remembered, and the
        # exchanges waiting for us go there instead.  Nothing was written on
        # this connection, so it ends at once.
        self.pool.speaks_http1(self.key)
        announce, self.announce = self.announce, None
        if announce is not None:
            announce(None, "h1")
        self.abort()

    def _usable(self) -> None:
        """The preface goes out only now: over TLS, only once ALPN said h2."""
        self.usable = True
        self._h2.initiate_connection()
        self._h2.increment_flow_control_window(CONNECTION_WINDOW - 65_535)
        self._flush()
        announce, self.announce = self.announce, None
        if announce is not None:
            announce(self, "")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = True
        self.going_away = True
        self.pool.forget(self)
        announce, self.announce = self.announce, None
        if announce is not None:
            announce(None, reason.getErrorMessage())
        why = reason.getErrorMessage()
        queued = list(self._queued)
        self._queued.clear()
        streams = list(self.streams.values())
        self.streams.clear()
        self._ready.clear()
        for stream in queued:
            # Never sent: safe anywhere.
            self.pool.rehome(stream)
        for stream in streams:
            stream.connection = None
            if stream.state == _DONE:
                continue
            if stream.stream_id and not stream.response_started and self._refused_by_goaway(stream):
                self.pool.rehome(stream)
            else:
                stream.fail(f"upstream connection lost: {why}")

    _goaway_last_id: int | None = None

    def _refused_by_goaway(self, stream: H2UpstreamStream) -> bool:
        last = self._goaway_last_id
        return last is not None and stream.stream_id > last and stream.replayable()

    def close(self) -> None:
        """Politely: GOAWAY, then close once written."""
        self.going_away = True
        if self.lost or self.transport is None:
            return
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._h2.close_connection()
        self._flush()
        self.transport.loseConnection()

    def abort(self) -> None:
        self.going_away = True
        if not self.lost and self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    @property
    def open_streams(self) -> int:
        return len(self.streams) + len(self._queued)

    def accepts_more(self) -> bool:
        return self.usable and not self.going_away and self.open_streams < MAX_STREAMS

    # -- streams ---------------------------------------------------------------------

    def enqueue(self, stream: H2UpstreamStream) -> None:
        stream.connection = self
        self._queued.append(stream)
        self._start_queued()
        self._flush_unless_reading()

    def unqueue(self, stream: H2UpstreamStream) -> None:
        with contextlib.suppress(ValueError):
            self._queued.remove(stream)
        self._maybe_idle()

    def _start_queued(self) -> None:
        machine = self._h2
        queued = self._queued
        # Until the upstream's SETTINGS arrive, the RFC's recommended minimum.
        advertised = machine.remote_settings.max_concurrent_streams if self._settings_seen else 100
        limit = min(advertised, MAX_STREAMS)
        while queued and not self.going_away and len(self.streams) < limit:
            stream = queued.popleft()
            if stream.state == _DONE or stream.handler is None:
                continue
            stream_id = machine.get_next_available_stream_id()
            end = stream._end_body and not stream._out and not stream._end_trailers
            try:
                machine.send_headers(stream_id, stream.headers, end_stream=end)
            except h2.exceptions.ProtocolError as e:
                stream.opened(self, stream_id)
                stream.fail(f"request head refused by h2: {e}")
                continue
            stream.opened(self, stream_id)
            if end:
                stream._end_sent = True
            self.streams[stream_id] = stream
            if stream.has_output:
                self._ready[stream_id] = stream

    def ready(self, stream: H2UpstreamStream) -> None:
        self._ready[stream.stream_id] = stream
        self._flush_unless_reading()

    def cancel(self, stream: H2UpstreamStream, code: ErrorCodes = ErrorCodes.CANCEL) -> None:
        stream_id = stream.stream_id
        if self.streams.pop(stream_id, None) is None:
            return
        self._ready.pop(stream_id, None)
        if not self.lost:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._h2.reset_stream(stream_id, code)
            self._start_queued()
            self._flush_unless_reading()
        self._maybe_idle()

    def reopen_stream(self, stream: H2UpstreamStream, size: int) -> None:
        """Returns C{size} bytes of the stream's window, in batches."""
        if self.lost or stream.stream_id not in self.streams:
            return
        stream.credit += size
        if stream.credit >= STREAM_WINDOW // _REOPEN_AT:
            credit, stream.credit = stream.credit, 0
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._h2.increment_flow_control_window(credit, stream.stream_id)
            self._flush_unless_reading()

    def _reopen_connection(self, size: int) -> None:
        self._connection_unacked += size
        if self._connection_unacked >= CONNECTION_WINDOW // _REOPEN_AT:
            credit, self._connection_unacked = self._connection_unacked, 0
            self._h2.increment_flow_control_window(credit)

    def _stream_done(self, stream: H2UpstreamStream) -> None:
        self.streams.pop(stream.stream_id, None)
        self._ready.pop(stream.stream_id, None)
        self._start_queued()
        self._maybe_idle()

    def _maybe_idle(self) -> None:
        if not self.streams and not self._queued:
            self.idle_since = self.pool.clock.seconds()
            if self.going_away:
                self.close()

    # -- reading ---------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.lost:
            return
        self.heard_at = self.pool.clock.seconds()
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            _log.info("upstream {key} HTTP/2 protocol error: {error}", key=self.key, error=str(e))
            self._flush()
            self.abort()
            return
        self._in_read = True
        try:
            for event in events:
                handler = _HANDLERS.get(type(event))
                if handler is not None:
                    handler(self, event)
                if self.lost:
                    return
        finally:
            self._in_read = False
        self._pump()
        self._flush()

    def _response_received(self, event: h2.events.ResponseReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.response_head(list(event.headers or ()), event.stream_ended is not None)

    def _data_received(self, event: h2.events.DataReceived) -> None:
        flow_controlled = event.flow_controlled_length or 0
        self._reopen_connection(flow_controlled)
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.response_data(event.data or b"", flow_controlled)

    def _trailers_received(self, event: h2.events.TrailersReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.response_trailers(list(event.headers or ()))

    def _stream_ended(self, event: h2.events.StreamEnded) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            self._stream_done(stream)
            stream.response_end()

    def _stream_reset(self, event: h2.events.StreamReset) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return
        self._stream_done(stream)
        if event.error_code == ErrorCodes.REFUSED_STREAM and stream.replayable():
            self.pool.rehome(stream)  # RFC 9113 section 8.7: not processed
            return
        stream.fail(f"upstream reset the stream ({event.error_code!s})")

    def _goaway(self, event: h2.events.ConnectionTerminated) -> None:
        self.going_away = True
        self.pool.forget(self)
        last = event.last_stream_id if event.last_stream_id is not None else 2**31 - 1
        self._goaway_last_id = last
        queued = list(self._queued)
        self._queued.clear()
        for stream in queued:
            self.pool.rehome(stream)
        for stream_id, stream in list(self.streams.items()):
            if stream_id > last:
                self._stream_done(stream)
                if stream.replayable():
                    self.pool.rehome(stream)
                else:
                    stream.fail("upstream went away before processing the stream")
        if event.error_code != ErrorCodes.NO_ERROR:
            for stream in list(self.streams.values()):
                self._stream_done(stream)
                stream.fail(f"upstream went away ({event.error_code!s})")
        self._maybe_idle()

    def _ping_acknowledged(self, event: Any) -> None:
        self.ping_sent_at = None

    def _window_updated(self, event: Any) -> None:
        if event.stream_id:
            stream = self.streams.get(event.stream_id)
            if stream is not None and stream.has_output:
                self._ready[stream.stream_id] = stream
        else:
            for stream in self.streams.values():
                if stream.has_output:
                    self._ready[stream.stream_id] = stream

    _settings_seen = False

    def _settings_changed(self, event: Any) -> None:
        self._settings_seen = True
        self._window_updated(_Everything)
        self._start_queued()

    # -- writing ---------------------------------------------------------------------

    def _flush_unless_reading(self) -> None:
        if not self._in_read:
            self._pump()
            self._flush()

    def _pump(self) -> None:
        if self._transport_paused or self.lost:
            return
        ready = self._ready
        machine = self._h2
        progress = True
        while ready and progress:
            progress = False
            for stream_id, stream in list(ready.items()):
                try:
                    if stream.send_some(machine, _QUANTUM):
                        progress = True
                except h2.exceptions.StreamClosedError:
                    ready.pop(stream_id, None)
                    continue
                if not stream.has_output or stream.state == _DONE:
                    ready.pop(stream_id, None)
            if machine.outbound_flow_control_window <= 0:
                break

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data and self.transport is not None and not self.lost:
            self.transport.write(data)

    def ping(self, now: float) -> None:
        if self.lost or self.ping_sent_at is not None:
            return
        self.ping_sent_at = now
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._h2.ping(os.urandom(8))
        self._flush()

    # -- IPushProducer: the upstream socket's backpressure on our writes ----------

    def pauseProducing(self) -> None:
        self._transport_paused = True

    def resumeProducing(self) -> None:
        self._transport_paused = False
        self._flush_unless_reading()

    def stopProducing(self) -> None:
        pass  # connectionLost follows


class _Everything:
    stream_id = 0


_HANDLERS: dict[type, Callable[[H2UpstreamConnection, Any], None]] = {
    h2.events.ResponseReceived: H2UpstreamConnection._response_received,
    h2.events.DataReceived: H2UpstreamConnection._data_received,
    h2.events.TrailersReceived: H2UpstreamConnection._trailers_received,
    h2.events.StreamEnded: H2UpstreamConnection._stream_ended,
    h2.events.StreamReset: H2UpstreamConnection._stream_reset,
    h2.events.ConnectionTerminated: H2UpstreamConnection._goaway,
    h2.events.PingAckReceived: H2UpstreamConnection._ping_acknowledged,
    h2.events.WindowUpdated: H2UpstreamConnection._window_updated,
    h2.events.RemoteSettingsChanged: H2UpstreamConnection._settings_changed,
}


class _Dial(ClientFactory):
    noisy = False

    def __init__(self, pool: H2UpstreamPool, key: EndpointKey) -> None:
        self.pool = pool
        self.key = key
        self.connection: H2UpstreamConnection | None = None

    def buildProtocol(self, addr: object) -> H2UpstreamConnection:
        connection = H2UpstreamConnection(self.pool, self.key, self.key[2] is not None)
        connection.announce = lambda c, why: self.pool.dialled(self.key, c, why)
        self.connection = connection
        return connection

    def clientConnectionFailed(self, connector: object, reason: Failure) -> None:
        self.pool.dialled(self.key, None, reason.getErrorMessage())


# Someone waiting for a stream: on_ready, on_fail, wanted.
_Waiter = tuple[
    Callable[[H2UpstreamStream], None], Callable[[str], None], "Callable[[], bool] | None"
]

# What an exchange is told when a TLS upstream chose HTTP/1.1 by ALPN.
SPEAKS_HTTP1 = "upstream speaks HTTP/1.1"


class H2UpstreamPool:
    """
    One live HTTP/2 connection per endpoint (and a new one when it goes
    away), with the dials in progress and who waits for them.
    """

    def __init__(
        self,
        reactor: IReactorTCP,
        clock: IReactorTime,
        trust: UpstreamTrust | None = None,
        connect_timeout: float = 5.0,
        idle_timeout: float = 50.0,
        ping_interval: float = PING_INTERVAL,
        ping_timeout: float = PING_TIMEOUT,
    ) -> None:
        self._reactor = reactor
        self.clock = clock
        self._trust = trust or UpstreamTrust()
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self._live: dict[EndpointKey, H2UpstreamConnection] = {}
        self._dialling: dict[EndpointKey, list[_Waiter]] = {}
        self._all: set[H2UpstreamConnection] = set()
        self._http1: set[EndpointKey] = set()
        self._sweeper = LoopingCall(self.sweep)
        self._sweeper.clock = clock
        self.connections_opened = 0

    def start(self) -> None:
        if not self._sweeper.running:
            period = max(1.0, min(self.ping_interval, self.idle_timeout) / 5)
            self._sweeper.start(period, now=False)

    def stop(self) -> None:
        if self._sweeper.running:
            self._sweeper.stop()
        # Aborted, as the HTTP/1.1 pool does: a stopping gateway does not
        # wait on upstreams.
        for connection in list(self._all):
            connection.abort()
        self._live.clear()

    def speaks_http1(self, key: EndpointKey) -> None:
        self._http1.add(key)

    def known_http1(self, key: EndpointKey) -> bool:
        """A TLS endpoint that chose HTTP/1.1 by ALPN once: asked in HTTP/1.1 from then on."""
        return key in self._http1

    def get(
        self,
        key: EndpointKey,
        on_ready: Callable[[H2UpstreamStream], None],
        on_fail: Callable[[str], None],
        tenant: str = "",
        wanted: Callable[[], bool] | None = None,
    ) -> None:
        """Calls C{on_ready} with a new stream once a connection to C{key} is up."""
        self.start()
        live = self._live.get(key)
        if live is not None and live.accepts_more():
            on_ready(self._stream_on(live))
            return
        waiters = self._dialling.get(key)
        if waiters is not None:
            waiters.append((on_ready, on_fail, wanted))
            return
        self._dialling[key] = [(on_ready, on_fail, wanted)]
        self._dial(key)

    def _stream_on(self, connection: H2UpstreamConnection) -> H2UpstreamStream:
        stream = H2UpstreamStream(self, connection.key)
        stream.connection = connection
        return stream

    def _dial(self, key: EndpointKey) -> None:
        self.connections_opened += 1
        dial = _Dial(self, key)
        address, port, tls_name = key
        if tls_name is None:
            self._reactor.connectTCP(address, port, dial, timeout=self.connect_timeout)
        else:
            self._reactor.connectSSL(  # type: ignore[attr-defined]
                address,
                port,
                dial,
                self._trust.options_for(tls_name, alpn=(b"h2", b"http/1.1")),
                timeout=self.connect_timeout,
            )

    def dialled(self, key: EndpointKey, connection: H2UpstreamConnection | None, why: str) -> None:
        """A dial ended: with a usable connection, or with C{why} it is not one."""
        waiters = self._dialling.pop(key, [])
        if connection is not None:
            self._all.add(connection)
            self._live[key] = connection
            for on_ready, _, wanted in waiters:
                if wanted is None or wanted():
                    on_ready(self._stream_on(connection))
            return
        reason = SPEAKS_HTTP1 if why == "h1" else why
        for _, on_fail, wanted in waiters:
            if wanted is None or wanted():
                on_fail(reason)

    def rehome(self, stream: H2UpstreamStream) -> None:
        """A stream the upstream never processed starts again on a connection that works."""
        if stream.state == _DONE or stream.handler is None:
            return
        stream.rewind()
        key = stream.key

        def ready(fresh: H2UpstreamStream) -> None:
            connection = fresh.connection
            assert connection is not None
            connection.enqueue(stream)

        def failed(reason: str) -> None:
            stream.fail(f"upstream connection failed on retry: {reason}")

        self.get(key, ready, failed, wanted=lambda: stream.handler is not None)

    def release(self, stream: H2UpstreamStream) -> None:
        """A stream its exchange no longer wants, before it started."""
        stream.abandon()

    def forget(self, connection: H2UpstreamConnection) -> None:
        if self._live.get(connection.key) is connection:
            del self._live[connection.key]
        if connection.lost:
            self._all.discard(connection)

    def live_connections(self, key: EndpointKey | None = None) -> int:
        if key is not None:
            return 1 if key in self._live else 0
        return len(self._live)

    def sweep(self) -> None:
        """Idle connections close; quiet ones are pinged; unanswered pings end them."""
        now = self.clock.seconds()
        for connection in list(self._all):
            if connection.lost:
                self._all.discard(connection)
                continue
            if not connection.open_streams and now - connection.idle_since >= self.idle_timeout:
                self.forget(connection)
                connection.close()
                continue
            sent = connection.ping_sent_at
            if sent is not None:
                if now - sent >= self.ping_timeout:
                    _log.info("upstream {key} did not answer a PING", key=connection.key)
                    self.forget(connection)
                    connection.abort()
            elif now - connection.heard_at >= self.ping_interval:
                connection.ping(now)
