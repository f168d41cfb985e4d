"""
Standard Ingresses (``networking.k8s.io/v1``) with the tenant-safe
ingress-nginx annotations (L{tenantgw.translators.ingress_annotations}) into
the tenant model.

Which Ingresses: those whose ``spec.ingressClassName`` names the IngressClass
C{--ingress-class} (default C{tenantgw}) with ``spec.controller:
tenantgw.io/ingress-controller``; an Ingress without a class when that
IngressClass is the default (``ingressclass.kubernetes.io/is-default-class:
"true"``).  The legacy ``kubernetes.io/ingress.class`` annotation naming the
class is honoured too, as ingress-nginx does.

Merging follows ingress-nginx: every Ingress of a namespace on one host adds
its paths; a canary Ingress (``canary: "true"``) adds no paths of its own but
splits the traffic of the primary path it shadows (same host, path and
pathType), by header, then cookie, then weight, as ingress-nginx orders them.
Where we differ from ingress-nginx (documented in docs/ingress.md):
``use-regex`` applies to the Ingress that sets it, not to every Ingress on
the host; hosts come from the tenant's allowance, never by default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import re2
from attrs import evolve, frozen

from tenantgw.config import names
from tenantgw.config.model import (
    LB_COOKIE,
    PATH_EXACT,
    PATH_PREFIX,
    PATH_REGEX,
    Access,
    BackendRef,
    BasicAuthRef,
    CookieMatch,
    Cors,
    HeaderMatch,
    LoadBalancer,
    RateLimit,
    Redirect,
    Rewrite,
    Route,
    RouteMatch,
)
from tenantgw.plans.snapshot import ANY_HOST
from tenantgw.translators import ingress_annotations as ann
from tenantgw.translators.conditions import ObjectKey
from tenantgw.translators.objects import (
    KubeObject,
    age_key,
    annotations_of,
    name_of,
    namespace_of,
    spec,
)

CONTROLLER = "tenantgw.io/ingress-controller"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
INGRESS_KINDS = ("Ingress", "IngressClass")

ACCEPTED = "Accepted"
REJECTED = "Rejected"

_CORS_METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS")
_CORS_HEADERS = (
    "dnt",
    "keep-alive",
    "user-agent",
    "x-requested-with",
    "if-modified-since",
    "cache-control",
    "content-type",
    "range",
    "authorization",
)
MAX_PATHS = 1000


@frozen
class IngressOptions:
    ingress_class: str = "tenantgw"


@frozen
class IngressRoute:
    """One path of one Ingress, with the hosts it serves (L{ANY_HOST}: a rule without host)."""

    namespace: str
    origin: ObjectKey
    hosts: tuple[str, ...]
    route: Route
    order: tuple[str, str, str, int]
    source: str
    # ssl-redirect / force-ssl-redirect for these hosts.
    ssl_redirect: bool = True
    force_ssl_redirect: bool = False


@frozen
class IngressTLS:
    namespace: str
    origin: ObjectKey
    hosts: tuple[str, ...]
    secret_name: str


@frozen
class IngressStatus:
    key: ObjectKey
    state: str  # Accepted | Rejected
    reasons: tuple[str, ...]  # why Rejected
    warnings: tuple[str, ...]
    outcomes: tuple[ann.Outcome, ...]
    generation: int = 0


@frozen
class IngressTranslation:
    routes: tuple[IngressRoute, ...] = ()
    tls: tuple[IngressTLS, ...] = ()
    statuses: tuple[IngressStatus, ...] = ()

    def status_of(self, namespace: str, name: str) -> IngressStatus | None:
        key = ObjectKey("Ingress", namespace, name)
        return next((s for s in self.statuses if s.key == key), None)


class _Refused(Exception):
    pass


def _served_classes(classes: Sequence[KubeObject], options: IngressOptions) -> tuple[bool, bool]:
    """(our class exists, it is the default class)."""
    for obj in classes:
        if name_of(obj) == options.ingress_class and spec(obj).get("controller") == CONTROLLER:
            default = annotations_of(obj).get(DEFAULT_CLASS_ANNOTATION) == "true"
            return True, default
    return False, False


def is_ours(ingress: KubeObject, ours: bool, default: bool, options: IngressOptions) -> bool:
    if not ours:
        return False
    class_name = spec(ingress).get("ingressClassName")
    if class_name is None:
        legacy = annotations_of(ingress).get(LEGACY_CLASS_ANNOTATION)
        if legacy is not None:
            return legacy == options.ingress_class
        return default
    return class_name == options.ingress_class


def translate_ingresses(
    objects: Mapping[str, Sequence[KubeObject]], options: IngressOptions = IngressOptions()
) -> IngressTranslation:
    ours, default = _served_classes(objects.get("IngressClass", ()), options)
    ingresses = [i for i in objects.get("Ingress", ()) if is_ours(i, ours, default, options)]
    primaries: list[tuple[KubeObject, _Parsed]] = []
    canaries: list[tuple[KubeObject, _Parsed]] = []
    statuses: dict[ObjectKey, IngressStatus] = {}
    for ingress in sorted(ingresses, key=age_key):
        key = ObjectKey("Ingress", namespace_of(ingress), name_of(ingress))
        values, outcomes = ann.collect(annotations_of(ingress))
        refused = [o.annotation for o in outcomes if o.kind == "refused"]
        warnings = [
            f"annotation {o.annotation} is not served (unknown to tenantgw)"
            for o in outcomes
            if o.kind == "unknown"
        ]
        generation = (ingress.get("metadata") or {}).get("generation") or 0
        if refused:
            statuses[key] = IngressStatus(
                key,
                REJECTED,
                tuple(
                    f"annotation {a} is refused: it would be code or configuration text"
                    for a in refused
                ),
                tuple(warnings),
                tuple(outcomes),
                generation,
            )
            continue
        try:
            parsed = _parse(ingress, values, warnings)
        except _Refused as e:
            statuses[key] = IngressStatus(
                key, REJECTED, (str(e),), tuple(warnings), tuple(outcomes), generation
            )
            continue
        statuses[key] = IngressStatus(
            key, ACCEPTED, (), tuple(warnings), tuple(outcomes), generation
        )
        (canaries if parsed.canary is not None else primaries).append((ingress, parsed))

    routes: list[IngressRoute] = [r for _, parsed in primaries for r in parsed.routes]
    tls = [t for _, parsed in primaries for t in parsed.tls]
    for ingress, parsed in canaries:
        key = ObjectKey("Ingress", namespace_of(ingress), name_of(ingress))
        try:
            routes = _merge_canary(routes, parsed)
        except _Refused as e:
            old = statuses[key]
            statuses[key] = evolve(old, state=REJECTED, reasons=(str(e),))
    return IngressTranslation(
        tuple(routes),
        tuple(tls),
        tuple(sorted(statuses.values(), key=lambda s: (s.key.namespace, s.key.name))),
    )


@frozen
class _Canary:
    weight: int
    weight_total: int
    header: str | None
    header_value: str | None
    header_pattern: str | None
    cookie: str | None


@frozen
class _Parsed:
    routes: tuple[IngressRoute, ...]
    tls: tuple[IngressTLS, ...]
    canary: _Canary | None


def _annotation(values: Mapping[str, str], name: str, parse: Any, default: Any = None) -> Any:
    if name not in values:
        return default
    try:
        return parse(values[name])
    except ValueError as e:
        raise _Refused(f"annotation {name}: {e}") from None


def _backend(raw: object, where: str, namespace: str, protocol: str | None) -> BackendRef:
    if not isinstance(raw, Mapping):
        raise _Refused(f"{where}: expected a backend")
    if raw.get("resource") is not None:
        raise _Refused(f"{where}.resource: resource backends are not served; name a Service")
    service = raw.get("service")
    if not isinstance(service, Mapping):
        raise _Refused(f"{where}.service: required")
    name = service.get("name")
    if not isinstance(name, str):
        raise _Refused(f"{where}.service.name: required")
    try:
        names.validate_service_name(name)
    except ValueError as e:
        raise _Refused(f"{where}.service.name: {e}") from None
    port = service.get("port")
    number = port.get("number") if isinstance(port, Mapping) else None
    port_name = port.get("name") if isinstance(port, Mapping) else None
    if isinstance(number, int) and not isinstance(number, bool) and 0 < number < 65536:
        chosen: int | str = number
    elif isinstance(port_name, str) and port_name:
        chosen = port_name
    else:
        raise _Refused(f"{where}.service.port: a number or a name is required")
    return BackendRef(service=name, port=chosen, protocol=protocol)


def _parse(ingress: KubeObject, values: Mapping[str, str], warnings: list[str]) -> _Parsed:
    namespace, name = namespace_of(ingress), name_of(ingress)
    origin = ObjectKey("Ingress", namespace, name)
    body = spec(ingress)
    age = age_key(ingress)
    use_regex = _annotation(values, "use-regex", ann.parse_boolean, False)
    rewrite_target = values.get("rewrite-target")
    regex = use_regex or rewrite_target is not None
    protocol = _annotation(values, "backend-protocol", _protocol)
    route_base = _route_base(values, namespace, warnings)
    ssl_redirect = _annotation(values, "ssl-redirect", ann.parse_boolean, True)
    force_ssl = _annotation(values, "force-ssl-redirect", ann.parse_boolean, False)
    canary = None
    if _annotation(values, "canary", ann.parse_boolean, False):
        canary = _Canary(
            weight=_annotation(values, "canary-weight", _weight, 0),
            weight_total=_annotation(values, "canary-weight-total", ann.parse_positive_int, 100),
            header=values.get("canary-by-header"),
            header_value=values.get("canary-by-header-value"),
            header_pattern=_annotation(values, "canary-by-header-pattern", _re2_pattern),
            cookie=values.get("canary-by-cookie"),
        )
        if canary.weight > canary.weight_total:
            raise _Refused("annotation canary-weight: larger than canary-weight-total")
        for header in (canary.header, canary.cookie):
            if header is not None:
                try:
                    names.validate_token(header)
                except ValueError as e:
                    raise _Refused(f"annotation canary-by-header/-cookie: {e}") from None

    routes: list[IngressRoute] = []
    rule_hosts: list[str] = []
    raw_rules = body.get("rules") or []
    if not isinstance(raw_rules, list):
        raise _Refused("spec.rules: expected a list")
    position = 0
    for r, rule in enumerate(raw_rules):
        if not isinstance(rule, Mapping):
            raise _Refused(f"spec.rules[{r}]: expected a mapping")
        host = rule.get("host")
        if host is None:
            hosts: tuple[str, ...] = (ANY_HOST,)
        else:
            try:
                hosts = (names.validate_hostname(str(host), allow_wildcard=True),)
            except ValueError as e:
                raise _Refused(f"spec.rules[{r}].host: {e}") from None
            rule_hosts.extend(hosts)
        http = rule.get("http")
        paths = http.get("paths") if isinstance(http, Mapping) else None
        if not paths:
            continue
        if not isinstance(paths, list) or len(paths) > MAX_PATHS:
            raise _Refused(f"spec.rules[{r}].http.paths: expected a list of at most {MAX_PATHS}")
        for p, raw_path in enumerate(paths):
            where = f"spec.rules[{r}].http.paths[{p}]"
            if not isinstance(raw_path, Mapping):
                raise _Refused(f"{where}: expected a mapping")
            match = _match(raw_path, where, regex)
            backend = _backend(raw_path.get("backend"), f"{where}.backend", namespace, protocol)
            route = evolve(
                route_base,
                name=f"{name}.{r}-{p}",
                match=match,
                backends=(backend,),
                rewrite=_rewrite(route_base.rewrite, rewrite_target, regex, match),
            )
            routes.extend(
                _with_app_root(
                    IngressRoute(
                        namespace,
                        origin,
                        hosts,
                        route,
                        (*age, position),
                        f"Ingress {name} {where}",
                        ssl_redirect,
                        force_ssl,
                    ),
                    values,
                )
            )
            position += 1
    default = body.get("defaultBackend")
    if default is not None:
        backend = _backend(default, "spec.defaultBackend", namespace, protocol)
        route = evolve(route_base, name=f"{name}.default", backends=(backend,))
        for_hosts = tuple(dict.fromkeys(rule_hosts)) or (ANY_HOST,)
        routes.append(
            IngressRoute(
                namespace,
                origin,
                for_hosts,
                route,
                (*age, 10**6),
                f"Ingress {name} spec.defaultBackend",
                ssl_redirect,
                force_ssl,
            )
        )
    if not routes and canary is None:
        raise _Refused("spec: no rules with paths and no defaultBackend: nothing to serve")

    tls_entries = []
    raw_tls = body.get("tls") or []
    for t, entry in enumerate(raw_tls if isinstance(raw_tls, list) else []):
        if not isinstance(entry, Mapping):
            continue
        secret_name = entry.get("secretName")
        tls_hosts = entry.get("hosts") or rule_hosts
        if not isinstance(secret_name, str) or not secret_name:
            warnings.append(
                f"spec.tls[{t}]: no secretName; those hosts get the default certificate"
            )
            continue
        if "/" in secret_name:
            raise _Refused(
                f"spec.tls[{t}].secretName: a Secret in another namespace is not allowed"
            )
        try:
            names.validate_secret_name(secret_name)
            checked = tuple(names.validate_hostname(str(h), allow_wildcard=True) for h in tls_hosts)
        except ValueError as e:
            raise _Refused(f"spec.tls[{t}]: {e}") from None
        tls_entries.append(IngressTLS(namespace, origin, checked, secret_name))
    return _Parsed(tuple(routes), tuple(tls_entries), canary)


def _protocol(text: str) -> str:
    value = text.strip().upper()
    if value not in ann.BACKEND_PROTOCOLS:
        raise ValueError(f"{text!r}: must be one of {', '.join(ann.BACKEND_PROTOCOLS)}")
    return value


def _weight(text: str) -> int:
    stripped = text.strip()
    if not stripped.isdigit():
        raise ValueError(f"{text!r} is not a whole number >= 0")
    return int(stripped)


def _re2_pattern(text: str) -> str:
    try:
        re2.compile(text)
    except re2.error as e:
        raise ValueError(f"{text!r} is not an RE2 expression ({e})") from None
    return text


def _match(raw_path: Mapping[str, Any], where: str, regex: bool) -> RouteMatch:
    path = raw_path.get("path") or "/"
    path_type = raw_path.get("pathType") or "ImplementationSpecific"
    if not isinstance(path, str):
        raise _Refused(f"{where}.path: expected a string")
    if path_type not in ("Exact", "Prefix", "ImplementationSpecific"):
        raise _Refused(f"{where}.pathType: must be Exact, Prefix or ImplementationSpecific")
    if regex and path_type != "Exact":
        if any(c in path for c in "\r\n\0") or not path.startswith("/"):
            raise _Refused(f"{where}.path: must start with '/'")
        try:
            re2.compile(path)
        except re2.error as e:
            raise _Refused(f"{where}.path: {path!r} is not an RE2 expression ({e})") from None
        return RouteMatch(path=path, path_type=PATH_REGEX)
    try:
        names.validate_path(path)
    except ValueError as e:
        raise _Refused(f"{where}.path: {e}") from None
    return RouteMatch(path=path, path_type=PATH_EXACT if path_type == "Exact" else PATH_PREFIX)


def _rewrite(
    base: Rewrite | None, target: str | None, regex: bool, match: RouteMatch
) -> Rewrite | None:
    host = base.host if base is not None else None
    if target is None:
        return Rewrite(host=host) if host else None
    if any(c in target for c in "\r\n\0 ?#"):
        raise _Refused("annotation rewrite-target: must be a path (no spaces, '?' or '#')")
    if match.path_type == PATH_REGEX:
        return Rewrite(host=host, regex_target=target)
    # An Exact path with rewrite-target: the whole path is replaced.
    return Rewrite(host=host, full_path=target if target.startswith("/") else "/" + target)


def _route_base(values: Mapping[str, str], namespace: str, warnings: list[str]) -> Route:
    body_size = _annotation(values, "proxy-body-size", ann.parse_size)
    read = _annotation(values, "proxy-read-timeout", ann.parse_seconds)
    send = _annotation(values, "proxy-send-timeout", ann.parse_seconds)
    connect = _annotation(values, "proxy-connect-timeout", ann.parse_seconds)
    timeouts = [t for t in (read, send) if t]
    timeout = max(timeouts) if timeouts else None
    if connect and timeout is None:
        timeout = None  # connect alone: the gateway's connect handling applies
    if timeout is not None:
        timeout = min(timeout, 3600.0)
    rps = _annotation(values, "limit-rps", ann.parse_positive_int)
    multiplier = _annotation(values, "limit-burst-multiplier", ann.parse_positive_int, 5)
    connections = _annotation(values, "limit-connections", ann.parse_positive_int)
    allow = _annotation(values, "whitelist-source-range", ann.parse_cidrs, ())
    deny = _annotation(values, "denylist-source-range", ann.parse_cidrs, ())
    basic = None
    auth_type = values.get("auth-type")
    if auth_type is not None:
        if auth_type.strip() != "basic":
            raise _Refused(f"annotation auth-type: only 'basic' is served, got {auth_type!r}")
        secret = values.get("auth-secret")
        if not secret:
            raise _Refused("annotation auth-secret: required with auth-type basic")
        secret_ns, slash, secret_name = secret.rpartition("/")
        if slash and secret_ns != namespace:
            raise _Refused("annotation auth-secret: a Secret in another namespace is not allowed")
        if values.get("auth-secret-type", "auth-file") != "auth-file":
            raise _Refused("annotation auth-secret-type: only auth-file is served")
        realm = values.get("auth-realm", "Authentication Required")
        if (
            not realm
            or len(realm) > 64
            or any(c in realm for c in '"\\\r\n')
            or not realm.isprintable()
        ):
            raise _Refused("annotation auth-realm: 1..64 printable characters, no quotes")
        basic = BasicAuthRef(secret_name=secret_name, realm=realm)
    access = (
        Access(allow_cidrs=allow, deny_cidrs=deny, basic_auth=basic)
        if (allow or deny or basic)
        else None
    )
    load_balancer = LoadBalancer()
    if values.get("affinity") is not None:
        if values["affinity"].strip() != "cookie":
            raise _Refused("annotation affinity: only 'cookie' is served")
        cookie = values.get("session-cookie-name", "INGRESSCOOKIE")
        try:
            names.validate_token(cookie)
        except ValueError as e:
            raise _Refused(f"annotation session-cookie-name: {e}") from None
        load_balancer = LoadBalancer(policy=LB_COOKIE, cookie_name=cookie)
    cors = None
    if _annotation(values, "enable-cors", ann.parse_boolean, False):
        cors = _cors(values)
    redirect = None
    for key, default_code in (("permanent-redirect", 301), ("temporal-redirect", 302)):
        if key in values:
            code = default_code
            if key == "permanent-redirect":
                code = _annotation(values, "permanent-redirect-code", ann.parse_positive_int, 301)
                if code not in (301, 302, 303, 307, 308):
                    raise _Refused(
                        "annotation permanent-redirect-code: must be 301, 302, 303, 307 or 308"
                    )
            redirect = _redirect_to(values[key], key, code)
            break
    vhost = values.get("upstream-vhost")
    rewrite = None
    if vhost:
        try:
            rewrite = Rewrite(host=names.validate_hostname(vhost, allow_wildcard=False))
        except ValueError as e:
            raise _Refused(f"annotation upstream-vhost: {e}") from None
    return Route(
        name="",
        access=access,
        timeout_seconds=timeout,
        max_request_body_bytes=body_size or None,
        # nginx's limit_req admits the burst beyond the first request: one more
        # at once than a bucket of rps x multiplier (checked against nginx).
        per_client_rate=RateLimit(float(rps), rps * multiplier + 1) if rps else None,
        max_client_concurrent=connections,
        load_balancer=load_balancer,
        cors=cors,
        redirect=redirect,
        rewrite=rewrite,
    )


def _cors(values: Mapping[str, str]) -> Cors:
    origins = ann.parse_list(values.get("cors-allow-origin", "*"))
    for origin in origins:
        if origin != "*" and not (origin.startswith("http://") or origin.startswith("https://")):
            raise _Refused(f"annotation cors-allow-origin: {origin!r} is not an origin")
    methods = tuple(
        m.upper()
        for m in ann.parse_list(values.get("cors-allow-methods", ", ".join(_CORS_METHODS)))
    )
    headers = tuple(
        h.lower()
        for h in ann.parse_list(values.get("cors-allow-headers", ", ".join(_CORS_HEADERS)))
    )
    expose = tuple(h.lower() for h in ann.parse_list(values.get("cors-expose-headers", "")))
    for item in (*methods, *headers, *expose):
        if item != "*":
            try:
                names.validate_token(item)
            except ValueError as e:
                raise _Refused(f"annotation cors-*: {item!r}: {e}") from None
    return Cors(
        allow_origins=tuple(o.lower() for o in origins),
        allow_methods=methods,
        allow_headers=headers,
        expose_headers=expose,
        allow_credentials=_annotation(values, "cors-allow-credentials", ann.parse_boolean, True),
        max_age_seconds=_annotation(values, "cors-max-age", ann.parse_positive_int, 1728000),
    )


def _redirect_to(url: str, key: str, code: int) -> Redirect:
    # urlsplit silently drops CR, LF and tab: refuse them before it can.
    if any(c < " " or c == "\x7f" for c in url.strip()):
        raise _Refused(f"annotation {key}: the URL has a control character")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Refused(f"annotation {key}: {url!r} is not an absolute http(s) URL")
    try:
        host = names.validate_hostname(parts.hostname, allow_wildcard=False)
        path = names.validate_path(parts.path or "/")
        port = parts.port
    except ValueError as e:
        raise _Refused(f"annotation {key}: {e}") from None
    # ingress-nginx returns the URL as written: its own query and fragment are
    # kept, the request's query is not added.
    tail = (f"?{parts.query}" if parts.query else "") + (
        f"#{parts.fragment}" if parts.fragment else ""
    )
    if not all("!" <= c <= "~" for c in tail):
        raise _Refused(f"annotation {key}: query or fragment has a space or control character")
    return Redirect(
        scheme=parts.scheme, host=host, port=port, path=path, status_code=code, query=tail
    )


def _with_app_root(route: IngressRoute, values: Mapping[str, str]) -> list[IngressRoute]:
    """app-root: "/" itself is redirected (302) to the root; everything else is served."""
    root = values.get("app-root")
    if (
        not root
        or route.route.match.path not in ("/", "")
        or route.route.match.path_type == PATH_REGEX
    ):
        return [route]
    try:
        target = names.validate_path(root)
    except ValueError as e:
        raise _Refused(f"annotation app-root: {e}") from None
    redirect = evolve(
        route,
        route=evolve(
            route.route,
            name=route.route.name + "-app-root",
            match=RouteMatch(path="/", path_type=PATH_EXACT),
            backends=(),
            redirect=Redirect(path=target, status_code=302, query=""),
            rewrite=None,
        ),
    )
    return [redirect, route]


def _variant(
    primary: IngressRoute, match: RouteMatch, backends: tuple[BackendRef, ...], suffix: str
) -> IngressRoute:
    return evolve(
        primary,
        route=evolve(
            primary.route, name=primary.route.name + suffix, match=match, backends=backends
        ),
    )


def _merge_canary(routes: list[IngressRoute], canary: _Parsed) -> list[IngressRoute]:
    """
    The canary's paths shadow primary paths of the same namespace, host,
    path and pathType.  For each: header routes first (always -> canary,
    never -> primary, or the value / pattern), then cookie routes, then the
    weighted split on the primary route itself.
    """
    assert canary.canary is not None
    spec_ = canary.canary
    result = list(routes)
    for shadow in canary.routes:
        if shadow.route.redirect is not None and not shadow.route.backends:
            continue  # app-root redirects of the canary: the primary's own apply
        targets = [
            i
            for i, r in enumerate(result)
            if r.namespace == shadow.namespace
            and set(r.hosts) & set(shadow.hosts)
            and r.route.match.path == shadow.route.match.path
            and r.route.match.path_type == shadow.route.match.path_type
            and r.route.backends
        ]
        if not targets:
            hosts = ", ".join(shadow.hosts)
            raise _Refused(
                f"canary without a primary: no Ingress of this namespace serves {hosts}"
                f" {shadow.route.match.path} ({shadow.source})"
            )
        canary_backends = shadow.route.backends
        extra: list[IngressRoute] = []
        for i in targets:
            primary = result[i]
            base_match = primary.route.match

            if spec_.header is not None:
                header = spec_.header.lower()
                if spec_.header_value is not None:
                    extra.append(
                        _variant(
                            primary,
                            evolve(
                                base_match,
                                headers=(
                                    *base_match.headers,
                                    HeaderMatch(header, spec_.header_value),
                                ),
                            ),
                            canary_backends,
                            "-canary-header",
                        )
                    )
                elif spec_.header_pattern is not None:
                    extra.append(
                        _variant(
                            primary,
                            evolve(
                                base_match,
                                headers=(
                                    *base_match.headers,
                                    HeaderMatch(header, spec_.header_pattern, regex=True),
                                ),
                            ),
                            canary_backends,
                            "-canary-header",
                        )
                    )
                else:
                    extra.append(
                        _variant(
                            primary,
                            evolve(
                                base_match,
                                headers=(*base_match.headers, HeaderMatch(header, "always")),
                            ),
                            canary_backends,
                            "-canary-always",
                        )
                    )
                    extra.append(
                        _variant(
                            primary,
                            evolve(
                                base_match,
                                headers=(*base_match.headers, HeaderMatch(header, "never")),
                            ),
                            primary.route.backends,
                            "-canary-never",
                        )
                    )
            if spec_.cookie is not None:
                extra.append(
                    _variant(
                        primary,
                        evolve(
                            base_match,
                            cookies=(*base_match.cookies, CookieMatch(spec_.cookie, "always")),
                        ),
                        canary_backends,
                        "-canary-cookie",
                    )
                )
                extra.append(
                    _variant(
                        primary,
                        evolve(
                            base_match,
                            cookies=(*base_match.cookies, CookieMatch(spec_.cookie, "never")),
                        ),
                        primary.route.backends,
                        "-canary-nocookie",
                    )
                )
            if spec_.weight:
                total = spec_.weight_total
                primary_total = sum(b.weight for b in primary.route.backends) or 1
                scaled = tuple(
                    evolve(
                        b, weight=max(0, b.weight * (total - spec_.weight) * 1000 // primary_total)
                    )
                    for b in primary.route.backends
                )
                canary_share = tuple(
                    evolve(b, weight=spec_.weight * 1000 // max(1, len(canary_backends)))
                    for b in canary_backends
                )
                result[i] = evolve(
                    primary, route=evolve(primary.route, backends=scaled + canary_share)
                )
        result.extend(extra)
    return result
