"""
gRPC through the gateway, end to end: a real grpcio client speaking h2c
with prior knowledge to the plain listener, the gateway speaking HTTP/2 to
a real grpcio server behind a Service port named ``grpc``.  Every RPC shape,
statuses in trailers, deadlines, cancellation, and a 50 MiB message with
the gateway's buffered bytes bounded.
"""

from __future__ import annotations

import shutil
from typing import Any

import grpc
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import LoopingCall, deferLater
from twisted.internet.threads import deferToThread
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from tenantgw.dataplane.gateway import PlainGatewaySite, gateway_on
from tenantgw.http2.server import H2ServerConnection
from tests.grpc_support import GrpcBackend, channel_to, grpc_tenant


class _Gateway:
    """A gateway on the plain listener (HTTP/1.1 and h2c prior knowledge)."""

    def __init__(self, upstream_timeout: float = 10.0) -> None:
        self.gateway = gateway_on(reactor, upstream_timeout=upstream_timeout)
        self.site = PlainGatewaySite(self.gateway, reactor)
        self.fronts: list[H2ServerConnection] = []
        build = self.site.buildProtocol

        def recording(addr: object) -> Any:
            protocol = build(addr)
            original = protocol.dataReceived

            def first(data: bytes) -> None:
                original(data)
                if isinstance(protocol.chosen, H2ServerConnection):
                    self.fronts.append(protocol.chosen)

            protocol.dataReceived = first  # type: ignore[method-assign]
            return protocol

        self.site.buildProtocol = recording  # type: ignore[method-assign]
        self.listening = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.port: int = self.listening.getHost().port

    @inlineCallbacks
    def stop(self) -> Any:
        yield self.listening.stopListening()
        self.gateway.stop()
        for front in self.fronts:
            if front.transport is not None:
                front.transport.abortConnection()
        yield deferLater(reactor, 0.05, lambda: None)


class GrpcTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.backend = GrpcBackend()
        self.addCleanup(self.backend.stop)
        self.front = _Gateway()
        self.addCleanup(self.front.stop)
        self.front.gateway.apply(grpc_tenant(self.backend.port))
        self.channel = channel_to(self.front.port)
        self.addCleanup(self.channel.close)

    def call(self, method: str, shape: str, request: Any, **kw: Any) -> Any:
        factory = getattr(self.channel, shape)(f"/test.Echo/{method}")
        kw.setdefault("timeout", 20)
        if shape in ("unary_stream", "stream_stream"):
            return deferToThread(lambda: list(factory(request, **kw)))
        return deferToThread(factory, request, **kw)

    @inlineCallbacks
    def test_unary(self) -> Any:
        answer = yield self.call("Echo", "unary_unary", b"hello")
        self.assertEqual(answer, b"echo:hello")
        seen = self.backend.metadata[-1]
        # te: trailers reached the backend (grpcio refuses a call without it),
        # and so did the gateway's own fields.
        self.assertEqual(seen.get("x-forwarded-for"), "127.0.0.1")
        self.assertIn("x-request-id", seen)

    @inlineCallbacks
    def test_many_unary_calls_share_one_upstream_connection(self) -> Any:
        answers = yield deferToThread(
            lambda: [
                self.channel.unary_unary("/test.Echo/Echo")(b"%d" % i, timeout=20)
                for i in range(50)
            ]
        )
        self.assertEqual(answers, [b"echo:%d" % i for i in range(50)])
        self.assertEqual(self.front.gateway.h2_pool.connections_opened, 1)

    @inlineCallbacks
    def test_server_streaming(self) -> Any:
        answers = yield self.call("Split", "unary_stream", b"abc")
        self.assertEqual(answers, [b"a", b"b", b"c"])

    @inlineCallbacks
    def test_client_streaming(self) -> Any:
        answer = yield self.call("Join", "stream_unary", iter([b"a", b"b", b"c"]))
        self.assertEqual(answer, b"a,b,c")

    @inlineCallbacks
    def test_bidi_streaming(self) -> Any:
        answers = yield self.call("Chat", "stream_stream", iter([b"one", b"two"]))
        self.assertEqual(answers, [b"ONE", b"TWO"])

    @inlineCallbacks
    def test_error_status_in_trailers(self) -> Any:
        failure = yield self.assertFailure(self.call("Echo", "unary_unary", b"fail"), grpc.RpcError)
        self.assertEqual(failure.code(), grpc.StatusCode.NOT_FOUND)
        self.assertEqual(failure.details(), "nope")

    @inlineCallbacks
    def test_unknown_host_is_unimplemented(self) -> Any:
        channel = channel_to(self.front.port, authority="nobody.example")
        self.addCleanup(channel.close)
        call = channel.unary_unary("/test.Echo/Echo")
        failure = yield self.assertFailure(deferToThread(call, b"x", timeout=10), grpc.RpcError)
        self.assertEqual(failure.code(), grpc.StatusCode.UNIMPLEMENTED)
        self.assertEqual(self.backend.metadata, [])

    @inlineCallbacks
    def test_client_deadline_reaches_the_backend_and_ends_the_call(self) -> Any:
        failure = yield self.assertFailure(
            self.call("Slow", "unary_unary", b"", timeout=0.5), grpc.RpcError
        )
        self.assertEqual(failure.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        # The backend saw the call end (deadline or the gateway's reset).
        yield deferToThread(self.backend.cancelled.wait, 5)
        self.assertTrue(self.backend.cancelled.is_set())

    @inlineCallbacks
    def test_cancellation_reaches_the_backend(self) -> Any:
        future = self.channel.unary_unary("/test.Echo/Slow").future(b"", timeout=20)
        yield deferToThread(self.backend.slow_started.wait, 5)
        future.cancel()
        yield deferToThread(self.backend.cancelled.wait, 5)
        self.assertTrue(self.backend.cancelled.is_set())
        yield deferLater(reactor, 0.2, lambda: None)
        # Only the stream was cancelled: the upstream connection carries on.
        answer = yield self.call("Echo", "unary_unary", b"after")
        self.assertEqual(answer, b"echo:after")
        self.assertEqual(self.front.gateway.h2_pool.connections_opened, 1)

    def _sample_buffers(self) -> tuple[LoopingCall, list[int]]:
        """The most response or request bytes the gateway held at once, sampled every 5 ms."""
        peak = [0]

        def sample() -> None:
            held = 0
            for front in self.front.fronts:
                held += sum(s._out_bytes for s in front.streams.values())
                held += _transport_buffer(front.transport)
            for connection in self.front.gateway.h2_pool._all:
                held += sum(s._out_bytes for s in connection.streams.values())
                held += _transport_buffer(connection.transport)
            peak[0] = max(peak[0], held)

        loop = LoopingCall(sample)
        loop.start(0.005)
        return loop, peak

    @inlineCallbacks
    def test_50_mib_download_with_bounded_buffers(self) -> Any:
        loop, peak = self._sample_buffers()
        try:
            answers = yield self.call("Split", "unary_stream", b"big:50", timeout=60)
        finally:
            loop.stop()
        self.assertEqual(sum(len(a) for a in answers), 50 * 1024 * 1024)
        self.assertLess(peak[0], 8 * 1024 * 1024)

    @inlineCallbacks
    def test_50_mib_upload_in_one_message_with_bounded_buffers(self) -> Any:
        loop, peak = self._sample_buffers()
        try:
            answer = yield self.call("Size", "unary_unary", b"y" * (50 * 1024 * 1024), timeout=60)
        finally:
            loop.stop()
        self.assertEqual(answer, b"%d" % (50 * 1024 * 1024))
        self.assertLess(peak[0], 8 * 1024 * 1024)


def _transport_buffer(transport: Any) -> int:
    """Bytes a Twisted TCP transport holds unsent."""
    if transport is None:
        return 0
    temp = getattr(transport, "_tempDataLen", 0)
    buffered = len(getattr(transport, "dataBuffer", b"")) - getattr(transport, "offset", 0)
    return int(temp) + max(0, buffered)


class GrpcRouteTimeoutTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_route_timeout_bounds_a_longer_grpc_deadline(self) -> Any:
        backend = GrpcBackend()
        self.addCleanup(backend.stop)
        front = _Gateway()
        self.addCleanup(front.stop)
        front.gateway.apply(grpc_tenant(backend.port, timeout=1))
        channel = channel_to(front.port)
        self.addCleanup(channel.close)
        call = channel.unary_unary("/test.Echo/Slow")
        failure = yield self.assertFailure(deferToThread(call, b"", timeout=30), grpc.RpcError)
        self.assertEqual(failure.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        # The backend was told the route's bound, not the client's 30 s.
        yield deferToThread(backend.cancelled.wait, 5)
        self.assertTrue(backend.cancelled.is_set())


class CurlPriorKnowledgeTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_curl_http2_prior_knowledge_to_an_h2c_upstream(self) -> Any:
        if shutil.which("curl") is None:
            raise AssertionError("curl is required by this test")
        backend = GrpcBackend()
        self.addCleanup(backend.stop)
        front = _Gateway()
        self.addCleanup(front.stop)
        front.gateway.apply(
            grpc_tenant(backend.port, port_name="web", app_protocol="kubernetes.io/h2c")
        )
        # A gRPC frame by hand: not compressed, 5 bytes long, "hello".
        body = self.mktemp()
        with open(body, "wb") as f:
            f.write(b"\x00\x00\x00\x00\x05hello")
        out, err, code = yield getProcessOutputAndValue(
            "curl",
            [
                "--silent",
                "--show-error",
                "--http2-prior-knowledge",
                "--output",
                "-",
                "--dump-header",
                "-",
                "-H",
                "content-type: application/grpc",
                "-H",
                "te: trailers",
                "--data-binary",
                f"@{body}",
                "--resolve",
                f"g.example:{front.port}:127.0.0.1",
                f"http://g.example:{front.port}/test.Echo/Echo",
            ],
            env={},
            reactor=reactor,
        )
        self.assertEqual(code, 0, err)
        self.assertIn(b"HTTP/2 200", out)
        self.assertIn(b"grpc-status: 0", out)  # a trailer, which curl prints with the headers
        self.assertIn(b"echo:hello", out)


class Http1TrailersTests(TestCase):
    """
    An HTTP/1.1 client that sent C{TE: trailers} gets the upstream's
    trailers after the last chunk (curl, which prints them with --raw).
    """

    timeout = 60

    def test_trailers_after_the_last_chunk(self) -> Any:
        return self._exchange([])

    def test_chunked_request_body_to_an_http2_upstream(self) -> Any:
        # No Content-Length: the body is re-framed as DATA frames, unsized.
        return self._exchange(["-H", "Transfer-Encoding: chunked"])

    @inlineCallbacks
    def _exchange(self, extra: list[str]) -> Any:
        backend = GrpcBackend()
        self.addCleanup(backend.stop)
        front = _Gateway()
        self.addCleanup(front.stop)
        front.gateway.apply(grpc_tenant(backend.port))
        body = self.mktemp()
        with open(body, "wb") as f:
            f.write(b"\x00\x00\x00\x00\x05hello")
        out, err, code = yield getProcessOutputAndValue(
            "curl",
            [
                "--silent",
                "--show-error",
                "--http1.1",
                "--raw",
                "--output",
                "-",
                "-H",
                "TE: trailers",
                "-H",
                "Connection: TE",
                "-H",
                "content-type: application/grpc",
                "--data-binary",
                f"@{body}",
                *extra,
                "-H",
                "Host: g.example",
                f"http://127.0.0.1:{front.port}/test.Echo/Echo",
            ],
            env={},
            reactor=reactor,
        )
        self.assertEqual(code, 0, err)
        self.assertIn(b"echo:hello", out)
        self.assertTrue(out.endswith(b"\r\n0\r\ngrpc-status: 0\r\ngrpc-message: \r\n\r\n"), out)


class GrpcGatewayStatusTests(TestCase):
    """Gateway-made answers to gRPC calls are gRPC statuses, and reach no backend."""

    timeout = 60

    @inlineCallbacks
    def test_rate_limit_is_resource_exhausted(self) -> Any:
        backend = GrpcBackend()
        self.addCleanup(backend.stop)
        front = _Gateway()
        self.addCleanup(front.stop)
        front.gateway.apply(
            grpc_tenant(backend.port, tenant_extra="quota: {requestsPerSecond: 1, burst: 1}\n")
        )
        channel = channel_to(front.port)
        self.addCleanup(channel.close)
        call = channel.unary_unary("/test.Echo/Echo")
        first = yield deferToThread(call, b"a", timeout=10)
        self.assertEqual(first, b"echo:a")
        failure = yield self.assertFailure(deferToThread(call, b"b", timeout=10), grpc.RpcError)
        self.assertEqual(failure.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertEqual(len(backend.metadata), 1)


class GrpcOverTLSTests(TestCase):
    """A grpcio client over TLS (ALPN h2, SNI) to the HTTPS listener, an h2c backend behind."""

    timeout = 60

    @inlineCallbacks
    def test_unary_and_streaming_over_tls(self) -> Any:
        from twisted.protocols.tls import TLSMemoryBIOFactory

        from tenantgw.compile.compiler import compile_snapshot
        from tenantgw.dataplane.gateway import MultiplexingGatewaySite
        from tenantgw.tls.certificates import load_certificate
        from tenantgw.tls.default import self_signed
        from tenantgw.tls.sni import SNIContexts
        from tests.test_tls import tls_tenant

        backend = GrpcBackend()
        self.addCleanup(backend.stop)
        chain, key = self_signed(("g.example",))
        objects = tls_tenant("g", ["g.example"], (chain, key), backend.port)
        for obj in objects:  # the Service port and its slice become "grpc" (h2c)
            if obj["kind"] == "Service":
                obj["spec"]["ports"][0]["name"] = "grpc"
            elif obj["kind"] == "EndpointSlice":
                obj["ports"][0]["name"] = "grpc"
        gateway = gateway_on(reactor)
        self.addCleanup(gateway.stop)
        gateway.apply(compile_snapshot(objects))
        default = load_certificate(*self_signed(("default.invalid",)))
        sni = SNIContexts(lambda: gateway.snapshot, default)
        site = MultiplexingGatewaySite(gateway, reactor)
        https = reactor.listenTCP(
            0, TLSMemoryBIOFactory(sni.options, False, site), interface="127.0.0.1"
        )
        self.addCleanup(https.stopListening)
        credentials = grpc.ssl_channel_credentials(root_certificates=chain)
        channel = grpc.secure_channel(
            f"127.0.0.1:{https.getHost().port}",
            credentials,
            options=[("grpc.ssl_target_name_override", "g.example")],
        )
        self.addCleanup(channel.close)
        answer = yield deferToThread(channel.unary_unary("/test.Echo/Echo"), b"tls", timeout=10)
        self.assertEqual(answer, b"echo:tls")
        answers = yield deferToThread(
            lambda: list(channel.stream_stream("/test.Echo/Chat")(iter([b"a", b"b"]), timeout=10))
        )
        self.assertEqual(answers, [b"A", b"B"])
        self.assertEqual(backend.metadata[-1].get("x-forwarded-proto"), "https")
        yield deferLater(reactor, 0.05, lambda: None)
