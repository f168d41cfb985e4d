"""
``--source kubernetes``: the watched objects of a live cluster.

One thread per kind lists, then watches from the list's resourceVersion
(with bookmarks, so a quiet kind's resourceVersion stays fresh); every
result is handed to the reactor with C{callFromThread}, and only the
reactor thread touches the store.  A burst of events schedules one rebuild
(L{KubernetesSource.coalesce_delay} after the first change), so a rollout
touching a hundred EndpointSlices compiles once.

Lists follow client-go's reflector: the first one asks for
C{resourceVersion=0}, which the API server answers from its watch cache
(no etcd read; a thousand gateway pods restarting must not all read
etcd), later ones for the last resourceVersion seen, and after a 410 Gone
for none at all (a consistent read, since anything older may be gone).
Every list asks for pages of L{LIST_PAGE}; API servers that serve
C{resourceVersion=0} from the cache without paging (before the cache could
page) answer in one response, which is their choice and still one
request.  On 410 Gone a kind is listed again and the list replaces what
the store held for it, so objects deleted while the watch was away
disappear.  Any
other failure (API outage, dropped connection) backs off with jitter and
re-lists; the last snapshot keeps serving meanwhile.  Watches carry a
server-side timeout and a client read timeout, and C{stopService} closes
open responses, so shutdown never waits on the network.

Secrets are not watched: L{tenantgw.sources.secrets.SecretReader} gets
the referenced ones by name (RBAC: get only), and this module works out
which those are (L{ObjectStore.update_references}).  Their first read waits
until every other kind is listed, and a rebuild waits for the read of a
newly referenced Secret, so a tenant's certificate is never reported
missing only because it was not read yet.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from attrs import frozen
from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from urllib3.exceptions import ReadTimeoutError

from tenantgw.compile.compiler import TENANT_KEY, TENANT_LABEL, parse_cached
from tenantgw.config.model import Access, TenantSpec
from tenantgw.sources.directory import KubeObject, ObjectsCallback
from tenantgw.sources.kinds import KINDS, kind_named
from tenantgw.sources.secrets import SecretReader, gateway_secret_refs, ingress_secret_refs
from tenantgw.translators.ingress import CONTROLLER as INGRESS_CONTROLLER

_log = Logger()

LIST_PAGE = 500
# A watch that sends nothing for READ_DEADLINE_SECONDS is taken for stalled
# (an API server, proxy or NAT that keeps the connection open and forwards
# nothing, which TCP keepalive cannot see) and re-opened from the last
# version, without a re-list.  So that a quiet but healthy watch never meets
# that deadline, the API server is asked to end each watch before it
# (timeoutSeconds); the watch is then re-opened, once a minute per kind.
WATCH_TIMEOUT_SECONDS = 50
READ_DEADLINE_SECONDS = 60
# Lists: a read that waits longer than this for the next bytes fails (retried
# with backoff); generous, since a big list may be slow to start.
READ_TIMEOUT_SECONDS = 120
MISSING_KIND_RETRY_SECONDS = 60.0  # an optional kind not installed: look again this often
CONNECT_TIMEOUT_SECONDS = 5
FORBIDDEN_RETRY_SECONDS = 60.0  # a kind RBAC forbids: ask again this often
HEALTHY_WATCH_SECONDS = 30.0  # a watch up this long (or delivering events) resets the backoff

Key = tuple[str, str]  # (namespace or "", name)
# What changed since the last rebuild, as the incremental compiler files it
# ((kind, namespace, name), see tenantgw.compile.incremental): the object
# now, or None when it is gone or no longer matters.
ChangesCallback = Callable[[dict[tuple[str, str, str], KubeObject | None]], None]
_BACKEND_KINDS = frozenset({"Service", "EndpointSlice"})


@frozen
class WatchedKind:
    kind: str
    api_version: str
    path: str  # the cluster-wide collection
    label_selector: str = ""
    # A custom resource that may not be installed (Gateway API): a 404 makes
    # it an empty list, so the other kinds still sync and serve.
    optional: bool = False


def watched_kinds(namespace_selector: str = "") -> tuple[WatchedKind, ...]:
    """
    The kinds of L{tenantgw.sources.kinds.KINDS} that are listed and watched
    (all but Secrets, which are read by name), with the selectors a watch uses.
    """
    selectors = {"Namespace": namespace_selector, "ConfigMap": f"{TENANT_LABEL}=true"}
    return tuple(
        WatchedKind(
            k.kind,
            k.api_version,
            k.collection_path,
            selectors.get(k.kind, ""),
            optional=k.optional,
        )
        for k in KINDS
        if "watch" in k.verbs
    )


def _key(obj: KubeObject) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def _parse_ahead(config_map: KubeObject) -> None:
    """
    On the watch thread: parse a Tenant ConfigMap's tenant.yaml into the
    (thread-safe) parse cache, so that the reactor, which needs the parse
    for the Secret references and the compile, finds it done (a millisecond
    or two per file, 8 s for a first list of 5,000) instead of doing it
    between requests.
    """
    data = config_map.get("data")
    text = data.get(TENANT_KEY) if isinstance(data, Mapping) else None
    if isinstance(text, str):
        parse_cached(text)


def _secret_names(text: str) -> frozenset[str] | None:
    """
    The Secrets one tenant.yaml names, or None when it does not parse.

    Through the compile step's parse cache: a cold parse of a thousand
    tenant files takes about half a second, and the compile that follows
    would otherwise parse each of them a second time.
    """
    spec = parse_cached(text)
    if not isinstance(spec, TenantSpec):
        return None
    return frozenset(_spec_secret_names(spec))


def _spec_secret_names(spec: TenantSpec) -> Iterable[str]:
    if spec.tls is not None:
        yield spec.tls.secret_name
    accesses: list[Access] = [spec.access]
    accesses.extend(route.access for route in spec.routes if route.access is not None)
    for access in accesses:
        if access.basic_auth is not None:
            yield access.basic_auth.secret_name
        if access.api_keys is not None:
            yield access.api_keys.secret_name


# The kinds whose objects name Secrets or route into namespaces.
_REFERRING_KINDS = ("ConfigMap", "Ingress", "Gateway", "HTTPRoute", "GRPCRoute")


def _namespaces_of(kind: str, key: Key, obj: KubeObject) -> frozenset[str]:
    """The namespaces whose Services can matter because of C{obj}."""
    if kind == "Gateway":
        return frozenset()
    found = {key[0]}
    if kind in ("HTTPRoute", "GRPCRoute"):
        # A backendRef into another namespace (the compile step checks
        # its ReferenceGrant): that namespace's Services matter too.
        for rule in (obj.get("spec") or {}).get("rules") or ():
            for ref in (rule or {}).get("backendRefs") or ():
                if isinstance(ref, dict) and isinstance(ref.get("namespace"), str):
                    found.add(ref["namespace"])
    return frozenset(found)


class ObjectStore:
    """
    What the cluster holds, per kind, as the reactor has been told; pure, so
    the diff and filtering rules are testable without threads or a network.
    """

    def __init__(self, kinds: Iterable[str], extra_secrets: Iterable[Key] = ()) -> None:
        self.objects: dict[str, dict[Key, KubeObject]] = {kind: {} for kind in kinds}
        self.objects.setdefault("Secret", {})
        self.synced: set[str] = set()
        self.extra_secrets = frozenset(extra_secrets)
        # Every Secret a served object references, as (namespace, name).
        self.secret_refs: frozenset[Key] = self.extra_secrets
        # Namespaces whose Services and EndpointSlices can matter: those
        # holding a tenant's objects, and those their routes point into.
        self.routed_namespaces: frozenset[str] = frozenset()
        # What each referring object contributes to those two, by (kind, key).
        self._sources_secrets: dict[tuple[str, Key], frozenset[Key]] = {}
        self._sources_namespaces: dict[tuple[str, Key], frozenset[str]] = {}

    def matters(self, kind: str, key: Key) -> bool:
        """
        False for a Service or EndpointSlice no tenant can route to: its
        churn (kube-system, a busy operator namespace) must not rebuild.
        It is kept all the same, for when its namespace becomes a tenant.
        """
        return kind not in _BACKEND_KINDS or key[0] in self.routed_namespaces

    def wants_secret(self, key: Key) -> bool:
        return key in self.secret_refs

    def replace(self, kind: str, items: Iterable[KubeObject]) -> bool:
        """A full list: whatever is not in it is gone.  True when anything changed."""
        fresh = {_key(obj): obj for obj in items}
        if kind == "Secret":
            fresh = {k: o for k, o in fresh.items() if self.wants_secret(k)}
        changed = fresh != self.objects[kind] or kind not in self.synced
        self.objects[kind] = fresh
        self.synced.add(kind)
        return changed

    def apply(self, kind: str, event_type: str, obj: KubeObject) -> bool:
        key = _key(obj)
        store = self.objects[kind]
        if event_type == "DELETED" or (kind == "Secret" and not self.wants_secret(key)):
            return store.pop(key, None) is not None
        if store.get(key) == obj:
            return False
        store[key] = obj
        return True

    def update_references(self, changed: tuple[str, Key] | None = None) -> bool:
        """
        Works out which Secrets are wanted from the ConfigMaps, Ingresses
        and Gateways, and which namespaces' Services can matter; drops the
        Secrets no longer wanted.  True when a Secret is newly wanted, which
        the store does not hold yet: the caller must have it read.

        With C{changed} (the kind and key of the one object that changed),
        only that object's references are worked out again: at 5,000
        tenants, going over every ConfigMap for each event cost 70 ms of
        reactor time.  An IngressClass change goes over every Ingress.
        """
        if changed is None or changed[0] == "IngressClass":
            self._sources_secrets.clear()
            self._sources_namespaces.clear()
            sources = [
                (kind, key) for kind in _REFERRING_KINDS for key in self.objects.get(kind, {})
            ]
        else:
            sources = [changed]
        secrets_moved = namespaces_moved = changed is None or changed[0] == "IngressClass"
        for kind, key in sources:
            source = (kind, key)
            obj = self.objects.get(kind, {}).get(key)
            old_secrets = self._sources_secrets.pop(source, frozenset())
            old_namespaces = self._sources_namespaces.pop(source, frozenset())
            new_secrets: frozenset[Key] = frozenset()
            new_namespaces: frozenset[str] = frozenset()
            if obj is not None:
                new_secrets = self._secrets_of(kind, obj, old_secrets)
                new_namespaces = _namespaces_of(kind, key, obj)
                self._sources_secrets[source] = new_secrets
                self._sources_namespaces[source] = new_namespaces
            secrets_moved = secrets_moved or new_secrets != old_secrets
            namespaces_moved = namespaces_moved or new_namespaces != old_namespaces
        before = self.secret_refs
        if secrets_moved:
            refs = set(self.extra_secrets)
            for found in self._sources_secrets.values():
                refs.update(found)
            if refs != before:
                self.secret_refs = frozenset(refs)
        if namespaces_moved:
            namespaces: set[str] = set()
            for found_namespaces in self._sources_namespaces.values():
                namespaces.update(found_namespaces)
            if namespaces != self.routed_namespaces:
                self.routed_namespaces = frozenset(namespaces)
        secrets = self.objects["Secret"]
        if self.secret_refs is not before:
            for key in [k for k in secrets if not self.wants_secret(k)]:
                del secrets[key]
        return not self.secret_refs <= before

    def _secrets_of(self, kind: str, obj: KubeObject, previous: frozenset[Key]) -> frozenset[Key]:
        namespace = _key(obj)[0]
        if kind == "ConfigMap":
            data = obj.get("data") or {}
            text = data.get(TENANT_KEY) if isinstance(data, Mapping) else None
            found = _secret_names(text) if isinstance(text, str) else None
            if found is None:
                # It does not parse: its last good config still serves, and
                # the compile step needs that config's Secrets.
                return previous
            return frozenset((namespace, name) for name in found)
        if kind == "Ingress":
            # Another controller's Ingress is not served: its Secrets are
            # not read.  One without a class may be served by default.
            ours = {
                key[1]
                for key, ingress_class in self.objects.get("IngressClass", {}).items()
                if (ingress_class.get("spec") or {}).get("controller") == INGRESS_CONTROLLER
            }
            class_name = (obj.get("spec") or {}).get("ingressClassName")
            if class_name and class_name not in ours:
                return frozenset()
            return frozenset(ingress_secret_refs(obj))
        if kind == "Gateway":
            return frozenset(gateway_secret_refs(obj))
        return frozenset()

    def all_objects(self) -> list[KubeObject]:
        return [
            obj
            for kind in self.objects
            for key, obj in sorted(self.objects[kind].items())
            if self.matters(kind, key)
        ]


class KindWatcher:
    """
    List+watch of one kind, on its own thread.  C{deliver(kind, items)} and
    C{event(kind, type, obj)} are called on that thread and must only hand
    over to the reactor.
    """

    def __init__(
        self,
        api_client: Any,
        watched: WatchedKind,
        deliver: Callable[[str, list[KubeObject]], None],
        event: Callable[[str, str, KubeObject], None],
        backoff: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        self.api_client = api_client
        self.watched = watched
        self.deliver = deliver
        self.event = event
        self.backoff = backoff
        self.stopping = threading.Event()
        self.relist_requested = threading.Event()
        self._response: Any = None
        self._lock = threading.Lock()
        self.thread = threading.Thread(
            target=self.run, name=f"tenantgw-watch-{watched.kind}", daemon=True
        )
        self.lists = 0
        self.watch_healthy = False
        self.forbidden = False  # the last list or watch answered 403
        self.missing = False  # an optional kind the API server does not serve
        self.watches = 0
        self.page_size = LIST_PAGE
        # The newest resourceVersion a list or watch delivered ("" before the
        # first list), and whether the API server said it is too old (410).
        self.synced_version = ""
        self.version_unavailable = False
        self.watch_timeout = WATCH_TIMEOUT_SECONDS
        self.read_deadline = READ_DEADLINE_SECONDS
        self.stalls = 0  # watches re-opened because they went silent

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self._close_response()

    def relist(self) -> None:
        """Called from any thread: end the current watch and list again."""
        self.relist_requested.set()
        self._close_response()

    def _close_response(self) -> None:
        with self._lock:
            response = self._response
        if response is not None:
            # shutdown() unblocks a read in progress on the watcher's thread;
            # either may fail on a response that is already closing.
            with contextlib.suppress(Exception):
                response.shutdown()
            with contextlib.suppress(Exception):
                response.close()

    def _request(self, read_timeout: float = READ_TIMEOUT_SECONDS, **query: Any) -> Any:
        """One call through the official client's typed API, as raw JSON."""
        arguments = {k: v for k, v in query.items() if v not in (None, "")}
        typed = _list_methods().get(self.watched.kind)
        if typed is not None:
            api_class, method = typed
            function = getattr(api_class(self.api_client), method)
        else:
            # A custom resource (Gateway API): the generic custom-objects call.
            from kubernetes import client

            kind = kind_named(self.watched.kind)
            custom = client.CustomObjectsApi(self.api_client).list_cluster_custom_object
            arguments = {
                "group": kind.group,
                "version": kind.version,
                "plural": kind.plural,
                **arguments,
            }
            function = custom
        return function(
            **arguments,
            _preload_content=False,
            _request_timeout=(CONNECT_TIMEOUT_SECONDS, read_timeout),
        )

    def run(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            try:
                version = self._list()
                self.forbidden = False
                self.watch_healthy = False
                self._watch(version)
                if self.watch_healthy:
                    failures = 0
            except Exception as e:
                if self.stopping.is_set():
                    return
                if self.watch_healthy:
                    # Only a watch that delivered events or stayed up resets
                    # the backoff: a list that succeeds and a watch that fails
                    # at once would otherwise re-list in a hot loop.
                    failures = 0
                if getattr(e, "status", None) == 410:
                    self.version_unavailable = True
                if self.relist_requested.is_set() or getattr(e, "status", None) == 410:
                    # We closed the watch ourselves to list again, or the API
                    # answered 410 Gone as an HTTP status: no outage, no wait.
                    continue
                if self.watched.optional and getattr(e, "status", None) == 404:
                    # The custom resource is not installed: none of them
                    # exist, so the dialect serves nothing and the others
                    # sync.  Look again now and then, in case it is installed.
                    if not self.missing:
                        self.missing = True
                        _log.info(
                            "{kind} is not served by the API server (CRD not installed):"
                            " treated as none",
                            kind=self.watched.kind,
                        )
                        self.deliver(self.watched.kind, [])
                    self.stopping.wait(MISSING_KIND_RETRY_SECONDS)
                    continue
                if getattr(e, "status", None) == 403:
                    # RBAC forbids this kind: degrade only it.  It counts as
                    # synced and empty so the other kinds serve and /readyz
                    # turns ready; one line says so, then a slow retry.
                    if not self.forbidden:
                        self.forbidden = True
                        _log.warn(
                            "{kind} list/watch forbidden (403): treated as none,"
                            " retrying every {delay:.0f}s",
                            kind=self.watched.kind,
                            delay=FORBIDDEN_RETRY_SECONDS,
                        )
                        self.deliver(self.watched.kind, [])
                    self.stopping.wait(FORBIDDEN_RETRY_SECONDS)
                    continue
                failures += 1
                low, high = self.backoff
                delay = min(high, low * 2 ** min(failures - 1, 16))
                delay = delay / 2 + random.uniform(0, delay / 2)
                _log.warn(
                    "watching {kind} failed ({error}); retrying in {delay:.1f}s,"
                    " the last snapshot keeps serving",
                    kind=self.watched.kind,
                    error=f"{type(e).__name__}: {e}",
                    delay=delay,
                )
                self.stopping.wait(delay)

    def list_version(self) -> str:
        """The resourceVersion a list asks for (see the module docstring)."""
        if self.version_unavailable:
            return ""
        return self.synced_version or "0"

    def _list(self) -> str:
        self.relist_requested.clear()
        try:
            return self._list_at(self.list_version())
        except Exception as e:
            if getattr(e, "status", None) != 410 or self.version_unavailable:
                raise
            # Compacted away: list again, consistently.
            self.version_unavailable = True
            return self._list_at("")

    def _list_at(self, version: str) -> str:
        items: list[KubeObject] = []
        token = None
        while True:
            response = self._request(
                label_selector=self.watched.label_selector,
                limit=self.page_size,
                _continue=token,
                # Only the first page names a version; the token carries it.
                resource_version=None if token else version,
            )
            page = json.loads(response.data)
            for item in page.get("items") or ():
                # The API server leaves kind and apiVersion out of list items.
                item["kind"] = self.watched.kind
                item["apiVersion"] = self.watched.api_version
                items.append(item)
            metadata = page.get("metadata") or {}
            token = metadata.get("continue")
            if not token:
                break
        self.lists += 1
        self.deliver(self.watched.kind, items)
        self.synced_version = str(metadata.get("resourceVersion") or "")
        self.version_unavailable = False
        return self.synced_version

    def _watch(self, version: str) -> None:
        """Watches from C{version} until the stream ends; returns to re-list on 410."""
        while not self.stopping.is_set() and not self.relist_requested.is_set():
            response = self._request(
                read_timeout=self.read_deadline,
                watch=True,
                resource_version=version,
                allow_watch_bookmarks=True,
                label_selector=self.watched.label_selector,
                timeout_seconds=self.watch_timeout,
            )
            self.watches += 1
            started = time.monotonic()
            with self._lock:
                self._response = response
            try:
                for line in _lines(response):
                    if time.monotonic() - started >= HEALTHY_WATCH_SECONDS:
                        self.watch_healthy = True
                    event = json.loads(line)
                    event_type = event.get("type")
                    obj = event.get("object") or {}
                    if event_type == "ERROR":
                        if obj.get("code") == 410:
                            self.version_unavailable = True
                            return  # expired: list again
                        raise RuntimeError(f"watch error: {obj.get('message')}")
                    new_version = (obj.get("metadata") or {}).get("resourceVersion")
                    if new_version:
                        version = self.synced_version = str(new_version)
                    if event_type == "BOOKMARK":
                        continue
                    if event_type not in ("ADDED", "MODIFIED", "DELETED"):
                        continue
                    self.watch_healthy = True
                    self.event(self.watched.kind, event_type, obj)
            except ReadTimeoutError:
                if self.stopping.is_set():
                    return
                self.stalls += 1
                _log.warn(
                    "watch of {kind} sent nothing for {seconds:.0f} s (stalled connection):"
                    " re-watching from resourceVersion {version}",
                    kind=self.watched.kind,
                    seconds=self.read_deadline,
                    version=version,
                )
            finally:
                if time.monotonic() - started >= HEALTHY_WATCH_SECONDS:
                    self.watch_healthy = True
                with self._lock:
                    self._response = None
                response.release_conn()
            if self.stopping.is_set() or self.relist_requested.is_set():
                return
            # The server ended the watch (timeout): continue from where it was.


def _list_methods() -> dict[str, tuple[Any, str]]:
    from kubernetes import client

    return {
        "Namespace": (client.CoreV1Api, "list_namespace"),
        "ConfigMap": (client.CoreV1Api, "list_config_map_for_all_namespaces"),
        "Service": (client.CoreV1Api, "list_service_for_all_namespaces"),
        "EndpointSlice": (client.DiscoveryV1Api, "list_endpoint_slice_for_all_namespaces"),
        "Ingress": (client.NetworkingV1Api, "list_ingress_for_all_namespaces"),
        "IngressClass": (client.NetworkingV1Api, "list_ingress_class"),
    }


def _lines(response: Any) -> Iterable[bytes]:
    """Newline-delimited JSON from a streaming response, however it is chunked."""
    buffer = b""
    for chunk in response.stream(amt=65536, decode_content=False):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer


class KubernetesSource(Service):
    """
    Calls C{on_objects(all watched objects)} once every kind has been listed,
    then after every coalesced burst of changes.  C{synced} says the first
    call happened, which is what /readyz waits for.
    """

    coalesce_delay = 0.05

    def __init__(
        self,
        api_client: Any,
        reactor: Any,
        on_objects: ObjectsCallback,
        namespace_selector: str = "",
        extra_secrets: Iterable[Key] = (),
        backoff: tuple[float, float] = (0.5, 30.0),
        on_changes: ChangesCallback | None = None,
    ) -> None:
        """
        C{on_changes}, when given, is called after the first rebuild with
        only what changed (a list every rebuild: C{on_objects}), so that one
        edit costs the compile of what it touches, not a list of every
        object.  A re-list hands over everything again.
        """
        self.api_client = api_client
        self.reactor = reactor
        self.on_objects = on_objects
        self.on_changes = on_changes
        self._changes: dict[tuple[str, str, str], tuple[str, Key]] = {}
        self._everything = True
        self.kinds = watched_kinds(namespace_selector)
        self.store = ObjectStore([k.kind for k in self.kinds], extra_secrets)
        self.synced = False
        self.rebuilds = 0
        self._pending: IDelayedCall | None = None
        # Set while a newly referenced Secret is being read: the rebuild
        # waits for it rather than report the Secret missing.
        self._awaiting_secrets = True
        self._stopped = False
        self.watchers: dict[str, KindWatcher | SecretReader] = {
            k.kind: KindWatcher(
                api_client,
                k,
                self._deliver_from_thread,
                self._event_from_thread,
                backoff=backoff,
            )
            for k in self.kinds
        }
        self.secrets = SecretReader(api_client, self._wanted_secrets, self._deliver_from_thread)
        self.watchers["Secret"] = self.secrets

    def kind_states(self) -> dict[str, str]:
        """
        Per kind, for /readyz and the metrics: "synced", "listing" (not yet,
        or failing), "forbidden" (RBAC: served as none) or "missing" (a
        custom resource not installed: served as none).
        """
        states = {}
        for kind, watcher in self.watchers.items():
            if watcher.forbidden:
                states[kind] = "forbidden"
            elif watcher.missing:
                states[kind] = "missing"
            elif kind in self.store.synced:
                states[kind] = "synced"
            else:
                states[kind] = "listing"
        return states

    def _wanted_secrets(self) -> frozenset[Key]:
        # Called on the Secret thread: reads one reference the reactor
        # replaces whole, never a structure the reactor mutates.
        return self.store.secret_refs

    def _wants_secret(self, key: Key) -> bool:
        return key in self.store.secret_refs

    def startService(self) -> None:
        super().startService()
        for watcher in self.watchers.values():
            watcher.start()

    def stopService(self) -> Any:
        # A thread may still hand over what it read before it saw the stop:
        # from now on that schedules nothing.
        self._stopped = True
        for watcher in self.watchers.values():
            watcher.stop()
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None
        return super().stopService()

    def _deliver_from_thread(self, kind: str, items: list[KubeObject]) -> None:
        if kind == "ConfigMap":
            for item in items:
                _parse_ahead(item)
        self.reactor.callFromThread(self.listed, kind, items)

    def _event_from_thread(self, kind: str, event_type: str, obj: KubeObject) -> None:
        if kind == "ConfigMap":
            _parse_ahead(obj)
        self.reactor.callFromThread(self.changed, kind, event_type, obj)

    # Reactor thread from here on.

    def listed(self, kind: str, items: list[KubeObject]) -> None:
        released = kind == "Secret" and self._awaiting_secrets
        if released:
            self._awaiting_secrets = False
        if self.store.replace(kind, items) or released:
            self._everything = True
            self._after_change(kind)

    def changed(self, kind: str, event_type: str, obj: KubeObject) -> None:
        key = _key(obj)
        if self.store.apply(kind, event_type, obj) and self.store.matters(kind, key):
            self._note(kind, key)
            self._after_change(kind, key)

    def _note(self, kind: str, key: Key) -> None:
        namespace, name = key
        filed = (kind, name, name) if kind == "Namespace" else (kind, namespace or "default", name)
        self._changes[filed] = (kind, key)

    def _after_change(self, kind: str, key: Key | None = None) -> None:
        """C{key}: the one object of C{kind} that changed; None after a list."""
        if self._stopped:
            return
        store = self.store
        others_synced = len(store.synced - {"Secret"}) >= len(self.kinds)
        references = kind in ("IngressClass", *_REFERRING_KINDS)
        if references:
            routed = store.routed_namespaces
            secrets = set(store.objects["Secret"])
            newly_wanted = store.update_references(None if key is None else (kind, key))
            # What the compile sees changes with the references: Secrets
            # no longer wanted are dropped, and a namespace's Services start
            # (or stop) mattering.
            for key in secrets - store.objects["Secret"].keys():
                self._note("Secret", key)
            moved = routed ^ store.routed_namespaces
            if moved:
                for backend_kind in _BACKEND_KINDS:
                    for key in store.objects.get(backend_kind, {}):
                        if key[0] in moved:
                            self._note(backend_kind, key)
            if newly_wanted and others_synced:
                self._awaiting_secrets = True
                self.secrets.wake()
        if not others_synced:
            return
        if "Secret" not in store.synced:
            # Every other kind is in, so every reference is known: first read.
            store.update_references()
            self.secrets.wake()
            return
        if self._awaiting_secrets:
            return
        if self._pending is None:
            self._pending = self.reactor.callLater(self.coalesce_delay, self._rebuild)

    def _rebuild(self) -> None:
        self._pending = None
        self.synced = True
        self.rebuilds += 1
        changes, self._changes = self._changes, {}
        try:
            if self._everything or self.on_changes is None:
                self._everything = False
                self.on_objects(self.store.all_objects())
            else:
                store = self.store
                self.on_changes(
                    {
                        filed: store.objects[kind].get(key) if store.matters(kind, key) else None
                        for filed, (kind, key) in changes.items()
                    }
                )
        except Exception:
            _log.failure("applying the cluster's objects failed")


def keepalive_socket_options() -> list[tuple[int, int, int]]:
    """
    A watch blocks in a read for minutes: without keepalive a half-open
    connection (API server gone, NAT dropped) is noticed only at the read
    timeout.  Probes after 20 s idle, every 10 s, 3 lost: noticed within 50 s.
    """
    import socket

    options = [
        (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
    ]
    for name, value in (("TCP_KEEPIDLE", 20), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            options.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    return options


def api_client_from(kubeconfig: str | None, context: str | None) -> Any:
    """
    The official client's ApiClient: in-cluster config when running in a
    pod and no kubeconfig is named, else the kubeconfig (and context).
    """
    from kubernetes import client, config

    configuration = client.Configuration()
    configuration.socket_options = keepalive_socket_options()
    if kubeconfig is None and context is None:
        try:
            config.load_incluster_config(client_configuration=configuration)
            return client.ApiClient(configuration)
        except config.ConfigException:
            pass
    config.load_kube_config(
        config_file=kubeconfig, context=context, client_configuration=configuration
    )
    return client.ApiClient(configuration)
