"""
A small Kubernetes API server for tests, spoken to over real HTTP by the
official C{kubernetes} client, unchanged.

It serves the kinds tenantgw watches (Namespaces, ConfigMaps, Secrets,
Services, EndpointSlices) and Events, with the semantics a watcher depends
on, as the real API server has them:

  - B{lists} carry the collection's C{metadata.resourceVersion}; items carry
    no C{kind}/C{apiVersion} (the real server omits them, only kubectl adds
    them); C{labelSelector} (kubectl grammar), C{limit} and C{continue}.
  - B{watches} (C{?watch=true}) stream one JSON event per line in an HTTP/1.1
    chunked response: C{ADDED}, C{MODIFIED}, C{DELETED}, and C{BOOKMARK}
    every C{bookmark_interval} seconds when C{allowWatchBookmarks=true}.
    A watch from resourceVersion N replays every change after N; from no
    resourceVersion (or "0") it first sends the current objects as ADDED.
    With a label selector, an object that stops matching arrives as DELETED
    and one that starts matching as ADDED.  C{timeoutSeconds} ends it.
  - B{410 Gone}: after L{FakeAPIServer.compact}, a watch from an older
    resourceVersion gets an C{ERROR} event whose object is a C{Status} with
    code 410 and reason C{Expired}, then the stream ends.
  - B{writes}: POST (create; 409 if it exists), PUT (replace; 404 if absent),
    DELETE, over HTTP or through the Python methods tests call directly.
    C{metadata.generateName} names a created object.  Each write takes the
    next resourceVersion and sets C{uid} and
    C{creationTimestamp} (kept when the test provides one, so tests can
    decide which object is older).
  - L{FakeAPIServer.drop_watches} cuts every open watch connection, as a
    restarting API server or a load balancer would; C{fail_paths} answers
    503 under the given path prefixes, for an outage; C{wait_for_watches}
    waits (bounded) until watches are open; C{atomically()} makes several
    writes one step for watchers; C{requests} records every request line.

What it does not do: authentication, field selectors, server-side apply,
PATCH (except that Events may be POSTed), admission, or any kind not listed
in L{RESOURCES}.  Continue tokens page over the current objects, not a frozen
snapshot of the first page's resourceVersion.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tenantgw.compile.selector import LabelSelector, SelectorError

# plural -> (group path prefix, apiVersion, kind, namespaced)
RESOURCES: dict[str, tuple[str, str, str, bool]] = {
    "namespaces": ("/api/v1", "v1", "Namespace", False),
    "configmaps": ("/api/v1", "v1", "ConfigMap", True),
    "secrets": ("/api/v1", "v1", "Secret", True),
    "services": ("/api/v1", "v1", "Service", True),
    "events": ("/api/v1", "v1", "Event", True),
    "endpointslices": ("/apis/discovery.k8s.io/v1", "discovery.k8s.io/v1", "EndpointSlice", True),
}
KIND_TO_PLURAL = {kind: plural for plural, (_, _, kind, _) in RESOURCES.items()}

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


class _Watch:
    """One open watch: the handler thread waits on C{wakeup} for new events."""

    def __init__(self, connection: socket.socket) -> None:
        self.connection = connection
        self.wakeup = threading.Condition()
        self.dropped = False


class FakeAPIServer:
    """
    Start with L{start}, point a client at L{url} (or L{write_kubeconfig}),
    drive changes with L{create}/L{update}/L{delete}, and L{stop} at the end.
    """

    def __init__(self, bookmark_interval: float = 0.5) -> None:
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
        self._stopping = False
        server = self

        class Handler(_Handler):
            api = server

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
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
        """A kubeconfig naming this server, as C{load_kube_config} reads it."""
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

    # -- what tests call ---------------------------------------------------

    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._version

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        plural = KIND_TO_PLURAL[obj["kind"]]
        return self._write("create", plural, obj["metadata"].get("namespace", ""), obj)

    def update(self, obj: dict[str, Any]) -> dict[str, Any]:
        plural = KIND_TO_PLURAL[obj["kind"]]
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

    # -- the store ---------------------------------------------------------

    def _write(
        self, verb: str, plural: str, namespace: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        _, api_version, kind, namespaced = RESOURCES[plural]
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not name and verb == "create" and meta.get("generateName"):
            name = meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if not isinstance(name, str) or not name:
            raise APIError(422, "Invalid", "metadata.name: Required value")
        if namespaced:
            namespace = namespace or meta.get("namespace") or "default"
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
                meta["uid"] = str(uuid.uuid4())
                meta.setdefault(
                    "creationTimestamp",
                    datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                )
                event_type = "ADDED"
            else:
                if previous is None:
                    raise APIError(404, "NotFound", f'{plural} "{name}" not found')
                meta["uid"] = previous["metadata"]["uid"]
                meta["creationTimestamp"] = previous["metadata"]["creationTimestamp"]
                event_type = "MODIFIED"
            self._version += 1
            meta["resourceVersion"] = str(self._version)
            store[key] = obj
            self._log.append((self._version, plural, event_type, obj, previous))
            self._lock.notify_all()
            return copy.deepcopy(obj)

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
        limit: int,
        start: int,
    ) -> dict[str, Any]:
        _, api_version, kind, _ = RESOURCES[plural]
        with self._lock:
            keys = sorted(
                k
                for k, o in self._objects[plural].items()
                if (namespace is None or k[0] == namespace) and _matches(selector, o)
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
            return (namespace is None or ns == namespace) and _matches(selector, obj)

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
        clock = _monotonic
        next_bookmark = clock() + self.bookmark_interval
        while True:
            with self._lock:
                while True:
                    if self._stopping or watch.dropped:
                        return
                    if self._compacted > position:
                        gone = APIError(410, "Expired", "the watch fell behind compaction")
                        pending: list[dict[str, Any]] = [{"type": "ERROR", "object": gone.status()}]
                        break
                    pending = []
                    for version, p, event_type, obj, previous in self._log:
                        if version <= position or p != plural:
                            continue
                        now_visible, was_visible = visible(obj), visible(previous)
                        if event_type == "DELETED":
                            now_visible = False
                            was_visible = visible(previous)
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


def _monotonic() -> float:
    import time

    return time.monotonic()


def _matches(selector: LabelSelector, obj: dict[str, Any] | None) -> bool:
    if obj is None:
        return False
    labels = obj.get("metadata", {}).get("labels") or {}
    return selector.matches(labels)


def _parse_path(path: str) -> tuple[str, str | None, str | None]:
    """C{/api/v1/namespaces/ns/configmaps/name} -> (plural, namespace, name)."""
    for plural, (prefix, _, _, namespaced) in RESOURCES.items():
        if not path.startswith(prefix + "/"):
            continue
        parts = path[len(prefix) + 1 :].strip("/").split("/")
        if parts[0] == plural and len(parts) <= 2:
            return plural, None, parts[1] if len(parts) == 2 else None
        if namespaced and len(parts) in (3, 4) and parts[0] == "namespaces" and parts[2] == plural:
            return plural, parts[1], parts[3] if len(parts) == 4 else None
    raise APIError(404, "NotFound", "the server could not find the requested resource")


class _Handler(BaseHTTPRequestHandler):
    api: FakeAPIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send_json(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if not isinstance(body, dict):
            raise APIError(400, "BadRequest", "body is not an object")
        return body

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        self.api.requests.append((method, self.path))
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if any(url.path.startswith(p) for p in set(self.api.fail_paths)):
                raise APIError(503, "ServiceUnavailable", "the test made this path fail")
            plural, namespace, name = _parse_path(url.path)
            if method == "GET":
                self._get(plural, namespace, name, query)
            elif method == "POST" and name is None:
                self._send_json(
                    201, self.api._write("create", plural, namespace or "", self._body())
                )
            elif method == "PUT" and name is not None:
                body = self._body()
                if body.get("metadata", {}).get("name") != name:
                    raise APIError(400, "BadRequest", "the name in the body does not match")
                self._send_json(200, self.api._write("update", plural, namespace or "", body))
            elif method == "DELETE" and name is not None:
                self._send_json(200, self.api._delete(plural, namespace or "", name))
            else:
                raise APIError(405, "MethodNotAllowed", f"{method} is not supported here")
        except APIError as e:
            self._send_json(e.code, e.status())
        except (ValueError, KeyError) as e:
            self._send_json(400, APIError(400, "BadRequest", str(e)).status())

    def _get(
        self, plural: str, namespace: str | None, name: str | None, query: dict[str, str]
    ) -> None:
        try:
            selector = LabelSelector.parse(query.get("labelSelector", ""))
        except SelectorError as e:
            raise APIError(400, "BadRequest", f"labelSelector: {e}") from None
        if name is not None:
            key = (namespace or "", name)
            with self.api._lock:
                obj = copy.deepcopy(self.api._objects[plural].get(key))
            if obj is None:
                raise APIError(404, "NotFound", f'{plural} "{name}" not found')
            self._send_json(200, obj)
            return
        if query.get("watch") in ("1", "true"):
            self._watch(plural, namespace, selector, query)
            return
        start = 0
        if query.get("continue"):
            start = json.loads(base64.urlsafe_b64decode(query["continue"]))["start"]
        limit = int(query.get("limit") or 0)
        self._send_json(200, self.api._list(plural, namespace, selector, limit, start))

    def _watch(
        self, plural: str, namespace: str | None, selector: LabelSelector, query: dict[str, str]
    ) -> None:
        version_text = query.get("resourceVersion", "")
        since = int(version_text) if version_text not in ("", "0") else None
        timeout = float(query.get("timeoutSeconds") or 1800)
        watch = _Watch(self.connection)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
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
                since,
                query.get("allowWatchBookmarks") == "true",
                _monotonic() + timeout,
            )
            for event in events:
                line = json.dumps(event).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
            if not watch.dropped:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
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

    def do_DELETE(self) -> None:
        self._handle("DELETE")
