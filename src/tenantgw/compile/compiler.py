"""
The one pure step from watched objects to a routing snapshot.

Both sources (a directory of manifests, a live cluster) hand this function
the same kind of input: plain Kubernetes objects as dicts.  It reads nothing
else and changes nothing, so every rule of the contract that concerns *which*
config serves (namespace selection, host ownership, ceilings, isolation,
last good config) is decided here and can be tested without a network.

Isolation is structural: a tenant's backends and Secrets are looked up only
in the index of its own namespace, so there is no code path by which a name
could resolve elsewhere.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import ipaddress
from collections import defaultdict
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from attrs import evolve, field, frozen

from tenantgw.compile.selector import MATCH_ALL, LabelSelector
from tenantgw.compile.snapshot import (
    STATE_ACCEPTED,
    STATE_CLAMPED,
    STATE_HOST_CONFLICT,
    STATE_REJECTED,
    CompiledAccess,
    CompiledBackend,
    CompiledRoute,
    CompiledTenant,
    Endpoint,
    Snapshot,
    TenantStatus,
    digest_api_key,
)
from tenantgw.config.errors import TenantConfigError
from tenantgw.config.model import Access, BackendRef, FieldError, Route, TenantSpec
from tenantgw.config.namespace import (
    NamespacePolicy,
    clamp_quota,
    host_allowed,
    parse_namespace_policy,
)
from tenantgw.config.parse import parse_tenant_yaml
from tenantgw.compile.precedence import in_precedence_order

KubeObject = Mapping[str, Any]

TENANT_LABEL = "tenantgw.io/tenant"
TENANT_KEY = "tenant.yaml"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@frozen
class CompileOptions:
    base_domain: Optional[str] = None
    namespace_selector: LabelSelector = field(default=MATCH_ALL)


def _meta(obj: KubeObject) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _labels(obj: KubeObject) -> Mapping[str, str]:
    labels = _meta(obj).get("labels")
    return labels if isinstance(labels, Mapping) else {}


def _age_key(obj: KubeObject) -> Tuple[str, str]:
    """Oldest first; the name breaks ties so the order never depends on event order."""
    meta = _meta(obj)
    return (str(meta.get("creationTimestamp") or "9999"), str(meta.get("name") or ""))


class _NamespaceIndex:
    """One namespace's objects; the only place a tenant's references resolve."""

    def __init__(self) -> None:
        self.config_maps: List[KubeObject] = []
        self.secrets: Dict[str, KubeObject] = {}
        self.services: Dict[str, KubeObject] = {}
        self.slices_by_service: Dict[str, List[KubeObject]] = defaultdict(list)


def _index(
    objects: Iterable[KubeObject],
) -> Tuple[Dict[str, KubeObject], Dict[str, _NamespaceIndex]]:
    namespaces: Dict[str, KubeObject] = {}
    by_namespace: Dict[str, _NamespaceIndex] = defaultdict(_NamespaceIndex)
    for obj in objects:
        kind = obj.get("kind")
        meta = _meta(obj)
        name = meta.get("name")
        if not isinstance(name, str):
            continue
        if kind == "Namespace":
            namespaces[name] = obj
            continue
        namespace = meta.get("namespace") or "default"
        index = by_namespace[namespace]
        if kind == "ConfigMap":
            if _labels(obj).get(TENANT_LABEL) == "true":
                index.config_maps.append(obj)
        elif kind == "Secret":
            index.secrets[name] = obj
        elif kind == "Service":
            index.services[name] = obj
        elif kind == "EndpointSlice":
            service = _labels(obj).get(SERVICE_NAME_LABEL)
            if service:
                index.slices_by_service[service].append(obj)
    return namespaces, by_namespace


@functools.lru_cache(maxsize=8192)
def _parse_cached(text: str) -> Union[TenantSpec, Tuple[FieldError, ...]]:
    """Parsing is pure, so an unchanged tenant.yaml is parsed once per process."""
    try:
        return parse_tenant_yaml(text)
    except TenantConfigError as e:
        return tuple(e.errors)


def _secret_values(secret: KubeObject) -> Dict[str, bytes]:
    values: Dict[str, bytes] = {}
    data = secret.get("data")
    if isinstance(data, Mapping):
        for key, value in data.items():
            if isinstance(value, str):
                try:
                    values[str(key)] = base64.b64decode(value, validate=True)
                except (binascii.Error, ValueError):
                    continue
    string_data = secret.get("stringData")
    if isinstance(string_data, Mapping):
        for key, value in string_data.items():
            if isinstance(value, str):
                values[str(key)] = value.encode("utf-8")
    return values


def _compile_access(
    access: Access, index: _NamespaceIndex, path: str, messages: List[str]
) -> CompiledAccess:
    """
    Missing or unusable Secrets fail closed: the scope keeps asking for
    credentials and no credential matches, and the tenant is told why.
    """
    realm = None
    users: Dict[str, bytes] = {}
    if access.basic_auth is not None:
        realm = access.basic_auth.realm
        secret = index.secrets.get(access.basic_auth.secret_name)
        if secret is None:
            messages.append(
                f"{path}.basicAuth.secretName: Secret {access.basic_auth.secret_name!r} not found"
                " in this namespace; requests are refused until it exists"
            )
        else:
            htpasswd = _secret_values(secret).get("auth", b"")
            for number, line in enumerate(htpasswd.decode("utf-8", "replace").splitlines(), 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                user, _, hashed = line.partition(":")
                if hashed.startswith(("$2y$", "$2b$", "$2a$")) and user:
                    users[user] = hashed.encode("ascii")
                else:
                    messages.append(
                        f"{path}.basicAuth: line {number} of Secret"
                        f" {access.basic_auth.secret_name!r} is not a bcrypt entry; ignored"
                    )
    digests = None
    if access.api_keys is not None:
        secret = index.secrets.get(access.api_keys.secret_name)
        if secret is None:
            messages.append(
                f"{path}.apiKeys.secretName: Secret {access.api_keys.secret_name!r} not found"
                " in this namespace; requests are refused until it exists"
            )
            digests = frozenset()
        else:
            digests = frozenset(
                digest_api_key(v.strip()) for v in _secret_values(secret).values() if v.strip()
            )
    return CompiledAccess(
        allow_cidrs=access.allow_cidrs,
        deny_cidrs=access.deny_cidrs,
        basic_auth_realm=realm,
        basic_auth_users=users,
        api_key_digests=digests,
    )


def _resolve_backend(
    backend: BackendRef, index: _NamespaceIndex, path: str, messages: List[str]
) -> CompiledBackend:
    service = index.services.get(backend.service)
    if service is None:
        messages.append(
            f"{path}.service: Service {backend.service!r} not found in this namespace;"
            " it receives no traffic"
        )
        return CompiledBackend(backend.service, 0, backend.weight, ())
    spec = service.get("spec") if isinstance(service.get("spec"), Mapping) else {}
    ports = spec.get("ports") if isinstance(spec.get("ports"), list) else []
    chosen: Optional[Mapping[str, Any]] = None
    for port in ports:
        if not isinstance(port, Mapping):
            continue
        if isinstance(backend.port, int) and port.get("port") == backend.port:
            chosen = port
        elif isinstance(backend.port, str) and port.get("name") == backend.port:
            chosen = port
        if chosen is not None:
            break
    if chosen is None:
        messages.append(
            f"{path}.port: Service {backend.service!r} has no port {backend.port!r};"
            " it receives no traffic"
        )
        return CompiledBackend(backend.service, 0, backend.weight, ())
    port_name = chosen.get("name") or ""
    tls = port_name == "https" or chosen.get("appProtocol") == "https"
    endpoints = set()
    for endpoint_slice in index.slices_by_service.get(backend.service, ()):
        if endpoint_slice.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
            continue
        slice_port = None
        for candidate in endpoint_slice.get("ports") or ():
            if isinstance(candidate, Mapping) and (candidate.get("name") or "") == port_name:
                slice_port = candidate.get("port")
                break
        if not isinstance(slice_port, int) or isinstance(slice_port, bool):
            continue
        for endpoint in endpoint_slice.get("endpoints") or ():
            if not isinstance(endpoint, Mapping):
                continue
            conditions = endpoint.get("conditions")
            ready = conditions.get("ready") if isinstance(conditions, Mapping) else None
            if ready is False:  # absent means ready, as in the EndpointSlice API
                continue
            for address in endpoint.get("addresses") or ():
                try:
                    ipaddress.ip_address(address)
                except (TypeError, ValueError):
                    continue
                endpoints.add(Endpoint(address, slice_port))
    return CompiledBackend(
        backend.service,
        int(chosen.get("port") or 0),
        backend.weight,
        tuple(sorted(endpoints, key=lambda e: (e.address, e.port))),
        tls=tls,
    )


def _compile_route(
    route: Route,
    position: int,
    tenant_access: CompiledAccess,
    index: _NamespaceIndex,
    messages: List[str],
) -> CompiledRoute:
    path = f"routes[{position}]"
    backends = tuple(
        _resolve_backend(b, index, f"{path}.backends[{i}]", messages)
        for i, b in enumerate(route.backends)
    )
    scopes = [tenant_access]
    if route.access is not None:
        scopes.append(_compile_access(route.access, index, f"{path}.access", messages))
    return CompiledRoute(route=route, backends=backends, access=tuple(scopes), rate=route.quota)


@frozen
class _Candidate:
    """A namespace's tenant before hosts are shared out between tenants."""

    namespace: str
    config_map: KubeObject
    spec: TenantSpec
    generation: str
    derived_host: Optional[str]
    claimed_hosts: Tuple[str, ...]
    policy: NamespacePolicy
    messages: Tuple[str, ...]
    rejected: bool


def _derived_host(namespace: str, options: CompileOptions) -> Optional[str]:
    if not options.base_domain:
        return None
    return f"{namespace}.{options.base_domain.strip('.').lower()}"


def _candidate(
    namespace: str,
    namespace_obj: KubeObject,
    index: _NamespaceIndex,
    options: CompileOptions,
    previous: Snapshot,
) -> Tuple[Optional[_Candidate], TenantStatus]:
    messages: List[str] = []
    config_maps = sorted(index.config_maps, key=_age_key)
    chosen = config_maps[0]
    chosen_name = str(_meta(chosen).get("name"))
    for extra in config_maps[1:]:
        messages.append(
            f"ConfigMap {_meta(extra).get('name')!r} ignored: {chosen_name!r} is older and"
            " only one Tenant ConfigMap per namespace is used"
        )
    annotations = _meta(namespace_obj).get("annotations")
    policy, policy_errors = parse_namespace_policy(
        annotations if isinstance(annotations, Mapping) else {}
    )
    errors: List[str] = [f"Namespace {namespace}: {e}" for e in policy_errors]
    data = chosen.get("data")
    text = data.get(TENANT_KEY) if isinstance(data, Mapping) else None
    spec: Optional[TenantSpec] = None
    generation = ""
    if not isinstance(text, str):
        errors.append(f"data.{TENANT_KEY}: required key missing")
    else:
        parsed = _parse_cached(text)
        generation = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
        if isinstance(parsed, TenantSpec):
            spec = parsed
            for i, host in enumerate(spec.hosts):
                if not host_allowed(host, policy.allowed_hosts):
                    errors.append(
                        f"hosts[{i}]: {host!r} is not among the hosts this namespace may claim"
                        " (annotation tenantgw.io/allowed-hosts)"
                    )
        else:
            errors.extend(str(e) for e in parsed)
    rejected = bool(errors)
    if rejected:
        last = previous.last_good.get(namespace)
        if last is None or policy_errors:
            # No good config to fall back to, or the operator's own policy is
            # unreadable: serving anything would guess at the operator's intent.
            status = TenantStatus(
                namespace, STATE_REJECTED, tuple(errors + messages), chosen_name, serving=False
            )
            return None, status
        generation, spec = last
        messages.insert(0, f"serving the last good config ({generation})")
        messages[0:0] = errors
    assert spec is not None
    claimed = tuple(h for h in spec.hosts if host_allowed(h, policy.allowed_hosts))
    candidate = _Candidate(
        namespace=namespace,
        config_map=chosen,
        spec=spec,
        generation=generation,
        derived_host=_derived_host(namespace, options),
        claimed_hosts=claimed,
        policy=policy,
        messages=tuple(messages),
        rejected=rejected,
    )
    return candidate, TenantStatus(
        namespace,
        STATE_REJECTED if rejected else STATE_ACCEPTED,
        tuple(messages),
        chosen_name,
        serving=True,
    )


def compile_snapshot(
    objects: Iterable[KubeObject],
    options: CompileOptions = CompileOptions(),
    previous: Snapshot = Snapshot(),
) -> Snapshot:
    """
    Builds the snapshot that should serve for C{objects}.  C{previous} is
    consulted only for each tenant's last good config.
    """
    namespaces, by_namespace = _index(objects)
    candidates: List[_Candidate] = []
    statuses: Dict[str, TenantStatus] = {}
    for namespace in sorted(namespaces):
        namespace_obj = namespaces[namespace]
        if not options.namespace_selector.matches(_labels(namespace_obj)):
            continue
        index = by_namespace.get(namespace)
        if index is None or not index.config_maps:
            continue
        candidate, status = _candidate(namespace, namespace_obj, index, options, previous)
        statuses[namespace] = status
        if candidate is not None:
            candidates.append(candidate)

    # Hosts: a derived host always belongs to its namespace; any other claim
    # goes to the oldest Tenant ConfigMap, the same on every replica and after
    # every restart.
    owner: Dict[str, _Candidate] = {}
    for candidate in candidates:
        if candidate.derived_host:
            owner[candidate.derived_host] = candidate
    conflicts: Dict[str, List[str]] = defaultdict(list)
    for candidate in sorted(candidates, key=lambda c: _age_key(c.config_map)):
        for host in candidate.claimed_hosts:
            holder = owner.get(host)
            if holder is None:
                owner[host] = candidate
            elif holder is not candidate:
                conflicts[candidate.namespace].append(
                    f"host {host!r} is already served by namespace {holder.namespace!r}"
                    " (an older Tenant ConfigMap, or its derived host)"
                )

    tenants: Dict[str, CompiledTenant] = {}
    exact: Dict[str, CompiledTenant] = {}
    wildcards: List[Tuple[str, CompiledTenant]] = []
    last_good: Dict[str, Tuple[str, TenantSpec]] = {}
    for candidate in candidates:
        namespace = candidate.namespace
        index = by_namespace[namespace]
        messages = list(candidate.messages)
        quota, clamp_warnings = clamp_quota(candidate.spec.quota, candidate.policy)
        messages.extend(clamp_warnings)
        tenant_access = _compile_access(candidate.spec.access, index, "access", messages)
        routes = in_precedence_order(
            (route, _compile_route(route, i, tenant_access, index, messages))
            for i, route in enumerate(candidate.spec.routes)
        )
        hosts = tuple(h for h, c in owner.items() if c is candidate)
        compiled = CompiledTenant(
            namespace=namespace,
            hosts=tuple(sorted(hosts)),
            spec=candidate.spec,
            quota=quota,
            routes=routes,
            access=tenant_access,
            generation=candidate.generation,
        )
        tenants[namespace] = compiled
        if not candidate.rejected:
            last_good[namespace] = (candidate.generation, candidate.spec)
        else:
            last_good[namespace] = previous.last_good[namespace]
        for host in hosts:
            if host.startswith("*."):
                wildcards.append((host[1:], compiled))
            else:
                exact[host] = compiled
        state = statuses[namespace].state
        lost = conflicts.get(namespace, [])
        messages.extend(lost)
        if state != STATE_REJECTED:
            state = STATE_HOST_CONFLICT if lost else STATE_CLAMPED if clamp_warnings else state
        statuses[namespace] = evolve(
            statuses[namespace], state=state, messages=tuple(messages), hosts=compiled.hosts
        )
    wildcards.sort(key=lambda pair: -len(pair[0]))
    return Snapshot(
        tenants=tenants,
        exact_hosts=exact,
        wildcard_hosts=tuple(wildcards),
        statuses=statuses,
        last_good=last_good,
    )


__all__ = ["STATE_ACCEPTED", "CompileOptions", "compile_snapshot"]
