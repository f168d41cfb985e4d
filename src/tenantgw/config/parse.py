"""
Turn a tenant's ``tenant.yaml`` into a validated L{TenantSpec}, or refuse it
with every reason at once (L{TenantConfigError}).

The file is written by someone we do not trust and read by a process that
serves every tenant, so the parser's job is to make sure that whatever gets
past it is plain, bounded data with no way to reach outside the tenant's
namespace or into anyone's HTTP framing.  It is strict on purpose: an unknown
field is far more often a typo that silently disables a protection
(``allowCidrs``) than a feature from the future.

Where the contract is silent we chose these bounds (the constants below),
mostly taken from Gateway API or from what nginx/Envoy accept:

==========================================  =================================
tenant.yaml size                            1 MiB, at most 100,000 values,
                                            nesting at most 32 levels; no
                                            YAML anchors/aliases, merge keys
                                            or duplicate keys
hosts, routes, CIDRs per list               100, 1000, 1000
backends per route                          1..16 (as Gateway API)
methods, header and query matches           16 each
header set/add/remove entries               64 each
backends[].weight                           0..1,000,000 (as Gateway API);
                                            all zero is valid (503)
requestsPerSecond                           > 0 and <= 1e9, float allowed
burst, maxConcurrentRequests                1..1e9 (burst defaults to
                                            ceil(requestsPerSecond))
maxRequestBodyBytes                         0..2**63-1
timeoutSeconds                              > 0 and <= 3600
retries.attempts                            0..10
healthCheck.intervalSeconds                 1..300
healthCheck thresholds                      1..100
cache.maxAgeSeconds                         1..86400
cache.maxBodyBytes                          1..64 MiB
basicAuth.realm                             1..64 printable ASCII, no " or \\
header values                               ASCII, no control characters,
                                            at most 4096 characters
==========================================  =================================

Header edits may not touch C{host} (use C{rewrite.host}) nor the headers
that frame a message or manage the connection (C{content-length},
C{transfer-encoding}, C{connection}, ...): those belong to the gateway, and
letting a tenant set them is how request smuggling starts.

Other choices: hosts may not be IP literals or carry a port, and a wildcard
is only a whole leftmost label; paths follow Gateway API (no dot segments,
no C{//}, no encoded slash); a redirect must change something (else it
loops) and excludes C{rewrite}; a header or query match may not name the
same parameter twice (the route could never match); a value written where
a string is expected must be a string (YAML reads C{yes} as true).

A route without a C{name} is named C{route-<index>} after its position in
C{routes} (see L{_default_route_name}); given names must be unique DNS-1123
labels.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Hashable, Mapping
from functools import partial
from typing import Any, Protocol, TypeVar

import yaml
from attrs import evolve
from yaml.nodes import MappingNode

from tenantgw.config import names
from tenantgw.config.checker import Checker, Section, describe, or_default
from tenantgw.config.errors import TenantConfigError
from tenantgw.config.model import (
    LB_POLICIES,
    LB_ROUND_ROBIN,
    PATH_PREFIX,
    PATH_TYPES,
    REDIRECT_STATUSES,
    TLS,
    Access,
    BackendRef,
    BasicAuthRef,
    Cache,
    FieldError,
    HeaderMatch,
    HeaderModifier,
    HealthCheck,
    IPNetwork,
    LoadBalancer,
    QueryParamMatch,
    Quota,
    RateLimit,
    Redirect,
    Retries,
    Rewrite,
    Route,
    RouteMatch,
    SecretRef,
    TenantSpec,
)

__all__ = ["TenantConfigError", "parse_tenant_document", "parse_tenant_yaml"]

MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_NESTING_DEPTH = 32
MAX_YAML_VALUES = 100_000
MAX_HOSTS = 100
MAX_ROUTES = 1000
MAX_CIDRS = 1000
MAX_BACKENDS = 16
MAX_MATCH_CONDITIONS = 16
MAX_HEADER_EDITS = 64
MAX_WEIGHT = 1_000_000
MAX_RATE = 1e9
MAX_COUNT = 1_000_000_000
MAX_BODY_BYTES = 2**63 - 1
MAX_TIMEOUT_SECONDS = 3600
MAX_RETRY_ATTEMPTS = 10
MIN_HEALTH_INTERVAL_SECONDS = 1
MAX_HEALTH_INTERVAL_SECONDS = 300
MAX_HEALTH_THRESHOLD = 100
MAX_CACHE_AGE_SECONDS = 86400
MAX_CACHE_BODY_BYTES = 64 * 1024 * 1024
MAX_REALM_LENGTH = 64
PORT_RANGE = (1, 65535)

# The fields each mapping may hold, in the contract's spelling.
TENANT_FIELDS = ("hosts", "tls", "quota", "access", "routes")
TLS_FIELDS = ("secretName", "httpRedirect")
QUOTA_FIELDS = (
    "requestsPerSecond",
    "burst",
    "perClient",
    "maxConcurrentRequests",
    "maxRequestBodyBytes",
)
RATE_FIELDS = ("requestsPerSecond", "burst")
ACCESS_FIELDS = ("allowCIDRs", "denyCIDRs", "basicAuth", "apiKeys")
BASIC_AUTH_FIELDS = ("secretName", "realm")
API_KEYS_FIELDS = ("secretName",)
ROUTE_FIELDS = (
    "name",
    "match",
    "backends",
    "rewrite",
    "requestHeaders",
    "responseHeaders",
    "redirect",
    "timeoutSeconds",
    "retries",
    "loadBalancer",
    "healthCheck",
    "access",
    "quota",
    "cache",
)
MATCH_FIELDS = ("path", "pathType", "methods", "headers", "queryParams")
NAME_VALUE_FIELDS = ("name", "value")
BACKEND_FIELDS = ("service", "port", "weight")
REWRITE_FIELDS = ("replacePrefix", "host")
HEADER_MODIFIER_FIELDS = ("set", "add", "remove")
REDIRECT_FIELDS = ("scheme", "host", "port", "path", "statusCode")
RETRIES_FIELDS = ("attempts",)
LOAD_BALANCER_FIELDS = ("policy",)
HEALTH_CHECK_FIELDS = (
    "path",
    "intervalSeconds",
    "unhealthyThreshold",
    "healthyThreshold",
)
CACHE_FIELDS = ("maxAgeSeconds", "maxBodyBytes")

T = TypeVar("T")

# libyaml when present: the pure-Python reader needs seconds for 1 MiB.
try:
    from yaml import CSafeLoader as _SafeLoaderBase
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _SafeLoaderBase  # type: ignore[assignment]


def parse_tenant_yaml(text: str) -> TenantSpec:
    """
    Parse the C{tenant.yaml} key of a Tenant ConfigMap.

    @raise TenantConfigError: listing every problem found.
    """
    # Characters first: never encode a huge string just to learn it is huge.
    if (
        len(text) > MAX_DOCUMENT_BYTES
        or len(text.encode("utf-8", "surrogatepass")) > MAX_DOCUMENT_BYTES
    ):
        raise TenantConfigError(
            [FieldError("", f"tenant.yaml is larger than {MAX_DOCUMENT_BYTES} bytes")]
        )
    try:
        _check_yaml_shape(text)
        document = yaml.load(text, Loader=_TenantYamlLoader)  # a SafeLoader subclass
    except _RefusedYaml as exc:
        raise TenantConfigError([FieldError("", str(exc))]) from None
    except yaml.YAMLError as exc:
        raise TenantConfigError([FieldError("", _describe_yaml_error(exc))]) from None
    except (ValueError, OverflowError, RecursionError):
        # e.g. an integer literal longer than Python's int-parsing limit.
        raise TenantConfigError(
            [FieldError("", "invalid YAML: a value could not be read")]
        ) from None
    return parse_tenant_document(document)


def parse_tenant_document(doc: object) -> TenantSpec:
    """
    Validate an already-loaded document (the result of a safe YAML or JSON
    load).  C{None}, an empty file, is a valid tenant with no routes.

    @raise TenantConfigError: listing every problem found.
    """
    checker = Checker()
    spec = _parse_tenant(checker, doc)
    if checker.errors:
        raise TenantConfigError(checker.errors)
    return spec


# --- YAML loading -----------------------------------------------------------


class _Mark(Protocol):
    line: int
    column: int


class _RefusedYaml(Exception):
    """Valid YAML using a feature we do not accept in tenant data."""

    def __init__(self, problem: str, mark: _Mark | None) -> None:
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        super().__init__(f"invalid YAML{where}: {problem}")


def _check_yaml_shape(text: str) -> None:
    """
    Refuse aliases (billion laughs), anchors (only useful for aliases),
    deep nesting and huge value counts from the event stream, before
    anything is built: building is where the memory and time would go.
    """
    depth = values = 0
    for event in yaml.parse(text, Loader=_TenantYamlLoader):
        if isinstance(event, yaml.AliasEvent):
            raise _RefusedYaml("aliases (*name) are not allowed", event.start_mark)
        if isinstance(event, yaml.NodeEvent):
            if event.anchor is not None:
                raise _RefusedYaml("anchors (&name) are not allowed", event.start_mark)
            values += 1
            if values > MAX_YAML_VALUES:
                raise _RefusedYaml(f"more than {MAX_YAML_VALUES} values", event.start_mark)
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_NESTING_DEPTH:
                raise _RefusedYaml(
                    f"nested more than {MAX_NESTING_DEPTH} levels deep", event.start_mark
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


class _TenantYamlLoader(_SafeLoaderBase):
    """
    C{safe_load}'s loader, refusing merge keys and duplicate keys too:
    PyYAML silently keeps the last of two equal keys, so a reviewer
    reading the first one is misled.
    """

    def flatten_mapping(self, node: MappingNode) -> None:
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _RefusedYaml("merge keys (<<) are not allowed", key_node.start_mark)
        super().flatten_mapping(node)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        if isinstance(node, MappingNode):
            self.flatten_mapping(node)
            seen: set[object] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:
                    continue  # unhashable: the base class reports it
                if duplicate:
                    raise _RefusedYaml(f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _describe_yaml_error(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        problem = " ".join(filter(None, [exc.context, exc.problem])) or "unreadable"
        mark = exc.problem_mark or exc.context_mark
        if mark is not None:
            return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"
        return f"invalid YAML: {problem}"
    return f"invalid YAML: {exc}"


# --- generic checks ---------------------------------------------------------


# --- the tenant file, top down ----------------------------------------------


def _parse_tenant(c: Checker, doc: object) -> TenantSpec:
    if doc is None:
        return TenantSpec()
    if not isinstance(doc, Mapping):
        c.fail(
            "",
            f"tenant.yaml must be a mapping of fields ({', '.join(TENANT_FIELDS)}), "
            f"got {describe(doc)}",
        )
        return TenantSpec()
    top = c.mapping(doc, "", TENANT_FIELDS)
    assert top is not None
    hosts = _parse_hosts(top)
    tls_section = top.section("tls", TLS_FIELDS)
    tls = _parse_tls(tls_section) if tls_section is not None else None
    quota_section = top.section("quota", QUOTA_FIELDS)
    quota = _parse_quota(quota_section) if quota_section is not None else Quota()
    access_section = top.section("access", ACCESS_FIELDS)
    access = _parse_access(access_section) if access_section is not None else Access()
    return TenantSpec(hosts=hosts, tls=tls, quota=quota, access=access, routes=_parse_routes(top))


def _parse_hosts(top: Section) -> tuple[str, ...]:
    c = top.checker
    validate = partial(names.validate_hostname, allow_wildcard=True)
    first_seen: dict[str, str] = {}
    for path, raw in top.items("hosts", MAX_HOSTS):
        host = c.string(raw, path, validate)
        if host is None:
            continue
        if host in first_seen:
            c.fail(path, f"duplicate host {host!r} (first at {first_seen[host]})")
            continue
        first_seen[host] = path
    return tuple(first_seen)


def _parse_tls(section: Section) -> TLS:
    secret = section.string("secretName", names.validate_secret_name, required=True)
    return TLS(
        secret_name=or_default(secret, ""),
        http_redirect=or_default(section.boolean("httpRedirect"), True),
    )


def _parse_quota(section: Section) -> Quota:
    per_client = section.section("perClient", RATE_FIELDS)
    return Quota(
        rate=_parse_rate(section, rate_required=False),
        per_client=_parse_rate(per_client, rate_required=True) if per_client is not None else None,
        max_concurrent_requests=section.integer("maxConcurrentRequests", 1, MAX_COUNT),
        max_request_body_bytes=section.integer("maxRequestBodyBytes", 0, MAX_BODY_BYTES),
    )


def _parse_rate(section: Section, *, rate_required: bool) -> RateLimit | None:
    """
    A token bucket.  Burst defaults to one second's worth of requests
    (at least one), the smallest bucket that can sustain the rate.
    """
    rate = section.number("requestsPerSecond", 0, MAX_RATE, low_exclusive=True)
    burst = section.integer("burst", 1, MAX_COUNT)
    if not section.has("requestsPerSecond"):
        if rate_required:
            section.missing("requestsPerSecond")
        elif section.has("burst"):
            section.checker.fail(section.at("burst"), "burst needs requestsPerSecond")
        return None
    if rate is None:
        return None
    return RateLimit(requests_per_second=rate, burst=or_default(burst, math.ceil(rate)))


def _parse_access(section: Section) -> Access:
    basic_auth = section.section("basicAuth", BASIC_AUTH_FIELDS)
    api_keys = section.section("apiKeys", API_KEYS_FIELDS)
    return Access(
        allow_cidrs=_parse_cidrs(section, "allowCIDRs"),
        deny_cidrs=_parse_cidrs(section, "denyCIDRs"),
        basic_auth=_parse_basic_auth(basic_auth) if basic_auth is not None else None,
        api_keys=_parse_secret_ref(api_keys) if api_keys is not None else None,
    )


def _parse_cidrs(section: Section, key: str) -> tuple[IPNetwork, ...]:
    networks = []
    for path, raw in section.items(key, MAX_CIDRS):
        network = _parse_cidr(section.checker, raw, path)
        if network is not None:
            networks.append(network)
    return tuple(networks)


def _parse_cidr(c: Checker, raw: object, path: str) -> IPNetwork | None:
    """
    Strict: C{10.0.0.1/8} is refused rather than widened to C{10.0.0.0/8},
    because the tenant most likely meant a single address and silently
    admitting sixteen million is the wrong way to be helpful.
    """
    text = c.string(raw, path)
    if text is None:
        return None
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        pass
    try:
        widened = ipaddress.ip_network(text, strict=False)
    except ValueError:
        c.fail(path, f"not an IPv4 or IPv6 address or CIDR: {text!r}")
    else:
        c.fail(path, f"{text} has host bits set; did you mean {widened}?")
    return None


def _validate_realm(realm: str) -> str:
    """The realm is quoted into C{WWW-Authenticate}; keep it unable to break out."""
    if not 1 <= len(realm) <= MAX_REALM_LENGTH:
        raise ValueError(f"must be 1 to {MAX_REALM_LENGTH} characters")
    if not all(" " <= ch <= "~" and ch not in '"\\' for ch in realm):
        raise ValueError('must be printable ASCII without " or \\')
    return realm


def _parse_basic_auth(section: Section) -> BasicAuthRef:
    secret = section.string("secretName", names.validate_secret_name, required=True)
    realm = section.string("realm", _validate_realm)
    return BasicAuthRef(secret_name=or_default(secret, ""), realm=or_default(realm, "tenantgw"))


def _parse_secret_ref(section: Section) -> SecretRef:
    secret = section.string("secretName", names.validate_secret_name, required=True)
    return SecretRef(secret_name=or_default(secret, ""))


def _parse_routes(top: Section) -> tuple[Route, ...]:
    c = top.checker
    routes: list[tuple[int, Route, bool]] = []  # (position, route, name given)
    first_seen: dict[str, str] = {}
    for position, (path, raw) in enumerate(top.items("routes", MAX_ROUTES)):
        section = c.mapping(raw, path, ROUTE_FIELDS)
        if section is None:
            continue
        route = _parse_route(section)
        named = section.has("name")
        if named and route.name in first_seen:
            c.fail(
                section.at("name"),
                f"duplicate route name {route.name!r} (first at {first_seen[route.name]})",
            )
        elif named and route.name:
            first_seen[route.name] = path
        routes.append((position, route, named))
    return tuple(
        route if named else evolve(route, name=_default_route_name(position, first_seen))
        for position, route, named in routes
    )


def _default_route_name(position: int, taken: Mapping[str, str]) -> str:
    """
    The name of a route that declares none: C{route-<position>}, its index in
    C{routes} (C{routes[2]} is C{route-2}), so status messages, metrics labels
    and Redis keys name it the same way on every reload of the same file.
    Should the tenant have given that very name to another route, C{-2},
    C{-3}, ... is appended until the name is free: names stay unique within
    the tenant, and depend on the file alone.  Inserting a route renames the
    unnamed ones after it; routes whose metrics or quota matter should be
    named.
    """
    name = f"route-{position}"
    suffix = 2
    candidate = name
    while candidate in taken:
        candidate = f"{name}-{suffix}"
        suffix += 1
    return candidate


def _parse_route(route: Section) -> Route:
    c = route.checker
    # Optional (contract section 4); _parse_routes names the unnamed.
    name = route.string("name", names.validate_dns1123_label)
    match_section = route.section("match", MATCH_FIELDS)
    match = _parse_match(match_section) if match_section is not None else RouteMatch()

    backends = _parse_backends(route)
    redirect_section = route.section("redirect", REDIRECT_FIELDS)
    redirect = _parse_redirect(redirect_section) if redirect_section is not None else None
    if route.has("redirect") and route.has("backends"):
        c.fail(
            route.at("redirect"),
            "cannot be combined with backends: a route either forwards or redirects",
        )
    elif not route.has("redirect") and not route.has("backends"):
        c.fail(route.at("backends"), "required field is missing (or set redirect instead)")

    rewrite_section = route.section("rewrite", REWRITE_FIELDS)
    rewrite = _parse_rewrite(rewrite_section, match) if rewrite_section is not None else None
    if route.has("rewrite") and route.has("redirect"):
        c.fail(route.at("rewrite"), "cannot be combined with redirect")

    request_headers = route.section("requestHeaders", HEADER_MODIFIER_FIELDS)
    response_headers = route.section("responseHeaders", HEADER_MODIFIER_FIELDS)
    retries = route.section("retries", RETRIES_FIELDS)
    load_balancer = route.section("loadBalancer", LOAD_BALANCER_FIELDS)
    health_check = route.section("healthCheck", HEALTH_CHECK_FIELDS)
    access = route.section("access", ACCESS_FIELDS)
    quota = route.section("quota", RATE_FIELDS)
    cache = route.section("cache", CACHE_FIELDS)
    return Route(
        name=or_default(name, ""),
        match=match,
        backends=backends,
        rewrite=rewrite,
        request_headers=(
            _parse_header_modifier(request_headers)
            if request_headers is not None
            else HeaderModifier()
        ),
        response_headers=(
            _parse_header_modifier(response_headers)
            if response_headers is not None
            else HeaderModifier()
        ),
        redirect=redirect,
        timeout_seconds=route.number("timeoutSeconds", 0, MAX_TIMEOUT_SECONDS, low_exclusive=True),
        retries=_parse_retries(retries) if retries is not None else Retries(),
        load_balancer=(
            _parse_load_balancer(load_balancer) if load_balancer is not None else LoadBalancer()
        ),
        health_check=_parse_health_check(health_check) if health_check is not None else None,
        access=_parse_access(access) if access is not None else None,
        quota=_parse_rate(quota, rate_required=True) if quota is not None else None,
        cache=_parse_cache(cache) if cache is not None else None,
    )


def _parse_match(section: Section) -> RouteMatch:
    return RouteMatch(
        path=or_default(section.string("path", names.validate_path), "/"),
        path_type=or_default(section.choice("pathType", PATH_TYPES), PATH_PREFIX),
        methods=_parse_methods(section),
        headers=tuple(
            HeaderMatch(name=name, value=value)
            for name, value in _parse_name_value_list(
                section, "headers", names.validate_header_name, names.validate_header_value
            )
        ),
        query_params=tuple(
            QueryParamMatch(name=name, value=value)
            for name, value in _parse_name_value_list(
                section, "queryParams", names.validate_query_name, names.validate_query_value
            )
        ),
    )


def _parse_methods(section: Section) -> tuple[str, ...]:
    c = section.checker
    methods: list[str] = []
    for path, raw in section.items("methods", MAX_MATCH_CONDITIONS):
        method = c.string(raw, path, names.validate_token)
        if method is None:
            continue
        method = method.upper()
        if method in methods:
            c.fail(path, f"duplicate method {method}")
            continue
        methods.append(method)
    return tuple(methods)


def _parse_name_value_list(
    section: Section,
    key: str,
    validate_name: Callable[[str], str],
    validate_value: Callable[[str], str],
) -> list[tuple[str, str]]:
    """
    C{[{name, value}, ...]} as Gateway API writes header and query matches.
    A repeated name is refused: two exact values for one name can never
    both match, so the route would be dead.
    """
    c = section.checker
    pairs: list[tuple[str, str]] = []
    first_seen: dict[str, str] = {}
    for path, raw in section.items(key, MAX_MATCH_CONDITIONS):
        item = c.mapping(raw, path, NAME_VALUE_FIELDS)
        if item is None:
            continue
        name = item.string("name", validate_name, required=True)
        value = item.string("value", validate_value, required=True)
        if name is not None and name in first_seen:
            c.fail(item.at("name"), f"duplicate name {name!r} (first at {first_seen[name]})")
            continue
        if name is not None:
            first_seen[name] = path
        if name is not None and value is not None:
            pairs.append((name, value))
    return pairs


def _parse_backends(route: Section) -> tuple[BackendRef, ...]:
    c = route.checker
    if route.raw("backends") == []:
        c.fail(route.at("backends"), "must not be empty")
    backends = []
    for path, raw in route.items("backends", MAX_BACKENDS):
        section = c.mapping(raw, path, BACKEND_FIELDS)
        if section is None:
            continue
        service = section.string("service", names.validate_service_name, required=True)
        port = _parse_port(section)
        backends.append(
            BackendRef(
                service=or_default(service, ""),
                port=0 if port is None else port,
                weight=or_default(section.integer("weight", 0, MAX_WEIGHT), 1),
            )
        )
    return tuple(backends)


def _parse_port(section: Section) -> int | str | None:
    """A Service port: its number, or its name (IANA service name)."""
    if not section.has("port"):
        section.missing("port")
        return None
    raw, path = section.raw("port"), section.at("port")
    if isinstance(raw, str):
        return section.checker.string(raw, path, names.validate_port_name)
    return section.checker.integer(raw, path, *PORT_RANGE)


def _parse_rewrite(section: Section, match: RouteMatch) -> Rewrite | None:
    replace_prefix = section.string("replacePrefix", names.validate_path)
    if section.has("replacePrefix") and match.path_type != PATH_PREFIX:
        # Gateway API: there is no matched prefix to replace on an Exact match.
        section.checker.fail(
            section.at("replacePrefix"), "only allowed when match.pathType is Prefix"
        )
    host = section.string("host", partial(names.validate_hostname, allow_wildcard=False))
    if replace_prefix is None and host is None:
        return None
    return Rewrite(replace_prefix=replace_prefix, host=host)


def _parse_header_modifier(section: Section) -> HeaderModifier:
    return HeaderModifier(
        set=_parse_header_values(section, "set"),
        add=_parse_header_values(section, "add"),
        remove=_parse_header_removals(section),
    )


def _parse_header_values(section: Section, key: str) -> tuple[tuple[str, str], ...]:
    c = section.checker
    if not section.has(key):
        return ()
    result: list[tuple[str, str]] = []
    first_seen: dict[str, str] = {}
    for raw_name, path, raw_value in c.entries(section.raw(key), section.at(key), MAX_HEADER_EDITS):
        name = c.string(raw_name, path, names.validate_modifiable_header)
        value = c.string(raw_value, path, names.validate_header_value)
        if name is None or value is None:
            continue
        if name in first_seen:
            c.fail(
                path,
                f"duplicate header {name!r} (names are case-insensitive; "
                f"first at {first_seen[name]})",
            )
            continue
        first_seen[name] = path
        result.append((name, value))
    return tuple(result)


def _parse_header_removals(section: Section) -> tuple[str, ...]:
    c = section.checker
    removed: list[str] = []
    for path, raw in section.items("remove", MAX_HEADER_EDITS):
        name = c.string(raw, path, names.validate_modifiable_header)
        if name is None:
            continue
        if name in removed:
            c.fail(path, f"duplicate header {name!r} (names are case-insensitive)")
            continue
        removed.append(name)
    return tuple(removed)


def _parse_redirect(section: Section) -> Redirect:
    c = section.checker
    status_code = section.integer("statusCode", 0, 999)
    if status_code is not None and status_code not in REDIRECT_STATUSES:
        c.fail(
            section.at("statusCode"),
            f"must be one of {', '.join(map(str, REDIRECT_STATUSES))}, got {status_code}",
        )
    redirect = Redirect(
        scheme=section.string("scheme", names.validate_scheme),
        host=section.string("host", partial(names.validate_hostname, allow_wildcard=False)),
        port=section.integer("port", *PORT_RANGE),
        path=section.string("path", names.validate_path),
        status_code=or_default(status_code, 302),
    )
    if not any(section.has(key) for key in ("scheme", "host", "port", "path")):
        # Sending a client back to the URL it asked for is a redirect loop.
        c.fail(section.path, "must change at least one of scheme, host, port, path")
    return redirect


def _parse_retries(section: Section) -> Retries:
    return Retries(attempts=or_default(section.integer("attempts", 0, MAX_RETRY_ATTEMPTS), 0))


def _parse_load_balancer(section: Section) -> LoadBalancer:
    return LoadBalancer(policy=or_default(section.choice("policy", LB_POLICIES), LB_ROUND_ROBIN))


def _parse_health_check(section: Section) -> HealthCheck:
    return HealthCheck(
        path=or_default(section.string("path", names.validate_path), "/healthz"),
        interval_seconds=or_default(
            section.number(
                "intervalSeconds", MIN_HEALTH_INTERVAL_SECONDS, MAX_HEALTH_INTERVAL_SECONDS
            ),
            5.0,
        ),
        unhealthy_threshold=or_default(
            section.integer("unhealthyThreshold", 1, MAX_HEALTH_THRESHOLD), 3
        ),
        healthy_threshold=or_default(
            section.integer("healthyThreshold", 1, MAX_HEALTH_THRESHOLD), 2
        ),
    )


def _parse_cache(section: Section) -> Cache:
    return Cache(
        max_age_seconds=or_default(section.integer("maxAgeSeconds", 1, MAX_CACHE_AGE_SECONDS), 60),
        max_body_bytes=or_default(
            section.integer("maxBodyBytes", 1, MAX_CACHE_BODY_BYTES), 1048576
        ),
    )
