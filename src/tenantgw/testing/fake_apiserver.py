"""
A small Kubernetes API server for tests, spoken to over real HTTP by the
official C{kubernetes} client and by C{kubectl}, unchanged.

It serves the kinds tenantgw reads or writes (Namespaces, ConfigMaps,
Secrets, Services, EndpointSlices, Events, Leases), with the semantics a
watcher, a leader elector and C{kubectl} depend on, as the real API server
has them:

  - B{discovery}: C{/version}, C{/api}, C{/apis}, and the resource list of
    every group version served (C{/api/v1}, C{/apis/discovery.k8s.io/v1},
    C{/apis/coordination.k8s.io/v1}), in the legacy (unaggregated) form
    every client falls back to.  C{/openapi/*} is 404, so C{kubectl}
    validates nothing client-side.
  - B{lists} carry the collection's C{metadata.resourceVersion}; items carry
    no C{kind}/C{apiVersion} (the real server omits them, only kubectl adds
    them); C{labelSelector} (kubectl grammar), C{fieldSelector} on any
    dotted field (C{metadata.name}, C{metadata.namespace},
    C{involvedObject.uid}...) with C{=}, C{==} and C{!=}; C{limit} and
    C{continue} (with C{resourceVersion} refused alongside C{continue}, as
    the real server does).  A list from a resourceVersion older than the
    last L{FakeAPIServer.compact} is 410 Expired; C{resourceVersion=0} is
    served whole, ignoring C{limit}, when C{cache_ignores_limit} is set (as
    the watch cache of older API servers does).
  - B{watches} (C{?watch=true} or C{1}) stream one JSON event per line in
    an HTTP/1.1 chunked response: C{ADDED}, C{MODIFIED}, C{DELETED}, and
    C{BOOKMARK} every C{bookmark_interval} seconds when
    C{allowWatchBookmarks=true}.  A watch from resourceVersion N replays
    every change after N; from no resourceVersion (or "0") it first sends
    the current objects as ADDED.  With a selector, an object that stops
    matching arrives as DELETED and one that starts matching as ADDED.
    C{timeoutSeconds} ends it.
  - B{410 Gone}: after L{FakeAPIServer.compact}, a watch from an older
    resourceVersion gets an C{ERROR} event whose object is a C{Status} with
    code 410 and reason C{Expired}, then the stream ends.
  - B{writes}: POST (create; 409 AlreadyExists), PUT (replace; 404 when
    absent, 409 Conflict when the body's C{metadata.resourceVersion} is
    not the stored one), PATCH (C{application/merge-patch+json},
    C{application/strategic-merge-patch+json} with lists of named items
    merged by name, C{application/json-patch+json}), DELETE; request
    bodies with C{Content-Length} or chunked.  Each write takes the next
    resourceVersion, sets C{uid}, C{creationTimestamp} (kept when the test
    provides one, so tests can decide which object is older) and
    C{metadata.generation} (1, then +1 whenever anything outside
    C{metadata} and C{status} changes).  C{metadata.generateName} names a
    created object; an invalid name is 422 Invalid.
  - B{the status subresource} of Ingresses, HTTPRoutes, Gateways and
    GatewayClasses (L{STATUS_SUBRESOURCE}): GET, PUT and PATCH on
    C{.../NAME/status} change nothing but C{.status} (resourceVersion moves,
    generation does not, watchers see MODIFIED; a stale resourceVersion is
    409); writes to the object itself keep the stored status, a create
    drops it.  Discovery lists C{ingresses/status} and the like, and
    C{kubectl get ingress} gets the server-side Table with its ADDRESS
    column.  L{FakeAPIServer.write_status} plays another controller.
  - B{errors} are C{Status} objects in JSON (404, 405, 409, 422, 400).
  - B{the wire}: TCP_NODELAY, and every response (or watch event) written
    in one C{send}, so keep-alive requests cost no delayed-ACK wait.
  - L{FakeAPIServer.drop_watches} cuts every open watch connection, as a
    restarting API server or a load balancer would; C{fail_paths} answers
    503 under the given path prefixes, for an outage; C{forbid} answers
    403 Forbidden for a resource (and optionally a verb); C{stall_watches}
    makes watches go silent while keeping their connection open (a
    half-open connection, as the client sees it); C{wait_for_watches}
    waits (bounded) until watches are open; C{atomically()} makes several
    writes one step for watchers; C{requests} records every request line.

What it does not do: authentication, server-side apply, admission, or any
kind not listed in L{RESOURCES}.  Continue tokens page over the current
objects, not a frozen snapshot of the first page's resourceVersion.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tenantgw.compile.selector import LabelSelector, SelectorError
from tenantgw.sources.kinds import KINDS

# plural -> (group path prefix, apiVersion, kind, namespaced)
# The kinds the gateway reads come from the one list (tenantgw.sources.kinds);
# Events and Leases are what it writes.
RESOURCES: dict[str, tuple[str, str, str, bool]] = {
    **{
        k.plural: (k.collection_path.rsplit("/", 1)[0], k.api_version, k.kind, k.namespaced)
        for k in KINDS
    },
    "events": ("/api/v1", "v1", "Event", True),
    "leases": ("/apis/coordination.k8s.io/v1", "coordination.k8s.io/v1", "Lease", True),
}
# Kinds with a C{status} subresource: a write to the object leaves its
# status as it was, and C{.../NAME/status} writes nothing but the status.
# (The kinds tenantgw writes statuses of, from the one list.)
STATUS_SUBRESOURCE = frozenset(k.plural for k in KINDS if k.status_verbs)
KIND_TO_PLURAL = {kind: plural for plural, (_, _, kind, _) in RESOURCES.items()}
SHORT_NAMES = {
    "namespaces": ["ns"],
    "configmaps": ["cm"],
    "services": ["svc"],
    "events": ["ev"],
}
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-12-11T00:00:00Z",
    "goVersion": "go1.23.4",
    "compiler": "gc",
    "platform": "linux/amd64",
}
# RFC 1123 subdomain, as the API server validates most names.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

Key = tuple[str, str]  # (namespace or "", name)


class APIError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message

    def status(self) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


class FieldSelector:
    """C{a.b=x,c!=y}: dotted paths into the object, compared as strings."""

    def __init__(self, terms: list[tuple[list[str], bool, str]]) -> None:
        self.terms = terms

    @classmethod
    def parse(cls, text: str) -> FieldSelector:
        terms = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            match = re.fullmatch(r"([A-Za-z0-9_.]+)\s*(!=|==|=)\s*(.*)", part)
            if match is None:
                raise APIError(400, "BadRequest", f"fieldSelector: invalid term {part!r}")
            path, operator, value = match.groups()
            terms.append((path.split("."), operator == "!=", value))
        return cls(terms)

    def matches(self, obj: dict[str, Any]) -> bool:
        for path, negated, value in self.terms:
            found: Any = obj
            for step in path:
                found = found.get(step) if isinstance(found, dict) else None
            text = "" if found is None else str(found)
            if (text == value) == negated:
                return False
        return True


class _Watch:
    """One open watch: the handler thread waits on C{wakeup} for new events."""

    def __init__(self, connection: socket.socket) -> None:
        self.connection = connection
        self.wakeup = threading.Condition()
        self.dropped = False


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class FakeAPIServer:
    """
    Start with L{start}, point a client at L{url} (or L{write_kubeconfig}),
    drive changes with L{create}/L{update}/L{delete}, and L{stop} at the end.
    """

    def __init__(self, bookmark_interval: float = 0.5, port: int = 0) -> None:
        self.bookmark_interval = bookmark_interval
        self._lock = threading.Condition()
        self._objects: dict[str, dict[Key, dict[str, Any]]] = {p: {} for p in RESOURCES}
        # (resourceVersion, plural, type, object, previous object or None)
        self._log: list[tuple[int, str, str, dict[str, Any], dict[str, Any] | None]] = []
        self._version = 1
        self._compacted = 0
        self._watches: set[_Watch] = set()
        self.requests: list[tuple[str, str]] = []  # (method, path?query), for assertions
        self.fail_paths: set[str] = set()  # path prefixes answered 503, to play an outage
        # (plural, verb or None for every verb) answered 403, to play missing RBAC
        self.forbidden: set[tuple[str, str | None]] = set()
        # Plurals answered 404 (a custom resource whose CRD is not installed).
        self.not_served: set[str] = set()
        self.accepted_connections = 0
        self.nodelay_connections = 0  # read back from the socket, for a test
        self.stall_watches = False  # watches send nothing, as on a half-open connection
        self.cache_ignores_limit = False  # resourceVersion=0 lists come unpaged
        self._stopping = False
        server = self

        class Handler(_Handler):
            api = server

        self._http = _Server(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    # -- lifecycle ---------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        self.drop_watches()
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(5)

    def write_kubeconfig(self, path: str, context: str = "fake") -> str:
        """A kubeconfig naming this server, as C{load_kube_config} and kubectl read it."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "fake-token"}}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "tester"}}],
            "current-context": context,
        }
        with open(path, "w", encoding="utf-8") as f:
            json.dump(config, f)
        return path

    def uninstall(self, kind: str) -> None:
        """404 for C{kind}, as an API server without that CRD answers."""
        self.not_served.add(KIND_TO_PLURAL[kind])

    def forbid(self, kind: str, verb: str | None = None) -> None:
        """403 Forbidden for C{kind} (every verb, or only C{verb}: get, list, watch...)."""
        self.forbidden.add((KIND_TO_PLURAL[kind], verb))

    def forbid_status(self, kind: str, verb: str | None = None) -> None:
        """403 Forbidden for C{kind}'s status subresource only (RBAC on C{ingresses/status})."""
        self.forbidden.add((f"{KIND_TO_PLURAL[kind]}/status", verb))

    # -- what tests call ---------------------------------------------------

    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._version

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        plural = KIND_TO_PLURAL[obj["kind"]]
        return self._write("create", plural, obj["metadata"].get("namespace", ""), obj)

    def update(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Replace, whatever resourceVersion C{obj} carries (tests mean last-writer-wins)."""
        plural = KIND_TO_PLURAL[obj["kind"]]
        obj = copy.deepcopy(obj)
        obj.get("metadata", {}).pop("resourceVersion", None)
        return self._write("update", plural, obj["metadata"].get("namespace", ""), obj)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create, or update when it exists (what C{kubectl apply} amounts to here)."""
        plural = KIND_TO_PLURAL[obj["kind"]]
        key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        with self._lock:
            exists = key in self._objects[plural]
        return self.update(obj) if exists else self.create(obj)

    def delete(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return self._delete(KIND_TO_PLURAL[kind], namespace, name)

    def write_status(self, kind: str, namespace: str, name: str, status: Any) -> dict[str, Any]:
        """Sets C{.status} as another controller would, through the subresource."""
        plural = KIND_TO_PLURAL[kind]
        body = {"metadata": {"name": name}, "status": status}
        return self._write("update", plural, namespace, body, subresource="status")

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            obj = self._objects[KIND_TO_PLURAL[kind]].get((namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def objects(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(o) for o in self._objects[KIND_TO_PLURAL[kind]].values()]

    def atomically(self) -> threading.Condition:
        """
        C{with server.atomically(): ...}: watches see the writes inside as one
        step, e.g. a delete followed by L{compact}, which is how a watcher
        that was away misses a deletion and must learn of it from a re-list.
        """
        return self._lock

    def compact(self) -> None:
        """Forget the change history, so older resourceVersions are 410 Gone."""
        with self._lock:
            self._compacted = self._version
            self._log.clear()

    def drop_watches(self) -> None:
        """Cut every open watch connection mid-stream."""
        with self._lock:
            watches = list(self._watches)
        for watch in watches:
            watch.dropped = True
            with contextlib.suppress(OSError):
                watch.connection.shutdown(socket.SHUT_RDWR)
        with self._lock:
            self._lock.notify_all()

    def open_watches(self) -> int:
        with self._lock:
            return len(self._watches)

    def wait_for_watches(self, count: int, timeout: float = 5.0) -> bool:
        """Blocks until at least C{count} watches are open; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self._watches) >= count, timeout)

    def requests_touching(self, text: str) -> list[tuple[str, str]]:
        """The recorded requests whose path or query mentions C{text}."""
        return [r for r in list(self.requests) if text in r[1]]

    # -- the store ---------------------------------------------------------

    def _write(
        self,
        verb: str,
        plural: str,
        namespace: str,
        body: dict[str, Any],
        subresource: str | None = None,
    ) -> dict[str, Any]:
        _, api_version, kind, namespaced = RESOURCES[plural]
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise APIError(422, "Invalid", "metadata: must be an object")
        if subresource is not None and plural not in STATUS_SUBRESOURCE:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        name = meta.get("name")
        if not name and verb == "create" and meta.get("generateName"):
            name = meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if not isinstance(name, str) or not name:
            raise APIError(422, "Invalid", f"{kind} is invalid: metadata.name: Required value")
        if len(name) > 253 or not _NAME.match(name):
            raise APIError(
                422,
                "Invalid",
                f'{kind} "{name}" is invalid: metadata.name: Invalid value: "{name}":'
                " a lowercase RFC 1123 subdomain must consist of lower case alphanumeric"
                " characters, '-' or '.'",
            )
        if namespaced:
            namespace = namespace or meta.get("namespace") or "default"
            if meta.get("namespace") not in (None, "", namespace):
                raise APIError(
                    400, "BadRequest", "the namespace of the object does not match the URL"
                )
            meta["namespace"] = namespace
        else:
            namespace = ""
            meta.pop("namespace", None)
        obj["kind"], obj["apiVersion"] = kind, api_version
        key = (namespace, name)
        with self._lock:
            store = self._objects[plural]
            previous = store.get(key)
            if verb == "create":
                if previous is not None:
                    raise APIError(409, "AlreadyExists", f'{plural} "{name}" already exists')
                if plural in STATUS_SUBRESOURCE:
                    obj.pop("status", None)  # set only through the subresource
                meta["uid"] = str(uuid.uuid4())
                meta.setdefault(
                    "creationTimestamp",
                    datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                )
                meta["generation"] = 1
                event_type = "ADDED"
            else:
                if previous is None:
                    raise APIError(404, "NotFound", f'{plural} "{name}" not found')
                asked = meta.get("resourceVersion")
                current = previous["metadata"]["resourceVersion"]
                if asked not in (None, "") and str(asked) != current:
                    raise APIError(
                        409,
                        "Conflict",
                        f'Operation cannot be fulfilled on {plural} "{name}": the object has'
                        " been modified; please apply your changes to the latest version"
                        " and try again",
                    )
                if subresource == "status":
                    # Only the status changes: spec and metadata stay stored.
                    status = obj.get("status")
                    obj = copy.deepcopy(previous)
                    meta = obj["metadata"]
                    if status is None:
                        obj.pop("status", None)
                    else:
                        obj["status"] = status
                elif plural in STATUS_SUBRESOURCE:
                    obj.pop("status", None)
                    if "status" in previous:
                        obj["status"] = copy.deepcopy(previous["status"])
                meta["uid"] = previous["metadata"]["uid"]
                meta["creationTimestamp"] = previous["metadata"]["creationTimestamp"]
                generation = int(previous["metadata"].get("generation") or 1)
                if _spec_of(obj) != _spec_of(previous):
                    generation += 1
                meta["generation"] = generation
                event_type = "MODIFIED"
            self._version += 1
            meta["resourceVersion"] = str(self._version)
            store[key] = obj
            self._log.append((self._version, plural, event_type, obj, previous))
            self._lock.notify_all()
            return copy.deepcopy(obj)

    def _patch(
        self,
        plural: str,
        namespace: str,
        name: str,
        content_type: str,
        patch: Any,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        key = (namespace if RESOURCES[plural][3] else "", name)
        with self._lock:  # re-entrant use below: Condition wraps an RLock
            current = self._objects[plural].get(key)
            if current is None:
                raise APIError(404, "NotFound", f'{plural} "{name}" not found')
            if content_type == "application/json-patch+json":
                patched = json_patch(current, patch)
            elif content_type == "application/merge-patch+json":
                patched = merge_patch(current, patch)
            elif content_type == "application/strategic-merge-patch+json":
                patched = strategic_merge_patch(current, patch)
            else:
                raise APIError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown"
                    f" format - accepted media types include: application/json-patch+json,"
                    f" application/merge-patch+json, application/strategic-merge-patch+json"
                    f" (not {content_type!r})",
                )
            if not isinstance(patched, dict):
                raise APIError(422, "Invalid", "the patched object is not an object")
            meta = patched.setdefault("metadata", {})
            if meta.get("name") != name:
                raise APIError(422, "Invalid", "metadata.name: field is immutable")
            return self._write("update", plural, namespace, patched, subresource)

    def _delete(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        key = (namespace if RESOURCES[plural][3] else "", name)
        with self._lock:
            obj = self._objects[plural].pop(key, None)
            if obj is None:
                raise APIError(404, "NotFound", f'{plural} "{name}" not found')
            self._version += 1
            gone = copy.deepcopy(obj)
            gone["metadata"]["resourceVersion"] = str(self._version)
            self._log.append((self._version, plural, "DELETED", gone, obj))
            self._lock.notify_all()
            return copy.deepcopy(gone)

    def _list(
        self,
        plural: str,
        namespace: str | None,
        selector: LabelSelector,
        fields: FieldSelector,
        limit: int,
        start: int,
    ) -> dict[str, Any]:
        _, api_version, kind, _ = RESOURCES[plural]
        with self._lock:
            keys = sorted(
                k
                for k, o in self._objects[plural].items()
                if (namespace is None or k[0] == namespace)
                and _matches(selector, o)
                and fields.matches(o)
            )
            page = keys[start : start + limit] if limit else keys[start:]
            items = []
            for key in page:
                item = copy.deepcopy(self._objects[plural][key])
                item.pop("kind", None)
                item.pop("apiVersion", None)
                items.append(item)
            meta: dict[str, Any] = {"resourceVersion": str(self._version)}
            if limit and start + limit < len(keys):
                token = json.dumps({"start": start + limit}).encode()
                meta["continue"] = base64.urlsafe_b64encode(token).decode()
                meta["remainingItemCount"] = len(keys) - start - limit
        return {"kind": f"{kind}List", "apiVersion": api_version, "metadata": meta, "items": items}

    def _watch_events(
        self,
        watch: _Watch,
        plural: str,
        namespace: str | None,
        selector: LabelSelector,
        fields: FieldSelector,
        since: int | None,
        bookmarks: bool,
        deadline: float,
    ) -> Iterator[dict[str, Any]]:
        """Every event a watch should see, in order, until deadline, drop or stop."""
        _, api_version, kind, _ = RESOURCES[plural]

        def visible(obj: dict[str, Any] | None) -> bool:
            if obj is None:
                return False
            ns = obj["metadata"].get("namespace", "")
            return (
                (namespace is None or ns == namespace)
                and _matches(selector, obj)
                and fields.matches(obj)
            )

        with self._lock:
            if since is None:
                position = self._version
                initial = [
                    copy.deepcopy(o) for k, o in sorted(self._objects[plural].items()) if visible(o)
                ]
            elif since < self._compacted:
                gone = APIError(410, "Expired", f"too old resource version: {since}")
                yield {"type": "ERROR", "object": gone.status()}
                return
            else:
                position = since
                initial = []
        for obj in initial:
            yield {"type": "ADDED", "object": obj}
        clock = time.monotonic
        next_bookmark = clock() + self.bookmark_interval
        while True:
            with self._lock:
                while True:
                    if self._stopping or watch.dropped:
                        return
                    if self.stall_watches:
                        pending: list[dict[str, Any]] = []
                        self._lock.wait(0.1)
                        continue
                    if self._compacted > position:
                        gone = APIError(410, "Expired", "the watch fell behind compaction")
                        pending = [{"type": "ERROR", "object": gone.status()}]
                        break
                    pending = []
                    for version, p, event_type, obj, previous in self._log:
                        if version <= position or p != plural:
                            continue
                        now_visible, was_visible = visible(obj), visible(previous)
                        if event_type == "DELETED":
                            shown = "DELETED" if was_visible else None
                        elif now_visible and was_visible:
                            shown = "MODIFIED"
                        elif now_visible:
                            shown = "ADDED"
                        elif was_visible:
                            shown = "DELETED"
                        else:
                            shown = None
                        if shown is not None:
                            pending.append({"type": shown, "object": copy.deepcopy(obj)})
                    if self._log:
                        position = max(position, self._log[-1][0])
                    now = clock()
                    if pending or now >= deadline:
                        break
                    if bookmarks and now >= next_bookmark:
                        next_bookmark = now + self.bookmark_interval
                        pending = [
                            {
                                "type": "BOOKMARK",
                                "object": {
                                    "kind": kind,
                                    "apiVersion": api_version,
                                    "metadata": {"resourceVersion": str(self._version)},
                                },
                            }
                        ]
                        position = self._version
                        break
                    wait = min(deadline, next_bookmark if bookmarks else deadline) - now
                    self._lock.wait(max(0.01, min(wait, 0.25)))
            for event in pending:
                yield event
                if event["type"] == "ERROR":
                    return
            if clock() >= deadline:
                return


def _spec_of(obj: dict[str, Any]) -> dict[str, Any]:
    """What metadata.generation counts changes of: all but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "kind", "apiVersion")}


def _matches(selector: LabelSelector, obj: dict[str, Any] | None) -> bool:
    if obj is None:
        return False
    labels = obj.get("metadata", {}).get("labels") or {}
    return selector.matches(labels)


# -- patches -----------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """
    The strategic merge patch as far as kubectl uses it on the kinds served
    here: a merge patch where lists of objects that all carry C{name} merge
    by name (C{$patch: delete} in an item removes it), C{$patch: replace} in
    an object replaces it, and other C{$} directives (C{$setElementOrder},
    C{$retainKeys}, C{$deleteFromPrimitiveList}) are accepted and ignored.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    if patch.get("$patch") == "delete":
        return None
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and _named_list(value) and _named_list(result.get(key)):
            result[key] = _merge_named(result.get(key) or [], value)
        else:
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
    return result


def _named_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(item, dict) and "name" in item for item in value
    )


def _merge_named(current: list[Any], patch: list[Any]) -> list[Any]:
    merged = [copy.deepcopy(item) for item in current]
    for item in patch:
        index = next((i for i, c in enumerate(merged) if c["name"] == item["name"]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del merged[index]
        elif index is None:
            merged.append({k: v for k, v in item.items() if not k.startswith("$")})
        else:
            merged[index] = strategic_merge_patch(merged[index], item)
    return merged


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 (add, remove, replace, move, copy, test); a failure is 422."""
    if not isinstance(operations, list):
        raise APIError(400, "BadRequest", "a JSON patch is a list of operations")
    document = copy.deepcopy(target)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise APIError(400, "BadRequest", "each JSON patch operation needs op and path")
        op, path = operation["op"], str(operation["path"])
        try:
            if op == "add":
                document = _pointer_set(document, path, operation["value"], insert=True)
            elif op == "remove":
                document = _pointer_remove(document, path)
            elif op == "replace":
                _pointer_get(document, path)
                document = _pointer_set(document, path, operation["value"], insert=False)
            elif op in ("move", "copy"):
                value = copy.deepcopy(_pointer_get(document, str(operation["from"])))
                if op == "move":
                    document = _pointer_remove(document, str(operation["from"]))
                document = _pointer_set(document, path, value, insert=True)
            elif op == "test":
                if _pointer_get(document, path) != operation["value"]:
                    raise APIError(422, "Invalid", f"the test at {path} did not pass")
            else:
                raise APIError(400, "BadRequest", f"unknown JSON patch op {op!r}")
        except (KeyError, IndexError, ValueError, TypeError) as e:
            raise APIError(
                422, "Invalid", f"the JSON patch could not be applied at {path}: {e!r}"
            ) from None
    return document


def _pointer_steps(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError("a JSON pointer starts with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _pointer_get(document: Any, path: str) -> Any:
    for step in _pointer_steps(path):
        document = document[int(step)] if isinstance(document, list) else document[step]
    return document


def _pointer_set(document: Any, path: str, value: Any, insert: bool) -> Any:
    steps = _pointer_steps(path)
    if not steps:
        return copy.deepcopy(value)
    parent = _pointer_get(
        document, "".join("/" + s.replace("~", "~0").replace("/", "~1") for s in steps[:-1])
    )
    last = steps[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if index < 0 or index > len(parent) or (not insert and index == len(parent)):
            raise IndexError(index)
        if insert:
            parent.insert(index, copy.deepcopy(value))
        else:
            parent[index] = copy.deepcopy(value)
    elif isinstance(parent, dict):
        parent[last] = copy.deepcopy(value)
    else:
        raise TypeError("the parent is neither an object nor a list")
    return document


def _pointer_remove(document: Any, path: str) -> Any:
    steps = _pointer_steps(path)
    if not steps:
        raise ValueError("cannot remove the whole document")
    parent = _pointer_get(
        document, "".join("/" + s.replace("~", "~0").replace("/", "~1") for s in steps[:-1])
    )
    if isinstance(parent, list):
        del parent[int(steps[-1])]
    else:
        del parent[steps[-1]]
    return document


# -- discovery ---------------------------------------------------------------


def _group_versions() -> dict[str, str]:
    """Path prefix -> group version, for every group version served."""
    return {prefix: api_version for prefix, api_version, _, _ in RESOURCES.values()}


def _age(stamp: str | None) -> str:
    if not stamp:
        return "<unknown>"
    created = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc
    )
    seconds = int((datetime.datetime.now(datetime.timezone.utc) - created).total_seconds())
    return f"{max(seconds, 0)}s" if seconds < 120 else f"{seconds // 60}m"


def ingress_table(items: list[dict[str, Any]], list_meta: dict[str, Any]) -> dict[str, Any]:
    """
    The C{meta.k8s.io/v1} Table the real server prints Ingresses as (its
    columns: NAME, CLASS, HOSTS, ADDRESS, PORTS, AGE), so that C{kubectl get
    ingress} shows the ADDRESS a controller published.
    """
    rows = []
    for obj in items:
        spec = obj.get("spec") or {}
        hosts = [r.get("host") for r in spec.get("rules") or () if r.get("host")]
        balancer = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ()
        address = ",".join(a.get("ip") or a.get("hostname") or "" for a in balancer)
        meta = obj.get("metadata") or {}
        rows.append(
            {
                "cells": [
                    meta.get("name"),
                    spec.get("ingressClassName") or "<none>",
                    ",".join(hosts) or "*",
                    address,
                    "80, 443" if spec.get("tls") else "80",
                    _age(meta.get("creationTimestamp")),
                ],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": meta,
                },
            }
        )
    columns = [
        ("Name", "string", "name"),
        ("Class", "string", ""),
        ("Hosts", "string", ""),
        ("Address", "string", ""),
        ("Ports", "string", ""),
        ("Age", "string", ""),
    ]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {k: v for k, v in list_meta.items() if k in ("resourceVersion", "continue")},
        "columnDefinitions": [
            {"name": n, "type": t, "format": f, "description": n, "priority": 0}
            for n, t, f in columns
        ],
        "rows": rows,
    }


TABLES = frozenset({"ingresses"})


def _resource_list(prefix: str) -> dict[str, Any]:
    resources = []
    for plural, (p, _, kind, namespaced) in sorted(RESOURCES.items()):
        if p != prefix:
            continue
        resource: dict[str, Any] = {
            "name": plural,
            "singularName": kind.lower(),
            "namespaced": namespaced,
            "kind": kind,
            "verbs": VERBS,
        }
        if plural in SHORT_NAMES:
            resource["shortNames"] = SHORT_NAMES[plural]
        resources.append(resource)
        if plural in STATUS_SUBRESOURCE:
            resources.append(
                {
                    "name": f"{plural}/status",
                    "singularName": "",
                    "namespaced": namespaced,
                    "kind": kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": _group_versions()[prefix],
        "resources": resources,
    }


def _group_list() -> dict[str, Any]:
    groups = []
    for prefix, group_version in sorted(_group_versions().items()):
        if not prefix.startswith("/apis/"):
            continue
        group, version = group_version.split("/")
        entry = {"groupVersion": group_version, "version": version}
        groups.append({"name": group, "versions": [entry], "preferredVersion": entry})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def _openapi_v3(group_path: str) -> dict[str, Any] | None:
    """
    Just enough OpenAPI v3 for kubectl to see that every kind takes the
    C{fieldValidation} query parameter on PATCH, so it leaves validation to
    the server instead of downloading schemas to validate client-side.
    (No schemas: kubectl's strategic merge patches then fall back to its
    built-in types, as against a server without OpenAPI.)
    """
    paths: dict[str, Any] = {}
    for plural, (prefix, api_version, kind, namespaced) in RESOURCES.items():
        if prefix.lstrip("/") != group_path:
            continue
        group, _, version = api_version.rpartition("/")
        item = (
            f"{prefix}/namespaces/{{namespace}}/{plural}/{{name}}"
            if namespaced
            else f"{prefix}/{plural}/{{name}}"
        )
        operation = {
            "patch": {
                "x-kubernetes-group-version-kind": {
                    "group": group,
                    "version": version,
                    "kind": kind,
                },
                "parameters": [
                    {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}
                ],
                "responses": {"200": {"description": "OK"}},
            }
        }
        paths[item] = operation
        if plural in STATUS_SUBRESOURCE:
            paths[item + "/status"] = operation
    if not paths:
        return None
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": SERVER_VERSION["gitVersion"]},
        "paths": paths,
        "components": {"schemas": {}},
    }


def _discovery(path: str, server_address: str) -> dict[str, Any] | None:
    path = path.rstrip("/") or "/"
    if path == "/version":
        return SERVER_VERSION
    if path == "/openapi/v3":
        return {
            "paths": {
                prefix.lstrip("/"): {"serverRelativeURL": f"/openapi/v3{prefix}?hash=0"}
                for prefix in _group_versions()
            }
        }
    if path.startswith("/openapi/v3/"):
        return _openapi_v3(path[len("/openapi/v3/") :])
    if path == "/api":
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
            ],
        }
    if path == "/apis":
        return _group_list()
    if path in _group_versions():
        return _resource_list(path)
    if path.startswith("/apis/") and path.count("/") == 2:
        group = path.split("/")[2]
        for entry in _group_list()["groups"]:
            if entry["name"] == group:
                return {"kind": "APIGroup", "apiVersion": "v1", **entry}
    return None


def _parse_path(path: str) -> tuple[str, str | None, str | None, str | None]:
    """
    C{/api/v1/namespaces/ns/configmaps/name} -> (plural, namespace, name,
    subresource); C{.../name/status} names the status subresource.
    """
    for plural, (prefix, _, _, namespaced) in RESOURCES.items():
        if not path.startswith(prefix + "/"):
            continue
        parts = path[len(prefix) + 1 :].strip("/").split("/")
        subresource = None
        if plural in STATUS_SUBRESOURCE and len(parts) in (3, 5) and parts[-1] == "status":
            parts, subresource = parts[:-1], "status"
        if parts[0] == plural and len(parts) <= 2:
            if subresource and len(parts) != 2:
                break
            return plural, None, parts[1] if len(parts) == 2 else None, subresource
        if namespaced and len(parts) in (3, 4) and parts[0] == "namespaces" and parts[2] == plural:
            if subresource and len(parts) != 4:
                break
            return plural, parts[1], parts[3] if len(parts) == 4 else None, subresource
    raise APIError(404, "NotFound", "the server could not find the requested resource")


_REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    410: "Gone",
    411: "Length Required",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    503: "Service Unavailable",
}
MAX_BODY = 3 * 1024 * 1024  # the real server's request limit, about


class _Handler(BaseHTTPRequestHandler):
    api: FakeAPIServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Whole responses in one send, and no Nagle: a keep-alive client
        # must not wait for a delayed ACK between a response's parts.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.api._lock:
            self.api.accepted_connections += 1
            if self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY):
                self.api.nodelay_connections += 1

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send_json(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        head = (
            f"HTTP/1.1 {code} {_REASONS.get(code, 'Unknown')}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n"
            f"Date: {self.date_time_string()}\r\n"
            + ("Connection: close\r\n" if self.close_connection else "")
            + "\r\n"
        ).encode()
        self.wfile.write(head + data)

    def _raw_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            total = 0
            while True:
                size_line = self.rfile.readline(1024)
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    self.close_connection = True
                    raise APIError(400, "BadRequest", "malformed chunked body") from None
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                total += size
                if total > MAX_BODY:
                    self.close_connection = True
                    raise APIError(413, "RequestEntityTooLarge", "request body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)  # CRLF after the chunk
            return b"".join(chunks)
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            self.close_connection = True
            raise APIError(400, "BadRequest", "malformed Content-Length") from None
        if length > MAX_BODY or length < 0:
            self.close_connection = True
            raise APIError(413, "RequestEntityTooLarge", "request body too large")
        return self.rfile.read(length)

    def _body(self, raw: bytes) -> Any:
        try:
            return json.loads(raw or b"{}")
        except ValueError as e:
            raise APIError(400, "BadRequest", f"the body is not JSON: {e}") from None

    def _object_body(self, raw: bytes) -> dict[str, Any]:
        body = self._body(raw)
        if not isinstance(body, dict):
            raise APIError(400, "BadRequest", "body is not an object")
        return body

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        self.api.requests.append((method, self.path))
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            # Read the whole body first, whatever follows: an unread body
            # would be taken for the next request on this connection.
            raw = self._raw_body()
            if any(url.path.startswith(p) for p in set(self.api.fail_paths)):
                raise APIError(503, "ServiceUnavailable", "the test made this path fail")
            address = self.api.url.removeprefix("http://")
            found = _discovery(url.path, address) if method == "GET" else None
            if found is not None:
                self._send_json(200, found)
                return
            plural, namespace, name, subresource = _parse_path(url.path)
            if plural in self.api.not_served:
                raise APIError(404, "NotFound", "the server could not find the requested resource")
            verb = self._verb(method, name, query)
            resource = f"{plural}/{subresource}" if subresource else plural
            forbidden = self.api.forbidden
            if {(plural, None), (resource, None), (resource, verb)} & forbidden:
                where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
                raise APIError(
                    403,
                    "Forbidden",
                    f'{plural} is forbidden: User "system:serviceaccount:test:tester" cannot'
                    f' {verb} resource "{resource}" in API group ""{where}',
                )
            if method == "GET" and subresource is not None:
                self._get(plural, namespace, name, {})
            elif method == "GET":
                self._get(plural, namespace, name, query)
            elif subresource is not None and method not in ("PUT", "PATCH"):
                raise APIError(405, "MethodNotAllowed", f"{method} is not supported here")
            elif method == "POST" and name is None:
                body = self._object_body(raw)
                self._send_json(201, self.api._write("create", plural, namespace or "", body))
            elif method == "PUT" and name is not None:
                body = self._object_body(raw)
                if body.get("metadata", {}).get("name") != name:
                    raise APIError(400, "BadRequest", "the name in the body does not match")
                self._send_json(
                    200, self.api._write("update", plural, namespace or "", body, subresource)
                )
            elif method == "PATCH" and name is not None:
                content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                patched = self.api._patch(
                    plural, namespace or "", name, content_type, self._body(raw), subresource
                )
                self._send_json(200, patched)
            elif method == "DELETE" and name is not None:
                self._send_json(200, self.api._delete(plural, namespace or "", name))
            else:
                raise APIError(405, "MethodNotAllowed", f"{method} is not supported here")
        except APIError as e:
            self._send_json(e.code, e.status())
        except (ValueError, KeyError) as e:
            self._send_json(400, APIError(400, "BadRequest", str(e)).status())

    @staticmethod
    def _verb(method: str, name: str | None, query: dict[str, str]) -> str:
        if method == "GET":
            if query.get("watch") in ("1", "true"):
                return "watch"
            return "get" if name is not None else "list"
        return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
            method, method.lower()
        )

    def _get(
        self, plural: str, namespace: str | None, name: str | None, query: dict[str, str]
    ) -> None:
        try:
            selector = LabelSelector.parse(query.get("labelSelector", ""))
        except SelectorError as e:
            raise APIError(400, "BadRequest", f"labelSelector: {e}") from None
        fields = FieldSelector.parse(query.get("fieldSelector", ""))
        if name is not None:
            key = (namespace or "", name)
            with self.api._lock:
                obj = copy.deepcopy(self.api._objects[plural].get(key))
            if obj is None:
                raise APIError(404, "NotFound", f'{plural} "{name}" not found')
            if plural in TABLES and self._wants_table():
                obj = ingress_table([obj], {"resourceVersion": obj["metadata"]["resourceVersion"]})
            self._send_json(200, obj)
            return
        if query.get("watch") in ("1", "true"):
            self._watch(plural, namespace, selector, fields, query)
            return
        start = 0
        if query.get("continue"):
            if query.get("resourceVersion") not in (None, ""):
                raise APIError(
                    400,
                    "BadRequest",
                    "specifying resource version is not allowed when using continue",
                )
            try:
                start = int(json.loads(base64.urlsafe_b64decode(query["continue"]))["start"])
            except (ValueError, KeyError, TypeError):
                raise APIError(400, "BadRequest", "continue: malformed token") from None
        limit = int(query.get("limit") or 0)
        version = query.get("resourceVersion", "")
        if version == "0" and not query.get("continue") and self.api.cache_ignores_limit:
            limit = 0  # the watch cache of older API servers does not page
        elif version not in ("", "0") and int(version) < self.api._compacted:
            raise APIError(410, "Expired", f"too old resource version: {version}")
        found = self.api._list(plural, namespace, selector, fields, limit, start)
        if plural in TABLES and self._wants_table():
            found = ingress_table(found["items"], found["metadata"])
        self._send_json(200, found)

    def _wants_table(self) -> bool:
        """kubectl get asks for a server-side Table (its columns, as the real server's)."""
        return "as=Table" in (self.headers.get("Accept") or "")

    def _watch(
        self,
        plural: str,
        namespace: str | None,
        selector: LabelSelector,
        fields: FieldSelector,
        query: dict[str, str],
    ) -> None:
        version_text = query.get("resourceVersion", "")
        since = int(version_text) if version_text not in ("", "0") else None
        timeout = float(query.get("timeoutSeconds") or 1800)
        watch = _Watch(self.connection)
        try:
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            # Open (and droppable) once its headers are out: a connection cut
            # before them would be retried by urllib3, never seen as a drop.
            with self.api._lock:
                self.api._watches.add(watch)
                self.api._lock.notify_all()
            events = self.api._watch_events(
                watch,
                plural,
                namespace,
                selector,
                fields,
                since,
                query.get("allowWatchBookmarks") in ("1", "true"),
                time.monotonic() + timeout,
            )
            table = plural in TABLES and self._wants_table()
            for event in events:
                if table and event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    event = {**event, "object": ingress_table([event["object"]], {})}
                line = json.dumps(event).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            if not watch.dropped:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass
        finally:
            with self.api._lock:
                self.api._watches.discard(watch)
            self.close_connection = True

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")
