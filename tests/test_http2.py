"""
HTTP/2 from clients, negotiated by ALPN on the HTTPS listener, through the
same routing as HTTP/1.1.  The client is curl (built with nghttp2), a real
h2 implementation that is not ours.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import TestCase

from tenantgw.compile.compiler import compile_snapshot
from tenantgw.dataplane.gateway import MultiplexingGatewaySite
from tenantgw.tls.certificates import load_certificate
from tenantgw.tls.default import self_signed
from tenantgw.tls.sni import SNIContexts
from tests.support import GatewayUnderTest, Upstream
from tests.test_tls import tls_tenant


class HTTP2Tests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        if shutil.which("curl") is None:
            raise AssertionError("curl is required by this test (installed by .ci/run)")
        self.upstream = Upstream("web")
        self.addCleanup(self.upstream.stop)
        port = self.upstream.number
        snapshot = compile_snapshot(
            tls_tenant("a", ["a.example"], self_signed(("a.example",)), port)
            + tls_tenant("b", ["b.example"], self_signed(("b.example",)), port)
        )
        self.gateway = GatewayUnderTest(snapshot)
        self.addCleanup(self.gateway.stop)
        gateway = self.gateway.gateway
        default = load_certificate(*self_signed(("default.invalid",)))
        self.handshakes: list[str] = []
        sni = SNIContexts(lambda: gateway.snapshot, default, handshake=self.handshakes.append)
        site = MultiplexingGatewaySite(gateway, reactor)
        self.https = reactor.listenTCP(
            0, TLSMemoryBIOFactory(sni.options, False, site), interface="127.0.0.1"
        )
        self.addCleanup(self.https.stopListening)

    def curl(self, *args: str, host: str = "a.example", path: str = "/x") -> Any:
        port = self.https.getHost().port
        return getProcessOutputAndValue(
            "curl",
            [
                "--silent",
                "--show-error",
                "--insecure",
                "--resolve",
                f"{host}:{port}:127.0.0.1",
                "--write-out",
                "\n%{http_version} %{http_code}",
                *args,
                f"https://{host}:{port}{path}",
            ],
            env=os.environ,
        )

    @inlineCallbacks
    def test_h2_request_is_routed_and_proxied(self) -> Any:
        out, err, code = yield self.curl("--http2")
        self.assertEqual(code, 0, err)
        body, status = out.rsplit(b"\n", 1)
        self.assertEqual(status, b"2 200")
        record = json.loads(body)
        self.assertEqual(record["uri"], "/x")
        self.assertEqual(record["headers"]["x-forwarded-proto"], ["https"])
        port = self.https.getHost().port
        self.assertEqual(record["headers"]["host"], [f"a.example:{port}"])

    @inlineCallbacks
    def test_an_h2_connection_is_one_ok_handshake(self) -> Any:
        """
        curl ends an HTTP/2 connection without close_notify, and OpenSSL
        answers with a fatal alert: that alert is not a failed handshake.
        """
        for _ in range(2):
            _out, err, code = yield self.curl("--http2")
            self.assertEqual(code, 0, err)
        for _ in range(50):
            if len(self.handshakes) >= 2 and not self.gateway.gateway.requests_open:
                break
            yield deferLater(reactor, 0.02, lambda: None)
        yield deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(self.handshakes, ["ok", "ok"])

    @inlineCallbacks
    def test_h2_request_body_streams_to_upstream(self) -> Any:
        body_file = self.mktemp()
        with open(body_file, "wb") as f:
            f.write(b"x" * 5_000_000)
        out, err, code = yield self.curl("--http2", "--data-binary", f"@{body_file}")
        self.assertEqual(code, 0, err)
        body, status = out.rsplit(b"\n", 1)
        self.assertEqual(status, b"2 200")
        self.assertEqual(json.loads(body)["body_length"], 5_000_000)

    @inlineCallbacks
    def test_h2_errors_and_misdirected_requests(self) -> Any:
        for args, expected in (
            ((), b"2 404"),  # SNI and :authority name no tenant
            (("-H", "host: b.example"), b"2 421"),  # SNI a.example, Host b.example
        ):
            host = "unknown.example" if not args else "a.example"
            out, err, code = yield self.curl("--http2", *args, host=host)
            self.assertEqual((code, out.rsplit(b"\n", 1)[1]), (0, expected), err)

    @inlineCallbacks
    def test_http11_still_served_on_the_tls_listener(self) -> Any:
        out, err, code = yield self.curl("--http1.1")
        self.assertEqual(code, 0, err)
        self.assertEqual(out.rsplit(b"\n", 1)[1], b"1.1 200")
