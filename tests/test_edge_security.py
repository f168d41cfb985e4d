"""
The edge, attacked as a client would: every hostile form of a request that
could cross a route's access rules, a tenant, or the backend's framing,
sent over real sockets on HTTP/1.1 (raw bytes) and HTTP/2 (a raw frame
client, since h2 refuses to send most of these), with backends that record
every byte they are sent.  A refused request must leave them empty.

Each vector table is also counted in docs/security.md.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tenantgw.compile.compiler import compile_snapshot
from tenantgw.dataplane.gateway import MultiplexingGatewaySite
from tenantgw.dataplane.upstream import UpstreamPool
from tenantgw.tls.certificates import load_certificate
from tenantgw.tls.default import self_signed
from tenantgw.tls.sni import SNIContexts
from tests.fronts import FrontMixin, both_fronts
from tests.h2_raw import ByteRecorder, RawH2Client, connect_h2, request_headers
from tests.support import (
    GatewayUnderTest,
    _Collector,
    dump,
    raw_exchange,
    tenant_objects,
)

# Paths that backends (Tomcat, Spring, nginx, most frameworks) serve as
# /admin, or that must not be guessed at.  Each must meet the admin route's
# access rule (403) or be refused (400), never reach the backend.
PATH_BYPASSES: list[tuple[bytes, int]] = [
    (b"/admin", 403),
    (b"/admin/x", 403),
    (b"/%61dmin", 403),
    (b"/%61%64%6D%69%6E", 403),
    (b"/admin;x", 403),
    (b"/admin;jsessionid=1/x", 403),
    (b"//admin", 403),
    (b"///admin//x", 403),
    (b"/./admin", 403),
    (b"/public/../admin", 403),
    (b"/public/..;/admin", 403),
    (b"/public/%2e%2e/admin", 403),
    (b"/public/%2E./admin", 403),
    (b"/public;x/..;y/admin", 403),
    (b"/admin#x", 400),
    (b"/public#/../admin", 400),
    (b"/admin%2fx", 400),
    (b"/public/..%2fadmin", 400),
    (b"/public/..%5cadmin", 400),
    (b"/public\\..\\admin", 400),
    (b"/%00admin", 400),
    (b"/adm%zzin", 400),
    (b"/admin%", 400),
    (b"/admin?q=#x", 400),
]

# HTTP/1.1 request heads that must be refused before anything is forwarded.
HTTP1_REFUSED: list[tuple[str, bytes, int]] = [
    (
        "absolute-form names another tenant than Host",
        b"GET http://a.example/public HTTP/1.1\r\nHost: b.example\r\n\r\n",
        400,
    ),
    (
        "absolute-form https names another tenant than Host",
        b"GET https://b.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
        400,
    ),
    (
        "absolute-form with userinfo",
        b"GET http://b.example@a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
        400,
    ),
    (
        "CTL in a field value",
        b"GET /public HTTP/1.1\r\nHost: a.example\r\nX-A: a\x01b\r\n\r\n",
        400,
    ),
    (
        "DEL in a field value",
        b"GET /public HTTP/1.1\r\nHost: a.example\r\nX-A: a\x7fb\r\n\r\n",
        400,
    ),
    (
        "ESC in a field value",
        b"GET /public HTTP/1.1\r\nHost: a.example\r\nX-A: \x1b[2J\r\n\r\n",
        400,
    ),
    ("VT in a field value", b"GET /public HTTP/1.1\r\nHost: a.example\r\nX-A: a\x0bb\r\n\r\n", 400),
    (
        "CONNECT authority-form",
        b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
        501,
    ),
    ("CONNECT origin-form", b"CONNECT /public HTTP/1.1\r\nHost: a.example\r\n\r\n", 501),
    ("TRACE", b"TRACE /public HTTP/1.1\r\nHost: a.example\r\n\r\n", 405),
    ("fragment in the target", b"GET /public#x HTTP/1.1\r\nHost: a.example\r\n\r\n", 400),
    ("asterisk-form", b"OPTIONS * HTTP/1.1\r\nHost: a.example\r\n\r\n", 400),
    ("bytes above 0x7E in the target", b"GET /p\xc3\xa9 HTTP/1.1\r\nHost: a.example\r\n\r\n", 400),
    ("HTAB in the target", b"GET /a\t/admin HTTP/1.1\r\nHost: a.example\r\n\r\n", 400),
]

# HTTP/2 requests that must be refused (on top of tests/test_http2_edge.py).
HTTP2_REFUSED: list[tuple[str, list[tuple[bytes, bytes]], int]] = [
    (
        "host names another tenant",
        request_headers(path=b"/public", extra=[(b"host", b"b.example")]),
        400,
    ),
    ("absolute-form :path", request_headers(path=b"http://b.example/"), 400),
    ("CTL in a value", request_headers(path=b"/public", extra=[(b"x-a", b"a\x01b")]), 400),
    ("DEL in a value", request_headers(path=b"/public", extra=[(b"x-a", b"a\x7fb")]), 400),
    ("SP in :path", request_headers(path=b"/public /admin"), 400),
    ("CONNECT", request_headers(method=b"CONNECT"), 501),
    ("TRACE", request_headers(method=b"TRACE", path=b"/public"), 405),
    ("fragment", request_headers(path=b"/public#x"), 400),
]


def _edge_tenants(admin: int, public: int, other: int) -> list[dict[str, Any]]:
    tenant_a = {
        "hosts": ["a.example"],
        "tls": {"secretName": "tls", "httpRedirect": False},
        "routes": [
            {
                "name": "admin",
                "match": {"path": "/admin"},
                "access": {"allowCIDRs": ["10.0.0.0/8"]},
                "backends": [{"service": "admin", "port": 80}],
            },
            {
                "name": "edited",
                "match": {"path": "/edited"},
                "requestHeaders": {"set": {"x-routed": "gateway"}},
                "backends": [{"service": "public", "port": 80}],
            },
            {"name": "site", "backends": [{"service": "public", "port": 80}]},
        ],
    }
    chain, key = self_signed(("a.example",))
    objects = tenant_objects(
        "a",
        dump(tenant_a),
        {"admin": [admin], "public": [public]},
        annotations={"tenantgw.io/allowed-hosts": "a.example"},
    )
    objects.append(
        {
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": "tls", "namespace": "a"},
            "stringData": {"tls.crt": chain.decode(), "tls.key": key.decode()},
        }
    )
    tenant_b = {"hosts": ["b.example"], "routes": [{"backends": [{"service": "b", "port": 80}]}]}
    objects += tenant_objects(
        "b", dump(tenant_b), {"b": [other]}, annotations={"tenantgw.io/allowed-hosts": "b.example"}
    )
    return objects


def _status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else 0


class EdgeTests(FrontMixin, TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.admin = ByteRecorder()
        self.public = ByteRecorder()
        self.other = ByteRecorder()
        for backend in (self.admin, self.public, self.other):
            self.addCleanup(backend.stop)
        snapshot = compile_snapshot(
            _edge_tenants(self.admin.number, self.public.number, self.other.number)
        )
        self.gateway = GatewayUnderTest(snapshot)
        self.addCleanup(self.gateway.stop)
        gateway = self.gateway.gateway
        sni = SNIContexts(
            lambda: gateway.snapshot, load_certificate(*self_signed(("default.invalid",)))
        )
        site = MultiplexingGatewaySite(gateway, reactor)
        self.https = reactor.listenTCP(
            0, TLSMemoryBIOFactory(sni.options, False, site), interface="127.0.0.1"
        )
        self.addCleanup(self.https.stopListening)

    def send(self, payload: bytes) -> Any:
        return raw_exchange(self.gateway.port, payload, close_after=True)

    def assert_backends_untouched(self, label: object = None) -> None:
        seen = (self.admin.received, self.other.received, self.admin.connections)
        self.assertEqual(seen, (b"", b"", 0), label)

    @inlineCallbacks
    def h2(self) -> Any:
        client: RawH2Client = yield connect_h2(self.https.getHost().port)
        self.addCleanup(client.abort)
        return client

    # -- route access by path forms ----------------------------------------------

    @inlineCallbacks
    def test_path_forms_never_pass_the_admin_route_over_http1(self) -> Any:
        for path, status in PATH_BYPASSES:
            reply = yield self.send(
                b"GET %s HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n" % path
            )
            self.assertEqual(_status(reply), status, path)
            if status == 400:
                self.assertIn(b"connection: close", reply.lower(), path)
        self.assert_backends_untouched()
        # The positive control: the same client reaches the public route.
        reply = yield self.send(
            b"GET /public HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n"
        )
        self.assertEqual(_status(reply), 200)
        self.assertEqual(len(self.public.heads), 1)

    @inlineCallbacks
    def test_path_forms_never_pass_the_admin_route_over_http2(self) -> Any:
        client = yield self.h2()
        stream_id = 1
        for path, status in PATH_BYPASSES:
            client.send_headers(stream_id, request_headers(path=path))
            yield client.answered(stream_id)
            self.assertEqual(client.responses[stream_id].status, status, path)
            stream_id += 2
        self.assert_backends_untouched()
        client.send_headers(stream_id, request_headers(path=b"/public"))
        yield client.answered(stream_id)
        self.assertEqual(client.responses[stream_id].status, 200)

    @inlineCallbacks
    def test_the_normalized_path_is_the_one_forwarded(self) -> Any:
        for path, forwarded in [
            (b"/%70ublic//x/./y/../z", b"/public/x/z"),
            (b"/public;v=1/a", b"/public;v=1/a"),
            (b"/caf%c3%a9?q=%2f", b"/caf%C3%A9?q=%2f"),
        ]:
            reply = yield self.send(
                b"GET %s HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n" % path
            )
            self.assertEqual(_status(reply), 200, path)
            self.assertTrue(self.public.heads[-1].startswith(b"GET %s HTTP/1.1" % forwarded))

    # -- one authority, refused framing and methods -------------------------------

    @inlineCallbacks
    def test_refused_http1_requests_reach_no_backend(self) -> Any:
        for label, payload, status in HTTP1_REFUSED:
            reply = yield self.send(payload)
            self.assertEqual(_status(reply), status, label)
            self.assertIn(b"connection: close", reply.lower(), label)
        self.assert_backends_untouched()
        self.assertEqual((self.public.received, self.public.connections), (b"", 0))

    @inlineCallbacks
    def test_refused_http2_requests_reach_no_backend(self) -> Any:
        client = yield self.h2()
        stream_id = 1
        for label, headers, status in HTTP2_REFUSED:
            client.send_headers(stream_id, headers)
            yield client.answered(stream_id)
            self.assertEqual(client.responses[stream_id].status, status, label)
            stream_id += 2
        self.assert_backends_untouched()
        self.assertEqual((self.public.received, self.public.connections), (b"", 0))
        client.send_headers(stream_id, request_headers(path=b"/public"))
        yield client.answered(stream_id)
        self.assertEqual(client.responses[stream_id].status, 200)

    @inlineCallbacks
    def test_absolute_form_authority_is_routed_and_forwarded(self) -> Any:
        reply = yield self.send(
            b"GET http://b.example/x HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n"
        )
        self.assertEqual(_status(reply), 200)
        self.assertTrue(self.other.heads[-1].startswith(b"GET /x HTTP/1.1\r\nHost: b.example\r\n"))
        reply = yield self.send(b"GET http://b.example:8080/y HTTP/1.1\r\nHost: b.example\r\n\r\n")
        self.assertEqual(_status(reply), 200)
        self.assertIn(b"\r\nHost: b.example:8080\r\n", self.other.heads[-1])
        self.assertEqual(self.admin.received + self.public.received, b"")

    # -- header hygiene -------------------------------------------------------------

    @inlineCallbacks
    def test_connection_cannot_strip_what_the_route_sets(self) -> Any:
        reply = yield self.send(
            b"GET /edited HTTP/1.1\r\nHost: a.example\r\nConnection: close, X-Routed, X-Other\r\n"
            b"X-Routed: client\r\nX-Other: o\r\nKeep-Alive: 5\r\n\r\n"
        )
        self.assertEqual(_status(reply), 200)
        head = self.public.heads[-1].lower()
        self.assertIn(b"\r\nx-routed: gateway", head)
        self.assertNotIn(b"client", head)
        self.assertNotIn(b"x-other", head)
        self.assertNotIn(b"keep-alive", head)
        self.assertEqual(head.count(b"\r\nhost: "), 1)

    def forwarded_fields(self) -> dict[bytes, list[bytes]]:
        fields: dict[bytes, list[bytes]] = {}
        for line in self.public.heads[-1].split(b"\r\n")[1:]:
            if b":" in line:
                name, value = line.split(b":", 1)
                fields.setdefault(name.strip().lower(), []).append(value.strip())
        return fields

    def assert_gateway_forwarded(self, scheme: bytes) -> None:
        """Apps moved off ingress-nginx trust these: each is the gateway's, once."""
        fields = self.forwarded_fields()
        self.assertEqual(fields[b"x-real-ip"], [b"127.0.0.1"])
        self.assertEqual(fields[b"x-scheme"], [scheme])
        self.assertEqual(fields[b"x-forwarded-proto"], [scheme])
        port = self.gateway.port if scheme == b"http" else self.https.getHost().port
        self.assertEqual(fields[b"x-forwarded-port"], [b"%d" % port])
        self.assertEqual(fields[b"x-original-forwarded-for"], [b"203.0.113.9"])
        self.assertEqual(fields[b"x-forwarded-for"], [b"203.0.113.9, 127.0.0.1"])
        self.assertNotIn(b"forged", self.public.heads[-1])

    FORGED = [
        (b"x-real-ip", b"10.9.9.9-forged"),
        (b"x-scheme", b"https-forged"),
        (b"x-forwarded-port", b"1-forged"),
        (b"x-original-forwarded-for", b"10.8.8.8-forged"),
        (b"x-forwarded-for", b"203.0.113.9"),
    ]

    @inlineCallbacks
    def test_forged_forwarded_fields_are_replaced_over_http1(self) -> Any:
        forged = b"".join(b"%s: %s\r\n" % pair for pair in self.FORGED)
        reply = yield self.send(
            b"GET /public HTTP/1.1\r\nHost: a.example\r\n" + forged + b"Connection: close\r\n\r\n"
        )
        self.assertEqual(_status(reply), 200)
        self.assert_gateway_forwarded(b"http")

    @inlineCallbacks
    def test_forged_forwarded_fields_are_replaced_over_http2(self) -> Any:
        client = yield self.h2()
        client.send_headers(1, request_headers(path=b"/public", extra=self.FORGED))
        yield client.answered(1)
        self.assertEqual(client.responses[1].status, 200)
        self.assert_gateway_forwarded(b"https")

    @inlineCallbacks
    def test_connection_cannot_remove_host(self) -> Any:
        reply = yield self.send(
            b"GET /public HTTP/1.1\r\nHost: a.example\r\nConnection: close, Host\r\n\r\n"
        )
        self.assertEqual(_status(reply), 200)
        self.assertIn(b"\r\nHost: a.example\r\n", self.public.heads[-1])

    @inlineCallbacks
    def test_underscore_fields_are_dropped(self) -> Any:
        reply = yield self.send(
            b"POST /public HTTP/1.1\r\nHost: a.example\r\nContent-Length: 2\r\n"
            b"Transfer_Encoding: chunked\r\nX_Forwarded_For: 1.2.3.4\r\nConnection: close\r\n\r\nok"
        )
        self.assertEqual(_status(reply), 200)
        head = self.public.heads[-1].lower()
        self.assertNotIn(b"_", head.split(b"\r\n", 1)[1])
        self.assertIn(b"content-length: 2", head)

    @inlineCallbacks
    def test_underscore_fields_refused_when_configured(self) -> Any:
        self.gateway.site.underscores = "reject"
        reply = yield self.send(b"GET /public HTTP/1.1\r\nHost: a.example\r\nX_A: 1\r\n\r\n")
        self.assertEqual(_status(reply), 400)
        self.assertEqual(self.public.received, b"")

    # -- tunnels ------------------------------------------------------------------------

    @inlineCallbacks
    def test_h2c_upgrade_is_never_passed_on(self) -> Any:
        reply = yield self.send(
            b"GET /public HTTP/1.1\r\nHost: a.example\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nX-Then: close\r\n\r\n"
        )
        self.assertEqual(_status(reply), 200)
        head = self.public.heads[-1].lower()
        self.assertNotIn(b"upgrade", head)
        self.assertNotIn(b"http2-settings", head)
        self.assertNotIn(b"h2c", head)

    # -- bodies that never come -------------------------------------------------------

    @inlineCallbacks
    def test_a_body_that_never_starts_gets_408_and_no_upstream_dial(self) -> Any:
        self.gateway.gateway.body_timeout = 0.3
        reply = yield self.send(
            b"POST /public HTTP/1.1\r\nHost: a.example\r\nContent-Length: 1000\r\n\r\n"
        )
        self.assertEqual(_status(reply), 408)
        self.assertIn(b"connection: close", reply.lower())
        self.assertEqual((self.public.received, self.public.connections), (b"", 0))

    @inlineCallbacks
    def test_an_http2_body_that_never_starts_gets_408_and_no_upstream_dial(self) -> Any:
        self.gateway.gateway.body_timeout = 0.3
        client = yield self.h2()
        post = request_headers(
            path=b"/public", method=b"POST", extra=[(b"content-length", b"1000")]
        )
        client.send_headers(1, post, end_stream=False)
        yield client.answered(1)
        self.assertEqual(client.responses[1].status, 408)
        self.assertEqual((self.public.received, self.public.connections), (b"", 0))
        client.send_headers(3, request_headers(path=b"/public"))
        yield client.answered(3)
        self.assertEqual(client.responses[3].status, 200, "the connection is kept")

    @inlineCallbacks
    def test_a_body_that_stalls_gets_408(self) -> Any:
        silent = ByteRecorder(reply=b"")  # reads, never answers
        self.addCleanup(silent.stop)
        self.public.stop()
        gateway = self.gateway.gateway
        gateway.apply(compile_snapshot(_edge_tenants(self.admin.number, silent.number, 1)))
        gateway.body_timeout = 0.3
        reply = yield self.send(
            b"POST /public HTTP/1.1\r\nHost: a.example\r\nContent-Length: 1000\r\n\r\nsome"
        )
        self.assertEqual(_status(reply), 408)
        self.assertIn(b"connection: close", reply.lower())
        self.assertEqual(silent.connections, 1)
        for _ in range(50):
            if not silent.open:
                break
            yield deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(silent.open, [], "the upstream connection is given up")

    @inlineCallbacks
    def test_a_trickling_body_is_not_idle(self) -> Any:
        self.gateway.gateway.body_timeout = 0.5
        done: Deferred[bytes] = Deferred()
        collector = _Collector(
            b"POST /public HTTP/1.1\r\nHost: a.example\r\nContent-Length: 4\r\n"
            b"Connection: close\r\n\r\n",
            done,
            False,
        )
        yield connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", self.gateway.port), collector
        )
        for byte in b"abcd":
            yield deferLater(reactor, 0.3, lambda: None)
            collector.transport.write(bytes((byte,)))
        reply = yield done
        self.assertEqual(_status(reply), 200)


REFUSED = Failure(ConnectionError("refused"))


class PendingDialTests(FrontMixin, SynchronousTestCase):
    """At most N upstream dials per tenant at once; the rest wait in line."""

    def test_dials_wait_in_line_and_abandoned_ones_are_skipped(self) -> None:
        memory = MemoryReactorClock()
        pool = UpstreamPool(memory, memory, max_pending_connects=2)
        wanted = {i: True for i in range(5)}
        ready: list[int] = []
        for i in range(5):
            pool.get(
                ("127.0.0.1", 1, None),
                lambda connection, i=i: ready.append(i),
                lambda reason: None,
                tenant="t",
                wanted=lambda i=i: wanted[i],
            )
        self.assertEqual(len(memory.tcpClients), 2)
        self.assertEqual(pool.pending_connects("t"), 2)
        pool.get(("127.0.0.1", 1, None), lambda c: None, lambda r: None, tenant="other")
        self.assertEqual(len(memory.tcpClients), 3, "another tenant is not held up")
        wanted[2] = False  # its client left while waiting
        factory = memory.tcpClients[0][2]
        factory.clientConnectionFailed(None, REFUSED)
        self.assertEqual(len(memory.tcpClients), 4, "the freed slot goes to the next one wanted")
        self.assertEqual(pool.pending_connects("t"), 2)
        memory.tcpClients[1][2].clientConnectionFailed(None, REFUSED)
        self.assertEqual(len(memory.tcpClients), 5)
        for entry in memory.tcpClients[3:]:
            entry[2].clientConnectionFailed(None, REFUSED)
        self.assertEqual(pool.pending_connects("t"), 0)


both_fronts(globals())
