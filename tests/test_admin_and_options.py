"""
The admin endpoint (health, readiness, tenant status) and the twistd options
of contract section 8, including the warning for options not built yet.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Cooperator
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from tenantgw.admin.resource import Readiness, admin_root
from tenantgw.app.options import Options
from tenantgw.app.service import build
from tenantgw.plans.snapshot import EMPTY_SNAPSHOT
from tenantgw.tls.default import self_signed
from tests.support import one_tenant_snapshot


class _ReactorWithThreads(MemoryReactorClock):
    def getThreadPool(self) -> ThreadPool:
        return ThreadPool(0, 1, "unstarted")


def render(root: Any, path: bytes) -> tuple[int, bytes]:
    """
    A GET through the resource tree; one answered in steps (C{/api/tenants})
    must be given an admin root built with C{cooperate=clocked.cooperate}
    (L{ClockedCooperator}), whose steps are run here.
    """
    segments = path.strip(b"/").split(b"/")
    request = DummyRequest(segments)
    resource = root
    for segment in segments:
        resource = resource.getChildWithDefault(segment, request)
    body = resource.render(request)
    if body == NOT_DONE_YET:
        clocked.run()
        assert request.finished, "the resource never finished its answer"
        body = b"".join(request.written)
    return request.responseCode or 200, body


class ClockedCooperator:
    """A Cooperator whose ticks run when a test says so, one step each, not on the reactor."""

    def __init__(self) -> None:
        self.ticks: list[Any] = []
        self.cooperator = Cooperator(
            terminationPredicateFactory=lambda: lambda: True,
            scheduler=self.ticks.append,
        )
        self.cooperate = self.cooperator.cooperate

    def tick(self) -> None:
        self.ticks.pop(0)()

    def run(self) -> None:
        while self.ticks:
            self.tick()


clocked = ClockedCooperator()


class AdminTests(SynchronousTestCase):
    def test_readyz_is_503_until_synced_and_while_draining(self) -> None:
        readiness = Readiness()
        root = admin_root(readiness, lambda: EMPTY_SNAPSHOT)
        self.assertEqual(render(root, b"/healthz"), (200, b"ok\n"))
        self.assertEqual(render(root, b"/readyz"), (503, b"not synced\n"))
        readiness.synced = True
        self.assertEqual(render(root, b"/readyz"), (200, b"ready\n"))
        readiness.draining = True
        self.assertEqual(render(root, b"/readyz"), (503, b"draining\n"))

    def test_api_tenants_lists_hosts_routes_endpoints_and_state(self) -> None:
        snapshot = one_tenant_snapshot(9999)
        code, body = render(
            admin_root(Readiness(), lambda: snapshot, cooperate=clocked.cooperate), b"/api/tenants"
        )
        self.assertEqual(code, 200)
        (tenant,) = json.loads(body)["tenants"]
        self.assertEqual(tenant["state"], "Accepted")
        self.assertEqual(tenant["hosts"], ["t.example"])
        self.assertTrue(tenant["serving"])
        endpoints = [e for r in tenant["routes"] for b in r["backends"] for e in b["endpoints"]]
        self.assertEqual(endpoints, ["127.0.0.1:9999"])

    def test_api_tenants_is_written_in_steps_and_stops_when_the_client_leaves(self) -> None:
        """
        /api/tenants of many tenants (the dashboard asks every 2 s) is built
        a few rows per reactor turn, so requests are served between the
        steps; the document is the one tenants_document makes; a client that
        leaves stops the work.
        """
        from tenantgw.admin.resource import ROWS_PER_TURN, tenants_document
        from tenantgw.compile.compiler import compile_snapshot
        from tests.test_compile import simple_spec, tenant, web_backend

        count = ROWS_PER_TURN * 3 + 7
        objects: list[Any] = []
        for i in range(count):
            objects += [*tenant(f"t{i:03d}", simple_spec()), *web_backend(f"t{i:03d}")]
        snapshot = compile_snapshot(objects)
        root = admin_root(Readiness(), lambda: snapshot, cooperate=clocked.cooperate)
        request = DummyRequest([b"api", b"tenants"])
        resource = root.getChildWithDefault(b"api", request).getChildWithDefault(
            b"tenants", request
        )
        self.assertEqual(resource.render(request), NOT_DONE_YET)
        clocked.tick()
        self.assertFalse(request.finished)
        self.assertLess(b"".join(request.written).count(b'"namespace"'), count)
        clocked.run()
        self.assertTrue(request.finished)
        document = json.loads(b"".join(request.written))
        self.assertEqual(document, json.loads(json.dumps(tenants_document(snapshot))))
        self.assertEqual(len(document["tenants"]), count)

        leaving = DummyRequest([b"api", b"tenants"])
        resource.render(leaving)
        clocked.tick()
        written = len(leaving.written)
        leaving.processingFailed(Failure(ConnectionDone("the client left")))
        clocked.run()
        self.assertEqual(len(leaving.written), written)
        self.assertFalse(leaving.finished)


class OptionsTests(SynchronousTestCase):
    def parse(self, *args: str) -> Options:
        options = Options()
        options.parseOptions(list(args))
        return options

    def test_contract_defaults(self) -> None:
        options = self.parse("--source", "dir:/tmp/x")
        self.assertEqual(options["http"], "tcp:8080")
        self.assertEqual(options["https"], "tcp:8443")
        self.assertEqual(options["admin"], "tcp:9090:interface=127.0.0.1")
        self.assertEqual(options["redis-failure"], "open")
        self.assertEqual(options["source_dir"], "/tmp/x")

    def certificate_files(self, names: tuple[str, ...] = ("gw.example",)) -> tuple[str, str]:
        directory = self.mktemp()
        os.makedirs(directory)
        chain, key = self_signed(names)
        paths = os.path.join(directory, "tls.crt"), os.path.join(directory, "tls.key")
        for path, data in zip(paths, (chain, key)):
            with open(path, "wb") as f:
                f.write(data)
        return paths

    def test_every_contract_option_is_accepted(self) -> None:
        cert, key = self.certificate_files()
        options = self.parse(
            "--source=dir:/tmp/x",
            "--kubeconfig=/k",
            "--context=c",
            "--http=tcp:0",
            "--https=tcp:0",
            "--admin=tcp:0",
            "--base-domain=Apps.Example.COM.",
            "--namespace-selector=team in (a,b),!legacy",
            f"--default-cert={cert}",
            f"--default-key={key}",
            "--default-cert-secret=ns/name",
            "--redis=redis://r:6379/0",
            "--redis-failure=closed",
            "--trusted-proxies=10.0.0.0/8,2001:db8::/32",
            "--workers=2",
            "--replicas=3",
        )
        self.assertEqual(options["base-domain"], "apps.example.com")
        self.assertEqual(len(options["trusted"]), 2)
        self.assertEqual(options["replicas"], 3)
        self.assertEqual(options["workers"], 2)

    def test_kubernetes_source_is_accepted(self) -> None:
        options = self.parse("--source=kubernetes", "--kubeconfig=/k", "--context=c")
        self.assertEqual(options["source"], "kubernetes")

    def test_bad_values_are_refused_with_the_option_named(self) -> None:
        for args, named in (
            (["--source", "ftp:x"], "--source"),
            (["--source", "dir:/x", "--redis-failure", "maybe"], "--redis-failure"),
            (["--source", "dir:/x", "--trusted-proxies", "10.0.0.1/8"], "--trusted-proxies"),
            (["--source", "dir:/x", "--namespace-selector", "a in ()"], "--namespace-selector"),
            (["--source", "dir:/x", "--workers", "0"], "--workers"),
            (["--source", "dir:/x", "--redis", "http://r:6379"], "--redis"),
            (["--source", "dir:/x", "--replicas", "0"], "--replicas"),
            (["--source", "dir:/x", "--proxy-protocol"], "--proxy-protocol"),
            (["--source", "dir:/x", "--upstream-timeout", "-1"], "--upstream-timeout"),
        ):
            error = self.assertRaises(usage.UsageError, self.parse, *args)
            self.assertIn(named, str(error))

    def test_default_certificate_is_loaded_and_checked(self) -> None:
        cert, key = self.certificate_files(("default.example",))
        options = self.parse("--source=dir:/x", f"--default-cert={cert}", f"--default-key={key}")
        self.assertEqual(options["default_certificate"].dns_names, ("default.example",))
        _, other_key = self.certificate_files()
        error = self.assertRaises(
            usage.UsageError,
            self.parse,
            "--source=dir:/x",
            f"--default-cert={cert}",
            f"--default-key={other_key}",
        )
        self.assertIn("does not match", str(error))
        error = self.assertRaises(
            usage.UsageError, self.parse, "--source=dir:/x", f"--default-cert={cert}"
        )
        self.assertIn("go together", str(error))

    def test_self_signed_default_certificate_is_warned_about_at_start(self) -> None:
        cert, key = self.certificate_files()
        for extra, expected in (((), 1), ((f"--default-cert={cert}", f"--default-key={key}"), 0)):
            events: list[dict[str, Any]] = []
            globalLogPublisher.addObserver(events.append)
            self.addCleanup(globalLogPublisher.removeObserver, events.append)
            options = self.parse(
                "--source=dir:/nonexistent", "--http=tcp:0", "--admin=tcp:0", *extra
            )
            services = build(options, _ReactorWithThreads())
            services.startService()
            self.addCleanup(services.stopService)
            warned = [
                e
                for e in events
                if e.get("log_level") == LogLevel.warn
                and "self-signed" in (e.get("log_format") or "")
            ]
            self.assertEqual(len(warned), expected, extra)
