"""
Secrets, read by name: only those a served object references, each with a
C{get} in its own namespace (contract section 12).

Why not a watch: a watch (or a list) is cluster-wide or per namespace, and
either needs RBAC that reads every Secret of the cluster; ingress-nginx,
Traefik and Contour all hold exactly that.  Here RBAC is C{get} only, an
unrelated Secret is never fetched, and a rotated certificate is picked up
by re-reading the referenced Secrets every L{REFRESH_SECONDS} (within the
10 s the contract allows).  Reading one small object by name is cheap for
the API server; a thousand tenants with a certificate each cost 200 gets a
second, which is the price of holding no Secret nobody asked for.

What counts as a reference: a Tenant ConfigMap's C{tls.secretName} and
C{access} Secrets (L{tenantgw.sources.kubernetes.ObjectStore.update_references}), an
Ingress's C{spec.tls[].secretName} and C{auth-secret} annotation, a
Gateway listener's C{tls.certificateRefs}, and C{--default-cert-secret}.
Whether a reference is allowed (same namespace, ReferenceGrant) is
compile's decision; reading the named Secret is harmless either way.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

from twisted.logger import Logger

from tenantgw.sources.directory import KubeObject

_log = Logger()

Key = tuple[str, str]  # (namespace, name)

REFRESH_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 10
_AUTH_SECRET_ANNOTATIONS = (
    "nginx.ingress.kubernetes.io/auth-secret",
    "tenantgw.io/auth-secret",
)


def _meta(obj: KubeObject) -> tuple[str, dict[str, Any]]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), meta if isinstance(meta, dict) else {}


def ingress_secret_refs(ingress: KubeObject) -> Iterable[Key]:
    namespace, meta = _meta(ingress)
    spec = ingress.get("spec") or {}
    for entry in spec.get("tls") or () if isinstance(spec, dict) else ():
        name = entry.get("secretName") if isinstance(entry, dict) else None
        if isinstance(name, str) and name:
            yield (namespace, name)
    annotations = meta.get("annotations") or {}
    for annotation in _AUTH_SECRET_ANNOTATIONS:
        value = annotations.get(annotation) if isinstance(annotations, dict) else None
        if isinstance(value, str) and value:
            other, _, name = value.rpartition("/")
            if name and other in ("", namespace):  # another namespace is refused anyway
                yield (namespace, name)


def gateway_secret_refs(gateway: KubeObject) -> Iterable[Key]:
    namespace, _ = _meta(gateway)
    spec = gateway.get("spec") or {}
    for listener in spec.get("listeners") or () if isinstance(spec, dict) else ():
        tls = listener.get("tls") if isinstance(listener, dict) else None
        for ref in (tls or {}).get("certificateRefs") or () if isinstance(tls, dict) else ():
            if not isinstance(ref, dict) or ref.get("group", "") not in ("", "core"):
                continue
            if ref.get("kind", "Secret") != "Secret" or not isinstance(ref.get("name"), str):
                continue
            yield (str(ref.get("namespace") or namespace), ref["name"])


class SecretReader:
    """
    One thread that gets the wanted Secrets by name, then again every
    L{REFRESH_SECONDS}, or at once when C{wake} is called (a new reference).
    C{deliver(items)} is called on that thread with every Secret held, after
    each round, and must only hand over to the reactor.

    A Secret that is gone (404) or that RBAC forbids (403) is dropped; on
    any other failure (an API outage) the copy read last is kept, so an
    outage never takes a tenant's certificate away.
    """

    kind = "Secret"

    def __init__(
        self,
        api_client: Any,
        wanted: Callable[[], frozenset[Key]],
        deliver: Callable[[str, list[KubeObject]], None],
        refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:
        self.api_client = api_client
        self.wanted = wanted
        self.deliver = deliver
        self.refresh_seconds = refresh_seconds
        self.held: dict[Key, KubeObject] = {}
        self.stopping = threading.Event()
        self._woken = threading.Event()
        self._started = False  # the first round waits for the first wake
        self.gets = 0
        self.rounds = 0
        self.forbidden = False
        self.missing = False
        self.thread = threading.Thread(target=self.run, name="tenantgw-secrets", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self._woken.set()

    def wake(self) -> None:
        """From any thread: read the wanted Secrets now."""
        self._woken.set()

    relist = wake  # what the source calls on any kind's reader to read it again

    def run(self) -> None:
        # The first round starts when the source says the references are
        # known (every other kind listed); later rounds on the timer too.
        self._woken.wait()
        while not self.stopping.is_set():
            self._woken.clear()
            self.read_round()
            self._woken.wait(self.refresh_seconds)

    def read_round(self) -> None:
        from kubernetes.client import CoreV1Api

        # Typed as returning a V1Secret; with _preload_content=False it is
        # the raw response, whose JSON is what every other kind hands over.
        read: Any = CoreV1Api(self.api_client).read_namespaced_secret
        wanted = self.wanted()
        for key in [k for k in self.held if k not in wanted]:
            del self.held[key]
        forbidden = False
        for namespace, name in sorted(wanted):
            if self.stopping.is_set():
                return
            self.gets += 1
            try:
                response = read(
                    name,
                    namespace,
                    _preload_content=False,
                    _request_timeout=(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS),
                )
                obj = json.loads(response.data)
            except Exception as e:
                status = getattr(e, "status", None)
                if status in (403, 404):
                    self.held.pop((namespace, name), None)
                    forbidden = forbidden or status == 403
                    continue
                _log.warn(
                    "reading Secret {namespace}/{name} failed ({error}); keeping the copy"
                    " read last",
                    namespace=namespace,
                    name=name,
                    error=type(e).__name__,
                )
                continue
            obj["kind"] = "Secret"
            obj["apiVersion"] = "v1"
            self.held[(namespace, name)] = obj
        if forbidden and not self.forbidden:
            _log.warn("Secret get forbidden (403): the Secrets it denies are treated as absent")
        self.forbidden = forbidden
        self.rounds += 1
        self.deliver(self.kind, list(self.held.values()))
