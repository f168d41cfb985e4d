"""
Tests for L{tenantgw.sources.directory}: manifests read from a directory,
polled by a C{LoopingCall} that a L{Clock} drives, so no test sleeps.

File modification times are set explicitly (C{os.utime}) wherever a test
relies on a change being seen, since two writes within the filesystem's
timestamp granularity would otherwise look identical.
"""

from __future__ import annotations

import os
from typing import Any

import yaml
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tenantgw.sources.directory import DirectorySource, ManifestError, load_manifests
from tenantgw.sources.kinds import KIND_NAMES


def configmap(name: str, namespace: str = "shop", value: str = "1") -> str:
    return (
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\n"
        f"data: {{v: '{value}'}}\n"
    )


def names(objects: list[Any]) -> list[str]:
    return [f"{o['kind']}/{o['metadata']['name']}" for o in objects]


class LoadManifestsTests(SynchronousTestCase):
    def test_multi_document(self) -> None:
        text = "---\n" + configmap("a") + "---\n" + configmap("b") + "---\n"
        self.assertEqual(names(load_manifests(text)), ["ConfigMap/a", "ConfigMap/b"])

    def test_list_unpacked(self) -> None:
        text = (
            "kind: List\n"
            "items:\n"
            "- {kind: Namespace, metadata: {name: shop}}\n"
            "- kind: List\n"
            "  items: [{kind: Secret, metadata: {name: s}}]\n"
            "- {kind: Service, metadata: {name: web}}\n"
            "---\n"
            "{kind: EndpointSlice, metadata: {name: web-1}}\n"
        )
        self.assertEqual(
            names(load_manifests(text)),
            ["Namespace/shop", "Secret/s", "Service/web", "EndpointSlice/web-1"],
        )

    def test_unrelated_kinds_skipped(self) -> None:
        text = (
            "{kind: Deployment, metadata: {name: d}}\n---\n"
            "{kind: Pod, metadata: {name: p}}\n---\n"
            "{metadata: {name: no-kind}}\n---\n"
            "kind: List\nitems: [{kind: Job, metadata: {name: j}}]\n---\n" + configmap("c")
        )
        self.assertEqual(names(load_manifests(text)), ["ConfigMap/c"])

    def test_every_watched_kind_is_read(self) -> None:
        """The one list of kinds (sources.kinds) decides what a directory delivers."""
        text = "".join(
            f"{{kind: {kind}, metadata: {{name: x}}}}\n---\n" for kind in sorted(KIND_NAMES)
        )
        self.assertEqual(
            sorted(names(load_manifests(text))), [f"{k}/x" for k in sorted(KIND_NAMES)]
        )

    def test_json(self) -> None:
        text = '{"kind": "Namespace", "metadata": {"name": "shop"}}'
        self.assertEqual(names(load_manifests(text)), ["Namespace/shop"])

    def test_refused(self) -> None:
        for text in (
            "kind: [unclosed",
            "- just\n- a list\n",
            "kind: ConfigMap\n---\nplain scalar\n",
            "a: 2024-13-01T00:00:00Z\n",  # a timestamp YAML cannot build
            "a: " + "1" * 5000 + "\n",  # an integer Python will not parse
            "a: !!python/object:os.system x\n",  # never a constructor of ours
        ):
            self.assertRaises(ManifestError, load_manifests, text)


class DirectorySourceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        self.clock = Clock()
        self.calls: list[list[Any]] = []
        self.source = DirectorySource(self.root, self.clock, self.calls.append, interval=1.0)
        self.mtime = 1_600_000_000 * 10**9

    def start(self) -> None:
        self.source.startService()
        self.addCleanup(self.stop)

    def stop(self) -> None:
        if self.source.running:
            self.source.stopService()

    def path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def write(self, name: str, text: str) -> str:
        """Writes C{name} and gives it an mtime no earlier write had."""
        path = self.path(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        self.mtime += 10**9
        os.utime(path, ns=(self.mtime, self.mtime))
        return path

    def tick(self) -> None:
        self.clock.advance(1.0)

    def last(self) -> list[str]:
        return names(self.calls[-1])

    def test_initial_read(self) -> None:
        self.write("b.yaml", configmap("b1") + "---\n" + configmap("b2"))
        self.write("a.yml", configmap("a"))
        self.write("c.json", '{"kind": "Secret", "metadata": {"name": "c"}}')
        self.assertFalse(self.source.synced)
        self.start()
        self.assertEqual(len(self.calls), 1)
        self.assertEqual(self.last(), ["ConfigMap/a", "ConfigMap/b1", "ConfigMap/b2", "Secret/c"])
        self.assertTrue(self.source.synced)
        self.assertEqual(self.source.errors, {})

    def test_empty_directory_is_a_sync(self) -> None:
        self.start()
        self.assertEqual(self.calls, [[]])
        self.assertTrue(self.source.synced)

    def test_no_callback_when_nothing_changed(self) -> None:
        self.write("a.yaml", configmap("a"))
        self.start()
        for _ in range(5):
            self.tick()
        self.assertEqual(len(self.calls), 1)

    def test_polls_at_the_interval(self) -> None:
        self.start()
        self.write("a.yaml", configmap("a"))
        self.clock.advance(0.5)
        self.assertEqual(len(self.calls), 1)
        self.clock.advance(0.5)
        self.assertEqual(len(self.calls), 2)

    def test_change_detected(self) -> None:
        self.write("a.yaml", configmap("a", value="1"))
        self.start()
        self.write("a.yaml", configmap("a", value="2"))
        self.tick()
        self.assertEqual(len(self.calls), 2)
        self.assertEqual(self.calls[-1][0]["data"], {"v": "2"})

    def test_new_file_detected(self) -> None:
        self.write("a.yaml", configmap("a"))
        self.start()
        self.write("sub/b.yaml", configmap("b"))
        self.tick()
        self.assertEqual(self.last(), ["ConfigMap/a", "ConfigMap/b"])

    def test_same_size_same_mtime_replacement_detected(self) -> None:
        """
        C{rsync -a} and C{cp -p} replace a file but keep its mtime; a
        one-character edit also keeps its size.
        """
        path = self.write("a.yaml", configmap("a", value="1"))
        self.start()
        stat = os.stat(path)
        replacement = self.path("a.yaml.tmp")
        with open(replacement, "w", encoding="utf-8") as f:
            f.write(configmap("a", value="2"))
        os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        os.replace(replacement, path)
        self.assertEqual(os.stat(path).st_size, stat.st_size)
        self.tick()
        self.assertEqual(len(self.calls), 2)
        self.assertEqual(self.calls[-1][0]["data"], {"v": "2"})

    def test_touch_without_change_does_not_call_back(self) -> None:
        path = self.write("a.yaml", configmap("a"))
        self.start()
        self.mtime += 10**9
        os.utime(path, ns=(self.mtime, self.mtime))
        self.tick()
        self.assertEqual(len(self.calls), 1)

    def test_broken_file_keeps_its_objects(self) -> None:
        self.write("a.yaml", configmap("a"))
        self.write("b.yaml", configmap("b", value="1"))
        self.start()
        broken = self.write("b.yaml", configmap("b", value="2") + "---\nkind: [unclosed\n")
        self.tick()
        self.assertEqual(list(self.source.errors), [broken])
        self.assertIn("not valid YAML", self.source.errors[broken])
        # Nothing that serves changed, so nothing is recompiled.
        self.assertEqual(len(self.calls), 1)
        # A change elsewhere delivers b's last good objects, not the half edit.
        self.write("c.yaml", configmap("c"))
        self.tick()
        self.assertEqual(self.last(), ["ConfigMap/a", "ConfigMap/b", "ConfigMap/c"])
        self.assertEqual(self.calls[-1][1]["data"], {"v": "1"})
        # Fixed: the new objects and no error.
        self.write("b.yaml", configmap("b", value="3"))
        self.tick()
        self.assertEqual(self.source.errors, {})
        self.assertEqual(self.calls[-1][1]["data"], {"v": "3"})
        self.assertEqual(len(self.calls), 3)

    def test_file_broken_from_the_start(self) -> None:
        broken = self.write("a.yaml", "- not\n- a mapping\n")
        self.write("b.yaml", configmap("b"))
        self.start()
        self.assertEqual(self.last(), ["ConfigMap/b"])
        self.assertEqual(list(self.source.errors), [broken])

    def test_unbuildable_value_does_not_stop_polling(self) -> None:
        self.write("a.yaml", configmap("a"))
        self.start()
        bad = self.write("a.yaml", configmap("a") + "  created: 2024-13-01T00:00:00Z\n")
        self.tick()
        self.assertEqual(list(self.source.errors), [bad])
        self.assertTrue(self.source._poller.running)
        self.write("b.yaml", configmap("b"))
        self.tick()
        self.assertEqual(self.last(), ["ConfigMap/a", "ConfigMap/b"])

    def test_deleted_file_removes_its_objects(self) -> None:
        self.write("a.yaml", configmap("a"))
        path = self.write("b.yaml", configmap("b1") + "---\n" + configmap("b2"))
        self.start()
        os.remove(path)
        self.tick()
        self.assertEqual(self.last(), ["ConfigMap/a"])
        self.tick()
        self.assertEqual(len(self.calls), 2)

    def test_deleted_broken_file_forgets_its_error(self) -> None:
        self.write("a.yaml", configmap("a"))
        path = self.write("b.yaml", "kind: [")
        self.start()
        os.remove(path)
        self.tick()
        self.assertEqual(self.source.errors, {})

    def test_list_and_unrelated_kinds(self) -> None:
        self.write(
            "all.yaml",
            "apiVersion: v1\nkind: List\nitems:\n"
            "- {kind: Namespace, metadata: {name: shop}}\n"
            "- {kind: Deployment, metadata: {name: web}}\n"
            "- {kind: Service, metadata: {name: web, namespace: shop}}\n"
            "---\n{kind: Pod, metadata: {name: p}}\n",
        )
        self.start()
        self.assertEqual(self.last(), ["Namespace/shop", "Service/web"])

    def test_which_files_are_read(self) -> None:
        self.write("top.yaml", configmap("top"))
        self.write("nested/deeper/n.yaml", configmap("nested"))
        self.write("..data/d.yaml", configmap("from-data-dir"))
        self.write("..2024_01_01_00_00_00.1/g.yaml", configmap("from-generation-dir"))
        self.write(".hidden.yaml", configmap("hidden"))
        self.write("notes.txt", configmap("txt"))
        self.write("nested/..data/x.yaml", configmap("nested-data-dir"))
        self.start()
        self.assertEqual(sorted(self.last()), ["ConfigMap/nested", "ConfigMap/top"])

    def test_configmap_volume_update(self) -> None:
        """
        A ConfigMap volume: visible names are symlinks through C{..data},
        itself a symlink swapped atomically to a new generation directory.
        """
        self.write("..gen1/t.yaml", configmap("t", value="1"))
        self.write("..gen2/t.yaml", configmap("t", value="2"))
        os.symlink("..gen1", self.path("..data"))
        os.symlink("..data/t.yaml", self.path("t.yaml"))
        self.start()
        self.assertEqual(self.last(), ["ConfigMap/t"])
        self.assertEqual(self.calls[-1][0]["data"], {"v": "1"})
        os.symlink("..gen2", self.path("..data_tmp"))
        os.replace(self.path("..data_tmp"), self.path("..data"))
        self.tick()
        self.assertEqual(len(self.calls), 2)
        self.assertEqual(self.calls[-1][0]["data"], {"v": "2"})

    def test_missing_directory(self) -> None:
        os.rmdir(self.root)
        self.start()
        self.assertEqual((self.calls, self.source.synced), ([], False))
        os.makedirs(self.root)
        self.write("a.yaml", configmap("a"))
        self.tick()
        self.assertEqual(self.last(), ["ConfigMap/a"])
        self.assertTrue(self.source.synced)

    def test_directory_vanishing_keeps_objects(self) -> None:
        path = self.write("a.yaml", configmap("a"))
        self.start()
        os.remove(path)
        os.rmdir(self.root)
        self.tick()
        self.assertEqual(len(self.calls), 1)

    def test_callback_failure_does_not_stop_polling(self) -> None:
        def fail(objects: list[Any]) -> None:
            self.calls.append(objects)
            if len(self.calls) == 1:
                raise RuntimeError("compile failed")

        self.source.on_objects = fail
        self.write("a.yaml", configmap("a"))
        self.start()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.write("b.yaml", configmap("b"))
        self.tick()
        self.assertEqual(self.last(), ["ConfigMap/a", "ConfigMap/b"])

    def test_stop_stops_polling(self) -> None:
        self.start()
        self.source.stopService()
        self.write("a.yaml", configmap("a"))
        self.tick()
        self.assertEqual(self.calls, [[]])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class RefusedManifestVisibilityTests(SynchronousTestCase):
    """A refused file shows in /api/tenants, not only in the log."""

    def test_the_tenant_of_a_refused_file_is_shown_rejected_while_serving(self) -> None:
        from tenantgw.admin.metrics import Metrics
        from tenantgw.admin.resource import tenants_document
        from tenantgw.compile.compiler import compile_snapshot
        from tests.support import tenant_objects

        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "shop.yaml")
        with open(path, "w") as f:
            yaml.safe_dump_all(
                tenant_objects("shop", "routes: [{backends: [{service: web, port: 80}]}]\n"), f
            )
        delivered: list[Any] = []
        clock = Clock()
        source = DirectorySource(directory, clock, delivered.append)
        source.startService()
        self.addCleanup(source.stopService)
        with open(path, "a") as f:
            f.write("---\nkind: [unclosed\n")
        os.utime(path, ns=(1, 1))
        clock.advance(1)
        metrics = Metrics()
        metrics.source_problems = source.problems
        document = tenants_document(compile_snapshot(delivered[-1]), metrics)
        (shop,) = document["tenants"]
        self.assertEqual((shop["state"], shop["serving"]), ("Rejected", True))
        self.assertIn("refused", shop["messages"][0])
        self.assertIn("shop.yaml", shop["messages"][0])
        # A file that never held anything good is listed on its own.
        with open(os.path.join(directory, "new.yaml"), "w") as f:
            f.write("kind: [unclosed\n")
        clock.advance(1)
        document = tenants_document(compile_snapshot(delivered[-1]), metrics)
        self.assertEqual(len(document["sourceErrors"]), 1)
        self.assertIn("new.yaml", document["sourceErrors"][0])
