"""
The staged data plane (issue 15): the per-request context, the L{Outcome}
made once when a request ends, the balancing-policy registry, and, end to
end, that each refusal reason reaches the access log line and the refusal
counter for a real refused request over HTTP/1.1 and over HTTP/2.
"""

from __future__ import annotations

import io
import json
from typing import Any

from hyperframe.frame import SettingsFrame
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tenantgw.admin.access_log import AccessLog, line_of
from tenantgw.admin.metrics import Metrics
from tenantgw.dataplane import context as reasons
from tenantgw.dataplane.balancing import POLICIES, BackendPicker, EndpointLoad, policy_named
from tenantgw.dataplane.context import REASONS, Outcome, RequestContext, outcome_of
from tenantgw.dataplane.gateway import PlainGatewaySite, gateway_on
from tenantgw.plans.routes import BackendPlan, Endpoint
from tenantgw.values import LB_POLICIES
from tests.eventually import eventually
from tests.h2_raw import PREFACE, RawH2Client, request_headers
from tests.support import Upstream, dump, raw_exchange, snapshot_of, tenant_objects


class _FakeRequest:
    """What L{outcome_of} reads of a request, and nothing else."""

    def __init__(self, **fields: Any) -> None:
        from twisted.web.http_headers import Headers

        self.context: RequestContext | None = None
        self.code = 200
        self.upstream_error = ""
        self.requestHeaders = Headers({b"host": [b"t.example:8080"]})
        self.upstream_answered_at = 0.0
        self.started = 10.0
        self.tenant_namespace = "team"
        self.route_name = "api"
        self.method = b"GET"
        self.path = b"/api/x"
        self.upstream = "127.0.0.1:81"
        self.client_address = "10.0.0.1"
        self.request_id = b"abcdefgh"
        self.sentLength = 12
        self.body_received = 0
        self.quota_limit = ""
        self.multiplexed = False
        self.__dict__.update(fields)


def _outcome(**fields: Any) -> Outcome:
    request: Any = _FakeRequest(**fields)
    request.context = RequestContext(request, gateway=None)  # type: ignore[arg-type]
    request.context.host_field = b"t.example:8080"  # as the hosts stage found it
    return outcome_of(request, 0.5)


class ContextTests(SynchronousTestCase):
    def test_the_first_refusal_is_the_one_recorded(self) -> None:
        context = RequestContext(_FakeRequest(), gateway=None)  # type: ignore[arg-type]
        context.refused(reasons.QUOTA)
        context.refused(reasons.INTERNAL_ERROR)
        self.assertEqual(context.reason, reasons.QUOTA)

    def test_context_is_slotted_and_compared_by_identity(self) -> None:
        request: Any = _FakeRequest()
        one = RequestContext(request, gateway=None)  # type: ignore[arg-type]
        self.assertNotEqual(one, RequestContext(request, gateway=None))  # type: ignore[arg-type]
        with self.assertRaises(AttributeError):
            one.undeclared = 1  # type: ignore[attr-defined]


class OutcomeTests(SynchronousTestCase):
    def test_made_once_and_shared_by_every_reader(self) -> None:
        request: Any = _FakeRequest(upstream_answered_at=10.25)
        request.context = RequestContext(request, gateway=None)  # type: ignore[arg-type]
        first = outcome_of(request, 0.5)
        request.code = 599  # read once: later changes do not make another record
        self.assertIs(outcome_of(request, 0.9), first)
        self.assertEqual(
            (first.status, first.duration, first.upstream_latency, first.protocol),
            (200, 0.5, 0.25, "h1"),
        )
        with self.assertRaises(AttributeError):
            first.status = 500  # type: ignore[misc]

    def test_reasons_derived_from_how_the_request_ended(self) -> None:
        self.assertEqual(_outcome().reason, reasons.SERVED)
        self.assertEqual(_outcome(code=499).reason, reasons.CLIENT_GONE)
        self.assertEqual(
            _outcome(code=504, upstream_error="timeout").reason, reasons.UPSTREAM_TIMEOUT
        )
        self.assertEqual(_outcome(code=502, upstream_error="reset").reason, reasons.UPSTREAM_ERROR)
        self.assertEqual(_outcome(code=408).reason, reasons.BODY_TIMEOUT)
        # An upstream's own 503 is no refusal of the gateway's.
        self.assertEqual(_outcome(code=503).reason, reasons.SERVED)

    def test_a_recorded_refusal_wins(self) -> None:
        request: Any = _FakeRequest(code=499)
        request.context = RequestContext(request, gateway=None)  # type: ignore[arg-type]
        request.context.refused(reasons.UNAUTHORIZED)
        self.assertEqual(outcome_of(request, 0.1).reason, reasons.UNAUTHORIZED)

    def test_without_a_context_there_is_still_an_outcome(self) -> None:
        outcome = outcome_of(_FakeRequest(code=499), 0.1)  # type: ignore[arg-type]
        self.assertEqual(outcome.reason, reasons.CLIENT_GONE)

    def test_access_line_carries_the_reason(self) -> None:
        line = json.loads(line_of(_outcome(code=499), "2026-01-01T00:00:00", 5, 42))
        self.assertEqual(
            (line["reason"], line["status"], line["host"], line["bytes"]),
            ("client_gone", 499, "t.example", 12),
        )

    def test_metrics_count_refusals_by_reason(self) -> None:
        metrics = Metrics()
        metrics.record(_outcome(code=499), 100.0)
        metrics.record(_outcome(), 100.0)
        value = metrics.registry.get_sample_value(
            "tenantgw_requests_refused_total", {"tenant": "team", "reason": "client_gone"}
        )
        self.assertEqual(value, 1.0)


class PolicyRegistryTests(SynchronousTestCase):
    def test_every_configurable_policy_is_registered(self) -> None:
        self.assertEqual(set(POLICIES), set(LB_POLICIES))
        self.assertTrue(policy_named("Cookie").sticky)
        self.assertTrue(policy_named("LeastRequest").reads_load)
        self.assertFalse(policy_named("RoundRobin").reads_load)

    def test_an_unknown_name_is_a_clear_error(self) -> None:
        with self.assertRaises(ValueError) as raised:
            BackendPicker((), "Fastest", EndpointLoad())
        self.assertIn("balancing", str(raised.exception))
        self.assertIn("'Fastest'", str(raised.exception))

    def test_the_picker_uses_the_policy_it_names(self) -> None:
        endpoints = (Endpoint("10.0.0.1", 80), Endpoint("10.0.0.2", 80))
        picker = BackendPicker(
            (BackendPlan("web", 80, 1, endpoints),), "RoundRobin", EndpointLoad()
        )
        picked = [picker.pick() for _ in range(3)]
        self.assertEqual([p[1].address for p in picked if p], ["10.0.0.1", "10.0.0.2", "10.0.0.1"])


def _route(name: str, path: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "match": {"path": path},
        "backends": [{"service": extra.pop("service", "web"), "port": 80}],
        **extra,
    }


class _PlainH2(RawH2Client):
    """h2c with prior knowledge: the preface at once, no TLS."""

    def connectionMade(self) -> None:
        self.transport.write(PREFACE + SettingsFrame(0).serialize())  # type: ignore[union-attr]


# (reason, method, host, path, body): one refused request each.  "quota" is
# the second request on a route with a burst of 1.
_SIMPLE = [
    (reasons.NO_HOST, b"GET", b"[::1]", b"/open", b""),
    (reasons.METHOD, b"TRACE", b"t.example", b"/open", b""),
    (reasons.UNKNOWN_HOST, b"GET", b"other.example", b"/open", b""),
    (reasons.BAD_PATH, b"GET", b"t.example", b"/open/a%00b", b""),
    (reasons.NO_ROUTE, b"GET", b"t.example", b"/nowhere", b""),
    (reasons.FORBIDDEN, b"GET", b"t.example", b"/private", b""),
    (reasons.UNAUTHORIZED, b"GET", b"t.example", b"/keys", b""),
    (reasons.BODY_TOO_LARGE, b"POST", b"t.example", b"/open", b"x" * 20),
    (reasons.QUOTA, b"GET", b"t.example", b"/limited", b""),
    (reasons.NO_ENDPOINT, b"GET", b"t.example", b"/empty", b""),
    (reasons.UPSTREAM_ERROR, b"GET", b"t.example", b"/dead", b""),
    (reasons.UPSTREAM_TIMEOUT, b"GET", b"t.example", b"/slow", b""),
]


class RefusalReasonsTests(TestCase):
    """
    One gateway per test, serving HTTP/1.1 and h2c on one listener, with a
    route for each way to be refused; each test sends one refused request
    per reason and reads the reason back from the access log and metrics.
    """

    timeout = 20

    def setUp(self) -> None:
        self.upstream = Upstream("web")
        self.addCleanup(self.upstream.stop)
        # A port nothing listens on any more: connections to it are refused.
        gone = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        dead_port = gone.getHost().port
        gone.stopListening()
        tenant = {
            "hosts": ["t.example"],
            "quota": {"maxRequestBodyBytes": 10, "maxConcurrentRequests": 1},
            "routes": [
                _route("open", "/open"),
                _route("private", "/private", access={"allowCIDRs": ["10.0.0.0/8"]}),
                _route("keys", "/keys", access={"apiKeys": {"secretName": "k"}}),
                _route("limited", "/limited", quota={"requestsPerSecond": 0.001, "burst": 1}),
                _route("empty", "/empty", service="empty"),
                _route("dead", "/dead", service="dead"),
                # The recording upstream never answers /hang.
                _route("hang", "/hang"),
                _route("slow", "/slow", timeoutSeconds=0.2, rewrite={"replacePrefix": "/hang"}),
            ],
        }
        snapshot = snapshot_of(
            tenant_objects(
                "team",
                dump(tenant),
                {"web": [self.upstream.number], "empty": [], "dead": [dead_port]},
                secrets={"k": {"a": "key-one"}},
            )
        )
        self.gateway = gateway_on(reactor, upstream_timeout=5.0)
        self.addCleanup(self.gateway.stop)
        self.metrics = Metrics()
        self.log_out = io.BytesIO()
        self.gateway.metrics = self.metrics
        self.gateway.access_log = AccessLog(self.log_out, reactor)
        self.gateway.apply(snapshot)
        self.listening = reactor.listenTCP(
            0, PlainGatewaySite(self.gateway, reactor), interface="127.0.0.1"
        )
        self.addCleanup(self.listening.stopListening)
        self.port = self.listening.getHost().port

    def logged(self) -> dict[str, dict[str, Any]]:
        assert self.gateway.access_log is not None
        self.gateway.access_log.flush()
        lines = [json.loads(line) for line in self.log_out.getvalue().splitlines()]
        return {line["request_id"]: line for line in lines}

    def check(self, protocol: str) -> None:
        logged = self.logged()
        expected = [reason for reason, *_ in _SIMPLE] + [
            reasons.CONCURRENCY,
            reasons.CLIENT_GONE,
        ]
        found = {
            reason: logged.get(f"refused-{reason}-{protocol}", {}).get("reason")
            for reason in expected
        }
        self.assertEqual(found, {reason: reason for reason in expected})
        self.assertEqual(logged[f"served-limited-{protocol}"]["reason"], "")
        for reason in expected:
            tenant = (
                "" if reason in (reasons.NO_HOST, reasons.METHOD, reasons.UNKNOWN_HOST) else "team"
            )
            self.assertEqual(
                self.metrics.registry.get_sample_value(
                    "tenantgw_requests_refused_total", {"tenant": tenant, "reason": reason}
                ),
                1.0,
                reason,
            )

    @inlineCallbacks
    def test_each_reason_over_http1(self) -> Any:
        yield self.http1(b"GET", b"t.example", b"/limited", b"", "served-limited-h1")
        for reason, method, host, path, body in _SIMPLE:
            yield self.http1(method, host, path, body, f"refused-{reason}-h1")
        held = yield connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), Protocol()
        )
        held.transport.write(
            self.head(b"GET", b"t.example", b"/hang", b"", "refused-client_gone-h1", close=False)
        )
        yield eventually(
            lambda: len(self.upstream.resource.hanging) == 2, "the held request is upstream"
        )
        yield self.http1(b"GET", b"t.example", b"/open", b"", f"refused-{reasons.CONCURRENCY}-h1")
        held.transport.abortConnection()
        yield eventually(lambda: "refused-client_gone-h1" in self.logged(), "the leaver is logged")
        self.check("h1")

    @staticmethod
    def head(
        method: bytes, host: bytes, path: bytes, body: bytes, request_id: str, close: bool = True
    ) -> bytes:
        lines = [
            method + b" " + path + b" HTTP/1.1",
            b"Host: " + host,
            b"X-Request-Id: " + request_id.encode(),
        ]
        if body:
            lines.append(b"Content-Length: %d" % len(body))
        if close:
            lines.append(b"Connection: close")
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    def http1(self, method: bytes, host: bytes, path: bytes, body: bytes, request_id: str) -> Any:
        return raw_exchange(self.port, self.head(method, host, path, body, request_id))

    @inlineCallbacks
    def test_each_reason_over_http2(self) -> Any:
        client = _PlainH2()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), client)
        yield client.ready
        self.addCleanup(client.abort)
        stream = [-1]

        def send(method: bytes, host: bytes, path: bytes, body: bytes, request_id: str) -> int:
            stream[0] += 2
            extra = [(b"x-request-id", request_id.encode())]
            if body:
                extra.append((b"content-length", b"%d" % len(body)))
            client.send_headers(
                stream[0], request_headers(host, path, method, extra), end_stream=not body
            )
            if body:
                client.write(client.data_frame(stream[0], body, end_stream=True))
            return stream[0]

        yield client.answered(send(b"GET", b"t.example", b"/limited", b"", "served-limited-h2"))
        for reason, method, host, path, body in _SIMPLE:
            yield client.answered(send(method, host, path, body, f"refused-{reason}-h2"))
        held = send(b"GET", b"t.example", b"/hang", b"", "refused-client_gone-h2")
        yield eventually(
            lambda: len(self.upstream.resource.hanging) == 2, "the held request is upstream"
        )
        yield client.answered(
            send(b"GET", b"t.example", b"/open", b"", f"refused-{reasons.CONCURRENCY}-h2")
        )
        client.write(client.rst_frame(held))
        yield eventually(lambda: "refused-client_gone-h2" in self.logged(), "the leaver is logged")
        self.check("h2")


class VocabularyTests(SynchronousTestCase):
    def test_every_reason_the_end_to_end_tests_use_is_in_the_vocabulary(self) -> None:
        used = {reason for reason, *_ in _SIMPLE} | {reasons.CONCURRENCY, reasons.CLIENT_GONE}
        self.assertLessEqual(used, REASONS)
