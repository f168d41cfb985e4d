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

import datetime
import functools
import hashlib
import ipaddress
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from attrs import evolve, field, frozen

from tenantgw.compile.gateway_api import (
    compile_gateway_api,
    gateway_listener_certificates,
    with_lost_hosts,
)
from tenantgw.compile.hosts import SCHEMES, HostClaim, PlacedRoute, routes_by_host, share_hosts
from tenantgw.compile.ingress import compile_ingresses
from tenantgw.compile.lowering import plan_route
from tenantgw.compile.precedence import in_precedence_order
from tenantgw.compile.selector import MATCH_ALL, LabelSelector
from tenantgw.config.errors import TenantConfigError
from tenantgw.config.model import TLS, Access, BackendRef, FieldError, Route, TenantSpec
from tenantgw.config.namespace import (
    ALLOWED_HOSTS_ANNOTATION,
    NamespacePolicy,
    clamp_quota,
    host_allowed,
    parse_namespace_policy,
)
from tenantgw.config.parse import parse_tenant_yaml
from tenantgw.plans.routes import AccessPlan, BackendPlan, Endpoint, RoutePlan, digest_api_key
from tenantgw.plans.snapshot import (
    ANY_HOST,
    EMPTY_SNAPSHOT,
    STATE_ACCEPTED,
    STATE_CERTIFICATE_ERROR,
    STATE_CLAMPED,
    STATE_HOST_CONFLICT,
    STATE_REJECTED,
    Snapshot,
    TenantPlan,
    TenantStatus,
)
from tenantgw.tls.certificates import (
    CertificateProblem,
    ServingCertificate,
    check_dates,
    load_certificate,
)
from tenantgw.translators.gateway_api import GatewayApiOptions
from tenantgw.translators.ingress import IngressOptions
from tenantgw.translators.objects import (
    KubeObject,
    age_key,
    labels_of,
    meta,
    secret_values,
    timestamp_key,
)

TENANT_LABEL = "tenantgw.io/tenant"
TENANT_KEY = "tenant.yaml"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@frozen
class CompileOptions:
    base_domain: str | None = None
    namespace_selector: LabelSelector = field(default=MATCH_ALL)
    # --default-cert-secret: the operator's certificate for handshakes that
    # name no tenant's host; read from any namespace, unlike tenants' Secrets.
    default_certificate_secret: tuple[str, str] | None = None
    gateway_api: GatewayApiOptions = field(factory=GatewayApiOptions)
    ingress: IngressOptions = field(factory=IngressOptions)


def _age_key(obj: KubeObject) -> tuple[str, str]:
    """Oldest first; the name breaks ties so the order never depends on event order."""
    fields = meta(obj)
    return (timestamp_key(fields.get("creationTimestamp")), str(fields.get("name") or ""))


class _NamespaceIndex:
    """One namespace's objects; the only place a tenant's references resolve."""

    namespace = ""

    def __init__(self) -> None:
        self.config_maps: list[KubeObject] = []
        self.secrets: dict[str, KubeObject] = {}
        self.services: dict[str, KubeObject] = {}
        self.slices_by_service: dict[str, list[KubeObject]] = defaultdict(list)

    @classmethod
    def empty(cls, namespace: str) -> _NamespaceIndex:
        index = cls()
        index.namespace = namespace
        return index


def _index(
    objects: Iterable[KubeObject],
) -> tuple[dict[str, KubeObject], dict[str, _NamespaceIndex]]:
    namespaces: dict[str, KubeObject] = {}
    by_namespace: dict[str, _NamespaceIndex] = defaultdict(_NamespaceIndex)
    for obj in objects:
        kind = obj.get("kind")
        fields = meta(obj)
        name = fields.get("name")
        if not isinstance(name, str):
            continue
        if kind == "Namespace":
            namespaces[name] = obj
            continue
        namespace = fields.get("namespace") or "default"
        if not isinstance(namespace, str):
            # A hand-written manifest may hold anything here (a list is not
            # even hashable); one bad object must not take the compile down.
            continue
        index = by_namespace[namespace]
        index.namespace = namespace
        if kind == "ConfigMap":
            if labels_of(obj).get(TENANT_LABEL) == "true":
                index.config_maps.append(obj)
        elif kind == "Secret":
            index.secrets[name] = obj
        elif kind == "Service":
            index.services[name] = obj
        elif kind == "EndpointSlice":
            service = labels_of(obj).get(SERVICE_NAME_LABEL)
            if isinstance(service, str) and service:
                index.slices_by_service[service].append(obj)
    return namespaces, by_namespace


@functools.lru_cache(maxsize=8192)
def parse_cached(text: str) -> TenantSpec | tuple[FieldError, ...]:
    """Parsing is pure, so an unchanged tenant.yaml is parsed once per process."""
    try:
        return parse_tenant_yaml(text)
    except TenantConfigError as e:
        return tuple(e.errors)


def _compile_access(
    access: Access, index: _NamespaceIndex, path: str, messages: list[str]
) -> AccessPlan:
    """
    Missing or unusable Secrets fail closed: the scope keeps asking for
    credentials and no credential matches, and the tenant is told why.
    """
    realm = None
    users: dict[str, bytes] = {}
    if access.basic_auth is not None:
        realm = access.basic_auth.realm
        secret = index.secrets.get(access.basic_auth.secret_name)
        if secret is None:
            messages.append(
                f"{path}.basicAuth.secretName: Secret {access.basic_auth.secret_name!r} not found"
                " in this namespace; requests are refused until it exists"
            )
        else:
            htpasswd = secret_values(secret).get("auth")
            if htpasswd is None:
                # Fails closed, and says so: otherwise the tenant could not
                # learn why every login fails.
                messages.append(
                    f"{path}.basicAuth.secretName: Secret {access.basic_auth.secret_name!r}"
                    " has no 'auth' key; requests are refused until it has one"
                )
                htpasswd = b""
            for number, line in enumerate(htpasswd.decode("utf-8", "replace").splitlines(), 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                user, _, hashed = line.partition(":")
                # isascii(): a non-ASCII byte in a hash must not abort the compile.
                if hashed.startswith(("$2y$", "$2b$", "$2a$")) and hashed.isascii() and user:
                    users[user] = hashed.encode("ascii")
                else:
                    messages.append(
                        f"{path}.basicAuth: line {number} of Secret"
                        f" {access.basic_auth.secret_name!r} is not a bcrypt entry; ignored"
                    )
    digests: frozenset[bytes] | None = None
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
                digest_api_key(v.strip()) for v in secret_values(secret).values() if v.strip()
            )
    return AccessPlan(
        allow_cidrs=access.allow_cidrs,
        deny_cidrs=access.deny_cidrs,
        basic_auth_realm=realm,
        basic_auth_users=users,
        api_key_digests=digests,
    )


def _list(value: Any) -> list[Any]:
    """
    A list field of a watched object, or nothing.

    Anything but a list reads as empty: a hand-written EndpointSlice with
    C{ports: 5} must not take the whole compile (and the source's poll loop)
    down.
    """
    return value if isinstance(value, list) else []


def _ip_text(address: Any) -> str | None:
    """
    An endpoint address in canonical text form, or L{None} if it is not one.

    Only strings are addresses (C{ipaddress.ip_address()} also accepts
    integers, so an unquoted YAML number would become an endpoint), and they
    are returned in canonical form so that C{2001:DB8::1} and C{2001:db8::1}
    from two slices merge into one endpoint.
    """
    if not isinstance(address, str):
        return None
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def _where(backend: BackendRef, index: _NamespaceIndex) -> str:
    return "this namespace" if backend.namespace is None else f"namespace {index.namespace!r}"


def _resolve_backend(
    backend: BackendRef, index: _NamespaceIndex, path: str, messages: list[str]
) -> BackendPlan:
    service = index.services.get(backend.service)
    if service is None:
        messages.append(
            f"{path}.service: Service {backend.service!r} not found in"
            f" {_where(backend, index)};"
            " it receives no traffic"
        )
        return BackendPlan(backend.service, 0, backend.weight, ())
    raw_spec = service.get("spec")
    spec: Mapping[str, Any] = raw_spec if isinstance(raw_spec, Mapping) else {}
    ports = _list(spec.get("ports"))
    chosen: Mapping[str, Any] | None = None
    for port in ports:
        if not isinstance(port, Mapping):
            continue
        if (isinstance(backend.port, int) and port.get("port") == backend.port) or (
            isinstance(backend.port, str) and port.get("name") == backend.port
        ):
            chosen = port
        if chosen is not None:
            break
    if chosen is None:
        messages.append(
            f"{path}.port: Service {backend.service!r} in {_where(backend, index)} has no port"
            f" {backend.port!r};"
            " it receives no traffic"
        )
        return BackendPlan(backend.service, 0, backend.weight, ())
    port_name = chosen.get("name") or ""
    protocol = _INGRESS_PROTOCOLS.get(backend.protocol or "") or backend_protocol(
        port_name, chosen.get("appProtocol")
    )
    tls_name = f"{backend.service}.{index.namespace}.svc" if protocol == "tls" else None
    endpoints = set()
    for endpoint_slice in index.slices_by_service.get(backend.service, ()):
        if endpoint_slice.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
            continue
        slice_port = None
        for candidate in _list(endpoint_slice.get("ports")):
            if isinstance(candidate, Mapping) and (candidate.get("name") or "") == port_name:
                slice_port = candidate.get("port")
                break
        if not isinstance(slice_port, int) or isinstance(slice_port, bool):
            continue
        for endpoint in _list(endpoint_slice.get("endpoints")):
            if not isinstance(endpoint, Mapping):
                continue
            conditions = endpoint.get("conditions")
            ready = conditions.get("ready") if isinstance(conditions, Mapping) else None
            if ready is False:  # absent means ready, as in the EndpointSlice API
                continue
            for address in _list(endpoint.get("addresses")):
                normalized = _ip_text(address)
                if normalized is not None:
                    endpoints.add(Endpoint(normalized, slice_port))
    service_port = chosen.get("port")
    if not isinstance(service_port, int) or isinstance(service_port, bool):
        service_port = 0  # a malformed Service port must not abort the compile
    return BackendPlan(
        backend.service,
        service_port,
        backend.weight,
        tuple(sorted(endpoints, key=lambda e: (e.address, e.port))),
        tls_name=tls_name,
        protocol=protocol,
    )


# appProtocol values (and port names) that mean HTTP/2 without TLS.
_H2C_APP_PROTOCOLS = frozenset({"kubernetes.io/h2c", "h2c", "grpc"})
_H2C_PORT_NAMES = frozenset({"grpc", "h2c"})


# ingress-nginx backend-protocol, which overrides what the Service port says.
# GRPCS and HTTPS are TLS with ALPN h2 offered: a gRPC server picks h2.
_INGRESS_PROTOCOLS = {"HTTP": "h1", "H2C": "h2c", "GRPC": "h2c", "HTTPS": "tls", "GRPCS": "tls"}


def backend_protocol(port_name: str, app_protocol: object) -> str:
    """
    What a Service port speaks (contract section 11): "tls" for a port named
    ``https`` or with ``appProtocol: https``; "h2c" for ``appProtocol:
    kubernetes.io/h2c`` (or ``h2c``, ``grpc``), or a port named ``grpc`` or
    ``h2c`` or starting ``grpc-`` or ``h2c-`` (Istio's naming convention,
    which many gRPC charts follow); "h1" otherwise.  Another appProtocol
    (``http``, ``kubernetes.io/ws``) wins over a gRPC-like name.
    """
    app = app_protocol if isinstance(app_protocol, str) else ""
    if port_name == "https" or app == "https":
        return "tls"
    if app in _H2C_APP_PROTOCOLS:
        return "h2c"
    if app:
        return "h1"
    if port_name in _H2C_PORT_NAMES or port_name.startswith(("grpc-", "h2c-")):
        return "h2c"
    return "h1"


def _compile_route(
    route: Route,
    path: str,
    tenant_access: AccessPlan,
    index: _NamespaceIndex,
    messages: list[str],
    by_namespace: Mapping[str, _NamespaceIndex] | None = None,
) -> RoutePlan:
    """
    C{path} names where the route was declared (C{routes[2]}).  A backend in
    another namespace (a Gateway API backendRef the translator found a
    ReferenceGrant for) resolves in that namespace's index, and only there.
    """

    def resolve(backend: BackendRef, where: str) -> BackendPlan:
        target = index
        if backend.namespace is not None and backend.namespace != index.namespace:
            target = (by_namespace or {}).get(backend.namespace) or _NamespaceIndex.empty(
                backend.namespace
            )
        return _resolve_backend(backend, target, where, messages)

    backends = [resolve(b, f"{path}.backends[{i}]") for i, b in enumerate(route.backends)]
    mirrors = [
        (resolve(m.backend, f"{path}.mirrors[{i}]"), m.percent) for i, m in enumerate(route.mirrors)
    ]
    scopes = [tenant_access]
    if route.access is not None:
        scopes.append(_compile_access(route.access, index, f"{path}.access", messages))
    return plan_route(route, tuple(backends), tuple(scopes), tuple(mirrors), path)


@frozen
class _Candidate:
    """A namespace's tenant before hosts are shared out between tenants."""

    namespace: str
    config_map: KubeObject | None  # None: the namespace has only Gateway API routes
    spec: TenantSpec
    generation: str
    derived_host: str | None
    claimed_hosts: tuple[str, ...]
    policy: NamespacePolicy
    messages: tuple[str, ...]
    rejected: bool


def _may_claim(host: str, namespace: str, policy: NamespacePolicy, options: CompileOptions) -> bool:
    """A tenant may always name its own derived host; anything else needs an allowance."""
    return host == _derived_host(namespace, options) or host_allowed(host, policy.allowed_hosts)


def _derived_host(namespace: str, options: CompileOptions) -> str | None:
    if not options.base_domain:
        return None
    return f"{namespace}.{options.base_domain.strip('.').lower()}"


def _namespace_policy(
    namespace_obj: KubeObject,
) -> tuple[NamespacePolicy, tuple[FieldError, ...], tuple[FieldError, ...]]:
    """
    The operator's policy, its fatal errors (an unreadable ceiling) and its
    warnings (an unreadable allowed-hosts entry).

    Fix 1: annotation values are coerced to strings first.  Kubernetes only
    ever has strings there, but a hand-written manifest in a directory source
    (C{tenantgw.io/max-burst: 20}, unquoted) gave C{parse_namespace_policy} an
    C{int}, whose missing C{.strip()} raised AttributeError and aborted the
    compile -- and with it the source's poll loop.  As strings, C{20} parses
    and C{true} or an empty value is reported like any other bad ceiling.

    Fix 2: an unreadable allowed-hosts entry is a warning, not a rejection.
    C{parse_namespace_policy} drops such an entry on purpose ("which can only
    narrow what the tenant may claim"); treating it as fatal took a tenant
    down entirely -- even its derived host and its last good config -- for an
    operator typo in a list that only ever widens what it may serve.  A
    malformed ceiling stays fatal: serving without it would lift the limit.
    """
    raw = meta(namespace_obj).get("annotations")
    annotations = {
        str(key): value if isinstance(value, str) else ("" if value is None else str(value))
        for key, value in (raw.items() if isinstance(raw, Mapping) else ())
    }
    policy, problems = parse_namespace_policy(annotations)
    allowed_hosts_path = f'metadata.annotations["{ALLOWED_HOSTS_ANNOTATION}"]'
    warnings = tuple(p for p in problems if p.path == allowed_hosts_path)
    errors = tuple(p for p in problems if p.path != allowed_hosts_path)
    return policy, errors, warnings


def _candidate(
    namespace: str,
    namespace_obj: KubeObject,
    index: _NamespaceIndex,
    options: CompileOptions,
    previous: Snapshot,
) -> tuple[_Candidate | None, TenantStatus]:
    messages: list[str] = []
    config_maps = sorted(index.config_maps, key=_age_key)
    chosen = config_maps[0]
    chosen_name = str(meta(chosen).get("name"))
    for extra in config_maps[1:]:
        messages.append(
            f"ConfigMap {meta(extra).get('name')!r} ignored: {chosen_name!r} is older and"
            " only one Tenant ConfigMap per namespace is used"
        )
    policy, policy_errors, policy_warnings = _namespace_policy(namespace_obj)
    messages.extend(f"Namespace {namespace}: {e}" for e in policy_warnings)
    errors: list[str] = [f"Namespace {namespace}: {e}" for e in policy_errors]
    data = chosen.get("data")
    text = data.get(TENANT_KEY) if isinstance(data, Mapping) else None
    spec: TenantSpec | None = None
    generation = ""
    if not isinstance(text, str):
        errors.append(f"data.{TENANT_KEY}: required key missing")
    else:
        parsed = parse_cached(text)
        generation = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
        if isinstance(parsed, TenantSpec):
            spec = parsed
            for i, host in enumerate(spec.hosts):
                if not _may_claim(host, namespace, policy, options):
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
    claimed = tuple(h for h in spec.hosts if _may_claim(h, namespace, policy, options))
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


def _gateway_only_candidate(
    namespace: str, namespace_obj: KubeObject, options: CompileOptions
) -> tuple[_Candidate | None, TenantStatus]:
    """
    A namespace with Gateway API routes and no Tenant ConfigMap is a tenant
    all the same: the operator's ceilings bind it, and its hosts come from
    the listeners that admit it.
    """
    policy, policy_errors, policy_warnings = _namespace_policy(namespace_obj)
    messages = [f"Namespace {namespace}: {e}" for e in policy_warnings]
    if policy_errors:
        errors = [f"Namespace {namespace}: {e}" for e in policy_errors]
        return None, TenantStatus(namespace, STATE_REJECTED, tuple(errors + messages))
    candidate = _Candidate(
        namespace=namespace,
        config_map=None,
        spec=TenantSpec(),
        generation="gateway-api",
        derived_host=_derived_host(namespace, options),
        claimed_hosts=(),
        policy=policy,
        messages=tuple(messages),
        rejected=False,
    )
    return candidate, TenantStatus(namespace, STATE_ACCEPTED, tuple(messages), serving=True)


def _tenant_certificates(
    tls: TLS | None,
    index: _NamespaceIndex,
    hosts: tuple[str, ...],
    now: datetime.datetime,
    certificates: dict[str, ServingCertificate],
    messages: list[str],
    on_date: Callable[[datetime.datetime], None] | None = None,
) -> bool:
    """
    Records the tenant's certificate for each of its hosts it covers, and
    returns whether anything is wrong.  A host the certificate does not
    cover is still served over plain HTTP and gets the default certificate
    over HTTPS: one bad name must not take the tenant's other hosts down.
    """
    if tls is None:
        return False
    secret = index.secrets.get(tls.secret_name)
    if secret is None:
        messages.append(
            f"tls.secretName: Secret {tls.secret_name!r} not found in this namespace;"
            " HTTPS uses the default certificate"
        )
        return True
    values = secret_values(secret)
    try:
        certificate = load_certificate(values.get("tls.crt", b""), values.get("tls.key", b""))
        if on_date is not None:
            _record_dates(certificate, now, on_date)
        check_dates(certificate, now)
    except CertificateProblem as e:
        messages.append(f"tls.secretName: Secret {tls.secret_name!r}: {e}")
        return True
    uncovered = [host for host in hosts if not certificate.covers(host)]
    for host in hosts:
        if host not in uncovered:
            certificates[host] = certificate
    if uncovered:
        messages.append(
            f"tls.secretName: the certificate in Secret {tls.secret_name!r} does not cover"
            f" {', '.join(repr(h) for h in sorted(uncovered))}; those hosts get the default"
            " certificate over HTTPS"
        )
    return bool(uncovered)


def _record_dates(
    certificate: ServingCertificate,
    now: datetime.datetime,
    on_date: Callable[[datetime.datetime], None],
) -> None:
    """The next moment this certificate's verdict changes (valid, expired), if any."""
    if certificate.not_before > now:
        on_date(certificate.not_before)
    elif certificate.not_after > now:
        on_date(certificate.not_after)


class CompileTrace:
    """
    What a compile learnt besides the snapshot, for the incremental compiler
    (L{tenantgw.compile.incremental}): every namespace's host claims, and per
    namespace the next moment one of its certificates turns valid or expires,
    after which its plan is stale even though no object changed.
    """

    def __init__(self) -> None:
        self.claims: dict[str, list[HostClaim]] = defaultdict(list)
        self.dates: dict[str, datetime.datetime] = {}
        self.tenants_compiled = 0

    def date(self, namespace: str) -> Callable[[datetime.datetime], None]:
        def record(when: datetime.datetime) -> None:
            current = self.dates.get(namespace)
            if current is None or when < current:
                self.dates[namespace] = when

        return record


def _default_certificate(
    reference: tuple[str, str] | None,
    by_namespace: Mapping[str, _NamespaceIndex],
    now: datetime.datetime,
    on_date: Callable[[datetime.datetime], None] | None = None,
) -> dict[str, Any]:
    if reference is None:
        return {}
    namespace, name = reference
    index = by_namespace.get(namespace)
    secret = index.secrets.get(name) if index is not None else None
    if secret is None:
        return {"default_certificate_problem": f"Secret {namespace}/{name} not found"}
    values = secret_values(secret)
    try:
        certificate = load_certificate(values.get("tls.crt", b""), values.get("tls.key", b""))
        if on_date is not None:
            _record_dates(certificate, now, on_date)
        check_dates(certificate, now)
    except CertificateProblem as e:
        return {"default_certificate_problem": f"Secret {namespace}/{name}: {e}"}
    return {"default_certificate": certificate}


def compile_snapshot(
    objects: Iterable[KubeObject],
    options: CompileOptions = CompileOptions(),
    previous: Snapshot = EMPTY_SNAPSHOT,
    now: datetime.datetime | None = None,
    trace: CompileTrace | None = None,
) -> Snapshot:
    """
    Builds the snapshot that should serve for C{objects}.  C{previous} is
    consulted only for the last good configs (tenant.yaml, Gateway API
    routes); C{now} (default: the current time) only for certificate
    validity.  C{trace}, when given, is told what the incremental compiler
    needs to know to recompile only some namespaces later.
    """
    if trace is None:
        trace = CompileTrace()
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc)
    objects = list(objects)
    namespaces, by_namespace = _index(objects)
    selected = {
        ns for ns, obj in namespaces.items() if options.namespace_selector.matches(labels_of(obj))
    }
    gateway_api = compile_gateway_api(objects, selected, options.gateway_api, previous)
    ingress = compile_ingresses(objects, selected, options.ingress)
    candidates: list[_Candidate] = []
    statuses: dict[str, TenantStatus] = {}
    reserved: dict[str, str] = {}
    for namespace in sorted(selected):
        namespace_obj = namespaces[namespace]
        derived = _derived_host(namespace, options)
        if derived:
            reserved[derived] = namespace
        index = by_namespace.get(namespace)
        if index is not None and index.config_maps:
            candidate, status = _candidate(namespace, namespace_obj, index, options, previous)
        elif namespace in gateway_api.routes or namespace in ingress.routes:
            candidate, status = _gateway_only_candidate(namespace, namespace_obj, options)
        elif namespace in gateway_api.messages or namespace in ingress.messages:
            # Only refused Gateway API routes: nothing to serve, but the
            # namespace's status says why.
            statuses[namespace] = TenantStatus(
                namespace,
                STATE_REJECTED,
                (*gateway_api.messages.get(namespace, ()), *ingress.messages.get(namespace, ())),
            )
            continue
        else:
            continue
        statuses[namespace] = status
        if candidate is not None:
            candidates.append(candidate)

    # Hosts: a derived host always belongs to its namespace; any other claim
    # goes to the oldest claiming object, whatever its dialect, the same on
    # every replica and after every restart (compile.hosts).
    #
    # Derived hosts are reserved for every selected namespace, serving or
    # not: otherwise, while one tenant is rejected (or has no ConfigMap yet),
    # another allowed a covering host could claim "<ns>.<base-domain>" and
    # receive that namespace's traffic.
    serving = {c.namespace for c in candidates}
    claims: list[HostClaim] = []
    for candidate in candidates:
        if candidate.config_map is not None:
            age = age_key(candidate.config_map)
            origin = f"ConfigMap {meta(candidate.config_map).get('name')}"
            claims.extend(
                HostClaim(age, candidate.namespace, h, origin) for h in candidate.claimed_hosts
            )
    for namespace, translated_routes in gateway_api.routes.items():
        if namespace in serving:
            for route_on_hosts in translated_routes:
                claims.extend(
                    HostClaim(route_on_hosts.order[:3], namespace, h, str(route_on_hosts.origin))
                    for h in route_on_hosts.hosts
                )
    # Ingress hosts need the namespace's allowance, as tenant.yaml hosts do;
    # a rule without a host would catch every host nobody else serves.
    ingress_refusals: dict[str, list[str]] = defaultdict(list)
    ingress_hosts: dict[str, dict[int, tuple[str, ...]]] = defaultdict(dict)
    policies = {c.namespace: c.policy for c in candidates}
    for namespace, ingress_routes in ingress.routes.items():
        if namespace not in serving:
            continue
        for position, ingress_route in enumerate(ingress_routes):
            allowed = []
            for host in ingress_route.hosts:
                if host == ANY_HOST:
                    ingress_refusals[namespace].append(
                        f"{ingress_route.source}: a rule without"
                        " host would serve every host; give the rule a host"
                    )
                elif _may_claim(host, namespace, policies[namespace], options):
                    allowed.append(host)
                else:
                    ingress_refusals[namespace].append(
                        f"{ingress_route.origin}: host {host!r} is not among the hosts this"
                        " namespace may claim (annotation tenantgw.io/allowed-hosts)"
                    )
            ingress_hosts[namespace][position] = tuple(allowed)
            claims.extend(
                HostClaim(ingress_route.order[:3], namespace, h, str(ingress_route.origin))
                for h in allowed
            )
    for claim in claims:
        trace.claims[claim.namespace].append(claim)
    ownership = share_hosts(
        claims,
        {c.derived_host: c.namespace for c in candidates if c.derived_host},
        reserved,
    )
    hosts_of: dict[str, list[str]] = defaultdict(list)
    for host, holder in ownership.owner.items():
        hosts_of[holder].append(host)

    tenants: dict[str, TenantPlan] = {}
    exact: dict[str, TenantPlan] = {}
    wildcards: list[tuple[str, TenantPlan]] = []
    catch_all: TenantPlan | None = None
    last_good: dict[str, tuple[str, TenantSpec]] = {}
    certificates: dict[str, ServingCertificate] = {}
    for candidate in candidates:
        namespace = candidate.namespace
        trace.tenants_compiled += 1
        index = by_namespace.get(namespace) or _NamespaceIndex.empty(namespace)
        messages = list(candidate.messages)
        quota, clamp_warnings = clamp_quota(candidate.spec.quota, candidate.policy)
        messages.extend(clamp_warnings)
        tenant_access = _compile_access(candidate.spec.access, index, "access", messages)
        declared = [
            _compile_route(route, f"routes[{i}]", tenant_access, index, messages)
            for i, route in enumerate(candidate.spec.routes)
        ]
        routes = in_precedence_order(zip(candidate.spec.routes, declared))
        owned = hosts_of[namespace]
        hosts = tuple(h for h in owned if h != ANY_HOST)
        host_routes: dict[tuple[str, str], tuple[RoutePlan, ...]] = {}
        translated = gateway_api.routes.get(namespace, ()) if namespace in serving else ()
        from_ingress = ingress.routes.get(namespace, ()) if namespace in serving else ()
        if translated or from_ingress:
            config_hosts = frozenset(candidate.claimed_hosts) | (
                {candidate.derived_host} if candidate.derived_host else set()
            )
            placed = [
                PlacedRoute(
                    plan,
                    route.match,
                    config_hosts & frozenset(owned),
                    frozenset(SCHEMES),
                    ("", i),
                )
                for i, (route, plan) in enumerate(zip(candidate.spec.routes, declared))
            ]
            compiled_translated = []
            for position, t in enumerate(translated):
                lost = ownership.lost.get(str(t.origin), frozenset())
                keys = frozenset(h for h in t.hosts if h not in lost and h in owned)
                if not keys:
                    continue
                compiled = _compile_route(
                    t.route, t.source, tenant_access, index, messages, by_namespace
                )
                compiled_translated.append(compiled)
                placed.append(
                    PlacedRoute(
                        compiled,
                        t.route.match,
                        keys,
                        frozenset({t.scheme}),
                        ("~", t.order, position),
                    )
                )
            for position, r in enumerate(from_ingress):
                lost = ownership.lost.get(str(r.origin), frozenset())
                keys = frozenset(
                    h
                    for h in ingress_hosts[namespace].get(position, ())
                    if h not in lost and h in owned
                )
                if not keys:
                    continue
                compiled = _compile_route(r.route, r.source, tenant_access, index, messages)
                compiled_translated.append(compiled)
                placed.append(
                    PlacedRoute(
                        compiled, r.route.match, keys, frozenset(SCHEMES), ("~", r.order, position)
                    )
                )
            host_routes = routes_by_host(placed, sorted(owned))
            routes = routes + tuple(compiled_translated)
        tls_problems = _tenant_certificates(
            candidate.spec.tls, index, hosts, now, certificates, messages, trace.date(namespace)
        )
        redirect_hosts = set(
            h
            for h in hosts
            if h in certificates
            and candidate.spec.tls is not None
            and candidate.spec.tls.http_redirect
        )
        for entry in ingress.tls.get(namespace, ()) if namespace in serving else ():
            covered = tuple(h for h in entry.hosts if h in owned)
            problem = _tenant_certificates(
                TLS(entry.secret_name),
                index,
                covered,
                now,
                certificates,
                messages,
                trace.date(namespace),
            )
            tls_problems = tls_problems or problem
        for r in from_ingress:
            for host in r.hosts:
                if host in owned and (
                    r.force_ssl_redirect or (r.ssl_redirect and host in certificates)
                ):
                    redirect_hosts.add(host)
        messages.extend(ingress_refusals.get(namespace, ()))
        messages.extend(ingress.messages.get(namespace, ()))
        compiled_tenant = TenantPlan(
            namespace=namespace,
            hosts=tuple(sorted(hosts)),
            quota=quota,
            routes=routes,
            access=tenant_access,
            generation=candidate.generation,
            https_hosts=frozenset(h for h in hosts if h in certificates),
            redirect_hosts=frozenset(redirect_hosts),
            host_routes=host_routes,
        )
        tenants[namespace] = compiled_tenant
        if candidate.config_map is not None:
            if not candidate.rejected:
                last_good[namespace] = (candidate.generation, candidate.spec)
            else:
                last_good[namespace] = previous.last_good[namespace]
        for host in owned:
            if host == ANY_HOST:
                catch_all = compiled_tenant
            elif host.startswith("*."):
                wildcards.append((host[1:], compiled_tenant))
            else:
                exact[host] = compiled_tenant
        state = statuses[namespace].state
        lost_messages = list(ownership.conflicts.get(namespace, ()))
        messages.extend(lost_messages)
        messages.extend(gateway_api.messages.get(namespace, ()))
        if state != STATE_REJECTED:
            if lost_messages:
                state = STATE_HOST_CONFLICT
            elif tls_problems:
                state = STATE_CERTIFICATE_ERROR
            elif clamp_warnings:
                state = STATE_CLAMPED
        statuses[namespace] = evolve(
            statuses[namespace], state=state, messages=tuple(messages), hosts=compiled_tenant.hosts
        )
    # Longest first; no two tenants own one suffix, so the suffix makes the
    # order total, the same whichever namespaces were compiled together.
    wildcards.sort(key=lambda pair: (-len(pair[0]), pair[0]))
    listener_certificates = gateway_listener_certificates(gateway_api, by_namespace, now)
    return Snapshot(
        tenants=tenants,
        exact_hosts=exact,
        wildcard_hosts=tuple(wildcards),
        statuses=statuses,
        last_good=last_good,
        # Unowned derived hosts answer 404 instead of falling to a wildcard.
        reserved_hosts=frozenset(h for h in reserved if h not in ownership.owner),
        certificates=certificates,
        listener_certificates=listener_certificates.by_host,
        catch_all=catch_all,
        object_statuses=with_lost_hosts(
            listener_certificates.statuses, ownership.lost, gateway_api
        ),
        last_good_objects=gateway_api.last_good_objects,
        **_default_certificate(
            options.default_certificate_secret, by_namespace, now, trace.date("")
        ),
    )


__all__ = ["STATE_ACCEPTED", "CompileOptions", "CompileTrace", "compile_snapshot"]
