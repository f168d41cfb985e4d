"""
The fake API server behaves as the real one where the watcher depends on it,
checked through the official client over HTTP.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from twisted.trial.unittest import TestCase

from tenantgw.testing.fake_apiserver import FakeAPIServer
from tests.test_compile import namespace, tenant_cm

TIMEOUT = (5, 10)


class FakeAPIServerTests(TestCase):
    """Real HTTP and real waits (watch timeouts), so not a SynchronousTestCase."""

    def setUp(self) -> None:
        self.server = FakeAPIServer(bookmark_interval=0.1)
        self.server.start()
        self.addCleanup(self.server.stop)
        configuration = client.Configuration()
        configuration.host = self.server.url
        self.core = client.CoreV1Api(client.ApiClient(configuration))

    def list_raw(self, **query: Any) -> Any:
        response = self.core.list_config_map_for_all_namespaces(
            _preload_content=False, _request_timeout=TIMEOUT, **query
        )
        return json.loads(response.data)

    def watch_raw(self, **query: Any) -> list[Any]:
        response = self.core.list_config_map_for_all_namespaces(
            watch=True, _preload_content=False, _request_timeout=TIMEOUT, **query
        )
        return [json.loads(line) for line in response.data.splitlines() if line.strip()]

    def test_writes_over_http_and_their_errors(self) -> None:
        self.core.create_namespace({"metadata": {"name": "a"}}, _request_timeout=TIMEOUT)
        body = tenant_cm("a", {"routes": []})
        created = self.core.create_namespaced_config_map("a", body, _request_timeout=TIMEOUT)
        self.assertEqual(created.metadata.namespace, "a")
        error = self.assertRaises(ApiException, self.core.create_namespaced_config_map, "a", body)
        self.assertEqual(error.status, 409)
        body["data"] = {"tenant.yaml": "routes: []\n# changed"}
        self.core.replace_namespaced_config_map("tenant", "a", body, _request_timeout=TIMEOUT)
        self.assertIn("changed", self.server.get("ConfigMap", "a", "tenant")["data"]["tenant.yaml"])
        self.core.delete_namespaced_config_map("tenant", "a", _request_timeout=TIMEOUT)
        self.assertIsNone(self.server.get("ConfigMap", "a", "tenant"))
        error = self.assertRaises(
            ApiException, self.core.delete_namespaced_config_map, "tenant", "a"
        )
        self.assertEqual(error.status, 404)

    def test_lists_page_and_leave_out_kind(self) -> None:
        for i in range(5):
            self.server.create(tenant_cm(f"n{i}", {"routes": []}))
        first = self.list_raw(limit=2)
        self.assertEqual(len(first["items"]), 2)
        self.assertNotIn("kind", first["items"][0])
        names = [i["metadata"]["namespace"] for i in first["items"]]
        token = first["metadata"]["continue"]
        while token:
            page = self.list_raw(limit=2, _continue=token)
            names += [i["metadata"]["namespace"] for i in page["items"]]
            token = page["metadata"].get("continue")
        self.assertEqual(names, [f"n{i}" for i in range(5)])
        self.assertEqual(first["metadata"]["resourceVersion"], str(self.server.resource_version))

    def test_watch_replays_from_a_version_and_ends_at_its_timeout(self) -> None:
        self.server.create(tenant_cm("a", {"routes": []}))
        version = self.list_raw()["metadata"]["resourceVersion"]
        self.server.create(tenant_cm("b", {"routes": []}))
        self.server.delete("ConfigMap", "a", "tenant")
        events = self.watch_raw(resource_version=version, timeout_seconds=1)
        self.assertEqual(
            [(e["type"], e["object"]["metadata"]["namespace"]) for e in events],
            [("ADDED", "b"), ("DELETED", "a")],
        )
        self.assertEqual(events[0]["object"]["kind"], "ConfigMap")

    def test_label_selector_turns_relabelling_into_added_and_deleted(self) -> None:
        version = self.list_raw()["metadata"]["resourceVersion"]
        self.server.create(tenant_cm("a", {"routes": []}, labels={}))
        self.server.update(tenant_cm("a", {"routes": []}))
        self.server.update(tenant_cm("a", {"routes": []}, labels={"x": "y"}))
        events = self.watch_raw(
            resource_version=version, timeout_seconds=1, label_selector="tenantgw.io/tenant=true"
        )
        self.assertEqual([e["type"] for e in events], ["ADDED", "DELETED"])

    def test_bookmarks_only_when_asked(self) -> None:
        version = self.list_raw()["metadata"]["resourceVersion"]
        with_bookmarks = self.watch_raw(
            resource_version=version, timeout_seconds=1, allow_watch_bookmarks=True
        )
        self.assertIn("BOOKMARK", {e["type"] for e in with_bookmarks})
        self.assertEqual(self.watch_raw(resource_version=version, timeout_seconds=1), [])

    def test_expired_version_is_410_gone(self) -> None:
        version = self.list_raw()["metadata"]["resourceVersion"]
        self.server.create(namespace("a"))
        self.server.compact()
        (event,) = self.watch_raw(resource_version=version, timeout_seconds=5)
        self.assertEqual(event["type"], "ERROR")
        self.assertEqual((event["object"]["code"], event["object"]["reason"]), (410, "Expired"))

    def test_drop_watches_cuts_open_streams(self) -> None:
        version = self.list_raw()["metadata"]["resourceVersion"]
        outcome: list[str] = []

        def watch() -> None:
            try:
                self.watch_raw(resource_version=version, timeout_seconds=30)
                outcome.append("ended")
            except Exception as e:
                outcome.append(type(e).__name__)

        thread = threading.Thread(target=watch)
        thread.start()
        self.assertTrue(self.server.wait_for_watches(1))
        self.server.drop_watches()
        thread.join(5)
        self.assertFalse(thread.is_alive())
        self.assertEqual(len(outcome), 1)
        self.assertNotEqual(outcome, ["ended"])
