"""
The Kubernetes source: the store, diff, Secret filter and coalescing with a
fake clock; then the threaded watcher end to end, through the official
client over real HTTP, against L{tenantgw.testing.fake_apiserver}.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock, deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import HTTPConnectionPool
from twisted.web.resource import getChildForRequest
from twisted.web.test.requesthelper import DummyRequest

from tenantgw.admin.resource import Readiness
from tenantgw.app.pipeline import ConfigPipeline
from tenantgw.app.service import Options, build
from tenantgw.compile.compiler import CompileOptions
from tenantgw.dataplane.gateway import GatewaySite, gateway_on
from tenantgw.plans.routes import digest_api_key
from tenantgw.plans.snapshot import (
    STATE_ACCEPTED,
    STATE_CLAMPED,
    STATE_HOST_CONFLICT,
    STATE_REJECTED,
    Snapshot,
)
from tenantgw.sources.kinds import KINDS as ALL_KINDS
from tenantgw.sources.kubernetes import (
    KindWatcher,
    KubernetesSource,
    ObjectStore,
    api_client_from,
    watched_kinds,
)
from tenantgw.testing.fake_apiserver import FakeAPIServer
from tests.eventually import eventually
from tests.support import RecordingUpstream
from tests.test_compile import (
    endpoint_slice,
    namespace,
    ready,
    secret,
    service,
    simple_spec,
    tenant_cm,
    web_backend,
)
from tests.tls_support import TestCA

Obj = dict[str, Any]
KINDS = tuple(k.kind for k in ALL_KINDS)  # the one list (tenantgw.sources.kinds)
WATCHED = tuple(k.kind for k in watched_kinds())  # all but Secrets, read by name
SECRETS_REFRESH = 0.2  # seconds between the Secret re-reads of a test cluster


def keys_spec(secret_name: str) -> Obj:
    return {**simple_spec(), "access": {"apiKeys": {"secretName": secret_name}}}


# --- without threads --------------------------------------------------------


class ObjectStoreTests(SynchronousTestCase):
    def test_relist_replaces_so_deleted_objects_disappear(self) -> None:
        store = ObjectStore(KINDS)
        self.assertTrue(store.replace("Namespace", [namespace("a"), namespace("b")]))
        self.assertFalse(store.replace("Namespace", [namespace("a"), namespace("b")]))
        self.assertTrue(store.replace("Namespace", [namespace("b")]))
        self.assertEqual([o["metadata"]["name"] for o in store.all_objects()], ["b"])

    def test_events_add_modify_delete(self) -> None:
        store = ObjectStore(KINDS)
        store.replace("Service", [])
        self.assertTrue(store.apply("Service", "ADDED", web_backend("a")[0]))
        self.assertFalse(store.apply("Service", "MODIFIED", web_backend("a")[0]))
        self.assertTrue(store.apply("Service", "DELETED", web_backend("a")[0]))
        self.assertEqual(store.all_objects(), [])

    def test_only_referenced_secrets_are_kept(self) -> None:
        store = ObjectStore(KINDS)
        store.replace("ConfigMap", [tenant_cm("a", keys_spec("keys"))])
        store.update_references()
        store.replace(
            "Secret",
            [secret("a", "keys", {"k": b"1"}), secret("a", "other"), secret("b", "keys")],
        )
        kept = [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in store.all_objects()]
        self.assertIn(("a", "keys"), kept)
        self.assertNotIn(("a", "other"), kept)
        self.assertNotIn(("b", "keys"), kept)
        self.assertFalse(store.apply("Secret", "ADDED", secret("c", "unrelated")))

    def test_unreferenced_secret_is_dropped_and_new_reference_asks_for_relist(self) -> None:
        store = ObjectStore(KINDS)
        store.replace("ConfigMap", [tenant_cm("a", keys_spec("keys"))])
        self.assertTrue(store.update_references())
        store.replace("Secret", [secret("a", "keys")])
        store.replace("ConfigMap", [tenant_cm("a", simple_spec())])
        self.assertFalse(store.update_references())
        self.assertEqual(store.objects["Secret"], {})
        store.replace("ConfigMap", [tenant_cm("a", keys_spec("new"))])
        self.assertTrue(store.update_references())

    def test_broken_config_keeps_the_secrets_of_its_last_good_config(self) -> None:
        store = ObjectStore(KINDS)
        store.replace("ConfigMap", [tenant_cm("a", keys_spec("keys"))])
        store.update_references()
        store.apply("ConfigMap", "MODIFIED", tenant_cm("a", text="routes: {"))
        store.update_references(("ConfigMap", ("a", "tenant")))
        self.assertEqual(store.secret_refs, {("a", "keys")})

    def test_one_changed_object_updates_what_a_full_pass_would(self) -> None:
        store = ObjectStore(KINDS)
        store.replace("ConfigMap", [tenant_cm(ns, keys_spec("keys")) for ns in ("a", "b", "c")])
        store.update_references()
        changes = [
            ("MODIFIED", tenant_cm("b", keys_spec("rotated"))),
            ("DELETED", tenant_cm("c", keys_spec("keys"))),
            ("ADDED", tenant_cm("d", simple_spec())),
        ]
        for event_type, obj in changes:
            store.apply("ConfigMap", event_type, obj)
            wanted = store.update_references(
                ("ConfigMap", (obj["metadata"]["namespace"], "tenant"))
            )
            self.assertEqual(wanted, obj["metadata"]["namespace"] == "b")
        incremental = (store.secret_refs, store.routed_namespaces)
        store.update_references()
        self.assertEqual((store.secret_refs, store.routed_namespaces), incremental)
        self.assertEqual(incremental[0], {("a", "keys"), ("b", "rotated")})
        self.assertEqual(incremental[1], {"a", "b", "d"})

    def test_default_certificate_secret_is_kept_from_any_namespace(self) -> None:
        store = ObjectStore(KINDS, extra_secrets=[("ops", "default-tls")])
        store.replace("Secret", [secret("ops", "default-tls"), secret("ops", "other")])
        self.assertEqual(list(store.objects["Secret"]), [("ops", "default-tls")])


class ParseAheadTests(SynchronousTestCase):
    def test_tenant_files_are_parsed_on_the_watch_thread(self) -> None:
        """
        The reactor gets a Tenant ConfigMap only once its tenant.yaml is in
        the parse cache: the parse (milliseconds) happened on the watch
        thread, not between requests.
        """
        from tenantgw.compile.compiler import parse_cached

        handed: list[tuple[Any, ...]] = []

        class Reactor:
            def callFromThread(self, f: Any, *args: Any) -> None:
                handed.append(args)

        source = KubernetesSource(None, Reactor(), lambda objects: None)
        listed = tenant_cm("listed", {**simple_spec(), "quota": {"requestsPerSecond": 31}})
        changed = tenant_cm("changed", {**simple_spec(), "quota": {"requestsPerSecond": 37}})
        source._deliver_from_thread("ConfigMap", [listed])
        source._event_from_thread("ConfigMap", "MODIFIED", changed)
        self.assertEqual(len(handed), 2)
        for config_map in (listed, changed):
            before = parse_cached.cache_info()
            parse_cached(config_map["data"]["tenant.yaml"])
            self.assertEqual(parse_cached.cache_info().hits, before.hits + 1)


class CoalescingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.calls: list[list[Any]] = []
        self.source = KubernetesSource(None, self.clock, self.calls.append)

    def list_all_but(self, missing: str) -> None:
        for kind in WATCHED:
            if kind != missing:
                self.source.listed(kind, [])
        if missing != "Secret":
            self.source.listed("Secret", [])

    def test_nothing_is_delivered_until_every_kind_is_listed(self) -> None:
        self.list_all_but("EndpointSlice")
        self.clock.advance(10)
        self.assertEqual(self.calls, [])
        self.assertFalse(self.source.synced)
        self.source.listed("EndpointSlice", [])
        self.clock.advance(self.source.coalesce_delay)
        self.assertEqual(len(self.calls), 1)
        self.assertTrue(self.source.synced)

    def test_a_burst_of_events_is_one_rebuild(self) -> None:
        self.list_all_but("")
        self.clock.advance(1)
        for i in range(200):
            self.source.changed("Namespace", "ADDED", namespace(f"n{i}"))
        self.clock.advance(self.source.coalesce_delay)
        self.assertEqual(len(self.calls), 2)
        self.assertEqual(len(self.calls[-1]), 200)

    def test_an_event_that_changes_nothing_rebuilds_nothing(self) -> None:
        self.list_all_but("")
        self.source.changed("Namespace", "ADDED", namespace("a"))
        self.clock.advance(1)
        self.source.changed("Namespace", "MODIFIED", namespace("a"))
        self.source.changed("Service", "DELETED", web_backend("a")[0])
        self.clock.advance(1)
        self.assertEqual(len(self.calls), 1)

    def test_backend_churn_outside_tenant_namespaces_rebuilds_nothing(self) -> None:
        """Issue 14: 50 EndpointSlice updates in kube-system caused 43 full rebuilds."""
        self.list_all_but("")
        self.source.changed("ConfigMap", "ADDED", tenant_cm("shop", simple_spec()))
        self.clock.advance(1)
        rebuilds = len(self.calls)
        for i in range(50):
            slice_ = endpoint_slice(
                "kube-system", "dns", "kube-dns", [{"port": 53}], [{"addresses": [f"10.9.0.{i}"]}]
            )
            self.source.changed("EndpointSlice", "MODIFIED", slice_)
            self.source.changed("Service", "MODIFIED", web_backend("kube-system")[0])
            self.clock.advance(1)
        self.assertEqual(len(self.calls), rebuilds)
        # Kept, and out of what compiles: nothing routes there.
        self.assertIn(("kube-system", "dns"), self.source.store.objects["EndpointSlice"])
        namespaces = {
            o["metadata"]["namespace"] for o in self.calls[-1] if "namespace" in o["metadata"]
        }
        self.assertNotIn("kube-system", namespaces)
        # The tenant's own backends still rebuild at once.
        for obj in web_backend("shop", "10.0.0.9"):
            self.source.changed(obj["kind"], "ADDED", obj)
        self.clock.advance(1)
        self.assertEqual(len(self.calls), rebuilds + 1)
        # When a namespace becomes a tenant, the backends it already had count.
        self.source.changed("ConfigMap", "ADDED", tenant_cm("kube-system", simple_spec()))
        self.clock.advance(1)
        self.assertIn(
            ("kube-system", "dns"),
            {
                (o["metadata"]["namespace"], o["metadata"]["name"])
                for o in self.calls[-1]
                if o["kind"] == "EndpointSlice"
            },
        )

    def test_a_new_secret_reference_is_read_before_the_rebuild(self) -> None:
        """Else the tenant would be compiled, and reported, without its Secret."""
        self.list_all_but("")
        self.clock.advance(1)
        reader = self.source.secrets
        reader._woken.clear()
        self.source.changed("ConfigMap", "ADDED", tenant_cm("a", keys_spec("keys")))
        self.assertTrue(reader._woken.is_set())
        self.assertTrue(self.source._wants_secret(("a", "keys")))
        self.assertFalse(self.source._wants_secret(("a", "other")))
        self.clock.advance(10)
        self.assertEqual(len(self.calls), 1)  # held back until the Secret is read
        self.source.listed("Secret", [secret("a", "keys")])
        self.clock.advance(self.source.coalesce_delay)
        self.assertEqual(len(self.calls), 2)
        self.assertIn(secret("a", "keys")["metadata"], [o["metadata"] for o in self.calls[-1]])

    def test_the_first_secret_read_waits_for_every_other_kind(self) -> None:
        reader = self.source.secrets
        self.source.changed("ConfigMap", "ADDED", tenant_cm("a", keys_spec("keys")))
        for kind in WATCHED:
            if kind != "EndpointSlice":
                self.source.listed(kind, [])
        self.assertFalse(reader._woken.is_set())
        self.source.listed("EndpointSlice", [])
        self.assertTrue(reader._woken.is_set())


# --- end to end: threads, real HTTP, the official client ---------------------


def tenant_namespace(name: str, annotations: dict[str, str] | None = None) -> Obj:
    return namespace(name, annotations=annotations)


class Cluster:
    """A fake API server, a KubernetesSource on the real reactor, a pipeline."""

    def __init__(
        self, test: TestCase, selector: str = "", server: FakeAPIServer | None = None
    ) -> None:
        """With C{server}: a second gateway (a restart) on the same cluster."""
        if server is None:
            server = FakeAPIServer(bookmark_interval=0.2)
            server.start()
            test.addCleanup(server.stop)
        self.server = server
        directory = tempfile.mkdtemp()
        test.addCleanup(lambda: os.rmdir(directory))
        kubeconfig = self.server.write_kubeconfig(os.path.join(directory, "config"))
        test.addCleanup(os.remove, kubeconfig)
        self.api_client = api_client_from(kubeconfig, "fake")
        self.gateway = gateway_on(reactor)
        self.readiness = Readiness()
        self.pipeline = ConfigPipeline(self.gateway, CompileOptions(), self.readiness)
        self.source = KubernetesSource(
            self.api_client,
            reactor,
            self.pipeline.objects_changed,
            namespace_selector=selector,
            backoff=(0.05, 0.2),
        )
        # Secrets are read by name on a timer, not watched: a test waits for
        # the next round, which the default 5 s would make the longest wait
        # of the module.  The rotation test checks the default's contract.
        self.default_secrets_refresh = self.source.secrets.refresh_seconds
        self.source.secrets.refresh_seconds = SECRETS_REFRESH

    def start(self, test: TestCase) -> None:
        self.source.startService()
        test.addCleanup(self.stop)

    def stop(self) -> None:
        if self.source.running:
            self.source.stopService()
        for watcher in self.source.watchers.values():
            watcher.thread.join(5)

    @property
    def snapshot(self) -> Snapshot:
        return self.gateway.snapshot

    def add_tenant(
        self,
        ns: str,
        spec: Obj,
        created: str = "2024-01-01T00:00:00Z",
        annotations: dict[str, str] | None = None,
    ) -> None:
        self.server.create(tenant_namespace(ns, annotations))
        self.server.create(tenant_cm(ns, spec, created=created))
        for obj in web_backend(ns):
            self.server.create(obj)


class WatcherEndToEndTests(TestCase):
    timeout = 30

    def state(self, cluster: Cluster, ns: str) -> str | None:
        status = cluster.snapshot.statuses.get(ns)
        return status.state if status is not None else None

    @inlineCallbacks
    def test_first_sync_then_follows_changes_within_a_second(self) -> Any:
        cluster = Cluster(self)
        cluster.add_tenant(
            "shop",
            simple_spec("shop.example"),
            annotations={"tenantgw.io/allowed-hosts": "shop.example"},
        )
        self.assertFalse(cluster.readiness.ready)
        cluster.start(self)
        yield eventually(lambda: cluster.readiness.ready)
        self.assertEqual(self.state(cluster, "shop"), STATE_ACCEPTED)
        self.assertEqual(cluster.snapshot.tenant_for_host("shop.example").namespace, "shop")

        started = time.monotonic()
        cluster.add_tenant("blog", simple_spec())
        yield eventually(lambda: self.state(cluster, "blog") == STATE_ACCEPTED, timeout=1.0)
        cluster.server.delete("ConfigMap", "blog", "tenant")
        yield eventually(lambda: "blog" not in cluster.snapshot.statuses, timeout=1.0)
        self.assertLess(time.monotonic() - started, 2.0)

    @inlineCallbacks
    def test_not_ready_while_a_kind_cannot_be_listed(self) -> Any:
        cluster = Cluster(self)
        cluster.server.fail_paths.add("/apis/discovery.k8s.io/")
        cluster.start(self)
        yield eventually(lambda: cluster.source.store.synced >= {"Namespace", "ConfigMap"})
        yield deferLater(reactor, 0.3, lambda: None)
        self.assertFalse(cluster.readiness.ready)
        # /readyz names the kind that holds readiness back.
        cluster.readiness.kind_states = cluster.source.kind_states
        code, body = cluster.readiness.report()
        self.assertEqual(code, 503)
        self.assertIn(b"EndpointSlice: listing\n", body)
        self.assertIn(b"ConfigMap: synced\n", body)
        cluster.server.fail_paths.clear()
        yield eventually(lambda: cluster.readiness.ready)

    @inlineCallbacks
    def test_forbidden_secrets_degrade_only_secrets(self) -> Any:
        """RBAC without Secrets used to keep /readyz 503 forever and serve no tenant."""
        cluster = Cluster(self)
        cluster.server.forbid("Secret")
        cluster.add_tenant(
            "shop",
            simple_spec("shop.example"),
            annotations={"tenantgw.io/allowed-hosts": "shop.example"},
        )
        cluster.add_tenant("keys", keys_spec("keys"))
        cluster.server.create(secret("keys", "keys", {"k": b"1"}))
        cluster.start(self)
        yield eventually(lambda: cluster.readiness.ready)
        self.assertEqual(self.state(cluster, "shop"), STATE_ACCEPTED)
        # The Secret the RBAC denies reads as absent, and says so in status.
        yield eventually(lambda: "keys" in cluster.snapshot.statuses)
        self.assertIn("not found", "\n".join(cluster.snapshot.statuses["keys"].messages))
        self.assertTrue(cluster.source.watchers["Secret"].forbidden)
        states = cluster.source.kind_states()
        self.assertEqual(states["Secret"], "forbidden")
        self.assertEqual(states["ConfigMap"], "synced")
        self.assertFalse(cluster.source.watchers["ConfigMap"].forbidden)

    @inlineCallbacks
    def test_dropped_connections_and_outages_recover(self) -> Any:
        cluster = Cluster(self)
        cluster.add_tenant("shop", simple_spec())
        cluster.start(self)
        yield eventually(lambda: cluster.readiness.ready)
        yield eventually(lambda: cluster.server.open_watches() == len(WATCHED))
        cluster.server.fail_paths.add("/api")
        cluster.server.drop_watches()
        yield deferLater(reactor, 0.3, lambda: None)
        # The last snapshot keeps serving through the outage.
        self.assertEqual(self.state(cluster, "shop"), STATE_ACCEPTED)
        cluster.server.fail_paths.clear()
        cluster.add_tenant("blog", simple_spec())
        yield eventually(lambda: self.state(cluster, "blog") == STATE_ACCEPTED)

    @inlineCallbacks
    def test_gone_relists_and_deletions_missed_meanwhile_disappear(self) -> Any:
        cluster = Cluster(self)
        cluster.add_tenant("shop", simple_spec())
        cluster.add_tenant("blog", simple_spec())
        for watcher in cluster.source.watchers.values():
            watcher.page_size = 1  # every list is paged with continue tokens
        cluster.start(self)
        yield eventually(lambda: self.state(cluster, "blog") == STATE_ACCEPTED)
        lists_before = cluster.source.watchers["ConfigMap"].lists
        with cluster.server.atomically():
            cluster.server.delete("ConfigMap", "blog", "tenant")
            cluster.server.compact()
        yield eventually(lambda: "blog" not in cluster.snapshot.statuses)
        self.assertGreater(cluster.source.watchers["ConfigMap"].lists, lists_before)
        self.assertEqual(self.state(cluster, "shop"), STATE_ACCEPTED)

    def list_queries(self, cluster: Cluster, plural: str) -> list[dict[str, str]]:
        """The query of every list (not watch) of C{plural} the gateway sent."""
        from urllib.parse import parse_qsl, urlsplit

        found = []
        for method, target in list(cluster.server.requests):
            url = urlsplit(target)
            query = dict(parse_qsl(url.query))
            if method == "GET" and url.path.endswith("/" + plural) and "watch" not in query:
                found.append(query)
        return found

    @inlineCallbacks
    def test_lists_come_from_the_watch_cache_then_consistent_after_410(self) -> Any:
        cluster = Cluster(self)
        cluster.add_tenant("shop", simple_spec())
        cluster.start(self)
        yield eventually(lambda: self.state(cluster, "shop") == STATE_ACCEPTED)
        (first,) = self.list_queries(cluster, "configmaps")
        self.assertEqual(first.get("resourceVersion"), "0")
        self.assertEqual(first.get("limit"), str(cluster.source.watchers["ConfigMap"].page_size))

        # The watch falls behind compaction: the next list is a consistent read.
        with cluster.server.atomically():
            cluster.server.delete("ConfigMap", "shop", "tenant")
            cluster.server.compact()
        yield eventually(lambda: "shop" not in cluster.snapshot.statuses)
        second = self.list_queries(cluster, "configmaps")[1]
        self.assertNotIn("resourceVersion", second)
        self.assertIn("limit", second)

        # A re-list the gateway asks for itself names the version it has seen.
        watcher = cluster.source.watchers["ConfigMap"]
        seen = watcher.synced_version
        self.assertTrue(seen)
        watcher.relist()
        yield eventually(lambda: len(self.list_queries(cluster, "configmaps")) == 3)
        self.assertEqual(self.list_queries(cluster, "configmaps")[2].get("resourceVersion"), seen)

    @inlineCallbacks
    def test_a_relist_from_a_compacted_version_falls_back_to_a_consistent_read(self) -> Any:
        cluster = Cluster(self)
        cluster.add_tenant("shop", simple_spec())
        seen = str(cluster.server.resource_version)
        cluster.add_tenant("blog", simple_spec())
        cluster.server.compact()  # "seen" is now too old to list at
        delivered: list[list[Obj]] = []
        watcher = KindWatcher(
            cluster.api_client,
            cluster.source.watchers["ConfigMap"].watched,
            lambda kind, items: delivered.append(items),
            lambda kind, kind_type, obj: None,
        )
        watcher.synced_version = seen
        version = yield deferToThread(watcher._list)
        queries = self.list_queries(cluster, "configmaps")
        self.assertEqual([q.get("resourceVersion") for q in queries], [seen, None])
        self.assertEqual(version, str(cluster.server.resource_version))
        self.assertEqual(
            sorted(item["metadata"]["namespace"] for item in delivered[0]), ["blog", "shop"]
        )
        self.assertFalse(watcher.version_unavailable)

    @inlineCallbacks
    def test_an_unpaged_cache_list_is_taken_whole(self) -> Any:
        cluster = Cluster(self)
        cluster.server.cache_ignores_limit = True
        for i in range(12):
            cluster.add_tenant(f"t{i:02d}", simple_spec())
        for watcher in cluster.source.watchers.values():
            watcher.page_size = 5
        cluster.start(self)
        yield eventually(lambda: len(cluster.snapshot.statuses) == 12)
        queries = self.list_queries(cluster, "configmaps")
        self.assertEqual(len(queries), 1, "one response held every page")
        self.assertEqual(queries[0].get("limit"), "5")
        self.assertEqual({s.state for s in cluster.snapshot.statuses.values()}, {STATE_ACCEPTED})

    @inlineCallbacks
    def test_unrelated_endpoint_slice_updates_reach_no_rebuild(self) -> Any:
        cluster = Cluster(self)
        cluster.add_tenant("shop", simple_spec())
        cluster.server.create(namespace("kube-system"))
        cluster.start(self)
        yield eventually(lambda: self.state(cluster, "shop") == STATE_ACCEPTED)
        rebuilds = cluster.source.rebuilds
        for i in range(50):
            cluster.server.apply(
                endpoint_slice(
                    "kube-system",
                    "dns",
                    "kube-dns",
                    [{"port": 53}],
                    [{"addresses": [f"10.9.{i}.1"]}],
                )
            )

        def last_one_seen() -> bool:
            held = cluster.source.store.objects["EndpointSlice"].get(("kube-system", "dns"))
            return held is not None and "10.9.49.1" in json.dumps(held)

        yield eventually(last_one_seen)
        yield deferLater(reactor, cluster.source.coalesce_delay * 4, lambda: None)
        self.assertEqual(cluster.source.rebuilds, rebuilds)

    @inlineCallbacks
    def test_bookmarks_keep_quiet_watches_current(self) -> Any:
        cluster = Cluster(self)
        cluster.start(self)
        yield eventually(lambda: cluster.readiness.ready)
        for i in range(3):
            cluster.server.create(namespace(f"unrelated-{i}"))
        # EndpointSlices saw no change, yet their watch moved past them.
        yield eventually(lambda: cluster.server.open_watches() == len(WATCHED))
        yield deferLater(reactor, 0.5, lambda: None)
        watches = [
            q for m, q in cluster.server.requests if "endpointslices" in q and "watch=true" in q
        ]
        self.assertTrue(all("allowWatchBookmarks=true" in q for q in watches))

    @inlineCallbacks
    def test_a_stalled_watch_is_reopened_without_a_relist(self) -> Any:
        """
        A watch whose connection stays open but carries nothing (no event,
        no bookmark: what TCP keepalive cannot see) is re-opened from its
        version once the read deadline passes; what changed meanwhile then
        arrives, and nothing is listed again.
        """
        cluster = Cluster(self)
        cluster.add_tenant("shop", simple_spec())
        watchers = {
            kind: w for kind, w in cluster.source.watchers.items() if isinstance(w, KindWatcher)
        }
        for watcher in watchers.values():
            watcher.read_deadline = 1.0
        cluster.start(self)
        yield eventually(lambda: cluster.readiness.ready)
        lists = {kind: w.lists for kind, w in watchers.items()}
        cluster.server.stall_watches = True
        cluster.add_tenant("blog", simple_spec())
        config_maps = watchers["ConfigMap"]
        stalled = time.monotonic()
        yield eventually(lambda: config_maps.stalls >= 1, timeout=5.0)
        self.assertLess(time.monotonic() - stalled, 3.0)
        self.assertNotIn("blog", cluster.snapshot.statuses)
        cluster.server.stall_watches = False
        yield eventually(lambda: self.state(cluster, "blog") == STATE_ACCEPTED, timeout=5.0)
        self.assertEqual({kind: w.lists for kind, w in watchers.items()}, lists)

    def test_healthy_quiet_watches_end_before_the_read_deadline(self) -> None:
        """The API server is asked to end each watch before a silent one would count as stalled."""
        watcher = KindWatcher(None, watched_kinds()[0], print, print)
        self.assertLess(watcher.watch_timeout + 5, watcher.read_deadline)
        self.assertLessEqual(watcher.read_deadline, 60)

    @inlineCallbacks
    def test_namespace_selector_is_sent_to_the_api(self) -> Any:
        cluster = Cluster(self, selector="team=a")
        cluster.server.create(namespace("in", labels={"team": "a"}))
        cluster.server.create(namespace("out", labels={"team": "b"}))
        cluster.start(self)
        yield eventually(lambda: cluster.readiness.ready)
        names = {k[1] for k in cluster.source.store.objects["Namespace"]}
        self.assertEqual(names, {"in"})

    @inlineCallbacks
    def test_stop_does_not_hang(self) -> Any:
        cluster = Cluster(self)
        cluster.start(self)
        yield eventually(lambda: cluster.server.open_watches() == len(WATCHED))
        started = time.monotonic()
        cluster.stop()
        self.assertLess(time.monotonic() - started, 2.0)
        self.assertFalse(any(w.thread.is_alive() for w in cluster.source.watchers.values()))


class IsolationThroughTheClusterTests(TestCase):
    """The isolation rules of the contract, driven through the watcher."""

    timeout = 30

    @inlineCallbacks
    def started(self) -> Any:
        cluster = Cluster(self)
        cluster.start(self)
        yield eventually(lambda: cluster.readiness.ready)
        return cluster

    @inlineCallbacks
    def test_secrets_resolve_only_in_the_tenants_namespace(self) -> Any:
        cluster = yield self.started()
        cluster.server.create(namespace("other"))
        cluster.server.create(secret("other", "keys", {"k": b"stolen"}))
        for i in range(20):
            cluster.server.create(secret("other", f"unrelated-{i}", {"k": b"x"}))
        cluster.add_tenant("shop", keys_spec("keys"))
        yield eventually(lambda: "shop" in cluster.snapshot.statuses)
        status = cluster.snapshot.statuses["shop"]
        self.assertIn("apiKeys.secretName: Secret 'keys' not found", "\n".join(status.messages))
        # Memory does not grow with Secrets nobody references.
        self.assertEqual(cluster.source.store.objects["Secret"], {})
        cluster.server.create(secret("shop", "keys", {"k": b"mine"}))
        yield eventually(lambda: not cluster.snapshot.statuses["shop"].messages)
        self.assertEqual(list(cluster.source.store.objects["Secret"]), [("shop", "keys")])

    @inlineCallbacks
    def test_backends_resolve_only_in_the_tenants_namespace(self) -> Any:
        cluster = yield self.started()
        cluster.server.create(namespace("shop"))
        cluster.server.create(tenant_cm("shop", simple_spec(service="web")))
        cluster.server.create(namespace("other"))
        for obj in web_backend("other"):
            cluster.server.create(obj)
        yield eventually(lambda: "shop" in cluster.snapshot.statuses)
        self.assertIn("not found", "\n".join(cluster.snapshot.statuses["shop"].messages))

    @inlineCallbacks
    def test_hosts_outside_the_allowance_are_refused(self) -> Any:
        cluster = yield self.started()
        cluster.add_tenant(
            "shop",
            simple_spec("shop.example", "bank.example"),
            annotations={"tenantgw.io/allowed-hosts": "shop.example"},
        )
        yield eventually(lambda: "shop" in cluster.snapshot.statuses)
        status = cluster.snapshot.statuses["shop"]
        self.assertEqual((status.state, status.serving), (STATE_REJECTED, False))
        self.assertIn("hosts[1]: 'bank.example'", "\n".join(status.messages))
        self.assertIsNone(cluster.snapshot.tenant_for_host("bank.example"))

    @inlineCallbacks
    def test_oldest_wins_a_host_and_the_next_claimant_takes_over(self) -> Any:
        cluster = yield self.started()
        allowed = {"tenantgw.io/allowed-hosts": "shared.example"}
        # The younger tenant is created first: event order must not matter.
        cluster.add_tenant("young", simple_spec("shared.example"), "2024-02-01T00:00:00Z", allowed)
        cluster.add_tenant("old", simple_spec("shared.example"), "2024-01-01T00:00:00Z", allowed)
        yield eventually(lambda: len(cluster.snapshot.statuses) == 2)
        self.assertEqual(cluster.snapshot.statuses["old"].hosts, ("shared.example",))
        self.assertEqual(cluster.snapshot.statuses["young"].state, STATE_HOST_CONFLICT)
        # A restart sees everything in one list, not as events: same winner.
        restarted = Cluster(self, server=cluster.server)
        restarted.start(self)
        yield eventually(lambda: restarted.readiness.ready)
        self.assertEqual(restarted.snapshot.statuses, cluster.snapshot.statuses)
        cluster.server.delete("ConfigMap", "old", "tenant")
        yield eventually(
            lambda: cluster.snapshot.statuses["young"].hosts == ("shared.example",), 1.0
        )
        self.assertEqual(cluster.snapshot.tenant_for_host("shared.example").namespace, "young")

    @inlineCallbacks
    def test_quotas_above_the_ceilings_are_clamped(self) -> Any:
        cluster = yield self.started()
        spec = {**simple_spec(), "quota": {"requestsPerSecond": 100}}
        cluster.add_tenant("shop", spec, annotations={"tenantgw.io/max-requests-per-second": "50"})
        yield eventually(lambda: "shop" in cluster.snapshot.statuses)
        self.assertEqual(cluster.snapshot.statuses["shop"].state, STATE_CLAMPED)
        rate = cluster.snapshot.tenants["shop"].quota.rate
        self.assertIsNotNone(rate)
        assert rate is not None
        self.assertEqual(rate.requests_per_second, 50.0)

    @inlineCallbacks
    def test_rejected_update_keeps_serving_the_last_good_config(self) -> Any:
        cluster = yield self.started()
        cluster.add_tenant("shop", simple_spec())
        yield eventually(lambda: "shop" in cluster.snapshot.statuses)
        broken = tenant_cm("shop", text="routes: {")
        cluster.server.update(broken)
        yield eventually(lambda: cluster.snapshot.statuses["shop"].state == STATE_REJECTED)
        self.assertTrue(cluster.snapshot.statuses["shop"].serving)
        self.assertIn("shop", cluster.snapshot.tenants)

    @inlineCallbacks
    def test_a_secret_dropped_as_unreferenced_is_fetched_once_referenced(self) -> Any:
        cluster = yield self.started()
        cluster.add_tenant("shop", simple_spec())
        cluster.server.create(secret("shop", "keys", {"k": b"mine"}))
        yield eventually(lambda: cluster.snapshot.statuses.get("shop") is not None)
        self.assertEqual(cluster.source.store.objects["Secret"], {})
        cluster.server.update(tenant_cm("shop", keys_spec("keys")))
        yield eventually(lambda: ("shop", "keys") in cluster.source.store.objects["Secret"])
        yield eventually(
            lambda: cluster.snapshot.tenants["shop"].access.api_key_digests is not None
        )


def readyz(services: Any) -> int:
    """The status code /readyz answers, through the admin site's own resource tree."""
    request = DummyRequest([b"readyz"])
    resource = getChildForRequest(services.admin_site.resource, request)
    resource.render(request)
    return request.responseCode or 200


class TwistdWiringTests(TestCase):
    """C{--source kubernetes --kubeconfig K --context C} builds and runs the whole gateway."""

    timeout = 30

    @inlineCallbacks
    def test_gateway_follows_the_cluster_and_posts_events(self) -> Any:
        server = FakeAPIServer(bookmark_interval=0.2)
        server.start()
        self.addCleanup(server.stop)
        directory = tempfile.mkdtemp()
        kubeconfig = server.write_kubeconfig(os.path.join(directory, "config"), "ctx")
        self.addCleanup(os.rmdir, directory)
        self.addCleanup(os.remove, kubeconfig)
        server.create(namespace("shop"))
        server.create(tenant_cm("shop", simple_spec()))
        options = Options()
        options.parseOptions(
            [
                "--source=kubernetes",
                f"--kubeconfig={kubeconfig}",
                "--context=ctx",
                "--http=tcp:0:interface=127.0.0.1",
                "--https=tcp:0:interface=127.0.0.1",
                "--admin=tcp:0:interface=127.0.0.1",
            ]
        )
        services = build(options, reactor)
        self.assertIsInstance(services.source, KubernetesSource)
        self.assertEqual(readyz(services), 503)
        services.startService()
        self.addCleanup(services.stopService)
        yield eventually(lambda: readyz(services) == 200)
        yield eventually(lambda: len(server.objects("Event")) == 1)
        self.assertEqual(server.objects("Event")[0]["reason"], "Accepted")
        # Per kind, in /metrics as in /readyz's body.
        scraped = services.metrics.exposition().decode("utf-8")
        self.assertIn('tenantgw_source_synced{kind="ConfigMap"} 1.0', scraped)
        self.assertIn('tenantgw_source_synced{kind="Secret"} 1.0', scraped)
        self.assertIn('tenantgw_source_forbidden{kind="Ingress"} 0.0', scraped)
        self.assertIn('tenantgw_config_full_compiles_total{reason="first compile"} 1.0', scraped)
        # One tenant's edit compiles that tenant only, and says so.
        compiled = services.pipeline.compiler.tenants_compiled
        edited = tenant_cm("shop", {**simple_spec(), "quota": {"requestsPerSecond": 7}})
        edited["metadata"]["resourceVersion"] = server.get("ConfigMap", "shop", "tenant")[
            "metadata"
        ]["resourceVersion"]
        server.update(edited)
        yield eventually(lambda: _rate_of(services, "shop") == 7)
        scraped = services.metrics.exposition().decode("utf-8")
        self.assertIn('tenantgw_config_compiles_total{mode="full"} 1.0', scraped)
        self.assertIn('tenantgw_config_compiles_total{mode="incremental"} 1.0', scraped)
        self.assertIn(f"tenantgw_config_tenants_compiled_total {float(compiled + 1)}", scraped)


class TrafficThroughChangesTests(TestCase):
    """Requests keep succeeding while the cluster changes under them."""

    timeout = 30

    def close_upstream_connections(self, upstream: RecordingUpstream) -> Deferred[None]:
        for protocol in list(upstream.protocols):
            assert protocol.transport is not None
            protocol.transport.loseConnection()
        return deferLater(reactor, 0.05, lambda: None)

    @inlineCallbacks
    def test_no_request_is_dropped_while_configs_change(self) -> Any:
        upstream = RecordingUpstream()
        upstream_port = reactor.listenTCP(0, upstream, interface="127.0.0.1")
        self.addCleanup(upstream_port.stopListening)
        self.addCleanup(self.close_upstream_connections, upstream)
        cluster = Cluster(self)
        site = GatewaySite(cluster.gateway, reactor)
        listening = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        allowed = {"tenantgw.io/allowed-hosts": "shop.example"}
        cluster.server.create(namespace("shop", annotations=allowed))
        cluster.server.create(tenant_cm("shop", simple_spec("shop.example")))
        cluster.server.create(service("shop", "web", [{"port": 80}]))
        cluster.server.create(
            endpoint_slice(
                "shop",
                "web-1",
                "web",
                [{"port": upstream_port.getHost().port}],
                [ready("127.0.0.1")],
            )
        )
        cluster.start(self)
        yield eventually(lambda: cluster.readiness.ready)
        pool = HTTPConnectionPool(reactor)
        self.addCleanup(pool.closeCachedConnections)
        url = f"http://127.0.0.1:{listening.getHost().port}/"
        codes = []
        for i in range(20):
            spec = simple_spec("shop.example")
            spec["routes"][0]["requestHeaders"] = {"set": {"x-generation": str(i)}}
            cluster.server.update(tenant_cm("shop", spec))
            response = yield treq.get(url, headers={"Host": "shop.example"}, pool=pool)
            yield response.content()
            codes.append(response.code)
        self.assertEqual(codes, [200] * 20)
        # And the last change does serve, within a second.

        @inlineCallbacks
        def last_change_served() -> Any:
            if b"x-generation: 19" in upstream.received.lower():
                return True
            response = yield treq.get(url, headers={"Host": "shop.example"}, pool=pool)
            yield response.content()
            self.assertEqual(response.code, 200)
            return False

        yield eventually(last_change_served, "x-generation: 19 forwarded", timeout=1.0)


class SecretsByNameTests(TestCase):
    """Contract section 12: referenced Secrets only, each read by name; RBAC get only."""

    timeout = 40

    @inlineCallbacks
    def test_only_referenced_secrets_are_read_and_never_listed_or_watched(self) -> Any:
        cluster = Cluster(self)
        cluster.server.create(namespace("other"))
        for i in range(200):
            cluster.server.create(secret("other", f"unrelated-{i}", {"k": b"x"}))
        cluster.server.create(secret("shop", "unrelated", {"k": b"x"}))
        cluster.add_tenant(
            "shop", keys_spec("keys"), annotations={"tenantgw.io/allowed-hosts": "shop.test"}
        )
        cluster.server.create(secret("shop", "keys", {"k": b"1"}))
        cluster.server.create(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "IngressClass",
                "metadata": {"name": "tenantgw"},
                "spec": {"controller": "tenantgw.io/ingress-controller"},
            }
        )
        for name, class_name in (("site", "tenantgw"), ("theirs", "nginx")):
            cluster.server.create(
                {
                    "apiVersion": "networking.k8s.io/v1",
                    "kind": "Ingress",
                    "metadata": {"name": name, "namespace": "shop"},
                    "spec": {
                        "ingressClassName": class_name,
                        "tls": [{"hosts": ["shop.test"], "secretName": f"{name}-tls"}],
                        "rules": [
                            {
                                "host": "shop.test",
                                "http": {
                                    "paths": [
                                        {
                                            "path": "/",
                                            "pathType": "Prefix",
                                            "backend": {
                                                "service": {"name": "web", "port": {"number": 80}}
                                            },
                                        }
                                    ]
                                },
                            }
                        ],
                    },
                }
            )
        cluster.start(self)
        yield eventually(lambda: cluster.readiness.ready)
        yield eventually(lambda: ("shop", "keys") in cluster.source.store.objects["Secret"])
        self.assertEqual(list(cluster.source.store.objects["Secret"]), [("shop", "keys")])
        paths = {q.split("?")[0] for _, q in cluster.server.requests_touching("secrets")}
        # Two names are read (the Ingress's certificate does not exist), by
        # name: no list, no watch, nothing else fetched, not the other
        # controller's Ingress's certificate.
        self.assertEqual(
            paths,
            {"/api/v1/namespaces/shop/secrets/keys", "/api/v1/namespaces/shop/secrets/site-tls"},
        )
        self.assertEqual(
            [m for m, _ in cluster.server.requests_touching("secrets") if m != "GET"], []
        )
        # The Ingress's certificate, once it exists, serves shop.test by SNI.
        chain, key = TestCA().issue("shop.test")
        site_tls = secret("shop", "site-tls", {"tls.crt": chain, "tls.key": key})
        site_tls["type"] = "kubernetes.io/tls"
        cluster.server.create(site_tls)
        yield eventually(lambda: "shop.test" in cluster.snapshot.certificates, timeout=10.0)

    @inlineCallbacks
    def test_a_rotated_secret_is_served_within_ten_seconds(self) -> Any:
        cluster = Cluster(self)
        cluster.add_tenant("shop", keys_spec("keys"))
        cluster.server.create(secret("shop", "keys", {"k": b"old-key"}))
        cluster.start(self)

        def digests() -> frozenset[bytes]:
            tenant = cluster.snapshot.tenants.get("shop")
            return (tenant.access.api_key_digests or frozenset()) if tenant else frozenset()

        # The contract's ten seconds: one refresh period (the default), and
        # the rebuild after it, which takes far less than the rest.
        self.assertLessEqual(cluster.default_secrets_refresh, 5.0)
        yield eventually(lambda: digest_api_key(b"old-key") in digests(), "the first key served")
        rebuilds = cluster.source.rebuilds
        rounds = cluster.source.secrets.rounds
        yield eventually(
            lambda: cluster.source.secrets.rounds >= rounds + 2, "two re-reads that change nothing"
        )
        self.assertEqual(cluster.source.rebuilds, rebuilds)
        cluster.server.update(secret("shop", "keys", {"k": b"new-key"}))
        started = time.monotonic()
        yield eventually(
            lambda: digest_api_key(b"new-key") in digests(), "the rotated key served", 10.0
        )
        # Within one refresh period (and a margin for the rebuild).
        self.assertLess(time.monotonic() - started, SECRETS_REFRESH + 1.0)
        self.assertNotIn(digest_api_key(b"old-key"), digests())

    @inlineCallbacks
    def test_a_deleted_secret_is_dropped_and_an_outage_keeps_the_last_copy(self) -> Any:
        cluster = Cluster(self)
        cluster.add_tenant("shop", keys_spec("keys"))
        cluster.server.create(secret("shop", "keys", {"k": b"key"}))
        cluster.start(self)
        yield eventually(lambda: ("shop", "keys") in cluster.source.store.objects["Secret"])
        cluster.server.fail_paths.add("/api/v1/namespaces/shop/secrets")
        rounds = cluster.source.secrets.rounds
        yield eventually(lambda: cluster.source.secrets.rounds > rounds + 2)
        self.assertIn(("shop", "keys"), cluster.source.store.objects["Secret"])
        cluster.server.fail_paths.clear()
        cluster.server.delete("Secret", "shop", "keys")
        yield eventually(lambda: ("shop", "keys") not in cluster.source.store.objects["Secret"])


class DialectsThroughTheClusterTests(TestCase):
    """Gateway API and Ingress objects reach the gateway through the watches."""

    timeout = 30

    @inlineCallbacks
    def test_httproute_and_ingress_are_served_from_the_cluster(self) -> Any:
        from tests.ingress_corpus import ingress
        from tests.test_gateway_api_policy import gateway_objects, route_objects

        cluster = Cluster(self)
        for obj in gateway_objects():
            cluster.server.create(obj)
        for obj in route_objects("docs", ["docs.apps.example"]):
            cluster.server.create(obj)
        cluster.server.create(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "IngressClass",
                "metadata": {"name": "tenantgw"},
                "spec": {"controller": "tenantgw.io/ingress-controller"},
            }
        )
        cluster.server.create(tenant_namespace("shop", {"tenantgw.io/allowed-hosts": "shop.test"}))
        cluster.server.create(ingress("site", [("/", "Prefix", "web")]))
        for obj in web_backend("shop") + web_backend("docs"):
            cluster.server.create(obj)
        cluster.start(self)
        yield eventually(lambda: cluster.readiness.ready)
        yield eventually(lambda: cluster.snapshot.tenant_for_host("docs.apps.example") is not None)
        yield eventually(lambda: cluster.snapshot.tenant_for_host("shop.test") is not None)
        self.assertEqual(cluster.snapshot.tenant_for_host("shop.test").namespace, "shop")
        # An edit to the HTTPRoute applies live.
        cluster.server.delete("HTTPRoute", "docs", "web")
        yield eventually(lambda: cluster.snapshot.tenant_for_host("docs.apps.example") is None)

    @inlineCallbacks
    def test_a_cluster_without_the_gateway_api_crds_still_serves(self) -> Any:
        cluster = Cluster(self)
        for kind in ("GatewayClass", "Gateway", "HTTPRoute", "ReferenceGrant"):
            cluster.server.uninstall(kind)
        cluster.add_tenant(
            "shop",
            simple_spec("shop.example"),
            annotations={"tenantgw.io/allowed-hosts": "shop.example"},
        )
        cluster.start(self)
        yield eventually(lambda: cluster.readiness.ready)
        self.assertEqual(cluster.snapshot.tenant_for_host("shop.example").namespace, "shop")
        self.assertTrue(cluster.source.watchers["HTTPRoute"].missing)


class BackoffTests(SynchronousTestCase):
    """
    A watch that fails right after a successful list used to reset the
    backoff on every list, re-listing every 0.3-0.5 s forever.
    """

    def test_watch_failing_after_list_backs_off_growing(self) -> None:
        from tenantgw.sources.kinds import kind_named
        from tenantgw.sources.kubernetes import KindWatcher, WatchedKind

        delays: list[float] = []

        class Failing(KindWatcher):
            def _list(self) -> str:
                self.lists += 1
                return "1"

            def _watch(self, version: str) -> None:
                raise ConnectionError("reset right after the list")

        kind = kind_named("ConfigMap")
        watcher = Failing(
            None,
            WatchedKind(kind.kind, "v1", "/api/v1/configmaps"),
            lambda kind, items: None,
            lambda kind, type_, obj: None,
            backoff=(0.5, 30.0),
        )

        def wait(delay: float | None = None) -> bool:
            delays.append(delay or 0.0)
            if len(delays) >= 12:
                watcher.stopping.set()
            return watcher.stopping.is_set()

        watcher.stopping.wait = wait  # type: ignore[method-assign]
        watcher.run()
        self.assertEqual(watcher.lists, 12)
        # Capped at 30 s (jitter keeps at least half), and it grew.
        self.assertGreaterEqual(delays[-1], 15.0)
        self.assertLessEqual(max(delays), 30.0)
        self.assertGreaterEqual(sum(delays), 100.0)


class KeepaliveTests(TestCase):
    def test_client_connections_probe_a_half_open_connection(self) -> None:
        """Without keepalive a dead API server would be noticed only at the read deadline."""
        import socket

        server = FakeAPIServer()
        server.start()
        self.addCleanup(server.stop)
        directory = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, directory)
        kubeconfig = server.write_kubeconfig(os.path.join(directory, "config"))
        self.addCleanup(os.remove, kubeconfig)
        api_client = api_client_from(kubeconfig, "fake")
        options = api_client.rest_client.pool_manager.connection_pool_kw["socket_options"]
        self.assertIn((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1), options)
        self.assertIn((socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 20), options)


def _rate_of(services: Any, namespace: str) -> float | None:
    tenant = services.gateway.snapshot.tenants.get(namespace)
    rate = None if tenant is None else tenant.quota.rate
    return None if rate is None else rate.requests_per_second
