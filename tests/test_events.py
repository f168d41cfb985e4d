"""
Status Events: one per change of a tenant's status, none while it is
unchanged; posted through the official client to the fake API server.
"""

from __future__ import annotations

import datetime
import os
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tenantgw.compile.compiler import compile_snapshot
from tenantgw.plans.snapshot import Snapshot
from tenantgw.sources.kubernetes import api_client_from
from tenantgw.status.events import StatusEvents, event_name, kubernetes_poster, object_event
from tenantgw.testing.fake_apiserver import FakeAPIServer
from tests.test_compile import simple_spec, tenant, web_backend

NOW = datetime.datetime(2026, 11, 22, tzinfo=datetime.timezone.utc)


def snapshot_of(*tenants: tuple[str, Any, dict[str, str] | None]) -> Snapshot:
    objects: list[Any] = []
    for ns, spec, namespace_annotations in tenants:
        objects += [*tenant(ns, spec, annotations=namespace_annotations), *web_backend(ns)]
    return compile_snapshot(objects)


class _ImmediatePool:
    """Runs the 'thread' work inline, so the Deferred logic runs without threads."""

    def callInThreadWithCallback(self, on_result: Any, f: Any, *args: Any, **kw: Any) -> None:
        try:
            result = f(*args, **kw)
        except Exception:
            from twisted.python.failure import Failure

            on_result(False, Failure())
        else:
            on_result(True, result)


class _CallFromThread:
    def callFromThread(self, f: Any, *args: Any, **kw: Any) -> None:
        f(*args, **kw)


class DeduplicationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.posted: list[tuple[str, dict[str, Any]]] = []
        self.events = StatusEvents(
            lambda ns, event, resync: self.posted.append((ns, event)) or "created",
            _CallFromThread(),
            threadpool=_ImmediatePool(),
            now=lambda: NOW,
        )

    def reasons(self) -> list[tuple[str, str]]:
        return [(ns, e["reason"]) for ns, e in self.posted]

    def test_one_event_per_change_none_while_unchanged(self) -> None:
        accepted = snapshot_of(("shop", simple_spec(), None))
        self.events.snapshot_applied(accepted)
        self.events.snapshot_applied(accepted)
        self.events.snapshot_applied(
            snapshot_of(("shop", simple_spec(), None), ("blog", simple_spec(), None))
        )
        self.assertEqual(self.reasons(), [("shop", "Accepted"), ("blog", "Accepted")])

    def test_every_state_is_the_reason(self) -> None:
        self.events.snapshot_applied(
            snapshot_of(
                (
                    "clamped",
                    {**simple_spec(), "quota": {"requestsPerSecond": 9}},
                    {"tenantgw.io/max-requests-per-second": "1"},
                ),
                ("rejected", simple_spec("not-allowed.example"), None),
            )
        )
        self.assertEqual(sorted(self.reasons()), [("clamped", "Clamped"), ("rejected", "Rejected")])
        by_ns = dict(self.posted)
        self.assertEqual(by_ns["rejected"]["type"], "Warning")
        self.assertIn("hosts[0]", by_ns["rejected"]["message"])
        self.assertEqual(
            by_ns["clamped"]["involvedObject"],
            {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "clamped", "name": "tenant"},
        )

    def test_host_conflict(self) -> None:
        allowed = {"tenantgw.io/allowed-hosts": "shared.example"}
        objects: list[Any] = []
        for ns, created in (("old", "2024-01-01T00:00:00Z"), ("young", "2024-02-01T00:00:00Z")):
            objects += tenant(
                ns, simple_spec("shared.example"), annotations=allowed, created=created
            )
            objects += web_backend(ns)
        self.events.snapshot_applied(compile_snapshot(objects))
        by_ns = dict(self.posted)
        self.assertEqual(by_ns["young"]["reason"], "HostConflict")
        self.assertIn("shared.example", by_ns["young"]["message"])
        self.assertEqual(by_ns["old"]["reason"], "Accepted")

    def test_a_tenant_that_comes_back_is_reported_again(self) -> None:
        self.events.snapshot_applied(snapshot_of(("shop", simple_spec(), None)))
        self.events.snapshot_applied(snapshot_of())
        self.events.snapshot_applied(snapshot_of(("shop", simple_spec(), None)))
        self.assertEqual(self.reasons(), [("shop", "Accepted"), ("shop", "Accepted")])

    def test_a_failed_post_is_logged_not_raised(self) -> None:
        def fail(ns: str, event: dict[str, Any], resync: bool) -> str:
            raise OSError("API down")

        events = StatusEvents(fail, _CallFromThread(), threadpool=_ImmediatePool())
        events.snapshot_applied(snapshot_of(("shop", simple_spec(), None)))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)


class LeadershipTests(SynchronousTestCase):
    """Only while leading: a follower keeps the latest snapshot and posts it on taking over."""

    def test_a_follower_posts_nothing_until_it_leads(self) -> None:
        calls: list[tuple[str, bool]] = []
        events = StatusEvents(
            lambda ns, event, resync: calls.append((ns, resync)) or "created",
            _CallFromThread(),
            threadpool=_ImmediatePool(),
            active=False,
        )
        events.snapshot_applied(snapshot_of(("shop", simple_spec(), None)))
        self.assertEqual(calls, [])
        events.start_posting()
        self.assertEqual(calls, [("shop", True)])
        events.stop_posting()
        events.snapshot_applied(snapshot_of(("shop", simple_spec("x.example"), None)))
        self.assertEqual(calls, [("shop", True)])


def ingress_event(name: str, reason: str, message: str, uid: str = "") -> dict[str, Any]:
    return object_event(
        "Ingress", "networking.k8s.io/v1", "shop", name, uid, reason, message,
        reason != "Accepted", NOW, "tenantgw",
    )  # fmt: skip


class IngressEventTests(SynchronousTestCase):
    """Per-Ingress Events share the machinery: one per change, only while leading."""

    def test_one_per_change_and_only_while_leading(self) -> None:
        calls: list[tuple[str, str, bool]] = []
        events = StatusEvents(
            lambda ns, event, resync: calls.append((ns, event["reason"], resync)) or "created",
            _CallFromThread(),
            threadpool=_ImmediatePool(),
            active=False,
        )
        accepted = {"Ingress shop/web": ingress_event("web", "Accepted", "serving hosts: a")}
        self.assertEqual(events.objects_reported(accepted), [])
        events.start_posting()
        self.assertEqual(calls, [("shop", "Accepted", True)])
        events.objects_reported(accepted)
        self.assertEqual(len(calls), 1)
        events.objects_reported({"Ingress shop/web": ingress_event("web", "Rejected", "no")})
        self.assertEqual(calls[-1], ("shop", "Rejected", False))
        events.stop_posting()
        events.objects_reported(accepted)
        self.assertEqual(len(calls), 2)

    def test_the_event_names_the_ingress_and_is_a_warning_when_refused(self) -> None:
        event = ingress_event("web", "HostConflict", "host taken", uid="u-1")
        self.assertEqual(
            event["involvedObject"],
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "namespace": "shop",
                "name": "web",
                "uid": "u-1",
            },
        )
        self.assertEqual(event["type"], "Warning")
        self.assertEqual(ingress_event("web", "Accepted", "ok")["type"], "Normal")


class PostingTests(TestCase):
    timeout = 20

    @inlineCallbacks
    def test_events_reach_the_api_server(self) -> Any:
        server = FakeAPIServer()
        server.start()
        self.addCleanup(server.stop)
        directory = tempfile.mkdtemp()
        path = server.write_kubeconfig(os.path.join(directory, "config"))
        self.addCleanup(os.rmdir, directory)
        self.addCleanup(os.remove, path)
        pool = ThreadPool(1, 1)
        pool.start()
        self.addCleanup(pool.stop)
        events = StatusEvents(kubernetes_poster(api_client_from(path, None)), reactor, pool)
        yield gatherResults(
            events.snapshot_applied(
                snapshot_of(("shop", simple_spec(), None), ("bad", simple_spec("x.example"), None))
            )
        )
        stored = {e["metadata"]["namespace"]: e for e in server.objects("Event")}
        self.assertEqual(stored["shop"]["reason"], "Accepted")
        self.assertEqual(stored["bad"]["reason"], "Rejected")
        self.assertEqual(stored["bad"]["involvedObject"]["name"], "tenant")

    def poster(self, server: FakeAPIServer) -> Any:
        directory = tempfile.mkdtemp()
        path = server.write_kubeconfig(os.path.join(directory, "config"))
        self.addCleanup(os.rmdir, directory)
        self.addCleanup(os.remove, path)
        pool = ThreadPool(1, 1)
        pool.start()
        self.addCleanup(pool.stop)
        return kubernetes_poster(api_client_from(path, None)), pool

    def cluster_with_tenants(self, *tenants: tuple[str, Any, dict[str, str] | None]) -> Any:
        server = FakeAPIServer()
        server.start()
        self.addCleanup(server.stop)
        for ns, spec, namespace_annotations in tenants:
            for obj in tenant(ns, spec, annotations=namespace_annotations):
                server.create(obj)
        return server

    @inlineCallbacks
    def test_uid_type_and_aggregation(self) -> Any:
        server = self.cluster_with_tenants(
            ("shop", simple_spec(), None), ("bad", simple_spec("x.example"), None)
        )
        post, pool = self.poster(server)
        events = StatusEvents(post, reactor, pool)
        good = snapshot_of(("shop", simple_spec(), None), ("bad", simple_spec("x.example"), None))
        results = yield gatherResults(events.snapshot_applied(good))
        self.assertEqual(results, ["created", "created"])
        stored = {e["metadata"]["namespace"]: e for e in server.objects("Event")}
        uid = server.get("ConfigMap", "bad", "tenant")["metadata"]["uid"]  # type: ignore[index]
        self.assertEqual(stored["bad"]["involvedObject"]["uid"], uid)
        self.assertEqual(stored["bad"]["type"], "Warning")
        self.assertEqual(stored["bad"]["metadata"]["name"], event_name("tenant", uid, "Rejected"))
        self.assertEqual(stored["shop"]["type"], "Normal")

        # bad is fixed, then broken the same way again: the Rejected Event counts 2.
        fixed = snapshot_of(("shop", simple_spec(), None), ("bad", simple_spec(), None))
        yield gatherResults(events.snapshot_applied(fixed))
        results = yield gatherResults(events.snapshot_applied(good))
        self.assertEqual(results, ["counted"])
        rejected = [e for e in server.objects("Event") if e["reason"] == "Rejected"]
        self.assertEqual(len(rejected), 1)
        self.assertEqual(rejected[0]["count"], 2)
        self.assertEqual(len(server.objects("Event")), 3)  # shop Accepted, bad Accepted+Rejected

    @inlineCallbacks
    def test_a_restart_with_the_same_statuses_posts_nothing(self) -> Any:
        server = self.cluster_with_tenants(("bad", simple_spec("x.example"), None))
        snapshot = snapshot_of(("bad", simple_spec("x.example"), None))
        post, pool = self.poster(server)
        first = StatusEvents(post, reactor, pool)
        yield gatherResults(first.snapshot_applied(snapshot))
        before = server.objects("Event")
        # The new replica follows first, then takes over the lead.
        second = StatusEvents(post, reactor, pool, active=False)
        self.assertEqual(second.snapshot_applied(snapshot), [])
        results = yield gatherResults(second.start_posting())
        self.assertEqual(results, ["unchanged"])
        self.assertEqual(server.objects("Event"), before)
        self.assertEqual(before[0]["count"], 1)

    @inlineCallbacks
    def test_an_ingress_event_carries_its_uid_and_is_not_posted_again_after_a_restart(
        self,
    ) -> Any:
        server = self.cluster_with_tenants(("shop", simple_spec(), None))
        created = server.create(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {"ingressClassName": "tenantgw"},
            }
        )
        uid = created["metadata"]["uid"]
        post, pool = self.poster(server)
        wanted = {"Ingress shop/web": ingress_event("web", "Rejected", "refused", uid=uid)}
        first = StatusEvents(post, reactor, pool)
        results = yield gatherResults(first.objects_reported(wanted))
        self.assertEqual(results, ["created"])
        (stored,) = server.objects("Event")
        self.assertEqual(stored["involvedObject"]["uid"], uid)
        self.assertEqual(stored["metadata"]["name"], event_name("web", uid, "Rejected"))
        # The uid came from the watch: no read of a ConfigMap named like the Ingress.
        self.assertEqual(server.requests_touching("/configmaps/web"), [])
        second = StatusEvents(post, reactor, pool, active=False)
        second.objects_reported(
            {"Ingress shop/web": ingress_event("web", "Rejected", "refused", uid=uid)}
        )
        results = yield gatherResults(second.start_posting())
        self.assertEqual(results, ["unchanged"])
        self.assertEqual(server.objects("Event"), [stored])
