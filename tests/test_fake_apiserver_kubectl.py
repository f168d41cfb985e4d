"""
The test API server accepts a real client: C{kubectl} (discovery, apply,
get -o yaml, get -w, patch of every type, replace with a stale
resourceVersion, delete, get events, describe) and the official
C{kubernetes} client (patches, conflicts, field selectors, Leases), over
real HTTP.  The gateway's own Kubernetes tests stand on this server, so it
must behave as a real one where a real client looks.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from twisted.trial.unittest import TestCase

from tenantgw.testing.fake_apiserver import FakeAPIServer
from tests.test_compile import namespace, tenant_cm

KUBECTL = shutil.which("kubectl")
TIMEOUT = (5, 10)


def ingress_manifest(ns: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "ingressClassName": "tenantgw",
            "rules": [{"host": "shop.example", "http": {"paths": []}}],
        },
    }


def config_map_manifest(ns: str, routes_comment: str) -> str:
    return (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: tenant\n"
        f"  namespace: {ns}\n  labels:\n    tenantgw.io/tenant: 'true'\n"
        f"data:\n  tenant.yaml: |\n    routes: []  # {routes_comment}\n"
    )


class KubectlTests(TestCase):
    """Blocking kubectl runs: the server answers on its own threads."""

    timeout = 60

    def setUp(self) -> None:
        if KUBECTL is None:
            raise AssertionError("kubectl is needed (scripts/test.sh installs kubernetes-client)")
        self.server = FakeAPIServer(bookmark_interval=0.2)
        self.server.start()
        self.addCleanup(self.server.stop)
        self.directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.directory)
        self.kubeconfig = self.server.write_kubeconfig(os.path.join(self.directory, "config"))
        self.server.create(namespace("shop"))

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> Any:
        result = subprocess.run(
            [KUBECTL, "--kubeconfig", self.kubeconfig, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=30,
            # kubectl caches discovery under HOME: one per test, not shared.
            env={**os.environ, "HOME": self.directory},
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    def manifest(self, comment: str) -> str:
        path = os.path.join(self.directory, "tenant.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(config_map_manifest("shop", comment))
        return path

    def test_version_and_discovery(self) -> None:
        version = json.loads(self.kubectl("version", "-o", "json").stdout)
        self.assertEqual(version["serverVersion"]["gitVersion"], "v1.32.0")
        resources = self.kubectl("api-resources", "-o", "name").stdout.split()
        for name in ("configmaps", "secrets", "endpointslices.discovery.k8s.io"):
            self.assertIn(name, resources)
        self.assertIn("leases.coordination.k8s.io", resources)

    def test_apply_get_patch_delete(self) -> None:
        created = self.kubectl("apply", "-f", self.manifest("v1"))
        self.assertIn("configmap/tenant created", created.stdout)
        configured = self.kubectl("apply", "-f", self.manifest("v2"))
        self.assertIn("configmap/tenant configured", configured.stdout)
        got = yaml.safe_load(self.kubectl("get", "cm", "tenant", "-n", "shop", "-o", "yaml").stdout)
        self.assertIn("# v2", got["data"]["tenant.yaml"])
        self.assertEqual(got["metadata"]["generation"], 2)
        self.assertIn(
            "kubectl.kubernetes.io/last-applied-configuration", got["metadata"]["annotations"]
        )
        self.kubectl(
            "patch", "cm", "tenant", "-n", "shop", "--type", "merge", "-p", '{"data":{"a":"1"}}'
        )
        self.kubectl(
            "patch", "cm", "tenant", "-n", "shop", "--type", "json",
            "-p", '[{"op":"add","path":"/data/b","value":"2"},{"op":"remove","path":"/data/a"}]',
        )  # fmt: skip
        self.kubectl("patch", "cm", "tenant", "-n", "shop", "-p", '{"data":{"c":"3"}}')
        stored = self.server.get("ConfigMap", "shop", "tenant")
        assert stored is not None
        self.assertEqual(sorted(stored["data"]), ["b", "c", "tenant.yaml"])
        failed = self.kubectl(
            "patch", "cm", "tenant", "-n", "shop", "--type", "json",
            "-p", '[{"op":"remove","path":"/data/nothing"}]', check=False,
        )  # fmt: skip
        self.assertNotEqual(failed.returncode, 0)
        self.assertIn("The request is invalid", failed.stderr)  # a 422 Status, read as such
        self.assertIn(
            'configmap "tenant" deleted',
            self.kubectl("delete", "cm", "tenant", "-n", "shop").stdout,
        )
        self.assertIsNone(self.server.get("ConfigMap", "shop", "tenant"))
        missing = self.kubectl("get", "cm", "tenant", "-n", "shop", check=False)
        self.assertIn('Error from server (NotFound): configmaps "tenant" not found', missing.stderr)

    def test_replace_with_a_stale_resource_version_is_a_conflict(self) -> None:
        self.kubectl("apply", "-f", self.manifest("v1"))
        stale = self.kubectl("get", "cm", "tenant", "-n", "shop", "-o", "json").stdout
        self.kubectl(
            "patch", "cm", "tenant", "-n", "shop", "--type", "merge", "-p", '{"data":{"a":"1"}}'
        )
        replaced = self.kubectl("replace", "-f", "-", stdin=stale, check=False)
        self.assertNotEqual(replaced.returncode, 0)
        self.assertIn("Error from server (Conflict)", replaced.stderr)
        stored = self.server.get("ConfigMap", "shop", "tenant")
        assert stored is not None
        self.assertEqual(stored["data"]["a"], "1")  # the stale write lost nothing

    def test_get_watch_sees_a_change(self) -> None:
        self.kubectl("apply", "-f", self.manifest("v1"))
        watching = subprocess.Popen(
            [KUBECTL, "--kubeconfig", self.kubeconfig, "get", "cm", "tenant", "-n", "shop",
             "-w", "-o", "jsonpath={.data.tenant\\.yaml}{\"\\n\"}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "HOME": self.directory},
        )  # fmt: skip
        self.addCleanup(watching.wait, 10)
        self.addCleanup(watching.kill)
        assert watching.stdout is not None
        output = watching.stdout

        def next_line() -> str:
            return next(line for line in output if line.strip())

        self.assertIn("# v1", next_line())
        self.assertTrue(self.server.wait_for_watches(1, timeout=10))
        self.kubectl("apply", "-f", self.manifest("v2"))
        self.assertIn("# v2", next_line())
        watch_requests = [path for _, path in self.server.requests if "watch=" in path]
        self.assertTrue(any("fieldSelector=metadata.name%3Dtenant" in p for p in watch_requests))

    def test_get_events_and_describe_show_the_involved_object(self) -> None:
        self.kubectl("apply", "-f", self.manifest("v1"))
        stored = self.server.get("ConfigMap", "shop", "tenant")
        assert stored is not None
        for name, uid in (("tenant.a", stored["metadata"]["uid"]), ("other.b", "another-uid")):
            self.server.create(
                {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"name": name, "namespace": "shop"},
                    "involvedObject": {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "namespace": "shop",
                        "name": "tenant" if name.startswith("tenant") else "other",
                        "uid": uid,
                    },
                    "reason": "Rejected" if name.startswith("tenant") else "Unrelated",
                    "message": "routes[0].backend: no such Service",
                    "type": "Warning",
                    "count": 3,
                    "firstTimestamp": "2024-01-01T00:00:00Z",
                    "lastTimestamp": "2024-01-01T00:01:00Z",
                    "source": {"component": "tenantgw"},
                }
            )
        # No server-side Table here: custom columns, as kubectl prints them.
        events = self.kubectl(
            "get", "events", "-n", "shop", "-o", "custom-columns=REASON:.reason,COUNT:.count"
        ).stdout.split()
        self.assertEqual(events, ["REASON", "COUNT", "Unrelated", "3", "Rejected", "3"])
        described = self.kubectl("describe", "cm", "tenant", "-n", "shop").stdout
        self.assertIn("Warning  Rejected", described)
        self.assertIn("routes[0].backend: no such Service", described)
        self.assertNotIn("Unrelated", described)  # the field selector on involvedObject

    def test_leases(self) -> None:
        lease = (
            "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: tenantgw\n"
            "  namespace: shop\nspec:\n  holderIdentity: a\n  leaseDurationSeconds: 15\n"
        )
        self.kubectl("apply", "-f", "-", stdin=lease)
        got = self.kubectl(
            "get", "lease", "tenantgw", "-n", "shop", "-o", "jsonpath={.spec.holderIdentity}"
        )
        self.assertEqual(got.stdout, "a")

    def test_status_subresource_and_the_address_column(self) -> None:
        self.server.create(ingress_manifest("shop", "web"))
        listed = self.kubectl("get", "ingress", "-n", "shop", "-o", "wide").stdout
        self.assertEqual(listed.split()[:5], ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS"])
        before = self.server.get("Ingress", "shop", "web")
        assert before is not None
        published = {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}]}}}
        self.kubectl(
            "patch", "ingress", "web", "-n", "shop", "--subresource=status",
            "--type=merge", "-p", json.dumps(published),
        )  # fmt: skip
        rows = self.kubectl("get", "ingress", "-n", "shop", "-o", "wide").stdout.splitlines()
        header, row = rows[0].split(), rows[1].split()
        self.assertEqual(row[header.index("ADDRESS")], "192.0.2.7")
        got = self.kubectl(
            "get", "ingress", "web", "-n", "shop", "--subresource=status",
            "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}",
        )  # fmt: skip
        self.assertEqual(got.stdout, "192.0.2.7")
        after = self.server.get("Ingress", "shop", "web")
        assert after is not None
        self.assertEqual(after["metadata"]["generation"], before["metadata"]["generation"])
        self.assertNotEqual(
            after["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"]
        )
        # A patch of the object itself leaves the status alone.
        self.kubectl(
            "patch", "ingress", "web", "-n", "shop", "--type=merge",
            "-p", json.dumps({"status": {"loadBalancer": {}}, "metadata": {"labels": {"x": "1"}}}),
        )  # fmt: skip
        stored = self.server.get("Ingress", "shop", "web")
        assert stored is not None
        self.assertEqual(stored["status"], published["status"])
        self.assertEqual(stored["metadata"]["labels"], {"x": "1"})

    def test_api_resources_list_the_status_subresources(self) -> None:
        raw = self.kubectl("get", "--raw", "/apis/gateway.networking.k8s.io/v1").stdout
        names = {r["name"] for r in json.loads(raw)["resources"]}
        self.assertLessEqual(
            {"httproutes/status", "gateways/status", "gatewayclasses/status"}, names
        )
        self.assertNotIn("configmaps/status", self.kubectl("get", "--raw", "/api/v1").stdout)


class OfficialClientTests(TestCase):
    """The official client, over HTTP, where kubectl does not reach."""

    def setUp(self) -> None:
        self.server = FakeAPIServer(bookmark_interval=0.1)
        self.server.start()
        self.addCleanup(self.server.stop)
        configuration = client.Configuration()
        configuration.host = self.server.url
        self.api_client = client.ApiClient(configuration)
        self.core = client.CoreV1Api(self.api_client)
        self.server.create(namespace("a"))
        self.server.create(tenant_cm("a", {"routes": []}))

    def test_patch_types(self) -> None:
        self.core.patch_namespaced_config_map(
            "tenant", "a", {"data": {"x": "1"}}, _request_timeout=TIMEOUT
        )  # the client sends a JSON object as a strategic merge patch
        self.core.patch_namespaced_config_map(
            "tenant", "a", [{"op": "replace", "path": "/data/x", "value": "2"}],
            _request_timeout=TIMEOUT,
        )  # fmt: skip
        stored = self.server.get("ConfigMap", "a", "tenant")
        assert stored is not None
        self.assertEqual(stored["data"]["x"], "2")
        error = self.assertRaises(
            ApiException,
            self.core.patch_namespaced_config_map,
            "nope", "a", {"data": {}}, _request_timeout=TIMEOUT,
        )  # fmt: skip
        self.assertEqual(error.status, 404)
        self.assertEqual(json.loads(error.body)["kind"], "Status")

    def test_strategic_merge_patch_merges_named_lists(self) -> None:
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "a"},
            "spec": {"ports": [{"name": "http", "port": 80}, {"name": "admin", "port": 81}]},
        }
        self.server.create(service)
        self.core.patch_namespaced_service(
            "web", "a",
            {"spec": {"ports": [{"name": "http", "port": 8080}, {"name": "admin", "$patch": "delete"}]}},
            _request_timeout=TIMEOUT,
        )  # fmt: skip
        stored = self.server.get("Service", "a", "web")
        assert stored is not None
        self.assertEqual(stored["spec"]["ports"], [{"name": "http", "port": 8080}])
        self.assertEqual(stored["metadata"]["generation"], 2)

    def test_stale_replace_is_409_and_generation_counts_spec_changes(self) -> None:
        current = self.core.read_namespaced_config_map("tenant", "a", _request_timeout=TIMEOUT)
        self.assertEqual(current.metadata.generation, 1)
        current.metadata.labels = {**current.metadata.labels, "x": "y"}
        relabelled = self.core.replace_namespaced_config_map("tenant", "a", current)
        self.assertEqual(relabelled.metadata.generation, 1)  # metadata only
        current.data = {"tenant.yaml": "routes: []  # changed"}
        error = self.assertRaises(
            ApiException, self.core.replace_namespaced_config_map, "tenant", "a", current
        )
        self.assertEqual(error.status, 409)
        self.assertEqual(json.loads(error.body)["reason"], "Conflict")
        current.metadata.resource_version = relabelled.metadata.resource_version
        replaced = self.core.replace_namespaced_config_map("tenant", "a", current)
        self.assertEqual(replaced.metadata.generation, 2)

    def test_invalid_name_is_422(self) -> None:
        error = self.assertRaises(
            ApiException,
            self.core.create_namespaced_config_map,
            "a", {"metadata": {"name": "Not_Valid"}}, _request_timeout=TIMEOUT,
        )  # fmt: skip
        self.assertEqual(error.status, 422)
        self.assertEqual(json.loads(error.body)["reason"], "Invalid")

    def test_field_selectors_on_lists_and_watches(self) -> None:
        self.server.create(namespace("b"))
        self.server.create(tenant_cm("b", {"routes": []}, name="other"))
        listed = self.core.list_config_map_for_all_namespaces(
            field_selector="metadata.name=other", _request_timeout=TIMEOUT
        )
        self.assertEqual([i.metadata.namespace for i in listed.items], ["b"])
        listed = self.core.list_config_map_for_all_namespaces(
            field_selector="metadata.namespace!=b", _request_timeout=TIMEOUT
        )
        self.assertEqual([i.metadata.name for i in listed.items], ["tenant"])
        version = listed.metadata.resource_version
        self.server.update(tenant_cm("b", {"routes": []}, name="other", labels={"z": "1"}))
        self.server.update(tenant_cm("a", {"routes": []}, labels={"z": "1"}))
        response = self.core.list_config_map_for_all_namespaces(
            watch=True, resource_version=version, field_selector="metadata.name=tenant",
            timeout_seconds=1, _preload_content=False, _request_timeout=TIMEOUT,
        )  # fmt: skip
        events = [json.loads(line) for line in response.data.splitlines() if line.strip()]
        self.assertEqual(
            [(e["type"], e["object"]["metadata"]["namespace"]) for e in events],
            [("MODIFIED", "a")],
        )

    def test_continue_with_a_resource_version_is_refused(self) -> None:
        for i in range(3):
            self.server.create(tenant_cm("a", {"routes": []}, name=f"cm{i}"))
        first = self.core.list_namespaced_config_map(
            "a", limit=1, resource_version="0", _request_timeout=TIMEOUT
        )
        token = first.metadata._continue
        self.assertTrue(token)
        error = self.assertRaises(
            ApiException,
            self.core.list_namespaced_config_map,
            "a", limit=1, _continue=token, resource_version="0", _request_timeout=TIMEOUT,
        )  # fmt: skip
        self.assertEqual(error.status, 400)

    def test_leases_through_the_coordination_api(self) -> None:
        leases = client.CoordinationV1Api(self.api_client)
        body = {
            "metadata": {"name": "tenantgw", "namespace": "a"},
            "spec": {"holderIdentity": "one", "leaseDurationSeconds": 15},
        }
        created = leases.create_namespaced_lease("a", body, _request_timeout=TIMEOUT)
        self.assertEqual(created.spec.holder_identity, "one")
        created.spec.holder_identity = "two"
        leases.replace_namespaced_lease("tenantgw", "a", created, _request_timeout=TIMEOUT)
        created.spec.holder_identity = "three"  # from the same, now stale, read
        error = self.assertRaises(
            ApiException, leases.replace_namespaced_lease, "tenantgw", "a", created
        )
        self.assertEqual(error.status, 409)

    def test_forbidden_is_a_403_status(self) -> None:
        self.server.forbid("Secret", "list")
        error = self.assertRaises(
            ApiException, self.core.list_secret_for_all_namespaces, _request_timeout=TIMEOUT
        )
        self.assertEqual(error.status, 403)
        self.assertEqual(json.loads(error.body)["reason"], "Forbidden")
        # Forbidding list leaves get allowed.
        error = self.assertRaises(
            ApiException, self.core.read_namespaced_secret, "x", "a", _request_timeout=TIMEOUT
        )
        self.assertEqual(error.status, 404)

    def test_status_subresource_through_the_official_client(self) -> None:
        networking = client.NetworkingV1Api(self.api_client)
        self.server.create(ingress_manifest("a", "web"))
        current = networking.read_namespaced_ingress_status("web", "a", _request_timeout=TIMEOUT)
        self.assertEqual(current.metadata.generation, 1)
        current.status = client.V1IngressStatus(
            load_balancer=client.V1IngressLoadBalancerStatus(
                ingress=[client.V1IngressLoadBalancerIngress(hostname="lb.example")]
            )
        )
        current.spec.rules[0].host = "ignored.example"  # a status write changes only .status
        written = networking.replace_namespaced_ingress_status(
            "web", "a", current, _request_timeout=TIMEOUT
        )
        self.assertEqual(written.status.load_balancer.ingress[0].hostname, "lb.example")
        self.assertEqual(written.spec.rules[0].host, "shop.example")
        self.assertEqual(written.metadata.generation, 1)
        # The same (now stale) read again: 409, and nothing changes.
        current.status.load_balancer.ingress[0].hostname = "other.example"
        error = self.assertRaises(
            ApiException,
            networking.replace_namespaced_ingress_status,
            "web", "a", current, _request_timeout=TIMEOUT,
        )  # fmt: skip
        self.assertEqual(error.status, 409)
        patched = networking.patch_namespaced_ingress_status(
            "web", "a", {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}},
            _request_timeout=TIMEOUT,
        )  # fmt: skip
        self.assertEqual(patched.status.load_balancer.ingress[0].ip, "192.0.2.1")
        # Writes to the object ignore .status; spec changes count a generation.
        patched.spec.rules[0].host = "new.example"
        patched.status.load_balancer.ingress = []
        replaced = networking.replace_namespaced_ingress(
            "web", "a", patched, _request_timeout=TIMEOUT
        )
        self.assertEqual(replaced.metadata.generation, 2)
        self.assertEqual(replaced.status.load_balancer.ingress[0].ip, "192.0.2.1")

    def test_custom_object_status_writes_fire_a_watch_event(self) -> None:
        custom = client.CustomObjectsApi(self.api_client)
        route = {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": "a"},
            "spec": {"parentRefs": [{"name": "gw"}]},
            "status": {"parents": [{"controllerName": "ignored/on-create"}]},
        }
        created = self.server.create(route)
        self.assertNotIn("status", created)  # a create drops .status
        version = created["metadata"]["resourceVersion"]
        body = {"parents": [{"controllerName": "example.com/x", "parentRef": {"name": "gw"}}]}
        written = custom.patch_namespaced_custom_object_status(
            "gateway.networking.k8s.io", "v1", "a", "httproutes", "r", {"status": body},
            _request_timeout=TIMEOUT,
        )  # fmt: skip
        self.assertEqual(written["status"], body)
        self.assertEqual(written["metadata"]["generation"], 1)
        response = client.ApiClient.call_api(
            self.api_client,
            "GET",
            f"{self.server.url}/apis/gateway.networking.k8s.io/v1/httproutes"
            f"?watch=true&resourceVersion={version}&timeoutSeconds=1",
        )
        events = [json.loads(line) for line in response.read().splitlines() if line.strip()]
        self.assertEqual([e["type"] for e in events], ["MODIFIED"])
        self.assertEqual(events[0]["object"]["status"], body)
        stale = {**written, "metadata": {**written["metadata"], "resourceVersion": version}}
        error = self.assertRaises(
            ApiException,
            custom.replace_namespaced_custom_object_status,
            "gateway.networking.k8s.io", "v1", "a", "httproutes", "r", stale,
            _request_timeout=TIMEOUT,
        )  # fmt: skip
        self.assertEqual(error.status, 409)
        self.server.forbid_status("HTTPRoute", "update")
        error = self.assertRaises(
            ApiException,
            custom.replace_namespaced_custom_object_status,
            "gateway.networking.k8s.io", "v1", "a", "httproutes", "r", written,
            _request_timeout=TIMEOUT,
        )  # fmt: skip
        self.assertEqual(error.status, 403)
        self.assertIn('"httproutes/status"', json.loads(error.body)["message"])
        # The object itself stays writable: RBAC on the subresource only.
        custom.patch_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", "a", "httproutes", "r",
            {"metadata": {"labels": {"x": "1"}}}, _request_timeout=TIMEOUT,
        )  # fmt: skip
        self.assertEqual(custom.get_namespaced_custom_object_status(
            "gateway.networking.k8s.io", "v1", "a", "httproutes", "r", _request_timeout=TIMEOUT,
        )["status"], body)  # fmt: skip

    def test_status_of_a_kind_without_the_subresource_is_404(self) -> None:
        response = self.api_client.call_api(
            "GET", f"{self.server.url}/api/v1/namespaces/a/configmaps/tenant/status"
        )
        self.assertEqual(response.status, 404)
        self.assertEqual(json.loads(response.read())["kind"], "Status")


class WireTests(TestCase):
    """Raw sockets: what a client library would hide."""

    def setUp(self) -> None:
        self.server = FakeAPIServer()
        self.server.start()
        self.addCleanup(self.server.stop)
        self.server.create(namespace("a"))
        port = int(self.server.url.rsplit(":", 1)[1])
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.addCleanup(self.sock.close)

    def read_responses(self, count: int) -> list[tuple[int, Any]]:
        """C{count} Content-Length responses from the keep-alive connection."""
        buffer = b""
        responses = []
        deadline = time.monotonic() + 10
        while len(responses) < count and time.monotonic() < deadline:
            if b"\r\n\r\n" in buffer:
                head, rest = buffer.split(b"\r\n\r\n", 1)
                length = int(
                    next(
                        line.split(b":", 1)[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    )
                )
                if len(rest) >= length:
                    responses.append((int(head.split(b" ")[1]), json.loads(rest[:length])))
                    buffer = rest[length:]
                    continue
            buffer += self.sock.recv(65536)
        return responses

    def test_chunked_body_then_a_second_request_on_the_same_connection(self) -> None:
        body = json.dumps(tenant_cm("a", {"routes": []})).encode()
        chunked = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (10, body[:10], len(body) - 10, body[10:])
        self.sock.sendall(
            b"POST /api/v1/namespaces/a/configmaps HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunked
            + b"GET /api/v1/namespaces/a/configmaps/tenant HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        (created, first), (got, second) = self.read_responses(2)
        self.assertEqual((created, got), (201, 200))
        self.assertEqual(first["metadata"]["uid"], second["metadata"]["uid"])

    def test_content_length_body_and_unknown_path_as_status(self) -> None:
        body = json.dumps(namespace("b")).encode()
        self.sock.sendall(
            b"POST /api/v1/namespaces HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
            b"GET /api/v1/nothing HTTP/1.1\r\nHost: x\r\n\r\n" % (len(body), body)
        )
        (created, _), (missing, status) = self.read_responses(2)
        self.assertEqual((created, missing), (201, 404))
        self.assertEqual((status["kind"], status["code"]), ("Status", 404))

    def test_no_nagle_on_accepted_connections(self) -> None:
        self.sock.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(self.read_responses(1)[0][0], 200)
        self.assertEqual(self.server.nodelay_connections, self.server.accepted_connections)
