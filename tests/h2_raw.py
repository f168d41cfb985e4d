"""
A raw HTTP/2 client for tests: frames in, frames out, no state machine.

C{h2} refuses to send a malformed request, which is exactly what the
hardening tests need to send, so this client builds frames with
C{hyperframe} and header blocks with C{hpack} and checks nothing: any header
list (upper-case names, SP in C{:path}, duplicate pseudo-headers), header
blocks split into HEADERS + CONTINUATION, RST_STREAM and DATA on any stream.
It reads frames back, decodes header blocks and acknowledges SETTINGS, and
nothing more (no flow control: tests send within the windows they mean to).

Also here: L{ByteRecorder}, a raw TCP backend that records every byte it
ever receives and every connection it accepts, and answers each request
head it can parse with a fixed 200.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from OpenSSL import SSL
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IHandshakeListener, IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from tests.eventually import not_within

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
Header = tuple[bytes, bytes]

# Error codes, RFC 9113 section 7.
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
STREAM_CLOSED = 0x5
REFUSED_STREAM = 0x7
ENHANCE_YOUR_CALM = 0xB


def request_headers(
    authority: bytes = b"a.example",
    path: bytes = b"/x",
    method: bytes = b"GET",
    extra: Sequence[Header] = (),
) -> list[Header]:
    """A well-formed request head, for positive controls and to start from."""
    return [
        (b":method", method),
        (b":scheme", b"https"),
        (b":authority", authority),
        (b":path", path),
        *extra,
    ]


@implementer(IOpenSSLClientConnectionCreator)
class _ALPNClient:
    """TLS with SNI and ALPN h2; does not verify (the tests' certificates are self-signed)."""

    def __init__(self, server_name: str, protocols: Sequence[bytes]) -> None:
        self.server_name = server_name
        self.protocols = list(protocols)

    def clientConnectionForTLS(self, tls_protocol: Any) -> SSL.Connection:
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_alpn_protos(self.protocols)
        connection = SSL.Connection(context, None)
        connection.set_app_data(tls_protocol)
        connection.set_tlsext_host_name(self.server_name.encode())
        connection.set_connect_state()
        return connection


class Response:
    """What came back on one stream."""

    def __init__(self) -> None:
        self.headers: list[list[Header]] = []  # every header block, informational ones too
        self.body: list[bytes] = []
        self.ended = False
        self.reset: int | None = None

    @property
    def data(self) -> bytes:
        if len(self.body) > 1:
            self.body = [b"".join(self.body)]
        return self.body[0] if self.body else b""

    @property
    def status(self) -> int | None:
        for block in self.headers:
            for name, value in block:
                if name == b":status" and not value.startswith(b"1"):
                    return int(value)
        return None

    def header(self, name: bytes) -> bytes | None:
        for block in self.headers:
            for key, value in block:
                if key == name:
                    return value
        return None


@implementer(IHandshakeListener)
class RawH2Client(Protocol):
    def __init__(self, reactor: Any = global_reactor) -> None:
        self.reactor = reactor
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.buffer = b""
        self.frames: list[Frame] = []
        self.responses: dict[int, Response] = {}
        self.goaway: GoAwayFrame | None = None
        self.window_updates: dict[int, int] = {}
        self.negotiated: bytes | None = None
        self.lost = False
        self.lost_at: float | None = None
        self.goaway_at: float | None = None
        self.ready: Deferred[RawH2Client] = Deferred()
        self._block: list[bytes] = []  # a header block being received
        self._block_stream = 0
        self._block_ends = False
        self._waiters: list[tuple[Callable[[], bool], Deferred[None]]] = []

    # -- connection ------------------------------------------------------------

    def handshakeCompleted(self) -> None:
        self.negotiated = self.transport.negotiatedProtocol  # type: ignore[union-attr]
        if self.negotiated != b"h2":
            self.ready.callback(self)
            return
        self.transport.write(PREFACE + SettingsFrame(0).serialize())  # type: ignore[union-attr]

    def connectionLost(self, reason: object) -> None:
        self.lost = True
        self.lost_at = self.reactor.seconds()
        if not self.ready.called:
            self.ready.errback(reason)  # type: ignore[arg-type]
        self._check()

    def close(self) -> None:
        if not self.lost and self.transport is not None:
            self.transport.loseConnection()

    def abort(self) -> None:
        if not self.lost and self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    # -- sending -------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def headers_frames(
        self,
        stream_id: int,
        headers: Sequence[Header],
        end_stream: bool = True,
        split: int | None = None,
    ) -> list[bytes]:
        """HEADERS, or HEADERS then CONTINUATION frames of C{split} bytes of block each."""
        block = self.encoder.encode(list(headers))
        pieces = (
            [block]
            if split is None
            else [block[i : i + split] for i in range(0, len(block), split)]
        )
        pieces = pieces or [b""]
        frames = []
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            frame: Frame
            if index == 0:
                frame = HeadersFrame(stream_id, piece)
                if end_stream:
                    frame.flags.add("END_STREAM")
            else:
                frame = ContinuationFrame(stream_id, piece)
            if last:
                frame.flags.add("END_HEADERS")
            frames.append(frame.serialize())
        return frames

    def send_headers(
        self, stream_id: int, headers: Sequence[Header], end_stream: bool = True
    ) -> None:
        self.write(b"".join(self.headers_frames(stream_id, headers, end_stream)))

    @staticmethod
    def data_frame(stream_id: int, data: bytes, end_stream: bool = False) -> bytes:
        frame = DataFrame(stream_id, data)
        if end_stream:
            frame.flags.add("END_STREAM")
        return frame.serialize()

    @staticmethod
    def rst_frame(stream_id: int, code: int = 0x8) -> bytes:  # CANCEL, as browsers send
        return RstStreamFrame(stream_id, error_code=code).serialize()

    @staticmethod
    def window_update_frame(stream_id: int, increment: int) -> bytes:
        return WindowUpdateFrame(stream_id, window_increment=increment).serialize()

    # -- receiving -------------------------------------------------------------------

    def response(self, stream_id: int) -> Response:
        response = self.responses.get(stream_id)
        if response is None:
            response = self.responses[stream_id] = Response()
        return response

    def dataReceived(self, data: bytes) -> None:
        buffer = self.buffer + data
        at = 0
        while len(buffer) - at >= 9:
            frame, length = Frame.parse_frame_header(memoryview(buffer)[at : at + 9])
            if len(buffer) - at < 9 + length:
                break
            frame.parse_body(memoryview(buffer)[at + 9 : at + 9 + length])
            at += 9 + length
            self._frame(frame)
        self.buffer = buffer[at:]
        self._check()

    def _frame(self, frame: Frame) -> None:
        self.frames.append(frame)
        if isinstance(frame, SettingsFrame):
            if "ACK" not in frame.flags:
                self.write(SettingsFrame(0, flags=["ACK"]).serialize())
                if not self.ready.called:
                    # Ready once the server's SETTINGS are acknowledged, so
                    # that no ACK of ours lands inside a test's header block.
                    self.ready.callback(self)
        elif isinstance(frame, (HeadersFrame, ContinuationFrame)):
            if isinstance(frame, HeadersFrame):
                self._block = []
                self._block_stream = frame.stream_id
                self._block_ends = "END_STREAM" in frame.flags
            self._block.append(frame.data)
            if "END_HEADERS" in frame.flags:
                decoded = self.decoder.decode(b"".join(self._block), raw=True)
                response = self.response(self._block_stream)
                response.headers.append(decoded)
                if self._block_ends:
                    response.ended = True
        elif isinstance(frame, DataFrame):
            response = self.response(frame.stream_id)
            response.body.append(bytes(frame.data))
            if "END_STREAM" in frame.flags:
                response.ended = True
        elif isinstance(frame, RstStreamFrame):
            self.response(frame.stream_id).reset = frame.error_code
        elif isinstance(frame, GoAwayFrame):
            self.goaway = frame
            self.goaway_at = self.reactor.seconds()
        elif isinstance(frame, WindowUpdateFrame):
            sid = frame.stream_id
            self.window_updates[sid] = self.window_updates.get(sid, 0) + frame.window_increment

    # -- waiting -----------------------------------------------------------------------

    def wait_for(
        self, condition: Callable[[], bool], timeout: float = 10.0, what: str = ""
    ) -> Deferred[None]:
        """
        Fires once C{condition()} holds, checked on every frame and on loss
        (no polling); fails after C{timeout} seconds as L{eventually} does,
        naming C{what} (or the condition's docstring) and what was received.
        """
        waiter: Deferred[None] = Deferred()
        if condition():
            waiter.callback(None)
            return waiter
        self._waiters.append((condition, waiter))
        description = what or (condition.__doc__ or "").strip() or repr(condition)

        def expire() -> None:
            if not waiter.called:
                last = {"responses": sorted(self.responses), "lost": self.lost}
                waiter.errback(not_within(description, timeout, last))

        expiry = self.reactor.callLater(timeout, expire)
        waiter.addBoth(lambda result: (expiry.active() and expiry.cancel(), result)[1])
        return waiter

    def answered(self, stream_id: int, timeout: float = 10.0) -> Deferred[None]:
        """The stream ended or was reset (or the connection went away)."""

        def done() -> bool:
            response = self.responses.get(stream_id)
            return self.lost or (
                response is not None and (response.ended or response.reset is not None)
            )

        return self.wait_for(done, timeout, f"stream {stream_id} answered")

    def _check(self) -> None:
        still = []
        for condition, waiter in self._waiters:
            if waiter.called:
                continue
            if condition():
                waiter.callback(None)
            else:
                still.append((condition, waiter))
        self._waiters = still


@inlineCallbacks
def connect_h2(
    port: int, server_name: str = "a.example", protocols: Sequence[bytes] = (b"h2",)
) -> Any:
    """A connected L{RawH2Client}, preface and SETTINGS sent."""
    client = RawH2Client()
    wrapped = TLSMemoryBIOFactory(_ALPNClient(server_name, protocols), True, None)
    protocol = wrapped.protocol(wrapped, client)
    endpoint = TCP4ClientEndpoint(global_reactor, "127.0.0.1", port)
    yield connectProtocol(endpoint, protocol)
    yield client.ready
    return client


class _Recording(Protocol):
    def __init__(self, owner: ByteRecorder) -> None:
        self.owner = owner
        self.buffer = b""
        self.skip = 0  # body bytes of the current request still to come
        self.chunked = False

    def connectionMade(self) -> None:
        self.owner.connections += 1
        self.owner.open.append(self)

    def dataReceived(self, data: bytes) -> None:
        self.owner.received += data
        self.buffer += data
        while True:
            if self.chunked:
                if not self._skip_chunks():
                    return
                self.chunked = False
                continue
            if self.skip:
                taken = min(self.skip, len(self.buffer))
                self.skip -= taken
                self.buffer = self.buffer[taken:]
                if self.skip:
                    return
            head, separator, rest = self.buffer.partition(b"\r\n\r\n")
            if not separator:
                return
            self.buffer = rest
            self.owner.heads.append(head)
            lower = head.lower()
            if b"transfer-encoding: chunked" in lower:
                self.chunked = True
            for line in lower.split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    self.skip = int(line.split(b":")[1])
            self.transport.write(self.owner.reply)  # type: ignore[union-attr]

    def _skip_chunks(self) -> bool:
        """Consumes whole chunks, then the trailer section; True once the body has ended."""
        buffer = self.buffer
        while True:
            line, separator, rest = buffer.partition(b"\r\n")
            if not separator:
                break
            size = int(line.split(b";")[0], 16)
            if size:
                if len(rest) < size + 2:
                    break
                buffer = rest[size + 2 :]
                self.buffer = buffer
                continue
            trailers, separator, rest = (b"\r\n" + rest).partition(b"\r\n\r\n")
            if not separator:
                break
            self.owner.trailers.append(trailers[2:])
            self.buffer = rest
            return True
        return False

    def connectionLost(self, reason: object) -> None:
        if self in self.owner.open:
            self.owner.open.remove(self)


class ByteRecorder:
    """A backend that records every byte and every accepted connection."""

    def __init__(
        self,
        reply: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Backend: recorder\r\n\r\nok\n",
        reactor: Any = global_reactor,
    ) -> None:
        self.reply = reply
        self.received = b""
        self.heads: list[bytes] = []
        # Each chunked body's trailer section (b"" when it had none).
        self.trailers: list[bytes] = []
        self.connections = 0
        self.open: list[_Recording] = []
        self.port = reactor.listenTCP(
            0, Factory.forProtocol(lambda: _Recording(self)), interface="127.0.0.1"
        )
        self.number: int = self.port.getHost().port

    def stop(self) -> Any:
        for connection in list(self.open):
            connection.transport.abortConnection()  # type: ignore[union-attr]
        return self.port.stopListening()
